"""lm-eval's own benchmark tasks (`eval.standard_tasks`), run only when their data can be had.

    available, not_run = probe(["gsm8k", "mmlu"], offline_names={"humaneval", "ifeval"})

Each name maps to an lm-eval task (or group) and the Hub datasets it loads. A task runs when every dataset
is in the local Hugging Face cache or the Hub answers for it; otherwise it is reported as not run with the
exact reason (offline mode, not cached, gated, unreachable), never with a placeholder number. Tasks that
execute generated code (lm-eval's `humaneval`, `mbpp`) score it with `evaluate`'s `code_eval` inside the
evaluating process, outside `logicflow.sandbox`; they are reported as not run for that reason, and the
offline `humaneval` task covers HumanEval in the sandbox.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from logicflow.evaluation.report import NotRun
from logicflow.evaluation.tasks import unknown_name_error

logger = logging.getLogger(__name__)

HUB_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class StandardTask:
    name: str  # name in params.yaml
    lm_eval_name: str
    datasets: tuple[str, ...]
    executes_code: bool = False


STANDARD: dict[str, StandardTask] = {
    task.name: task
    for task in (
        StandardTask("gsm8k", "gsm8k", ("openai/gsm8k",)),
        StandardTask("minerva_math", "minerva_math", ("EleutherAI/hendrycks_math",)),
        StandardTask("mbpp", "mbpp", ("google-research-datasets/mbpp",), executes_code=True),
        StandardTask("humaneval", "humaneval", ("openai/openai_humaneval",), executes_code=True),
        StandardTask("ifeval", "ifeval", ("google/IFEval",)),
        StandardTask("aime25", "aime25", ("math-ai/aime25",)),
        StandardTask("gpqa_diamond", "gpqa_diamond_zeroshot", ("Idavidrein/gpqa",)),
        StandardTask("mmlu", "mmlu", ("cais/mmlu",)),  # reported with its four category groups
        StandardTask("hellaswag", "hellaswag", ("Rowan/hellaswag",)),
    )
}


def get_standard(name: str) -> StandardTask:
    try:
        return STANDARD[name]
    except KeyError:
        raise unknown_name_error("standard task (eval.standard_tasks)", name, STANDARD) from None


def report_name(name: str, offline_names: Iterable[str]) -> str:
    """The row name in reports: the plain name, or `<name>@hub` when an offline task already uses it."""
    return f"{name}@hub" if name in set(offline_names) else name


def _truthy(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}


def offline() -> bool:
    return _truthy("HF_HUB_OFFLINE") or _truthy("HF_DATASETS_OFFLINE")


def cached(dataset: str) -> Path | None:
    """Where `dataset` sits in the local HF caches (hub snapshot or `datasets` arrow cache), or None."""
    from datasets import config as datasets_config
    from huggingface_hub import constants

    hub = Path(constants.HF_HUB_CACHE) / f"datasets--{dataset.replace('/', '--')}" / "snapshots"
    if hub.is_dir() and any(hub.iterdir()):
        return hub
    arrow = Path(datasets_config.HF_DATASETS_CACHE) / dataset.replace("/", "___")
    if arrow.is_dir() and any(arrow.iterdir()):
        return arrow
    return None


def hub_reason(dataset: str) -> str | None:
    """None when the Hub serves `dataset` to us, else why not (one line)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().dataset_info(dataset, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return f"{dataset} is gated on the Hub: accept its terms there and set HF_TOKEN"
    except RepositoryNotFoundError:
        return f"{dataset} not found on the Hub (or private without HF_TOKEN)"
    except Exception as exc:  # noqa: BLE001 - any network failure means "cannot have the data now"
        return (
            f"the Hub is unreachable for {dataset} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        )
    return None


def data_reason(task: StandardTask, unreachable: dict[str, str] | None = None) -> str | None:
    """None when all of the task's datasets can be loaded, else the reason they cannot.

    `unreachable` remembers a failed Hub connection across calls, so a dead network costs one timeout."""
    from huggingface_hub import constants

    unreachable = {} if unreachable is None else unreachable
    for dataset in task.datasets:
        if cached(dataset) is not None:
            continue
        if offline():
            return (
                f"offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE set) and {dataset} is not in the HF cache "
                f"({constants.HF_HUB_CACHE})"
            )
        if "hub" in unreachable:
            return f"{dataset} is not in the HF cache and {unreachable['hub']}"
        if reason := hub_reason(dataset):
            if reason.startswith("the Hub is unreachable"):
                unreachable["hub"] = reason.replace(f" for {dataset}", "")
            return reason
    return None


def probe(names: Iterable[str], offline_names: Iterable[str] = ()) -> tuple[list[StandardTask], list[NotRun]]:
    """Split configured standard tasks into runnable ones and NotRun entries with their reasons."""
    offline_names = list(offline_names)
    available, not_run = [], []
    unreachable: dict[str, str] = {}
    for name in names:
        task = get_standard(name)
        reason = data_reason(task, unreachable)
        if reason is None and task.executes_code:
            reason = (
                "lm-eval scores it with `evaluate`'s code_eval, which runs generated code in-process "
                "outside logicflow.sandbox"
                + ("; the sandboxed offline `humaneval` task covers it" if name == "humaneval" else "")
            )
        if reason is None:
            available.append(task)
        else:
            logger.info("standard task %s not run: %s", name, reason)
            not_run.append(NotRun(report_name(name, offline_names), reason))
    return available, not_run
