"""Errors hsi raises on purpose, and how a command reports them.

Every error the project raises deliberately derives from `HsiError`; its message names the key or
file at fault and the fix. A command's entry point runs its work through `report_errors`, which
turns such an error into one line on stderr and exit status 1 (the traceback too with
`HYDRA_FULL_ERROR=1` or `HSI_TRACEBACK=1`). Anything else is a bug or an unexpected failure and
keeps its full traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("hsi")


class HsiError(Exception):
    """An error hsi raises on purpose: the message says what is wrong and what to do."""


class ConfigError(HsiError, ValueError):
    """A setting that cannot work (wrong type, out of range, inconsistent with another)."""


class DataError(HsiError, ValueError):
    """A data file or array that cannot be used as given (missing, broken, wrong shape)."""


def traceback_wanted() -> bool:
    return any(os.environ.get(name, "") not in ("", "0") for name in ("HYDRA_FULL_ERROR", "HSI_TRACEBACK"))


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def report_errors(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a command's work; an `HsiError` ends it with one clear line and exit status 1.

    In a multirun the error is logged and re-raised, so Hydra marks that job failed and runs
    the others.
    """
    try:
        return work(*args, **kwargs)
    except HsiError as error:
        if traceback_wanted():
            raise
        message = f"Error: {error}"
        log.error("%s", message)
        if in_multirun():
            raise
        if not _logged_to_stderr():
            print(message, file=sys.stderr)
        print("(set HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


def _logged_to_stderr() -> bool:
    """Whether the `hsi` logger's records already reach stderr (Hydra's console handler)."""
    logger: logging.Logger | None = log
    while logger is not None:
        if any(isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stderr
               for h in logger.handlers):
            return True
        logger = logger.parent if logger.propagate else None
    return False


class MissingFileError(HsiError, FileNotFoundError):
    """A file the settings name does not exist."""


class MissingKeyError(HsiError, KeyError):
    """A file lacks the variable the settings ask for."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0]) if self.args else ""
