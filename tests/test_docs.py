"""The documentation is executable: every documented command composes, every link resolves.

Every `python -m hsi.<command> ...` line inside a ```bash block of README.md and docs/*.md is
extracted (continuation lines joined, `HSI_DATA_DIR=...` assignments, the interpreter and trailing
`# comments` stripped). Hydra commands are composed in-process with Hydra's compose API against
`conf/`, with the command's overrides (a sweep takes its first value, as its first job would), and
their configs are resolved; nothing is trained and no file is opened. A failure is reported by
file and line number.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import runpy
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob
from omegaconf import DictConfig, OmegaConf

from hsi.run.config import CONFIG_DIR, PROJECT_ROOT
from tests.conftest import compose_config

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
DOC_FILES = [README, *sorted(DOCS.glob("*.md"))]

README_MAX_LINES = 150
FIRST_COMMANDS = [
    "make install",
    ".venv/bin/python -m hsi.train data=synthetic trainer.max_epochs=2",
    "make test",
]

# `python -m hsi.<name>` entry points whose config is conf/<name>.yaml
HYDRA_COMMANDS = {"train", "evaluate", "predict", "profile", "export", "search"}
# Hydra entry points over another command's config (a search composes the training config; the
# ranges on its command line are its search space, not a multirun)
APP_CONFIG = {"search": "train"}
# argparse entry points: checked by importing them and asking for --help
PLAIN_COMMANDS = {"summarize", "report"}

# Hydra's own flags: those that take a value, and those that do not
HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-dir", "-cd"}
HYDRA_FLAGS = {"--multirun", "-m", "--resolve", "--run", "-r"}

# Documented placeholders such as `<run>`, `<file>`, `<account>`, `<timestamp>` are not valid
# override syntax (Hydra's lexer rejects `<`); they are replaced by their bare name before
# parsing. Compose never opens the paths, so `ckpt_path=<file>` composes as `ckpt_path=file`.
PLACEHOLDER = re.compile(r"<([A-Za-z_][\w .-]*)>")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
INTERPRETERS = {"python", "python3", ".venv/bin/python", ".venv/bin/python3"}


@dataclass(frozen=True)
class Command:
    file: Path
    line: int  # 1-based line of the command's first line
    text: str  # the command as written, continuation lines joined

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(PROJECT_ROOT)}:{self.line}"


def bash_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, logical line) of every ```bash block, continuation lines joined."""
    out: list[tuple[int, str]] = []
    in_bash = False
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            in_bash = not in_bash and stripped[3:].strip() in {"bash", "sh", "shell", "console"}
            pending = None
            continue
        if not in_bash:
            continue
        start, text = pending if pending else (number, "")
        text = f"{text} {stripped}" if text else stripped
        if text.endswith("\\"):
            pending = (start, text[:-1].rstrip())
            continue
        pending = None
        out.append((start, text))
    return out


def hsi_commands(path: Path) -> list[Command]:
    return [Command(path, number, text) for number, text in bash_lines(path) if "-m hsi." in text]


def split_command(command: Command) -> tuple[str, list[str]]:
    """The hsi.<name> module's name and its arguments, from a documented command line."""
    tokens = shlex.split(command.text, comments=True)
    while tokens and ENV_ASSIGNMENT.match(tokens[0]):
        tokens.pop(0)
    assert tokens and tokens[0] in INTERPRETERS, f"{command.where}: not a python command: {command.text}"
    assert tokens[1:2] == ["-m"] and len(tokens) > 2, f"{command.where}: expected `python -m hsi.<name>`"
    module = tokens[2]
    assert module.startswith("hsi."), f"{command.where}: {module} is not an hsi command"
    return module.removeprefix("hsi."), tokens[3:]


ALL_COMMANDS = [command for path in DOC_FILES for command in hsi_commands(path)]


