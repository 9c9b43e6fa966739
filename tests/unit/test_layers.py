"""Imports run one way: the layers of analyzer/, with probes/ and reports/ beside them.

The graph is read from the source (``ast``) of the three packages: every ``import`` and
``from ... import``, those inside functions too, but not those under ``if TYPE_CHECKING:``
(annotations only, never executed). It must have no circle, and every import must go to a
layer its importer may use::

    analyzer (package)                       __version__ and the public API: anyone may read it
    analyzer.__main__, analyzer.cli          the command line: anything
    analyzer.api                             the programmatic entry point: core
    analyzer.operations  batch, history, serve, web   core, protocols, reports, api
    probes                                   core, protocols
    analyzer.protocols   net, http, httpauth, ...     core
    analyzer.core        model, context, pipeline, ...  core (the registry names probes)
    reports                                  the model only (core.model, core.batchmodel)
    analyzer.lab         the bundled lab, beside the product: anything in the product

Nothing in the product imports the lab, except the command line's ``rca lab`` and
``rca demo`` (:data:`LAB_DOORS`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("analyzer", "probes", "reports")
#: Layer packages of analyzer/; any other module there must be one of TOP.
LAYERS = ("core", "protocols", "operations", "lab")
TOP = ("analyzer", "analyzer.__main__", "analyzer.cli", "analyzer.api")

#: Which layers each layer may import (besides itself).
MAY_USE: dict[str, frozenset[str]] = {
    "top": frozenset({"api", "operations", "core", "protocols", "probes", "reports"}),
    "api": frozenset({"core"}),
    "operations": frozenset({"api", "core", "protocols", "reports"}),
    "probes": frozenset({"core", "protocols"}),
    "protocols": frozenset({"core"}),
    "core": frozenset(),
    "reports": frozenset({"core"}),  # and of the core only REPORTS_READ
    "lab": frozenset({"top", "api", "operations", "core", "protocols", "probes", "reports"}),
}
#: Imports allowed across those lines, each with its reason: (importer, imported prefix).
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("analyzer.core.registry", "probes"): "the registry names the probes (probes.REGISTRY)",
    ("analyzer.cli", "analyzer.lab.cli"): "LAB_DOORS: `rca lab`, `rca demo` and `rca web --lab`",
}
#: What reports may read of analyzer: the model, nothing that runs.
REPORTS_READ = ("analyzer.core.model", "analyzer.core.batchmodel")
#: The only imports of the lab from the product.
LAB_DOORS = {("analyzer.cli", "analyzer.lab.cli")}


@dataclass(frozen=True, slots=True)
class Edge:
    """``importer`` imports ``imported`` at ``where`` (path:line)."""

    importer: str
    imported: str
    where: str


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, skipping ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _imports_in(other)
        else:
            yield from _imports(child)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    yield from _imports(node)


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The module of ours that ``name`` is or lies in (``a.b.attr`` -> ``a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


@cache
def edges() -> tuple[Edge, ...]:
    """Every import between modules of the three packages (explicit targets)."""
    modules = _modules()
    found: list[Edge] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_known(alias.name, modules) for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if is_package else name.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.append(full if full in modules else _known(base, modules))
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            found += [Edge(name, t, where) for t in targets if t is not None and t != name]
    return tuple(dict.fromkeys(found))


def _graph() -> dict[str, set[str]]:
    """Explicit imports, plus the packages Python initialises on the way (importing
    ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``), except the importer's own."""
    graph: dict[str, set[str]] = {name: set() for name in _modules()}
    for edge in edges():
        graph[edge.importer].add(edge.imported)
        parent = edge.imported.rpartition(".")[0]
        while parent:
            if not edge.importer.startswith(parent + "."):
                graph[edge.importer].add(parent)
            parent = parent.rpartition(".")[0]
    for name in graph:
        graph[name].discard(name)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def layer(module: str) -> str:
    """The layer of one module of the three packages."""
    parts = module.split(".")
    if parts[0] != "analyzer":
        return parts[0]
    if module in ("analyzer", "analyzer.__main__", "analyzer.cli"):
        return "top"
    if module == "analyzer.api":
        return "api"
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    raise AssertionError(f"{module} is in no layer: move it into analyzer/{'|'.join(LAYERS)}/")


def _excepted(edge: Edge) -> bool:
    if edge.imported == "analyzer":
        return True  # the package itself: __version__, and the public names it loads lazily
    return any(
        edge.importer == importer and (edge.imported + ".").startswith(prefix + ".")
        for importer, prefix in EXCEPTIONS
    )


# --- the walker sees what it must (so that the rules below are not vacuous) -------------------


def test_the_walker_counts_function_level_imports_and_skips_type_checking_ones() -> None:
    # Given the graph read from the source
    found = {(e.importer, e.imported) for e in edges()}
    # Then an import inside a function counts (the CLI imports the batch when it runs it)
    assert ("analyzer.cli", "analyzer.operations.batch") in found
    # ... and one under `if TYPE_CHECKING:` does not (the run context names SharedResults)
    assert ("analyzer.core.context", "analyzer.core.shared") not in found
    # ... and every module of analyzer/ is in a layer
    assert {layer(m) for m in _modules()} <= {*MAY_USE, "probes", "reports"}


# --- the rules ----------------------------------------------------------------------------------


def test_no_import_circle() -> None:
    # Given the import graph of analyzer/, probes/ and reports/
    # Then no module imports, through any chain, a module that imports it back
    circles = _circles(_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_imports_go_down_the_layers() -> None:
    # Given every import between two layers
    upward = [
        f"{e.where}: {e.importer} ({layer(e.importer)}) imports {e.imported} "
        f"({layer(e.imported)})"
        for e in edges()
        if layer(e.importer) != layer(e.imported)
        and layer(e.imported) not in MAY_USE[layer(e.importer)]
        and not _excepted(e)
    ]
    # Then each goes to a layer its importer may use (see the module docstring)
    assert not upward, "imports up the layers:\n" + "\n".join(upward)


def test_reports_read_only_the_model() -> None:
    # Given what reports/ imports from analyzer/
    read = sorted(
        f"{e.where}: {e.imported}"
        for e in edges()
        if layer(e.importer) == "reports"
        and e.imported.startswith("analyzer")
        and e.imported not in REPORTS_READ
    )
    # Then it is the model and nothing that runs a check
    assert not read, "reports read more than the model:\n" + "\n".join(read)


def test_nothing_in_the_product_imports_the_lab_but_rca_lab_and_rca_demo() -> None:
    # Given every import of analyzer.lab from outside the lab
    doors = {
        (e.importer, e.imported): e.where
        for e in edges()
        if layer(e.imported) == "lab" and layer(e.importer) != "lab"
    }
    # Then only the command line's lab and demo commands open it
    assert set(doors) <= LAB_DOORS, doors


def test_core_and_reports_never_import_operations() -> None:
    # Given imports into analyzer.operations
    into_operations = [
        f"{e.where}: {e.importer}"
        for e in edges()
        if layer(e.imported) == "operations" and layer(e.importer) in ("core", "reports")
    ]
    # Then none comes from the core or from the reports
    assert not into_operations, "\n".join(into_operations)
