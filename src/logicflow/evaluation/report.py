"""Base vs tuned: paired comparisons, the publish gate, and the report files' contents.

    rows = compare(base_runs, tuned_runs, alpha=0.05)
    gate = evaluate_gate(rows, not_run, cfg.publish.gate)
    text = markdown_table(rows, not_run, gate); delta_chart(rows, path)

Every row compares the two models on the same items (`evaluation.stats`): each score with its 95% interval,
the delta with its paired 95% interval and p-value, and a status: `improved` / `dropped` (p < alpha),
`no significant change`, or `inconclusive` (both models at the floor or both at the ceiling on every item).

The gate applies per-task rules to each task's primary metric (the first one the task reports):
- `must_improve`: passed on a significant paired gain; failed when the delta is 0 or worse; a gain that is
  not significant (or a task with no signal) is inconclusive.
- `must_not_drop`: failed on a significant drop; passed when the upper end of the drop's interval is at
  most `max_drop`; otherwise inconclusive (n too small to rule out a drop that large).
A task named in a rule but not evaluated fails its rule: the stage cannot vouch for it. The verdict is
`failed` if any rule failed, else `inconclusive` if any was, else `passed`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from logicflow.evaluation.harness import TaskRun
from logicflow.evaluation.stats import Interval, compare_items
from logicflow.paths import EvalReports

Verdict = Literal["passed", "failed", "inconclusive"]


@dataclass(frozen=True)
class Side:
    value: float
    ci: Interval  # 95%
    seconds: float
    cut_off: float | None = None  # share of answers that hit the generation budget
    no_answer: float | None = None  # share of answers with nothing to score (no code, no number)


@dataclass(frozen=True)
class ResultRow:
    task: str
    metric: str
    higher_is_better: bool
    primary: bool  # the metric the gate reads for this task
    n: int
    base: Side
    tuned: Side
    delta: float
    delta_ci: Interval
    p_value: float
    test: str
    status: str  # improved | dropped | no significant change | inconclusive

    @property
    def drop_ci(self) -> Interval:
        """The interval of how much worse tuned is than base (negative = better)."""
        low, high = self.delta_ci
        return (-high, -low) if self.higher_is_better else (low, high)


@dataclass(frozen=True)
class NotRun:
    task: str
    reason: str


@dataclass(frozen=True)
class Rule:
    task: str
    rule: str  # must_improve | must_not_drop
    result: Verdict
    detail: str


@dataclass(frozen=True)
class Gate:
    result: Verdict
    rules: list[Rule] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.result == "passed"

    @property
    def reasons(self) -> list[str]:
        """One line per rule that did not pass."""
        return [f"{r.task} {r.rule} {r.result}: {r.detail}" for r in self.rules if r.result != "passed"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "passed": self.passed,
            "reasons": self.reasons,
            "rules": [asdict(r) for r in self.rules],
        }


def _status(higher_is_better: bool, delta: float, p_value: float, degenerate: bool, alpha: float) -> str:
    if degenerate:
        return "inconclusive"
    if p_value >= alpha or delta == 0:
        return "no significant change"
    return "improved" if (delta > 0) == higher_is_better else "dropped"


def _share(run: TaskRun, count: int | None) -> float | None:
    return None if count is None or not run.n else round(count / run.n, 4)


def _side(run: TaskRun, value: float, ci: Interval) -> Side:
    return Side(
        value,
        ci,
        run.seconds,
        _share(run, run.finish_reasons.get("max_tokens", 0) if run.finish_reasons else None),
        _share(run, run.no_answer),
    )


def compare(
    base_runs: Sequence[TaskRun], tuned_runs: Sequence[TaskRun], alpha: float = 0.05
) -> list[ResultRow]:
    """One row per (task, metric) scored per item for both models, in the base runs' order."""
    tuned_by_task = {run.task: run for run in tuned_runs}
    rows = []
    for base in base_runs:
        tuned = tuned_by_task.get(base.task)
        if tuned is None:
            continue
        primary = True
        for metric, base_items in base.items.items():
            tuned_items = tuned.items.get(metric)
            if tuned_items is None or not base_items:
                continue
            paired = compare_items(base_items, tuned_items)
            higher = base.higher_is_better.get(metric, True)
            rows.append(
                ResultRow(
                    base.task,
                    metric,
                    higher,
                    primary,
                    paired.n,
                    _side(base, paired.base, paired.base_ci),
                    _side(tuned, paired.tuned, paired.tuned_ci),
                    paired.delta,
                    paired.delta_ci,
                    paired.p_value,
                    paired.test,
                    _status(higher, paired.delta, paired.p_value, paired.degenerate, alpha),
                )
            )
            primary = False
    return rows


