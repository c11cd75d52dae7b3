"""Folders and repositories: every file accounted for, .gitignore, symlinks, reading order."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ingest.files import FileRef
from ingest.limits import Limits
from ingest.order import import_targets, order_files, topological_order
from ingest.pipeline import ingest_paths
from ingest.tokenizers import ByteTokenizer

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def run(*paths: Path, limits: Limits = Limits()):
    report, stream = ingest_paths(list(paths), ByteTokenizer(), limits=limits)
    return report, stream, {item.path: item.reason for item in report.skipped}


def test_mixed_folder_accounts_for_every_file(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    write(root, {
        "book.txt": "Call me Ishmael.\n",
        "page.html": "<html><script>x()</script><p>Hello page</p></html>",
        "code/main.py": "print('hi')\n",
        "code/binary.py": b"\x00\x01\x02\x03" * 64,
        "unknown.xyz": "?",
        "empty.txt": "",
        "notes.md": "Call me Ishmael.\n",
        "fake.pdf": b"%PDF-1.4 truncated garbage",
    })
    outside = tmp_path / "outside.txt"
    outside.write_text("secret outside the folder\n")
    os.symlink(outside, root / "escape.txt")
    os.symlink(root / "loop_b", root / "loop_a")
    os.symlink(root / "loop_a", root / "loop_b")
    os.symlink(root, root / "code" / "up")
    os.symlink(root / "missing", root / "dangling.txt")
    os.symlink(root / "book.txt", root / "alias.txt")
    report, _, reasons = run(root)
    read = {entry.path.removeprefix(f"{root}/") for entry in report.documents}
    skipped = {path.removeprefix(f"{root}/"): reason for path, reason in reasons.items()}
    assert read == {"book.txt", "page.html", "code/main.py"}
    assert skipped == {
        "alias.txt": "symlink (not followed; book.txt is read at its real path)",
        "notes.md": "duplicate of " + str(root / "book.txt"),
        "code/binary.py": "binary file (not text)",
        "code/up": "symlink loop (points to a folder that contains it)",
        "dangling.txt": "broken symlink",
        "empty.txt": "empty file",
        "escape.txt": "symlink points outside the folder (not followed)",
        "fake.pdf": skipped["fake.pdf"],
        "loop_a": "symlink loop",
        "loop_b": "symlink loop",
        "unknown.xyz": "unsupported file type (.xyz)",
    }
    assert skipped["fake.pdf"].startswith("damaged or not a PDF")
    every_entry = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink() or p.is_file()}
    assert every_entry == read | set(skipped)


def test_gitignore_semantics_and_skipped_folders(tmp_path: Path) -> None:
    write(tmp_path, {
        ".gitignore": "*.log\n!keep.log\nsecret/\n/top_only.py\n",
        "keep.log": "kept\n",
        "drop.log": "dropped\n",
        "top_only.py": "x = 1\n",
        "sub/top_only.py": "y = 2\n",
        "sub/.gitignore": "*.txt\n!important.txt\n",
        "sub/notes.txt": "ignored\n",
        "sub/important.txt": "important\n",
        "secret/key.py": "KEY = 1\n",
        "node_modules/lib/index.js": "module.exports = {}\n",
        "pkg.egg-info/PKG-INFO.txt": "meta\n",
        "env/pyvenv.cfg": "home = /usr\n",
        "env/lib/x.py": "z = 3\n",
    })
    report, _, reasons = run(tmp_path)
    read = {entry.path.removeprefix(f"{tmp_path}/") for entry in report.documents}
    assert read == {".gitignore", "sub/.gitignore", "sub/top_only.py", "sub/important.txt"}
    skipped = {path.removeprefix(f"{tmp_path}/"): reason for path, reason in reasons.items()}
    assert skipped["drop.log"] == "ignored by .gitignore"
    assert skipped["keep.log"] == "unsupported file type (.log)"  # not ignored, but not a text type
    assert skipped["top_only.py"] == "ignored by .gitignore"
    assert skipped["sub/notes.txt"] == "ignored by .gitignore"
    assert skipped["secret"] == "ignored by .gitignore"
    assert skipped["node_modules"] == "skipped folder: installed dependencies"
    assert skipped["pkg.egg-info"] == "skipped folder: build output"
    assert skipped["env"] == "skipped folder: virtual environment"


def test_size_caps(tmp_path: Path) -> None:
    write(tmp_path, {"a_small.py": "a = 1\n", "b_big.py": "b = 2\n" * 100, "c_more.txt": "more text\n" * 50})
    _, _, reasons = run(tmp_path, limits=Limits(max_code_file_bytes=200, max_tree_bytes=400))
    assert reasons[str(tmp_path / "b_big.py")].startswith("source file too large (600 bytes, limit 200 bytes)")
    assert reasons[str(tmp_path / "c_more.txt")].startswith("over the size cap for one folder or archive")


def test_import_targets_and_order() -> None:
    assert import_targets(b"import os.path\nfrom . import sib\nfrom ..pkg import (a,\n    b)\n") == [
        (0, "os.path"), (1, ""), (1, "sib"), (2, "pkg"), (2, "pkg.a"), (2, "pkg.b"),
    ]
    assert import_targets(b"def broken(:\n    import json\n") == [(0, "json")]
    assert topological_order(4, {0: {2}, 1: set(), 2: {3}, 3: {2}}) == [1, 2, 3, 0]  # cycle 2<->3 kept together


def test_python_files_ordered_by_imports(tmp_path: Path) -> None:
    files = {
        "README.md": "# demo\n",
        "app.py": "from pkg import api\n",
        "pkg/__init__.py": "from .api import run\n",
        "pkg/api.py": "from pkg.core import CORE\nfrom . import helpers\n",
        "pkg/core.py": "CORE = 1\n",
        "pkg/helpers.py": "import pkg.core\n",
        "pkg/cycle_a.py": "from pkg import cycle_b\n",
        "pkg/cycle_b.py": "from pkg import cycle_a\n",
        "tests/test_api.py": "import app\n",
        "broken.py": "def oops(:\n",
    }
    write(tmp_path, files)
    refs = [FileRef.from_path(tmp_path / name, name, name) for name in sorted(files, key=lambda n: (n.count("/"), n))]
    order = [ref.relpath for ref in order_files(refs, 10_000)]
    position = {name: order.index(name) for name in order}
    assert order[0] == "README.md"  # non-Python files keep their place
    for user, used in [("app.py", "pkg/__init__.py"), ("pkg/__init__.py", "pkg/api.py"), ("pkg/api.py", "pkg/core.py"),
                       ("pkg/api.py", "pkg/helpers.py"), ("pkg/helpers.py", "pkg/core.py"), ("tests/test_api.py", "app.py")]:
        assert position[used] < position[user], (used, user, order)
    assert position["pkg/cycle_a.py"] + 1 == position["pkg/cycle_b.py"]
    assert order == [ref.relpath for ref in order_files(refs, 10_000)]


def test_this_repository_orders_files_and_maps_a_line_back() -> None:
    report, stream, reasons = run(REPO)
    paths = [entry.path.removeprefix(f"{REPO}/") for entry in report.documents]
    for used, user in [("ingest/report.py", "ingest/stream.py"), ("ingest/stream.py", "ingest/pipeline.py"),
                       ("ingest/pipeline.py", "app/cli/commands/ingest.py"), ("ingest/stream.py", "tests/test_ingest_tree.py")]:
        assert paths.index(used) < paths.index(user), (used, user)
    assert reasons[f"{REPO}/.git"] == "skipped folder: version-control data"
    assert not any("/.venv/" in path for path in paths)

    source = REPO / "ingest" / "stream.py"
    lines = source.read_text().split("\n")
    number = lines.index('CODE_HEADER = "# File: {source}\\n"') + 1
    record = next(r for r in stream.records if r.path == str(source))
    assert stream.tokenizer.decode(stream.tokens[record.token_start : record.token_start + record.header_tokens]) == f"# File: {source}\n"
    offset = sum(len(line.encode()) + 1 for line in lines[: number - 1])
    where = stream.locate(record.token_start + record.header_tokens + offset)
    assert (where["path"], where["page"], where["kind"], where["lines"]) == (str(source), None, "code", (number, number))
    start = record.token_start + record.header_tokens + offset
    span = stream.provenance(start, start + len(lines[number - 1]))
    assert span[0]["excerpt"] == lines[number - 1]
    assert span[0]["chars"] == (sum(len(line) + 1 for line in lines[: number - 1]), sum(len(line) + 1 for line in lines[:number]))


@pytest.mark.skipif(not (DATA / "books").is_dir(), reason="shared data not available")
def test_folder_of_books_is_deterministic(tmp_path: Path) -> None:
    for name in ("alice-in-wonderland.txt", "frankenstein.txt", "pride-and-prejudice.html"):
        shutil.copy(DATA / "books" / name, tmp_path / name)
    shutil.copy(DATA / "books" / "frankenstein.txt", tmp_path / "frankenstein-copy.txt")
    first, stream_a, reasons = run(tmp_path)
    second, stream_b, _ = run(tmp_path)
    assert first.to_dict()["documents"] == second.to_dict()["documents"] and stream_a.tokens == stream_b.tokens
    assert reasons == {str(tmp_path / "frankenstein.txt"): f"duplicate of {tmp_path / 'frankenstein-copy.txt'}"}


def test_git_repository_paths(tmp_path: Path) -> None:
    write(tmp_path / "work", {"main.py": "print(1)\n", ".git/HEAD": "ref: refs/heads/main\n", ".git/config": "[core]\n"})
    (tmp_path / "work" / ".git" / "objects").mkdir()
    (tmp_path / "work" / ".git" / "refs").mkdir()
    shutil.copytree(tmp_path / "work" / ".git", tmp_path / "bare.git")
    report, _, reasons = run(tmp_path / "work" / ".git", tmp_path / "bare.git")
    assert [entry.path for entry in report.documents] == [f"{tmp_path}/work/main.py"]  # repo/.git means the repo
    assert reasons[str(tmp_path / "bare.git")].startswith("bare git repository (no working tree)")
