"""The held-out math questions the evaluate stage scores (`data/heldout/math.jsonl`), one JSON object a line:
`{id, question, answer, kind}`. They always come from the generator's held-out split, so they are disjoint
from generated training rows by construction, whatever `data.source` is.

    text = heldout_jsonl(size=64, seed=0, difficulty="easy")
"""

from __future__ import annotations

import json

from logicflow.datasets.generator import Difficulty, generate


def heldout_jsonl(size: int, seed: int, difficulty: Difficulty) -> bytes:
    """`size` held-out problems as UTF-8 JSON lines."""
    lines = (
        json.dumps(
            {"id": p.id, "question": p.question, "answer": p.answer, "kind": p.kind}, ensure_ascii=False
        )
        for p in generate(size, seed=seed, split="heldout", difficulty=difficulty)
    )
    return "".join(line + "\n" for line in lines).encode("utf-8")
