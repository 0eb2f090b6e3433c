"""What the evaluate stage writes and logs: the files of reports/eval/, the reports/eval.json document, and
the eval metrics and report files on the run's MLflow run.

    write_reports(EvalReports(staging), rows, not_run, gate, cost, summary, started)
    write_json(paths.eval_json, eval_report(cfg, paths, plan, rows, not_run, gate, include))
    log_results(tracker, paths, rows, cost, gate.passed)
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logicflow.config import Config
from logicflow.evaluation.report import (
    Gate,
    NotRun,
    ResultRow,
    delta_chart,
    eval_document,
    heldout_examples,
    inference_markdown,
    markdown_table,
)
from logicflow.evaluation.runner import MODELS, Plan, budgets, limits
from logicflow.evaluation.tasks import task_titles
from logicflow.paths import EvalReports, Paths

if TYPE_CHECKING:
    from logicflow.tracking import NullTracker


def write_reports(
    staged: EvalReports,
    rows: Sequence[ResultRow],
    not_run: Sequence[NotRun],
    gate: Gate,
    cost: dict[str, dict[str, Any]],
    summary: dict[str, Any],
    started: float,
) -> None:
    """table.md, deltas.png, inference.md, and summary.json with the seconds since `started` (a
    `time.perf_counter()` reading)."""
    staged.table.write_text(markdown_table(rows, not_run, gate), encoding="utf-8")
    delta_chart(rows, staged.deltas_plot)
    staged.inference_table.write_text(inference_markdown(cost), encoding="utf-8")
    summary = {**summary, "seconds": round(time.perf_counter() - started, 3)}
    staged.summary.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def eval_report(
    cfg: Config,
    paths: Paths,
    plan: Plan,
    rows: Sequence[ResultRow],
    not_run: Sequence[NotRun],
    gate: Gate,
    include: Path,
) -> dict[str, Any]:
    """reports/eval.json, from the results and the samples in reports/eval/; `include` is the rendered
    offline tasks folder (how many items each task has)."""
    ev = cfg.eval
    return eval_document(
        config={
            "seed": ev.seed,
            "max_new_tokens": budgets(ev),
            "limit": limits(ev),
            "batch_size": ev.batch_size,
            "template": cfg.model.template,
            "alpha": cfg.publish.gate.alpha,
            "sandbox": plan.sandbox,
        },
        models={
            label: {"path": os.path.relpath(plan.models[label], paths.root), "sha256": plan.shas[label]}
            | (
                {"adapter": os.path.relpath(plan.adapter, paths.root)}
                if label == "tuned" and plan.adapter
                else {}
            )
            for label in MODELS
        },
        rows=rows,
        not_run=not_run,
        gate=gate,
        tasks=task_titles(plan.offline, {row.task: row.n for row in rows if row.primary}, include),
        examples=heldout_examples(paths.eval_reports),
        versions=plan.selftest["versions"],
        selftest={"passed": plan.selftest["passed"], "checks": plan.selftest["checks"]},
    )


def mlflow_metric_name(*parts: str) -> str:
    """MLflow allows [A-Za-z0-9_-. :/] in metric names: `pass@1` -> `pass_at_1`, `acc,none` -> `acc_none`."""
    return "/".join(re.sub(r"[^\w\-. :]", "_", part.replace("@", "_at_")) for part in parts)


def tracking_metrics(
    rows: Sequence[ResultRow], cost: dict[str, dict[str, Any]], gate_passed: bool
) -> dict[str, float]:
    """eval/{base,tuned,delta,p_value}/<task>/<metric>, eval/gate_passed and inference/<model>/<figure>."""
    metrics: dict[str, float] = {"eval/gate_passed": float(gate_passed)}
    for row in rows:
        metrics[mlflow_metric_name("eval", "base", row.task, row.metric)] = row.base.value
        metrics[mlflow_metric_name("eval", "tuned", row.task, row.metric)] = row.tuned.value
        metrics[mlflow_metric_name("eval", "delta", row.task, row.metric)] = row.delta
        metrics[mlflow_metric_name("eval", "p_value", row.task, row.metric)] = row.p_value
    for label, figures in cost.items():
        for key, value in figures.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics[mlflow_metric_name("inference", label, key)] = float(value)
    return metrics


def log_results(
    tracker: NullTracker,
    paths: Paths,
    rows: Sequence[ResultRow],
    cost: dict[str, dict[str, Any]],
    gate_passed: bool,
) -> None:
    """The eval metrics and the report files onto the tracker's run (a no-op tracker without one)."""
    tracker.log_metrics(tracking_metrics(rows, cost, gate_passed))
    reports = paths.eval_reports
    for path in (
        paths.eval_json,
        paths.inference_json,
        reports.table,
        reports.deltas_plot,
        reports.inference_table,
        reports.summary,
    ):
        tracker.log_artifact(path, "eval")
