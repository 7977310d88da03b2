"""The house's rule (docs/code.md): layers only point down, and no import circle, deferred imports
(inside functions) included. Read from the source, nothing imported or run."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "expt"

# Each module's layer, top first; a module imports only from its own layer or below. A new module
# is placed here on purpose (the test fails until it is).
LAYERS = {
    "entry": {"expt.cli", "expt.__main__"},
    "commands": {"expt.commands"},
    "assembly": {"expt.build", "expt.rebuild", "expt.lr_find"},
    "parts": {"expt.builders", "expt.tasks", "expt.callbacks", "expt.data", "expt.models", "expt.losses", "expt.gan",
              "expt.fid"},
    "base": {"expt", "expt.learner", "expt.checkpoint", "expt.signature", "expt.runtime", "expt.errors",
             "expt.distributed", "expt.launch", "expt.overrides", "expt.runfolder", "expt.schema", "expt.signals",
             "expt.hostmem", "expt.augment", "expt.metrics", "expt.schedules", "expt.plots", "expt.model_table",
             "expt.tta", "expt.leaderboard", "expt.interpret", "expt.conf", "expt.ema", "expt.init",
             "expt.optimizers"},
}
ORDER = list(LAYERS)  # top first


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The expt modules `path` imports anywhere in it (inside functions too), by full name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return {m for m in found if m in modules and m != name}


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    files = {module_name(p, src): p for p in src.rglob("*.py")}
    return {name: imports(path, name, set(files)) for name, path in files.items()}


def layer_of(module: str) -> str:
    """The layer of a module: its own entry, else its package's (expt.data.pets: expt.data's)."""
    for candidate in (module, *(module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1))):
        for layer, members in LAYERS.items():
            if candidate in members and (candidate != "expt" or module == "expt"):
                return layer
    raise AssertionError(f"{module} has no layer in tests/test_layers.py's LAYERS: place it on purpose")


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None
    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a module to one of a higher layer: 'a -> b (layer of a -> layer of b)'."""
    return [f"{a} -> {b} ({layer_of(a)} -> {layer_of(b)})" for a, targets in sorted(graph.items())
            for b in sorted(targets) if ORDER.index(layer_of(b)) < ORDER.index(layer_of(a))]


def test_the_import_graph_has_no_circle():
    assert circle(import_graph()) is None


def test_imports_only_point_down_and_no_library_module_imports_a_command():
    graph = import_graph()
    assert upward(graph) == []
    into_commands = [f"{a} -> {b}" for a, targets in graph.items() for b in targets
                     if b.startswith("expt.commands") and layer_of(a) not in ("entry", "commands")]
    assert into_commands == []


def test_the_checks_catch_a_circle_and_an_upward_import(tmp_path):
    """The rules can fail: a copy of the package with one import added breaks each."""
    import shutil
    copy = tmp_path / "expt"
    shutil.copytree(SRC, copy)
    schedules = copy / "schedules.py"
    schedules.write_text(schedules.read_text() + "\n\ndef _late():\n    from .commands import summary  # noqa\n")
    graph = import_graph(copy)
    assert "expt.schedules -> expt.commands.summary (base -> commands)" in upward(graph)
    assert circle(graph) is None  # an upward import alone is no circle
    for name, target in (("errors.py", ".learner import Learner"), ("learner.py", ".errors import ExptError")):
        (copy / name).write_text((copy / name).read_text() + f"\nfrom {target}  # noqa\n")
    found = circle(import_graph(copy))
    assert found is not None and {"expt.errors", "expt.learner"} <= set(found)


@pytest.mark.parametrize("module", sorted(import_graph()))
def test_every_module_has_a_layer(module):
    layer_of(module)


def listed_modules(page: Path) -> set[str]:
    """The module paths docs/code.md's 'Every module' block names (folders by their indentation)."""
    text = page.read_text().split("## Every module", 1)[1].split("```")[1]
    paths, folder = set(), ""
    for line in text.splitlines():
        name = line.strip().split(" ")[0]
        if not name or line.startswith("src/"):
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        if depth == 1:
            folder = name if name.endswith("/") else ""
            if name.endswith(".py"):
                paths.add(name)
        elif depth == 2 and name.endswith(".py"):
            paths.add(folder + name)
    return paths


def test_the_code_page_lists_every_module_and_no_other():
    page = SRC.parents[1] / "docs" / "code.md"
    modules = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if p.parent.name != "conf"}
    folders_faces = {m for m in modules if m.endswith("/__init__.py") and m not in listed_modules(page)}
    assert listed_modules(page) ^ (modules - folders_faces) == set()
