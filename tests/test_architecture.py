"""The import-layer contract of DESIGN v3: imports point down only, function-level imports included.

Every ``import`` and ``from ... import`` statement of the package and of the first-party plugins is read
from the source (the AST, so an import inside a function counts as much as one at the top; imports under
``if TYPE_CHECKING:`` are for annotations only and are left out), resolved to the module it names, and
checked against the layers below. A module may import its own layer or any layer below; never above. The
graph of all these imports must also have no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: layers from the bottom (0) up; a module belongs to the first pattern that matches its dotted name
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors/naming", ("deepradiomics.errors", "deepradiomics.naming", "deepradiomics._version", "deepradiomics.yamlio")),
    ("nets", ("deepradiomics.nets",)),
    ("case/perturb/io", ("deepradiomics.case", "deepradiomics.perturb", "deepradiomics.io", "deepradiomics.data")),
    ("featureclass/artifacts/models", ("deepradiomics.featureclass", "deepradiomics.artifacts", "deepradiomics.models")),
    ("params/registry/classical", ("deepradiomics.params", "deepradiomics.registry", "deepradiomics.classical", "deepradiomics.voxelengine")),
    ("batch", ("deepradiomics.batch",)),
    ("voxel", ("deepradiomics.voxel",)),
    (
        "extractor/compat",
        ("deepradiomics.extractor", "deepradiomics.compat", "deepradiomics.transformer", "deepradiomics.testing", "deepradiomics.training", "deepradiomics.ibsi"),
    ),
    ("study", ("deepradiomics.study",)),
    # the public helpers of commands (error reporting, logging, options), for the plugins' own commands
    ("cli helpers", ("deepradiomics.cli.common",)),
    ("plugins", ("deepradiomics_plugins",)),
    ("cli", ("deepradiomics.cli", "deepradiomics.__main__", "deepradiomics")),
]


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of ``module`` (the longest matching prefix wins)."""
    best, length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = index, len(prefix)
    if best is None:
        raise AssertionError(f"module {module} is in no layer of the contract: add it to LAYERS (and to DESIGN.md)")
    return best


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "plugins":
        parts[0] = "deepradiomics_plugins"
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    paths = [*sorted((ROOT / "deepradiomics").rglob("*.py")), *sorted((ROOT / "plugins").rglob("*.py"))]
    return {_module_name(p): p for p in paths}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the statements under ``if TYPE_CHECKING:`` (annotations only, never executed)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped |= {id(n) for n in ast.walk(child)}
    return skipped


def imports_of(name: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The first-party modules (of ``known``) that the code ``source`` of module ``name`` imports anywhere."""
    tree = ast.parse(source)
    skipped = _type_checking_nodes(tree)
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import sub` imports the submodule when there is one, else a name of pkg itself
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: imports_of(name, path.read_text(encoding="utf-8"), path.name == "__init__.py", known) for name, path in modules.items()}


def test_every_import_points_down(graph):
    upward = []
    for module, targets in graph.items():
        if module == "deepradiomics":  # the public API re-exports from every layer
            continue
        for target in targets:
            if target == "deepradiomics":
                continue  # `from .. import naming` style imports resolve to the package; the submodule is checked
            if layer_of(target) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert not upward, "imports that point up:\n" + "\n".join(sorted(upward))


def test_the_import_graph_has_no_cycle(graph):
    edges = {m: {t for t in ts if t != "deepradiomics"} for m, ts in graph.items() if m != "deepradiomics"}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if target.startswith(node + ".") or node.startswith(target + "."):
                continue  # a package and its own submodules (its __init__ re-exports them)
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target] if target in path else path + [target])
            elif state.get(target) is None:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(edges):
        if state.get(node) is None:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_framework_never_names_a_plugin(graph):
    offenders = [m for m, ts in graph.items() if m.startswith("deepradiomics.") and not m.startswith("deepradiomics.cli") and any(t.startswith("deepradiomics_plugins") for t in ts)]
    assert not offenders, f"framework modules importing a plugin: {offenders}"


def test_the_contract_can_fail():
    """The checker sees a function-level import that points up (the kind that hid the old cycles), and skips
    imports for annotations only."""
    known = {"deepradiomics.batch", "deepradiomics.batch.bad", "deepradiomics.extractor", "deepradiomics.case"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..case import Case\n"
        "def f():\n    from ..extractor import Extractor\n    return Extractor\n"
    )
    found = imports_of("deepradiomics.batch.bad", source, False, known)
    assert found == {"deepradiomics.extractor"}
    assert layer_of("deepradiomics.extractor") > layer_of("deepradiomics.batch.bad")


def test_ruff_holds_the_style_contract():
    """ruff with the project's configuration (complexity <= 15, docstrings of the public API, imports) passes."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install '.[test]')")
    result = subprocess.run([ruff, "check", "deepradiomics", "plugins", "tests", "benchmarks", "examples"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]
