"""Tiny fake catalogue scenes in the exact EHU on-disk format: file names, variable names, dtypes.

Tests use them as the "server" side of downloads (`serve_from`) and as present scene folders;
`fake_spec` gives the catalogue entry with the fakes' own shapes, counts and fingerprints.

    python tests/data/make_fake_scenes.py OUT_DIR [SCENE ...]   # writes OUT_DIR/<scene>/...
"""

from __future__ import annotations

import argparse
import shutil
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.io

from hsi.data.catalogue import CATALOGUE, SceneSpec
from hsi.data.download import Fetch, git_blob_sha1

# dtypes of the EHU files (MATLAB v5): ground truths are uint8 (checked on the real files);
# Salinas-A's cube is int16 (checked); the others as best known.
CUBE_DTYPES = {"indian_pines": np.uint16, "pavia_university": np.uint16, "pavia_centre": np.uint16,
               "salinas": np.int16, "salinas_a": np.int16, "ksc": np.uint16, "botswana": np.uint16}
GT_DTYPE = np.uint8


def fake_arrays(name: str, height: int = 12, width: int = 10,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(cube, gt) shaped like scene `name` but `height` x `width`; every class has >= 3 pixels."""
    spec = CATALOGUE[name]
    rng = np.random.default_rng(seed)
    values = np.array(spec.label_values)
    if height * width < 4 * len(values):
        raise ValueError(f"{height}x{width} is too small for {len(values)} classes")
    gt = np.concatenate([np.repeat(values, 3), rng.choice(np.r_[0, values], height * width
                                                          - 3 * len(values))])
    gt = rng.permutation(gt).reshape(height, width).astype(GT_DTYPE)
    bands = spec.cube_shape[2]
    cube = rng.integers(0, 5000, size=(height, width, bands)).astype(CUBE_DTYPES[name])
    return cube, gt


def write_fake_scene(name: str, folder: str | Path, height: int = 12, width: int = 10,
                     seed: int = 0) -> dict[str, Path]:
    """Write scene `name`'s two EHU files into `folder`; returns {filename: path}."""
    spec = CATALOGUE[name]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cube, gt = fake_arrays(name, height, width, seed)
    paths = {f.filename: folder / f.filename for f in spec.files}
    scipy.io.savemat(paths[spec.cube.filename], {spec.cube.key: cube})
    scipy.io.savemat(paths[spec.gt.filename], {spec.gt.key: gt})
    return paths


def fake_spec(name: str, folder: str | Path, keep_unknown: bool = True) -> SceneSpec:
    """`CATALOGUE[name]` with the shape, class counts and fingerprints of the fakes in `folder`.

    With `keep_unknown`, a file the catalogue has no fingerprint for keeps none.
    """
    spec = CATALOGUE[name]
    folder = Path(folder)
    cube = scipy.io.loadmat(folder / spec.cube.filename)[spec.cube.key]
    gt = scipy.io.loadmat(folder / spec.gt.filename)[spec.gt.key]
    counts = tuple(int((gt == v).sum()) for v in spec.label_values)

    def sha(f):
        return None if keep_unknown and f.sha1 is None else git_blob_sha1(folder / f.filename)

    return replace(spec, cube_shape=cube.shape, class_counts=counts,
                   cube=replace(spec.cube, sha1=sha(spec.cube)), gt=replace(spec.gt, sha1=sha(spec.gt)))


def serve_from(folder: str | Path, calls: list[str] | None = None) -> Fetch:
    """A fetch that serves each URL from the file of the same name in `folder` (no network)."""
    folder = Path(folder)

    def fetch(url: str, dest: Path) -> None:
        if calls is not None:
            calls.append(url)
        source = folder / url.rsplit("/", 1)[-1]
        if not source.is_file():
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        shutil.copyfile(source, dest)

    return fetch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("scenes", nargs="*", default=list(CATALOGUE))
    args = parser.parse_args()
    for name in args.scenes:
        for path in write_fake_scene(name, args.out_dir / name).values():
            print(f"{path}  {git_blob_sha1(path)}")


if __name__ == "__main__":
    main()
