"""The corpus store notices damage and recovers from it (issue 12).

A clean corpus is read once per module; every test damages a copy of it the way the
reliability probe did (a flipped byte in each stored tensor, a missing or truncated shard, a
truncated documents file, a garbage manifest, `kill -9` during `rm`) and checks that the
damage is reported in one line naming the corpus and what to do, and that the next ingest
repairs it: the final memory equals the clean run's, bit for bit."""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from app.cli.main import main
from app.corpus.errors import CorpusChanged, CorpusDamaged
from app.corpus.format import MANIFEST
from app.corpus.store import CorpusStore
from app.service.corpus_service import CorpusService
from bench.hostile import TENSORS, flip_byte
from tests.corpus_helpers import SEGMENT, book_lines, shared_model_dir, write_text

SHARD = 4


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A corpus of 4+ shards read once (one thread, so that repairs match it bit for bit);
    tests damage copies of its home."""
    from model.backbones import load_rmt

    folder = tmp_path_factory.mktemp("clean")
    model_dir = shared_model_dir()
    reader = load_rmt(model_dir)
    book = write_text(folder / "book.txt", book_lines(50, seed=5))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMTQA_SHARD_SEGMENTS", str(SHARD))
        report = CorpusService(folder / "home", model_dir, model=reader).ingest([book], "book")
    assert report["complete"] and report["segments"] > 3 * SHARD
    yield SimpleNamespace(home=folder / "home", book=book, model_dir=model_dir, reader=reader, sha=report["memory_sha256"])
    torch.set_num_threads(threads)


@pytest.fixture
def home(tmp_path, clean, monkeypatch) -> Path:
    """A copy of the clean corpus's home, also as RMTQA_HOME for the CLI (same shard size)."""
    copy = tmp_path / "home"
    shutil.copytree(clean.home, copy)
    monkeypatch.setenv("RMTQA_HOME", str(copy))
    monkeypatch.setenv("RMTQA_SHARD_SEGMENTS", str(SHARD))
    return copy


def service(home: Path, clean) -> CorpusService:
    return CorpusService(home, clean.model_dir, model=clean.reader)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


