"""Base vs tuned: deltas, significance, the publish gate, and the report files' contents.

    rows = compare(base_runs, tuned_runs)
    gate = evaluate_gate(rows, not_run, cfg.publish.gate)
    text = markdown_table(rows, not_run, gate); delta_chart(rows, path)

A delta is *significant* when |tuned - base| > 2 * sqrt(se_base^2 + se_tuned^2) (a missing stderr counts
as 0). The gate reads the same numbers: for a task in `must_not_drop`, any significant drop fails; for every
task, a drop larger than `max_drop` beyond the 2-stderr noise band fails. A drop is a decrease for a
higher-is-better metric and an increase otherwise. A `must_not_drop` task that was not run fails the gate:
the stage cannot vouch for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from logicflow.evaluation.harness import TaskRun


@dataclass(frozen=True)
class Side:
    value: float
    stderr: float | None
    seconds: float


@dataclass(frozen=True)
class ResultRow:
    task: str
    metric: str
    higher_is_better: bool
    n: int
    base: Side
    tuned: Side
    delta: float
    significant: bool

    @property
    def noise(self) -> float:
        """2 * combined standard error: the band a delta must leave to count."""
        return noise_band(self.base.stderr, self.tuned.stderr)

    @property
    def drop(self) -> float:
        """How much worse tuned is than base (negative = better)."""
        return -self.delta if self.higher_is_better else self.delta


@dataclass(frozen=True)
class NotRun:
    task: str
    reason: str


@dataclass(frozen=True)
class Gate:
    passed: bool
    reasons: list[str]


def noise_band(se_base: float | None, se_tuned: float | None) -> float:
    return 2.0 * math.sqrt((se_base or 0.0) ** 2 + (se_tuned or 0.0) ** 2)


def is_significant(delta: float, se_base: float | None, se_tuned: float | None) -> bool:
    return abs(delta) > noise_band(se_base, se_tuned) + 1e-12


def make_row(task: str, metric: str, higher_is_better: bool, n: int, base: Side, tuned: Side) -> ResultRow:
    delta = tuned.value - base.value
    return ResultRow(
        task,
        metric,
        higher_is_better,
        n,
        base,
        tuned,
        delta,
        is_significant(delta, base.stderr, tuned.stderr),
    )


def compare(base_runs: Sequence[TaskRun], tuned_runs: Sequence[TaskRun]) -> list[ResultRow]:
    """One row per (task, metric) present for both models, in the base runs' order."""
    tuned_by_task = {run.task: run for run in tuned_runs}
    rows = []
    for base in base_runs:
        tuned = tuned_by_task.get(base.task)
        if tuned is None:
            continue
        for metric, measured in base.metrics.items():
            other = tuned.metrics.get(metric)
            if other is None:
                continue
            rows.append(
                make_row(
                    base.task,
                    metric,
                    base.higher_is_better.get(metric, True),
                    min(base.n, tuned.n),
                    Side(measured.value, measured.stderr, base.seconds),
                    Side(other.value, other.stderr, tuned.seconds),
                )
            )
    return rows


def evaluate_gate(rows: Sequence[ResultRow], not_run: Iterable[NotRun], gate: Any) -> Gate:
    """Apply `publish.gate` (must_not_drop: [task], max_drop: float) to the rows; see module docstring."""
    reasons = []
    not_run_reason = {item.task: item.reason for item in not_run}
    evaluated = {row.task for row in rows}
    for task in gate.must_not_drop:
        if task not in evaluated:
            why = not_run_reason.get(task, "not in eval.tasks")
            reasons.append(f"{task}: not evaluated ({why}); publish.gate.must_not_drop needs it")
    for row in rows:
        if row.task in gate.must_not_drop and row.drop > row.noise:
            reasons.append(
                f"{row.task} {row.metric} dropped {row.drop:.4f} (more than 2 stderr = {row.noise:.4f}); "
                "publish.gate.must_not_drop"
            )
        elif row.drop - row.noise > gate.max_drop:
            reasons.append(
                f"{row.task} {row.metric} dropped {row.drop:.4f}, {row.drop - row.noise:.4f} beyond "
                f"2 stderr > publish.gate.max_drop {gate.max_drop}"
            )
    return Gate(not reasons, reasons)


