"""Fetching files over HTTP and checking them against git blob SHA-1 fingerprints.

A download lands under a temporary name beside its destination and is renamed only once its
fingerprint matches, so a failed, interrupted or corrupted download leaves nothing behind.
Fingerprints of files already present are computed once and cached (keyed by size and
modification time), in a sidecar `.hsi_fingerprints.json` in the file's folder or, where that
folder is read-only, in the user cache (`$HSI_CACHE_DIR`, else `$XDG_CACHE_HOME/hsi`, else
`~/.cache/hsi`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import stat
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hsi.errors import HsiError
from hsi.utils.files import atomic_write_json

log = logging.getLogger(__name__)

SIDECAR = ".hsi_fingerprints.json"
CHUNK = 1 << 20
TIMEOUT_S = 60

Fetch = Callable[[str, Path], None]
"""Writes the content at a URL into a local file (the temporary name of a download)."""

# Errors that mean "could not get the file" rather than "a bug": no network, refused, HTTP 404, ...
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)


class FingerprintMismatchError(HsiError, ValueError):
    """A file's content is not the one the catalogue expects."""


class DownloadError(HsiError, OSError):
    """A file could not be fetched (offline, server error, interrupted transfer)."""


def git_blob_sha1(path: str | Path) -> str:
    """`git hash-object path`: SHA-1 over b"blob <size>\\0" followed by the file's bytes."""
    path = Path(path)
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


# -- fingerprint cache ---------------------------------------------------------------------
def user_cache_dir() -> Path:
    """Where fingerprints of files in read-only folders are remembered."""
    if os.environ.get("HSI_CACHE_DIR"):
        return Path(os.environ["HSI_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "hsi"


def _cache_slots(path: Path) -> list[tuple[Path, str]]:
    """(cache file, key) pairs where the fingerprint of `path` may be stored, sidecar first."""
    return [(path.parent / SIDECAR, path.name), (user_cache_dir() / "fingerprints.json", str(path))]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _writable(folder: Path) -> bool:
    """Writable, and not marked read-only (root may write anywhere; we respect the marking)."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return os.access(folder, os.W_OK) and bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _remember(path: Path, sha1: str) -> None:
    entry = {**_stamp(path), "sha1": sha1}
    for cache_file, key in _cache_slots(path):
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            if not _writable(cache_file.parent):
                continue
            atomic_write_json(cache_file, {**_read_json(cache_file), key: entry})
            return
        except OSError as err:
            log.debug("Could not cache the fingerprint of %s in %s: %s", path, cache_file, err)
    log.debug("Fingerprint of %s not cached (no writable cache folder).", path)


def file_fingerprint(path: str | Path) -> str:
    """Git blob SHA-1 of `path`, from the cache when its size and mtime are unchanged."""
    path = Path(path).expanduser().resolve()
    stamp = _stamp(path)
    for cache_file, key in _cache_slots(path):
        entry = _read_json(cache_file).get(key)
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()) \
                and isinstance(entry.get("sha1"), str):
            return entry["sha1"]
    sha1 = git_blob_sha1(path)
    _remember(path, sha1)
    return sha1


def verify_file(path: str | Path, sha1: str | None, url: str | None = None) -> bool:
    """Check a present file against its expected fingerprint; never deletes it.

    Returns False (after a warning) when `sha1` is None: the file cannot be verified.
    Raises `FingerprintMismatchError`, naming the fix, when the content differs.
    """
    path = Path(path)
    actual = file_fingerprint(path)
    if sha1 is None:
        log.warning("%s could not be verified: no fingerprint is known for it (its git blob SHA-1 "
                    "is %s). Using it as it is.", path, actual)
        return False
    if actual != sha1:
        source = f" from {url}" if url else ""
        raise FingerprintMismatchError(
            f"{path} is not the expected file: its git blob SHA-1 is {actual}, expected {sha1}. "
            f"It may be truncated, corrupted or another version. Delete it and run again with "
            f"data.download=true to fetch a fresh copy{source}.")
    return True


# -- downloading ---------------------------------------------------------------------------
def fetch_url(url: str, dest: Path) -> None:
    """Write the content at `url` into `dest`, with a progress bar (urllib, no extra packages)."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "hsi (python urllib)"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=Path(url).name, disable=None) as bar:
            while block := response.read(CHUNK):
                out.write(block)
                bar.update(len(block))
        if total is not None and out.tell() != total:
            raise DownloadError(f"transfer ended after {out.tell()} of {total} bytes")


def download_file(url: str, dest: str | Path, sha1: str | None, fetch: Fetch | None = None) -> Path:
    """Fetch `url` into `dest` via a temporary name; keep it only if its fingerprint is `sha1`.

    `fetch` (default `fetch_url`) does the transfer; tests pass one that copies local files.
    A network failure raises `DownloadError`, a wrong fingerprint `FingerprintMismatchError`;
    either way no file is left behind. With `sha1=None` the file is kept with a warning.
    """
    dest = Path(dest)
    fetch = fetch or fetch_url  # looked up at call time, so monkeypatching `fetch_url` works
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as err:
        raise DownloadError(f"cannot write into {dest.parent} to download {url}: {err}") from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        log.info("Downloading %s into %s", url, dest.parent)
        try:
            fetch(url, tmp)
        except NETWORK_ERRORS as err:
            raise DownloadError(f"Downloading {url} failed: {err}") from err
        actual = git_blob_sha1(tmp)
        if sha1 is not None and actual != sha1:
            raise FingerprintMismatchError(
                f"Downloaded {dest.name} from {url} but its git blob SHA-1 is {actual}, expected "
                f"{sha1}; the partial file was deleted. The server may have sent an error page "
                f"or another version: try again later, or fetch the file yourself and check it "
                f"with `git hash-object`.")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    if sha1 is None:
        log.warning("%s could not be verified: no fingerprint is known for it (its git blob SHA-1 "
                    "is %s). Using it as it is.", dest, actual)
    _remember(dest.resolve(), actual)
    return dest