@pytest.mark.parametrize("tensor", TENSORS)
def test_a_flipped_byte_in_any_tensor_is_detected_and_repaired(tensor, home, clean, capsys) -> None:
    store = CorpusStore(home)
    shard = store.open("book").shards[1]
    flip_byte(home / "corpora" / "book" / shard.file, tensor)

    assert main(["check", "book"]) == 1
    error = one_line_error(capsys)
    assert error.startswith("rmtqa: error: corpus book is damaged") and shard.file in error and "rmtqa ingest" in error
    reads = {
        "states": lambda corpus: corpus.states([shard.first]),
        "exact": lambda corpus: corpus.exact_state(shard.last),
        "tokens": lambda corpus: corpus.token_ids(shard.first * SEGMENT, shard.first * SEGMENT + 1),
    }
    for read in reads.values():  # never silently answered from
        with pytest.raises(CorpusDamaged, match=f"corpus book is damaged .{shard.file} does not match its checksum"):
            read(store.open("book"))

    report = service(home, clean).ingest([clean.book], "book")
    assert report["first_segment_read"] == shard.first and report["complete"]
    assert report["memory_sha256"] == clean.sha
    assert main(["check", "book"]) == 0 and "is intact" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_missing_or_truncated_shard_is_one_line_for_ask_and_repaired_by_ingest(damage, home, clean, capsys) -> None:
    last = CorpusStore(home).open("book").shards[-1]
    path = home / "corpora" / "book" / last.file
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    assert main(["ask", "book", "Who wrote the letters?", "--no-sources"]) == 1
    error = one_line_error(capsys)
    problem = "is missing" if damage == "missing" else "does not match its checksum"
    assert error.startswith(f"rmtqa: error: corpus book is damaged ({last.file} {problem})") and "--corpus book" in error

    assert main(["ingest", str(clean.book), "--corpus", "book", "--model", str(clean.model_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["first_segment_read"] == last.first and report["memory_sha256"] == clean.sha


def test_a_truncated_documents_file_is_reported_and_rewritten(home, clean) -> None:
    corpus = CorpusStore(home).open("book")
    documents = home / "corpora" / "book" / corpus.manifest["documents_file"]
    documents.write_bytes(documents.read_bytes()[:100])
    with pytest.raises(CorpusDamaged, match=f"corpus book is damaged .{documents.name} does not match its checksum"):
        service(home, clean).documents("book")

    report = service(home, clean).ingest([clean.book], "book")
    assert report["segments_read"] == 0 and report["memory_sha256"] == clean.sha  # only the documents were damaged
    assert [d["path"] for d in service(home, clean).documents("book")] == [str(clean.book)]
    CorpusStore(home).check("book")


@pytest.mark.parametrize("garbage", [b"\x00\xffnot json", b"[1, 2]", b'{"format": "rmtqa-corpus/2", "name": "book"}', "model"])
def test_an_unreadable_manifest_is_listed_as_damaged_and_rebuilt(garbage, home, clean) -> None:
    path = home / "corpora" / "book" / MANIFEST
    path.write_bytes(garbage if isinstance(garbage, bytes) else json.dumps({**json.loads(path.read_text()), garbage: 5}).encode())
    store = CorpusStore(home)
    [listed] = store.summaries()
    assert listed["name"] == "book" and listed["state"] == "damaged" and listed["bytes"] > 0
    assert listed["damaged"].startswith("corpus book is damaged (its manifest") and "`rmtqa rm book` deletes it" in listed["damaged"]
    with pytest.raises(CorpusDamaged):
        store.open("book")

    report = service(home, clean).ingest([clean.book], "book")
    assert report["rebuilt"].startswith("its manifest") and report["memory_sha256"] == clean.sha
    assert store.summaries()[0]["damaged"] is None


def test_a_damaged_corpus_is_listed_and_can_be_deleted(home, capsys) -> None:
    (home / "corpora" / "book" / MANIFEST).write_text("{")
    assert main(["corpora", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["name"] == "book" and listed["state"] == "damaged" and "not valid JSON" in listed["damaged"]
    assert main(["rm", "book"]) == 0
    assert not (home / "corpora" / "book").exists() and CorpusStore(home).summaries() == []


def test_a_folder_without_its_manifest_is_listed_as_damaged(home) -> None:
    (home / "corpora" / "book" / MANIFEST).unlink()
    [listed] = CorpusStore(home).summaries()
    assert listed["damaged"].startswith("corpus book is damaged (its manifest is missing)")


def test_a_reader_of_an_older_snapshot_is_told_to_retry_not_that_the_corpus_is_damaged(home) -> None:
    """A writer may drop files an open snapshot points to; that is no damage."""
    store = CorpusStore(home)
    snapshot = store.open("book")
    manifest = dict(snapshot.manifest, shards=snapshot.manifest["shards"][:-1], complete=False)
    (home / "corpora" / "book" / MANIFEST).write_text(json.dumps(manifest))
    (home / "corpora" / "book" / snapshot.shards[-1].file).unlink()
    with pytest.raises(CorpusChanged, match="try again") as caught:
        snapshot.final_state()
    assert isinstance(caught.value, FileNotFoundError)  # callers that retry on a vanished file still do
    store.check("book")


def test_check_reports_an_intact_corpus(home, capsys) -> None:
    assert main(["check", "book", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["intact"] and result["complete"] and result["files"] == len(CorpusStore(home).open("book").shards) + 2
    assert main(["check", "nothing-here"]) == 1 and "no corpus named nothing-here" in one_line_error(capsys)


def test_a_folder_left_by_rm_killed_half_way_is_collected(tmp_path) -> None:
    store = CorpusStore(tmp_path / "home")
    (store.root / "book").mkdir(parents=True)
    (store.root / "book" / "shard-0.safetensors").write_bytes(b"x" * 1000)
    pid = os.fork()
    if pid == 0:  # the child: SIGKILLed after renaming the corpus away, before deleting it
        try:
            os.environ["RMTQA_TEST_CRASH"] = "removing:1"
            store.remove("book")
        finally:
            os._exit(3)  # only reached if the crash hook did not fire
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    [left] = [p.name for p in store.root.iterdir()]
    assert left.startswith(".book.removing-")
    busy = store.root / f".other.removing-{os.getpid()}-1"  # a live process's removal is its own
    busy.mkdir()
    assert store.names() == [] and [p.name for p in store.root.iterdir()] == [busy.name]