def glob_options(override) -> list[str]:
    """The options of a config group that a `glob(...)` sweep selects, sorted as Hydra sweeps them."""
    group = CONFIG_DIR / override.key_or_group.lstrip("+~")
    return override.value().filter(sorted(p.stem for p in group.glob("*.yaml")))


def first_of_sweeps(arguments: list[str], where: str) -> tuple[list[str], bool, str]:
    """Overrides with every sweep reduced to its first value; whether it was a multirun; config name."""
    multirun = False
    config_name = ""
    overrides: list[str] = []
    rest = iter(arguments)
    for argument in rest:
        if argument in HYDRA_FLAGS_WITH_VALUE:
            value = next(rest, None)
            assert value is not None, f"{where}: {argument} needs a value"
            if argument in {"--config-name", "-cn"}:
                config_name = value
            continue
        if argument in HYDRA_FLAGS:
            multirun = multirun or argument in {"--multirun", "-m"}
            continue
        assert not argument.startswith("-"), f"{where}: unknown flag {argument}"
        overrides.append(PLACEHOLDER.sub(r"\1", argument))
    parsed = OverridesParser.create().parse_overrides(overrides)
    reduced = []
    for override in parsed:
        if override.is_interval_sweep():  # an Optuna search space (hparams_search=...): its low end
            reduced.append(f"{override.get_key_element()}={override.value().start}")
        elif isinstance(override.value(), Glob):  # a config group's options (sweep=leaderboard)
            first = glob_options(override)[0]
            reduced.append(f"{override.get_key_element()}={first}")
        elif override.is_sweep_override():
            first = next(override.sweep_string_iterator())
            reduced.append(f"{override.get_key_element()}={first}")
        else:
            reduced.append(override.input_line)
    swept = any(override.is_sweep_override() for override in parsed)
    return reduced, multirun or swept, config_name


