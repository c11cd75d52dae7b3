"""Text and code loading: encodings, newlines, bounded blocks, Gutenberg boilerplate."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from ingest.limits import Limits
from ingest.report import IngestReport
from ingest.text import TextDecoder, TextLoader, decode_bytes, iter_decoded, iter_line_blocks

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BOOKS = DATA / "books"


def books() -> Path:
    if not BOOKS.is_dir():
        pytest.skip("shared data not available")
    return BOOKS


def load(path: Path, **kwargs):
    report = IngestReport()
    return TextLoader(path, report, **kwargs).load(), report


@pytest.mark.parametrize(
    ("raw", "text", "encoding"),
    [
        (b"\xef\xbb\xbfcaf\xc3\xa9\r\n", "café\n", "utf-8"),
        ("café\n".encode("utf-16"), "café\n", "utf-16-le"),
        (b"caf\xc3\xa9\n", "café\n", "utf-8"),
        (b"caf\xe9 \x93quoted\x94\r", "café “quoted”\n", "cp1252"),
        (b"undefined in cp1252: \x81\x8d", "undefined in cp1252: \x81\x8d", "cp1252"),
    ],
)
def test_encoding_detection(raw: bytes, text: str, encoding: str) -> None:
    assert decode_bytes(raw) == (text, encoding)


def test_switches_to_cp1252_after_ascii_only_prefix() -> None:
    """Latin-1 books are often pure ASCII for their first megabyte."""
    raw = b"plain ascii line\r\n" * 50_000 + b"na\xefve\r\n"
    pieces = list(iter_decoded(io.BytesIO(raw)))
    assert "".join(pieces).endswith("plain ascii line\nnaïve\n")
    assert "\r" not in "".join(pieces)


def test_invalid_byte_after_real_utf8_is_replaced_not_mojibake() -> None:
    decoder = TextDecoder()
    assert decoder.decode("é\n".encode()) == "é\n"
    assert decoder.decode(b"bad \xff byte", final=True) == "bad \ufffd byte"
    assert decoder.encoding.startswith("utf-8")


def test_crlf_split_across_reads_is_one_newline() -> None:
    class TwoReads(io.BytesIO):
        def read(self, size: int = -1) -> bytes:
            return super().read(min(size, 5) if size and size > 0 else size)

    assert "".join(iter_decoded(TwoReads(b"abcd\r\nefgh\r\n"))) == "abcd\nefgh\n"


def test_line_blocks_keep_line_numbers_and_cut_only_giant_lines() -> None:
    text = "".join(f"line {n}\n" for n in range(1, 101)) + "x" * 50 + "\n"
    blocks = list(iter_line_blocks([text[:300], text[300:]], block_chars=64))
    assert "".join(block for block, _, _ in blocks) == text
    for block, line, offset in blocks:
        assert text[offset : offset + len(block)] == block
        if block.startswith("line"):
            assert block.startswith(f"line {line}\n")
        assert len(block) <= 64
    assert all(block.endswith("\n") for block, _, _ in blocks if not block.startswith("x"))


def test_text_file_in_blocks_has_real_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"".join(f"line {n}\r\n".encode() for n in range(1, 5001)))
    docs, report = load(path, limits=Limits(text_block_chars=4096))
    assert len(docs) > 5 and not report.skipped
    for doc in docs:
        first = doc.page_content.split("\n", 1)[0]
        assert first == f"line {doc.metadata['line_start']}"
        assert doc.metadata["kind"] == "text" and doc.metadata["page"] is None
    assert sum(doc.page_content.count("\n") for doc in docs) == 5000


def test_gutenberg_header_and_footer_removed_with_original_line_numbers() -> None:
    path = books() / "pride-and-prejudice.txt"
    docs, report = load(path)
    text = "".join(doc.page_content for doc in docs)
    assert "PROJECT GUTENBERG" not in text.upper()[:2000] and "START OF THIS PROJECT" not in text
    assert "END OF THIS PROJECT GUTENBERG" not in text and "End of the Project Gutenberg" not in text
    assert "It is a truth universally acknowledged" in text
    original = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n").split("\n")
    first = docs[0]
    start = first.metadata["line_start"]
    assert original[start - 1] == first.page_content.split("\n", 1)[0]
    assert "START OF THIS PROJECT GUTENBERG" in original[start - 2]


@pytest.mark.parametrize(("name", "expected"), [("dracula.txt", "a calèche, with"), ("sherlock-holmes.txt", "NORTON, née ADLER")])
def test_latin1_books_decode(name: str, expected: str) -> None:
    docs, _ = load(books() / name)
    text = "".join(doc.page_content for doc in docs)
    assert expected in text and "\ufffd" not in text and "\r" not in text
    assert docs[0].metadata["encoding"] == "cp1252"


def test_bom_crlf_book() -> None:
    docs, _ = load(books() / "alice-in-wonderland.txt")
    text = "".join(doc.page_content for doc in docs)
    assert not text.startswith("\ufeff") and "\r" not in text and "ALICE’S ADVENTURES IN WONDERLAND" in text


def test_empty_whitespace_binary_and_non_utf8(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_bytes(b"  \n\n\t\n")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02binary" * 100)
    (tmp_path / "latin.txt").write_bytes("Größe über alles\n".encode("latin-1"))
    results = {name: load(tmp_path / name) for name in ("empty.txt", "blank.txt", "binary.txt", "latin.txt")}
    assert results["empty.txt"][1].skipped[0].reason == "empty file"
    assert "whitespace" in results["blank.txt"][1].skipped[0].reason
    assert "binary" in results["binary.txt"][1].skipped[0].reason
    assert results["latin.txt"][0][0].page_content == "Größe über alles\n"


def test_code_keeps_everything(tmp_path: Path) -> None:
    source = "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n    def f():\n        return 1\n"
    (tmp_path / "x.py").write_text(source)
    docs, _ = load(tmp_path / "x.py", kind="code")
    assert docs[0].page_content == source and docs[0].metadata["line_start"] == 1
