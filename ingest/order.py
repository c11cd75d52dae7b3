"""Reading order for a code tree: definitions before their uses.

The reader reads once, front to back, so a Python module should come before the modules
that import it. Imports are parsed with `ast` (only the import statements, found by a cheap
line scan, are parsed, which keeps a tree the size of the standard library fast; a file
whose imports cannot be parsed simply has no known dependencies). Files are then sorted
topologically with ties broken by directory order; files in an import cycle are kept
together, in directory order, where the cycle's earliest file would go. Other files keep
their directory order; Python files are placed in the slots Python files occupied.
"""
from __future__ import annotations

import ast
import heapq
import re
from collections import defaultdict
from pathlib import PurePosixPath

from ingest.files import FileRef

PYTHON_SUFFIXES = (".py", ".pyi")
_IMPORT_START = re.compile(rb"^[ \t]*(?:import|from)[ \t]", re.M)


def import_targets(source: bytes) -> list[tuple[int, str]]:
    """(level, dotted name) for each module an import statement may load.

    `level` is the number of leading dots of a relative import; for `from a import b` both
    `a` and `a.b` are listed since `b` may be a submodule.
    """
    statements = _import_statements(source)
    try:
        trees = [ast.parse(b"\n".join(statements))]
    except (SyntaxError, ValueError):  # prose in a docstring that starts with "from "
        trees = []
        for statement in statements:
            try:
                trees.append(ast.parse(statement))
            except (SyntaxError, ValueError):
                continue
    targets: list[tuple[int, str]] = []
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.Import):
                targets.extend((0, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                targets.append((node.level, module))
                targets.extend((node.level, f"{module}.{alias.name}".lstrip(".")) for alias in node.names if alias.name != "*")
    return targets


def _import_statements(source: bytes) -> list[bytes]:
    """Each line that starts an import, dedented and joined with its continuation lines."""
    statements = []
    lines = source.splitlines()
    starts, line, position = [], 0, 0
    for match in _IMPORT_START.finditer(source):
        line += source.count(b"\n", position, match.start())
        position = match.start()
        starts.append(line)
    for number in starts:
        parts = [lines[number].strip()]
        depth = parts[0].count(b"(") - parts[0].count(b")")
        while (depth > 0 or parts[-1].endswith(b"\\")) and number + 1 < len(lines) and len(parts) < 200:
            number += 1
            parts.append(lines[number])
            depth += lines[number].count(b"(") - lines[number].count(b")")
        statements.append(b"\n".join(parts))
    return statements


class ModuleIndex:
    """Maps importable module names to the Python files of one tree.

    A file's import root is the folder above its outermost package (a folder with an
    `__init__.py`); a file outside any package is importable from its own folder (scripts,
    tests). An absolute import prefers a module under the importer's own root, then one at
    the tree root, then the shallowest other root.
    """

    def __init__(self, relpaths: list[str]):
        paths = set(relpaths)
        self.roots: list[str] = []
        self.names: list[str] = []
        self.is_package: list[bool] = []
        self.by_name: dict[str, list[int]] = defaultdict(list)
        for index, relpath in enumerate(relpaths):
            path = PurePosixPath(relpath)
            folder = path.parent
            parts = [] if path.stem == "__init__" else [path.stem]
            while str(folder) != "." and str(folder / "__init__.py") in paths:
                parts.insert(0, folder.name)
                folder = folder.parent
            self.roots.append("" if str(folder) == "." else str(folder))
            self.names.append(".".join(parts))
            self.is_package.append(path.stem == "__init__")
            if parts:
                self.by_name[self.names[-1]].append(index)
        for candidates in self.by_name.values():
            candidates.sort(key=lambda i: (self.roots[i] != "", self.roots[i].count("/"), self.roots[i], i))

    def resolve(self, index: int, level: int, name: str) -> set[int]:
        """Files that `import name` (level 0) or `from .{level}name import` would execute."""
        root = self.roots[index]
        if level:
            package = self.names[index].split(".") if self.names[index] else []
            if not self.is_package[index]:
                package = package[:-1]
            if level - 1 > len(package):
                return set()
            base = package[: len(package) - (level - 1)]
            name = ".".join(base + ([name] if name else []))
        found = set()
        parts = name.split(".")
        own = self.names[index].split(".")
        for end in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c ...
            if parts[:end] == own[:end] and end < len(own):
                continue  # ... but the importer's own parent packages use it, not it them
            candidates = self.by_name.get(".".join(parts[:end]))
            if not candidates:
                continue
            own = [i for i in candidates if self.roots[i] == root]
            if own:
                found.add(own[0])
            elif not level:
                found.add(candidates[0])
        found.discard(index)
        return found


def order_files(files: list[FileRef], max_source_bytes: int) -> list[FileRef]:
    """`files` (in directory order) with the Python ones in dependency order."""
    slots = [i for i, ref in enumerate(files) if ref.suffix in PYTHON_SUFFIXES]
    if len(slots) < 2:
        return files
    relpaths = [files[i].relpath for i in slots]
    index = ModuleIndex(relpaths)
    deps: dict[int, set[int]] = {}
    for n, slot in enumerate(slots):
        try:
            source = files[slot].read_bytes(max_source_bytes)
        except Exception:  # noqa: BLE001 - unreadable files are reported when read for real
            source = b""
        deps[n] = set()
        for level, name in import_targets(source):
            if name or level:
                deps[n] |= index.resolve(n, level, name)
    ordered = list(files)
    for slot, n in zip(slots, topological_order(len(slots), deps)):
        ordered[slot] = files[slots[n]]
    return ordered


def topological_order(count: int, deps: dict[int, set[int]]) -> list[int]:
    """Nodes 0..count-1, each after its dependencies, ties broken by node number.

    Import cycles are collapsed into one unit (strongly connected components); the unit
    goes where its earliest member would, and its members keep their numeric order.
    """
    component = _components(count, deps)
    members: dict[int, list[int]] = defaultdict(list)
    for node in range(count):
        members[component[node]].append(node)
    unit_deps = {unit: {component[d] for n in nodes for d in deps.get(n, ())} - {unit} for unit, nodes in members.items()}
    users: dict[int, list[int]] = defaultdict(list)
    for unit, needs in unit_deps.items():
        for need in needs:
            users[need].append(unit)
    waiting = {unit: len(needs) for unit, needs in unit_deps.items()}
    ready = [(members[unit][0], unit) for unit, count_ in waiting.items() if count_ == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        _, unit = heapq.heappop(ready)
        order.extend(members[unit])
        for user in users[unit]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, (members[user][0], user))
    return order


def _components(count: int, deps: dict[int, set[int]]) -> list[int]:
    """Strongly connected component id of each node (Tarjan's algorithm, iterative)."""
    index_of = [-1] * count
    low = [0] * count
    component = [-1] * count
    on_stack = [False] * count
    stack: list[int] = []
    counter = 0
    for root in range(count):
        if index_of[root] != -1:
            continue
        work = [(root, iter(sorted(deps.get(root, ()))))]
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if index_of[child] == -1:
                    index_of[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack[child] = True
                    work.append((child, iter(sorted(deps.get(child, ())))))
                elif on_stack[child]:
                    low[node] = min(low[node], index_of[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                while True:
                    member = stack.pop()
                    on_stack[member] = False
                    component[member] = node
                    if member == node:
                        break
    return component
