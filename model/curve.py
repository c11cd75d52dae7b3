"""The training curve of a run: held-out accuracy against steps and against wall-clock minutes,
one colour per curriculum stage, from the trainer's `log.jsonl`.

    python -m model.curve runs/reader/log.jsonl assets/default/eval/curve.png
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def read_log(path: str | Path) -> list[dict]:
    """The evaluation records of a `log.jsonl` (one JSON object per line), in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curve(records: list[dict], path: str | Path, title: str = "training curve") -> None:
    """Two panels, accuracy vs steps and vs minutes, points coloured by stage; promotions marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        raise ValueError("no evaluation records to plot")
    stages = sorted({r["stage"] for r in records})
    colours = matplotlib.colormaps["viridis"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for axis, x_key, x_label in ((axes[0], "step", "optimizer steps"), (axes[1], "minutes", "wall-clock minutes")):
        for index, stage in enumerate(stages):
            points = [r for r in records if r["stage"] == stage and x_key in r]
            label = "direct (no memory)" if stage < 0 else ("facts only" if stage == 0 else f"{stage} segment{'s' if stage > 1 else ''}")
            axis.plot([r[x_key] for r in points], [r["val_acc"] for r in points], ".-", color=colours(index / max(1, len(stages) - 1)), label=label, markersize=3)
        for r in records:
            if r.get("promoted_to") is not None and x_key in r:
                axis.axvline(r[x_key], color="grey", linewidth=0.5, linestyle=":")
        axis.set_xlabel(x_label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("held-out exact match (teacher-forced)")
    axes[0].set_ylim(0, 1.02)
    axes[1].legend(loc="lower right", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m model.curve LOG.jsonl OUT.png", file=sys.stderr)
        return 2
    plot_curve(read_log(argv[0]), argv[1], title=f"training curve: {Path(argv[0]).parent.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
