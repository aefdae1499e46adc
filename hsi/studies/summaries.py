"""Summarise a multirun (`python -m hsi.summarize <multirun folder>`, alias `hsi.report`).

Reads every job folder's `.hydra/config.yaml`, `.hydra/overrides.yaml` and `metrics.json` and writes,
into the multirun folder:

- `results.csv`: one row per job (its overrides, OA / AA / kappa, leakage if recorded, the split
  audit: shares of test and validation pixels inside a training window of the run's size and of
  7x7, 9x9, 25x25, from metrics.json or, for older runs, the run's split.npz; train time, status
  `ok` or `failed`);
- `results.md`: mean ± sample std (ddof=1; 0 for a single run) of each setting over seeds, i.e.
  grouped by every override except `seed`, with the number of runs, the mean leakage (test pixels
  inside a training window of the run's size), the audit's test shares for 7x7, 9x9, 25x25 and
  validation share for the run's window, the training time, and a list of failed jobs;
- `oa_heatmap.png`: mean OA over data.patch_size x data.pca.components when both vary, or
  `oa_plot.png`: mean OA ± std against whichever one of them varies alone.

`val_oa` (the best validation OA, what a search optimises) gets a column wherever a job recorded
it, and results.md then ends with the setting of the best mean validation OA as a command that
trains it again over the same seeds (chosen on validation pixels, never on test ones). The mean
training and test pixel counts get columns too. `--beside <other multirun>` adds that multirun's OA
for the same setting (e.g. the same rows on the random split, `experiment=random_leaderboard`)
and the gap between the two (the leakage gap); repeated, its starts are pooled. `--with <other
multirun>` (repeatable) pools another multirun's jobs into the table, for a grid run in several
starts.

A search's folder (`python -m hsi.search`, Optuna) also holds `optimization_results.yaml`:
results.md then ends with the best trial as a command ready to re-run, `python -m hsi.train
<overrides>` (the trial's overrides with the best values, without `hparams_search`, so it runs
once). A trial the search stopped (metrics.json `"status": "pruned"` or `"interrupted"`) is listed
apart, with status `pruned` / `interrupted` in results.csv, and is not a failed job.

A job without metrics.json (crashed, killed, still running) is reported as failed, never skipped.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from hsi.data.splits.leakage import AUDIT_WINDOWS
from hsi.errors import HsiError
from hsi.maps import pyplot, write_figure
from hsi.studies.jobs import (
    AUDIT_KEYS,
    METRICS,
    STOPPED,
    VAL_METRIC,
    Job,
    all_keys,
    find_jobs,
    is_bookkeeping,
    is_number,
    scalar,
    unfinished_notes,
    varying_keys,
)
from hsi.utils.files import atomic_write_text
from hsi.utils.run_files import OA_HEATMAP, OA_PLOT, OPTUNA_RESULTS, RESULTS_CSV, RESULTS_TABLE

log = logging.getLogger("hsi.summarize")

# written by the Optuna sweeper into the multirun folder: best_params, best_value
HEATMAP_AXES = ("data.patch_size", "data.pca.components")
# (the run's own window for test pixels is the `leakage` column)
AUDIT_TABLE = (*((f"test_in_{n}x{n}", f"test in {n}x{n}") for n in AUDIT_WINDOWS),
               ("val_in_window", "val in win"))


def results_csv(jobs: list[Job]) -> str:
    """One row per job: overrides, metrics, train time, status."""
    keys = all_keys(jobs)
    has_leakage = any(j.ok and "leakage" in j.metrics for j in jobs)
    has_val = any(j.ok and is_number(j.metrics.get(VAL_METRIC)) for j in jobs)
    audit = [k for k in AUDIT_KEYS if any(j.ok and is_number(j.metrics.get(k)) for j in jobs)]
    columns = ["job", *keys, *METRICS, *([VAL_METRIC] if has_val else []),
               *(["leakage"] if has_leakage else []), *audit, "train_seconds", "status"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for job in jobs:
        m = job.metrics or {}
        row = [job.name, *(job.overrides.get(k, "") for k in keys), *(m.get(k, "") for k in METRICS)]
        if has_val:
            row.append(m.get(VAL_METRIC, ""))
        if has_leakage:
            row.append(scalar(m.get("leakage", "")))
        row += [m.get(k, "") for k in audit]
        row += [m.get("train_seconds", ""), job.status]
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue()


def nested(metrics: dict[str, Any], key: str) -> Any:
    """metrics.json's value at a dotted key (`pretrain.seconds`), or None."""
    value: Any = metrics
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def format_mean_std(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.4f} ± {std:.4f}"


