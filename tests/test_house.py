"""The shape of the package: short functions, one options object, light imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "batchdigits"
MAX_LINES = 50


def functions():
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield f"{path.name}:{node.name}", node


def test_no_function_longer_than_50_lines():
    long = {name: n.end_lineno - n.lineno + 1 for name, n in functions()}
    assert {name: lines for name, lines in long.items() if lines > MAX_LINES} == {}


def test_library_entry_points_take_the_options_object():
    """predict_folder, evaluate_folder, serve and Inference.open take PredictOptions;
    none of them has the old long parameter lists."""
    params = {name: [a.arg for a in n.args.args + n.args.kwonlyargs] for name, n in functions()}
    assert params["predict.py:predict_folder"] == ["input_dir", "output", "options", "reporter"]
    assert params["evaluate.py:evaluate_folder"] == ["input_dir", "labels_csv", "options", "output"]
    assert params["web.py:serve"] == ["options", "listen", "on_ready"]
    assert params["inference.py:open"] == ["cls", "options"]
