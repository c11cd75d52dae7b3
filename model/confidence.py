"""How sure an answer is: a calibrated probability that it is right, from signals the reader has.

A small reader answers every question in the shape of one it was trained on, so a wrong
figure looks exactly like a right one. The signals that tell them apart, per answer:

* `trained_type`: the question has one of the forms the reader was trained on
  (`model.question_types`);
* `answer_logprob`: the answer's mean per-token log-likelihood (with eos) under the memory it
  was answered from;
and for re-read answers (`model.reread`) also
* `fast_logprob`, `agrees`: the memory's own answer's likelihood, and whether the re-read kept it;
* `occurs`, `coverage`: whether the answer was copied from its window, and how much of the
  question's (idf-weighted) words that window holds -- low when the asked key is nowhere;
* `local`, `rise`: the answer's likelihood beside its window, and how much reading that place
  raised it under the memory.

A logistic model per mode maps them to a probability, fit on held-out questions the reader can
and cannot answer (`scripts/calibrate_confidence.py`), and saved beside the weights as
`confidence.json` with the abstention threshold chosen from the same calibration. Not part
of a model's fingerprint: recalibrating does not invalidate corpora.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from model.reread import RereadAnswer

CALIBRATION_FILE = "confidence.json"
FEATURES = {
    "fast": ("trained_type", "answer_logprob"),
    "reread": ("trained_type", "answer_logprob", "fast_logprob", "agrees", "occurs", "coverage", "local", "rise"),
}
LOGPROB_FLOOR = -10.0  # an answer the reader could not produce at all (empty) counts as this unlikely


def describe(confidence: float) -> str:
    """A confidence in words a person reads at a glance."""
    if confidence >= 0.9:
        return "high"
    if confidence >= 0.7:
        return "fairly high"
    if confidence >= 0.5:
        return "moderate"
    return "low"


def fast_features(trained_type: bool, answer_logprob: float) -> dict[str, float]:
    return {"trained_type": float(trained_type), "answer_logprob": max(answer_logprob, LOGPROB_FLOOR)}


def reread_features(trained_type: bool, result: RereadAnswer) -> dict[str, float]:
    chosen = result.chosen
    return {
        **fast_features(trained_type, result.answer_logprob),
        "fast_logprob": max(result.fast_logprob, LOGPROB_FLOOR),
        "agrees": float(result.ids == result.fast_ids),
        "occurs": float(chosen is not None and chosen.occurs),
        "coverage": chosen.coverage if chosen is not None else 0.0,
        "local": max(chosen.local, LOGPROB_FLOOR) if chosen is not None else LOGPROB_FLOOR,
        "rise": chosen.rise if chosen is not None else 0.0,
    }


@dataclass
class Calibration:
    """Per mode, a logistic model over `FEATURES[mode]`; `threshold`: answers below it abstain."""

    models: dict[str, dict]  # mode -> {"bias": float, "weights": {feature: float}}
    threshold: float
    report: dict | None = None  # how it was fit and how well it is calibrated (for the model card)

    def confidence(self, mode: str, features: dict[str, float]) -> float:
        model = self.models[mode]
        z = model["bias"] + sum(weight * features[name] for name, weight in model["weights"].items())
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def save(self, model_dir: str | Path) -> None:
        data = {"format": "rmtqa-confidence/1", "models": self.models, "threshold": self.threshold, "report": self.report}
        path = Path(model_dir) / CALIBRATION_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        tmp.replace(path)

    @classmethod
    def load(cls, model_dir: str | Path) -> "Calibration | None":
        """The calibration saved beside a model, or None when there is none (or it is unreadable)."""
        try:
            data = json.loads((Path(model_dir) / CALIBRATION_FILE).read_text())
        except (OSError, ValueError):
            return None
        if data.get("format") != "rmtqa-confidence/1":
            return None
        return cls(data["models"], float(data["threshold"]), data.get("report"))


def fit_logistic(rows: Sequence[dict[str, float]], correct: Sequence[bool], names: Sequence[str], l2: float = 0.1, steps: int = 50) -> dict:
    """A logistic model of P(correct | features), fit by Newton's method with an L2 penalty on
    the weights (not the bias), so separable data (every out-of-type answer wrong) still
    gives finite weights. Returns {"bias", "weights"}."""
    x = np.array([[row[name] for name in names] for row in rows], dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    x = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -50, 50)))
        gradient = x.T @ (p - y) + penalty * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"bias": float(w[0]), "weights": {name: float(v) for name, v in zip(names, w[1:])}}


def reliability(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict]:
    """Per confidence bin: n, mean confidence, accuracy -- calibrated when the two agree."""
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        cell = [(c, ok) for c, ok in zip(confidences, correct) if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if cell:
            out.append({"bin": f"{lo:.1f}-{hi:.1f}", "n": len(cell), "confidence": round(sum(c for c, _ in cell) / len(cell), 3),
                        "accuracy": round(sum(ok for _, ok in cell) / len(cell), 3)})
    return out


def coverage_curve(confidences: Sequence[float], correct: Sequence[bool], thresholds: Sequence[float] = tuple(i / 20 for i in range(20))) -> list[dict]:
    """Per threshold: the share of questions answered (not abstained) and their accuracy."""
    out = []
    for t in thresholds:
        answered = [ok for c, ok in zip(confidences, correct) if c >= t]
        out.append({"threshold": t, "coverage": round(len(answered) / max(len(correct), 1), 3),
                    "accuracy_when_answered": round(sum(answered) / len(answered), 3) if answered else None})
    return out
