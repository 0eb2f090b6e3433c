"""The train stage's record in `reports/train` (the `TrainReports` layout): loss.csv and loss.png (the curve),
params.json (hyperparameters as the trainer held them, token statistics) and metrics.json (final numbers,
sizes and digests of the written models), each written atomically."""

from __future__ import annotations

import time
from typing import Any

from logicflow.atomic import write_json
from logicflow.config import Config
from logicflow.model import weights_sha256
from logicflow.paths import Paths
from logicflow.training import merge, plots
from logicflow.training import trainer as build
from logicflow.training.checkpoints import ResumePlan
from logicflow.training.inputs import Inputs
from logicflow.training.session import Session


def peak_memory_bytes() -> int:
    """Peak accelerator memory of this process when on a GPU, else its peak resident set size."""
    import resource

    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def last_train_loss(history: list[dict[str, Any]]) -> float | None:
    losses = [e["loss"] for e in history if "loss" in e]
    return float(losses[-1]) if losses else None


def resumed_step(start: ResumePlan) -> int | None:
    """The step of the checkpoint this run continued from (`checkpoint-<step>`), None from scratch."""
    return int(start.checkpoint.name.rsplit("-", 1)[1]) if start.checkpoint else None


def write_reports(
    cfg: Config,
    paths: Paths,
    session: Session,
    inputs: Inputs,
    plan: build.Plan,
    check: merge.MergeCheck,
    start: ResumePlan,
    started: float,
) -> dict[str, Any]:
    """Write the four reports (after the models: metrics.json holds their sizes); returns the metrics."""
    reports = paths.train_reports
    trainer = session.trainer
    history = trainer.state.log_history
    rows = plots.loss_rows(history)
    plots.write_csv(rows, reports.loss_csv)
    plots.write_png(rows, reports.loss_plot, f"{cfg.model.id} · {cfg.lora.method} · {cfg.profile}")
    tokens = [e["num_tokens"] for e in history if "num_tokens" in e and "loss" in e]
    smoothed = [r["train_loss_smoothed"] for r in rows if r["train_loss_smoothed"] is not None]
    metrics = {
        "train_loss": last_train_loss(history),
        "train_loss_smoothed": smoothed[-1] if smoothed else None,
        "eval_loss": session.eval_loss,
        "global_step": trainer.state.global_step,
        "train_tokens": int(tokens[-1]) if tokens else 0,
        "tokens_per_s": round(session.throughput.tokens_per_s, 2),
        "runtime_s": round(time.perf_counter() - started, 2),
        "train_runtime_s": round(session.train_runtime_s, 2),
        "padding_fraction": round(session.padding.padding_fraction, 4),
        "world_size": trainer.args.world_size,
        "resumed_from_step": resumed_step(start),
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in trainer.model.parameters()),
        "peak_memory_bytes": peak_memory_bytes(),
        "adapter_bytes": merge.folder_bytes(paths.adapter),
        "merged_bytes": merge.folder_bytes(paths.merged),
        "merged_sha256": weights_sha256(paths.merged),
        "merged_equivalent": check.equivalent,
        "merge_check_prompts": check.prompts,
        "base_sha256": inputs.base.sha256,
    }
    params = build.used_params(
        trainer,
        plan,
        {
            "data": inputs.token_stats(),
            "train_on_thinking": cfg.train.train_on_thinking,
            "template": cfg.model.template,
            "freeze_modules": cfg.model.freeze_modules,
        },
    )
    write_json(reports.params, params)
    write_json(reports.metrics, metrics)
    return metrics
