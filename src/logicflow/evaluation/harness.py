"""Run lm-eval tasks on an in-memory model, with the same settings for base and tuned.

    lm = make_lm(model, tokenizer, batch_size=16, sample_timeout_s=60)      # a LogicFlowLM
    tasks = [TaskSpec("humaneval", "logicflow_humaneval", 32), TaskSpec("math", "logicflow_math", None)]
    humaneval, math = run_tasks(lm, tasks, task_manager, seed=1234)      # one lm-eval call, one TaskRun each
    humaneval.metrics["pass@1"]   # Measurement(value, stderr); .samples: lm-eval's logged samples

`LogicFlowLM` is lm-eval's `HFLM` with `generate_until` replaced by continuous-batching greedy decoding: up to
`batch_size` requests decode together, whatever task or generation settings each comes from (tasks run in one
lm-eval call hand over all their requests at once); a finished request leaves the batch (and the KV cache) at
once and the next waiting prompts are prefilled and merged into the running batch, instead of every row
waiting for the longest generation of its fixed batch. Prompts are prefilled in small groups of similar length
(the queue is sorted), so a short prompt is not padded to the longest one admitted with it. The KV cache grows
into spare capacity instead of being re-concatenated at every step. Prompts, chat template, request order,
stop sequences and the post-processing of the text stay lm-eval's; the outputs equal lm-eval's batch-size-1
outputs (tested, and checked on SmolLM2 by benchmarks/bench_eval.py). Decoding is plain greedy (argmax),
ignoring sampling or penalty settings in a model's `generation_config.json`, so base and tuned decode the same
way. Each sample may use `sample_timeout_s` of wall clock (times the batch width, since that many share the
machine); a sample over it ends with finish reason "timeout".
"""

from __future__ import annotations

import inspect as pyinspect
import logging
import math
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from logicflow.errors import EvaluationError

logger = logging.getLogger(__name__)

STOP_LOOKBACK_TOKENS = 16


@dataclass(frozen=True)
class Measurement:
    value: float
    stderr: float | None


@dataclass
class TaskRun:
    """One model on one lm-eval task (or group): metrics, sample count, wall time and logged samples."""

    task: str
    metrics: dict[str, Measurement]
    higher_is_better: dict[str, bool]
    n: int
    seconds: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    generated_tokens: int = 0
    finish_reasons: dict[str, int] = field(default_factory=dict)
    # metric -> per-item scores in item order (a number, or a list of per-instruction results), for pairing
    items: dict[str, list[Any]] = field(default_factory=dict)
    no_answer: int | None = None  # items whose response had nothing to score (set from the task's inspect)


@dataclass(frozen=True)
class Job:
    """One generation request as LogicFlowLM decodes it."""

    prompt: Any  # token ids (1-D tensor), left-truncated to leave room for `max_new`
    max_new: int
    stops: list[str]  # stop strings checked while decoding (lm-eval's `until` without the EOS text)
    until: list[str]  # lm-eval's `until`, for cutting the text afterwards


def pick_threads() -> int:
    """Torch CPU threads: $LOGICFLOW_THREADS, else the cores not busy right now (at least 1).

    On a shared machine, OpenMP threads that wait for busy cores make generation many times slower; one
    thread per idle core avoids that. "Busy" is sampled over half a second (the load average lags by minutes).
    """
    if env := os.environ.get("LOGICFLOW_THREADS"):
        return max(1, int(env))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil

        busy = psutil.cpu_percent(interval=0.5) / 100.0 * (os.cpu_count() or cores)
    except ImportError:
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, math.floor(cores - busy + 0.5)))


def device_and_dtype() -> tuple[str, str]:
    """Where the models run: a CUDA GPU in bfloat16 (float16 without bf16), else the CPU in bfloat16 when it
    has native bf16 math (AVX512-BF16/AMX), else in float32. Base and tuned model always run alike."""
    import torch

    from logicflow.hardware import cpu_has_native_bf16

    if torch.cuda.is_available():
        return "cuda", "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "cpu", "bfloat16" if cpu_has_native_bf16() else "float32"


