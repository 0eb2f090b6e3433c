"""Trainer callbacks: throughput, the NaN/inf guard, SIGTERM, per-step MLflow metrics, progress, padding.

Order matters: `Throughput` adds `tokens_per_s` to the log dict that `NanGuard` and `MlflowMetrics` see next.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

STEP_METRICS = (
    "loss",
    "grad_norm",
    "learning_rate",
    "tokens_per_s",
    "num_tokens",
    "mean_token_accuracy",
    "entropy",
    "epoch",
    "eval_loss",
    "eval_mean_token_accuracy",
    "eval_runtime",
)


class Throughput(TrainerCallback):
    """Non-padding tokens per second of training (evaluation and checkpoint saving excluded).

    TRL logs `num_tokens` (non-padding tokens, summed over processes) cumulatively, but restarts it at 0 after
    a resume; `on_train_begin` puts it back to the count recorded in the restored log history.
    """

    def __init__(self) -> None:
        self.trainer: Any = None  # set by the stage after the trainer exists
        self.tokens = 0.0  # counted in this session
        self.seconds = 0.0
        self._last_tokens: float | None = None
        self._last_time = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201 - TrainerCallback API
        counted = [e["num_tokens"] for e in state.log_history if "num_tokens" in e and "loss" in e]
        if counted and self.trainer is not None and hasattr(self.trainer, "_total_train_tokens"):
            self.trainer._total_train_tokens = int(counted[-1])  # TRL's private counter; see class docstring
        self._last_tokens = counted[-1] if counted else 0.0
        self._last_time = time.perf_counter()

    def _restart_clock(self, *args: Any, **kwargs: Any) -> None:
        self._last_time = time.perf_counter()

    on_evaluate = _restart_clock  # the time just spent evaluating or saving is not training time
    on_save = _restart_clock

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
        if not logs or "num_tokens" not in logs or "loss" not in logs:
            return
        now = time.perf_counter()
        tokens = float(logs["num_tokens"]) - (self._last_tokens or 0.0)
        seconds = now - self._last_time
        if seconds > 0 and tokens >= 0:
            logs["tokens_per_s"] = tokens / seconds
            self.tokens += tokens
            self.seconds += seconds
        self._last_tokens, self._last_time = float(logs["num_tokens"]), now


class NanGuard(TrainerCallback):
    """Stop at the first non-finite loss or grad norm, before that step can be checkpointed or evaluated.

    The trainer's own `logging_nan_inf_filter` must be off (it would average NaN away); the stage sets it.
    """

    def __init__(self) -> None:
        self.bad_step: int | None = None
        self.bad_value: str | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, int | float) and not math.isfinite(value) and self.bad_step is None:
                self.bad_step, self.bad_value = state.global_step, f"{key}={value}"
                control.should_training_stop = True
                control.should_save = False
                control.should_evaluate = False


class StopOnSigterm(TrainerCallback):
    """SIGTERM during training: finish the current step, save a checkpoint there and stop (the session then
    raises Interrupted). Only the main thread can own the handler; elsewhere SIGTERM keeps its default."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if self.received:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class MlflowMetrics(TrainerCallback):
    """Per-step metrics into the tracker (main process only), indexed by optimizer step."""

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
        if not state.is_world_process_zero or not logs:
            return
        metrics = {k: v for k, v in logs.items() if k in STEP_METRICS and isinstance(v, int | float)}
        self.tracker.log_metrics(metrics, step=state.global_step)


class QuietProgress(TrainerCallback):
    """A tqdm bar on stderr and one log line per `every` steps (the stock callbacks print dicts to stdout)."""

    def __init__(self, every: int = 10) -> None:
        self.every = every
        self.bar: Any = None

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,
                desc="train",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=False,
            )

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
        if not state.is_world_process_zero or not logs:
            return
        if "eval_loss" in logs:
            logger.info("step %d: eval_loss %.4f", state.global_step, logs["eval_loss"])
        elif "loss" in logs and (state.global_step % self.every == 0 or state.global_step == state.max_steps):
            logger.info(
                "step %d/%d: loss %.4f, lr %.2e, %.0f tokens/s",
                state.global_step,
                state.max_steps,
                logs["loss"],
                logs.get("learning_rate", 0.0),
                logs.get("tokens_per_s", 0.0),
            )

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class PaddingCounter:
    """Wraps a data collator and counts real vs padded token slots of this process's *training* batches.

    The trainer collates eval batches with the same collator; the model's mode tells them apart.
    """

    def __init__(self, collator: Any, model: Any) -> None:
        self.collator = collator
        self.model = model
        self.real = 0
        self.slots = 0

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        if self.model.training:
            slots = int(batch["input_ids"].numel())
            mask = batch.get("attention_mask")
            self.real += int(mask.sum()) if mask is not None else slots  # padding-free rows hold no padding
            self.slots += slots
        return batch

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.real / self.slots if self.slots else 0.0
