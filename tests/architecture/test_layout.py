"""``docs/ARCHITECTURE.md`` is the code's picture: every module it names exists, every module
of the package stands on one of its floors, and no import climbs to a higher floor."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGE = ROOT / "gmbench"


def _floors() -> dict[str, int]:
    """``path -> floor`` of every path in the page's table (folders end with ``/``)."""
    out = {}
    for line in PAGE.read_text().splitlines():
        row = re.match(r"^\| (\d+) [^|]*\| ([^|]+) \|", line)
        if row:
            for path in re.findall(r"`([^`]+)`", row.group(2)):
                out[path] = int(row.group(1))
    return out


def _floor_of(path: Path, floors: dict[str, int]) -> int | None:
    rel = path.relative_to(ROOT).as_posix()
    if rel in floors:
        return floors[rel]
    folders = [f for f in floors if f.endswith("/") and rel.startswith(f)]
    return floors[max(folders, key=len)] if folders else None


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every gmbench import in ``path`` (in functions too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("gmbench.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("gmbench"):
            for alias in node.names:  # `from gmbench.run import outputs` imports a module
                sub = f"{node.module}.{alias.name}"
                out.append((node.lineno, sub if _module_file(sub) else node.module))
    return out


def test_every_module_the_page_names_exists():
    text = PAGE.read_text()
    paths = set(re.findall(r"`(gmbench/[\w/.]*|baselines/[\w/.<>]*)`", text))
    missing = [p for p in paths if "<" not in p and not (ROOT / p).exists()]
    dotted = set(re.findall(r"`(gmbench\.[\w.]+)", text))
    missing += [d for d in dotted if _module_file(d) is None
                and _module_file(d.rsplit(".", 1)[0]) is None]
    assert not missing, f"docs/ARCHITECTURE.md names what does not exist: {missing}"


def test_every_module_stands_on_a_floor_and_no_import_climbs():
    floors = _floors()
    assert floors, "docs/ARCHITECTURE.md has no floor table"
    unplaced, climbing = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        mine = _floor_of(path, floors)
        if mine is None:
            unplaced.append(path.relative_to(ROOT).as_posix())
            continue
        for line, module in _imports(path):
            target = _module_file(module)
            theirs = None if target is None else _floor_of(target, floors)
            if theirs is not None and theirs > mine:
                climbing.append(f"{path.relative_to(ROOT)}:{line} imports {module} "
                                f"(floor {theirs} above {mine})")
    assert not unplaced, f"modules on no floor of docs/ARCHITECTURE.md: {unplaced}"
    assert not climbing, "imports that climb:\n" + "\n".join(climbing)


def test_no_modules_import_each_other_in_a_circle():
    """Over every gmbench import, in functions too: a circle would tie the floors' order."""
    graph: dict[Path, set[Path]] = {}
    for path in PACKAGE.rglob("*.py"):
        targets = {_module_file(module) for _, module in _imports(path)}
        graph[path] = {t for t in targets if t is not None and t != path}
    state: dict[Path, int] = {}  # 1: on the current path, 2: finished

    def visit(node: Path, trail: list[Path]) -> list[Path] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*trail, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (circle := visit(start, [start])):
            names = " -> ".join(p.relative_to(ROOT).as_posix() for p in circle)
            raise AssertionError(f"an import circle: {names}")



def _dotted(folder: Path, root: Path, name: str) -> str:
    return ".".join([name, *folder.relative_to(root).parts])


def test_every_source_folder_is_installed():
    """pyproject's package list names every folder that holds modules, and nothing that is gone:
    a folder missing from it installs without its code, a stale name fails the install."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = set()
    for root, name in ((PACKAGE, "gmbench"), (ROOT / "baselines", "gmbench_baselines")):
        on_disk |= {_dotted(p.parent, root, name) for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(on_disk - listed) == [] and sorted(listed - on_disk) == []
