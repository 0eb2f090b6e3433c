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
(`evaluation.harness`), what the numbers mean (`evaluation.stats`, `evaluation.report`) and what serving
costs (`evaluation.inference`) live in `logicflow.evaluation`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logicflow.atomic import atomic_dir, write_json
from logicflow.config import Config
from logicflow.errors import ModelError
from logicflow.evaluation import cache
from logicflow.evaluation.report import (
    NotRun,
    ResultRow,
    compare,
    delta_chart,
    eval_document,
    evaluate_gate,
    heldout_examples,
    inference_markdown,
    markdown_table,
)
from logicflow.evaluation.standard import get_standard, probe, report_name
from logicflow.evaluation.tasks import (
    OfflineTask,
    RenderSettings,
    get_task,
    render_tasks,
    rendered_data_files,
    task_titles,
)
from logicflow.paths import EvalReports, Paths

# Before torch is imported: OpenMP threads that find their cores busy sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

logger = logging.getLogger(__name__)
MODELS = ("base", "tuned")


@dataclass(frozen=True)
class EvalResult:
    results: int  # (task, metric) rows compared
    not_run: list[str]
    gate_passed: bool
    gate_reasons: list[str]
    seconds: float
    outputs: tuple[str, ...]


def _check_model(model_dir: Path, label: str) -> None:
    hint = "run `logicflow stage model`" if label == "base" else "run `logicflow stage train`"
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{label} model: {model_dir} is not a model folder (no config.json); {hint}")
    if not list(model_dir.glob("*.safetensors")):
        raise ModelError(f"{label} model: {model_dir} has no *.safetensors weights; {hint}")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _sample_records(samples: list[dict[str, Any]], task: OfflineTask | None) -> list[dict[str, Any]]:
    """lm-eval's logged samples, reduced to what a person inspects, plus the task's own fields."""
    from logicflow.evaluation.harness import sample_context

    records = []
    for sample in samples:
        resps = sample.get("resps") or [[None]]
        response = resps[0][0] if resps and isinstance(resps[0], list | tuple) and resps[0] else None
        record = {
            "doc_id": sample.get("doc_id"),
            "prompt": sample_context(sample),
            "target": sample.get("target"),
            "response": response if isinstance(response, str) else resps,
            "finish_reason": sample.get("finish_reason"),
            "metrics": {m: sample.get(m) for m in sample.get("metrics", [])},
        }
        if "task" in sample:  # a group's sample: which sub-task it came from
            record["task"] = sample["task"]
        if task is not None and isinstance(response, str):
            record.update(task.inspect(sample["doc"], response))
        records.append(_jsonable(record))
    return records