def group_settings(jobs: list[Job], keys: list[str]) -> dict[tuple, list[Job]]:
    """Jobs grouped by their values of `keys` (in first-seen order)."""
    groups: dict[tuple, list[Job]] = {}
    for job in (j for j in jobs if j.setting_known):
        groups.setdefault(tuple(job.overrides.get(k) for k in keys), []).append(job)
    return groups


def results_markdown(multirun: Path, jobs: list[Job], figure: str | None,
                     best: BestTrial | None = None, beside: list[Job] | None = None,
                     beside_name: str = "") -> str:
    """Mean ± std over seeds per setting (beside another multirun's OA), failed jobs listed, the
    setting of the best mean validation OA, a search's best trial.
    Long on purpose: the sections of results.md, written in the order a reader sees them.
    """
    known = [j for j in jobs if j.setting_known] or jobs
    keys = [k for k in varying_keys(known) if k != "seed"]
    fixed = [f"`{k}={known[0].overrides[k]}`" for k in all_keys(known)
             if k not in keys and k != "seed" and all(k in j.overrides for j in known)
             and len({json.dumps(j.overrides[k]) for j in known}) == 1]
    seeds = sorted({str(j.overrides.get("seed")) for j in jobs if "seed" in j.overrides})
    stopped = [j for j in jobs if j.status in STOPPED]
    jobs = [j for j in jobs if j.status not in STOPPED]
    lines = [f"# Results of {multirun.name}", "",
             f"{len(jobs)} jobs, {sum(j.ok for j in jobs)} with metrics.json"
             + (f" ({len(stopped)} more stopped by the search)" if stopped else "") + "; mean ± sample std "
             "(ddof=1) over the runs of each setting"
             + (f" (seeds {', '.join(seeds)})" if seeds else "") + ".", ""]
    if fixed:
        lines += ["Common overrides: " + " ".join(fixed), ""]
    def recorded(group: list[Job], key: str) -> list[float]:
        return [v for v in (nested(j.metrics, key) for j in group if j.ok) if is_number(v)]

    extras = [(key, title, fmt) for key, title, fmt in ((VAL_METRIC, "val OA", ".4f"),
                                                        ("leakage", "leakage", ".3f"),
                                                        *((k, t, ".3f") for k, t in AUDIT_TABLE),
                                                        ("n_train", "train px", ".0f"),
                                                        ("n_test", "test px", ".0f"),
                                                        ("train_seconds", "train s", ".0f"),
                                                        ("pretrain.seconds", "pretrain s", ".0f"))
              if recorded(jobs, key)]
    beside_groups = group_settings(beside, keys) if beside else {}
    beside_titles = ["OA beside", "gap"] if beside else []
    lines += ["| " + " | ".join([*keys, "n", *(m.upper() if m != "kappa" else m for m in METRICS),
                                 *beside_titles, *(title for _, title, _ in extras), "failed"]) + " |",
              "|" + "---|" * (len(keys) + len(METRICS) + len(beside_titles) + len(extras) + 2)]
    for values, group in group_settings(jobs, keys).items():
        done = [j for j in group if j.ok]
        cells = [format_mean_std([j.metrics[m] for j in done]) if done else "–" for m in METRICS]
        if beside:
            other = [j.metrics["oa"] for j in beside_groups.get(values, []) if j.ok]
            gap = np.mean(other) - np.mean([j.metrics["oa"] for j in done]) if other and done else None
            cells += [format_mean_std(other) if other else "–", f"{gap:+.4f}" if gap is not None else "–"]
        for key, _, fmt in extras:  # plain means
            numbers = recorded(done, key)
            cells.append(format(np.mean(numbers), fmt) if numbers else "–")
        lines.append("| " + " | ".join([*(str(v) for v in values), str(len(done)), *cells,
                                        str(len(group) - len(done))]) + " |")
    if beside:
        lines += ["", f"OA beside: the same setting's OA in {beside_name} (mean ± std over its runs); "
                  "gap: that mean minus this table's mean OA."]
    if stopped:
        lines += ["", f"{len(stopped)} trial(s) stopped by the search, not failures, left out of the "
                  f"table above:", ""]
        for job in stopped:
            setting = ", ".join(f"{k}={v}" for k, v in job.overrides.items() if k in keys or k == "seed")
            val = job.metrics.get(VAL_METRIC)
            where = f", best {VAL_METRIC} {val:.4f}" if is_number(val) else ""
            epochs = f" after {job.metrics['epochs']} epoch(s)" if job.metrics.get("epochs") else ""
            lines.append(f"- job {job.name} ({setting or 'no overrides'}): {job.status}{epochs}"
                         f"{where} ({STOPPED[job.status]})")
    failed = [j for j in jobs if not j.ok]
    if failed:
        lines += ["", f"**{len(failed)} failed job(s)**, left out of the means above:", ""]
        for job in failed:
            setting = ", ".join(f"{k}={v}" for k, v in job.overrides.items() if k in keys or k == "seed")
            lines.append(f"- job {job.name} ({setting or 'no overrides'}): {job.problem}")
    chosen = best_setting(jobs, keys) if best is None else None
    if chosen is not None:
        lines += ["", "## Best setting on validation", "", chosen[0], "", "```bash", chosen[1], "```"]
    if best is not None:
        lines += ["", "## Best trial", "", best.describe(), "", "```bash", best.command, "```"]
    if figure:
        lines += ["", f"![mean OA]({figure})"]
    return "\n".join(lines) + "\n"


