"""The network contract (hsi.models.contract), checked on every network the configs name.

The walk: every conf/model/*.yaml with a `net` (not `_*.yaml`) is built at its smallest input
(`input_limits`) and at its reference settings, trains a step, splits into trunk and head, gives
dense == window where it declares `dense`, exports to ONNX (or is refused in one line), has its
reference's parameter count, and has its row in docs/models.md's reference table. A network added
as a module and a yaml is walked without editing this file (see
`test_a_network_added_as_a_module_and_a_yaml_is_walked`).
"""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from torch import nn

from hsi.errors import ConfigError, ExportError
from hsi.models.contract import TAKES, Network
from hsi.models.dense import build_dense_head, tile_logits
from hsi.models.zoo import build_network, estimator_configs, network_class, network_configs, smallest_input
from hsi.run.config import CONFIG_DIR, PROJECT_ROOT
from tests.models.zoo_walk import CLASSES, MODEL_DIR, NETWORKS, randomise_batchnorm, window_for

DOCS = PROJECT_ROOT / "docs" / "models.md"


# -- the checks, each usable on any model folder ---------------------------------------------
def check_smallest_input_trains(net_cfg: DictConfig) -> None:
    """Built at its smallest bands and window, the network gives logits, a training step sends a
    finite gradient to every parameter and moves them; one band or two pixels less is refused,
    naming the key to raise."""
    bands, patch = smallest_input(net_cfg)
    torch.manual_seed(0)
    net = build_network(net_cfg, bands, patch, CLASSES)
    assert isinstance(net, Network)
    x, y = torch.randn(4, 1, bands, patch, patch), torch.tensor([0, 1, 2, 0])
    logits = net(x)
    assert logits.shape == (4, CLASSES)
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    assert torch.isfinite(loss)
    bad = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad, f"no finite gradient for {bad}"
    before = [p.detach().clone() for p in net.parameters()]
    torch.optim.Adam(net.parameters(), lr=1e-3).step()
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))
    if patch > 2:
        with pytest.raises(ConfigError, match=rf"at least {patch}x{patch} pixels.*data\.patch_size"):
            build_network(net_cfg, bands, patch - 2, CLASSES)
    if bands > 1:
        with pytest.raises(ConfigError, match=rf"at least {bands} bands.*data\.pca\.components"):
            build_network(net_cfg, bands - 1, patch, CLASSES)


def check_trunk_and_head(net_cfg: DictConfig) -> None:
    """forward(x) == head(trunk(x)), the head is `classifier`, and a network that takes the
    spectrum reads nothing of the window but its centre pixel."""
    cls = network_class(net_cfg)
    assert cls.takes in TAKES
    bands, patch = window_for(net_cfg)
    torch.manual_seed(0)
    net = build_network(net_cfg, bands, patch, CLASSES).eval()
    assert net.head is net.classifier
    x = torch.randn(2, 1, bands, patch, patch)
    with torch.no_grad():
        torch.testing.assert_close(net.head(net.trunk(x)), net(x))
        if cls.takes == "spectrum":
            other = torch.randn_like(x)
            c = patch // 2
            other[..., c, c] = x[..., c, c]
            torch.testing.assert_close(net(other), net(x))


def check_dense_equals_window(net_cfg: DictConfig) -> None:
    """Where the network declares a dense form, its trunk over a tile and the head as
    convolutions give every window's logits."""
    if not network_class(net_cfg).dense:
        return
    bands, patch = window_for(net_cfg)
    torch.manual_seed(0)
    net = build_network(net_cfg, bands, patch, CLASSES).eval()
    randomise_batchnorm(net)
    tile = torch.randn(1, bands, patch + 4, patch + 3)
    with torch.no_grad():
        dense = tile_logits(net, build_dense_head(net, bands, patch), tile)
        windows = tile.unfold(2, patch, 1).unfold(3, patch, 1)  # (1, B, rows, cols, p, p)
        rows, cols = windows.shape[2:4]
        batch = windows.permute(2, 3, 0, 1, 4, 5).reshape(rows * cols, 1, bands, patch, patch)
        expected = net(batch).T.reshape(CLASSES, rows, cols)
    assert dense.shape == expected.shape
    torch.testing.assert_close(dense, expected, rtol=1e-4, atol=1e-4)


