"""Deep reads (`mode: deep`): the whole corpus read again with the question, a running answer."""
from __future__ import annotations

from pathlib import Path

import pytest

from model.question_types import content_words

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets" / "default"
BOOK = REPO.parent / "shared" / "data" / "books" / "frankenstein.txt"
SHIPPED = pytest.mark.skipif(not (ASSETS / "model.safetensors").is_file() or not BOOK.is_file(), reason="shipped model or shared books absent")


def test_content_words_leave_out_what_only_says_the_kind_of_question() -> None:
    assert content_words("Where is Mary?") == ["mary"]
    assert content_words("What is the access code for the storage unit?") == ["access", "code", "storage", "unit"]


@pytest.fixture(scope="module")
def reader():
    from model.backbones import load_rmt
    from model.tokenizer import load_tokenizer

    return load_rmt(ASSETS), load_tokenizer(ASSETS)


def book_with(facts: dict[int, str], sentences: int = 900) -> str:
    """Sentences of the held-out book with `facts` inserted at the given sentence numbers."""
    from model.tasks import read_text, split_sentences

    text = split_sentences(read_text(BOOK))[300 : 300 + sentences]
    for at in sorted(facts, reverse=True):
        text.insert(at, facts[at])
    return " ".join(text)


def deep_answer(reader, text: str, question: str):
    from model.deep import deep_read
    from model.tasks import QUESTION_TEMPLATE

    model, tokenizer = reader
    return deep_read(model, tokenizer.decode, question, tokenizer.encode(QUESTION_TEMPLATE.format(question=question)),
                     tokenizer.encode(text), initial_memory=model.initial_memory(1)[0], eos_id=tokenizer.eos_id)


@SHIPPED
def test_the_running_answer_follows_the_latest_mention(reader) -> None:
    text = book_with({100: "Mary went to the kitchen.", 420: "John moved to the office.", 700: "Mary travelled to the garden."})
    result = deep_answer(reader, text, "Where is Mary?")
    assert result.key == "mary" and result.text == "garden"
    assert [answer for _, answer in result.updates][0] == "kitchen"  # it was the kitchen until the garden
    assert 0 < result.windows_read < 10 < result.windows  # only the windows that name Mary went through the model
    model, tokenizer = reader
    assert "garden" in tokenizer.decode(tokenizer.encode(text)[result.start : result.end])


@SHIPPED
def test_a_window_naming_the_whole_key_is_not_overridden_by_a_later_partial_one(reader) -> None:
    text = book_with({150: "The access code for the storage unit is 730418.", 650: "The access code for the vault is 115522."})
    result = deep_answer(reader, text, "What is the access code for the storage unit?")
    assert result.text == "730418"
    assert deep_answer(reader, text, "What is the access code for the vault?").text == "115522"
    nowhere = deep_answer(reader, text, "Where is Fred?")
    assert nowhere.text == "" and nowhere.key is None and nowhere.windows_read == 0


@SHIPPED
def test_ask_deep_through_the_service_cites_the_place_and_says_not_found(tmp_path: Path) -> None:
    from app.service.asking import NOT_FOUND
    from app.service.corpus_service import CorpusService

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "story.txt").write_text(book_with({80: "Mary went to the kitchen.", 500: "Mary travelled to the garden."}, 600) + "\n")
    service = CorpusService(tmp_path / "home")
    service.ingest([folder], "story")
    result = service.ask("story", "Where is Mary?", mode="deep")
    assert result["mode"] == "deep" and result["answer"] == "garden" and not result["abstained"]
    assert result["deep"]["key"] == "mary" and result["deep"]["windows_read"] >= 1
    assert result["sources"][0]["deep"] is True and "garden" in result["sources"][0]["excerpt"]
    missing = service.ask("story", "Where is Fred?", mode="deep")
    assert missing["answer"] == NOT_FOUND and missing["abstained"] and missing["best_guess"] == ""
    assert len(service._scans) == 1  # the second question over the corpus reused its scan


def test_copied_prefix_keeps_what_was_copied_and_nothing_invented() -> None:
    from model.deep import copied_prefix

    pieces = ["kitchen", "ices", "ices", "cher"]
    decode = lambda ids: "".join(pieces[i] for i in ids)  # noqa: E731
    assert copied_prefix(decode, [0, 1, 2, 3], "mary moved to the kitchen some conversation", whole_words=False) == [0]
    assert copied_prefix(decode, [0, 1, 2, 3], "mary moved to the kitchen some conversation") == []  # "kitchen" is cut from "kitchenices..."
    assert copied_prefix(decode, [0, 1], "the kitchenices were cold") == [0, 1]  # whole words only: "kitchen" alone is not one here
    assert copied_prefix(decode, [1, 2], "mary moved to the kitchen") == []
    spaced = ["kitchen", " kitchen", " kitchen"]
    decode = lambda ids: "".join(spaced[i] for i in ids)  # noqa: E731
    assert copied_prefix(decode, [0, 1, 2], "mary moved to the kitchen") == [0]  # a run-on after a whole word
