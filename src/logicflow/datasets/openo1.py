"""O1-OPEN/OpenO1-SFT: `instruction` + `output` holding `<Thought>…</Thought>` then `<Output>…</Output>`.

To unified: user = `instruction`; thinking = the Thought block; assistant = the Output block. Tag variants
(`<thought>`, `< Thought >`) are normalised; any whitespace between the blocks and a missing `</Output>` (or
`<Output>`) are accepted. A row without a Thought block, with one never closed, or with nothing after it is
set aside with its reason code (`parse.thought_missing`, `parse.thought_unclosed`, `parse.empty_answer`).
"""

from __future__ import annotations

import re
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

SCHEMA = pa.schema([("instruction", pa.string()), ("output", pa.string())])
OPENERS = (
    "Alright, let's work through this step by step.",
    "Okay, I need to solve this carefully.",
    "Let me break this problem down.",
    "Alright, I'll figure this out one step at a time.",
)
_OUTPUT = re.compile(
    r"<Thought>(?P<thought>.*?)</Thought>\s*(?:<Output>)?(?P<output>.*?)(?:</Output>\s*)?\Z", re.DOTALL
)


def synthesize(problems: Sequence[Problem]) -> pa.Table:
    rows = []
    for i, p in enumerate(problems):
        thought = "\n".join((OPENERS[i % len(OPENERS)], *p.steps, f"So the answer is {p.answer}."))
        output = f"{p.steps[-1]}\n\nThe answer is {boxed(p.answer)}."
        rows.append(
            {
                "instruction": MATH_PREFIX + p.question,
                "output": f"<Thought>\n{thought}\n</Thought>\n<Output>\n{output}\n</Output>",
            }
        )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


_fix_tags = tag_fixer("<Thought>", "<Output>")


def normalise(row: dict[str, Any]) -> bool:
    output = row.get("output")
    if not isinstance(output, str):
        return False
    row["output"] = _fix_tags(output)
    return row["output"] != output


def parse(row: dict[str, Any]) -> Parsed:
    instruction, output = text_field(row, "instruction"), text_field(row, "output")
    match = _OUTPUT.search(output)
    if match is None:
        if "<Thought>" in output:
            raise RowError("parse.thought_unclosed", "field 'output' opens <Thought> and never closes it")
        raise RowError("parse.thought_missing", "field 'output' has no <Thought>…</Thought> block")
    answer_text = match["output"].strip()
    if not answer_text:
        raise RowError("parse.empty_answer", "field 'output' has no answer after </Thought>")
    return Parsed(instruction, answer_text, match["thought"].strip(), last_boxed(answer_text))


ADAPTER = DatasetAdapter(
    name="openo1",
    hub_id="O1-OPEN/OpenO1-SFT",
    revision="main",  # pin to a commit sha once it can be looked up online
    config_name=None,
    data_files="OpenO1-SFT.jsonl",  # the repo root also holds OpenO1-SFT-Pro.jsonl
    schema=SCHEMA,
    required=("instruction", "output"),
    synthesize=synthesize,
    parse=parse,
    normalise=normalise,
)
