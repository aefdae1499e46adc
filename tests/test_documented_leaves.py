"""Every setting a command's composed config holds is documented under its dotted path, and every
old spelling is refused in one line with its new address.

The leaves of `python -m hsi.<command> --cfg job` (Hydra's compose API, as tests/test_docs.py
composes documented commands) must each be the first cell of a table row in docs/configuration.md's
"Every setting, by command" section, or fall under one of its pattern rows (`model.net.*`,
`search.params.*`: keys that change with the option chosen); every row there must name a real key.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf

from hsi.errors import ConfigError
from hsi.run.compat_keys import RENAMED, override_key, refuse_old_keys
from hsi.run.config import PROJECT_ROOT
from tests.conftest import compose_config

DOC = PROJECT_ROOT / "docs" / "configuration.md"
SECTION = "## Every setting, by command"
# nodes whose keys change with the option chosen: one pattern row each
PATTERN_NODES = ("model.net", "search.params")

# (command, config, overrides): each command's default options, plus the options that add keys
COMPOSED = [
    ("train", "train", []),
    ("train", "train", ["data=custom", "data.cube_path=x.tif"]),
    ("train", "train", ["data=synthetic"]),
    ("search", "train", ["hparams_search=synthetic_optuna"]),
    ("evaluate", "evaluate", ["ckpt_path=x.ckpt"]),
    ("predict", "predict", []),
    ("predict", "predict", ["data=custom", "data.cube_path=x.tif"]),
    ("export", "export", ["ckpt_path=x.ckpt"]),
    ("profile", "profile", []),
]


def leaves(node: DictConfig, prefix: str = "") -> list[str]:
    """Dotted paths of a config's leaves (an empty mapping or a list is a leaf), Hydra's own
    `hydra` node left out."""
    out: list[str] = []
    for key in node:
        path = f"{prefix}{key}"
        if path == "hydra":
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and len(child) > 0:
            out += leaves(child, f"{path}.")
        else:
            out.append(path)
    return out


def documented_rows() -> set[str]:
    """The first cell (a `dotted.key` in backticks) of every table row of the section."""
    text = DOC.read_text()
    section = text[text.index(SECTION):]
    rows = set()
    for line in section.splitlines():
        match = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
        if match:
            rows.add(match.group(1))
    return rows


def composed_leaves(tmp_path: Path) -> dict[str, set[str]]:
    """Dotted leaf -> the commands whose config holds it."""
    found: dict[str, set[str]] = {}
    for command, config, overrides in COMPOSED:
        cfg = compose_config(config, overrides, tmp_path)
        assert isinstance(OmegaConf.to_container(cfg, resolve=False), dict)
        for leaf in leaves(cfg):
            found.setdefault(leaf, set()).add(command)
    return found


def covered(leaf: str, rows: set[str]) -> bool:
    return leaf in rows or any(leaf.startswith(f"{node}.") and f"{node}.*" in rows for node in PATTERN_NODES)


def test_every_leaf_of_every_command_is_documented(tmp_path: Path) -> None:
    rows = documented_rows()
    found = composed_leaves(tmp_path)
    assert len(found) > 100  # train alone has about 90
    missing = sorted(f"{leaf} ({', '.join(sorted(commands))})" for leaf, commands in found.items()
                     if not covered(leaf, rows))
    assert not missing, f"docs/configuration.md ({SECTION}) does not document: {missing}"


def test_every_documented_row_is_a_real_key(tmp_path: Path) -> None:
    rows = documented_rows()
    patterns = {row for row in rows if row.endswith(".*")}
    assert patterns <= {f"{node}.*" for node in PATTERN_NODES}, f"pattern rows outside {PATTERN_NODES}"
    found = composed_leaves(tmp_path)
    stale = sorted(row for row in rows - patterns if row not in found)
    assert not stale, f"docs/configuration.md documents keys no command has: {stale}"


def test_a_setting_has_one_address_in_predict(tmp_path: Path) -> None:
    """`hsi.predict data=custom data.cube_path=x.tif --cfg job`: no key of the top level is also a
    key of `data` (the model's moved files are `moved.*`, the inference settings `inference.*`)."""
    cfg = compose_config("predict", ["data=custom", "data.cube_path=x.tif"], tmp_path)
    top = {key for key in cfg if not isinstance(cfg._get_node(key), (DictConfig, ListConfig))}
    assert top & set(cfg.data) == set(), sorted(top & set(cfg.data))
    assert {"method", "map_method"}.isdisjoint(cfg)
    assert "map_method" not in compose_config("train", [], tmp_path)
    assert set(cfg.moved) == {"data_dir", "cube_path", "gt_path"}
    assert {"eval_path", "batch_size", "stream", "block_rows", "tile_rows"} <= set(cfg.inference)


@pytest.mark.parametrize(("command", "argument", "new"), [
    ("predict", "cube_path=x.tif", "moved.cube_path="),
    ("predict", "+gt_path=y.gpkg", "moved.gt_path="),
    ("predict", "stream=true", "inference.stream="),
    ("predict", "block_rows=64", "inference.block_rows="),
    ("predict", "eval_path=window", "inference.eval_path="),
    ("predict", "method=window", "inference.eval_path="),
    ("predict", "data.stream=true", "inference.stream="),
    ("predict", "data.batch_size=128", "inference.batch_size="),
    ("evaluate", "data_dir=/new", "moved.data_dir="),
    ("evaluate", "eval_path=dense", "inference.eval_path="),
    ("export", "batch_size=100", "inference.batch_size="),
    ("export", "data_dir=/new", "moved.data_dir="),
    ("train", "map_method=dense", "data.eval_path="),
    ("train", "data.test_ratio=0.5", "data.split.test_ratio="),
    ("search", "map_method=dense", "data.eval_path="),
])
def test_an_old_spelling_is_refused_with_its_new_key(command: str, argument: str, new: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(new)):
        refuse_old_keys(command, ["ckpt_path=x.ckpt", argument])


def test_every_new_address_exists_and_no_old_one_does(tmp_path: Path) -> None:
    """The compat table points at keys the command's config holds, and names none it still holds."""
    configs = {command: (config, overrides) for command, config, overrides in reversed(COMPOSED)}
    configs["predict"] = ("predict", ["data=custom", "data.cube_path=x.tif"])
    for command, renamed in RENAMED.items():
        config, overrides = configs[command]
        holds = set(leaves(compose_config(config, [*overrides, "data=custom", "data.cube_path=x"]
                                          if command in ("train", "search", "profile") else overrides,
                                          tmp_path)))
        holds_nodes = holds | {leaf.rsplit(".", 1)[0] for leaf in holds}
        for old, new in renamed.items():
            if new.startswith("data.split."):  # a key of some split strategies, not of the default one
                continue
            assert new in holds, f"{command}: {old} -> {new}, which the config does not hold"
            if command != "predict" or not old.startswith("data."):
                assert old not in holds_nodes, f"{command}: {old} is refused but still a key"


def test_a_current_key_is_never_refused() -> None:
    for argument in ("inference.stream=true", "moved.cube_path=x", "data.cube_path=x", "threads=2",
                     "data.eval_path=dense", "~data.split.val_ratio", "hydra.run.dir=x", "-m"):
        refuse_old_keys("predict" if "inference" in argument or "moved" in argument else "train", [argument])
    assert override_key("--cfg") is None and override_key("~data.split.val_ratio") == "data.split.val_ratio"


def test_the_command_line_refuses_in_one_line(tmp_path: Path) -> None:
    """As a user types it: one `Error:` line naming the new key, no Hydra 'not in struct' text."""
    result = subprocess.run([sys.executable, "-m", "hsi.predict", "ckpt_path=x.ckpt", "cube_path=x.tif",
                             f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "moved.cube_path=" in errors[0], result.stderr[-2000:]
    assert "not in struct" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
