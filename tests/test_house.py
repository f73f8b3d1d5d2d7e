"""The shape of the package: short functions and modules, no import cycles, settings
passed as one options object, light imports. Pure reading of the source: no
TensorFlow, no model."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from batchdigits.options import PredictOptions

PACKAGE = Path(__file__).resolve().parents[1] / "batchdigits"
MAX_FUNCTION_LINES = 50
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {
        module_name(path): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def functions():
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield f"{name}:{node.name}", node


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The package's modules ``tree`` imports, at any depth (lazy imports included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.add(f"relative import of {node.module}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("batchdigits"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("batchdigits")}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> modules it imports, sub-package -> sub-packages it imports)."""
    trees = modules()
    known = set(trees)
    graph = {name: imports(tree, known) - {name} for name, tree in trees.items()}

    def area(name: str) -> str:  # batchdigits.run.driver -> run; batchdigits.rows -> top
        parts = name.split(".")
        nested = len(parts) > 2 or (PACKAGE / parts[-1]).is_dir()
        return parts[1] if nested and len(parts) > 1 else "top"

    areas: dict[str, set[str]] = {}
    for name, targets in graph.items():
        for target in targets:
            a, b = area(name), area(target)
            if a != b and "top" not in (a, b):
                areas.setdefault(a, set()).add(b)
    return graph, areas


def test_no_relative_imports_and_no_import_cycle():
    graph, areas = package_graph()
    assert [t for targets in graph.values() for t in targets if t.startswith("relative")] == []
    assert cycles(graph) == []
    assert cycles(areas) == []  # no two sub-packages import each other, even lazily


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_function_longer_than_50_lines():
    long = {name: n.end_lineno - n.lineno + 1 for name, n in functions()}
    assert {name: lines for name, lines in long.items() if lines > MAX_FUNCTION_LINES} == {}


def test_no_module_longer_than_400_lines():
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


ENTRY_POINTS = {
    "batchdigits.run.driver:predict_folder": "options",
    "batchdigits.evaluation.evaluate:evaluate_folder": "options",
    "batchdigits.web.draw:serve": "options",
    "batchdigits.web.review_app:review": "options",
    "batchdigits.model.inference:open": "options",
    "batchdigits.run.engines:open_engine": "options",
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_library_entry_points_take_settings_as_one_options_object(entry):
    """Each entry point takes a ``PredictOptions`` parameter and none of the settings it
    holds as a parameter of its own: a setting has one name and one default, written
    once, and no two functions doing the same job take different parameter lists."""
    nodes = dict(functions())
    assert entry in nodes, f"{entry} is gone: update ENTRY_POINTS"
    args = nodes[entry].args
    params = {a.arg: a for a in args.args + args.kwonlyargs}
    options = params.get(ENTRY_POINTS[entry])
    assert options is not None and "PredictOptions" in ast.unparse(options.annotation)
    settings = {f.name for f in dataclasses.fields(PredictOptions)}
    assert settings & set(params) == set()


def test_the_settings_check_notices_a_setting_passed_on_its_own():
    """The check above fails for a function that takes a setting by itself."""
    tree = ast.parse("def f(input_dir, batch_size: int = 256, options=None): ...")
    params = {a.arg for a in tree.body[0].args.args}
    assert {f.name for f in dataclasses.fields(PredictOptions)} & params == {"batch_size"}
