r"""ReAct traces (`data.format: react`): the same reasoning as Thought / Action / Observation steps.

    render("Each pen costs 3.\n\nSo 7 pens cost 7 * 3 = 21.", "\\boxed{21}")
    # Thought: Each pen costs 3.
    # Thought: So 7 pens cost 7 * 3 = 21.
    # Action: calculate[7 * 3]
    # Observation: 21
    # Final Answer: \boxed{21}
    problem(text)        # why `text` is not a well-formed trace, as a reason code; None when it is
    final_answer(text)   # what follows its "Final Answer:" (None without one)

A unified row keeps its reasoning in `thinking`; `as_react` moves it into the assistant turn as a trace
(each paragraph a Thought, each worked calculation `a op b = c` in it an Action with its Observation) ending
in "Final Answer:" and the row's answer text. Rows without reasoning (replay rows) are left as they are.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

THOUGHT, ACTION, OBSERVATION, FINAL = "Thought:", "Action:", "Observation:", "Final Answer:"
NUM = r"-?\d+(?:\.\d+)?"
CALCULATION = re.compile(rf"(?<![\d.])({NUM}(?:\s*[-+*/×]\s*{NUM})+)\s*=\s*({NUM})(?!\.?\d)")
ACTION_CALL = re.compile(r"^\w+\[.*\]$")


def render(thinking: str, answer: str) -> str:
    """The trace of `thinking` (paragraphs -> Thoughts, calculations -> Action/Observation) and `answer`."""
    lines = []
    for paragraph in re.split(r"\n\s*\n", thinking.strip()):
        step = " ".join(paragraph.split())
        if not step:
            continue
        lines.append(f"{THOUGHT} {step}")
        for expression, result in calculations(step):
            lines += [f"{ACTION} calculate[{' '.join(expression.split())}]", f"{OBSERVATION} {result}"]
    lines.append(f"{FINAL} {answer.strip()}")
    return "\n".join(lines)


def calculations(step: str) -> list[tuple[str, str]]:
    """Each `expression = result` in `step`, in order; a result may start the next (`2 + 3 = 5 + 1 = 6`)."""
    found, start = [], 0
    while match := CALCULATION.search(step, start):
        found.append((match[1], match[2]))
        start = match.start(2)
    return found


def problem(text: str) -> str | None:
    """The first structural fault of a trace as a reason code, or None: it opens with a Thought, every Action
    is a `tool[input]` answered by the next line's Observation, and one Final Answer closes it."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or not lines[0].startswith(THOUGHT):
        return "react.no_thought"
    waiting = False  # an Action whose Observation has not come yet
    for line in lines:
        if waiting and not line.startswith(OBSERVATION):
            return "react.unanswered_action"
        if line.startswith(FINAL):
            after = text[text.index(FINAL) + len(FINAL) :]
            if not after.strip():
                return "react.empty_final_answer"
            if FINAL in after or re.search(rf"^\s*({THOUGHT}|{ACTION}|{OBSERVATION})", after, re.MULTILINE):
                return "react.steps_after_final_answer"
            return None
        if line.startswith(ACTION):
            if not ACTION_CALL.match(line[len(ACTION) :].strip()):
                return "react.malformed_action"
            waiting = True
        elif line.startswith(OBSERVATION):
            if not waiting:
                return "react.observation_without_action"
            waiting = False
    return "react.unanswered_action" if waiting else "react.no_final_answer"


def final_answer(text: str) -> str | None:
    """What follows the last "Final Answer:" (a response cut off before it has none)."""
    if FINAL not in text:
        return None
    return text.rpartition(FINAL)[2].strip()


def as_react(table: pa.Table) -> pa.Table:
    """Unified rows, reasoning moved into the last assistant turn as a trace (`thinking` emptied)."""
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        if not row["thinking"].strip():
            continue
        last = max(i for i, turn in enumerate(row["messages"]) if turn["role"] == "assistant")
        turn = row["messages"][last]
        turn["content"] = render(row["thinking"], turn["content"])
        row["thinking"] = ""
    return pa.Table.from_pylist(rows, schema=table.schema)