def _fmt_ci(ci: Interval) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _summary(row: ResultRow) -> str:
    """`accuracy 0.170 -> 0.515, delta 95% CI [+0.270, +0.420], p = 2.8e-15, n = 200`"""
    return (
        f"{row.metric} {row.base.value:.3f} -> {row.tuned.value:.3f}, "
        f"delta 95% CI {_fmt_ci(row.delta_ci)}, p = {row.p_value:.2g}, n = {row.n}"
    )


NO_SIGNAL = "no signal (both models at the floor or ceiling)"


def _must_improve(row: ResultRow) -> tuple[Verdict, str]:
    summary = _summary(row)
    if row.status == "improved":
        return "passed", f"significant gain: {summary}"
    if row.status == "inconclusive":
        return "inconclusive", f"{NO_SIGNAL}: {summary}"
    gained = (row.delta > 0) == row.higher_is_better and row.delta != 0
    if gained:
        return "inconclusive", f"gain not significant: {summary}"
    return "failed", f"no gain: {summary}"


def _must_not_drop(row: ResultRow, max_drop: float) -> tuple[Verdict, str]:
    worst = row.drop_ci[1]
    summary = f"{_summary(row)}; the drop is at most {max(worst, 0.0) + 0.0:.3f} (95%)"  # never "-0.000"
    if row.status == "dropped":
        return "failed", f"significant drop: {summary}"
    if row.status == "inconclusive":
        return "inconclusive", f"{NO_SIGNAL}: {summary}"
    if worst <= max_drop + 1e-12:
        return "passed", f"{summary} <= max_drop {max_drop}"
    return "inconclusive", f"{summary} > max_drop {max_drop}: n too small to rule it out"


def evaluate_gate(rows: Sequence[ResultRow], not_run: Iterable[NotRun], gate: Any) -> Gate:
    """Apply `publish.gate` (must_improve, must_not_drop, max_drop) to the rows; see module docstring."""
    not_run_reason = {item.task: item.reason for item in not_run}
    primary = {row.task: row for row in rows if row.primary}
    rules: list[Rule] = []
    for name, tasks in (("must_improve", gate.must_improve), ("must_not_drop", gate.must_not_drop)):
        for task in tasks:
            row = primary.get(task)
            if row is None:
                why = not_run_reason.get(task, "not in eval.tasks")
                rules.append(Rule(task, name, "failed", f"not evaluated ({why})"))
                continue
            result, detail = (
                _must_improve(row) if name == "must_improve" else _must_not_drop(row, gate.max_drop)
            )
            rules.append(Rule(task, name, result, detail))
    results = {rule.result for rule in rules}
    verdict: Verdict = (
        "failed" if "failed" in results else "inconclusive" if "inconclusive" in results else "passed"
    )
    return Gate(verdict, rules)


def eval_document(
    config: dict[str, Any],
    models: dict[str, Any],
    rows: Sequence[ResultRow],
    not_run: Sequence[NotRun],
    gate: Gate,
    **extra: Any,
) -> dict[str, Any]:
    """The content of reports/eval.json (the contract the card and publish stages read)."""
    return {
        "config": config,
        "models": models,
        "results": [_round(asdict(row)) for row in rows],
        "not_run": [asdict(item) for item in not_run],
        "gate": gate.as_dict(),
        **extra,
    }


def heldout_examples(reports: EvalReports, count: int = 3) -> list[dict[str, Any]]:
    """The first `count` held-out math items of the samples in `reports`, base answer beside tuned answer
    (the first by item order, not picked by outcome)."""

    def read(label: str) -> list[dict[str, Any]]:
        path = reports.task_samples(label, "logicflow_math_heldout")
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def side(record: dict[str, Any]) -> dict[str, Any]:
        return {
            "response": record["response"],
            "predicted": record.get("predicted"),
            "correct": bool(record["metrics"].get("accuracy")),
        }

    tuned = {record["doc_id"]: record for record in read("tuned")}
    pairs = [(base, tuned[base["doc_id"]]) for base in read("base") if base["doc_id"] in tuned]
    return [
        {"question": base["question"], "gold": base.get("gold"), "base": side(base), "tuned": side(other)}
        for base, other in sorted(pairs, key=lambda pair: pair[0]["doc_id"])[:count]
    ]


