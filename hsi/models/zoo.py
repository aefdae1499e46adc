"""The zoo as its configs say: every `conf/model/<name>.yaml` (not `_*.yaml`) is a network (a `net`
node whose `_target_` is an `hsi.models.contract.Network`) or a pixel estimator (an
`hsi.models.estimators.PixelEstimator`). Adding one is its module and its yaml: whatever walks
the zoo (the contract tests, `hsi.profile all=true`) finds it here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from hsi.errors import ConfigError
from hsi.models.contract import Network


def model_files(model_dir: str | Path) -> dict[str, Path]:
    """{name: yaml} of every model config in `model_dir` (files starting with `_` are shared parts)."""
    return {p.stem: p for p in sorted(Path(model_dir).glob("*.yaml")) if not p.stem.startswith("_")}


def network_configs(model_dir: str | Path) -> dict[str, DictConfig]:
    """{name: its `net` config} of every network in `model_dir` (the estimators have no `net`)."""
    configs = {name: OmegaConf.load(path) for name, path in model_files(model_dir).items()}
    return {name: cfg.net for name, cfg in configs.items() if "net" in cfg}


def estimator_configs(model_dir: str | Path) -> dict[str, DictConfig]:
    """{name: config} of every pixel estimator in `model_dir` (a model config without `net`)."""
    configs = {name: OmegaConf.load(path) for name, path in model_files(model_dir).items()}
    return {name: cfg for name, cfg in configs.items() if "net" not in cfg}


def network_class(net_cfg: DictConfig) -> type[Network]:
    """The class a `net` config builds; one that is not a Network is refused."""
    cls = get_class(net_cfg._target_)
    if not (isinstance(cls, type) and issubclass(cls, Network)):
        raise ConfigError(f"model.net._target_={net_cfg._target_} is not an hsi.models.contract.Network: "
                          f"derive the network from it (see docs/development.md).")
    return cls


def own_kwargs(net_cfg: DictConfig) -> dict[str, Any]:
    """The network's own constructor kwargs as the config gives them (no `_target_`)."""
    kwargs = OmegaConf.to_container(net_cfg)
    return {k: v for k, v in kwargs.items() if not str(k).startswith("_")}


def smallest_input(net_cfg: DictConfig) -> tuple[int, int]:
    """(bands, window) the network of `net_cfg` needs at least (`Network.input_limits`)."""
    return network_class(net_cfg).input_limits(**own_kwargs(net_cfg))


def build_network(net_cfg: DictConfig, in_bands: int, patch_size: int, num_classes: int,
                  **overrides: Any) -> Network:
    """The network of `net_cfg` for these shapes (`overrides` replace the config's kwargs), built by
    calling its class (not Hydra's instantiate, which would wrap a refusal in its own exception)."""
    return network_class(net_cfg)(in_bands, patch_size, num_classes, **{**own_kwargs(net_cfg), **overrides})
