"""The layout rule: imports run downward only through an explicit list of layers, with no cycle,
and commands (`python -m hsi.<command>`) sit on top and never import one another."""

from __future__ import annotations

import ast
from pathlib import Path

from hsi.run.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "hsi"

# top to bottom; a module may import modules of its own layer or of layers below it, never above
# (so run/ never imports deploy/ or studies/). Rooms of one layer that must not import one another
# are listed in FORBIDDEN.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("commands", ()),                                    # hsi/<command>.py (found by their __main__)
    ("deploy, studies", ("hsi.deploy", "hsi.studies", "hsi.search")),
    ("run", ("hsi.run",)),
    ("models", ("hsi.models",)),
    ("data", ("hsi.data",)),                            # the lazy face, the datamodule, compat
    ("sampling, splits", ("hsi.data.sampling", "hsi.data.splits")),  # never the datamodule (nor Lightning)
    ("scenes", ("hsi.data.scenes",)),                    # scenes, streamed scenes, catalogue, invalid pixels
    ("pca", ("hsi.data.preprocessing",)),
    ("readers", ("hsi.data.readers",)),                  # nothing above them in data/; torch-free
    ("shared", ("hsi.maps", "hsi.utils", "hsi.errors", "hsi")),
]
FORBIDDEN = {("hsi.deploy", "hsi.studies"), ("hsi.studies", "hsi.deploy"),
             ("hsi.data.sampling", "hsi.data.splits"), ("hsi.data.splits", "hsi.data.sampling")}
# hsi/data/ holds its rooms (sub-packages) and, directly, only these: the lazy face, the datamodule
# that assembles the rooms, the one place for old spellings, and PCA (a room of one module)
DATA_ROOT = {"__init__.py", "datamodule.py", "compat.py", "preprocessing.py"}
DATA_ROOMS = ("readers", "sampling", "scenes", "splits")  # its sub-packages
# rooms whose every module the torch-free runtime (`hsi.deploy.runtime`) may import
TORCH_FREE = ("hsi.data.readers",)
HEAVY = ("torch", "lightning", "hydra", "sklearn")


def module_name(path: Path, root: Path = PROJECT_ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_command(path: Path) -> bool:
    """A module run as `python -m`: it has an `if __name__ == "__main__":` block."""
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)
               and "__main__" in ast.unparse(node.test) for node in tree.body)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every `hsi` module a file imports (anywhere in it), including `from hsi.x import name`
    where `hsi.x.name` is itself a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            members = {f"{node.module}.{alias.name}" for alias in node.names}
            names |= (members & modules) or {node.module}
    return {n for n in names if n in modules}


def layer_of(module: str, commands: set[str]) -> int:
    if module in commands:
        return 0
    best = None
    for index, (_, prefixes) in enumerate(LAYERS[1:], start=1):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                    best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def room_of(module: str) -> str:
    """`hsi.<package>`, or `hsi.data.<room>` for a room of hsi/data/ (its package or a module of it)."""
    parts = module.split(".")
    in_room = parts[:2] == ["hsi", "data"] and len(parts) > 2 and parts[2] in DATA_ROOMS
    return ".".join(parts[:3] if in_room else parts[:2])


def violations(package: Path, root: Path) -> list[str]:
    """Every upward import, forbidden room import, command import and import cycle under `package`."""
    paths = {module_name(p, root): p for p in sorted(package.rglob("*.py"))}
    commands = {name for name, path in paths.items() if is_command(path)}
    graph = {name: imported_modules(path, set(paths)) - {name} for name, path in paths.items()}
    found = []
    for name, imports in graph.items():
        for other in imports:
            if other in commands:
                found.append(f"{name} imports the command {other}")
            elif layer_of(other, commands) < layer_of(name, commands):
                found.append(f"{name} imports {other}, a layer above it")
            elif (room_of(name), room_of(other)) in FORBIDDEN:
                found.append(f"{name} imports {other} ({room_of(name)} never imports {room_of(other)})")
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected set of modules (module packages' __init__ excluded from
    counting a package and its own submodules as a cycle)."""
    seen: set[str] = set()
    out = []

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = stack[stack.index(node):] + [node]
            if frozenset(cycle) not in seen:
                seen.add(frozenset(cycle))
                out.append(cycle)
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            if not node.startswith(nxt + ".") and not nxt.startswith(node + "."):  # package <-> member
                visit(nxt, [*stack, node])
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        visit(start, [])
    return out


def test_the_commands_are_found() -> None:
    commands = {module_name(p) for p in PACKAGE.glob("*.py") if is_command(p)}
    assert {"hsi.train", "hsi.evaluate", "hsi.predict", "hsi.export", "hsi.profile",
            "hsi.summarize", "hsi.report"} <= commands
    assert not any(is_command(p) for p in PACKAGE.glob("*/**/*.py")), "commands live directly in hsi/"


def test_imports_run_downward_without_cycles() -> None:
    assert violations(PACKAGE, PROJECT_ROOT) == []


def test_few_library_modules_directly_under_hsi() -> None:
    library = sorted(p.name for p in PACKAGE.glob("*.py") if not is_command(p))
    assert len(library) <= 4, library


def test_data_holds_rooms_and_few_modules_of_its_own() -> None:
    loose = sorted(p.name for p in (PACKAGE / "data").glob("*.py"))
    assert set(loose) <= DATA_ROOT, f"{sorted(set(loose) - DATA_ROOT)}: put it in a room of hsi/data/"
    rooms = sorted(p.parent.name for p in (PACKAGE / "data").glob("*/__init__.py"))
    assert rooms == list(DATA_ROOMS), rooms


def heavy_imports(path: Path) -> set[str]:
    """The heavy libraries a file imports at module level (not inside a function)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names & set(HEAVY)


