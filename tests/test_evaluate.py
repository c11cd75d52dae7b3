"""Evaluation: answer scoring, BM25 retrieval, `rmtqa eval` on a tiny random model, and the
shipped model's accuracy (skipped until `assets/default/model.safetensors` exists)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli.commands.evaluate import NEEDLE_SEED
from app.cli.main import main
from model.babi import NEEDLE_KINDS, BabiSample
from model.backbones import build_rmt, load_rmt, tiny_llama_config
from model.evaluate import bm25_context, bm25_segment, evaluate, exact_match, normalize_answer
from model.tasks import NoiseSource, TaskGenerator, make_sample
from model.tokenizer import SentencePieceTokenizer, load_tokenizer

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets" / "default"
DATA = REPO.parent / "shared" / "data"
QA1_FILE = DATA / "babi" / "qa1_single-supporting-fact_train.txt"
SEGMENT = 64

# Book-like padding without any bAbI name or place in it.
NOISE_TEXT = " ".join(
    f"The {adj} ship sailed {n} leagues before the storm. Sailors sang of {thing} and the cold sea."
    for n, (adj, thing) in enumerate(zip(["old", "grey", "swift", "silent"] * 40, ["home", "gold", "ice", "stars", "bread"] * 32))
)
BABI_TEXT = """\
1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Sandra moved to the garden.
6 Where is Daniel? \thallway\t4
1 Sandra travelled to the office.
2 John journeyed to the kitchen.
3 Where is John? \tkitchen\t2
4 Mary went to the bedroom.
5 Sandra went to the garden.
6 Where is Sandra? \tgarden\t5
"""


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tokenizer() -> SentencePieceTokenizer:
    return SentencePieceTokenizer(ASSETS / "tokenizer.model")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: SentencePieceTokenizer) -> Path:
    """A random 1-layer RMT (S=64, M=4) saved with the shipped tokenizer next to it."""
    config = tiny_llama_config(tokenizer.vocab_size, eos_id=tokenizer.eos_id, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    directory = tmp_path_factory.mktemp("tiny-model")
    build_rmt(config, num_mem_tokens=4, segment_size=SEGMENT, seed=0).save_pretrained(directory)
    shutil.copy(ASSETS / "tokenizer.model", directory / "tokenizer.model")
    return directory


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bAbI-format file and a folder of two 'books'."""
    directory = tmp_path_factory.mktemp("data")
    (directory / "qa1_tiny.txt").write_text(BABI_TEXT)
    (directory / "books").mkdir()
    (directory / "books" / "sea.txt").write_text(NOISE_TEXT)
    (directory / "books" / "other.txt").write_text("Nothing here but a note about the weather. " * 50)
    return directory


def test_answers_are_compared_after_normalisation() -> None:
    assert normalize_answer(" Kitchen.\n") == "kitchen"
    assert normalize_answer("12,345  Dollars!") == "12345 dollars"
    assert exact_match(" the Office! ", "the office")
    assert not exact_match("kitchen garden", "kitchen")
    assert not exact_match("", "kitchen")


def test_bm25_picks_the_segments_with_the_words_of_the_question() -> None:
    segments = ["The ship sailed on.", "John went to the garden.", "Mary went to the kitchen.", "Sandra moved to the office."]
    assert bm25_segment(segments, "Where is Mary?") == 2
    assert bm25_segment(segments[:2], "Where is John?") == 1  # two segments: BM25Okapi would score 0
    assert bm25_segment(["only one"], "Where is Mary?") == 0


