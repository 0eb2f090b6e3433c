"""The loss curve: `loss.csv` (a DVC plot) and `loss.png` (logged to MLflow as `plots/loss.png`).

Rows come from the trainer's log history, which survives a resume (it is part of every checkpoint), so a
resumed run still plots its whole curve. Smoothing is TensorBoard's debiased exponential moving average.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from logicflow.atomic import atomic_file, write_text

SMOOTHING = 0.8
COLUMNS = ("step", "train_loss", "eval_loss", "train_loss_smoothed")


def smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    out, last, debias = [], 0.0, 0.0
    for value in values:
        last = weight * last + (1 - weight) * value
        debias = weight * debias + (1 - weight)
        out.append(last / debias)
    return out


def loss_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per logged step: train loss, eval loss (None where not evaluated), smoothed train loss."""
    train = {int(e["step"]): float(e["loss"]) for e in log_history if "loss" in e and "step" in e}
    evals = {int(e["step"]): float(e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e}
    steps = sorted(set(train) | set(evals))
    smoothed = dict(zip(sorted(train), smooth([train[s] for s in sorted(train)]), strict=True))
    return [
        {
            "step": s,
            "train_loss": train.get(s),
            "eval_loss": evals.get(s),
            "train_loss_smoothed": smoothed.get(s),
        }
        for s in steps
    ]


def write_csv(rows: list[dict[str, Any]], target: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [
                "" if row[c] is None else (f"{row[c]:.6f}" if isinstance(row[c], float) else row[c])
                for c in COLUMNS
            ]
        )
    write_text(target, buffer.getvalue())


def write_png(rows: list[dict[str, Any]], target: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    train = [
        (r["step"], r["train_loss"], r["train_loss_smoothed"]) for r in rows if r["train_loss"] is not None
    ]
    evals = [(r["step"], r["eval_loss"]) for r in rows if r["eval_loss"] is not None]
    if train:
        steps, raw, smoothed = zip(*train, strict=True)
        ax.plot(steps, raw, color="tab:blue", alpha=0.3, linewidth=1, label="train loss (raw)")
        ax.plot(steps, smoothed, color="tab:blue", linewidth=2, label="train loss (smoothed)")
    if evals:
        steps, values = zip(*evals, strict=True)
        ax.plot(steps, values, color="tab:orange", marker="o", linewidth=2, label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_file(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
