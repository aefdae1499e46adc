"""The TensorBoard dashboard (`hsi.run.dashboard`), read back from the event files the way
TensorBoard reads them: tags, steps, text, the hparams session and the HPARAMS experiment that
TensorBoard builds from a sweep's runs; the other run files as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tensorboard import context as tb_context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, metadata

from hsi.run.dashboard import SESSION_RUN, run_context, run_hparams, run_name
from hsi.train import train
from tests.conftest import FAST_SYNTHETIC, PROJECT_ROOT, compose_train

BOOKKEEPING = ("data_dir", "num_workers", "pin_memory", "download", "cache", "cache_dir", "paths",
               "eval_batch_size", "refresh_rate", "output_dir", "log_dir", "ckpt_path")


def accumulate(folder: Path) -> EventAccumulator:
    """Every event file of one TensorBoard run (one folder), as TensorBoard loads it."""
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def experiment(logdir: Path) -> api_pb2.Experiment:
    """The HPARAMS experiment TensorBoard's hparams plugin builds for `logdir` (what its
    `/data/plugin/hparams/experiment` answers)."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    context = backend_context.Context(base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer,
                                                            data_provider=provider))
    request = tb_context.RequestContext()
    return context.experiment_from_metadata(request, "", True, context.hparams_metadata(request, ""),
                                            context.hparams_from_data_provider(request, "", None))


def session_hparams(run: Path) -> dict:
    acc = accumulate(run / SESSION_RUN)
    content = acc.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
    info = metadata.parse_session_start_info_plugin_data(content)
    return {k: v.WhichOneof("kind") for k, v in info.hparams.items()}