def _reference_network(net_cfg: DictConfig, device: str = "meta") -> nn.Module:
    settings = dict(network_class(net_cfg).reference.settings)
    shapes = [settings.pop(k) for k in ("in_bands", "patch_size", "num_classes")]
    with torch.device(device):
        return build_network(net_cfg, *shapes, **settings)


def check_reference_count(net_cfg: DictConfig) -> None:
    """At its reference's settings the network has exactly the reference code's parameter count."""
    reference = network_class(net_cfg).reference
    if reference is None:
        return
    try:
        net = _reference_network(net_cfg, "meta")  # no memory taken: counts only
    except (NotImplementedError, RuntimeError):  # a constructor that reads values: build it for real
        net = _reference_network(net_cfg, "cpu")
    ours = sum(p.numel() for p in net.parameters())
    assert ours == reference.params, (f"{type(net).__name__} at {reference.settings} has {ours:,} "
                                      f"parameters; {reference.code} has {reference.params:,}")


def check_limit_defaults(net_cfg: DictConfig) -> None:
    """`input_limits`'s keyword defaults are the constructor's (the minimum is for the same network)."""
    cls = network_class(net_cfg)
    limits = inspect.signature(cls.input_limits).parameters
    init = inspect.signature(cls.__init__).parameters
    for name, parameter in limits.items():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY or parameter.default is inspect.Parameter.empty:
            continue
        assert name in init, f"{cls.__name__}.input_limits takes {name}, its constructor does not"
        assert init[name].default == parameter.default, f"{cls.__name__}: {name}'s defaults differ"


REFERENCE_COLUMNS = ("model=", "paper", "reference code", "settings of the count", "ours", "reference's",
                     "how the reference was counted", "recipe")


def reference_rows(markdown: str) -> dict[str, dict[str, str]]:
    """{model name: {column: cell}} of every table whose header is REFERENCE_COLUMNS."""
    rows: dict[str, dict[str, str]] = {}
    columns: list[str] | None = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            columns = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if columns is None:
            header = [c.strip("`") for c in cells]
            columns = header if tuple(header) == REFERENCE_COLUMNS else []
        elif columns and not set(line) <= set("|-: "):
            rows[cells[0].strip("`")] = dict(zip(columns, cells))
    return rows


def _first_number(cell: str) -> int | None:
    match = re.search(r"\d[\d,]*", cell)
    return int(match.group().replace(",", "")) if match else None


def check_reference_row(name: str, net_cfg: DictConfig, rows: dict[str, dict[str, str]]) -> None:
    """The network's row: our count at the reference settings, the reference's, its code's
    repository, and a recipe that exists."""
    assert name in rows, f"docs/models.md's reference table has no row for model={name}"
    row, reference = rows[name], network_class(net_cfg).reference
    if reference is None:
        assert _first_number(row["reference's"]) is None, f"{name} has no reference, its row gives a count"
    else:
        assert _first_number(row["ours"]) == _first_number(row["reference's"]) == reference.params
        assert reference.code.split()[0] in row["reference code"]
    for recipe in re.findall(r"experiment=([\w/]+)", row["recipe"]):
        assert (CONFIG_DIR / "experiment" / f"{recipe}.yaml").is_file(), f"{name}: no experiment={recipe}"


