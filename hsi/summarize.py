"""Summarise a multirun: `python -m hsi.summarize <multirun folder>` (results.csv, results.md, OA figure)."""

from hsi.studies.summaries import cli

if __name__ == "__main__":
    raise SystemExit(cli())
