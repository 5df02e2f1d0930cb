"""The layering a newcomer sees from the folder list: cli -> pipeline -> stages -> shared base.
An import only points down (lazy imports inside functions included), and no two modules
import each other at load time."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "gekro_ft"
STAGES = {"data", "train", "eval", "serve", "route", "bench", "batch", "cost"}
RANK = {"base": 0, "stage": 1, "pipeline": 2, "cli": 3}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "shipped" not in path.relative_to(PACKAGE).parts:
            found[".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _layer(module: str) -> str:
    part = module.split(".")[1] if "." in module else ""
    if part in ("cli", "__main__"):
        return "cli"
    if part == "pipeline":
        return "pipeline"
    return "stage" if part in STAGES else "base"


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """The gekro_ft modules a file imports (``from X import name`` counts X.name when that is a module)."""
    tree = ast.parse(path.read_text())
    nodes = list(_load_time(tree)) if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gekro_ft"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("gekro_ft")}
    return {m for m in out if m in MODULES}


def _load_time(node: ast.AST):
    """Every node that runs (or that a type checker follows) when the module is imported:
    all but function bodies; ``if TYPE_CHECKING:`` blocks count, a circle there is still one."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield child
            yield from _load_time(child)


def test_imports_point_down():
    up = [f"{m} ({_layer(m)}) imports {t} ({_layer(t)})"
          for m, path in sorted(MODULES.items()) for t in sorted(_imports(path, top_level_only=False))
          if RANK[_layer(t)] > RANK[_layer(m)]]
    assert up == []


def test_stages_use_the_base_not_each_others_cli_or_pipeline():
    # the pipeline never starts the CLI: stages that need a process go through its stage entry
    text = (PACKAGE / "pipeline" / "run.py").read_text()
    assert "gekro_ft.cli" not in text and "gekro_ft.pipeline.stage" in text


def test_no_import_circles_at_load_time():
    graph = {m: _imports(p, top_level_only=True) - {m} for m, p in MODULES.items()}
    circles = []

    def visit(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in trail:
                circles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in done:
                visit(nxt, trail + [nxt])
        done.add(node)

    done: set[str] = set()
    for m in sorted(graph):
        if m not in done:
            visit(m, [m])
    # a package's __init__ importing its own submodules is how packages work, not a circle
    circles = [c for c in circles if not all(part.startswith(c.split(" -> ")[0]) for part in c.split(" -> "))]
    assert circles == []
