"""kill -9 during `rmtqa ingest`, then the same command again: it continues from the last
saved segment and the final memory equals an uninterrupted run's, bit for bit (CPU)."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
import torch

from app.cli.main import main
from app.corpus.format import MANIFEST
from app.service.corpus_service import CorpusService
from tests.corpus_helpers import book_lines, shared_model_dir, write_text

SHARD = 4


def test_kill_9_mid_ingest_resumes_bit_exact(tmp_path, monkeypatch, capsys) -> None:
    torch.set_num_threads(1)
    model_dir = shared_model_dir()
    path = write_text(tmp_path / "book.txt", book_lines(160, seed=11))
    home = tmp_path / "home"
    command = ["ingest", str(path), "--corpus", "book", "--model", str(model_dir), "--json"]
    monkeypatch.setenv("RMTQA_HOME", str(home))
    monkeypatch.setenv("RMTQA_SHARD_SEGMENTS", str(SHARD))
    # A forked child runs the command and SIGKILLs itself after its 5th shard file is durable
    # but before the manifest points to it (the worst moment). Forking, not a new
    # interpreter, spares the test seconds of imports; the child is a real process all the same.
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.environ["RMTQA_TEST_CRASH"] = "shard-written:5"
            main(command)
        finally:
            os._exit(3)  # only reached if the crash hook did not fire
    deadline = time.monotonic() + 300
    while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the ingest child did not finish")
        time.sleep(0.05)
    assert os.WIFSIGNALED(waited[1]) and os.WTERMSIG(waited[1]) == signal.SIGKILL
    capsys.readouterr()
    corpus_dir = home / "corpora" / "book"
    manifest = json.loads((corpus_dir / MANIFEST).read_text())  # never half-written
    assert not manifest["complete"] and len(manifest["shards"]) == 4 and manifest["memory_sha256"] is None
    orphans = {p.name for p in corpus_dir.glob("shard-*")} - {s["file"] for s in manifest["shards"]}
    assert len(orphans) == 1  # the 5th shard: durable, but the manifest never pointed to it

    # The same command again (the dead writer's lock went with it).
    assert main(command) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["first_segment_read"] == 4 * SHARD and resumed["complete"]
    assert resumed["segments_read"] == resumed["segments"] - 4 * SHARD
    manifest = json.loads((corpus_dir / MANIFEST).read_text())
    assert {p.name for p in corpus_dir.glob("shard-*")} == {s["file"] for s in manifest["shards"]}  # orphan collected

    reference = CorpusService(tmp_path / "reference", model_dir).ingest([path], "book")
    assert resumed["memory_sha256"] == reference["memory_sha256"] == manifest["memory_sha256"]
    assert resumed["segments"] == reference["segments"] > 4 * SHARD + SHARD
