r"""Scoring of generated answers: thinking split, math answer extraction, math-verify equivalence.

    split_thinking("<think>\n2+2\n</think>\n\nIt is \\boxed{4}.")   # ("2+2", "It is \\boxed{4}.")
    extract_math_answer("so the total is \\boxed{\\frac{1}{2}}")    # "\\frac{1}{2}"
    math_equal("0.5", "1/2")                                          # True (symbolic, not string match)

Thinking is allowed for every model: the answer is what follows the last `</think>`. A response that opens
`<think>` and never closes it (cut off at the budget, or rambling) is all thinking: its answer part is
empty. A ReAct trace (`data.format: react`) splits at its last "Final Answer:". A response with neither
(a base model that does not think) is all answer.
"""

from __future__ import annotations

import re
import threading

from logicflow import react

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
MATH_VERIFY_TIMEOUT_S = 5  # math-verify times out with signal.alarm, which only works in the main thread
# -1,234.5 | 3/4 | -5 ; thousands separators allowed only in groups of three
NUMBER = re.compile(r"(?<![\w.])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?")


def split_thinking(text: str) -> tuple[str, str]:
    """(thinking, answer). Without `<think>` the answer is `text`; an unclosed `<think>` is all thinking.

    The answer keeps its leading spaces (a code completion's indentation); only blank lines are trimmed."""
    if THINK_CLOSE not in text:
        if THINK_OPEN in text:
            before, _, thinking = text.partition(THINK_OPEN)
            return thinking.strip(), before.strip()
        if react.FINAL in text:  # a ReAct trace: the steps are the thinking, the Final Answer the answer
            steps, _, answer = text.rpartition(react.FINAL)
            return steps.strip(), answer.strip()
        return "", text.lstrip("\r\n").rstrip()
    thinking, _, answer = text.rpartition(THINK_CLOSE)
    return thinking.replace(THINK_OPEN, "", 1).strip(), answer.lstrip("\r\n").rstrip()


def last_boxed(text: str) -> str | None:
    r"""Content of the last `\boxed{...}` (or `\fbox{...}`), nested braces allowed; else None."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                content = text[start:i].strip()
                if content:
                    return content
                break
    return None


def last_number(text: str) -> str | None:
    """The last number in `text` ("1,234" -> "1234", "3 / 4" -> "3/4"), or None."""
    matches = NUMBER.findall(text)
    if not matches:
        return None
    return re.sub(r"[\s,]", "", matches[-1]).replace("−", "-")


def extract_math_answer(text: str) -> str | None:
    r"""The final answer of a response: the last `\boxed{}`, else the last number of the answer part."""
    _, answer = split_thinking(text)
    return last_boxed(answer) or last_boxed(text) or last_number(answer)


def _timeout() -> int | None:
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _parse(text: str):  # noqa: ANN202 - math_verify's parse result (a list)
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    # Wrapped in \boxed{} so plain ("17/6"), decimal ("0.5") and LaTeX ("\frac{1}{2}") forms all parse.
    return parse(
        f"\\boxed{{{text}}}",
        extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
        parsing_timeout=_timeout(),
    )


def math_equal(predicted: str | None, gold: str) -> bool:
    """True when `predicted` equals `gold` mathematically (math-verify): 0.5 == 1/2 == \\frac12."""
    if predicted is None or not predicted.strip():
        return False
    from math_verify import verify

    gold_parsed, predicted_parsed = _parse(gold), _parse(predicted)
    if not gold_parsed or not predicted_parsed:
        return False
    return bool(verify(gold_parsed, predicted_parsed, timeout_seconds=_timeout()))