def _evaluate_model(
    cfg: Config,
    label: str,
    model_dir: Path,
    offline: list[OfflineTask],
    standard: list[Any],
    include: Path,
    samples_dir: Path,
) -> tuple[list[Any], list[NotRun], dict[str, Any]]:
    """All tasks on one model; writes its samples; returns (runs, failed standard tasks, summary)."""
    from lm_eval.tasks import TaskManager

    from logicflow.evaluation.harness import device_and_dtype, make_lm, run_task
    from logicflow.model import load_causal_lm, load_tokenizer

    ev = cfg.eval
    start = time.perf_counter()
    device, dtype = device_and_dtype()
    model = load_causal_lm(model_dir, dtype=dtype).to(device).eval()
    tokenizer = load_tokenizer(model_dir, template=cfg.model.template)
    max_length = min(int(getattr(model.config, "max_position_embeddings", 4096) or 4096), 32768)
    lm = make_lm(
        model,
        tokenizer,
        batch_size=ev.batch_size,
        sample_timeout_s=ev.sample_timeout_s,
        max_length=max_length,
    )
    runs: list[Any] = []
    failed: list[NotRun] = []
    summary: dict[str, Any] = {}

    def keep(task_runs: list[Any], task: OfflineTask | None) -> None:
        for run in task_runs:
            records = _sample_records(run.samples, task)
            if task is not None:
                run.no_answer = sum(1 for r in records if r.get("answered") is False)
            path = samples_dir / f"{run.task}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
            )
            summary[run.task] = {
                "n": run.n,
                "seconds": run.seconds,
                "generated_tokens": run.generated_tokens,
                "tokens_per_s": round(run.generated_tokens / run.seconds, 2) if run.seconds else None,
                "finish_reasons": run.finish_reasons,
                "no_answer": run.no_answer,
            }
            run.samples = []  # written; do not keep them in memory
            runs.append(run)

    offline_tm = TaskManager(include_path=str(include), include_defaults=False)
    for task in offline:
        logger.info("evaluate: %s model on %s", label, task.name)
        runs_of_task = run_task(
            lm, task.name, task.lm_eval_name, offline_tm, limit=ev.task_limit(task.name), seed=ev.seed
        )
        keep(runs_of_task, task)
    if standard:
        hub_tm = TaskManager()
        for task in standard:
            settings = ev.standard_tasks[task.name]
            name = report_name(task.name, ev.tasks)
            logger.info("evaluate: %s model on %s (lm-eval %s)", label, name, task.lm_eval_name)
            try:
                keep(
                    run_task(
                        lm,
                        name,
                        task.lm_eval_name,
                        hub_tm,
                        limit=settings.limit or ev.limit,
                        seed=ev.seed,
                        num_fewshot=settings.num_fewshot,
                    ),
                    None,
                )
            except Exception as exc:  # noqa: BLE001 - a broken benchmark is reported, not fatal
                failed.append(
                    NotRun(name, f"lm-eval failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                )
    del lm, model
    summary["_total"] = {"seconds": round(time.perf_counter() - start, 3)}
    return runs, failed, summary


def _cache_key(cfg: Config, model_sha: str, include: Path) -> str:
    """The eval-cache key of a model on this stage's offline tasks and settings (see evaluation.cache)."""
    from logicflow.evaluation.harness import device_and_dtype
    from logicflow.model import chat_template

    ev = cfg.eval
    settings = {
        "device_dtype": device_and_dtype(),  # greedy outputs differ between fp32 and bf16
        "limit": {task: ev.task_limit(task) for task in ev.tasks},
        "max_new_tokens": {task: ev.task_max_new_tokens(task) for task in ev.tasks},
        "batch_size": ev.batch_size,
        "seed": ev.seed,
        "sample_timeout_s": ev.sample_timeout_s,
        "sandbox": [ev.sandbox_timeout_s, ev.sandbox_memory_mb],
        "template": chat_template(cfg.model.template),
    }
    return cache.results_key(model_sha, ev.tasks, rendered_data_files(include), settings)


def mlflow_metric_name(*parts: str) -> str:
    """MLflow allows [A-Za-z0-9_-. :/] in metric names: `pass@1` -> `pass_at_1`, `acc,none` -> `acc_none`."""
    return "/".join(re.sub(r"[^\w\-. :]", "_", part.replace("@", "_at_")) for part in parts)


def tracking_metrics(
    rows: list[ResultRow], cost: dict[str, dict[str, Any]], gate_passed: bool
) -> dict[str, float]:
    metrics: dict[str, float] = {"eval/gate_passed": float(gate_passed)}
    for row in rows:
        metrics[mlflow_metric_name("eval", "base", row.task, row.metric)] = row.base.value
        metrics[mlflow_metric_name("eval", "tuned", row.task, row.metric)] = row.tuned.value
        metrics[mlflow_metric_name("eval", "delta", row.task, row.metric)] = row.delta
        metrics[mlflow_metric_name("eval", "p_value", row.task, row.metric)] = row.p_value
    for label, figures in cost.items():
        for key, value in figures.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and value is not None:
                metrics[mlflow_metric_name("inference", label, key)] = float(value)
    return metrics


def run(cfg: Config, paths: Paths) -> EvalResult:
    from logicflow import tracking
    from logicflow.evaluation.harness import pick_threads
    from logicflow.evaluation.inference import measure
    from logicflow.evaluation.punkt import ensure_punkt_tab
    from logicflow.evaluation.selftest import run_selftest
    from logicflow.model import weights_sha256

    start = time.perf_counter()
    ev = cfg.eval
    offline = [get_task(name) for name in ev.tasks]  # unknown names fail here, listing close matches
    for name in ev.standard_tasks:
        get_standard(name)
    model_dirs = {"base": paths.base_model, "tuned": paths.merged}
    for label, model_dir in model_dirs.items():
        _check_model(model_dir, label)
    ensure_punkt_tab()  # before lm-eval's IFEval module is imported anywhere
    selftest = run_selftest(ev.tasks, ev.sandbox_timeout_s, ev.sandbox_memory_mb)
    logger.info("evaluate: grader self-test passed (%d known answers)", selftest["checks"])
    standard, not_run = probe(ev.standard_tasks, offline_names=ev.tasks)
    shas = {label: weights_sha256(model_dir) for label, model_dir in model_dirs.items()}

    import torch

    threads = pick_threads()
    torch.set_num_threads(threads)
    logger.info(
        "evaluate: %d offline task(s), %d standard task(s) runnable, %d not run; %d CPU thread(s)",
        len(offline),
        len(standard),
        len(not_run),
        threads,
    )

    with tracking.attach(paths) as tracker, tempfile.TemporaryDirectory(prefix="logicflow-eval-") as tmp:
        include = render_tasks(
            ev.tasks,
            RenderSettings(
                {task: ev.task_max_new_tokens(task) for task in ev.tasks},
                ev.sandbox_timeout_s,
                ev.sandbox_memory_mb,
            ),
            paths,
            Path(tmp) / "tasks",
        )
        # Keys fixed before any work: what the results depend on, as of the start of this run.
        cacheable = not standard and cache.enabled()
        keys = {label: _cache_key(cfg, shas[label], include) for label in MODELS} if cacheable else {}
        with atomic_dir(paths.eval_reports.dir) as staging:
            runs: dict[str, list[Any]] = {}
            summary: dict[str, Any] = {"threads": threads}
            for label in MODELS:
                samples = staging / "samples" / label
                if label == "tuned" and shas["tuned"] == shas["base"]:
                    logger.warning("evaluate: tuned weights are identical to base; reusing the base results")
                    runs["tuned"], summary["tuned"] = runs["base"], {"reused": "base (identical weights)"}
                    shutil.copytree(staging / "samples" / "base", samples)
                    continue
                key = keys.get(label)
                if key and (hit := cache.load(key)):
                    logger.info("evaluate: %s model results reused from the eval cache (%s)", label, key)
                    runs[label], summary[label] = hit[0], {"cached": key}
                    shutil.copytree(hit[1], samples)
                    continue
                runs[label], failed, summary[label] = _evaluate_model(
                    cfg, label, model_dirs[label], offline, standard, include, samples
                )
                if key:
                    cache.save(key, runs[label], samples)
                not_run += [item for item in failed if item.task not in {n.task for n in not_run}]
            failed_tasks = {item.task for item in not_run}
            for label in MODELS:  # a benchmark that failed on one model is compared on neither
                runs[label] = [r for r in runs[label] if r.task not in failed_tasks]

            rows = compare(runs["base"], runs["tuned"], alpha=cfg.publish.gate.alpha)
            gate = evaluate_gate(rows, not_run, cfg.publish.gate)
            cost = {
                "base": measure(
                    paths.base_model,
                    template=cfg.model.template,
                    max_batch_size=ev.batch_size,
                    threads=threads,
                ),
                "tuned": measure(
                    paths.merged,
                    template=cfg.model.template,
                    max_batch_size=ev.batch_size,
                    threads=threads,
                    adapter_dir=paths.adapter,
                ),
            }
            staged = EvalReports(staging)
            staged.table.write_text(markdown_table(rows, not_run, gate), encoding="utf-8")
            delta_chart(rows, staged.deltas_plot)
            staged.inference_table.write_text(inference_markdown(cost), encoding="utf-8")
            examples = heldout_examples(staged.samples)
            summary["seconds"] = round(time.perf_counter() - start, 3)
            staged.summary.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")

        document = eval_document(
            config={
                "seed": ev.seed,
                "max_new_tokens": {task: ev.task_max_new_tokens(task) for task in ev.tasks},
                "limit": {task: ev.task_limit(task) for task in ev.tasks},
                "batch_size": ev.batch_size,
                "template": cfg.model.template,
                "alpha": cfg.publish.gate.alpha,
            },
            models={
                label: {"path": os.path.relpath(model_dirs[label], paths.root), "sha256": shas[label]}
                for label in MODELS
            },
            rows=rows,
            not_run=not_run,
            gate=gate,
            tasks=task_titles(offline, {row.task: row.n for row in rows if row.primary}, include),
            examples=examples,
            versions=selftest["versions"],
            selftest={"passed": selftest["passed"], "checks": selftest["checks"]},
        )
        write_json(paths.inference_json, cost)
        write_json(paths.eval_json, document)  # last: its presence means the whole report is there

        tracker.log_metrics(tracking_metrics(rows, cost, gate.passed))
        for path in (paths.eval_json, paths.inference_json):
            tracker.log_artifact(path, "eval")
        reports = paths.eval_reports
        for path in (reports.table, reports.deltas_plot, reports.inference_table, reports.summary):
            tracker.log_artifact(path, "eval")

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