def only_run(folder: Path) -> Path:
    runs = [p for p in (folder / "tensorboard").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_a_run_reads_as_a_dashboard(synthetic_cfg, tmp_path: Path) -> None:
    metrics = train(synthetic_cfg("trainer.max_epochs=2", "data.num_workers=0", "model.scheduler=null"))
    run = only_run(tmp_path)
    # named after its overrides, bookkeeping ones left out
    assert "patch_size=9" in run.name and "refresh_rate" not in run.name and "trainer=" not in run.name
    acc = accumulate(run)
    scalars, text = set(acc.Tags()["scalars"]), set(acc.Tags()["tensors"])
    classes = metrics["class_names"]
    assert {f"per_class/val/{k:02d}_{name}" for k, name in enumerate(classes, 1)} <= scalars
    assert {f"per_class/test/{k:02d}_{name}" for k, name in enumerate(classes, 1)} <= scalars
    assert {"curves/OA_train", "curves/OA_val", "curves/loss_train", "curves/loss_val", "curves/lr",
            "test/oa"} <= scalars
    assert not {"epoch", "train/oa", "val/oa"} & scalars  # no step counter, no duplicate curves
    assert {"run/config/text_summary", "run/overrides/text_summary",
            "test/classification_report/text_summary"} <= text
    assert {"test/confusion_matrix", "map", "split"} <= set(acc.Tags()["images"])
    # the epoch is the step: 1 after the first epoch; the learning rate on the same steps; test at the end
    for tag in ("curves/OA_train", "curves/OA_val", "curves/loss_val", "curves/lr",
                "per_class/val/01_class_1"):
        assert [e.step for e in acc.Scalars(tag)] == [1, 2], tag
    assert [e.step for e in acc.Scalars("test/oa")] == [2]
    assert [e.step for e in acc.Scalars("per_class/test/01_class_1")] == [2]
    # each validation's per-class accuracies average to its AA (over the classes it has)
    for step in (1, 2):
        recalls = [e.value for k, name in enumerate(classes, 1)
                   for e in acc.Scalars(f"per_class/val/{k:02d}_{name}") if e.step == step]
        aa = [e.value for e in acc.Scalars("val/aa") if e.step == step]
        assert sum(recalls) / len(recalls) == pytest.approx(aa[0], abs=1e-5)
    # the per-class test accuracy is metrics.json's
    for k, name in enumerate(classes, 1):
        if metrics["per_class_accuracy"][name] is not None:
            value = acc.Scalars(f"per_class/test/{k:02d}_{name}")[0].value
            assert value == pytest.approx(metrics["per_class_accuracy"][name], abs=1e-6)
    report = acc.Tensors("test/classification_report/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "precision" in report and classes[0] in report
    config = acc.Tensors("run/config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "patch_size: 9" in config

    # the hparams session: what identifies the run, nothing of where it ran; null kept as a value
    kinds = session_hparams(run)
    for key in ("model", "model.optimizer", "model.optimizer.lr", "model.optimizer.weight_decay",
                "model.scheduler", "model.label_smoothing", "data.patch_size", "data.pca.components",
                "data.split", "data.split.test_ratio", "data.augment.flip", "seed", "trainer.max_epochs"):
        assert key in kinds, key
    assert not [k for k in kinds if any(part in k.split(".") for part in BOOKKEEPING)], kinds
    assert kinds["model.optimizer"] == "string_value" and kinds["data.patch_size"] == "number_value"
    saved = yaml.safe_load((run / "hparams.yaml").read_text())
    assert saved["model.scheduler"] == "null" and saved["data.split"] == "RandomSplit"
    assert saved["model.optimizer.lr"] == 0.001
    # the end-of-run metrics beside the session (the HPARAMS table's metric columns)
    summary = accumulate(run / SESSION_RUN)
    assert summary.Scalars("summary/OA_test")[0].value == pytest.approx(metrics["oa"], abs=1e-6)
    assert summary.Scalars("summary/OA_val_best")[0].value == pytest.approx(metrics["val_oa"], abs=1e-6)
    assert {"summary/AA_test", "summary/kappa_test", "summary/train_seconds"} <= set(
        summary.Tags()["scalars"])


def test_other_run_files_are_as_without_tensorboard(synthetic_cfg, tmp_path_factory) -> None:
    """The dashboard adds `tensorboard/` and changes nothing else a run writes."""
    folders = {}
    for logger in ("tensorboard", "none"):
        folder = tmp_path_factory.mktemp(logger)
        train(compose_train([*FAST_SYNTHETIC, "trainer.max_epochs=1", f"logger={logger}"], folder))
        folders[logger] = folder
    files = {k: {str(p.relative_to(f)) for p in f.rglob("*") if p.is_file() and "tensorboard" not in p.parts}
             for k, f in folders.items()}
    assert files["tensorboard"] == files["none"]
    with_tb, without = (json.loads((folders[k] / "metrics.json").read_text())
                        for k in ("tensorboard", "none"))
    assert with_tb.keys() == without.keys()
    timing = {"train_seconds", "test_seconds", "map_seconds", "checkpoint"}
    assert {k: v for k, v in with_tb.items() if k not in timing} == \
        {k: v for k, v in without.items() if k not in timing}


def test_a_sweep_names_its_runs_and_puts_the_varying_keys_first(tmp_path: Path) -> None:
    overrides = [o for o in FAST_SYNTHETIC if not o.startswith(("trainer=", "data.patch_size"))]
    cmd = [sys.executable, "-m", "hsi.train", "-m", *overrides, "trainer=cpu", "trainer.max_epochs=1",
           "data.patch_size=9,11", "map=false", f"hydra.sweep.dir={tmp_path}"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {job.name: only_run(job).name for job in sorted(tmp_path.iterdir()) if job.name.isdigit()}
    assert runs == {"0": "patch_size=9", "1": "patch_size=11"}
    sweep = accumulate(tmp_path / "1" / "tensorboard" / "patch_size=11")
    place = sweep.Tensors("run/sweep/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "job 1 of 2" in place and "data.patch_size=11" in place

    # HPARAMS as TensorBoard builds it over the sweep: the swept key first, with both values;
    # string settings with their discrete values (filterable), null a value among them
    exp = experiment(tmp_path)
    infos = {info.name: info for info in exp.hparam_infos}
    first = exp.hparam_infos[0]
    assert first.name == "data.patch_size" and first.differs
    assert (first.domain_interval.min_value, first.domain_interval.max_value) == (9, 11)
    assert not [name for name, info in infos.items() if info.differs and name != "data.patch_size"]
    for name in ("model", "model.optimizer", "data.split", "model.scheduler"):
        assert infos[name].type == api_pb2.DATA_TYPE_STRING and list(infos[name].domain_discrete), name
    assert [v for v in infos["model.scheduler"].domain_discrete] == ["null"]
    assert not [n for n in infos if any(part in n.split(".") for part in BOOKKEEPING)]
    metrics = [m.name.tag for m in exp.metric_infos]
    assert metrics == ["summary/AA_test", "summary/OA_test", "summary/OA_val_best", "summary/kappa_test",
                       "summary/train_seconds"]


def test_a_sweep_config_names_its_jobs_after_its_params(tmp_path: Path) -> None:
    """`sweep=patch_pca` varies keys through `hydra.sweeper.params`, not the command line."""
    cfg = compose_train([*FAST_SYNTHETIC, "sweep=patch_pca", "data.patch_size=11", "data.pca.components=15"],
                        tmp_path)
    context = run_context()
    assert context.multirun and context.varying == ["data.patch_size", "data.pca.components"]
    assert context.job_count == 16
    assert run_name(context) == "patch_size=11,components=15"
    assert list(run_hparams(cfg, context))[:2] == ["data.patch_size", "data.pca.components"]