def test_the_readers_import_no_heavy_library() -> None:
    found = {module_name(p): heavy for room in TORCH_FREE
             for p in (PROJECT_ROOT / room.replace(".", "/")).rglob("*.py") if (heavy := heavy_imports(p))}
    assert not found, found


def test_no_module_over_500_lines() -> None:
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


def _plant(tmp_path: Path, files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        path = tmp_path / "hsi" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return violations(tmp_path / "hsi", tmp_path)


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    found = _plant(tmp_path, {"__init__.py": "", "data/__init__.py": "", "run/__init__.py": "",
                              "data/reader.py": "from hsi.run import outputs\n", "run/outputs.py": ""})
    assert found == ["hsi.data.reader imports hsi.run.outputs, a layer above it"]


def test_the_rule_catches_a_cycle(tmp_path: Path) -> None:
    found = _plant(tmp_path, {"__init__.py": "", "data/__init__.py": "",
                              "data/a.py": "import hsi.data.b\n", "data/b.py": "from hsi.data import a\n"})
    assert found == ["import cycle: hsi.data.a -> hsi.data.b -> hsi.data.a"]


def test_the_rule_keeps_the_splits_below_the_datamodule(tmp_path: Path) -> None:
    found = _plant(tmp_path, {"__init__.py": "", "data/__init__.py": "", "data/splits/__init__.py": "",
                              "data/readers/__init__.py": "", "data/datamodule.py": "",
                              "data/readers/io.py": "", "data/splits/mine.py":
                              "from hsi.data.readers import io\nimport hsi.data.datamodule\n"})
    assert found == ["hsi.data.splits.mine imports hsi.data.datamodule, a layer above it"]


def test_the_rule_keeps_readers_below_scenes_and_sampling_off_splits(tmp_path: Path) -> None:
    found = _plant(tmp_path, {"__init__.py": "", "data/__init__.py": "", "data/readers/__init__.py": "",
                              "data/scenes/__init__.py": "", "data/sampling/__init__.py": "",
                              "data/splits/__init__.py": "", "data/scenes/scene.py": "",
                              "data/splits/mine.py": "",
                              "data/readers/io.py": "import hsi.data.scenes.scene\n",
                              "data/sampling/windows.py": "from hsi.data.splits import mine\n",
                              "data/sampling/whole.py": "import hsi.data.splits\n"})  # the room's package
    assert sorted(found) == [
        "hsi.data.readers.io imports hsi.data.scenes.scene, a layer above it",
        "hsi.data.sampling.whole imports hsi.data.splits (hsi.data.sampling never imports hsi.data.splits)",
        "hsi.data.sampling.windows imports hsi.data.splits.mine "
        "(hsi.data.sampling never imports hsi.data.splits)"]


def test_the_rule_catches_a_command_import_and_run_importing_deploy(tmp_path: Path) -> None:
    found = _plant(tmp_path, {"__init__.py": "", "run/__init__.py": "", "deploy/__init__.py": "",
                              "predict.py": "if __name__ == '__main__':\n    pass\n",
                              "train.py": "import hsi.predict\nif __name__ == '__main__':\n    pass\n",
                              "run/a.py": "from hsi.deploy import b\n", "deploy/b.py": ""})
    assert sorted(found) == ["hsi.run.a imports hsi.deploy.b, a layer above it",
                             "hsi.train imports the command hsi.predict"]
