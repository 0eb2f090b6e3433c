"""Both models over the same tasks: the checks before any model loads, one lm-eval pass per model with its
per-sample records, reuse of results that cannot have changed, and what each model costs to serve.

    plan = prepare(cfg, paths)          # unknown task, missing model, broken grader: fails here
    include = render(cfg, paths, tmp)   # the offline tasks as an lm-eval include folder
    outcome = run_models(cfg, plan, include, EvalReports(staging))   # runs, not run, summary; samples/
    cost = serving_cost(cfg, paths, plan.threads)                    # reports/inference.json

Tuned weights identical to the base reuse the base results. Without standard (Hub) tasks, a model whose
weights, tasks, data, settings and evaluation code match an earlier run reuses that run's results from the
machine's eval cache (`evaluation.cache`). A standard task that fails on one model is compared on neither.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logicflow import sandbox
from logicflow.config import Config, EvalConfig
from logicflow.errors import ModelError
from logicflow.evaluation import cache
from logicflow.evaluation.harness import (
    TaskRun,
    TaskSpec,
    device_and_dtype,
    make_lm,
    pick_threads,
    run_tasks,
    sample_context,
)
from logicflow.evaluation.inference import measure
from logicflow.evaluation.punkt import ensure_punkt_tab
from logicflow.evaluation.report import NotRun
from logicflow.evaluation.selftest import run_selftest
from logicflow.evaluation.standard import StandardTask, get_standard, probe, report_name
from logicflow.evaluation.tasks import (
    OfflineTask,
    RenderSettings,
    get_task,
    render_tasks,
    rendered_data_files,
)
from logicflow.model import chat_template, load_causal_lm, load_tokenizer, weights_sha256
from logicflow.paths import TRAIN_MANIFEST, EvalReports, Paths

logger = logging.getLogger(__name__)
MODELS = ("base", "tuned")


@dataclass(frozen=True)
class Plan:
    """What the evaluation runs, settled before any model loads."""

    offline: list[OfflineTask]
    standard: list[StandardTask]  # the standard tasks that can run here
    not_run: list[NotRun]  # the standard tasks that cannot, with the reason
    models: dict[str, Path]  # label (base, tuned) -> model folder
    shas: dict[str, str]  # label -> weights digest
    selftest: dict[str, Any]  # the grader self-test's record: passed, checks, versions
    sandbox: str | None  # how generated code is confined (None: no task runs code)
    threads: int  # torch CPU threads
    adapter: Path | None = None  # loaded on the tuned model when its method cannot be merged (prompt tuning)


@dataclass(frozen=True)
class Outcome:
    runs: dict[str, list[TaskRun]]  # label -> task runs; a standard task that failed on either is left out
    not_run: list[NotRun]  # the plan's, plus the standard tasks that failed
    summary: dict[str, Any]  # summary.json: threads, and per model its timings and tokens or what it reused


def budgets(ev: EvalConfig) -> dict[str, int]:
    """The generation budget of each offline task."""
    return {task: ev.task_max_new_tokens(task) for task in ev.tasks}


def limits(ev: EvalConfig) -> dict[str, int | None]:
    """The item limit of each offline task (None: all items)."""
    return {task: ev.task_limit(task) for task in ev.tasks}


def check_model(model_dir: Path, label: str) -> None:
    hint = "run `logicflow stage model`" if label == "base" else "run `logicflow stage train`"
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{label} model: {model_dir} is not a model folder (no config.json); {hint}")
    if not list(model_dir.glob("*.safetensors")):
        raise ModelError(f"{label} model: {model_dir} has no *.safetensors weights; {hint}")


def prepare(cfg: Config, paths: Paths) -> Plan:
    """Look the tasks up, check both model folders, self-test the graders, probe the standard tasks."""
    ev = cfg.eval
    offline = [get_task(name) for name in ev.tasks]  # unknown names fail here, listing close matches
    for name in ev.standard_tasks:
        get_standard(name)
    models = {"base": paths.base_model, "tuned": paths.merged}
    for label, model_dir in models.items():
        check_model(model_dir, label)
    ensure_punkt_tab()  # before lm-eval's IFEval module is imported anywhere
    confined = isolation(ev)  # before any model loads: fails when generated code cannot be confined
    selftest = run_selftest(ev.tasks, ev.sandbox_settings())
    logger.info("evaluate: grader self-test passed (%d known answers)", selftest["checks"])
    standard, not_run = probe(ev.standard_tasks, offline_names=ev.tasks)
    shas = {label: weights_sha256(model_dir) for label, model_dir in models.items()}
    adapter = unmerged_adapter(paths)
    if adapter is not None:  # the tuned model is base weights + this adapter: both name its results
        shas["tuned"] = hashlib.sha256(f"{shas['tuned']}+{weights_sha256(adapter)}".encode()).hexdigest()

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
    return Plan(offline, standard, not_run, models, shas, selftest, confined, threads, adapter)


def unmerged_adapter(paths: Paths) -> Path | None:
    """The adapter to load on `models/merged` when training could not merge it (prompt tuning: its
    manifest says `merged: false`); None when the merged folder is the tuned model itself."""
    try:
        merged = json.loads((paths.merged / TRAIN_MANIFEST).read_text()).get("merged", True)
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return None
    return None if merged else paths.adapter


def isolation(ev: EvalConfig) -> str | None:
    """How `logicflow.sandbox` confines generated code here (`eval.sandbox`); None when no task runs code.
    Raises SandboxUnavailable when `kernel` isolation is asked for and this machine cannot provide it."""
    return sandbox.isolation(ev.sandbox).description if "humaneval" in ev.tasks else None


def render(cfg: Config, paths: Paths, folder: Path) -> Path:
    """The offline tasks rendered into `folder` as an lm-eval include folder (see `evaluation.tasks`)."""
    ev = cfg.eval
    settings = RenderSettings(budgets(ev), ev.sandbox_settings())
    return render_tasks(ev.tasks, settings, paths, folder)


def cache_key(cfg: Config, model_sha: str, include: Path) -> str:
    """The eval-cache key of a model on the offline tasks rendered into `include` and these settings."""
    ev = cfg.eval
    settings = {
        "device_dtype": device_and_dtype(),  # greedy outputs differ between fp32 and bf16
        "limit": limits(ev),
        "max_new_tokens": budgets(ev),
        "batch_size": ev.batch_size,
        "seed": ev.seed,
        "sample_timeout_s": ev.sample_timeout_s,
        "sandbox": {**ev.sandbox_settings(), "isolation": isolation(ev)},
        "template": chat_template(cfg.model.template),
    }
    return cache.results_key(model_sha, ev.tasks, rendered_data_files(include), settings)


def run_models(cfg: Config, plan: Plan, include: Path, staged: EvalReports) -> Outcome:
    """Both models on every task, their samples written into `staged`, earlier results reused if valid."""
    # Keys fixed before any work: what the results depend on, as of the start of this run.
    cacheable = not plan.standard and cache.enabled()
    keys = {label: cache_key(cfg, plan.shas[label], include) for label in MODELS} if cacheable else {}
    runs: dict[str, list[TaskRun]] = {}
    summary: dict[str, Any] = {"threads": plan.threads}
    not_run = list(plan.not_run)
    for label in MODELS:
        samples = staged.model_samples(label)
        if label == "tuned" and plan.shas["tuned"] == plan.shas["base"]:
            logger.warning("evaluate: tuned weights are identical to base; reusing the base results")
            runs["tuned"], summary["tuned"] = runs["base"], {"reused": "base (identical weights)"}
            shutil.copytree(staged.model_samples("base"), samples)
            continue
        key = keys.get(label)
        if key and (hit := cache.load(key)):
            logger.info("evaluate: %s model results reused from the eval cache (%s)", label, key)
            runs[label], summary[label] = hit[0], {"cached": key}
            shutil.copytree(hit[1], samples)
            continue
        runs[label], failed, summary[label] = evaluate_model(cfg, label, plan, include, staged)
        if key:
            cache.save(key, runs[label], samples)
        not_run += [item for item in failed if item.task not in {n.task for n in not_run}]
    failed_tasks = {item.task for item in not_run}
    for label in MODELS:  # a benchmark that failed on one model is compared on neither
        runs[label] = [r for r in runs[label] if r.task not in failed_tasks]
    return Outcome(runs, not_run, summary)


def evaluate_model(
    cfg: Config, label: str, plan: Plan, include: Path, staged: EvalReports
) -> tuple[list[TaskRun], list[NotRun], dict[str, Any]]:
    """All tasks on one model; writes its samples; returns (runs, failed standard tasks, summary)."""
    from lm_eval.tasks import TaskManager

    ev = cfg.eval
    start = time.perf_counter()
    device, dtype = device_and_dtype()
    model = load_causal_lm(plan.models[label], dtype=dtype).to(device).eval()
    if label == "tuned" and plan.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, plan.adapter).eval()  # soft prompts cannot be merged
    tokenizer = load_tokenizer(plan.models[label], template=cfg.model.template)
    max_length = min(int(getattr(model.config, "max_position_embeddings", 4096) or 4096), 32768)
    lm = make_lm(
        model,
        tokenizer,
        batch_size=ev.batch_size,
        sample_timeout_s=ev.sample_timeout_s,
        max_length=max_length,
    )
    runs: list[TaskRun] = []
    failed: list[NotRun] = []
    summary: dict[str, Any] = {}

    def keep(task_runs: list[TaskRun], task: OfflineTask | None) -> None:
        for run in task_runs:
            records = sample_records(run.samples, task)
            if task is not None:
                run.no_answer = sum(1 for r in records if r.get("answered") is False)
            path = staged.task_samples(label, run.task)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
            )
            summary[run.task] = run_summary(run)
            run.samples = []  # written; do not keep them in memory
            runs.append(run)

    if plan.offline:  # one lm-eval call: the model decodes every offline task's requests in one stream
        logger.info("evaluate: %s model on %s", label, ", ".join(task.name for task in plan.offline))
        specs = [TaskSpec(task.name, task.lm_eval_name, ev.task_limit(task.name)) for task in plan.offline]
        offline_tm = TaskManager(include_path=str(include), include_defaults=False)
        by_name = {task.name: task for task in plan.offline}
        for run in run_tasks(lm, specs, offline_tm, seed=ev.seed):
            keep([run], by_name[run.task])
    if plan.standard:
        hub_tm = TaskManager()
        for task in plan.standard:
            settings = ev.standard_tasks[task.name]
            name = report_name(task.name, ev.tasks)
            logger.info("evaluate: %s model on %s (lm-eval %s)", label, name, task.lm_eval_name)
            try:
                spec = TaskSpec(name, task.lm_eval_name, settings.limit or ev.limit)
                keep(run_tasks(lm, [spec], hub_tm, seed=ev.seed, num_fewshot=settings.num_fewshot), None)
            except Exception as exc:  # noqa: BLE001 - a broken benchmark is reported, not fatal
                failed.append(
                    NotRun(name, f"lm-eval failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                )
    del lm, model
    seconds, tokens = time.perf_counter() - start, sum(run.generated_tokens for run in runs)
    summary["_total"] = {
        "seconds": round(seconds, 3),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 2) if seconds else None,
    }
    return runs, failed, summary


def run_summary(run: TaskRun) -> dict[str, Any]:
    """One task's line in summary.json: items, wall time of the lm-eval call that ran it (shared by the tasks
    run together), generated tokens and how the answers ended."""
    return {
        "n": run.n,
        "seconds": run.seconds,
        "generated_tokens": run.generated_tokens,
        "finish_reasons": run.finish_reasons,
        "no_answer": run.no_answer,
    }


def sample_records(samples: list[dict[str, Any]], task: OfflineTask | None) -> list[dict[str, Any]]:
    """lm-eval's logged samples, reduced to what a person inspects, plus the task's own fields."""
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
        records.append(json.loads(json.dumps(record, default=str)))  # JSON-safe: anything else as its str()
    return records


def serving_cost(cfg: Config, paths: Paths, threads: int) -> dict[str, dict[str, Any]]:
    """reports/inference.json: what each model costs to serve, the tuned one with its adapter's size."""
    settings = {
        "template": cfg.model.template,
        "max_batch_size": cfg.eval.batch_size,
        "threads": threads,
        "context_len": cfg.train.cutoff_len,
    }
    return {
        "base": measure(paths.base_model, **settings),
        "tuned": measure(paths.merged, **settings, adapter_dir=paths.adapter),
    }
