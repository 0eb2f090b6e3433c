"""Stage `compare`: the method comparison study. Each method trains the same base on the same validated data
with the train stage's code and is evaluated against the untouched base with the evaluate stage's code (same
tasks, prompts, n and seed, paired statistics); its models and reports go to compare/<method>/, its MLflow
run is nested under the study's parent run.

    logicflow stage compare --method dora        # one method (dvc: compare@dora)
    logicflow stage compare-report               # the table, plots and study card (dvc: compare-report)

Methods (`compare.methods`): lora, dora, ia3, prompt_tuning, full (PEFT / plain fine-tuning); prune_lora:
drop `compare.prune_share` of the decoder layers (`comparison.pruning`'s stated rule), then LoRA recovers;
distill: LoRA trained with logit distillation (`training.distill`) from the study's LoRA model, or from
`compare.teacher`. A method left out of the profile's list writes a result that says so, and no more.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from logicflow.atomic import atomic_dir, write_json
from logicflow.comparison import pruning
from logicflow.comparison.report import BASELINE, Delta, MethodResult, Score, write_report
from logicflow.config import Config, with_overrides
from logicflow.errors import ConfigError
from logicflow.model import load_tokenizer
from logicflow.paths import Paths
from logicflow.stages import evaluate, train
from logicflow.tracking import study_parent_run

logger = logging.getLogger(__name__)

CALIBRATION_PROMPTS = 16  # training prompts the pruning rule measures the layers on
SHIPS_WHOLE_MODEL = ("full", "prune_lora")  # the others ship an adapter on top of the unchanged base


@dataclass(frozen=True)
class CompareResult:
    method: str
    status: str  # "run" | "skipped"
    result_file: str


def method_config(cfg: Config, method: str) -> Config:
    """`cfg` with the method's PEFT choice and learning rate (prune_lora and distill train LoRA); serving
    costs are not measured: the study's table reports what each method costs to train."""
    overrides = [
        f"lora.method={'lora' if method in ('prune_lora', 'distill') else method}",
        "eval.serving_cost=false",
    ]
    if method in cfg.compare.learning_rates:
        overrides.append(f"train.learning_rate={cfg.compare.learning_rates[method]}")
    return with_overrides(cfg, overrides)


def _pruned_base(cfg: Config, paths: Paths, study: Paths) -> dict[str, Any]:
    """The pruned copy of models/base a prune_lora run trains on, with what was dropped and why."""
    from logicflow.training.data import load_splits

    rows = load_splits(paths, None).rows["train"][:CALIBRATION_PROMPTS]
    prompts = [next(m["content"] for m in row["messages"] if m["role"] == "user") for row in rows]
    tokenizer = load_tokenizer(paths.base_model, template=cfg.model.template)
    with atomic_dir(study.train_base) as tmp:
        report = pruning.prune(paths.base_model, tmp, tokenizer, prompts, cfg.compare.prune_share)
    return report


def run(cfg: Config, paths: Paths, method: str | None = None) -> CompareResult:
    """Train and evaluate one method of the study into compare/<method>/ and reports/compare/methods/."""
    if method is None:
        raise ConfigError("stage compare needs --method (one of compare.methods); the table: compare-report")
    out = paths.compare_reports.method(method)
    study = paths.for_study(method)
    if method not in cfg.compare.methods:
        reason = f"not in compare.methods of profile {cfg.profile}"
        for folder in study.study_outputs:  # DVC expects every declared output
            with atomic_dir(folder) as tmp:
                (tmp / "SKIPPED").write_text(reason + "\n")
        write_json(out, {"method": method, "skipped": reason})
        return CompareResult(method, "skipped", str(out))
    extra: dict[str, Any] = {}
    if method == "prune_lora":
        study = paths.for_study(method, train_from=study.study_outputs[0] / "pruned-base")
        extra["pruning"] = _pruned_base(cfg, paths, study)
    if method == "distill":
        teacher = paths.root / cfg.compare.teacher if cfg.compare.teacher else paths.for_study("lora").merged
        if not (teacher / "config.json").is_file():
            raise ConfigError(
                f"distill: no teacher model at {teacher}; run the lora method first or set compare.teacher"
            )
        study = paths.for_study(method, teacher=teacher)
        extra["teacher"] = str(teacher.relative_to(paths.root))
    method_cfg = method_config(cfg, method)
    parent = study_parent_run(cfg, paths)
    started = time.perf_counter()
    trained = train.run(method_cfg, study, parent_run_id=parent)
    evaluate.run(method_cfg, study)
    metrics = json.loads(study.train_reports.metrics.read_text())
    result = {
        "method": method,
        "learning_rate": method_cfg.train.learning_rate,
        "trainable_params": metrics["trainable_params"],
        "total_params": metrics["total_params"],
        "train_time_s": trained.runtime_s,
        "tokens_per_s": trained.tokens_per_s,
        "peak_memory_bytes": metrics["peak_memory_bytes"],
        # what a user ships: the model itself when it differs from the base in shape or every weight
        "size_bytes": metrics["merged_bytes" if method in SHIPS_WHOLE_MODEL else "adapter_bytes"],
        "mlflow_run_id": trained.run_id,
        "eval": json.loads(study.eval_json.read_text())["results"],
        "seconds": round(time.perf_counter() - started, 1),
        **extra,
    }
    write_json(out, result)
    logger.info("compare: %s trained and evaluated in %.0f s", method, result["seconds"])
    return CompareResult(method, "run", str(out))


def _rows(results: list[dict[str, Any]], base_bytes: int) -> list[MethodResult]:
    """The baseline row (base scores from the first method's paired evaluation), then one row per method."""
    primary = [r for r in results[0]["eval"] if r["primary"]]
    base = MethodResult(
        BASELINE, 0, results[0]["total_params"], 0, 0, 0, base_bytes,
        {r["task"]: Score(r["base"]["value"], *r["base"]["ci"], r["n"]) for r in primary},
    )  # fmt: skip
    rows = [base]
    for result in results:
        evals = [r for r in result["eval"] if r["primary"]]
        rows.append(
            MethodResult(
                result["method"],
                result["trainable_params"],
                result["total_params"],
                result["train_time_s"],
                result["tokens_per_s"],
                result["peak_memory_bytes"],
                result["size_bytes"],
                {r["task"]: Score(r["tuned"]["value"], *r["tuned"]["ci"], r["n"]) for r in evals},
                {r["task"]: Delta(r["delta"], *r["delta_ci"], r["p_value"]) for r in evals},
            )
        )
    return rows


def report(cfg: Config, paths: Paths) -> dict[str, Any]:
    """reports/compare/study: the table, the plots and the study card, logged to the parent MLflow run."""
    from logicflow.comparison.card import study_card
    from logicflow.tracking import log_study
    from logicflow.training.merge import folder_bytes

    files = [paths.compare_reports.method(m) for m in cfg.compare.methods]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise ConfigError(f"no result for {', '.join(missing)}; run `logicflow stage compare --method ...`")
    results = [json.loads(f.read_text()) for f in files]
    rows = _rows(results, folder_bytes(paths.base_model))
    with atomic_dir(paths.compare_reports.summary) as tmp:
        written = [*write_report(rows, tmp), tmp / paths.compare_reports.card.name]
        written[-1].write_text(study_card(cfg, rows, results))
        names = [p.name for p in written]
    log_study(cfg, paths, rows, paths.compare_reports.summary)
    return {
        "methods": [r.method for r in rows],
        "files": [str(paths.compare_reports.summary / n) for n in names],
    }