# -- the walk over conf/model -----------------------------------------------------------------
def test_the_walk_finds_the_zoo() -> None:
    assert {"hybridsn", "hybridsn_se", "hybridsn_lite", "hybridsn_fast", "cnn1d", "cnn2d", "cnn3d",
            "ssftt", "mlp"} <= set(NETWORKS)
    assert {"svm", "rf", "knn"} <= set(estimator_configs(MODEL_DIR))
    assert not set(NETWORKS) & set(estimator_configs(MODEL_DIR))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_builds_and_trains_at_its_smallest_input(name: str) -> None:
    check_smallest_input_trains(NETWORKS[name])


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_splits_into_trunk_and_head(name: str) -> None:
    check_trunk_and_head(NETWORKS[name])
    check_limit_defaults(NETWORKS[name])


@pytest.mark.parametrize("name", sorted(n for n in NETWORKS if network_class(NETWORKS[n]).dense))
def test_dense_equals_window(name: str) -> None:
    check_dense_equals_window(NETWORKS[name])


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_has_its_references_parameter_count_and_a_row(name: str) -> None:
    check_reference_count(NETWORKS[name])
    check_reference_row(name, NETWORKS[name], reference_rows(DOCS.read_text()))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n in NETWORKS if network_class(NETWORKS[n]).reference))
