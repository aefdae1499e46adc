"""The scene catalogue: entries, verified downloads (served from local fakes), the fingerprint
cache, and the real ground truths beside the repository."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from hsi.data import CATALOGUE, DatasetNotFoundError, HSIDataModule, load_scene
from hsi.data.readers import download as dl
from hsi.data.scenes.catalogue import load_ground_truth, prepare_scene
from hsi.data.splits.random import RandomSplit
from hsi.run.config import CONFIG_DIR
from tests.fixtures.make_fake_scenes import fake_spec, serve_from, write_fake_scene

EHU = "http://www.ehu.eus/ccwintco/uploads/"


@pytest.fixture(autouse=True)
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep fingerprint caches of read-only folders out of the real ~/.cache."""
    cache = tmp_path / "user_cache"
    monkeypatch.setenv("HSI_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def fetch(url: str, dest: Path) -> None:
        raise AssertionError(f"network access attempted: {url}")

    monkeypatch.setattr(dl, "fetch_url", fetch)


def _server(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch,
            calls: list[str] | None = None) -> Path:
    """Fake EHU files of `name` on a local "server"; the catalogue entry and fetch point at them."""
    server = tmp_path / "server"
    write_fake_scene(name, server)
    monkeypatch.setitem(CATALOGUE, name, fake_spec(name, server))
    monkeypatch.setattr(dl, "fetch_url", serve_from(server, calls))
    return server


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- the entries ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CATALOGUE))
def test_entry_is_complete_and_has_a_config(name: str) -> None:
    spec = CATALOGUE[name]
    k = len(spec.class_names)
    assert spec.name == name and len(spec.label_values) == k == len(spec.class_counts)
    assert len(set(spec.class_names)) == k and all(c > 0 for c in spec.class_counts)
    assert all(0 <= b < spec.cube_shape[2] for b in spec.rgb_bands)
    for f in spec.files:
        assert f.url.startswith(EHU) and f.url.endswith("/" + f.filename) and f.key
        assert f.sha1 is None or (len(f.sha1) == 40 and int(f.sha1, 16) >= 0)
    config = yaml.safe_load((CONFIG_DIR / "data" / f"{name}.yaml").read_text())
    assert config == {"defaults": ["_pipeline"], "scene": name}


def test_only_pavia_centre_lacks_fingerprints() -> None:
    unknown = sorted(f.filename for s in CATALOGUE.values() for f in s.files if f.sha1 is None)
    assert unknown == ["Pavia.mat", "Pavia_gt.mat"]


def test_fingerprint_is_git_blob_sha1(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"")
    assert dl.git_blob_sha1(path) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob
    path.write_bytes(np.arange(3_000_000, dtype=np.int32).tobytes())  # spans several read chunks
    if shutil.which("git"):
        expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True,
                                  check=True).stdout.strip()
        assert dl.git_blob_sha1(path) == expected


