"""What the web UI says about a reader model: its card, its evaluation, plainly.

Everything is read from the model's directory (`assets/default` for the shipped one):
`MODEL_CARD.md`, evaluation reports (`*.json` as written by `rmtqa eval --json`: a "results"
list and "baselines"), heatmaps (`*.png`), also one folder down (e.g. `eval/`), and, if present, `train_config.json` (the training
configuration, for the tasks it was trained on; for the shipped model without one,
`configs/default.json`, which trained it). Nothing here loads weights.
"""
from __future__ import annotations

import json
from pathlib import Path

from app.paths import REPO_ROOT

SHIPPED_CONFIG = REPO_ROOT / "configs" / "default.json"

CARD = "MODEL_CARD.md"
WEIGHTS = "model.safetensors"
NOT_EVAL = {"config.json", "tokenizer.json", "tokenizer_config.json", "train_config.json", "special_tokens_map.json"}

# bAbI tasks in words (Weston et al. 2015), as a user would recognise them.
TASKS = {
    "qa1": "where a person is after moving around (\u201cWhere is Mary?\u201d)",
    "qa2": "where an object is, through the person carrying it (\u201cWhere is the football?\u201d)",
    "qa3": "where an object was before a place (\u201cWhere was the apple before the kitchen?\u201d)",
    "qa4": "how places lie to each other (\u201cWhat is north of the kitchen?\u201d)",
    "qa5": "who gave what to whom (\u201cWho gave the milk to Jeff?\u201d)",
}


def display_dir(directory: str | Path) -> str:
    """A model directory as people read it: relative to the repository when inside it."""
    path = Path(directory)
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError):
        return str(path)


def _same_dir(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def has_weights(directory: str | Path) -> bool:
    return (Path(directory) / WEIGHTS).is_file() and (Path(directory) / "config.json").is_file()


def _files(directory: str | Path, suffix: str) -> list[Path]:
    """Files with `suffix` in the model directory and its subfolders (e.g. `eval/`)."""
    directory = Path(directory)
    return sorted(directory.glob(f"*{suffix}")) + sorted(directory.glob(f"*/*{suffix}"))


def eval_reports(directory: str | Path) -> list[tuple[str, dict]]:
    """(path relative to the model directory, report) for every evaluation JSON in it."""
    found = []
    for path in _files(directory, ".json"):
        if path.name in NOT_EVAL and path.parent == Path(directory):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("results"), list) and data["results"]:
            found.append((str(path.relative_to(directory)), data))
    return found


def heatmaps(directory: str | Path) -> list[str]:
    return [str(p) for p in _files(directory, ".png")]


def trained_tasks(directory: str | Path) -> list[str]:
    """Task names the model was trained (or at least evaluated) on."""
    tasks: list[str] = []
    config = Path(directory) / "train_config.json"
    if not config.is_file() and _same_dir(directory, REPO_ROOT / "assets" / "default"):
        config = SHIPPED_CONFIG  # the README: configs/default.json trained the shipped reader
    if config.is_file():
        try:
            tasks.extend(json.loads(config.read_text()).get("tasks") or [])
        except (OSError, ValueError, AttributeError):
            pass
    for _, report in eval_reports(directory):
        tasks.extend(t for t in str(report.get("task", "")).split(",") if t)
    return list(dict.fromkeys(tasks))


def _length(tokens: int) -> str:
    if tokens >= 1_000_000 and tokens % 1_000_000 == 0:
        return f"{tokens // 1_000_000}M"
    if tokens >= 1000 and tokens % 1000 == 0:
        return f"{tokens // 1000}k"
    return f"{tokens:,}"


def _pct(value: float | None) -> str:
    return "\u2013" if value is None else f"{100 * value:.0f}%"


def eval_table(report: dict) -> str:
    """A markdown table: accuracy per context length for the model and each baseline."""
    names = list(report.get("baselines") or {})
    header = "| context length | RMT (this model) | " + " | ".join(n.replace("_", " ") for n in names) + " | samples | tokens/s |"
    lines = [header, "|" + "---|" * (4 + len(names))]
    for i, result in enumerate(report["results"]):
        base = [report["baselines"][n][i]["accuracy"] if i < len(report["baselines"][n]) else None for n in names]
        rate = result.get("tokens_per_s")
        lines.append(
            f"| {_length(int(result['length']))} tokens | **{_pct(result.get('accuracy'))}** | "
            + " | ".join(_pct(b) for b in base) + f" | {result.get('n', '')} | {f'{rate:,}' if rate else chr(8211)} |"
        )
    return "\n".join(lines)


def plain_summary(directory: str | Path | None) -> str:
    """What the model was trained to answer and how well it scored, in plain words
    (markdown), for the place where a user asks."""
    if directory is None:
        return "**No model.** Nothing can be read or answered until a model is available."
    name = display_dir(directory)
    if not has_weights(directory):
        return (f"**No model is shipped yet** (`{name}` has no `{WEIGHTS}`): reading and answering are unavailable. "
                "Start `rmtqa serve --model DIR` with a trained model, or wait for the shipped one.")
    tasks = trained_tasks(directory)
    reports = eval_reports(directory)
    if tasks:
        what = "; ".join(f"**{t}**: {TASKS.get(t, 'a task of that name')}" for t in tasks)
        trained = f"The reader `{name}` was trained to answer bAbI-style questions hidden in long text \u2014 {what}."
    else:
        trained = f"The reader `{name}` has no record of what it was trained to answer."
    if reports:
        parts = []
        tasks_seen = [str(report.get("task", "?")) for _, report in reports]
        for file, report in reports:
            scores = ", ".join(f"{_pct(r.get('accuracy'))} at {_length(int(r['length']))} tokens" for r in report["results"])
            task = str(report.get("task", "?"))
            parts.append(f"{task}{f' ({file})' if tasks_seen.count(task) > 1 else ''}: {scores}")
        scored = "Exact-match accuracy on held-out questions: " + "; ".join(parts) + "."
    else:
        scored = "It has no evaluation report, so how well it answers is unknown."
    caveat = ("It is a small model: it was **not** trained on contracts, reports, manuals or open questions, "
              "so answers to such questions are unreliable \u2014 use the sources under each answer to read the passages yourself.")
    if not tasks and not reports:
        caveat = "Treat its answers as unverified and check the sources under each answer."
    return f"{trained} {scored} {caveat}"


def model_card(directory: str | Path | None) -> str:
    """The Model tab's text: the card (or why there is none) and the evaluation tables."""
    if directory is None:
        return "No model directory."
    directory = Path(directory)
    name = display_dir(directory)
    parts = [f"### Model `{name}`", plain_summary(directory)]
    card = directory / CARD
    if card.is_file():
        parts.append(card.read_text(errors="replace"))
    else:
        parts.append(f"_No model card: `{name}/{CARD}` does not exist{' yet' if not has_weights(directory) else ''}._")
    reports = eval_reports(directory)
    for file, report in reports:
        detail = ", ".join(f"{k} {report[k]}" for k in ("split", "seed", "device") if report.get(k) is not None)
        parts.append(f"#### Evaluation `{file}`: task {report.get('task', '?')}" + (f" ({detail})" if detail else ""))
        parts.append(eval_table(report))
    if not reports:
        parts.append(f"_No evaluation report in `{name}` yet (an `rmtqa eval --json` output saved as `*.json`)._")
    if not heatmaps(directory):
        parts.append("_No heatmap images._")
    return "\n\n".join(parts)
