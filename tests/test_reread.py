"""Re-reading the source (`mode: reread`): the ranking rules on their own, and the shipped
reader answering exact values through a real corpus, the CLI and the service."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.reread import Candidate, _cover, answer_span

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets" / "default"
BOOK = REPO.parent / "shared" / "data" / "books" / "frankenstein.txt"
SHIPPED = pytest.mark.skipif(not (ASSETS / "model.safetensors").is_file() or not BOOK.is_file(), reason="shipped model or shared books absent")


def candidate(text: str, start: int, *, occurs: bool = True, sure: bool = False, local: float = -0.1, rise: float = 0.0) -> Candidate:
    return Candidate(ids=[ord(c) for c in text], text=text, start=start, end=start + 64, segment=start // 256, local=local, rise=rise,
                     occurs=occurs, memory_sure=sure)


def test_a_window_holding_the_asked_key_beats_a_more_likely_distractor() -> None:
    """The reader copies a distractor's value as confidently as the asked one; the window that
    also holds the question's rare words (the asked key) must win."""
    words = {0: {"the", "audit", "is", "scheduled", "for", "may", "3"}, 32: {"the", "launch", "is", "scheduled", "for", "june", "9"},
             64: {"the", "ship", "sailed", "north"}, 96: {"the", "ice", "was", "thick"}}
    right, wrong = candidate("May 3", 0, local=-0.3), candidate("June 9", 32, local=-0.01, rise=1.0)
    _cover([right, wrong], "When is the audit scheduled?", words)
    assert wrong.coverage < 0.8 * right.coverage
    assert max([wrong, right], key=Candidate.rank_key) is right


def test_a_key_that_is_in_no_window_leaves_every_window_uncovered() -> None:
    """Asked about a key the corpus never names, no window covers the question: the confidence
    sees it (the words in no window count in full), though the ranking between windows is as
    it would be without them."""
    words = {0: {"the", "access", "code", "for", "vault", "is", "58213"}, 32: {"the", "ship", "sailed"}, 64: {"the", "ice"}}
    stated, absent = candidate("58213", 0), candidate("58213", 0)
    _cover([stated], "What is the access code for the vault?", words)
    _cover([absent], "What is the access code for the server room?", words)
    assert absent.coverage < 0.7 * stated.coverage


def test_the_sure_memory_answer_wins_a_tie_and_an_answer_not_in_its_window_loses() -> None:
    memory = candidate("garden", 0, sure=True, local=-2.0)
    older = candidate("kitchen", 32, local=-0.01, rise=2.0)
    memory.coverage = older.coverage = 1.0  # both windows name Mary
    assert max([older, memory], key=Candidate.rank_key) is memory
    invented = candidate("kitchen garden", 64, occurs=False, local=0.0, rise=5.0)
    invented.coverage = 1.0
    assert max([invented, older], key=Candidate.rank_key) is older


def test_answer_span_cites_the_tokens_that_hold_the_answer() -> None:
    words = "the ice was thick . the access code for the vault is 58213 . we sailed on".split()
    ids = list(range(len(words)))
    decode = lambda part: " ".join(words[i] for i in part)  # noqa: E731
    assert answer_span(decode, ids, 1000, "58213") == (1000 + words.index("58213"), 1000 + words.index("58213") + 1)
    assert answer_span(decode, ids, 0, "vault is 58213") == (words.index("vault"), words.index("58213") + 1)


@pytest.fixture(scope="module")
def needle_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """~6k tokens of the held-out book with one document fact a third of the way in."""
    from model.tasks import read_text, split_sentences

    sentences = split_sentences(read_text(BOOK))[400:1000]
    fact = "The access code for the storage unit is 730418."
    sentences.insert(len(sentences) // 3, fact)
    folder = tmp_path_factory.mktemp("needle")
    (folder / "report.txt").write_text("\n".join(" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)) + "\n")
    return folder, "What is the access code for the storage unit?", "730418"


@SHIPPED
def test_reread_copies_the_exact_value_and_cites_the_line_it_came_from(needle_corpus, tmp_path: Path) -> None:
    from app.service.corpus_service import CorpusService

    folder, question, value = needle_corpus
    service = CorpusService(tmp_path / "home")
    service.ingest([folder], "docs")
    result = service.ask("docs", question, mode="reread")
    assert result["mode"] == "reread" and "fast_answer" in result
    assert result["answer"] == value
    first = result["sources"][0]
    assert first["reread"] is True and value in first["excerpt"] and first["path"].endswith("report.txt")
    fast = service.ask("docs", question, mode="fast")
    assert fast["mode"] == "fast" and "fast_answer" not in fast and fast["answer"] == result["fast_answer"]
    auto = service.ask("docs", question)  # reread when estimated within 5 s (0.7 s measured on an idle machine), says which
    assert auto["mode_reason"].startswith(f"{auto['mode']}: ") and "estimated" in auto["mode_reason"] or "would take" in auto["mode_reason"]
    with pytest.raises(Exception, match="unknown mode"):
        service.ask("docs", question, mode="deeper")


@SHIPPED
def test_ask_cli_takes_a_mode_and_says_which_ran(needle_corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from app.cli.main import main

    folder, question, value = needle_corpus
    monkeypatch.setenv("RMTQA_HOME", str(tmp_path / "home"))
    assert main(["ingest", str(folder), "--corpus", "docs", "--json"]) == 0
    capsys.readouterr()
    assert main(["ask", "docs", question, "--mode", "reread", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == "reread" and result["answer"] == value
    assert main(["ask", "docs", question, "--mode", "reread"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(value) and "mode reread" in out and "re-read: the answer was copied from here" in out


@SHIPPED
def test_batched_greedy_answers_match_one_by_one_generation() -> None:
    """`greedy_answers` (one batched decode) gives `generate`'s answers, and a mean log-prob that
    is `score`'s for the same answer and eos."""
    from model.backbones import load_rmt
    from model.tokenizer import load_tokenizer

    model, tokenizer = load_rmt(ASSETS), load_tokenizer(ASSETS)
    question = tokenizer.encode("\nQuestion: What is the access code for the vault?\nAnswer:")
    texts = [" The access code for the vault is 58213. The ship sailed north.", " The ice was thick and the night was dark all around.",
             " The project lead for Iris is Mei Tanaka, and the warranty period is 90 days."]
    windows = [tokenizer.encode(t)[:12] for t in texts]
    memory = model.initial_memory(1)[0]
    answers = model.greedy_answers(memory.expand(3, *memory.shape), [w + question for w in windows], max_new_tokens=8, eos_id=tokenizer.eos_id)
    for window, (ids, mean_logprob) in zip(windows, answers):
        assert ids == list(model.generate(memory, window + question, max_new_tokens=8, eos_id=tokenizer.eos_id))
        if len(ids) < 8:  # ended by eos: the mean covers the answer and its eos, as `score` does
            expected = model.score(memory[None], window + question, ids + [tokenizer.eos_id]) / (len(ids) + 1)
            assert mean_logprob == pytest.approx(float(expected[0]), abs=1e-4)
    assert any(answers[0][0] != other[0] for other in answers[1:])
    with pytest.raises(ValueError, match="one length"):
        model.greedy_answers(memory.expand(2, *memory.shape), [question, question + question])
