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

import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from logicflow.config import Config
from logicflow.paths import Paths
from logicflow.training import checkpoints, merge, report
from logicflow.training import trainer as build
from logicflow.training.inputs import load_inputs
from logicflow.training.session import Session, build_session


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


def run(cfg: Config, paths: Paths, resume: bool = False, parent_run_id: str | None = None) -> TrainResult:
    started = time.perf_counter()
    from accelerate import PartialState

    from logicflow.tracking import NullTracker, log_train_inputs, log_train_outputs, open_run

    hw = build.Hardware.detect()
    state = PartialState(cpu=not hw.cuda)  # joins the process group under torchrun / accelerate launch
    main = state.is_main_process

    inputs = load_inputs(cfg, paths, state)  # the data guards, before the model loads
    plan = build.plan_hardware(cfg.train, cfg.model, hw, cfg.lora.method)
    sections = {name: getattr(cfg, name).model_dump() for name in ("train", "lora", "model")}
    fingerprint = checkpoints.fingerprint(sections, inputs.base.sha256, inputs.splits.files)
    start = checkpoints.start(paths.checkpoints, fingerprint, resume, state)

    tracking = (
        open_run(
            cfg,
            paths,
            run_name=f"train-{cfg.profile}" if paths.study is None else f"{paths.study}-{cfg.profile}",
            resume_run_id=start.mlflow_run_id,
            parent_run_id=parent_run_id,
        )
        if main
        else nullcontext(NullTracker())  # one MLflow run: only the main process logs
    )
    with tracking as tracker:
        run_id = tracker.info.run_id if tracker.info else None
        if main:
            checkpoints.write_state(
                paths.checkpoints, checkpoints.CheckpointState(fingerprint, False, run_id)
            )
        log_train_inputs(tracker, cfg, paths, inputs.base, inputs.datasets(), inputs.token_stats())

        # --- train (every process)
        session = build_session(cfg, paths, inputs, plan, hw, tracker, state.num_processes)
        session.train(start.checkpoint, paths.checkpoints)
        # collective (FSDP gathers the full state dict); only the main process writes
        staging = paths.checkpoints / "final"
        session.trainer.save_model(str(staging))
        if not main:
            return _result(session, None, start, started, paths)

        # --- outputs (main process), each atomic; adapter + merged are committed only if the merge checks out
        check = merge.write_models(cfg, paths, staging, inputs, plan, hw)
        metrics = report.write_reports(cfg, paths, session, inputs, plan, check, start, started)
        log_train_outputs(tracker, paths, metrics)
        shutil.rmtree(staging, ignore_errors=True)
        checkpoints.write_state(paths.checkpoints, checkpoints.CheckpointState(fingerprint, True, run_id))
        return _result(session, tracker.info, start, started, paths)


def _result(
    session: Session, info: Any, start: checkpoints.ResumePlan, started: float, paths: Paths
) -> TrainResult:
    trainer = session.trainer
    return TrainResult(
        run_id=info.run_id if info else None,
        run_url=info.run_url if info else None,
        global_step=trainer.state.global_step,
        train_loss=report.last_train_loss(trainer.state.log_history),
        eval_loss=session.eval_loss,
        tokens_per_s=round(session.throughput.tokens_per_s, 2),
        runtime_s=round(time.perf_counter() - started, 2),
        resumed_from=str(start.checkpoint) if start.checkpoint else None,
        world_size=trainer.args.world_size,
        adapter=str(paths.adapter),
        merged=str(paths.merged),
    )
