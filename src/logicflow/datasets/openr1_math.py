"""open-r1/OpenR1-Math-220k (config `default`): a problem, 2-4 R1 generations and their correctness flags.

Generations look like `<think>\\n…\\n</think>\\n\\n{answer text with \\boxed{…}}`; `messages` holds the user
problem and one correct generation. To unified: user = `problem`; the assistant generation comes from
`messages`, or else the first generation `correctness_math_verify` marks correct; thinking = its `<think>`
part (a missing opening `<think>` is accepted), assistant = the text after `</think>`; answer = the
`answer` column (else the last `\\boxed{}`); id = `uuid`. `<think>` tag variants (case, whitespace) are
normalised; a row with no problem, no usable generation or a `<think>` never closed is set aside with its
reason code.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from logicflow.datasets.base import (
    MATH_PREFIX,
    DatasetAdapter,
    Parsed,
    boxed,
    last_boxed,
    tag_fixer,
    text_field,
)
from logicflow.datasets.generator import Problem
from logicflow.errors import RowError

MESSAGE = pa.struct([("content", pa.string()), ("role", pa.string())])
SCHEMA = pa.schema(
    [
        ("problem", pa.string()),
        ("solution", pa.string()),
        ("answer", pa.string()),
        ("problem_type", pa.string()),
        ("question_type", pa.string()),
        ("source", pa.string()),
        ("uuid", pa.string()),
        ("is_reasoning_complete", pa.list_(pa.bool_())),
        ("generations", pa.list_(pa.string())),
        ("correctness_math_verify", pa.list_(pa.bool_())),
        ("correctness_llama", pa.list_(pa.bool_())),  # may be null
        ("finish_reasons", pa.list_(pa.string())),
        ("correctness_count", pa.int64()),
        ("messages", pa.list_(MESSAGE)),
    ]
)
PROBLEM_TYPES = {
    "add_sub": "Algebra",
    "word_one_step": "Algebra",
    "arithmetic": "Algebra",
    "word": "Algebra",
    "linear": "Algebra",
    "fraction": "Number Theory",
    "percent": "Algebra",
}
SOURCE = "logicflow-generator"  # marks synthetic rows; upstream values are e.g. olympiads, cn_contest
OPENERS = (
    "Okay, so I need to solve this problem.",
    "Alright, let me figure this out.",
    "Let me start by reading the problem carefully.",
    "Hmm, let's see.",
)
_GENERATION = re.compile(r"(?:<think>)?(?P<thought>.*?)</think>(?P<answer>.*)", re.DOTALL)


def synthesize(problems: Sequence[Problem]) -> pa.Table:
    rows = []
    for i, p in enumerate(problems):
        count = 2 + i % 3  # 2 to 4 generations, all correct
        work = "\n\n".join(p.steps)
        generations = [
            f"<think>\n{OPENERS[(i + g) % len(OPENERS)]}\n\n{work}\n</think>\n\n"
            f"{p.steps[-1]} Therefore, the answer is ${boxed(p.answer)}$."
            for g in range(count)
        ]
        rows.append(
            {
                "problem": MATH_PREFIX + p.question,
                "solution": "\n".join(p.steps) + f"\n\nThe answer is ${boxed(p.answer)}$.",
                "answer": p.answer,
                "problem_type": PROBLEM_TYPES[p.kind],
                "question_type": "math-word-problem",
                "source": SOURCE,
                "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"logicflow:{p.id}")),
                "is_reasoning_complete": [True] * count,
                "generations": generations,
                "correctness_math_verify": [True] * count,
                "correctness_llama": None if i % 2 else [True] * count,
                "finish_reasons": ["stop"] * count,
                "correctness_count": count,
                "messages": [
                    {"content": MATH_PREFIX + p.question, "role": "user"},
                    {"content": generations[0], "role": "assistant"},
                ],
            }
        )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _assistant_generation(row: dict[str, Any]) -> str:
    for message in row.get("messages") or []:
        if message.get("role") == "assistant" and message.get("content"):
            return message["content"]
    verified = row.get("correctness_math_verify") or []
    for generation, correct in zip(row.get("generations") or [], verified, strict=False):
        if correct and generation:
            return generation
    raise RowError(
        "parse.no_assistant_turn",
        "field 'messages' has no assistant turn and no generation is marked correct",
    )


_fix_tags = tag_fixer("<think>")


def normalise(row: dict[str, Any]) -> bool:
    changed = False
    generations = row.get("generations")
    if isinstance(generations, list):
        fixed = [_fix_tags(g) if isinstance(g, str) else g for g in generations]
        changed |= fixed != generations
        row["generations"] = fixed
    for message in row.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            message["content"] = _fix_tags(content)
            changed |= message["content"] != content
    return changed


def parse(row: dict[str, Any]) -> Parsed:
    problem = text_field(row, "problem")
    match = _GENERATION.search(_assistant_generation(row))
    if match is None:
        raise RowError("parse.think_unclosed", "the assistant generation has no </think>")
    answer_text = match["answer"].strip()
    return Parsed(
        problem,
        answer_text,
        match["thought"].strip(),
        row.get("answer") or last_boxed(answer_text),
        key=row.get("uuid") or None,
    )


ADAPTER = DatasetAdapter(
    name="openr1_math",
    hub_id="open-r1/OpenR1-Math-220k",
    revision="main",  # pin to a commit sha once it can be looked up online
    config_name="default",
    schema=SCHEMA,
    required=("problem",),
    synthesize=synthesize,
    parse=parse,
    normalise=normalise,
    id_field="uuid",
)
