"""`ifeval`: LogicFlow's own IFEval-style prompts, checked by the real IFEval checkers shipped in lm-eval.

`eval_tasks/ifeval_prompts.jsonl` holds 160 short instruction-following prompts written for this project
(not copied from google/IFEval), each with `instruction_id_list` and fully specified `kwargs` for
`lm_eval.tasks.ifeval.instructions_registry` (a missing kwarg would make a checker pick a random value).
They ask for short answers, so they fit the small generation budgets of the CPU profiles; 160 of them
let the publish gate tell a small drop (within `max_drop`) from a large one, which 32 could not.
Metrics are IFEval's: prompt-level and instruction-level accuracy, strict and loose. The response checked is
the answer after any `<think>` block.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

from logicflow.evaluation.punkt import ensure_punkt_tab
from logicflow.evaluation.scoring import split_thinking

PROMPTS_FILE = "ifeval_prompts.jsonl"
METRICS = (
    "prompt_level_strict_acc",
    "inst_level_strict_acc",
    "prompt_level_loose_acc",
    "inst_level_loose_acc",
)


def prompts() -> list[dict[str, Any]]:
    text = (
        importlib.resources.files("logicflow.eval_tasks").joinpath(PROMPTS_FILE).read_text(encoding="utf-8")
    )
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_prompts(path: Path) -> int:
    rows = prompts()
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return len(rows)


def _ifeval_utils() -> Any:
    ensure_punkt_tab()  # before lm-eval's IFEval module is imported: it would try to download punkt_tab
    import langdetect
    from lm_eval.tasks.ifeval import utils

    langdetect.DetectorFactory.seed = 0  # language detection is random unless seeded
    return utils


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """lm-eval hook: IFEval's own `process_results` on the answer part of the response."""
    _, answer = split_thinking(results[0])
    return _ifeval_utils().process_results(doc, [answer])


def agg_inst_level_acc(items: list[list[bool]]) -> float:
    flat = [item for sub in items for item in sub]
    return sum(flat) / len(flat) if flat else 0.0


def inspect(doc: dict[str, Any], response: str) -> dict[str, Any]:
    _, answer = split_thinking(response)
    utils = _ifeval_utils()
    example = utils.InputExample(
        key=doc["key"],
        instruction_id_list=doc["instruction_id_list"],
        prompt=doc["prompt"],
        kwargs=doc["kwargs"],
    )
    strict = utils.test_instruction_following_strict(example, answer)
    return {
        "key": doc["key"],
        "answered": bool(answer.strip()),
        "instructions": dict(zip(doc["instruction_id_list"], strict.follow_instruction_list, strict=True)),
    }
