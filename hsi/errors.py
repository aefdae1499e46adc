"""The exceptions hsi raises on purpose: every one derives from `HsiError`, and its message names
the key or file at fault and the fix (`hsi.utils.reporting` turns it into one line on stderr)."""

from __future__ import annotations


class HsiError(Exception):
    """An error hsi raises on purpose: the message says what is wrong and what to do."""


class ConfigError(HsiError, ValueError):
    """A setting that cannot work (wrong type, out of range, inconsistent with another)."""


class DataError(HsiError, ValueError):
    """A data file or array that cannot be used as given (missing, broken, wrong shape)."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


class MissingFileError(HsiError, FileNotFoundError):
    """A file the settings name does not exist."""


class MissingKeyError(HsiError, KeyError):
    """A file lacks the variable the settings ask for."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(HsiError, ImportError):
    """An optional package is needed for what was asked; the message names the extra to install."""


class ExportError(HsiError):
    """The network could not be exported, or the exported graph failed its check."""
