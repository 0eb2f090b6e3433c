"""Stage `train`: supervised fine-tuning (TRL SFTTrainer + PEFT) of the base model on the validated rows.

    logicflow stage train                     # continues an interrupted run (same params + data) by itself
    logicflow stage train --resume            # insist on continuing; params that changed are an error
    torchrun --nproc_per_node 2 -m logicflow.cli stage train            # data-parallel (gloo on CPU)
    accelerate launch --config_file infra/accelerate/ddp.yaml -m logicflow.cli stage train   # GPUs

Reads `data/clean/{train,validation}.parquet` and `models/base`; writes `models/adapter`, `models/merged`,
`reports/train/{metrics.json,params.json,loss.csv,loss.png,mlflow_run.json}` (each atomically, so a failed run
leaves the previous outputs) and checkpoints in `checkpoints/` (kept across runs for resuming).
Cheap guards run before the model loads: missing data, too few rows for one step, a cutoff that leaves a row
without loss, an unreachable tracking server. Under several processes only the main one writes and logs.
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logicflow.atomic import atomic_dir, write_json
from logicflow.config import Config
from logicflow.errors import TrainingError
from logicflow.paths import Paths
from logicflow.training import checkpoints, data, merge, plots
from logicflow.training import trainer as build
from logicflow.training.callbacks import MlflowMetrics, NanGuard, PaddingCounter, QuietProgress, Throughput

logger = logging.getLogger(__name__)

CHECK_PROMPTS = 3


@dataclass(frozen=True)
class TrainResult:
    run_id: str | None
    run_url: str | None
    global_step: int
    train_loss: float | None
    eval_loss: float | None
    tokens_per_s: float
    runtime_s: float
    resumed_from: str | None
    world_size: int
    adapter: str
    merged: str


def run(cfg: Config, paths: Paths, resume: bool = False) -> TrainResult:
    started = time.perf_counter()
    from accelerate import PartialState

    from logicflow.tracking import NullTracker, open_run, write_run_file

    hw = build.Hardware.detect()
    state = PartialState(cpu=not hw.cuda)  # joins the process group under torchrun / accelerate launch
    main = state.is_main_process

    splits, base, tokenizer, stats = _inputs_and_guards(cfg, paths, state.num_processes, state)
    plan = build.plan_hardware(cfg.train, cfg.model, hw, cfg.lora.method)
    sections = {
        "train": cfg.train.model_dump(),
        "lora": cfg.lora.model_dump(),
        "model": cfg.model.model_dump(),
    }
    fingerprint = checkpoints.fingerprint(sections, base.sha256, splits.files)
    start = checkpoints.plan(paths.checkpoints, fingerprint, resume)
    if main:
        checkpoints.prepare(paths.checkpoints, fingerprint, start)
    state.wait_for_everyone()

    tracking = (
        open_run(cfg, paths, run_name=f"train-{cfg.profile}", resume_run_id=start.mlflow_run_id)
        if main
        else nullcontext(NullTracker())  # one MLflow run: only the main process logs
    )
    with tracking as tracker:
        run_id = tracker.info.run_id if tracker.info else None
        if main:
            checkpoints.write_state(
                paths.checkpoints, checkpoints.CheckpointState(fingerprint, False, run_id)
            )
        _log_inputs(tracker, cfg, paths, splits, base, stats)

        # --- train (every process)
        trainer, throughput, guard, padding = _build_trainer(
            cfg, paths, splits, tokenizer, plan, hw, tracker, state.num_processes
        )
        output = trainer.train(resume_from_checkpoint=str(start.checkpoint) if start.checkpoint else None)
        if guard.bad_step is not None:
            raise TrainingError(
                f"training stopped at step {guard.bad_step}: {guard.bad_value} is not finite; last good "
                f"checkpoint: {checkpoints.last_checkpoint(paths.checkpoints) or 'none'}; lower "
                "train.learning_rate or check the data, then run again"
            )
        eval_loss = _final_eval(trainer) if splits.rows["validation"] else None
        # collective (FSDP gathers the full state dict); only the main process writes
        staging = paths.checkpoints / "final"
        trainer.save_model(str(staging))
        if not main:
            return _result(trainer, None, throughput, eval_loss, started, start, paths)

        # --- outputs (main process), each atomic; adapter + merged are committed only if the merge checks out
        check = _write_models(cfg, paths, staging, tokenizer, base, plan, hw, splits)
        extra = {
            "padding_fraction": padding.padding_fraction,
            "resumed_from_step": _step(start.checkpoint),
            "train_runtime_s": output.metrics.get("train_runtime", 0.0),
        }
        metrics = _write_reports(
            cfg, paths, trainer, plan, stats, throughput, eval_loss, base.sha256, check, started, extra
        )
        _log_outputs(tracker, paths, metrics)
        if tracker.info:
            write_run_file(paths, tracker.info)
        shutil.rmtree(staging, ignore_errors=True)
        checkpoints.write_state(paths.checkpoints, checkpoints.CheckpointState(fingerprint, True, run_id))
        return _result(trainer, tracker.info, throughput, eval_loss, started, start, paths)


# ----------------------------------------------------------------------------------------- phases


def _inputs_and_guards(
    cfg: Config, paths: Paths, processes: int, state: Any
) -> tuple[data.Splits, Any, Any, dict[str, data.TokenStats]]:
    """Rows, base model and tokenizer, token statistics; the data guards, all before anything slow."""
    from logicflow.model import load_tokenizer, resolve

    splits = data.load_splits(paths, cfg.train.max_samples)
    with state.main_process_first():
        base = resolve(cfg.model, paths)
    tokenizer = load_tokenizer(paths.base_model, template=cfg.model.template)
    train = cfg.train
    stats = {
        split: data.token_stats(tokenizer, rows, train.cutoff_len, train.train_on_thinking)
        for split, rows in splits.rows.items()
        if rows
    }
    for split, split_stats in stats.items():
        data.check_cutoff(split_stats, train.cutoff_len, split)
    data.check_enough_rows(len(splits.rows["train"]), train.batch_size, train.grad_accum, processes)
    return splits, base, tokenizer, stats


def _build_trainer(
    cfg: Config,
    paths: Paths,
    splits: data.Splits,
    tokenizer: Any,
    plan: build.Plan,
    hw: build.Hardware,
    tracker: Any,
    processes: int,
) -> tuple[Any, Throughput, NanGuard, Any]:
    """Model (frozen modules, checked targets), datasets, callbacks and the SFTTrainer."""
    model = build.load_model(paths.base_model, plan, hw)
    build.freeze_modules(model, cfg.model.freeze_modules)
    if cfg.lora.method == "lora":
        build.check_target_modules(model, cfg.lora.target_modules, cfg.model.freeze_modules)
    validation = splits.rows["validation"]
    args = build.build_sft_config(cfg, paths.checkpoints, plan, hw, has_eval=bool(validation))
    throughput, guard = Throughput(), NanGuard()  # order: tokens/s first, then the guard, then MLflow
    trainer = build.build_trainer(
        model,
        tokenizer,
        args,
        data.to_dataset(splits.rows["train"], cfg.train.train_on_thinking),
        data.to_dataset(validation, cfg.train.train_on_thinking) if validation else None,
        build.build_peft_config(cfg.lora, cfg.model),
        [throughput, guard, MlflowMetrics(tracker), QuietProgress()],
    )
    throughput.trainer = trainer
    padding = PaddingCounter(trainer.data_collator, trainer.model)
    trainer.data_collator = padding
    # TRL drops rows left without labels; the cutoff guard makes that impossible, this re-checks the count
    data.check_enough_rows(len(trainer.train_dataset), cfg.train.batch_size, cfg.train.grad_accum, processes)
    return trainer, throughput, guard, padding


def _write_models(
    cfg: Config,
    paths: Paths,
    staging: Path,
    tokenizer: Any,
    base: Any,
    plan: build.Plan,
    hw: build.Hardware,
    splits: data.Splits,
) -> merge.MergeCheck:
    """models/adapter and models/merged, committed together once the merge check passed."""
    manifest = {
        "method": cfg.lora.method,
        "base_model": base.id,
        "base_revision": base.revision,
        "base_sha256": base.sha256,
        "template": cfg.model.template,
    }
    dtype = plan.weights_dtype if cfg.train.precision == "auto" else build.TORCH_DTYPES[cfg.train.precision]
    rows = (splits.rows["validation"] or splits.rows["train"])[:CHECK_PROMPTS]
    prompts = [[m for m in row["messages"] if m["role"] != "assistant"] for row in rows]
    with atomic_dir(paths.adapter) as adapter_tmp:
        merge.write_adapter(staging, tokenizer, adapter_tmp, manifest)
        with atomic_dir(paths.merged) as merged_tmp:
            if cfg.lora.method == "lora":
                return merge.write_merged(
                    paths.base_model,
                    adapter_tmp,
                    merged_tmp,
                    tokenizer,
                    dtype,
                    prompts,
                    manifest,
                    check_dtype=plan.weights_dtype,
                    device="cuda" if hw.cuda else "cpu",
                )
            if cfg.lora.method == "full":
                return merge.write_full(staging, tokenizer, merged_tmp, dtype, manifest)
            return merge.write_unmergeable(paths.base_model, merged_tmp, tokenizer, dtype, manifest)


# ----------------------------------------------------------------------------------------- helpers


def _step(checkpoint: Any) -> int | None:
    return int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else None


def _final_eval(trainer: Any) -> float | None:
    """The eval loss at the last step (evaluated now unless the schedule just did)."""
    history = trainer.state.log_history
    last = [e for e in history if "eval_loss" in e]
    if last and last[-1].get("step") == trainer.state.global_step:
        return float(last[-1]["eval_loss"])
    return float(trainer.evaluate()["eval_loss"])


def _last_train_loss(history: list[dict[str, Any]]) -> float | None:
    losses = [e["loss"] for e in history if "loss" in e]
    return float(losses[-1]) if losses else None


def _log_inputs(
    tracker: Any, cfg: Config, paths: Paths, splits: data.Splits, base: Any, stats: dict[str, data.TokenStats]
) -> None:
    """Params, base model identity, datasets with digests, upstream reports: all known before training."""
    import json

    from logicflow.tracking import numeric_leaves

    tracker.log_params(
        {
            "profile": cfg.profile,
            "train": cfg.train.model_dump(),
            "lora": cfg.lora.model_dump(),
            "model": cfg.model.model_dump(),
        }
    )
    tracker.set_tags(
        {
            "base_model": base.id,
            "base_model.revision": base.revision,
            "base_model.sha256": base.sha256,
            "base_model.source": base.source,
        }
    )
    context = {"train": "training", "validation": "validation"}
    for split, file in splits.files.items():
        tracker.log_input(
            data.flat_frame(splits.rows[split]), name=split, source=file, context=context[split]
        )
    tracker.log_metrics(
        {f"data.{split}.{k}": v for split, s in stats.items() for k, v in s.as_dict().items()}
    )
    if paths.data_summary.exists():
        tracker.log_artifact(paths.data_summary, "data")
        summary = json.loads(paths.data_summary.read_text())
        lineage = {"raw_sha256": "sha256", "revision_sha": "revision_sha", "file_sha256": "file_sha256"}
        tracker.set_tags(
            {
                f"data.raw.{name}.{tag}": info[key]
                for name, info in (summary.get("datasets") or {}).items()
                if isinstance(info, dict)
                for key, tag in lineage.items()
                if info.get(key)
            }
        )
    if paths.validation_summary.exists():
        tracker.log_artifact(paths.validation_summary, "data")
        tracker.log_metrics(
            {
                f"validation.{k}": v
                for k, v in numeric_leaves(json.loads(paths.validation_summary.read_text())).items()
            }
        )
    if paths.dvc_lock.exists():
        tracker.log_artifact(paths.dvc_lock, "lineage")


def _write_reports(
    cfg: Config,
    paths: Paths,
    trainer: Any,
    plan: build.Plan,
    stats: dict[str, data.TokenStats],
    throughput: Throughput,
    eval_loss: float | None,
    base_sha256: str,
    check: merge.MergeCheck,
    started: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    from logicflow.model import weights_sha256

    history = trainer.state.log_history
    rows = plots.loss_rows(history)
    plots.write_csv(rows, paths.train_reports.loss_csv)
    plots.write_png(
        rows, paths.train_reports.loss_plot, f"{cfg.model.id} · {cfg.lora.method} · {cfg.profile}"
    )
    tokens = [e["num_tokens"] for e in history if "num_tokens" in e and "loss" in e]
    smoothed = [r["train_loss_smoothed"] for r in rows if r["train_loss_smoothed"] is not None]
    metrics = {
        "train_loss": _last_train_loss(history),
        "train_loss_smoothed": smoothed[-1] if smoothed else None,
        "eval_loss": eval_loss,
        "global_step": trainer.state.global_step,
        "train_tokens": int(tokens[-1]) if tokens else 0,
        "tokens_per_s": round(throughput.tokens_per_s, 2),
        "runtime_s": round(time.perf_counter() - started, 2),
        "train_runtime_s": round(extra["train_runtime_s"], 2),
        "padding_fraction": round(extra["padding_fraction"], 4),
        "world_size": trainer.args.world_size,
        "resumed_from_step": extra["resumed_from_step"],
        "adapter_bytes": merge.folder_bytes(paths.adapter),
        "merged_bytes": merge.folder_bytes(paths.merged),
        "merged_sha256": weights_sha256(paths.merged),
        "merged_equivalent": check.equivalent,
        "merge_check_prompts": check.prompts,
        "base_sha256": base_sha256,
    }
    params = build.used_params(
        trainer,
        plan,
        {
            "data": {s: st.as_dict() for s, st in stats.items()},
            "train_on_thinking": cfg.train.train_on_thinking,
            "template": cfg.model.template,
            "freeze_modules": cfg.model.freeze_modules,
        },
    )
    write_json(paths.train_reports.params, params)
    write_json(paths.train_reports.metrics, metrics)
    return metrics


def _log_outputs(tracker: Any, paths: Paths, metrics: dict[str, Any]) -> None:
    tracker.log_metrics(
        {f"final.{k}": v for k, v in metrics.items() if isinstance(v, int | float)},
        step=metrics["global_step"],
    )
    tracker.log_artifact(paths.train_reports.loss_plot, "plots")
    tracker.log_artifact(paths.train_reports.loss_csv, "plots")
    tracker.log_artifact(paths.train_reports.params, "train")
    tracker.log_artifact(paths.train_reports.metrics, "train")
    tracker.log_artifacts(paths.adapter, "adapter")


def _result(
    trainer: Any,
    info: Any,
    throughput: Throughput,
    eval_loss: float | None,
    started: float,
    start: checkpoints.ResumePlan,
    paths: Paths,
) -> TrainResult:
    return TrainResult(
        run_id=info.run_id if info else None,
        run_url=info.run_url if info else None,
        global_step=trainer.state.global_step,
        train_loss=_last_train_loss(trainer.state.log_history),
        eval_loss=eval_loss,
        tokens_per_s=round(throughput.tokens_per_s, 2),
        runtime_s=round(time.perf_counter() - started, 2),
        resumed_from=str(start.checkpoint) if start.checkpoint else None,
        world_size=trainer.args.world_size,
        adapter=str(paths.adapter),
        merged=str(paths.merged),
    )
