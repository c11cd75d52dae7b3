"""What the web UI says about a reader model: its card, its evaluation, plainly.

Everything is read from the model's directory (`assets/default` for the shipped one):
`MODEL_CARD.md`, evaluation reports (`*.json` as written by `rmtqa eval --json`: a "results"
list and "baselines"), heatmaps (`*.png`), also one folder down (e.g. `eval/`), and, if present, `train_config.json` (the training
configuration, for the tasks it was trained on; for the shipped model without one,
`configs/default.json`, which trained it). Nothing here loads weights.

Honesty rules for what is said about a model: a task is "trained" only when the training
configuration lists it (an evaluation report alone makes it "evaluated, not trained");
every accuracy is shown with its number of questions n, and figures from fewer than
`MIN_N` questions are not shown at all (they say nothing).
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from app.paths import REPO_ROOT

SHIPPED_CONFIG = REPO_ROOT / "configs" / "default.json"

CARD = "MODEL_CARD.md"
WEIGHTS = "model.safetensors"
NOT_EVAL = {"config.json", "tokenizer.json", "tokenizer_config.json", "train_config.json", "special_tokens_map.json"}
MIN_N = 20
MAX_INLINE_IMAGE = 2 << 20  # bytes; a card's larger images are left as links

# The tasks in words (bAbI: Weston et al. 2015), as a user would recognise them.
TASKS = {
    "qa1": "where a person is after moving around (\u201cWhere is Mary?\u201d)",
    "qa2": "where an object is, through the person carrying it (\u201cWhere is the football?\u201d)",
    "qa3": "where an object was before a place (\u201cWhere was the apple before the kitchen?\u201d)",
    "qa4": "how places lie to each other (\u201cWhat is north of the kitchen?\u201d)",
    "qa5": "who gave what to whom (\u201cWho gave the milk to Jeff?\u201d)",
    "needle": "a fact stated once in a document, such as a code, amount, date, name or file location (\u201cWhat is the access code for the archive?\u201d)",
}


def display_dir(directory: str | Path) -> str:
    """A model directory as people read it: relative to the repository when inside it, else
    its folder name (the UI shows no server paths)."""
    path = Path(directory)
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError):
        return path.name


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
    """Task names the model was trained on, from its training configuration (only)."""
    config = Path(directory) / "train_config.json"
    if not config.is_file() and _same_dir(directory, REPO_ROOT / "assets" / "default"):
        config = SHIPPED_CONFIG  # the README: configs/default.json trained the shipped reader
    if config.is_file():
        try:
            settings = json.loads(config.read_text())
            tasks = list(settings.get("tasks") or []) + (["needle"] if settings.get("needle_probability") else [])
            return list(dict.fromkeys(tasks))
        except (OSError, ValueError, AttributeError):
            pass
    return []


def evaluated_tasks(directory: str | Path) -> list[str]:
    """Task names the model has evaluation reports for (trained on or not)."""
    tasks = [t for _, report in eval_reports(directory) for t in str(report.get("task", "")).split(",") if t]
    return list(dict.fromkeys(tasks))


def _length(tokens: int) -> str:
    if tokens >= 1_000_000 and tokens % 1_000_000 == 0:
        return f"{tokens // 1_000_000}M"
    if tokens >= 1000 and tokens % 1000 == 0:
        return f"{tokens // 1000}k"
    return f"{tokens:,}"


def _pct(value: float | None) -> str:
    return "\u2013" if value is None else f"{100 * value:.0f}%"


def _n(result: dict) -> int:
    try:
        return int(result.get("n") or 0)
    except (TypeError, ValueError):
        return 0


def eval_table(report: dict) -> str:
    """A markdown table: accuracy per context length for the model and each baseline, with
    n; rows from fewer than `MIN_N` questions show n only."""
    names = list(report.get("baselines") or {})
    header = "| context length | RMT (this model) | " + " | ".join(n.replace("_", " ") for n in names) + " | n (questions) | tokens/s |"
    lines = [header, "|" + "---|" * (4 + len(names))]
    for i, result in enumerate(report["results"]):
        base = [report["baselines"][n][i]["accuracy"] if i < len(report["baselines"][n]) else None for n in names]
        rate = result.get("tokens_per_s")
        shown = _n(result) >= MIN_N
        scores = (f"**{_pct(result.get('accuracy'))}** | " + " | ".join(_pct(b) for b in base) if shown
                  else " | ".join([f"too few questions to say (n < {MIN_N})"] + [""] * len(names)))
        lines.append(f"| {_length(int(result['length']))} tokens | {scores} | {_n(result)} | {f'{rate:,}' if rate else chr(8211)} |")
    return "\n".join(lines)


def _scores(directory: str | Path) -> tuple[list[str], list[str]]:
    """("qa1: 33% at 1k tokens (n = 30), ..." per task, lengths left out for n < MIN_N)."""
    figures, hidden = [], []
    for file, report in eval_reports(directory):
        task = str(report.get("task", "?"))
        if report.get("mode") not in (None, "fast"):  # answered by re-reading or a deep read, not the memory alone
            task += f" ({report['mode']})"
        good = [r for r in report["results"] if _n(r) >= MIN_N]
        hidden.extend(f"{task} at {_length(int(r['length']))}" for r in report["results"] if _n(r) < MIN_N)
        if good:
            figures.append((task, file, ", ".join(f"{_pct(r.get('accuracy'))} at {_length(int(r['length']))} tokens (n = {_n(r)})"
                                                  for r in good)))
    tasks = [task for task, _, _ in figures]
    shown = [f"{task}{f' ({file})' if tasks.count(task) > 1 else ''}: {scores}" for task, file, scores in figures]
    return shown, hidden


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
    untrained = [t for t in evaluated_tasks(directory) if t not in tasks]
    if tasks:
        what = "; ".join(f"**{t}**: {TASKS.get(t, 'a task of that name')}" for t in tasks)
        trained = f"The reader `{name}` was trained to answer questions whose facts are hidden in long text \u2014 {what}."
    else:
        trained = f"The reader `{name}` has no record of what it was trained to answer."
    if untrained:
        trained += f" It was only evaluated, not trained, on {', '.join(untrained)}."
    shown, hidden = _scores(directory)
    if shown:
        scored = "Exact-match accuracy on held-out questions (n = number of questions): " + "; ".join(shown) + "."
    elif hidden:
        scored = "Its evaluations have too few questions to say how well it answers."
    else:
        scored = "It has no evaluation report, so how well it answers is unknown."
    if hidden:
        scored += f" Not shown, from fewer than {MIN_N} questions: {', '.join(hidden)}."
    caveat = ("It is a small model: it was **not** trained on contracts, reports, manuals or open questions, "
              "so answers to such questions are unreliable \u2014 use the sources under each answer to read the passages yourself.")
    if not tasks and not shown and not hidden:
        caveat = "Treat its answers as unverified and check the sources under each answer."
    return f"{trained} {scored} {caveat}"


_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def card_markdown(text: str, directory: Path) -> str:
    """A model card as the UI can show it: a `|` inside a code span of a table row is
    escaped (a table would end its cell there), and images given by a path relative to the
    card are inlined (the browser could not fetch them from the model directory)."""
    def escape_pipes(line: str) -> str:
        if not line.lstrip().startswith("|"):
            return line
        return _CODE_SPAN.sub(lambda m: m.group(1) + re.sub(r"(?<!\\)\|", r"\\|", m.group(2)) + m.group(1), line)

    def inline(match: re.Match) -> str:
        alt, target = match.groups()
        path = (directory / target).resolve()
        if "://" in target or target.startswith("data:") or not path.is_relative_to(directory.resolve()):
            return match.group(0)
        try:
            data = path.read_bytes() if path.is_file() and path.stat().st_size <= MAX_INLINE_IMAGE else None
        except OSError:
            data = None
        if data is None or path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".gif", ".webp"):
            return f"_({alt or 'image'}: `{target}` in the model folder)_"
        kind = "jpeg" if path.suffix.lower() == ".jpg" else path.suffix.lower().lstrip(".")
        return f"![{alt}](data:image/{kind};base64,{base64.b64encode(data).decode()})"

    return _IMAGE.sub(inline, "\n".join(escape_pipes(line) for line in text.split("\n")))


def model_card(directory: str | Path | None) -> str:
    """The Model tab's text: the card (or why there is none) and the evaluation tables."""
    if directory is None:
        return "No model directory."
    directory = Path(directory)
    name = display_dir(directory)
    parts = [f"### Model `{name}`", plain_summary(directory)]
    card = directory / CARD
    if card.is_file():
        parts.append(card_markdown(card.read_text(errors="replace"), directory))
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
