"""Questions about real Python code whose answers are written in the code (issue 19, part 3).

A repository holds thousands of definitions, so "where is `parse_config` defined?" tests
whether a reader can find one of them in a whole tree read as one context. The facts are
read with `ast` from every `.py` file a folder walk would read (`ingest.walk`: .gitignore
and vendored, cache and build folders skipped), and only unambiguous ones are asked:

* `defined_in`: "In which file is the function/class X defined?" -> its path from the root;
* `method_of`: "Which class defines the method Y?" -> the class;
* `parameters`: "What are the parameters of X?" -> "a, b, *args, key, **kwargs" (no self/cls);
* `default`: "What is the default value of the parameter P of X?" -> as written, e.g. "None";
* `imported_by`: "Which file imports the module Z?" -> the one file that imports it.

A definition is asked about only if its name is defined once in the whole tree (at any
scope), is public (no leading underscore, so no dunders), and sits at module level or in a
module-level class; an import only if one file imports that module. Answers are kept short
(at most MAX_PARAMETERS parameters, defaults of at most MAX_DEFAULT_CHARS characters, none
that exact match would reduce to nothing, such as `''`). A file that does not parse is
skipped with its reason. Every fact carries its evidence: the file and line that state it.
"""
from __future__ import annotations

import ast
import random
from importlib.util import decode_source
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ingest.files import FileRef
from ingest.report import IngestReport, Skipped
from ingest.walk import walk_folder

KINDS = ("defined_in", "method_of", "parameters", "default", "imported_by")
QUESTIONS = {
    "defined_in": "In which file is the {what} {name} defined?",
    "method_of": "Which class defines the method {name}?",
    "parameters": "What are the parameters of {name}?",
    "default": "What is the default value of the parameter {parameter} of {name}?",
    "imported_by": "Which file imports the module {module}?",
}
_QUESTION_FORMS = {
    "defined_in": re.compile(r"In which file is the (?:function|class) (?P<name>\S+) defined\?"),
    "method_of": re.compile(r"Which class defines the method (?P<name>\S+)\?"),
    "parameters": re.compile(r"What are the parameters of (?P<name>\S+)\?"),
    "default": re.compile(r"What is the default value of the parameter (?P<parameter>\S+) of (?P<name>\S+)\?"),
    "imported_by": re.compile(r"Which file imports the module (?P<module>\S+)\?"),
}
MAX_PARAMETERS = 6
MAX_DEFAULT_CHARS = 24
MAX_SOURCE_BYTES = 16 * 1024 * 1024
_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


@dataclass(frozen=True)
class CodeFact:
    """One question about a tree, its answer, and where the answer is stated."""

    question: str
    answer: str
    path: str  # relative to the tree's root, POSIX separators
    line: int  # 1-based line of the evidence in that file
    kind: str  # one of KINDS


@dataclass
class CodeFactScan:
    """Every unambiguous fact of a tree, the files parsed, and the .py files skipped (why)."""

    facts: list[CodeFact] = field(default_factory=list)
    parsed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def code_fact_kind(question: str) -> str | None:
    """The kind (KINDS) of a code-fact question, or None: lets an evaluation report by kind."""
    text = " ".join(question.split())
    return next((kind for kind, form in _QUESTION_FORMS.items() if form.fullmatch(text)), None)


def code_fact_slots(question: str) -> list[str] | None:
    """What a code-fact question asks about (its names, in order), None for any other
    question: "file", "defined", "parameters" are its form, not its subject."""
    text = " ".join(question.split())
    match = next((m for form in _QUESTION_FORMS.values() if (m := form.fullmatch(text))), None)
    return list(match.groups()) if match else None


def python_files(root: Path) -> list[FileRef]:
    """The `.py` files a folder walk of `root` reads, in directory order (relpaths from root)."""
    return [ref for ref in walk_folder(root, "", IngestReport()) if ref.suffix == ".py"]


def scan_code_facts(root: str | Path) -> CodeFactScan:
    """All unambiguous facts of the Python files under `root` (see the module doc)."""
    scan = CodeFactScan()
    trees: dict[str, ast.Module] = {}
    sources: dict[str, str] = {}
    for ref in python_files(Path(root)):
        try:
            sources[ref.relpath] = decode_source(ref.read_bytes(MAX_SOURCE_BYTES))  # its coding line honoured
            trees[ref.relpath] = ast.parse(sources[ref.relpath], filename=ref.relpath)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OSError) as error:
            scan.skipped.append(Skipped(ref.relpath, f"cannot parse: {type(error).__name__}: {_one_line(error)}"))
    scan.parsed = list(trees)
    defined = Counter(node.name for tree in trees.values() for node in ast.walk(tree) if isinstance(node, _Definition))
    importers: dict[str, dict[str, int]] = defaultdict(dict)  # module -> {file: first line}
    for path, tree in trees.items():
        scan.facts.extend(_definition_facts(path, tree, sources[path], defined))
        for module, line in _imported_modules(tree):
            importers[module].setdefault(path, line)
    for module, files in importers.items():
        if len(files) == 1:
            (path, line), = files.items()
            scan.facts.append(CodeFact(QUESTIONS["imported_by"].format(module=module), path, path, line, "imported_by"))
    return scan


