"""TensorBoard as the dashboard of runs and sweeps.

`DashboardLogger` (conf/logger/tensorboard.yaml) writes a run's events to
`<run folder>/tensorboard/<name>/`, `<name>` made of the overrides that distinguish the run
(`patch_size=11,seed=1`), so TensorBoard names the run after them while the run folder stays where
Hydra puts it; a sweep's jobs sit under the sweep's folder. What it writes:

- scalars with the epoch as step (epochs completed: 1 after the first epoch; test at the last
  epoch): `curves/` (train and validation OA and loss, learning rate: the first group of Time
  Series), `train/` and `val/` (AA, kappa), `test/`, `per_class/val/<k>_<class>` after every
  validation and `per_class/test/<k>_<class>`;
- the run's hyperparameters (`run_hparams`: what identifies a run, no paths or worker counts) as an
  hparams session in the child run `<name>/hparams`, with the end-of-run metrics there
  (`summary/`): best validation OA, test OA / AA / kappa, training seconds. Only the session is
  written, no per-run experiment summary: TensorBoard then builds the HPARAMS table from every
  run it loads, with the keys whose values differ first and string values as discrete domains
  it can filter on (it uses a single experiment summary for all runs when any run has one);
- text: the composed config, the overrides, a multirun job's place in its sweep, the test's
  classification report; figures: the split, the confusion matrix titled with OA / AA / kappa,
  the map.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, ListConfig, OmegaConf
from tensorboard.plugins.hparams import summary_v2 as hp
from torch.utils.tensorboard import SummaryWriter

from hsi.maps import confusion_matrix_figure
from hsi.models.metrics import recalls
from hsi.run.precision import run_precision

# settings that say where and how fast a run ran, not what it is: never hparams nor run names
BOOKKEEPING = re.compile(
    r"(^|\.)(paths|hydra|data_dir|cache|cache_dir|num_workers|pin_memory|download|eval_batch_size|"
    r"eval_path|progress_bar|refresh_rate|log_every_n_steps|enable_progress_bar|task_name|"
    r"ckpt_path|dirpath|default_root_dir|accelerator|devices|strategy|num_nodes|map|map_method|"
    r"train|test|optimized_metric|logger)(\.|$)|_path$|_dir$|^(trainer|callbacks|debug)$")
# trainer settings that change the result
TRAINER_KEYS = ("max_epochs", "min_epochs", "precision", "accumulate_grad_batches", "gradient_clip_val",
                "limit_train_batches", "check_val_every_n_epoch")
# Lightning's epoch-level metrics shown first: Time Series sorts groups and cards by name and opens
# the first two groups; `curves` comes first, and in it OA (upper case sorts first) before loss
CURVES = {"train/oa": "curves/OA_train", "val/oa": "curves/OA_val",
          "train/loss": "curves/loss_train", "val/loss": "curves/loss_val"}
SESSION_RUN = "hparams"  # child run of the hparams session and the end-of-run metrics
MAX_NAME = 120


# -- where the run stands in Hydra's view ----------------------------------------------------
@dataclass
class RunContext:
    """The overrides of a run and, for a multirun job, its sweep."""

    overrides: list[str] = field(default_factory=list)  # this run's task overrides
    multirun: bool = False
    varying: list[str] = field(default_factory=list)  # keys the sweep varies, command-line order
    sweep_overrides: list[str] = field(default_factory=list)  # the sweep's overrides as given
    sweep_dir: str | None = None
    job_num: int | None = None
    job_count: int | None = None
    choices: dict[str, str] = field(default_factory=dict)  # config groups' chosen options


def _parse(overrides: list[str]) -> list[Any]:
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # an override Hydra itself accepted but this parser does not: no names from it
        return []


def run_context() -> RunContext:
    """The run's context from Hydra (empty outside a Hydra app)."""
    if not HydraConfig.initialized():
        return RunContext()
    hc = HydraConfig.get()
    overrides = [str(o) for o in hc.overrides.task]
    choices = {str(k): str(v) for k, v in (hc.runtime.choices or {}).items() if v is not None}
    context = RunContext(overrides=overrides, choices=choices)
    if hc.mode != RunMode.MULTIRUN:
        return context
    context.multirun = True
    context.job_num = int(hc.job.num) if hc.job.get("num") is not None else None
    # the job's folder is <sweep dir>/<job>: hydra.sweep.dir would resolve `${now:}` again
    output_dir = OmegaConf.select(hc, "runtime.output_dir", throw_on_resolution_failure=False)
    context.sweep_dir = str(Path(output_dir).parent) if output_dir else None
    swept: list[Any] = []
    saved = Path(context.sweep_dir or "") / "multirun.yaml"
    if context.sweep_dir and saved.is_file():  # the sweep's command line, written before its jobs
        sweep_cfg = OmegaConf.load(saved)
        context.sweep_overrides = [str(o) for o in OmegaConf.select(sweep_cfg, "hydra.overrides.task") or []]
        swept = [o for o in _parse(context.sweep_overrides) if o.is_sweep_override()]
    params = OmegaConf.select(hc, "sweeper.params") or {}  # a sweep config's or a search's space
    given = {o.key_or_group for o in swept}
    spaced = [o for o in _parse([f"{k}={v}" for k, v in params.items()]) if o.key_or_group not in given]
    context.varying = list(dict.fromkeys([o.key_or_group for o in swept] + [str(k) for k in params]))
    trials = OmegaConf.select(hc, "sweeper.n_trials")
    if trials is not None:  # a search: as many jobs as trials
        context.job_count = int(trials)
        return context
    try:
        context.job_count = math.prod(len(list(o.sweep_string_iterator())) for o in [*swept, *spaced])
    except Exception:  # a range or interval: the count is the sweeper's
        context.job_count = None
    return context