def best_setting(jobs: list[Job], keys: list[str]) -> tuple[str, str] | None:
    """The setting with the best mean validation OA, and a command that trains it again over the
    same seeds (one of its jobs' overrides with the seeds swept); None without validation OA or
    with a single setting."""
    groups = {values: [j for j in group if j.ok and is_number(j.metrics.get(VAL_METRIC))]
              for values, group in group_settings(jobs, keys).items()}
    groups = {values: group for values, group in groups.items() if group}
    if len(groups) < 2:
        return None
    values, group = max(groups.items(),
                        key=lambda item: np.mean([j.metrics[VAL_METRIC] for j in item[1]]))
    seeds = sorted({str(j.overrides["seed"]) for j in group if "seed" in j.overrides}, key=_seed_order)
    lines = [line for line in group[0].lines if _override_key(line) != "seed"]
    if seeds:
        lines.append("seed=" + ",".join(seeds))
    setting = ", ".join(f"{k}={v}" for k, v in zip(keys, values)) or "the only setting"
    mean_val = np.mean([j.metrics[VAL_METRIC] for j in group])
    text = (f"{setting}: mean {VAL_METRIC} {mean_val:.4f} over {len(group)} run(s), the best of "
            f"{len(groups)} settings on validation pixels (the test metrics played no part). Train "
            "it again with:")
    multi = ["-m"] if len(seeds) > 1 else []
    return text, " ".join(["python -m hsi.train", *multi, *(shlex.quote(o) for o in lines)])


def _seed_order(seed: str) -> tuple[int, int | str]:
    return (0, int(seed)) if seed.lstrip("-").isdigit() else (1, seed)


def _numeric_sorted(values: set[Any]) -> list[Any]:
    try:
        return sorted(values, key=float)
    except (TypeError, ValueError):
        return sorted(values, key=str)


def oa_figure(jobs: list[Job], out_dir: Path) -> str | None:
    """oa_heatmap.png when patch size and PCA components both vary, oa_plot.png when one does."""
    plt = pyplot()
    done = [j for j in jobs if j.ok]
    axes = [k for k in HEATMAP_AXES if k in varying_keys(done)]
    if not axes:
        return None
    others = [k for k in varying_keys(done) if k not in (*axes, "seed")]
    note = f" (mean over {', '.join(others)} too)" if others else ""
    if len(axes) == 2:
        rows = _numeric_sorted({j.overrides.get(axes[0]) for j in done})
        cols = _numeric_sorted({j.overrides.get(axes[1]) for j in done})
        grid = np.full((len(rows), len(cols)), np.nan)
        for (r, c), group in group_settings(done, list(axes)).items():
            grid[rows.index(r), cols.index(c)] = mean_std([j.metrics["oa"] for j in group])[0]
        fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 3, 0.8 * len(rows) + 2.5))
        im = ax.imshow(grid, cmap="viridis", origin="lower")
        ax.set_xticks(range(len(cols)), [str(c) for c in cols])
        ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        ax.set_xlabel(axes[1])
        ax.set_ylabel(axes[0])
        for i in range(len(rows)):
            for k in range(len(cols)):
                if not math.isnan(grid[i, k]):
                    ax.text(k, i, f"{grid[i, k]:.3f}", ha="center", va="center", fontsize=8,
                            color="white" if grid[i, k] < np.nanmean(grid) else "black")
        fig.colorbar(im, ax=ax, label="mean OA")
        name = OA_HEATMAP
    else:
        xs = _numeric_sorted({j.overrides.get(axes[0]) for j in done})
        stats = [mean_std([j.metrics["oa"] for j in done if j.overrides.get(axes[0]) == x]) for x in xs]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.errorbar([str(x) for x in xs], [s[0] for s in stats], yerr=[s[1] for s in stats],
                    marker="o", capsize=4)
        ax.set_xlabel(axes[0])
        ax.set_ylabel("OA (mean ± std)")
        name = OA_PLOT
    ax.set_title("Test OA" + note, fontsize=10)
    fig.tight_layout()
    write_figure(out_dir / name, fig)
    return name