def test_trains_a_step_at_its_reference_settings(name: str) -> None:
    settings = network_class(NETWORKS[name]).reference.settings
    torch.manual_seed(0)
    net = _reference_network(NETWORKS[name], "cpu")
    x = torch.randn(2, 1, settings["in_bands"], settings["patch_size"], settings["patch_size"])
    logits = net(x)
    assert logits.shape == (2, settings["num_classes"])
    nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def check_onnx(net_cfg: DictConfig, folder: Path) -> None:
    """The graph `hsi.export` writes (dense scene graph or window graph) gives PyTorch's logits,
    or the export is refused in one line naming why."""
    import onnxruntime as ort

    from hsi.deploy.graphs import DenseScene, network_graphs

    bands, patch = smallest_input(net_cfg)
    torch.manual_seed(0)
    net = build_network(net_cfg, bands, patch, CLASSES).eval()
    randomise_batchnorm(net)
    cls = network_class(net_cfg)
    if cls.cannot_export:
        with pytest.raises(ExportError, match="cannot be exported to ONNX") as error:
            network_graphs(net, bands, patch, None, CLASSES, folder)
        assert "\n" not in str(error.value) and cls.cannot_export in str(error.value)
        return
    files = network_graphs(net, bands, patch, None, CLASSES, folder)
    session = ort.InferenceSession(str(folder / files["fp32"]), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        if cls.dense:
            cube = torch.randn(1, bands, patch + 3, patch + 2)
            expected = DenseScene(net, None, patch, bands)(cube)
            got = session.run(None, {"cube": cube.numpy()})[0]
        else:
            windows = torch.randn(3, 1, bands, patch, patch)
            expected, got = net(windows), session.run(None, {"windows": windows.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_exports_to_onnx_or_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    check_onnx(NETWORKS[name], tmp_path)


# -- a network added as a module and a yaml is walked ------------------------------------------
TINY_MODULE = '''
from torch import nn

from hsi.models.contract import Network, Reference


class TinyNet(Network):
    """A 2-D convolution over the bands, flatten, a Linear."""

    dense = True
    reference = Reference(paper="nobody, 2026", code="nobody/tiny tiny.py (TinyNet)",
                          settings={"in_bands": 5, "patch_size": 5, "num_classes": 3, "channels": 4},
                          params=PARAMS)
    cannot_export = CANNOT

    @classmethod
    def input_limits(cls, channels: int = 4, **net_kwargs: object) -> tuple[int, int]:
        return 2, 3

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, channels: int = 4) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size, channels=channels)
        side = patch_size - 2
        self.features = nn.Sequential(nn.Flatten(1, 2), nn.Conv2d(in_bands, channels, 3), nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, num_classes))
'''
TINY_YAML = """
defaults:
  - _classifier
  - _self_

net:
  _target_: {package}.tiny.TinyNet
  channels: 4
"""
TINY_ROW = "| " + " | ".join(f"`{c}`" if c == "model=" else c for c in REFERENCE_COLUMNS) + """ |
|---|---|---|---|---|---|---|---|
| `tiny` | nobody, 2026 | nobody/tiny `tiny.py` | 5 bands, 5x5, 3 classes | 295 | 295 | by hand | — |
"""


def _add_network(root: Path, package: str, params: int, cannot_export: str = "") -> Path:
    """A package `package` holding tiny.TinyNet, and a model folder whose tiny.yaml builds it."""
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "tiny.py").write_text(TINY_MODULE.replace("PARAMS", str(params))
                                            .replace("CANNOT", repr(cannot_export)))
    models = root / "conf" / "model"
    models.mkdir(parents=True)
    (models / "_classifier.yaml").write_text((MODEL_DIR / "_classifier.yaml").read_text())
    (models / "tiny.yaml").write_text(TINY_YAML.format(package=package))
    return models


def test_a_network_added_as_a_module_and_a_yaml_is_walked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    networks = network_configs(_add_network(tmp_path, "hsi_contract_demo", params=295))
    assert list(networks) == ["tiny"]
    tiny = networks["tiny"]
    check_smallest_input_trains(tiny)
    check_trunk_and_head(tiny)
    check_limit_defaults(tiny)
    check_dense_equals_window(tiny)
    check_reference_count(tiny)
    check_reference_row("tiny", tiny, reference_rows(TINY_ROW))
    with pytest.raises(AssertionError, match="no row for model=tiny"):
        check_reference_row("tiny", tiny, {})


def test_the_walk_catches_a_wrong_reference_count(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    tiny = network_configs(_add_network(tmp_path, "hsi_contract_wrong", params=296))["tiny"]
    with pytest.raises(AssertionError, match="has 295 parameters; nobody/tiny tiny.py .* has 296"):
        check_reference_count(tiny)


def test_a_network_that_cannot_export_is_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    models = _add_network(tmp_path / "m", "hsi_contract_noexport", params=295,
                          cannot_export="a loop without an ONNX translation")
    monkeypatch.syspath_prepend(str(tmp_path / "m"))
    tiny = network_configs(models)["tiny"]
    check_onnx(tiny, tmp_path)


def test_a_yaml_whose_target_is_not_a_network_is_named(tmp_path: Path) -> None:
    models = tmp_path / "model"
    models.mkdir()
    (models / "odd.yaml").write_text(textwrap.dedent("""
        net:
          _target_: torch.nn.Linear
    """))
    with pytest.raises(ConfigError, match="torch.nn.Linear is not an hsi.models.contract.Network"):
        network_class(network_configs(models)["odd"])


# -- the contract's own behaviour --------------------------------------------------------------
def test_check_input_names_the_minimum_and_the_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    tiny = network_configs(_add_network(tmp_path, "hsi_contract_limits", params=295))["tiny"]
    build_network(tiny, 2, 3, 2)  # the minimum passes
    too_few = r"TinyNet needs at least 2 bands .*; got 1\. Raise data.pca.components\.$"
    with pytest.raises(ConfigError, match=too_few):
        build_network(tiny, 1, 3, 2)
    with pytest.raises(ConfigError, match=r"at least 3x3 pixels .*; got 1\. Raise data.patch_size\.$"):
        build_network(tiny, 2, 1, 2)


def test_a_network_without_trunk_or_features_says_so() -> None:
    class Headless(Network):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = nn.Linear(2, 2)

    with pytest.raises(NotImplementedError, match="Headless must define trunk"):
        Headless()(torch.zeros(1, 2))


def test_takes_is_one_of_two_inputs() -> None:
    with pytest.raises(TypeError, match="takes='cube'"):
        type("Odd", (Network,), {"takes": "cube"})