def sample_code_facts(facts: list[CodeFact], n: int, seed: int) -> list[CodeFact]:
    """`n` facts (or all there are), the kinds taken in turn so each is represented; the
    same facts and seed always give the same questions, whatever order the facts came in."""
    rng = random.Random(seed)
    by_kind: dict[str, list[CodeFact]] = defaultdict(list)
    for fact in sorted(facts, key=lambda f: (f.kind, f.path, f.line, f.question)):
        by_kind[fact.kind].append(fact)
    for group in by_kind.values():
        rng.shuffle(group)
    chosen: list[CodeFact] = []
    while len(chosen) < n and any(by_kind.values()):
        for kind in KINDS:
            if by_kind.get(kind) and len(chosen) < n:
                chosen.append(by_kind[kind].pop())
    return chosen


def _definition_facts(path: str, tree: ast.Module, source: str, defined: Counter) -> Iterator[CodeFact]:
    """Facts about the module-level functions and classes of one file and their methods."""
    for node in _statements(tree.body):
        if not isinstance(node, _Definition) or not _askable(node.name, defined):
            continue
        if isinstance(node, ast.ClassDef):
            yield CodeFact(QUESTIONS["defined_in"].format(what="class", name=node.name), path, path, node.lineno, "defined_in")
            for method in _statements(node.body):
                if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)) and _askable(method.name, defined):
                    yield CodeFact(QUESTIONS["method_of"].format(name=method.name), node.name, path, method.lineno, "method_of")
                    yield from _signature_facts(path, method, source, is_method=True)
        else:
            yield CodeFact(QUESTIONS["defined_in"].format(what="function", name=node.name), path, path, node.lineno, "defined_in")
            yield from _signature_facts(path, node, source, is_method=False)


def _signature_facts(path: str, function: ast.FunctionDef | ast.AsyncFunctionDef, source: str, is_method: bool) -> Iterator[CodeFact]:
    """The parameters of a function and the default of each public parameter that has one,
    as the source writes it (on one line)."""
    arguments = function.args
    positional = arguments.posonlyargs + arguments.args
    if is_method and positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    names = [a.arg for a in positional]
    names += [f"*{arguments.vararg.arg}"] if arguments.vararg else []
    names += [a.arg for a in arguments.kwonlyargs]
    names += [f"**{arguments.kwarg.arg}"] if arguments.kwarg else []
    if 0 < len(names) <= MAX_PARAMETERS:
        yield CodeFact(QUESTIONS["parameters"].format(name=function.name), ", ".join(names), path, function.lineno, "parameters")
    every_positional = arguments.posonlyargs + arguments.args  # defaults belong to the last ones
    with_defaults = list(zip(every_positional[len(every_positional) - len(arguments.defaults):], arguments.defaults))
    with_defaults += [(a, d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults) if d is not None]
    for argument, default in with_defaults:
        text = ast.get_source_segment(source, default) or ""
        if argument.arg.startswith("_") or "\n" in text or len(text) > MAX_DEFAULT_CHARS or not re.search(r"[^\W_]", text):
            continue
        question = QUESTIONS["default"].format(parameter=argument.arg, name=function.name)
        yield CodeFact(question, text, path, default.lineno, "default")


def _imported_modules(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """(module, line) for each absolute import in a file (`from x import y` imports x)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        yield from ((name, node.lineno) for name in names if not name.startswith("__"))


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of a module or class body, looking inside if/try/with/loop blocks
    (definitions under `if TYPE_CHECKING:` or `try:` are still at that level), not into
    functions or classes."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.TryStar)):
            for block in ("body", "orelse", "finalbody"):
                yield from _statements(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                yield from _statements(handler.body)


def _askable(name: str, defined: Counter) -> bool:
    return not name.startswith("_") and defined[name] == 1


def _one_line(error: BaseException) -> str:
    if isinstance(error, SyntaxError):
        return f"{error.msg} (line {error.lineno})"
    return " ".join(str(error).split())[:200]