@dataclass
class BestTrial:
    """A search's best trial, from the sweeper's optimization_results.yaml."""

    params: dict[str, Any]
    value: float | None
    command: str
    job: str | None  # its job folder here, None when it ran in an earlier folder of the study

    def describe(self) -> str:
        value = f"{self.value:.4f}" if is_number(self.value) else str(self.value)
        where = (f"job {self.job}" if self.job is not None else
                 "a trial of an earlier multirun folder of the same study (a resumed search)")
        return (f"The best trial of the study, {where}, reached {VAL_METRIC} {value} (best validation "
                f"OA; test pixels are never the objective). Train it again with:")


def _override_key(line: str) -> str:
    return line.split("=", 1)[0].lstrip("+~")


def _same_value(line: str, value: Any) -> bool:
    """Does the override `line` (key=value) set `value`, as Optuna stored it?"""
    try:
        parsed = OverridesParser.create().parse_override(line).value()
    except Exception:  # noqa: BLE001 - an odd override never matches
        return False
    if is_number(parsed) and is_number(value):
        return math.isclose(float(parsed), float(value), rel_tol=1e-12, abs_tol=0.0)
    return str(parsed) == str(value)


def _override_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def best_trial(multirun: Path, jobs: list[Job]) -> BestTrial | None:
    """The best trial of a search and the command that trains it once (None without a search).

    The command is a job's own overrides (`.hydra/overrides.yaml`: the swept values and the
    command line's fixed ones) with the searched keys set to the best values, and without
    `hparams_search=...`, which would start another search.
    """
    path = multirun / OPTUNA_RESULTS
    try:
        results = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(results, dict) or not isinstance(results.get("best_params"), dict):
        return None  # a multi-objective study (Pareto front) has no single best trial
    params: dict[str, Any] = results["best_params"]
    lines_of = {job.name: job.lines for job in jobs if job.lines}
    match = next((name for name, lines in lines_of.items()
                  if all(any(_override_key(line) == key and _same_value(line, value) for line in lines)
                         for key, value in params.items())), None)
    template = lines_of.get(match) if match is not None else next(iter(lines_of.values()), [])
    overrides = [line for line in template
                 if _override_key(line) not in params and _override_key(line) != "hparams_search"]
    overrides = [f"{key}={_override_value(value)}" for key, value in params.items()] + overrides
    command = " ".join(["python -m hsi.train", *(shlex.quote(o) for o in overrides)])
    return BestTrial(params, results.get("best_value"), command, match)


def _jobs_of(multirun: Path) -> list[Job]:
    if not multirun.is_dir():
        raise FileNotFoundError(f"No multirun folder at {multirun}")
    jobs = find_jobs(multirun)
    if not jobs:
        raise FileNotFoundError(f"No job folders (with .hydra/ or metrics.json) in {multirun}: "
                                f"pass the multirun folder itself, e.g. outputs/train/multiruns/<time>")
    return jobs


def summarize(multirun: str | Path, beside: str | Path | list[str | Path] | None = None,
              more: list[str | Path] | None = None) -> dict[str, Any]:
    """Write results.csv, results.md and the OA figure into `multirun`; return a summary.

    `beside`: another multirun (or several, pooled: one grid run in several starts) whose OA
    for the same settings goes into a column of results.md.
    `more`: other multiruns whose jobs join this one's in the table (a grid run in several
    starts), named `<their folder>/<job>`.
    """
    multirun = Path(multirun)
    check_outputs_are_ours(multirun)
    jobs = _jobs_of(multirun)
    unfinished = [f"{multirun}: {note}" for note in unfinished_notes(multirun, len(jobs))]
    seen = {multirun.resolve()}
    for folder in map(Path, more or []):
        if folder.resolve() in seen:
            log.warning("--with %s: already in the table, not counted twice.", folder)
            continue
        seen.add(folder.resolve())
        pooled = _jobs_of(folder)  # read once: every job's folder, overrides and metrics
        unfinished += [f"{folder}: {note}" for note in unfinished_notes(folder, len(pooled))]
        for job in pooled:
            job.name = f"{folder.name}/{job.name}"
            jobs.append(job)
    besides = [beside] if isinstance(beside, (str, Path)) else list(beside or [])
    other = [job for folder in dict.fromkeys(Path(f).resolve() for f in besides)
             for job in _jobs_of(folder)] if besides else None
    if other:
        check_beside(jobs, other, besides)
    for job in jobs:
        if job.status == "failed":
            log.warning("Job %s failed: %s", job.name, job.problem)
    for note in unfinished:
        log.warning("Unfinished: %s", note)
    atomic_write_text(multirun / RESULTS_CSV, results_csv(jobs))
    figure = oa_figure(jobs, multirun)
    best = best_trial(multirun, jobs)
    text = results_markdown(multirun, jobs, figure, best, other, ", ".join(map(str, besides)))
    if unfinished:
        text = text.replace("\n\n", "\n\n**Unfinished sweep**: " + "; ".join(unfinished)
                            + ". The table holds the jobs done so far.\n\n", 1)
    atomic_write_text(multirun / RESULTS_TABLE, text)
    failed = [j.name for j in jobs if j.status == "failed"]
    stopped = [j.name for j in jobs if j.status in STOPPED]
    log.info("%d jobs (%d failed, %d stopped by the search)%s; wrote results.csv, results.md%s in %s",
             len(jobs), len(failed), len(stopped), ", sweep unfinished" if unfinished else "",
             f", {figure}" if figure else "", multirun)
    return {"jobs": len(jobs), "failed": failed, "stopped": stopped, "figure": figure,
            "unfinished": unfinished,
            "best_command": best.command if best else None, "best_job": best.job if best else None}


