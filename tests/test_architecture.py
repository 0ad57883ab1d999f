"""The package's layering, checked on its source with the standard library (``ast``): imports flow one way.

Data flows config -> world -> pretrained state -> engine step -> recorded trajectory -> summary -> experiment
data -> figure; the subpackages are layered in that order. A module may import from its own subpackage and
from lower layers, never from a higher one, never from the package root, and no import cycle exists among
modules (imports inside functions count too: they are dependencies all the same).
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "cpi_theory"

# Lowest first. Top-level private modules (atomic files, errors, interrupt, precision, version) are the base every layer may use.
LAYERS = (
    ("_atomic", "_errors", "_interrupt", "_precision", "_version"),
    ("config",),
    ("engine",),
    ("model",),
    ("reduced",),
    ("simulation",),
    ("paper",),
    ("fit",),
    ("forecast",),
    ("phenomena",),
    ("sweep",),
    ("figures",),
    ("bridge",),
    ("advise",),
    ("cli",),
)
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Fully qualified ``cpi_theory`` modules (or packages) that ``path`` imports, anywhere in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "cpi_theory"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "cpi_theory":
                continue
            if node.module is None or (target + "." + node.names[0].name) in MODULES:
                # ``from . import x``: x is a module of that package
                found |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES}
                if node.module is not None:
                    found.add(target)
            else:
                found.add(target)
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _top(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "cpi_theory"))
def test_imports_flow_downward(module):
    own = _top(module)
    assert own in LAYER_OF, f"{module}: its subpackage {own!r} is not placed in LAYERS"
    for target in sorted(GRAPH[module]):
        assert target != "cpi_theory", f"{module} imports the package root (upward)"
        other = _top(target)
        assert other in LAYER_OF, f"{module} imports {target}, outside LAYERS"
        if other == own:
            continue
        assert LAYER_OF[other] <= LAYER_OF[own], (
            f"{module} (layer {LAYER_OF[own]}, {own}) imports {target} (layer {LAYER_OF[other]}, {other}): upward"
        )


def test_no_import_cycles():
    # Resolve a package import to its __init__ module; then a depth-first search for a back edge.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH.get(node, ())):
            if target not in MODULES:
                continue
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module)


def test_faces_only_re_export():
    """Every ``__init__`` below the root holds a docstring and ``from ._x import Name as Name`` lines only."""
    for name, path in MODULES.items():
        if path.name != "__init__.py" or name == "cpi_theory":
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # the docstring
            assert isinstance(node, ast.ImportFrom) and node.level == 1, (
                f"{name}: not a re-export: {ast.dump(node)}"
            )
            assert all(a.asname == a.name for a in node.names), f"{name}: re-export without 'as Name'"


def test_checker_sees_a_planted_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a synthetic graph with a cycle and an upward edge is caught."""
    monkeypatch.setitem(
        GRAPH, "cpi_theory.model._world", GRAPH["cpi_theory.model._world"] | {"cpi_theory.cli._main"}
    )
    with pytest.raises(AssertionError, match="upward"):
        test_imports_flow_downward("cpi_theory.model._world")
    monkeypatch.setitem(
        GRAPH, "cpi_theory.config._config", GRAPH["cpi_theory.config._config"] | {"cpi_theory.model._world"}
    )
    monkeypatch.setitem(
        GRAPH, "cpi_theory.model._world", GRAPH["cpi_theory.model._world"] | {"cpi_theory.config._config"}
    )
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_import_cycles()


REPO = PACKAGE.parent
SCRIPT_DIRS = ("experiments", "benchmarks", "docs")


def _script_imports(path: pathlib.Path) -> list[str]:
    """``cpi_theory`` imports of a script, spelled ``module:name`` (``module`` for ``import module``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "cpi_theory"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "cpi_theory":
            found += [f"{node.module}:{a.name}" for a in node.names]
    return found


@pytest.mark.parametrize(
    "script", sorted(str(p.relative_to(REPO)) for d in SCRIPT_DIRS for p in (REPO / d).glob("*.py"))
)
def test_scripts_import_only_public_faces(script):
    """Experiments, benchmarks and doc examples use what a user can: no private module, no private name."""
    for spec in _script_imports(REPO / script):
        module, _, name = spec.partition(":")
        private = [part for part in module.split(".") + [name] if part.startswith("_")]
        assert not private, f"{script} imports {spec}: {private[0]} is private (use the subpackage's face)"


def test_the_package_never_imports_the_repository_scripts():
    scripts = {p.stem for d in SCRIPT_DIRS for p in (REPO / d).glob("*.py")}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [(node.module or "").split(".")[0]]
            hit = sorted(set(names) & scripts)
            assert not hit, f"{name} imports the repository script(s) {hit}"
