"""The corpus stream: headers, segments, provenance, deduplication, bounded memory."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ingest.documents import make_document
from ingest.report import IngestReport, Skipped
from ingest.records import DocumentRecord
from ingest.stream import CODE_HEADER, DOCUMENT_HEADER, CorpusStream, encode_text
from ingest.tokenizers import ByteTokenizer

REPO = Path(__file__).resolve().parents[1]
BOOKS = REPO.parent / "shared" / "data" / "books"


class WordTokenizer:
    """A tokenizer with no encode_batch and multi-character tokens (one id per word)."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []

    def encode(self, text: str) -> list[int]:
        ids = []
        for word in text.replace("\n", " \n ").split(" "):
            if word:
                if word not in self.vocab:
                    self.vocab[word] = len(self.words)
                    self.words.append(word)
                ids.append(self.vocab[word])
        return ids

    def decode(self, ids) -> str:
        return " ".join(self.words[i] for i in ids)


def stream_of(*docs, tokenizer=None, **kwargs) -> tuple[CorpusStream, list]:
    stream = CorpusStream(tokenizer or ByteTokenizer(), **kwargs)
    return stream, [stream.add(doc) for doc in docs]


def test_headers_segments_and_round_trip() -> None:
    code = make_document("import os\nprint(os.sep)", source="src/a.py", kind="code")
    page1 = make_document("First page.", source="book.pdf", kind="pdf", page=1)
    page2 = make_document("Second page.\n", source="book.pdf", kind="pdf", page=2)
    stream, records = stream_of(code, page1, page2)
    text = ByteTokenizer().decode(stream.tokens)
    assert text == CODE_HEADER.format(source="src/a.py") + "import os\nprint(os.sep)\n" + DOCUMENT_HEADER.format(source="book.pdf") + "First page.\nSecond page.\n"
    assert [r.header_tokens > 0 for r in records] == [True, True, False]  # one header per file
    assert records[0].line_end == 2 and records[0].sha256 and records[1].page == 1
    segments = stream.segments(16)
    assert segments[0] == (0, 16) and segments[-1][1] == len(stream) and all(b - a == 16 for a, b in segments[:-1])
    assert sum(b - a for a, b in segments) == len(stream)
    with pytest.raises(ValueError):
        stream.segments(0)


def test_provenance_across_documents_and_lines() -> None:
    doc_a = make_document("alpha one\nalpha two\nalpha three\n", source="a.txt", kind="text", line_start=41, char_offset=1000)
    doc_b = make_document("beta page\n", source="b.pdf", kind="pdf", page=7)
    stream, (a, b) = stream_of(doc_a, doc_b)
    second_line = a.token_start + a.header_tokens + len("alpha one\n")
    where = stream.locate(second_line)
    assert where["path"] == "a.txt" and where["lines"] == (42, 42) and where["excerpt"] == "a"
    assert where["chars"] == (1000 + len("alpha one\n"), 1000 + len("alpha one\nalpha two\n"))
    spans = stream.provenance(second_line, b.token_start + b.header_tokens + 4)
    assert [(s["path"], s["page"], s["lines"]) for s in spans] == [("a.txt", None, (42, 43)), ("b.pdf", 7, (1, 1))]
    assert spans[0]["excerpt"] == "alpha two\nalpha three\n" and spans[1]["excerpt"].endswith("beta")
    assert stream.locate(0)["lines"] == (41, 41)  # header tokens belong to the first line
    with pytest.raises(IndexError):
        stream.provenance(0, len(stream) + 1)


def test_tokenizer_without_batch_and_exact_lines() -> None:
    tokenizer = WordTokenizer()
    doc = make_document("one two\nthree\nfour five six\n", source="w.txt", kind="text")
    stream, (record,) = stream_of(doc, tokenizer=tokenizer)
    assert list(record.line_tokens) == [0, 3, 5, 9]
    index = record.token_start + record.header_tokens + 5  # "four"
    assert stream.locate(index)["lines"] == (3, 3) and stream.locate(index)["excerpt"] == "four"
    assert encode_text(tokenizer, "one two\nthree\n") == stream.tokens[record.token_start + record.header_tokens :][:5].tolist()


def test_duplicates_are_skipped_and_reported() -> None:
    report = IngestReport()
    first = make_document("same words\n", source="x/one.txt", kind="text")
    second = make_document("same words\n", source="y/two.txt", kind="text")
    page = make_document("same words\n", source="z.pdf", kind="pdf", page=3)
    repeat = make_document("a page\n", source="z.pdf", kind="pdf", page=4)
    stream, results = stream_of(first, second, page, repeat, make_document("a page\n", source="z.pdf", kind="pdf", page=5), report=report)
    assert all(isinstance(results[i], DocumentRecord) for i in (0, 3, 4))  # a page repeated in its own file stays
    assert results[1] == Skipped("y/two.txt", "duplicate of x/one.txt")
    assert results[2] == Skipped("z.pdf", "duplicate of x/one.txt", 3)
    assert report.skipped == [results[1], results[2]]
    again = stream.add(make_document("same words\n", source="x/one.txt", kind="text"))  # a path given twice
    assert again == Skipped("x/one.txt", "duplicate of x/one.txt")


def test_count_only_mode_keeps_no_arrays() -> None:
    stream, (record,) = stream_of(make_document("a\nb\n", source="a.txt", kind="text"), keep_tokens=False)
    assert stream.tokens is None and record.line_tokens is None and len(stream) == record.tokens
    assert stream.locate(0) == {"path": "a.txt", "page": None, "kind": "text", "lines": (1, 2), "chars": None, "tokens": (0, 1), "excerpt": None}


def test_sentencepiece_line_by_line_equals_whole_text(tmp_path: Path) -> None:
    """For rmtqa's own tokenizer recipe (newline is a piece), line-wise encoding loses nothing."""
    if not BOOKS.is_dir():
        pytest.skip("shared data not available")
    from model.tokenizer import train_sentencepiece

    text = (BOOKS / "alice-in-wonderland.txt").read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    tokenizer = train_sentencepiece((line for line in text.split("\n") if line.strip()), tmp_path, vocab_size=500)
    sample = text[20_000:40_000] + "\n    def f(x):\n\treturn x\n\n\n"
    assert encode_text(tokenizer, sample) == tokenizer.encode(sample)


def test_large_text_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    """12 MB of text through a dry run: holding it (and its ids) would need well over 100 MB."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc to read peak memory")
    big = tmp_path / "big.txt"
    line = b"All work and no play makes Jack a dull boy, " * 2 + b"\n"
    with open(big, "wb") as handle:
        for block in range(12):
            handle.write(b"%d " % block + line * (1024 * 1024 // len(line)))
    code = (  # VmHWM, not ru_maxrss: the latter inherits the (big) forking parent's peak
        "import re, sys\n"
        "from ingest.pipeline import ingest_paths\nfrom ingest.tokenizers import ByteTokenizer\n"
        "report, stream = ingest_paths([sys.argv[1]], ByteTokenizer(), keep_tokens=False)\n"
        "peak = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "print(report.tokens, peak // 1024)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(big)], cwd=REPO, capture_output=True, text=True, check=True)
    tokens, peak_mb = map(int, result.stdout.split())
    assert tokens > big.stat().st_size  # every byte, plus the header
    assert peak_mb < 100, f"peak RSS {peak_mb} MB for a 12 MB file"