# the first line of the files summarize writes: a file without it is the user's, never overwritten
OWN_HEADERS = {RESULTS_TABLE: "# Results of ", RESULTS_CSV: "job,"}


def check_outputs_are_ours(multirun: Path) -> None:
    """Refuse to overwrite a results.md / results.csv that hsi.summarize did not write."""
    for name, header in OWN_HEADERS.items():
        path = multirun / name
        if path.is_file():
            try:
                first = path.read_text(errors="replace")[:len(header)]
            except OSError:
                first = ""
            if first != header:
                raise SummaryError(f"{path} was not written by hsi.summarize; it is not overwritten: move "
                                   f"it elsewhere and summarize again.")


# keys that may differ between a table and the multirun --beside it: the split compared
BESIDE_MAY_DIFFER = ("experiment", "data/split", "data.split.")


def check_beside(jobs: list[Job], other: list[Job], besides: list[Any]) -> None:
    """`--beside` compares the same settings: keys fixed in both tables must agree, except the split."""
    def fixed(group: list[Job]) -> dict[str, str]:
        done = [j for j in group if j.lines]
        keys = [k for k in all_keys(done) if not is_bookkeeping(k) and k != "seed"
                and not k.startswith(BESIDE_MAY_DIFFER) and k not in BESIDE_MAY_DIFFER]
        return {k: json.dumps(done[0].overrides.get(k)) for k in keys
                if len({json.dumps(j.overrides.get(k)) for j in done}) == 1}

    ours, theirs = fixed(jobs), fixed(other)
    varying_here = set(varying_keys(jobs))
    differ = [f"{k} ({ours.get(k, 'unset')} here, {theirs.get(k, 'unset')} beside)"
              for k in sorted(set(ours) | set(theirs))
              if k not in varying_here and ours.get(k) != theirs.get(k)]
    if differ:
        raise SummaryError(f"--beside {', '.join(map(str, besides))} was run with other fixed settings: "
                           f"{'; '.join(differ)}; only the split may differ. Summarize it on its own.")


class SummaryError(HsiError, ValueError):
    """A summary that would be wrong or overwrite a user's file; the message says why."""


def cli(argv: list[str] | None = None, prog: str = "python -m hsi.summarize") -> int:
    """The command line of the multirun summary: exit status 1 when a job failed."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("multirun", type=Path, help="a multirun folder (outputs/<task>/multiruns/<time>)")
    parser.add_argument("--with", dest="more", type=Path, action="append", default=[],
                        help="another multirun whose jobs join the table (a grid run in several "
                             "starts); repeatable")
    parser.add_argument("--beside", type=Path, action="append", default=[],
                        help="another multirun (same settings, e.g. on the random split) whose OA "
                             "goes beside each setting's, with the gap; repeatable (its starts pooled)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        summary = summarize(args.multirun, args.beside, args.more)
    except FileNotFoundError as error:
        parser.error(str(error))
    except HsiError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    print((args.multirun / RESULTS_TABLE).read_text())
    if summary["best_command"]:
        print(f"best trial: {summary['best_command']}")
    for note in summary["unfinished"]:
        print(f"unfinished: {note}", file=sys.stderr)
    return 1 if summary["failed"] or summary["unfinished"] else 0