def _job_values(context: RunContext) -> dict[str, str]:
    """This run's override values by key (`data.patch_size` -> `11`)."""
    return {o.key_or_group: o.get_value_element_as_str() for o in _parse(context.overrides)
            if not o.is_delete()}


def _short(keys: list[str]) -> dict[str, str]:
    """Each key's last part (`data.pca.components` -> `components`), the whole key where two clash."""
    last = {k: k.replace("/", ".").rsplit(".", 1)[-1] for k in keys}
    clashes = {v for v in last.values() if list(last.values()).count(v) > 1}
    return {k: (k.replace("/", ".") if last[k] in clashes else last[k]) for k in keys}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._,=+\-\[\]]", "_", text)


def run_name(context: RunContext) -> str:
    """The run's TensorBoard name: the overrides its sweep varies (a multirun job) or its own
    overrides but bookkeeping ones (a single run), e.g. `patch_size=11,seed=1`."""
    values = _job_values(context)
    if context.multirun:
        keys = [k for k in context.varying if k in values]
    else:
        keys = [k for k in values if not BOOKKEEPING.search(k.replace("/", "."))]
    if not keys:
        return f"job_{context.job_num}" if context.multirun and context.job_num is not None else "run"
    short = _short(keys)
    name = _safe(",".join(f"{short[k]}={values[k]}" for k in keys))
    if len(name) > MAX_NAME:  # a folder name must stay short; the hash keeps names apart
        name = f"{name[:MAX_NAME - 9]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


# -- the settings that identify a run --------------------------------------------------------
def _value(value: Any) -> bool | int | float | str:
    """A value TensorBoard's hparams take: null as the string `null`, lists and maps as JSON."""
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return json.dumps(value, separators=(",", ":"))


def _short_target(target: Any) -> str:
    return str(target).rsplit(".", 1)[-1]


def _flatten(prefix: str, node: Any, out: dict[str, Any]) -> None:
    """Leaves of a resolved config node; a `_target_` names its node by its class's short name."""
    if isinstance(node, dict):
        if "_target_" in node:
            out[prefix] = _short_target(node["_target_"])
        for key, value in node.items():
            if not str(key).startswith("_"):
                _flatten(f"{prefix}.{key}", value, out)
    else:
        out[prefix] = node


