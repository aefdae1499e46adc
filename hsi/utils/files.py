"""Atomic writes: a file appears complete or not at all, and nothing existing is clobbered halfway."""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from hsi.errors import HsiError
from hsi.utils.run_files import LAST_CHECKPOINT, PART_MARK


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    return atomic_write(path, write)


def part_path(path: str | Path, tag: str = "") -> Path:
    """Where this process writes `path` before renaming it into place, `.<stem>.<pid>[.<tag>].part<suffix>`
    (a killed process leaves it behind: `claim_run_folder` removes a dead run's ones)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}{f'.{tag}' if tag else ''}.{PART_MARK}{path.suffix}")


def process_alive(host: str, pid: int) -> bool | None:
    """Whether process `pid` of machine `host` runs (None: another machine, cannot tell)."""
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


LOCK_NAME = ".hsi-run.lock"


def claim_run_folder(folder: str | Path) -> Path:
    """Claim `folder` for one run: create it, or accept it empty, and take its lock file.

    Returns the lock file; raises `RunFolderTaken` with the reason otherwise. A folder that already
    holds anything (a finished run's `.hydra/`, metrics, checkpoints, or files of yours) is
    refused, so nothing in it is overwritten; the lock (created exclusively) keeps two runs
    started at once from sharing a folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    if lock.exists():
        raise RunFolderTaken(_dead_owner_cleared(folder, lock) or
                             f"{folder} is in use by another run (lock file {lock}: "
                             f"{_read(lock)}). Leave hydra.run.dir unset for a fresh folder; if "
                             f"no run is using it any more, delete the lock file.")
    present = sorted(p.name for p in folder.iterdir())
    if present:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise RunFolderTaken(f"{folder} already holds files ({shown}); a run never writes into a "
                             f"folder that holds another run or your files. Leave hydra.run.dir "
                             f"unset for a fresh timestamped folder, or name a new one; to continue "
                             f"a run's training use ckpt_path=<run>/checkpoints/last.ckpt.")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise RunFolderTaken(f"{folder} was claimed by another run a moment ago ({_read(lock)}); "
                             f"leave hydra.run.dir unset for a fresh folder.") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    return lock


def _dead_owner_cleared(folder: Path, lock: Path) -> str | None:
    """If the run that locked `folder` died on this machine (killed: no `finally` ran), remove its
    lock and half-written `.part` files and say how to go on; None if it may still run."""
    owner = re.fullmatch(r"pid (\d+) on (\S+)", _read(lock))
    if owner is None or process_alive(owner[2], int(owner[1])) is not False:
        return None
    pid = owner[1]
    patterns = (f".*.{pid}.{PART_MARK}*", f".*.{pid}.*.{PART_MARK}*")
    parts = sorted({p for pattern in patterns for p in folder.glob(pattern)})
    for part in parts:
        part.unlink(missing_ok=True)
    lock.unlink(missing_ok=True)
    removed = f" and its half-written files ({', '.join(p.name for p in parts)})" if parts else ""
    checkpoint = folder / LAST_CHECKPOINT
    resume = (f"continue its training in a fresh folder with ckpt_path={checkpoint}" if checkpoint.is_file()
              else "it saved no checkpoint to continue from")
    return (f"{folder} was left by run pid {pid} on {owner[2]}, which is no longer running (killed?): its "
            f"lock{removed} are removed. Its other files stay; {resume}, or delete the folder to reuse its "
            f"name (leave hydra.run.dir unset for a fresh timestamped folder).")


def release_run_folder(folder: str | Path) -> None:
    (Path(folder) / LOCK_NAME).unlink(missing_ok=True)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip() or "empty"
    except OSError:
        return "unreadable"


class RunFolderTaken(HsiError):
    """The run folder already holds a run or files, or another run holds its lock."""