def test_bm25_baseline_retrieves_the_segment_with_the_actors_fact(tokenizer: SentencePieceTokenizer) -> None:
    story = BabiSample(["John went to the garden.", "Mary went to the kitchen.", "Sandra moved to the office."], "Where is Mary?", "kitchen", [1], "qa1")
    noise = NoiseSource([NOISE_TEXT])
    for seed in range(5):
        sample = make_sample(story, noise, tokenizer, 10 * SEGMENT, np.random.default_rng(seed))
        mary = sample.fact_positions[1] // SEGMENT
        expected = sample.context_ids[mary * SEGMENT : (mary + 1) * SEGMENT]
        retrieved = bm25_context(sample, tokenizer, SEGMENT)
        assert retrieved == expected and "Mary went to the kitchen." in tokenizer.decode(retrieved)


def run_eval(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, list[str], str]:
    code = main(["eval", *args])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


def test_eval_reports_json_with_baselines_and_writes_a_heatmap(capsys, tiny_model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    heatmap = tmp_path / "heatmap.png"
    code, lines, err = run_eval(
        capsys, "--model", str(tiny_model_dir), "--babi", str(data_dir / "qa1_tiny.txt"), "--noise", str(data_dir / "books"),
        "--noise-include", "sea", "--lengths", "200,400", "--samples", "4", "--depth-buckets", "2", "--split", "all",
        "--heatmap", str(heatmap), "--json",
    )
    assert code == 0, err
    assert len(lines) == 1  # --json: nothing but the report on stdout
    report = json.loads(lines[0])
    assert report["task"] == "qa1" and report["model"] == str(tiny_model_dir) and report["noise"] == ["sea"]
    assert [r["length"] for r in report["results"]] == [200, 400]
    for result in report["results"]:
        assert result["n"] == 4 and 0 <= result["accuracy"] <= 1
        assert [cell["n"] for cell in result["by_depth"]] == [2, 2]  # stratified by depth
        assert result["tokens_per_s"] > 0 and result["seconds"] >= result["read_seconds"] > 0
    assert set(report["baselines"]) == {"last_segment", "bm25"}
    for rows in report["baselines"].values():
        assert [(r["length"], r["n"]) for r in rows] == [(200, 4), (400, 4)]
        assert all(0 <= r["accuracy"] <= 1 for r in rows)
    assert heatmap.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_prints_a_table_then_the_json_line(capsys, tiny_model_dir: Path, data_dir: Path) -> None:
    code, lines, err = run_eval(
        capsys, "--model", str(tiny_model_dir), "--babi", str(data_dir / "qa1_tiny.txt"), "--noise", str(data_dir / "books"),
        "--lengths", "100", "--samples", "2", "--split", "all",
    )
    assert code == 0, err
    assert lines[0].split()[:4] == ["length", "rmt", "last_segment", "bm25"]
    assert lines[1].split()[0] == "100"
    assert json.loads(lines[-1])["results"][0]["n"] == 2


def test_eval_errors_are_one_line(capsys, tiny_model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    common = ["--babi", str(data_dir / "qa1_tiny.txt"), "--noise", str(data_dir / "books"), "--lengths", "100"]
    code, lines, err = run_eval(capsys, "--model", str(tmp_path), *common)
    assert code == 1 and err.startswith("rmtqa: error: no model at") and len(err.splitlines()) == 1
    code, lines, err = run_eval(capsys, "--model", str(tiny_model_dir), *common)  # 2 stories: none held out
    assert code == 1 and "no qa1 questions in the val split" in err
    code, lines, err = run_eval(capsys, "--model", str(tiny_model_dir), *common, "--noise-include", "frankenstein")
    assert code == 1 and "unknown documents: frankenstein" in err


def test_eval_needle_needs_no_babi_file_and_reports_like_qa(capsys, tiny_model_dir: Path, data_dir: Path) -> None:
    code, lines, err = run_eval(
        capsys, "--model", str(tiny_model_dir), "--task", "needle", "--noise", str(data_dir / "books"),
        "--lengths", "150", "--samples", "3", "--depth-buckets", "1", "--json",
    )
    assert code == 0, err
    report = json.loads(lines[0])
    assert report["task"] == "needle" and report["split"] is None
    assert report["results"][0]["n"] == 3 and set(report["baselines"]) == {"last_segment", "bm25"}
    for result in (report["results"][0], report["baselines"]["bm25"][0]):  # which kinds of fact it keeps
        assert sum(cell["n"] for cell in result["by_kind"]) == 3
        assert sum(cell["accuracy"] * cell["n"] for cell in result["by_kind"]) == pytest.approx(3 * result["accuracy"])
    code, lines, err = run_eval(capsys, "--model", str(tiny_model_dir), "--task", "needle", "--babi", str(data_dir / "qa1_tiny.txt"), "--noise", str(data_dir / "books"), "--lengths", "150")
    assert code == 1 and "leave out --babi" in err and len(err.splitlines()) == 1


def test_eval_direct_puts_the_facts_in_the_question_and_reads_nothing(capsys, tiny_model_dir: Path, data_dir: Path) -> None:
    code, lines, err = run_eval(
        capsys, "--model", str(tiny_model_dir), "--babi", str(data_dir / "qa1_tiny.txt"), "--noise", str(data_dir / "books"),
        "--direct", "--samples", "5", "--split", "all", "--json",
    )
    assert code == 0, err
    report = json.loads(lines[0])
    assert report["direct"] is True and report["baselines"] == {}
    assert [(r["length"], r["n"]) for r in report["results"]] == [(0, 5)]  # nothing read into memory
    code, lines, err = run_eval(capsys, "--model", str(tiny_model_dir), "--babi", str(data_dir / "qa1_tiny.txt"), "--noise", str(data_dir / "books"), "--direct", "--lengths", "1k")
    assert code == 1 and "not both" in err


def test_evaluate_groups_given_samples_by_length(tokenizer: SentencePieceTokenizer, tiny_model_dir: Path) -> None:
    model = load_rmt(tiny_model_dir).train()
    generator = TaskGenerator(tokenizer, ["qa1"], noise=NoiseSource([NOISE_TEXT]), seed=0)
    samples = [generator.sample(n) for n in (150, 80, 150)]
    report = evaluate(model, tokenizer, samples, depth_buckets=1, baselines=())
    assert [(r["length"], r["n"]) for r in report["results"]] == [(80, 1), (150, 2)]
    assert report["baselines"] == {} and report["depth_buckets"] == ["0-100%"]
    assert model.training  # the caller's mode is restored


SHIPPED = pytest.mark.skipif(not (ASSETS / "model.safetensors").is_file(), reason="the shipped model is not in assets/default yet")
SHARED = pytest.mark.skipif(not QA1_FILE.is_file() or not (DATA / "books" / "frankenstein.txt").is_file(), reason="shared bAbI/books absent")


def shipped_reader(length: str, samples: int, task: str = "qa1") -> dict:
    """Exact match of the shipped model on held-out questions in the held-out book: qa1 val
    stories, or needles from the seed `rmtqa eval --task needle` uses (never trained on)."""
    start = time.perf_counter()
    model = load_rmt(ASSETS)
    tokenizer = load_tokenizer(ASSETS)
    noise = NoiseSource.from_directory(DATA / "books", include=["frankenstein"])
    if task == "needle":
        generator = TaskGenerator(tokenizer, ["needle"], noise=noise, seed=NEEDLE_SEED, needle_probability=1.0)
    else:
        generator = TaskGenerator(tokenizer, ["qa1"], babi_files={"qa1": QA1_FILE}, noise=noise, split="val", seed=0)
    report = evaluate(model, tokenizer, generator, [length], samples, depth_buckets=1, baselines=("last_segment",), batch_size=25)
    result = {**report["results"][0], "last_segment": report["baselines"]["last_segment"][0]["accuracy"]}
    print(f"shipped model, {task} at {length}: {result['accuracy']:.2f} of {result['n']} in {time.perf_counter() - start:.0f} s")
    return result


@SHIPPED
@SHARED
def test_shipped_model_meets_the_4k_bar_and_the_memory_is_what_answers() -> None:
    """The reader issue's bar at 4k (>= 90% on held-out stories in unseen text), on 50 questions;
    the same model without its memory (last segment only) must be far below."""
    result = shipped_reader("4k", 50)
    assert result["n"] == 50 and result["accuracy"] >= 0.9
    assert result["last_segment"] <= result["accuracy"] - 0.4


@SHIPPED
@SHARED
def test_shipped_model_meets_the_32k_bar_without_training_at_32k() -> None:
    """The bar at 32k (>= 80%), twice the longest context trained on (16k), on 20 questions
    (100 in the model card)."""
    result = shipped_reader("32k", 20)
    assert result["n"] == 20 and result["accuracy"] >= 0.8


@SHIPPED
@SHARED
def test_shipped_model_reads_document_facts_through_its_memory() -> None:
    """Needles at 4k on 25 questions: far above the same model without its memory. Not the
    issue's bar (>= 90% at 32k; the model card has 73% at 4k and 70% at 32k, n = 100), a floor
    that catches a reader that stops reading them."""
    result = shipped_reader("4k", 25, task="needle")
    assert result["n"] == 25 and result["accuracy"] >= 0.6  # 0.84 measured
    assert result["last_segment"] <= 0.15


@SHIPPED
@SHARED
def test_answer_token_accuracy_reports_each_position_of_each_kind_of_fact() -> None:
    """scripts/answer_token_accuracy.py (the model card's digit diagnosis): every sample counted
    once per answer token, under its kind; the shipped reader gets most tokens right."""
    script = REPO / "scripts" / "answer_token_accuracy.py"
    run = subprocess.run([sys.executable, str(script), str(ASSETS), "0", "32", "--books", str(DATA / "books")], capture_output=True, text=True, check=True)
    report = json.loads(run.stdout)
    assert set(report["by_kind"]) <= set(NEEDLE_KINDS)
    assert sum(rows[0]["n"] for rows in report["by_kind"].values()) == 32
    tokens = [row for rows in report["by_kind"].values() for row in rows]
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in tokens)
    assert sum(row["accuracy"] * row["n"] for row in tokens) / sum(row["n"] for row in tokens) >= 0.7  # 0.95 on 256
    assert set(report["wrong_digits"]) <= {"elsewhere in the answer", "not in the answer"}


@pytest.mark.parametrize("mode", ["fast", "reread"])
def test_evaluation_with_a_calibration_reports_abstention_as_the_service_would(tokenizer: SentencePieceTokenizer, tiny_model_dir: Path, mode: str) -> None:
    from model.confidence import Calibration

    model = load_rmt(tiny_model_dir)
    generator = TaskGenerator(tokenizer, ["qa1"], noise=NoiseSource([NOISE_TEXT]), seed=0)
    samples = [generator.sample(300) for _ in range(4)]
    models = {"fast": {"bias": 0.0, "weights": {"trained_type": 0.0, "answer_logprob": 1.0}},
              "reread": {"bias": 0.0, "weights": {"trained_type": 0.0, "occurs": 1.0}}}
    for threshold, abstained in ((0.0, 0.0), (1.01, 1.0)):
        report = evaluate(model, tokenizer, samples, depth_buckets=1, baselines=("last_segment",), mode=mode,
                          calibration=Calibration(models, threshold), trained=["qa1"])
        result = report["results"][0]
        assert result["abstained"] == abstained and result["n"] == 4
        assert result["accuracy_when_answered"] == (result["accuracy"] if abstained == 0.0 else None)
        assert "abstained" not in report["baselines"]["last_segment"][0]  # baselines are not judged
    plain = evaluate(model, tokenizer, samples, depth_buckets=1, baselines=(), mode=mode)
    assert "abstained" not in plain["results"][0] and plain["results"][0]["accuracy"] == result["accuracy"]