def eval_document(
    config: dict[str, Any],
    models: dict[str, Any],
    rows: Sequence[ResultRow],
    not_run: Sequence[NotRun],
    gate: Gate,
) -> dict[str, Any]:
    """The content of reports/eval.json (the contract the card and publish stages read)."""
    return {
        "config": config,
        "models": models,
        "results": [_round_row(asdict(row)) for row in rows],
        "not_run": [asdict(item) for item in not_run],
        "gate": asdict(gate),
    }


def _round_row(row: dict[str, Any]) -> dict[str, Any]:
    for side in ("base", "tuned"):
        row[side] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row[side].items()}
    row["delta"] = round(row["delta"], 6)
    return row


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_table(rows: Sequence[ResultRow], not_run: Sequence[NotRun], gate: Gate) -> str:
    lines = [
        "# Evaluation: base vs tuned",
        "",
        "| task | metric | n | base | tuned | delta | significant |",
        "|---|---|---:|---:|---:|---:|:---:|",
    ]
    for row in rows:
        marker = "" if row.significant else " †"
        lines.append(
            f"| {row.task} | {row.metric} | {row.n} | {_fmt(row.base.value)} ± {_fmt(row.base.stderr)} "
            f"| {_fmt(row.tuned.value)} ± {_fmt(row.tuned.stderr)} | {row.delta:+.4f}{marker} "
            f"| {'yes' if row.significant else 'no'} |"
        )
    lines += ["", "± is the standard error; † marks a delta within 2 standard errors (not significant).", ""]
    if not_run:
        lines += ["## Not run", "", "| task | reason |", "|---|---|"]
        lines += [f"| {item.task} | {item.reason.replace('|', '/')} |" for item in not_run]
        lines.append("")
    lines += ["## Publish gate", "", f"**{'passed' if gate.passed else 'failed'}**", ""]
    lines += [f"- {reason}" for reason in gate.reasons]
    return "\n".join(lines).rstrip() + "\n"


def delta_chart(rows: Sequence[ResultRow], path: Path) -> None:
    """Horizontal bars of tuned - base per (task, metric), with the 2-stderr band as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{row.task}\n{row.metric}" for row in rows] or ["(no results)"]
    deltas = [row.delta for row in rows] or [0.0]
    errors = [row.noise for row in rows] or [0.0]
    colors = [
        ("tab:green" if row.delta > 0 else "tab:red") if row.significant else "tab:gray" for row in rows
    ]
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.55 * len(labels)))
    positions = list(range(len(labels)))
    ax.barh(positions, deltas, xerr=errors, color=colors or ["tab:gray"], capsize=3)
    ax.set_yticks(positions, labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("tuned - base (error bar: 2 standard errors; grey: not significant)")
    ax.set_title("Evaluation deltas")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


INFERENCE_ROWS = (
    ("latency_p50_s", "latency p50 (s)"),
    ("latency_p95_s", "latency p95 (s)"),
    ("tokens_per_s_batch1", "generated tokens/s, batch 1"),
    ("best_batch_size", "best batch size"),
    ("tokens_per_s_best_batch", "generated tokens/s, best batch"),
    ("peak_rss_mb", "peak RSS (MB)"),
    ("peak_gpu_mb", "peak GPU memory (MB)"),
    ("weights_bytes", "weights (bytes)"),
    ("adapter_bytes", "adapter (bytes)"),
)


def inference_markdown(cost: dict[str, dict[str, Any]]) -> str:
    models = list(cost)
    lines = ["# Inference cost", "", "| | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for key, label in INFERENCE_ROWS:
        cells = [cost[m].get(key) for m in models]
        if all(c is None for c in cells):
            continue
        lines.append(
            f"| {label} | "
            + " | ".join("n/a" if c is None else f"{c:g}" if isinstance(c, float) else str(c) for c in cells)
            + " |"
        )
    settings = next((cost[m].get("settings") for m in models if cost[m].get("settings")), None)
    if settings:
        lines += [
            "",
            "Measured the same way for every model: "
            + ", ".join(f"{k} {v}" for k, v in settings.items())
            + ".",
        ]
    return "\n".join(lines) + "\n"
