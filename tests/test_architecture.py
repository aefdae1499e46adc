"""The layout rule: commands (`python -m hsi.<command>`) sit on top of the library and no module
of `hsi/` imports a command."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hsi.run.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "hsi"


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_command(path: Path) -> bool:
    """A module run as `python -m`: it has an `if __name__ == "__main__":` block."""
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)
               and "__main__" in ast.unparse(node.test) for node in tree.body)


COMMANDS = sorted(name for name, path in MODULES.items() if is_command(path))


def imported_modules(path: Path) -> set[str]:
    """Every `hsi` module a file imports (anywhere in it), including `from hsi.x import name`
    where `hsi.x.name` is itself a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n in MODULES}


def test_the_commands_are_found() -> None:
    assert {"hsi.train", "hsi.evaluate", "hsi.predict", "hsi.profile", "hsi.summarize",
            "hsi.report"} <= set(COMMANDS)
    assert "hsi.run.training" not in COMMANDS and "hsi.run.outputs" not in COMMANDS


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_command(module: str) -> None:
    imported = imported_modules(MODULES[module]) & set(COMMANDS)
    assert not imported - {module}, f"{module} imports the command(s) {sorted(imported)}"


def test_the_rule_catches_a_command_import(tmp_path: Path) -> None:
    offender = tmp_path / "bad.py"
    offender.write_text("from hsi.predict import predict\nimport hsi.train\n")
    assert imported_modules(offender) & set(COMMANDS) == {"hsi.predict", "hsi.train"}
