"""Deep reads of code: window headings, answers read off a signature, the deep reader's
training windows and the `bm25_window` baseline."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets" / "default"

MODULE = '''"""A small module."""
import zlib


class Parser:
    """Parses things."""

    def __init__(self, strict=False):
        self.strict = strict

    def feed_lines(self, text, limit=10, *rest):
        total = 0
        for line in text.splitlines():
            total += len(line)
            total += len(line) * 2
            total += len(line) * 3
            if total > limit:
                break
        return total


def build_parser(strict=True):
    return Parser(strict)
'''


@pytest.fixture(scope="module")
def tokenizer():
    from model.tokenizer import load_tokenizer

    return load_tokenizer(ASSETS)


@pytest.fixture()
def package(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "parsing.py").write_text(MODULE)
    (root / "main.py").write_text("from sub.parsing import build_parser\n\nparser = build_parser()\n")
    (root / "README.md").write_text("# pkg\n\nUse build_parser to parse.\n")
    return root


def stream_of(root: Path, tokenizer):
    from ingest.headings import WindowHeadings, record_spans
    from ingest.pipeline import ingest_paths

    _, stream = ingest_paths([(root, ".")], tokenizer)
    headings = WindowHeadings(stream.tokens, record_spans(stream.records), tokenizer.decode, tokenizer.encode("\n"))
    return stream, headings


def position_of(stream, tokenizer, path: str, line_text: str) -> int:
    """The first token of the line of `path` that contains `line_text`."""
    record = next(r for r in stream.records if r.path == path)
    lines = MODULE.splitlines() if path.endswith("parsing.py") else None
    index = next(i for i, line in enumerate(lines) if line_text in line)
    return record.token_start + record.header_tokens + record.line_tokens[index]


def test_a_window_in_a_method_is_headed_by_its_file_class_and_method(package: Path, tokenizer) -> None:
    stream, headings = stream_of(package, tokenizer)
    inside = position_of(stream, tokenizer, "sub/parsing.py", "total += len(line) * 3")
    heading = tokenizer.decode(headings(inside))
    assert heading == "# File: sub/parsing.py\nclass Parser:\n    def feed_lines(self, text, limit=10, *rest):\n"
    top_level = position_of(stream, tokenizer, "sub/parsing.py", "return Parser(strict)")
    assert tokenizer.decode(headings(top_level)) == "# File: sub/parsing.py\ndef build_parser(strict=True):\n"
    record = next(r for r in stream.records if r.path == "sub/parsing.py")
    assert headings(record.token_start) == []  # a window that starts at the header shows it already
    readme = next(r for r in stream.records if r.path == "README.md")
    assert tokenizer.decode(headings(readme.token_start + readme.header_tokens + 2)) == "# Document: README.md\n"  # text: no scopes
    assert headings(stream.total + 5) == []


def test_a_long_enclosing_line_is_cut_and_closed(package: Path, tokenizer) -> None:
    from ingest.headings import WindowHeadings, record_spans

    stream, _ = stream_of(package, tokenizer)
    short = WindowHeadings(stream.tokens, record_spans(stream.records), tokenizer.decode, tokenizer.encode("\n"), max_line_tokens=4)
    inside = position_of(stream, tokenizer, "sub/parsing.py", "total += len(line) * 3")
    text = tokenizer.decode(short(inside))
    assert text.startswith("# File: sub/parsing.py\nclass Parser:\n") and text.endswith("\n") and "*rest" not in text


def test_an_answer_is_read_off_a_signature_in_order() -> None:
    from model.deep import copied_prefix

    pieces = ["text", ",", " limit", ",", " *", "rest", " banana"]
    decode = lambda ids: "".join(pieces[i] for i in ids)  # noqa: E731
    window = "def feed lines self text limit 10 rest"
    assert copied_prefix(decode, [0, 1, 2, 3, 4, 5], window) == [0, 1, 2, 3, 4, 5]  # "10" skipped between limit and rest
    assert copied_prefix(decode, [2, 1, 0], window) == []  # " limit,text": cut inside it, not at a space
    assert copied_prefix(decode, [2, 1, 0], window, whole_words=False) == [2, 1]  # out of order: only " limit," was copied
    assert copied_prefix(decode, [0, 1, 2, 3, 4, 5, 6], window) == [0, 1, 2, 3, 4, 5]
    assert copied_prefix(decode, [0, 5], "text a b c d e rest", whole_words=False) == [0]  # "rest" is more than MAX_COPY_GAP words on


def test_training_windows_hold_their_answer_or_say_no_answer(package: Path, tokenizer) -> None:
    from model.deep import NO_ANSWER
    from model.deep_training import code_windows

    windows = code_windows(package, tokenizer, random.Random(0), 64, negatives=1)
    assert windows and {w.kind for w in windows} >= {"defined_in", "parameters", "default"}
    none = tokenizer.encode(f" {NO_ANSWER}") + [tokenizer.eos_id]
    for window in windows:
        prompt = tokenizer.decode(window.prompt)
        answer = tokenizer.decode(window.answer[:-1]).strip()
        if window.holds_answer:
            assert window.answer != none
            assert all(word in prompt for word in answer.replace(",", " ").replace("*", " ").split()), (prompt, answer)
        else:
            assert window.answer == none
    where = [w for w in windows if w.holds_answer and "function build_parser defined" in tokenizer.decode(w.prompt)]
    assert where and tokenizer.decode(where[0].answer[:-1]).strip() == "sub/parsing.py"
    assert "# File: sub/parsing.py" in tokenizer.decode(where[0].prompt)


def test_deep_code_evaluation_reports_the_window_baseline(package: Path, tokenizer) -> None:
    from model.backbones import load_rmt
    from model.code_samples import repository_questions
    from model.evaluate import evaluate

    questions = repository_questions(package, tokenizer, 6, seed=0)
    assert questions.headings is not None
    model = load_rmt(ASSETS)
    report = evaluate(model, tokenizer, questions.samples, depth_buckets=1, batch_size=6, mode="deep", heading=questions.headings)
    assert set(report["baselines"]) == {"last_segment", "bm25", "bm25_window"}
    assert report["baselines"]["bm25_window"][0]["n"] == report["results"][0]["n"] == len(questions.samples)


def test_a_code_question_is_about_its_names_not_its_form() -> None:
    from model.question_types import content_words

    assert content_words("In which file is the function build_parser defined?") == ["build_parser"]
    assert content_words("What is the default value of the parameter limit of feed_lines?") == ["limit", "feed_lines"]
    assert content_words("Which file imports the module os.path?") == ["os", "path"]
    assert content_words("Which file defines the parser?") == ["file", "defines", "parser"]  # not a code-fact form


@pytest.mark.skipif(not (ASSETS / "deep" / "config.json").is_file(), reason="no shipped deep reader")
def test_a_code_question_is_read_deep_with_headings_through_the_service(package: Path, tmp_path: Path) -> None:
    from app.service.corpus_service import CorpusService

    service = CorpusService(tmp_path / "home")
    service.ingest([package], "pkg")
    result = service.ask("pkg", "In which file is the function build_parser defined?")
    assert result["mode"] == "deep" and result["mode_reason"].startswith("deep: a question about code")
    assert result["deep"]["key"] == "build_parser" and result["deep"]["windows_read"] >= 1
    assert result["question_type"] == "code" and result["trained_type"] is True
    assert service.ask("pkg", "Where is Mary?")["mode"] != "deep"  # not a code question: the usual choice


def test_a_scanned_corpus_answers_as_a_fresh_scan(package: Path, tokenizer) -> None:
    from model.backbones import load_rmt
    from model.deep import DeepSettings, WindowIndex, deep_read
    from model.tasks import QUESTION_TEMPLATE

    stream, headings = stream_of(package, tokenizer)
    tokens = list(stream.tokens)
    model = load_rmt(ASSETS)
    index = WindowIndex(tokenizer.decode, tokens, DeepSettings.window)
    for question in ("What are the parameters of feed_lines?", "In which file is the class Parser defined?"):
        prompt = tokenizer.encode(QUESTION_TEMPLATE.format(question=question))
        kwargs = dict(initial_memory=model.initial_memory(1)[0], eos_id=tokenizer.eos_id, heading=headings)
        fresh = deep_read(model, tokenizer.decode, question, prompt, tokens, **kwargs)
        shared = deep_read(model, tokenizer.decode, question, prompt, tokens, index=index, **kwargs)
        assert (shared.text, shared.start, shared.windows_read, shared.key) == (fresh.text, fresh.start, fresh.windows_read, fresh.key)
        assert fresh.windows == len(index.starts) and fresh.windows_read >= 1