def sweeper_params(cfg) -> dict[str, str]:
    """A config's own sweep grid (`hydra.sweeper.params`, e.g. from `sweep=patch_pca`)."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None)
    return {} if params is None else {str(k): str(v) for k, v in params.items()}


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[c.where for c in ALL_COMMANDS])
def test_documented_command(command: Command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture) -> None:
    name, arguments = split_command(command)
    assert importlib.util.find_spec(f"hsi.{name}") is not None, f"{command.where}: no module hsi.{name}"

    if name in PLAIN_COMMANDS:
        # not a Hydra app: run as `python -m hsi.<name> --help` would (its folder is a placeholder)
        monkeypatch.setattr(sys, "argv", [f"python -m hsi.{name}", "--help"])
        monkeypatch.delitem(sys.modules, f"hsi.{name}", raising=False)
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module(f"hsi.{name}", run_name="__main__", alter_sys=True)
        assert exit_info.value.code in (0, None), f"{command.where}: --help exited {exit_info.value.code}"
        assert "usage" in capsys.readouterr().out.lower(), f"{command.where}: --help printed no usage"
        return

    assert name in HYDRA_COMMANDS, f"{command.where}: hsi.{name} is neither a Hydra nor a plain command"
    overrides, multirun, config_name = first_of_sweeps(arguments, command.where)
    config_name = config_name or APP_CONFIG.get(name, name)
    cfg = compose_config(config_name, overrides, tmp_path)
    if name == "search":
        assert cfg.get("search") is not None, f"{command.where}: a search needs hparams_search=<name>"
        multirun = False

    if multirun and "-m" not in arguments and "--multirun" not in arguments:
        # a sweep without -m only runs if the config itself asks for a multirun (sweep=...)
        assert str(cfg.hydra.mode) == "RunMode.MULTIRUN", (
            f"{command.where}: sweeps values but is neither `-m` nor a multirun config")

    # the config's own sweep grid (sweep=patch_pca) must name real keys too: compose its first job
    given = {override.split("=", 1)[0].lstrip("+~") for override in overrides}
    grid = [f"{key}={values}" for key, values in sweeper_params(cfg).items()
            if key.lstrip("+~") not in given]  # the command line wins over the grid, as in Hydra
    if grid:
        cfg = compose_config(config_name, [*overrides, *first_of_sweeps(grid, command.where)[0]],
                             tmp_path)

    # a group's node must stay a config: `data.split=disjoint` composes (it overwrites the node
    # with a string) but is the old spelling of `data/split=disjoint`
    for group, choice in OmegaConf.select(cfg, "hydra.runtime.choices", default={}).items():
        node = OmegaConf.select(cfg, group.replace("/", "."), default=None)
        if choice is not None and not group.startswith("hydra/") and node is not None:
            assert isinstance(node, DictConfig), (
                f"{command.where}: `{group.replace('/', '.')}` is the config group {group}/; "
                f"choose an option with `{group}=<option>`")

    for key in ("data", "model", "trainer"):
        if OmegaConf.select(cfg, key, default=None) is not None:
            # every interpolation resolves and no mandatory value (`???`) is left unset
            OmegaConf.to_container(cfg[key], resolve=True, throw_on_missing=True)


def markdown_headings(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (outside code blocks)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in path.read_text().splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower().replace("`", "")).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def relative_links(path: Path) -> list[tuple[int, str]]:
    links = []
    in_code = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                links.append((number, target))
    return links


ALL_LINKS = [(path, number, target) for path in DOC_FILES for number, target in relative_links(path)]


@pytest.mark.parametrize(
    ("path", "number", "target"), ALL_LINKS,
    ids=[f"{p.relative_to(PROJECT_ROOT)}:{n}" for p, n, _ in ALL_LINKS])
def test_relative_link_resolves(path: Path, number: int, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    linked = (path.parent / file_part).resolve() if file_part else path
    assert linked.exists(), f"{path.name}:{number}: {target} does not exist"
    if anchor and linked.suffix == ".md":
        assert anchor in markdown_headings(linked), (
            f"{path.name}:{number}: no heading #{anchor} in {linked.name}")


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(README.parent / target.partition("#")[0]).resolve() for _, target in relative_links(README)}
    missing = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert not missing, f"README does not link {missing}"


def test_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    first = [shlex.split(text, comments=True) for _, text in bash_lines(README)[:3]]
    assert [" ".join(tokens) for tokens in first] == FIRST_COMMANDS


def test_documented_commands_were_found() -> None:
    assert len(ALL_COMMANDS) >= 20
    assert {split_command(c)[0] for c in ALL_COMMANDS} >= HYDRA_COMMANDS | {"summarize"}


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_no_issue_numbers(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"\bissues?\s*#?\d+|(?<![\w/])#\d+\b", text, re.IGNORECASE), (
        f"{path.name} refers to an issue number")


def _layout_block(doc: Path, heading: str) -> str:
    text = doc.read_text()
    start = text.index(heading)
    return text[text.index("```", start):text.index("```", text.index("```", start) + 3)]


def test_the_layout_names_every_module_and_nothing_else() -> None:
    block = _layout_block(PROJECT_ROOT / "docs" / "development.md", "## Layout")
    named = set(re.findall(r"\b([a-z0-9_]+\.py)\b", block))
    rooms = set(re.findall(r"\b([a-z_]+)/", block))
    package = PROJECT_ROOT / "hsi"
    modules = {p.name for p in package.rglob("*.py") if p.name != "__init__.py"}
    assert modules - named == set(), "docs/development.md's layout misses these modules"
    assert named - modules - {"make_fake_scenes.py"} == set(), "the layout names modules that do not exist"
    for room in (p.name for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert room in rooms, f"docs/development.md's layout misses hsi/{room}/"
        readme = _layout_block(PROJECT_ROOT / "README.md", "**Layout.**")
        assert f"{room}/" in readme, f"README's layout misses hsi/{room}/"
