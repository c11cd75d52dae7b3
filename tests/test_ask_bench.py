"""bench/ask_modes.py runs end to end and reports each mode side by side, on a small corpus."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOOKS = REPO.parent / "shared" / "data" / "books"


@pytest.mark.skipif(not (REPO / "assets" / "default" / "model.safetensors").is_file() or not BOOKS.is_dir(), reason="shipped model or shared books absent")
def test_ask_modes_bench_times_every_mode_at_every_size(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "bench.ask_modes", "--sizes", "3k", "--repeats", "1", "--json"], cwd=REPO,
                         capture_output=True, text=True, check=True, env={"RMTQA_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    report = json.loads(run.stdout.strip().splitlines()[-1])
    (row,) = report["sizes"]
    assert report["bench"] == "ask_modes" and 3000 <= row["tokens"] < 3500
    for mode in ("fast", "reread", "deep"):
        assert row[mode]["seconds"] > 0 and isinstance(row[mode]["right"], bool)
    assert row["reread"]["right"] and row["deep"]["right"]  # a 3k corpus is well within what the reader keeps
