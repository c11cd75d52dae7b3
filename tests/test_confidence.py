"""Confidence and abstention: question types, the logistic calibration, and what a user sees."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.confidence import Calibration, coverage_curve, describe, fit_logistic, reliability
from model.question_types import question_type, trained_types

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets" / "default"
BABI = REPO.parent / "shared" / "data" / "babi"


@pytest.mark.parametrize("question, kind", [
    ("Where is Mary?", "qa1"), ("Where is the football?", "qa2"), ("Where was the milk before the office?", "qa3"),
    ("What is the kitchen north of?", "qa4"), ("What is north of the garden?", "qa4"), ("Who gave the apple?", "qa5"),
    ("What did Fred give to Bill?", "qa5"), ("What is the access code for the vault?", "needle"),
    ("Where is the function parse_config defined?", "needle"), ("What is the annual fee?", "needle"),
    ("Who raised Pip?", None), ("Which state's law governs this Agreement?", None), ("When does the agreement commence?", None),
])
def test_question_types_name_the_trained_forms_and_nothing_else(question: str, kind: str | None) -> None:
    assert question_type(question) == kind


@pytest.mark.skipif(not BABI.is_dir(), reason="shared bAbI absent")
def test_every_official_babi_question_has_its_own_type() -> None:
    from model.babi import parse_babi

    for path in sorted(BABI.glob("qa*_train.txt")):
        task = path.name.split("_")[0]
        assert {question_type(s.question) for s in parse_babi(path, task)[:500]} == {task}


def test_trained_types_come_from_the_training_config(tmp_path: Path) -> None:
    assert trained_types(tmp_path) is None
    (tmp_path / "train_config.json").write_text(json.dumps({"tasks": ["qa1", "qa2"], "needle_probability": 0.5}))
    assert trained_types(tmp_path) == ["qa1", "qa2", "needle"]
    (tmp_path / "train_config.json").write_text(json.dumps({"tasks": ["qa1"], "needle_probability": 0.0}))
    assert trained_types(tmp_path) == ["qa1"]


def test_logistic_fit_learns_the_signal_and_stays_finite_on_separable_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows, correct = [], []
    for _ in range(400):
        typed = float(rng.random() < 0.7)
        logprob = float(rng.normal(-0.5, 0.5))
        rows.append({"trained_type": typed, "answer_logprob": logprob})
        correct.append(bool(typed) and rng.random() < 1 / (1 + np.exp(-(2 + 4 * logprob))))  # untyped: never right
    fit = fit_logistic(rows, correct, ["trained_type", "answer_logprob"])
    assert fit["weights"]["trained_type"] > 2 and 2 < fit["weights"]["answer_logprob"] < 7
    assert all(np.isfinite(v) for v in fit["weights"].values())
    calibration = Calibration({"fast": fit}, threshold=0.5)
    confidences = [calibration.confidence("fast", row) for row in rows]
    table = reliability(confidences, correct)
    assert sum(cell["n"] for cell in table) == 400
    assert all(abs(cell["confidence"] - cell["accuracy"]) < 0.2 for cell in table if cell["n"] >= 30)  # calibrated where there is data
    curve = coverage_curve(confidences, correct)
    assert curve[0]["coverage"] == 1.0 and curve[-1]["accuracy_when_answered"] > curve[0]["accuracy_when_answered"]
    calibration.save(tmp_path)
    loaded = Calibration.load(tmp_path)
    assert loaded is not None and loaded.threshold == 0.5 and loaded.confidence("fast", rows[0]) == pytest.approx(confidences[0])
    (tmp_path / "confidence.json").write_text("{not json")
    assert Calibration.load(tmp_path) is None


def test_confidence_in_words() -> None:
    assert [describe(c) for c in (0.95, 0.75, 0.55, 0.2)] == ["high", "fairly high", "moderate", "low"]
