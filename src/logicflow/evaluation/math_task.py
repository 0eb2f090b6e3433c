r"""`logicflow_math_heldout`: the data generator's held-out problems, generate-until, math-verify scoring.

The rows come from `data/heldout/math.jsonl` ({id, question, answer, kind}), written by the data stage
from the generator's held-out split, which is disjoint from training by construction. The prompt asks for
a `\boxed{}` answer, the way the training rows end; the score is symbolic equality (`scoring.math_equal`),
so "0.5", "1/2" and "\frac{1}{2}" are all right for 1/2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from logicflow.errors import EvaluationError
from logicflow.evaluation.scoring import extract_math_answer, math_equal, split_thinking

REQUIRED = ("id", "question", "answer")


def check_data(path: Path) -> int:
    """Row count of a valid held-out file; EvaluationError naming the file and line otherwise."""
    if not path.is_file():
        raise EvaluationError(f"{path}: held-out math set not found; run `logicflow stage data` first")
    count = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvaluationError(
                f"{path}:{number}: not JSON ({exc.msg}); re-run `logicflow stage data`"
            ) from None
        missing = [key for key in REQUIRED if not isinstance(row, dict) or not str(row.get(key, "")).strip()]
        if missing:
            raise EvaluationError(
                f"{path}:{number}: missing {', '.join(missing)}; re-run `logicflow stage data`"
            )
        count += 1
    if count == 0:
        raise EvaluationError(f"{path}: no rows; check data.heldout_size and re-run `logicflow stage data`")
    return count


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval hook: 1.0 when the response's final answer equals the reference."""
    return {"accuracy": float(math_equal(extract_math_answer(results[0]), str(doc["answer"])))}


def inspect(doc: dict[str, Any], response: str) -> dict[str, Any]:
    """Extra per-sample fields for the samples JSONL."""
    predicted = extract_math_answer(response)
    return {
        "id": doc.get("id"),
        "question": doc.get("question"),
        "kind": doc.get("kind"),
        "gold": doc.get("answer"),
        "predicted": predicted,
        "answered": predicted is not None,
        "answer_text": split_thinking(response)[1],
    }