def _round(value: Any) -> Any:
    """Six significant digits (not decimals: a p-value of 6e-13 must not become 0)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round(v) for v in value]
    return value


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def markdown_table(rows: Sequence[ResultRow], not_run: Sequence[NotRun], gate: Gate) -> str:
    lines = [
        "# Evaluation: base vs tuned (same items, paired)",
        "",
        "| task | metric | n | base [95% CI] | tuned [95% CI] | Δ [95% CI] | p | result "
        "| cut off (base/tuned) | no answer (base/tuned) |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.task} | {row.metric} | {row.n} "
            f"| {row.base.value:.3f} [{row.base.ci[0]:.3f}, {row.base.ci[1]:.3f}] "
            f"| {row.tuned.value:.3f} [{row.tuned.ci[0]:.3f}, {row.tuned.ci[1]:.3f}] "
            f"| {row.delta:+.3f} {_fmt_ci(row.delta_ci)} | {row.p_value:.2g} | {row.status} "
            f"| {_pct(row.base.cut_off)} / {_pct(row.tuned.cut_off)} "
            f"| {_pct(row.base.no_answer)} / {_pct(row.tuned.no_answer)} |"
        )
    lines += [
        "",
        "Intervals: Wilson for per-item pass/fail scores, paired bootstrap otherwise and for every Δ; "
        "p: exact McNemar (pass/fail) or paired bootstrap. `cut off`: answers that hit the generation "
        "budget; `no answer`: answers with nothing to score.",
        "",
    ]
    if not_run:
        lines += ["## Not run", "", "| task | reason |", "|---|---|"]
        lines += [f"| {item.task} | {item.reason.replace('|', '/')} |" for item in not_run]
        lines.append("")
    lines += ["## Publish gate", "", f"**{gate.result}**", ""]
    lines += [f"- {rule.task} `{rule.rule}`: **{rule.result}**: {rule.detail}" for rule in gate.rules]
    return "\n".join(lines).rstrip() + "\n"


def delta_chart(rows: Sequence[ResultRow], path: Path) -> None:
    """Horizontal bars of tuned - base per (task, metric), with the paired 95% interval as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{row.task}\n{row.metric}" for row in rows] or ["(no results)"]
    deltas = [row.delta for row in rows] or [0.0]
    errors = [
        [row.delta - row.delta_ci[0] for row in rows] or [0.0],
        [row.delta_ci[1] - row.delta for row in rows] or [0.0],
    ]
    colors = [{"improved": "tab:green", "dropped": "tab:red"}.get(row.status, "tab:gray") for row in rows]
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.55 * len(labels)))
    positions = list(range(len(labels)))
    ax.barh(positions, deltas, xerr=errors, color=colors or ["tab:gray"], capsize=3)
    ax.set_yticks(positions, labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("tuned - base (error bar: paired 95% interval; grey: not significant)")
    ax.set_title("Evaluation deltas")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


INFERENCE_ROWS = (  # reports/eval/inference.md and the card's inference table
    ("ttft_p50_s", "time to first token p50 (s)"),
    ("ttft_p95_s", "time to first token p95 (s)"),
    ("latency_p50_s", "latency p50 (s)"),
    ("latency_p95_s", "latency p95 (s)"),
    ("tokens_per_s_batch1", "generated tokens/s, batch 1"),
    ("tokens_per_s_batch8", "generated tokens/s, batch 8"),
    ("best_batch_size", "best batch size"),
    ("tokens_per_s_best_batch", "generated tokens/s, best batch"),
    ("peak_rss_mb", "peak RSS (MB)"),
    ("context_len", "context length (tokens)"),
    ("ttft_at_context_s", "first token after a context-length prompt (s)"),
    ("peak_rss_at_context_mb", "peak RSS with a context-length prompt (MB)"),
    ("peak_gpu_mb", "peak GPU memory (MB)"),
    ("weights_bytes", "weights (bytes)"),
    ("adapter_bytes", "adapter (bytes)"),
)


def inference_markdown(cost: dict[str, dict[str, Any]]) -> str:
    if not cost:
        return "# Inference cost\n\nNot measured (eval.serving_cost is false).\n"
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
