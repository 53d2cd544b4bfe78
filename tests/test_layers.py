"""The package's layers: imports point one way (foundation <- data <- forecasting <- registry <- operations <- the
CLI, settings, display and dashboard), with no cycle; old module paths of pickled model versions still import."""
from __future__ import annotations

import ast
import functools
import importlib
import pickle
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "src" / "coincast"
#: top-level modules below every layer (they import only each other and third-party code)
FOUNDATION = {"config", "timeseries", "metrics", "files", "processes", "patches", "compat"}
RANK = {"foundation": 0, "data": 1, "forecasting": 2, "registry": 3, "operations": 4, "top": 5}


def layer(module: str) -> str:
    first = module.split(".")[1] if "." in module else ""
    if first in RANK:
        return first
    return "foundation" if first in FOUNDATION or not first else "top"  # cli, settings, display, dashboard


def imports(path: Path) -> set[str]:
    """The coincast modules a file imports (also inside functions), the package root left out."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coincast."):
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "coincast":
            found |= {f"coincast.{a.name}" for a in node.names if not a.name.startswith("__")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("coincast.")}
    return found


def module_name(path: Path) -> str:
    return ".".join(("coincast", *path.relative_to(PKG).with_suffix("").parts)).removesuffix(".__init__")


@functools.cache
def graph() -> dict[str, set[str]]:
    """{module: the coincast modules it imports}, parsed when a test asks (not at collection, in every worker)."""
    return {module_name(p): imports(p) for p in PKG.rglob("*.py")}


def test_imports_point_down_the_layers():
    upward = [f"{m} ({layer(m)}) imports {d} ({layer(d)})" for m, deps in graph().items() for d in deps
              if m != "coincast" and RANK[layer(d)] > RANK[layer(m)]]
    assert upward == []


def test_no_import_cycle():
    def owner(name: str) -> str:  # a module of the graph (a name may be one of its attributes)
        while name not in graph() and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    edges = {m: {owner(d) for d in deps} - {m, "coincast"} for m, deps in graph().items() if m != "coincast"}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for d in edges.get(m, ()):
            if d.startswith(m + ".") or m.startswith(d + "."):
                continue  # a package and its own modules (re-exports)
            if state.get(d) == 1:
                return path + [d]
            if d not in state and (cycle := visit(d, path + [d])):
                return cycle
        state[m] = 2
        return None

    cycles = [c for m in edges if m not in state and (c := visit(m, [m]))]
    assert cycles == []


def test_module_paths_of_older_model_versions_still_import():
    from coincast.forecasting.models.baselines import Naive

    assert importlib.import_module("coincast.serving") is importlib.import_module("coincast.forecasting.serving")
    old = pickle.dumps(Naive(), protocol=0).replace(b"coincast.forecasting.models.baselines",
                                                     b"coincast.models.baselines")
    assert b"coincast.models.baselines" in old and isinstance(pickle.loads(old), Naive)
