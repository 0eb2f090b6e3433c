r"""open-thoughts/OpenThoughts-114k, config `default`: `system` + `conversations` (user, assistant).

The assistant value is exactly (see `synthesize`)
`<|begin_of_thought|>\n\n{reasoning}\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n{solution}\n\n<|end_of_solution|>`.

To unified: user = the user turn (math turns keep their `Return your final response within \boxed{}. `
prefix, which asks for the boxed answer the solution gives); thinking = the reasoning; assistant = the
solution. The upstream `system` prompt is dropped: it only describes the tag format, which the conversion
removes. Tag variants (case, whitespace inside `<|…|>`) are normalised; a conversation without a user or an
assistant turn, or whose assistant turn lacks the thought or the solution block, is set aside with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from logicflow.datasets.base import MATH_PREFIX, DatasetAdapter, Parsed, boxed, last_boxed
from logicflow.datasets.generator import Problem
from logicflow.errors import RowError

TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
SCHEMA = pa.schema([("system", pa.string()), ("conversations", pa.list_(TURN))])
# The same on every upstream row (its first sentence is checked, the rest as widely reproduced).
SYSTEM_PROMPT = (
    "Your role as an assistant involves thoroughly exploring questions through a systematic long thinking "
    "process before providing the final precise and accurate solutions. This requires engaging in a "
    "comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, backtracing, and "
    "iteration to develop well-considered thinking process. Please structure your response into two main "
    "sections: Thought and Solution. In the Thought section, detail your reasoning process using the "
    "specified format: <|begin_of_thought|> {thought with steps separated with '\\n\\n'} <|end_of_thought|> "
    "Each step should include detailed considerations such as analisying questions, summarizing relevant "
    "findings, brainstorming new ideas, verifying the accuracy of the current steps, refining any errors, "
    "and revisiting previous steps. In the Solution section, based on various attempts, explorations, and "
    "reflections from the Thought section, systematically present the final solution that you deem correct. "
    "The solution should remain a logical, accurate, concise expression style and detail necessary step "
    "needed to reach the conclusion, formatted as follows: <|begin_of_solution|> {final formatted, precise, "
    "and clear solution} <|end_of_solution|> Now, try to solve the following question through the above "
    "guidelines:"
)
OPENERS = ("Okay, let's see.", "Okay, so I need to solve this problem.", "Hmm, let me think about this.")
_ASSISTANT = re.compile(
    r"<\|begin_of_thought\|>(?P<thought>.*?)<\|end_of_thought\|>\s*"
    r"<\|begin_of_solution\|>(?P<solution>.*?)(?:<\|end_of_solution\|>|\Z)",
    re.DOTALL,
)


def synthesize(problems: Sequence[Problem]) -> pa.Table:
    rows = []
    for i, p in enumerate(problems):
        reasoning = "\n\n".join((OPENERS[i % len(OPENERS)], *p.steps, f"So the answer is {p.answer}."))
        solution = "\n".join(f"{n}. {step}" for n, step in enumerate(p.steps, 1)) + f"\n\n{boxed(p.answer)}"
        assistant = (
            f"<|begin_of_thought|>\n\n{reasoning}\n\n<|end_of_thought|>\n\n"
            f"<|begin_of_solution|>\n\n{solution}\n\n<|end_of_solution|>"
        )
        rows.append(
            {
                "system": SYSTEM_PROMPT,
                "conversations": [
                    {"from": "user", "value": MATH_PREFIX + p.question},
                    {"from": "assistant", "value": assistant},
                ],
            }
        )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


_TAG_VARIANT = re.compile(r"<\|\s*(begin|end)_of_(thought|solution)\s*\|>", re.IGNORECASE)


def normalise(row: dict[str, Any]) -> bool:
    changed = False
    for turn in row.get("conversations") or []:
        value = turn.get("value") if isinstance(turn, dict) else None
        if isinstance(value, str):
            fixed = _TAG_VARIANT.sub(lambda m: f"<|{m[1].lower()}_of_{m[2].lower()}|>", value)
            changed |= fixed != value
            turn["value"] = fixed
    return changed


def parse(row: dict[str, Any]) -> Parsed:
    turns = {turn.get("from"): turn.get("value") for turn in reversed(row.get("conversations") or [])}
    user, assistant = turns.get("user"), turns.get("assistant")  # the first turn of each role
    if not user or not user.strip():
        raise RowError("parse.no_user_turn", "field 'conversations' has no user turn")
    if not assistant or not assistant.strip():
        raise RowError("parse.no_assistant_turn", "field 'conversations' has no assistant turn")
    match = _ASSISTANT.search(assistant)
    if match is None:
        if "<|begin_of_thought|>" not in assistant:
            raise RowError("parse.thought_missing", "the assistant turn has no <|begin_of_thought|> block")
        if "<|end_of_thought|>" not in assistant:
            raise RowError("parse.thought_unclosed", "the assistant turn never closes <|begin_of_thought|>")
        raise RowError("parse.solution_missing", "the assistant turn has no <|begin_of_solution|> block")
    solution = match["solution"].strip()
    return Parsed(user, solution, match["thought"].strip(), last_boxed(solution))


ADAPTER = DatasetAdapter(
    name="openthoughts",
    hub_id="open-thoughts/OpenThoughts-114k",
    revision="main",  # pin to a commit sha once it can be looked up online
    config_name="default",
    schema=SCHEMA,
    required=("conversations",),
    synthesize=synthesize,
    parse=parse,
    normalise=normalise,
)
