"""`python -m hsi.report <multirun folder>`: the earlier name of `python -m hsi.summarize`."""

from hsi.studies.summaries import cli

if __name__ == "__main__":
    raise SystemExit(cli(prog="python -m hsi.report"))
