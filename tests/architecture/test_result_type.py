"""Only the result type reads a metric's fields by name: everything else uses
:class:`gmbench.storage.results.MetricRecord`'s attributes, so a field is renamed, added or
re-typed in one place."""

from __future__ import annotations

import ast
from pathlib import Path

from gmbench.storage.results import CORE_FIELDS

PACKAGE = Path(__file__).resolve().parents[2] / "gmbench"
OWN = {PACKAGE / "storage" / "results.py"}
METRIC_FIELDS = set(CORE_FIELDS) | {"not_estimable", "interval_covers"}
MARK = "# not a metric:"  # a read of the same name from another kind of mapping, said so


def _reads(path: Path) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) \
                and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("get", "pop") and node.args \
                and isinstance(node.args[0], ast.Constant):
            key = node.args[0].value
        if key in METRIC_FIELDS and MARK not in lines[node.lineno - 1]:
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {key!r}")
    return found


def test_no_module_but_the_result_type_reads_a_metric_field_by_name():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path not in OWN
             for hit in _reads(path)]
    assert not found, "read through MetricRecord instead:\n" + "\n".join(found)
