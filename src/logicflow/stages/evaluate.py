"""Stage `evaluate`: the base and the merged-tuned model on the same tasks, items, settings and prompts.

    logicflow stage evaluate                    # profile from params.yaml
    logicflow stage evaluate --profile smoke --set eval.limit=2

Reads `models/base`, `models/merged`, `models/adapter` (sizes only) and `data/heldout/math.jsonl`.
Before any model runs, the grader self-test puts known answers through the real scorers
(`evaluation.selftest`); a mismatch stops the stage. Each task has its own item limit and generation
budget (`eval.per_task`). Writes `reports/eval.json` (per task and metric: both scores with 95% intervals,
the paired delta with its interval and p-value, the share of answers cut off at the budget or with nothing
to score; tasks not run with the reason; the gate's verdict and rules; what each task's items are; three
held-out examples; the scorers' versions), `reports/inference.json`, and `reports/eval/` (table.md,
deltas.png, inference.md, summary.json, samples/<model>/<task>.jsonl). When the train stage recorded an
MLflow run, eval/base|tuned|delta|p_value/<task>/<metric> metrics and the report files are logged to it.

A model whose weights, tasks, data, settings and evaluation code match an earlier run reuses that run's
results from the machine's eval cache (`evaluation.cache`; usually the base model, after a training
change); tuned weights identical to the base reuse the base results.

Orchestration only: what the tasks are (`evaluation.tasks`, `evaluation.standard`), how they run
(`evaluation.runner`, `evaluation.harness`), what the numbers mean (`evaluation.stats`, `evaluation.report`),
what serving costs (`evaluation.inference`) and what is written and logged (`evaluation.outputs`) live in
`logicflow.evaluation`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from logicflow import tracking
from logicflow.atomic import atomic_dir, write_json
from logicflow.config import Config
from logicflow.evaluation.outputs import eval_report, log_results, write_reports
from logicflow.evaluation.report import compare, evaluate_gate
from logicflow.evaluation.runner import prepare, render, run_models, serving_cost
from logicflow.paths import EvalReports, Paths

# Before torch is imported: OpenMP threads that find their cores busy sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    results: int  # (task, metric) rows compared
    not_run: list[str]
    gate_passed: bool
    gate_reasons: list[str]
    seconds: float
    outputs: tuple[str, ...]


def run(cfg: Config, paths: Paths) -> EvalResult:
    start = time.perf_counter()
    plan = prepare(cfg, paths)  # before any model loads: unknown tasks, missing models, a broken grader
    with tracking.attach(paths) as tracker, tempfile.TemporaryDirectory(prefix="logicflow-eval-") as tmp:
        include = render(cfg, paths, Path(tmp) / "tasks")
        with atomic_dir(paths.eval_reports.dir) as staging:
            staged = EvalReports(staging)
            outcome = run_models(cfg, plan, include, staged)
            not_run = outcome.not_run
            rows = compare(outcome.runs["base"], outcome.runs["tuned"], alpha=cfg.publish.gate.alpha)
            gate = evaluate_gate(rows, not_run, cfg.publish.gate)
            cost = serving_cost(cfg, paths, plan.threads) if cfg.eval.serving_cost else {}
            write_reports(staged, rows, not_run, gate, cost, outcome.summary, started=start)
        write_json(paths.inference_json, cost)
        # last: its presence means the whole report is there
        write_json(paths.eval_json, eval_report(cfg, paths, plan, rows, not_run, gate, include))
        log_results(tracker, paths, rows, cost, gate.passed)

    seconds = round(time.perf_counter() - start, 3)
    logger.info(
        "evaluate: %d result rows, %d not run, gate %s, %.1f s",
        len(rows),
        len(not_run),
        gate.result,
        seconds,
    )
    return EvalResult(
        results=len(rows),
        not_run=[f"{n.task}: {n.reason}" for n in not_run],
        gate_passed=gate.passed,
        gate_reasons=gate.reasons,
        seconds=seconds,
        outputs=tuple(str(p) for p in (paths.eval_json, paths.inference_json, paths.eval_reports.dir)),
    )