# -- downloads -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CATALOGUE))
def test_download_into_an_empty_folder(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    server = _server(tmp_path, name, monkeypatch, calls)
    spec = CATALOGUE[name]
    data_dir = tmp_path / "data"
    with caplog.at_level(logging.WARNING):
        scene = load_scene(name, data_dir, download=True)
    folder = data_dir / name
    assert sorted(calls) == sorted(f.url for f in spec.files)
    for f in spec.files:
        assert (folder / f.filename).read_bytes() == (server / f.filename).read_bytes()
    assert not [p for p in _listing(folder) if p.endswith(".part")]
    assert scene.cube.shape == spec.cube_shape and scene.class_names == list(spec.class_names)
    np.testing.assert_array_equal(scene.class_counts(), spec.class_counts)
    unverified = "could not be verified" in caplog.text
    assert unverified == (name == "pavia_centre")
    calls.clear()
    load_scene(name, data_dir, download=True)  # now present: nothing fetched
    assert calls == []


def test_download_with_wrong_fingerprint_leaves_no_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _server(tmp_path, "salinas_a", monkeypatch)
    spec = CATALOGUE["salinas_a"]
    wrong = "0" * 40
    monkeypatch.setitem(CATALOGUE, "salinas_a", replace(spec, cube=replace(spec.cube, sha1=wrong)))
    with pytest.raises(dl.FingerprintMismatchError) as err:
        load_scene("salinas_a", tmp_path / "data", download=True)
    message = str(err.value)
    actual = dl.git_blob_sha1(tmp_path / "server" / spec.cube.filename)
    assert spec.cube.filename in message and wrong in message and actual in message
    assert spec.cube.url in message
    assert spec.cube.filename not in _listing(tmp_path / "data" / "salinas_a")
    assert not [p for p in _listing(tmp_path / "data" / "salinas_a") if p.endswith(".part")]


@pytest.mark.parametrize("error", [ConnectionResetError("connection reset by peer"), KeyboardInterrupt()])
def test_interrupted_download_leaves_no_file(error: BaseException, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server = _server(tmp_path, "salinas_a", monkeypatch)
    spec = CATALOGUE["salinas_a"]
    seen: list[Path] = []

    def half_then_fail(url: str, dest: Path) -> None:
        data = (server / url.rsplit("/", 1)[-1]).read_bytes()
        dest.write_bytes(data[: len(data) // 2])
        seen.append(dest)
        raise error

    monkeypatch.setattr(dl, "fetch_url", half_then_fail)
    folder = tmp_path / "data" / "salinas_a"
    expected = DatasetNotFoundError if isinstance(error, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as err:
        load_scene("salinas_a", tmp_path / "data", download=True)
    assert seen and seen[0].parent == folder  # the partial file was written there, then removed
    assert _listing(folder) == []
    if expected is DatasetNotFoundError:
        assert "connection reset" in str(err.value) and spec.cube.url in str(err.value)


def test_offline_raises_dataset_not_found_with_urls(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, dest: Path) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(dl, "fetch_url", offline)
    spec = CATALOGUE["indian_pines"]
    with pytest.raises(DatasetNotFoundError) as err:
        load_scene("indian_pines", tmp_path, download=True)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for f in spec.files:
        assert f.filename in message and f.url in message
    assert str(tmp_path / "indian_pines") in message and "Name or service not known" in message
    assert "HSI_DATA_DIR" in message and "data=custom" in message
    assert _listing(tmp_path / "indian_pines") == []


def test_download_false_never_fetches(tmp_path: Path, no_network: None) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"(?s)data\.download=false.*Indian_pines_gt\.mat"):
        load_scene("indian_pines", tmp_path, download=False)
    assert not (tmp_path / "indian_pines").exists()


def test_present_scene_loads_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             no_network: None) -> None:
    folder = tmp_path / "data" / "ksc"
    write_fake_scene("ksc", folder)
    monkeypatch.setitem(CATALOGUE, "ksc", fake_spec("ksc", folder))
    scene = load_scene("ksc", tmp_path / "data", download=True)
    assert scene.num_classes == 13 and scene.class_names[-1] == "Water"


def test_present_file_with_wrong_fingerprint_is_kept_and_named(tmp_path: Path, no_network: None) -> None:
    folder = tmp_path / "salinas_a"
    write_fake_scene("salinas_a", folder)  # the real catalogue fingerprints: these fakes differ
    spec = CATALOGUE["salinas_a"]
    before = (folder / spec.gt.filename).read_bytes()
    with pytest.raises(dl.FingerprintMismatchError) as err:
        load_scene("salinas_a", tmp_path, download=True)
    message = str(err.value)
    assert spec.cube.filename in message and spec.cube.sha1 in message
    assert dl.git_blob_sha1(folder / spec.cube.filename) in message
    assert "Delete it" in message and spec.cube.url in message
    assert (folder / spec.gt.filename).read_bytes() == before
    assert (folder / spec.cube.filename).is_file()


def test_shape_of_an_unverified_file_is_checked(tmp_path: Path, no_network: None) -> None:
    write_fake_scene("pavia_centre", tmp_path / "pavia_centre")  # no fingerprints to stop it
    with pytest.raises(ValueError, match=r"not the catalogue's file.*data=custom"):
        load_scene("pavia_centre", tmp_path)


def test_datamodule_prepare_data_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _server(tmp_path, "botswana", monkeypatch)
    dm = HSIDataModule("botswana", str(tmp_path / "data"), pca={"components": 5}, patch_size=3,
                       split=RandomSplit(test_ratio=0.5, val_ratio=0.0), download=True)
    dm.prepare_data()
    assert _listing(tmp_path / "data" / "botswana")[-2:] == ["Botswana.mat", "Botswana_gt.mat"]
    monkeypatch.setattr(dl, "fetch_url", None)  # setup must not need the network any more
    dm.setup()
    assert dm.num_classes == 14


# -- the fingerprint cache -----------------------------------------------------------------
def _count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    hashed: list[Path] = []
    real = dl.git_blob_sha1

    def counting(path):
        hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(dl, "git_blob_sha1", counting)
    return hashed


def test_present_files_are_hashed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       no_network: None) -> None:
    folder = tmp_path / "salinas_a"
    write_fake_scene("salinas_a", folder)
    monkeypatch.setitem(CATALOGUE, "salinas_a", fake_spec("salinas_a", folder))
    hashed = _count_hashing(monkeypatch)
    prepare_scene("salinas_a", tmp_path)
    assert len(hashed) == 2
    sidecar = json.loads((folder / dl.SIDECAR).read_text())
    assert sorted(sidecar) == ["SalinasA_corrected.mat", "SalinasA_gt.mat"]
    prepare_scene("salinas_a", tmp_path)
    assert len(hashed) == 2  # from the cache
    gt = folder / "SalinasA_gt.mat"
    stat = gt.stat()
    os.utime(gt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: hashed again
    prepare_scene("salinas_a", tmp_path)
    assert [p.name for p in hashed[2:]] == ["SalinasA_gt.mat"]


def test_read_only_folder_caches_in_the_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   user_cache: Path, no_network: None) -> None:
    folder = tmp_path / "ro" / "salinas_a"
    write_fake_scene("salinas_a", folder)
    monkeypatch.setitem(CATALOGUE, "salinas_a", fake_spec("salinas_a", folder))
    hashed = _count_hashing(monkeypatch)
    folder.chmod(0o555)
    try:
        scene = load_scene("salinas_a", tmp_path / "ro", download=True)
        assert scene.num_classes == 6 and len(hashed) == 2
        assert not (folder / dl.SIDECAR).exists()
        cached = json.loads((user_cache / "fingerprints.json").read_text())
        assert str((folder / "SalinasA_gt.mat").resolve()) in cached
        load_scene("salinas_a", tmp_path / "ro", download=True)
        assert len(hashed) == 2
    finally:
        folder.chmod(0o755)


# -- the real ground truths beside the repository -------------------------------------------
REAL_GT = ["indian_pines", "pavia_university", "salinas", "salinas_a", "ksc", "botswana"]


def _read_only_copy(shared_data: Path, name: str, files: list[str], tmp_path: Path) -> Path:
    """The scene's `files` copied into tmp_path/<name>, that folder made read-only: the tests
    do not depend on the permission bits of ../shared (read-only on one machine, not another)."""
    folder = tmp_path / "data" / name
    folder.mkdir(parents=True)
    for filename in files:
        shutil.copyfile(shared_data / name / filename, folder / filename)
    folder.chmod(0o555)
    return folder.parent


@pytest.mark.parametrize("name", REAL_GT)
def test_real_ground_truth_matches_the_catalogue(name: str, shared_data: Path, no_network: None,
                                                 tmp_path: Path) -> None:
    spec = CATALOGUE[name]
    assert dl.git_blob_sha1(shared_data / name / spec.gt.filename) == spec.gt.sha1
    data = _read_only_copy(shared_data, name, [spec.gt.filename], tmp_path)
    try:
        labels = load_ground_truth(name, data)
        assert not (data / name / dl.SIDECAR).exists()  # a read-only folder stays untouched
    finally:
        (data / name).chmod(0o755)
    assert labels.shape == spec.gt_shape
    assert labels.max() == len(spec.class_names) == len(spec.label_values)
    np.testing.assert_array_equal(np.bincount(labels.ravel())[1:], spec.class_counts)


def test_real_salinas_a_cube_is_verified(shared_data: Path, no_network: None, tmp_path: Path) -> None:
    spec = CATALOGUE["salinas_a"]
    assert dl.git_blob_sha1(shared_data / "salinas_a" / spec.cube.filename) == spec.cube.sha1
    data = _read_only_copy(shared_data, "salinas_a", [spec.cube.filename, spec.gt.filename], tmp_path)
    try:
        scene = load_scene("salinas_a", data, download=True)
    finally:
        (data / "salinas_a").chmod(0o755)
    assert scene.cube.shape == spec.cube_shape
    np.testing.assert_array_equal(scene.class_counts(), spec.class_counts)
