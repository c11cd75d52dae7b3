"""A file to read, wherever it lives, and what kind of file it is.

Folders and archives both produce `FileRef`s, so every loader reads a file on disk and a
member of a zip the same way (through `opener`), and every skip names the same display path.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

from ingest.limits import human_bytes

BINARY_SNIFF_BYTES = 8192
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f\b\x1b")

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst", ".adoc", ".org"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
CODE_SUFFIXES = {
    ".py", ".pyi", ".pyx", ".ipynb", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".vue", ".svelte",
    ".java", ".kt", ".kts", ".scala", ".groovy", ".gradle", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp",
    ".hh", ".cu", ".cuh", ".m", ".mm", ".cs", ".fs", ".go", ".rs", ".swift", ".rb", ".php", ".pl", ".pm",
    ".lua", ".r", ".jl", ".hs", ".ml", ".mli", ".ex", ".exs", ".erl", ".hrl", ".clj", ".cljs", ".elm",
    ".dart", ".zig", ".nim", ".v", ".sv", ".vhd", ".f90", ".f", ".sql", ".sh", ".bash", ".zsh", ".fish",
    ".ps1", ".bat", ".cmd", ".css", ".scss", ".sass", ".less", ".json", ".jsonc", ".toml", ".yaml",
    ".yml", ".ini", ".cfg", ".conf", ".xml", ".xsd", ".proto", ".graphql", ".tf", ".cmake", ".mk",
    ".tex", ".bib", ".s", ".asm", ".el", ".vim", ".nix", ".sol",
}
CODE_NAMES = {
    "Makefile", "makefile", "GNUmakefile", "Dockerfile", "Containerfile", "Jenkinsfile", "Vagrantfile",
    "Rakefile", "Gemfile", "Procfile", "BUILD", "WORKSPACE", "CMakeLists.txt", "meson.build",
    ".gitignore", ".gitattributes", ".dockerignore", ".editorconfig", ".env.example",
}
TEXT_NAMES = {"README", "LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS", "CONTRIBUTORS", "CHANGELOG", "CHANGES", "HISTORY", "INSTALL"}
# Generated files that are text but carry nothing a reader should spend tokens on.
GENERATED_NAMES = {
    "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "Pipfile.lock", "Cargo.lock",
    "composer.lock", "Gemfile.lock", "uv.lock", "go.sum",
}


@dataclass(frozen=True)
class FileRef:
    """A file on disk or inside an archive.

    `source` is the display path used in reports and provenance, `relpath` the path inside
    the folder or archive it was found in (POSIX separators), `depth` the archive nesting.
    """

    source: str
    relpath: str
    size: int
    opener: Callable[[], BinaryIO]
    depth: int = 0

    @classmethod
    def from_path(cls, path: Path, source: str, relpath: str | None = None) -> FileRef:
        return cls(source, relpath or path.name, path.stat().st_size, lambda: open(path, "rb"))

    @property
    def name(self) -> str:
        return PurePosixPath(self.relpath).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.relpath).suffix.lower()

    def head(self, size: int = BINARY_SNIFF_BYTES) -> bytes:
        with self.opener() as handle:
            return handle.read(size)

    def read_bytes(self, limit: int) -> bytes:
        """The whole file, refusing (ValueError) one bigger than `limit`."""
        if self.size > limit:
            raise ValueError(f"too large to read into memory ({human_bytes(self.size)}, limit {human_bytes(limit)})")
        with self.opener() as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"too large to read into memory (limit {human_bytes(limit)})")
        return data


def printable_path(path: str) -> str:
    """`path` with the bytes of an undecodable name (which Python holds as surrogate escapes)
    written as `\\xNN`, so it can be shown, tokenized and saved as UTF-8. The file itself is
    still opened by its real name."""
    try:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no byte decodes to
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


def as_file_ref(file: FileRef | str | Path) -> FileRef:
    """A FileRef for a path (displayed as given), or the FileRef itself."""
    if isinstance(file, FileRef):
        return file
    return FileRef.from_path(Path(file), source=str(file))


def classify(ref: FileRef) -> str | None:
    """The loader a file needs: 'pdf', 'epub', 'docx', 'html', 'text', 'code', 'zip'; None if unsupported."""
    name, suffix = ref.name, ref.suffix
    if suffix in (".pdf", ".epub", ".docx", ".zip"):
        return suffix[1:]
    if suffix in HTML_SUFFIXES:
        return "html"
    if name in CODE_NAMES:
        return "code"
    if suffix in TEXT_SUFFIXES or name in TEXT_NAMES:
        return "text"
    if suffix in CODE_SUFFIXES:
        return "code"
    return None


def generated_reason(ref: FileRef) -> str | None:
    """Why a file is generated output rather than source (lock files, minified bundles)."""
    if ref.name in GENERATED_NAMES:
        return "lock file (generated)"
    if ref.name.endswith((".min.js", ".min.css")):
        return "minified file (generated)"
    return None


def looks_binary(head: bytes) -> bool:
    """NUL bytes, or many control characters, in the first bytes mean "not text".

    A UTF-16/32 byte-order mark is text even though it is full of NULs.
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    if b"\x00" in head:
        return True
    if not head:
        return False
    control = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return control / len(head) > 0.1
