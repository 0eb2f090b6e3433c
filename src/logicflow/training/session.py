"""One training session: the model and SFTTrainer assembled from the plan, trained, and its final eval loss.

Every process of a multi-process run builds and trains its own session (the trainer synchronises them); the
readings kept here (tokens/s, padding, eval loss, the trainer's runtime) feed the reports and the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logicflow.config import Config
from logicflow.errors import Interrupted, TrainingError
from logicflow.paths import Paths
from logicflow.training import checkpoints, data
from logicflow.training import trainer as build
from logicflow.training.callbacks import (
    MlflowMetrics,
    NanGuard,
    PaddingCounter,
    QuietProgress,
    StopOnSigterm,
    Throughput,
)
from logicflow.training.inputs import Inputs


@dataclass
class Session:
    trainer: Any
    throughput: Throughput
    guard: NanGuard
    stop: StopOnSigterm
    padding: PaddingCounter
    evaluates: bool  # a validation split exists: the session ends with an eval loss
    eval_loss: float | None = None  # set by `train`
    train_runtime_s: float = 0.0  # the trainer's own runtime, set by `train`

    def train(self, resume_from: Path | None, checkpoint_dir: Path) -> None:
        """Train (from `resume_from` when given), stop on a non-finite loss, then read the final eval loss."""
        output = self.trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        if self.stop.received:
            raise Interrupted(
                f"training stopped by SIGTERM after step {self.trainer.state.global_step}; checkpoint "
                f"{checkpoints.last_checkpoint(checkpoint_dir)} saved; run the train stage again to resume"
            )
        if self.guard.bad_step is not None:
            raise TrainingError(
                f"training stopped at step {self.guard.bad_step}: {self.guard.bad_value} is not finite; last "
                f"good checkpoint: {checkpoints.last_checkpoint(checkpoint_dir) or 'none'}; lower "
                "train.learning_rate or check the data, then run again"
            )
        self.train_runtime_s = output.metrics.get("train_runtime", 0.0)
        self.eval_loss = self._final_eval() if self.evaluates else None

    def _final_eval(self) -> float:
        """The eval loss at the last step (evaluated now unless the schedule just did)."""
        state = self.trainer.state
        last = [e for e in state.log_history if "eval_loss" in e]
        if last and last[-1].get("step") == state.global_step:
            return float(last[-1]["eval_loss"])
        return float(self.trainer.evaluate()["eval_loss"])


def build_session(
    cfg: Config,
    paths: Paths,
    inputs: Inputs,
    plan: build.Plan,
    hw: build.Hardware,
    tracker: Any,
    processes: int,
) -> Session:
    """Model (frozen modules, checked targets), datasets, callbacks and the SFTTrainer."""
    model = build.load_model(paths.train_base, plan, hw)
    build.freeze_modules(model, cfg.model.freeze_modules)
    if cfg.lora.method in build.LOW_RANK:
        build.check_target_modules(model, cfg.lora.target_modules, cfg.model.freeze_modules)
    train, validation = inputs.splits.rows["train"], inputs.splits.rows["validation"]
    args = build.build_sft_config(cfg, paths.checkpoints, plan, hw, has_eval=bool(validation))
    throughput, guard, stop = Throughput(), NanGuard(), StopOnSigterm()  # tokens/s, guard, then MLflow
    trainer = build.build_trainer(
        model,
        inputs.tokenizer,
        args,
        data.to_dataset(train, cfg.train.train_on_thinking),
        data.to_dataset(validation, cfg.train.train_on_thinking) if validation else None,
        build.build_peft_config(cfg.lora, cfg.model),
        [throughput, guard, stop, MlflowMetrics(tracker), QuietProgress()],
    )
    throughput.trainer = trainer
    if paths.teacher is not None:  # the study's `distill` method: learn the teacher's distributions too
        from logicflow.model import load_causal_lm

        trainer.teacher = load_causal_lm(paths.teacher, plan.load_dtype).to(trainer.args.device).eval()
        trainer.alpha, trainer.temperature = cfg.compare.distill_alpha, cfg.compare.distill_temperature
    padding = PaddingCounter(trainer.data_collator, trainer.model)
    trainer.data_collator = padding
    # TRL drops rows left without labels; the cutoff guard makes that impossible, this re-checks the count
    data.check_enough_rows(len(trainer.train_dataset), cfg.train.batch_size, cfg.train.grad_accum, processes)
    return Session(trainer, throughput, guard, stop, padding, evaluates=bool(validation))
