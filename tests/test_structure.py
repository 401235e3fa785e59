"""The code's shape, checked: no import circles between the project's modules, the shared
resourced/ package imports no app, and each app's rows have one writer."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("resourced", "exports", "imgbed", "restore")
APPS = ("exports", "imgbed", "restore")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
            if "migrations" not in path.parts}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in it (function-level imports count too)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                found.add(candidate)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(path, name, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def is_package_init(name: str) -> bool:
    return (ROOT / name.replace(".", "/") / "__init__.py").exists()


def test_no_import_circles_between_the_projects_modules():
    graph = import_graph()
    # a package's __init__ re-exporting its modules is not a circle of logic
    graph = {name: {t for t in targets if not (is_package_init(t) and name.startswith(t + "."))}
             for name, targets in graph.items()}
    assert cycles(graph) == []


def test_the_shared_package_imports_no_app():
    graph = import_graph()
    offenders = {name: sorted(t for t in targets if t.split(".")[0] in APPS)
                 for name, targets in graph.items() if name.split(".")[0] == "resourced"}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_export_row_has_one_writer():
    """Export and Thumbnail rows are created, updated and deleted only in exports/services.py."""
    writers = set()
    for name, path in project_modules().items():
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in ("update", "create", "get_or_create", "update_or_create", "delete", "bulk_create",
                                      "bulk_update", "save"):
                continue
            text = ast.get_source_segment(source, node.func.value) or ""
            if text.startswith(("Export.objects", "Thumbnail.objects")) or text in ("export", "thumb"):
                writers.add(name)
    assert writers == {"exports.services"}
