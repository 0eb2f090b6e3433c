"""The method comparison study's report: one row per method (the untouched base first), its cost (trainable
parameters, train time, tokens/s, peak memory, size on disk), each task's score with its 95% interval and
the paired difference to the base with its interval and p-value, plus two plots per task: score against
trainable parameters and against train time.

    write_report(rows, Path("reports/compare"))  ->  table.md, results.json, <task>_vs_params.png, ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from logicflow.atomic import atomic_file, write_json, write_text

BASELINE = "base"


@dataclass(frozen=True)
class Score:
    value: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Delta:
    """Tuned minus base on the same items (paired), with its 95% interval and p-value."""

    value: float
    low: float
    high: float
    p: float


@dataclass(frozen=True)
class MethodResult:
    method: str
    trainable_params: int
    total_params: int
    train_time_s: float
    tokens_per_s: float
    peak_memory_bytes: int
    size_bytes: int
    scores: dict[str, Score]
    deltas: dict[str, Delta] = field(default_factory=dict)  # empty for the baseline


def _size(n: float) -> str:
    """Decimal units, as disk sizes are usually quoted."""
    unit = "B"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            break
        n /= 1000
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"


def _params(row: MethodResult) -> str:
    return f"{row.trainable_params / 1e6:.2f} M ({row.trainable_params / row.total_params:.2%})"


def table(rows: list[MethodResult]) -> str:
    """Markdown: method | trainable | train time | tokens/s | peak memory | size | per task: score [CI] and
    delta [CI], p. The baseline has no training cost and no delta."""
    tasks = list(rows[0].scores)
    head = ["method", "trainable params", "train time", "tokens/s", "peak memory", "size"]
    for task in tasks:
        head += [f"{task} [95% CI]", f"Δ {task} vs base [95% CI], p"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        trained = row.method != BASELINE
        cells = [
            row.method,
            _params(row) if trained else "0",
            f"{row.train_time_s / 60:.1f} min" if trained else "–",
            f"{row.tokens_per_s:.0f}" if trained else "–",
            _size(row.peak_memory_bytes) if trained else "–",
            _size(row.size_bytes),
        ]
        for task in tasks:
            s = row.scores[task]
            cells.append(f"{s.value:.3f} [{s.low:.3f}, {s.high:.3f}] (n={s.n})")
            d = row.deltas.get(task)
            cells.append(f"{d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}], p={d.p:.3g}" if d else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(rows: list[MethodResult], task: str, x_of: str, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = {"params": lambda r: max(r.trainable_params, 1), "time": lambda r: r.train_time_s / 60}[x_of]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for row in rows:
        s = row.scores[task]
        ax.errorbar(xs(row), s.value, yerr=[[s.value - s.low], [s.high - s.value]], fmt="o", capsize=3)
        ax.annotate(row.method, (xs(row), s.value), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if x_of == "params":
        ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log)" if x_of == "params" else "train time (min)")
    ax.set_ylabel(f"{task} (95% CI)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_report(rows: list[MethodResult], out_dir: Path) -> list[Path]:
    """table.md, results.json and the two plots per task; returns the files written."""
    if not rows or rows[0].method != BASELINE:
        raise ValueError(f"the first row must be the untouched base ({BASELINE!r})")
    written = [out_dir / "table.md", out_dir / "results.json"]
    write_text(written[0], table(rows))
    write_json(written[1], [dataclasses.asdict(row) for row in rows])
    for task in rows[0].scores:
        for x_of in ("params", "time"):
            target = out_dir / f"{task}_vs_{x_of}.png"
            _plot(rows, task, x_of, target)
            written.append(target)
    return written
