"""How a command reports the errors hsi raises on purpose.

A command's entry point runs its work through `report_errors`, which turns an `HsiError` into one
line on stderr and exit status 1 (the traceback too with `HYDRA_FULL_ERROR=1` or
`HSI_TRACEBACK=1`). Anything else is a bug or an unexpected failure and keeps its full traceback.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import OmegaConf

from hsi.errors import HsiError
from hsi.utils.files import LOCK_NAME

T = TypeVar("T")

log = logging.getLogger("hsi")


def traceback_wanted() -> bool:
    return any(os.environ.get(name, "") not in ("", "0") for name in ("HYDRA_FULL_ERROR", "HSI_TRACEBACK"))


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class JobFailed(HsiError, CompactHydraException):
    """A multirun job's deliberate error as Hydra reports it at the end of the sweep: its message
    only (Hydra prints a `CompactHydraException` without the traceback)."""


def exit_with(error: HsiError) -> None:
    """Outside a command's work (a Hydra callback): one line on stderr and exit status 1, or the
    traceback when asked for."""
    if traceback_wanted():
        raise error
    print(f"Error: {error}", file=sys.stderr)
    raise SystemExit(1) from None


def deliberate_cause(error: BaseException) -> HsiError | None:
    """The `HsiError` an exception is or wraps (Hydra's instantiate wraps what a constructor
    raises), or None for an unexpected error."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, HsiError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def report_errors(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a command's work; an `HsiError` ends it with one clear line and exit status 1.

    A run folder that holds nothing but what Hydra wrote at the start (its config and log) is
    removed, so a refused run leaves no folder behind. In a multirun the error is logged and
    raised again as `JobFailed`, so Hydra marks that job failed, runs the others and ends with the
    failed job's overrides and its one line, not a traceback.
    """
    try:
        return work(*args, **kwargs)
    except Exception as raised:
        error = deliberate_cause(raised)
        if error is None or traceback_wanted():
            raise
        message = f"Error: {error}"
        if in_multirun():
            log.error("%s", message)
            raise JobFailed(message) from None
        _to_log_files(message)
        _remove_unused_run_folder()
        print(message, file=sys.stderr)
        print("(set HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


def _to_log_files(message: str) -> None:
    """The error in the run's log file (the console gets it on stderr, once)."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _remove_unused_run_folder() -> None:
    """Remove this run's folder if it holds only what Hydra wrote at the start; else unlock it."""
    if not HydraConfig.initialized():
        return
    output_dir = OmegaConf.select(HydraConfig.get(), "runtime.output_dir", default=None,
                                  throw_on_missing=False)
    if not output_dir or not Path(output_dir).is_dir():
        return
    folder = Path(output_dir)
    names = {p.name for p in folder.iterdir()}
    if names <= {".hydra", LOCK_NAME, f"{HydraConfig.get().job.name}.log"}:
        logging.shutdown()  # close the log file before removing it
        shutil.rmtree(folder, ignore_errors=True)
    else:  # the run got further: keep its files, free the folder's lock
        (folder / LOCK_NAME).unlink(missing_ok=True)
