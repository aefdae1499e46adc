"""Summarise a multirun: `python -m hsi.summarize <multirun folder>` (results.csv, results.md, OA figure)."""

from hsi.multirun import cli

if __name__ == "__main__":
    raise SystemExit(cli())