def _hflm_class() -> type:
    from lm_eval.models.huggingface import HFLM

    return HFLM


def make_lm(
    model: Any,
    tokenizer: Any,
    *,
    batch_size: int,
    sample_timeout_s: float,
    max_length: int = 4096,
    compact: bool = True,
) -> Any:
    """A `LogicFlowLM` (compact=True) or lm-eval's plain `HFLM` on an in-memory model."""
    cls = logicflow_lm_class() if compact else _hflm_class()
    kwargs: dict[str, Any] = {"sample_timeout_s": sample_timeout_s} if compact else {}
    return cls(
        pretrained=model,
        tokenizer=tokenizer,
        batch_size=batch_size,
        device=str(model.device),
        max_length=max_length,
        **kwargs,
    )


_LM_CLASS: type | None = None


def logicflow_lm_class() -> type:
    """Built lazily so importing this module does not import torch and lm-eval."""
    global _LM_CLASS
    if _LM_CLASS is None:
        _LM_CLASS = _build_lm_class()
    return _LM_CLASS


def _build_lm_class() -> type:
    import torch
    import torch.nn.functional as F  # noqa: N812
    from transformers.cache_utils import DynamicCache, DynamicLayer

    base = _hflm_class()

    class GrowingLayer(DynamicLayer):
        """A dynamic KV layer that appends into spare capacity instead of concatenating every step.

        `DynamicLayer.update` copies the whole cache (`torch.cat`) at each decoding step: a third of a
        batched step's time on CPU here. This layer keeps `keys`/`values` as views of larger buffers; when
        they are replaced from outside (rows selected, caches merged or trimmed) it adopts the new tensors on
        the next update. The values and shapes the model sees are the same as with `DynamicLayer`."""

        _key_buffer: torch.Tensor | None = None
        _value_buffer: torch.Tensor | None = None

        def _adopt(self, extra: int) -> None:
            length = self.keys.shape[-2]
            capacity = length + max(extra, 64, length // 2)
            shape = (*self.keys.shape[:2], capacity, self.keys.shape[-1])
            self._key_buffer, self._value_buffer = self.keys.new_empty(shape), self.values.new_empty(shape)
            self._key_buffer[..., :length, :] = self.keys
            self._value_buffer[..., :length, :] = self.values

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> Any:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                self.keys, self.values = key_states[..., :0, :], value_states[..., :0, :]
            length, new = self.keys.shape[-2], key_states.shape[-2]
            buffers = self._key_buffer, self._value_buffer
            if (
                buffers[0] is None
                or self.keys.data_ptr() != buffers[0].data_ptr()
                or self.values.data_ptr() != buffers[1].data_ptr()
                or self.keys.shape[:2] != buffers[0].shape[:2]
                or length + new > buffers[0].shape[-2]
            ):
                self._adopt(new)
            self._key_buffer[..., length : length + new, :] = key_states
            self._value_buffer[..., length : length + new, :] = value_states
            self.keys = self._key_buffer[..., : length + new, :]
            self.values = self._value_buffer[..., : length + new, :]
            return self.keys, self.values

    class GrowingCache(DynamicCache):
        def __init__(self) -> None:
            super(DynamicCache, self).__init__(layer_class_to_replicate=GrowingLayer)

    class LogicFlowLM(base):  # type: ignore[misc, valid-type]
        """HFLM with continuous-batching greedy generation (see module docstring)."""

        def __init__(self, *args: Any, sample_timeout_s: float = 60.0, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.sample_timeout_s = sample_timeout_s
            self.finish_reasons: dict[str, str] = {}  # context string -> eos | stop | max_tokens | timeout
            self.tokens_by_context: dict[str, int] = {}  # context string -> tokens generated for it
            self._logits_to_keep = "logits_to_keep" in pyinspect.signature(self.model.forward).parameters
            # a PEFT model with soft prompts prepends them on every forward: only `generate` handles that
            self._mergeable = not hasattr(self.model, "peft_config") and self._probe_cache()

        # ---- model calls ------------------------------------------------------------------------------

        def _forward(self, **inputs: Any) -> tuple[torch.Tensor, Any]:
            if self._logits_to_keep:
                inputs["logits_to_keep"] = 1
            out = self.model(**inputs, use_cache=True)
            return out.logits[:, -1, :].float(), out.past_key_values

        @torch.inference_mode()
        def _probe_cache(self) -> bool:
            """Rows can join a running batch only with a plain dynamic KV cache (no sliding-window layers)."""
            ids = torch.zeros((1, 2), dtype=torch.long, device=self.device)
            _, cache = self._forward(input_ids=ids, attention_mask=torch.ones_like(ids))
            layers = getattr(cache, "layers", None)
            return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

        def _eos_ids(self) -> set[int]:
            ids = {self.tokenizer.eos_token_id}
            configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
            ids.update(configured if isinstance(configured, list) else [configured])
            return {int(i) for i in ids if i is not None}

        # ---- lm-eval entry point ----------------------------------------------------------------------

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            from lm_eval.models.utils import postprocess_generated_text
            from tqdm import tqdm

            if isinstance(self.think_end_token, int) or not self._mergeable:
                return super().generate_until(requests, disable_tqdm)  # HFLM's own path
            eos_text = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
            jobs = [self._job(request, eos_text) for request in requests]
            bar = tqdm(
                total=len(requests),
                disable=disable_tqdm or self.rank != 0,
                desc="Running generate_until requests (continuous batching)",
            )
            results = []
            for request, job, (tokens, reason) in zip(requests, jobs, self._generate(jobs, bar), strict=True):
                context, gen_kwargs = request.args[0], request.args[1]
                text = postprocess_generated_text(self.tok_decode(tokens), job.until, self.think_end_token)
                results.append(text)
                self.finish_reasons[context] = reason
                self.tokens_by_context[context] = len(tokens)
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            bar.close()
            return results

        def _job(self, request: Any, eos_text: str) -> Job:
            """A request's prompt tokens, budget and stop strings, as HFLM derives them from its settings."""
            from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

            kwargs = normalize_gen_kwargs(dict(request.args[1]), self.max_gen_toks)
            if kwargs.get("do_sample"):
                raise EvaluationError("LogicFlowLM decodes greedily; set do_sample: false in the task")
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
            max_new = int(kwargs.pop("max_gen_toks"))
            prompt = self.tok_batch_encode(
                [request.args[0]], left_truncate_len=self.max_length - max_new, truncation=self.truncation
            )[0][0]
            return Job(prompt, max_new, [s for s in until if s and s != eos_text], until)

        # ---- continuous batching ----------------------------------------------------------------------

        @torch.inference_mode()
        def _generate(self, jobs: list[Job], bar: Any) -> list[tuple[list[int], str]]:
            """Greedy continuations of every job, whatever its task: up to `batch_size` rows decode together,
            each with its own budget and stop strings; a finished row leaves the batch (and the KV cache) and
            the next prompt takes its place. Larger budgets start first, then longer prompts (as lm-eval)."""
            n, width = len(jobs), int(self.batch_size)
            prompts = [job.prompt for job in jobs]
            tokens: list[list[int]] = [[] for _ in range(n)]
            reasons: list[str] = ["max_tokens"] * n
            waiting = (i for i in range(n) if jobs[i].max_new > 0)
            queue = deque(sorted(waiting, key=lambda i: (-jobs[i].max_new, -len(prompts[i]))))
            refill = max(1, width // 4)  # admit in groups: one prefill for several rows
            eos_ids = self._eos_ids()
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            rows: list[int] = []
            deadlines: dict[int, float] = {}
            cache = mask = last_pos = next_tok = None
            while queue or rows:
                free = width - len(rows)
                if queue and free > 0 and (not rows or free >= refill):
                    admit = [queue.popleft() for _ in range(min(free, len(queue)))]
                    picks = []
                    # prefill in groups of `refill` neighbours in length (the queue is sorted): a prompt is
                    # padded to the longest of its group, not of every row admitted at once
                    for group in (admit[k : k + refill] for k in range(0, len(admit), refill)):
                        ids, new_mask = self._left_pad([prompts[i] for i in group], pad)
                        positions = (new_mask.cumsum(-1) - 1).clamp(min=0)
                        logits, new_cache = self._forward(
                            input_ids=ids,
                            attention_mask=new_mask,
                            position_ids=positions,
                            past_key_values=GrowingCache(),
                        )
                        picks.append(logits.argmax(dim=-1))
                        if cache is None:
                            cache, mask, last_pos, next_tok = new_cache, new_mask, positions[:, -1], picks[-1]
                        else:
                            mask = self._merge(cache, mask, new_cache, new_mask)
                            last_pos = torch.cat([last_pos, positions[:, -1]])
                            next_tok = torch.cat([next_tok, picks[-1]])
                    chosen = torch.cat(picks)
                    # each sample's share of the wall clock while `width` samples run together
                    deadline = time.monotonic() + self.sample_timeout_s * width
                    deadlines.update(dict.fromkeys(admit, deadline))
                    rows += admit
                else:
                    mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                    last_pos = last_pos + 1
                    logits, cache = self._forward(
                        input_ids=next_tok[:, None],
                        attention_mask=mask,
                        position_ids=last_pos[:, None],
                        past_key_values=cache,
                    )
                    next_tok = logits.argmax(dim=-1)
                    chosen = next_tok
                    admit = rows
                start = len(rows) - len(admit)
                for offset, i in enumerate(admit):
                    tokens[i].append(int(chosen[offset]))
                now = time.monotonic()
                keep, finished = [], []
                for j, i in enumerate(rows):
                    reason = self._finished(tokens[i], j >= start, eos_ids, jobs[i], now > deadlines[i])
                    if reason is None:
                        keep.append(j)
                    else:
                        reasons[i] = reason
                        finished.append(reason)
                bar.update(len(finished))
                if "timeout" in finished:
                    logger.warning(
                        "%d sample(s) hit the wall-clock limit (eval.sample_timeout_s = %.0f s per sample)",
                        finished.count("timeout"),
                        self.sample_timeout_s,
                    )
                if finished:  # finished rows leave the batch and the cache
                    index = torch.tensor(keep, dtype=torch.long, device=mask.device)
                    rows = [rows[j] for j in keep]
                    if not rows:
                        cache = mask = last_pos = next_tok = None
                        continue
                    cache.batch_select_indices(index)
                    mask, last_pos, next_tok = mask[index], last_pos[index], next_tok[index]
                    mask = self._trim(cache, mask)
            return list(zip(tokens, reasons, strict=True))

        def _finished(
            self, generated: list[int], fresh: bool, eos_ids: set[int], job: Job, late: bool
        ) -> str | None:
            if not fresh:
                return None  # no new token this round (rows that waited while others were admitted)
            if generated[-1] in eos_ids:
                return "eos"
            if job.stops and any(s in self.tok_decode(generated[-STOP_LOOKBACK_TOKENS:]) for s in job.stops):
                return "stop"
            if len(generated) >= job.max_new:
                return "max_tokens"
            return "timeout" if late else None

        def _left_pad(self, prompts: list[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
            width = max(len(p) for p in prompts)
            ids = torch.full((len(prompts), width), pad, dtype=torch.long, device=self.device)
            mask = torch.zeros((len(prompts), width), dtype=torch.long, device=self.device)
            for row, prompt in enumerate(prompts):
                ids[row, width - len(prompt) :] = prompt.to(self.device)
                mask[row, width - len(prompt) :] = 1
            return ids, mask

        @staticmethod
        def _merge(cache: Any, mask: torch.Tensor, new_cache: Any, new_mask: torch.Tensor) -> torch.Tensor:
            """Append `new_cache`'s rows to `cache` in place, left-padding the shorter; returns the mask."""
            old_len, new_len = mask.shape[1], new_mask.shape[1]
            length = max(old_len, new_len)
            for layer, new_layer in zip(cache.layers, new_cache.layers, strict=True):
                layer.keys = torch.cat(
                    [
                        F.pad(layer.keys, (0, 0, length - old_len, 0)),
                        F.pad(new_layer.keys, (0, 0, length - new_len, 0)),
                    ]
                )
                layer.values = torch.cat(
                    [
                        F.pad(layer.values, (0, 0, length - old_len, 0)),
                        F.pad(new_layer.values, (0, 0, length - new_len, 0)),
                    ]
                )
            return torch.cat([F.pad(mask, (length - old_len, 0)), F.pad(new_mask, (length - new_len, 0))])

        @staticmethod
        def _trim(cache: Any, mask: torch.Tensor) -> torch.Tensor:
            """Drop leading cache columns that no remaining row attends to (padding of rows that left)."""
            used = mask.any(dim=0)
            first = int(used.to(torch.int8).argmax()) if bool(used.any()) else 0
            if first == 0:
                return mask
            for layer in cache.layers:
                layer.keys, layer.values = layer.keys[:, :, first:, :], layer.values[:, :, first:, :]
            return mask[:, first:]

    LogicFlowLM.__name__ = LogicFlowLM.__qualname__ = "LogicFlowLM"
    return LogicFlowLM


def _split_key(key: str) -> tuple[str, str] | None:
    """'acc,none' -> ('acc', 'none'); stderr keys and non-metric keys -> None."""
    if "," not in key:
        return None
    metric, _, filter_name = key.partition(",")
    if metric.endswith("_stderr"):
        return None
    return metric, filter_name


def metric_name(metric: str, filter_name: str) -> str:
    return metric if filter_name == "none" else f"{metric},{filter_name}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _item_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        numbers = [_number(float(v)) if isinstance(v, bool) else _number(v) for v in value]
        return None if any(v is None for v in numbers) else numbers
    return float(value) if isinstance(value, bool) else _number(value)


def per_item(samples: list[dict[str, Any]], metric: str, filter_name: str) -> list[Any]:
    """`metric` of every logged sample of one filter, in item order; [] when some item has no number."""
    chosen = sorted(
        (s for s in samples if s.get("filter", filter_name) == filter_name),
        key=lambda s: (str(s.get("task", "")), int(s.get("doc_id", 0))),
    )
    values = [_item_value(s.get(metric)) for s in chosen]
    return [] if any(v is None for v in values) else values


def parse_results(results: dict[str, Any], name: str, lm_eval_name: str) -> list[TaskRun]:
    """TaskRuns for `lm_eval_name` and, for a group, its direct sub-groups (e.g. MMLU's four categories)."""
    table = results.get("results", {})
    if lm_eval_name not in table:
        raise EvaluationError(f"lm-eval returned no results for {lm_eval_name!r} (got {sorted(table)})")
    wanted = [(name, lm_eval_name)]
    for child in results.get("group_subtasks", {}).get(lm_eval_name, []):
        if child in results.get("group_subtasks", {}) and child in table:
            wanted.append((child, child))
    runs = []
    for report_name, key in wanted:
        entry = table[key]
        logged = results.get("samples", {})
        samples = logged.get(key, [])
        if not samples and key == lm_eval_name:  # a group: its leaves' samples, each tagged with its task
            samples = [
                {"task": leaf, **s} for leaf in sorted(_leaves(results, key)) for s in logged.get(leaf, [])
            ]
        better = results.get("higher_is_better", {}).get(key, {})
        metrics: dict[str, Measurement] = {}
        higher: dict[str, bool] = {}
        items: dict[str, list[Any]] = {}
        for raw_key, raw_value in entry.items():
            split = _split_key(raw_key)
            value = _number(raw_value)
            if split is None or value is None:
                continue
            metric, filter_name = split
            stderr = _number(entry.get(f"{metric}_stderr,{filter_name}"))  # lm-eval's own; reports pair items
            label = metric_name(metric, filter_name)
            metrics[label] = Measurement(value, stderr)
            higher[label] = bool(better.get(metric, True))
            items[label] = per_item(samples, metric, filter_name)
        counts = results.get("n-samples", {}).get(key, {})
        n = int(counts.get("effective") or entry.get("sample_len") or len(samples))
        if not n:  # a group: lm-eval counts its leaves
            n = sum(
                int(c.get("effective", 0))
                for k, c in results.get("n-samples", {}).items()
                if k in _leaves(results, key)
            )
        runs.append(TaskRun(report_name, metrics, higher, n, 0.0, samples, items=items))
    return runs


def _leaves(results: dict[str, Any], group: str) -> set[str]:
    subtasks = results.get("group_subtasks", {})
    found: set[str] = set()
    for child in subtasks.get(group, []):
        found |= _leaves(results, child) if child in subtasks else {child}
    return found


class TaskSpec(NamedTuple):
    """A task to run: the name it is reported under, lm-eval's name, and how many items (None: all)."""

    name: str
    lm_eval_name: str
    limit: int | None


def run_tasks(
    lm: Any,
    tasks: Sequence[TaskSpec],
    task_manager: Any,
    *,
    seed: int,
    num_fewshot: int | None = None,
) -> list[TaskRun]:
    """Evaluate `tasks` in one lm-eval call; chat template on, samples logged, seeds fixed.

    lm-eval hands the model every task's generation requests at once, so LogicFlowLM keeps its batch full
    across tasks; each run's `seconds` is that shared call's wall time."""
    from lm_eval import simple_evaluate

    limits = {task.limit for task in tasks}
    selection = {"limit": limits.pop()} if len(limits) == 1 else {"samples": first_items(tasks, task_manager)}
    for log in (getattr(lm, "finish_reasons", {}), getattr(lm, "tokens_by_context", {})):
        log.clear()
    start = time.perf_counter()
    results = simple_evaluate(
        model=lm,
        tasks=[task.lm_eval_name for task in tasks],
        task_manager=task_manager,
        num_fewshot=num_fewshot,
        log_samples=True,
        bootstrap_iters=100,
        apply_chat_template=True,
        fewshot_as_multiturn=bool(num_fewshot),
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        confirm_run_unsafe_code=False,
        **selection,
    )
    seconds = time.perf_counter() - start
    if results is None:
        raise EvaluationError(f"lm-eval returned nothing for {[task.lm_eval_name for task in tasks]}")
    reasons, counts = getattr(lm, "finish_reasons", {}), getattr(lm, "tokens_by_context", {})
    runs = [run for task in tasks for run in parse_results(results, task.name, task.lm_eval_name)]
    for run in runs:
        run.seconds = round(seconds, 3)
        for sample in run.samples:
            context = sample_context(sample)
            run.generated_tokens += counts.get(context, 0)
            if reason := reasons.get(context):
                sample["finish_reason"] = reason
                run.finish_reasons[reason] = run.finish_reasons.get(reason, 0) + 1
    return runs


def first_items(tasks: Sequence[TaskSpec], task_manager: Any) -> dict[str, list[int]]:
    """lm-eval's `samples` selection equal to each task's own `limit` (lm-eval's `limit` is one for all)."""
    from lm_eval.tasks import get_task_dict

    loaded = get_task_dict([task.lm_eval_name for task in tasks], task_manager)
    chosen = {}
    for task in tasks:
        docs = getattr(loaded.get(task.lm_eval_name), "eval_docs", None)
        if docs is None:
            raise EvaluationError(
                f"{task.lm_eval_name}: a group cannot have its own item limit when run with other tasks"
            )
        chosen[task.lm_eval_name] = list(
            range(len(docs) if task.limit is None else min(task.limit, len(docs)))
        )
    return chosen


def sample_context(sample: dict[str, Any]) -> str | None:
    """The prompt string lm-eval sent to the model for a logged sample."""
    args = sample.get("arguments")
    if isinstance(args, dict):  # {"gen_args_0": {"arg_0": context, "arg_1": gen_kwargs}}
        first = next(iter(args.values()), {})
        return first.get("arg_0") if isinstance(first, dict) else None
    if isinstance(args, list | tuple) and args and isinstance(args[0], list | tuple) and args[0]:
        return args[0][0]
    return None