def _resolved(cfg: DictConfig, key: str) -> Any:
    node = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    if isinstance(node, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(node, resolve=True)
        except Exception:  # an unresolvable interpolation (e.g. a hydra: one outside Hydra)
            return OmegaConf.to_container(node, resolve=False)
    return node


def run_hparams(cfg: DictConfig, context: RunContext | None = None) -> dict[str, bool | int | float | str]:
    """What identifies a run: the model and its knobs, optimizer, scheduler, loss, augmentation,
    window, PCA, split strategy and its keys, seed, epochs; the keys a multirun varies first.

    Keys are the config's (`data.patch_size`), so they match the sweep's overrides; bookkeeping
    (paths, workers, caches, downloads) is left out; null is kept as `null`."""
    context = context or run_context()
    flat: dict[str, Any] = {}
    model = _resolved(cfg, "model") or {}
    target = (model.get("net") or model).get("_target_", "") if isinstance(model, dict) else ""
    flat["model"] = context.choices.get("model") or _short_target(target)
    if isinstance(model, dict):
        _flatten("model", {k: v for k, v in model.items() if k != "_target_"}, flat)
    data = _resolved(cfg, "data") or {}
    if isinstance(data, dict):
        _flatten("data", {k: v for k, v in data.items() if k != "_target_"}, flat)
    if "data" in context.choices:
        flat["data"] = context.choices["data"]
    for group in ("pretrain", "semi"):  # learning from unlabelled pixels, when on
        node = _resolved(cfg, group)
        if isinstance(node, dict) and node.get("method", "none") != "none":
            _flatten(group, node, flat)
    for group in ("augment", "experiment"):  # the named recipe a run starts from
        if context.choices.get(group):
            flat[group] = context.choices[group]
    flat["seed"] = cfg.get("seed")
    for key in TRAINER_KEYS:
        value = OmegaConf.select(cfg, f"trainer.{key}", default="__absent__")
        if value != "__absent__":
            flat[f"trainer.{key}"] = value
    used = run_precision(cfg)[1] if isinstance(cfg.get("trainer"), DictConfig) else None
    if used is not None:  # trainer.precision=auto resolved on this machine (hsi.run.precision)
        flat["trainer.precision_used"] = used
    for key in ("early_stopping.patience", "early_stopping.monitor"):
        value = OmegaConf.select(cfg, f"callbacks.{key}", default="__absent__")
        if value != "__absent__":
            flat[f"callbacks.{key}"] = value
    for key in ("data.split_seed", "data.augment.seed"):  # `${seed}` unless set apart
        if flat.get(key) == flat["seed"]:
            flat.pop(key)
    kept = {k: _value(v) for k, v in flat.items() if not BOOKKEEPING.search(k)}
    for key in context.varying:  # a swept key that is not a leaf above (e.g. a group: `model`)
        name = key.replace("/", ".")
        if name not in kept and not BOOKKEEPING.search(name):
            value = _job_values(context).get(key)
            if value is not None:
                kept[name] = _value(yaml.safe_load(value) if value else value)
    first = [k.replace("/", ".") for k in context.varying if k.replace("/", ".") in kept]
    return {k: kept[k] for k in [*first, *(k for k in kept if k not in first)]}


# -- the logger ------------------------------------------------------------------------------
def curve_tag(name: str) -> str:
    """The dashboard's tag of a Lightning metric: OA and loss under `curves/`, so they open first."""
    if name in CURVES:
        return CURVES[name]
    if name.startswith("lr-"):  # LearningRateMonitor: `lr-Adam`, `lr-Adam/pg2`
        parts = name.split("/", 1)
        return "curves/lr" + (f"_{parts[1]}" if len(parts) > 1 else "")
    return name


class DashboardLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger, laid out as a dashboard (see the module's docstring).

    `version=None` names the run after its distinguishing overrides (`run_name`); epoch-level
    metrics are written with the epoch as step; hyperparameters are an hparams session in the
    child run `hparams`, without a per-run experiment summary, and go to `hparams.yaml`.
    """

    def __init__(self, save_dir: str, name: str | None = "", version: int | str | None = None,
                 **kwargs: Any) -> None:
        if version is None:
            version = run_name(run_context())
        kwargs.setdefault("default_hp_metric", False)
        super().__init__(save_dir, name=name, version=version, **kwargs)
        self.epoch: int | None = None  # the epoch running, set by `DashboardCallback`
        self._session: SummaryWriter | None = None

    @property
    def trial_id(self) -> str:
        """HPARAMS' trial ID: the run's name, then its folder (`<sweep>/<job>`), unique per run."""
        folder = Path(self.save_dir).resolve().parent
        return f"{self.version} ({folder.parent.name}/{folder.name})"

    @property
    def session_dir(self) -> str:
        return os.path.join(self.log_dir, SESSION_RUN)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Epoch-level metrics (Lightning adds `epoch`) at step = epochs completed; the learning
        rate, logged as an epoch starts, at the step of that epoch's metrics."""
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        if epoch is not None:
            testing = all(k.startswith("test/") for k in metrics)
            step = int(epoch) + (0 if testing else 1)
        elif self.epoch is not None and any(k.startswith("lr-") for k in metrics):
            step = self.epoch + 1
        if metrics:
            super().log_metrics({curve_tag(k): v for k, v in metrics.items()}, step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: dict[str, float] | None = None,
                        step: int | None = None) -> None:
        """The hparams session (and, with `metrics`, the summary metrics) in the child run; the
        values in `hparams.yaml`."""
        params = {k: _value(v) for k, v in dict(params).items()}
        self.hparams.update(params)
        writer = self.session_writer()
        writer.file_writer.add_summary(hp.hparams_pb(params, trial_id=self.trial_id,
                                                     start_time_secs=self._start_time))
        for key, value in (metrics or {}).items():
            if value is not None and math.isfinite(float(value)):
                writer.add_scalar(key, float(value), step or 0)
        writer.flush()
        self.experiment.flush()
        save_hparams_to_yaml(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), self.hparams)

    def session_writer(self) -> SummaryWriter:
        if self._session is None:
            self._start_time = time.time()
            self._session = SummaryWriter(self.session_dir)
        return self._session

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if self._session is not None:
            self._session.flush()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_session"] = None
        return state


def dashboard_loggers(loggers: list[Any]) -> list[DashboardLogger]:
    return [logger for logger in loggers if isinstance(logger, DashboardLogger)]


def _class_tag(stage: str, k: int, name: str) -> str:
    return f"per_class/{stage}/{k + 1:02d}_{_safe(str(name))}"


class DashboardCallback(Callback):
    """Tells the dashboard loggers which epoch runs (the learning rate's step) and writes each
    validation's per-class accuracy (`per_class/val/<k>_<class>`)."""

    def __init__(self, loggers: list[DashboardLogger], class_names: list[str]) -> None:
        self.loggers = loggers
        self.class_names = list(class_names)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        for logger in self.loggers:
            logger.epoch = trainer.current_epoch

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        metrics = getattr(pl_module, "val_metrics", None)
        if trainer.sanity_checking or metrics is None or "aa" not in metrics:
            return
        confusion = metrics["aa"].confmat.detach()
        if trainer.world_size > 1:  # every process holds its share of the pixels
            confusion = pl_module.all_gather(confusion).sum(0)
        if not trainer.is_global_zero:
            return
        step = trainer.current_epoch + 1
        for k, recall in enumerate(recalls(confusion.cpu())):
            if recall is not None and k < len(self.class_names):
                for logger in self.loggers:
                    logger.experiment.add_scalar(_class_tag("val", k, self.class_names[k]), recall, step)


def callbacks(loggers: list[Any], class_names: list[str]) -> list[Callback]:
    """The dashboard's callback, when a dashboard logger is among `loggers` (put it first: it
    sets the epoch before the learning-rate monitor logs)."""
    ours = dashboard_loggers(loggers)
    return [DashboardCallback(ours, class_names)] if ours else []


# -- text ------------------------------------------------------------------------------------
def _code(text: str) -> str:
    """Markdown code block (TensorBoard's text plugin renders markdown)."""
    return "\n".join("    " + line for line in text.rstrip().splitlines()) or "    (none)"


def config_yaml(cfg: DictConfig) -> str:
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        return OmegaConf.to_yaml(plain, resolve=True)
    except Exception:  # an interpolation only Hydra's app can resolve: shown unresolved
        return OmegaConf.to_yaml(plain)


def sweep_text(context: RunContext) -> str:
    """A multirun job's place in its sweep."""
    values = _job_values(context)
    job = "" if context.job_num is None else f"job {context.job_num}"
    of = f" of {context.job_count} (numbered from 0)" if context.job_count else ""
    lines = [f"**{job}{of}** in `{context.sweep_dir}`", "",
             "varied: " + (", ".join(f"`{k}={values.get(k, '?')}`" for k in context.varying) or "nothing"),
             "", "the sweep's command-line overrides:", "", _code(" ".join(context.sweep_overrides))]
    return "\n".join(lines)


@rank_zero_only
def start(cfg: DictConfig, loggers: list[Any]) -> None:
    """At a run's start: its hparams session, config, overrides and place in the sweep."""
    ours = dashboard_loggers(loggers)
    if not ours:
        return
    context = run_context()
    hparams = run_hparams(cfg, context)
    command = "python -m hsi." + str(cfg.get("task_name", "train")) + " " + " ".join(context.overrides)
    for logger in ours:
        logger.log_hyperparams(hparams)
        experiment = logger.experiment
        experiment.add_text("run/config", _code(config_yaml(cfg)), 0)
        experiment.add_text("run/overrides", _code("\n".join(context.overrides)) + "\n\nas one command:\n\n"
                            + _code(command), 0)
        if context.multirun:
            experiment.add_text("run/sweep", sweep_text(context), 0)
        experiment.flush()


# -- end of a run ----------------------------------------------------------------------------
def summary_metrics(report: dict[str, Any], metrics: dict[str, Any]) -> dict[str, float | None]:
    """The HPARAMS table's metric columns (TensorBoard shows the first five: all of them)."""
    return {"summary/OA_test": report["oa"], "summary/AA_test": report["aa"],
            "summary/kappa_test": report["kappa"], "summary/OA_val_best": metrics.get("val_oa"),
            "summary/train_seconds": metrics.get("train_seconds")}


def report_title(report: dict[str, Any]) -> str:
    return f"OA {report['oa']:.4f}  AA {report['aa']:.4f}  kappa {report['kappa']:.4f}"


@rank_zero_only
def finish(loggers: list[Any], hparams: dict[str, Any], report: dict[str, Any], class_names: list[str],
           metrics: dict[str, Any], report_text: str) -> None:
    """At a run's end: summary metrics with the hparams, per-class test accuracy, the confusion
    matrix titled with OA / AA / kappa, the classification report (any TensorBoard logger)."""
    step = int(metrics.get("epochs") or 0)
    for logger in loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        experiment = logger.experiment
        if isinstance(logger, DashboardLogger):
            logger.log_hyperparams(hparams, summary_metrics(report, metrics), step)
        else:
            logger.log_hyperparams(hparams, metrics={f"hp/{k}": report[k] for k in ("oa", "aa", "kappa")})
        for k, value in enumerate(report["per_class_accuracy"]):
            if value is not None:
                experiment.add_scalar(_class_tag("test", k, class_names[k]), value, step)
        fig = confusion_matrix_figure(np.asarray(report["confusion_matrix"]), class_names,
                                      report_title(report))
        experiment.add_figure("test/confusion_matrix", fig, global_step=step)
        experiment.add_text("test/classification_report", _code(report_text), step)
        experiment.flush()
