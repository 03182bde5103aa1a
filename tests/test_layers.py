"""The floors of the house (docs/ARCHITECTURE.md, "Layout"): arrows only point down.

core (plumbing) imports no app; the domain (accounts, auctions) never imports the real-time layer
(leaderboard) nor the wiring (flashbid); no two modules import each other, directly or around a
loop, not even through an import inside a function; the domain's modules carry no HTTP status."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "accounts", "auctions", "leaderboard", "worker", "flashbid")
DOMAIN_MODULES = ("accounts/services.py", "accounts/selectors.py", "accounts/user_cache.py",
                  "auctions/services.py", "auctions/selectors.py", "auctions/settlement.py",
                  "auctions/persistence.py", "auctions/live.py", "auctions/rules.py", "leaderboard/selectors.py")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
            if "tests" not in path.parts and "migrations" not in path.parts}


def _imports(path: Path, known: set[str]) -> set[str]:
    """First-party modules `path` imports, wherever the import statement stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(name for name in names if name in known)
    return found


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    return {name: _imports(path, set(sources)) - {name} for name, path in sources.items()}


def _package(module: str) -> str:
    return module.split(".")[0]


def test_core_imports_no_app():
    offending = {module: sorted(i for i in imports if _package(i) != "core")
                 for module, imports in _graph().items() if _package(module) == "core"}
    assert not {m: i for m, i in offending.items() if i}


def test_the_domain_does_not_import_the_real_time_layer_or_the_wiring():
    offending = {module: sorted(i for i in imports if _package(i) in ("leaderboard", "flashbid", "worker"))
                 for module, imports in _graph().items() if _package(module) in ("accounts", "auctions")}
    assert not {m: i for m, i in offending.items() if i}


def test_no_import_cycle():
    graph = _graph()
    # Package __init__ modules are imported by their submodules implicitly; only real edges count.
    visiting, done, cycles = set(), set(), []

    def visit(module: str, path: list[str]) -> None:
        if module in done:
            return
        if module in visiting:
            cycles.append(path[path.index(module):])
            return
        visiting.add(module)
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*path, imported])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [module])
    assert not cycles


def test_domain_modules_carry_no_http_status():
    offending = []
    for relative in DOMAIN_MODULES:
        for node in ast.walk(ast.parse((ROOT / relative).read_text())):
            if isinstance(node, ast.Constant) and type(node.value) is int and 400 <= node.value <= 599:
                offending.append(f"{relative}:{node.lineno}: {node.value}")
    assert not offending
