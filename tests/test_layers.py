"""The house's structure: no import cycles anywhere in the package, counting imports inside
functions; the layers themselves (platform <- ... <- cli) are import-linter contracts in
pyproject.toml, which `./dev test` checks with `lint-imports`."""

import os
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def import_cycles(graph: grimp.ImportGraph, ignore: set[str]) -> list[list[str]]:
    """The strongly connected groups of modules (Tarjan), each a cycle of imports."""
    edges = {
        module: graph.find_modules_directly_imported_by(module) - ignore
        for module in graph.modules
        if module not in ignore
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges.get(module, ()):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_itself_back_through_others():
    # The root module is create_app(), which wires every package (the only place that does);
    # the commands and the demo call it to build the app. It is the hub, no part of a cycle.
    graph = grimp.build_graph("idp")
    assert import_cycles(graph, ignore={"idp"}) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert import_cycles(graph, ignore=set()) == [["pkg.a", "pkg.b"]]


def test_the_layer_contracts_are_kept():
    linter = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(linter)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this tree's idp, installed or not
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_the_served_app_loads_neither_the_migrations_nor_the_commands():
    """What gunicorn serves (idp.wsgi) carries no Alembic and no operator commands: a serving
    worker never runs them, and they would cost it about 12 MiB (docs/performance.md)."""
    probe = (
        "import sys; import idp.wsgi; "
        "print(sorted({m.split('.')[0] if not m.startswith('idp.') else '.'.join(m.split('.')[:2])"
        " for m in sys.modules} & {'alembic', 'flask_migrate', 'idp.cli', 'idp.demo'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "IDP_CONFIG": "testing"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "[]"
