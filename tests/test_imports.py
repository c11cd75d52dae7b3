"""The import graph of app/, ingest/ and model/: no circles, imports flowing one way (app uses
model and ingest, never the reverse; inside app, front ends use the service, the service the
corpus store), and no app module grown past one idea's length.

Every import counts, wherever it stands (module level, inside a function, under
`if TYPE_CHECKING:`), and so does a string naming a module (`importlib.import_module`):
importing `a.b.c` also runs the packages `a` and `a.b`, so it is an edge to them too.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "ingest", "model")
MAX_APP_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))}


def imported_names(path: Path, name: str) -> set[str]:
    """Every dotted name `path`'s module may import (targets and, for `from X import y`, X.y)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.split(".")[0] in PACKAGES:
            found.add(node.value)
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: the modules of app/ingest/model it imports, with the packages those run}."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges = set()
        for target in imported_names(path, name):
            parts = target.split(".")
            edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known)
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_check_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "cell.py"
    source.write_text("from . import sibling\n\ndef load():\n    from model.backbones import pretrained_backbone\n")
    assert imported_names(source, "model.cell") == {"model", "model.sibling", "model.backbones", "model.backbones.pretrained_backbone"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles() -> None:
    assert cycles(import_graph()) == []


def test_imports_flow_from_app_to_model_and_ingest_never_back() -> None:
    back = {(name, target) for name, targets in import_graph().items() if not name.startswith("app")
            for target in targets if target.split(".")[0] == "app"}
    assert back == set()


def test_app_layers_import_downwards_only() -> None:
    """Front ends (the CLI, which starts the web UI, and the web UI) over the service over the
    corpus store; `app.paths` serves them all."""
    rank = {"app.paths": 0, "app.corpus": 0, "app.service": 1, "app.webui": 2, "app.cli": 3}

    def layer(module: str) -> int | None:
        return next((value for prefix, value in rank.items() if module == prefix or module.startswith(prefix + ".")), None)

    upward = {(name, target) for name, targets in import_graph().items() for target in targets
              if layer(name) is not None and layer(target) is not None and layer(target) > layer(name)}
    assert upward == set()


def test_no_app_module_over_its_limit() -> None:
    long = {str(path.relative_to(REPO)): lines for path in sorted((REPO / "app").rglob("*.py"))
            if (lines := len(path.read_text().splitlines())) > MAX_APP_LINES}
    assert long == {}
