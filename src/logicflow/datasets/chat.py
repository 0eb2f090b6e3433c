"""`chat`: the user's own conversations, in the formats they already have (only from a local file).

    data:
      datasets:
        chat: {path: data/local/my_chats.jsonl}

Each row holds either OpenAI-style `messages` ([{role, content}], roles system/user/assistant) or ShareGPT
`conversations` ([{from, value}], from human/gpt/system). The reasoning is optional: the assistant turn's
`reasoning_content` (DeepSeek API), `reasoning` or `thinking` field, or an inline `<think>…</think>` block
at the start of its content. To unified: the first user turn and the first assistant turn after it (a
longer conversation keeps only its first exchange); thinking = the reasoning when there is one (else
empty: validation does not require it for this source); answer = the last `\\boxed{}` of the answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from logicflow.datasets.base import DatasetAdapter, Parsed, last_boxed, tag_fixer
from logicflow.datasets.generator import Problem
from logicflow.errors import ConfigError, RowError

REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking")
MESSAGE = pa.struct(
    [("role", pa.string()), ("content", pa.string())] + [(f, pa.string()) for f in REASONING_FIELDS]
)
SHAREGPT_TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
SCHEMA = pa.schema(
    [("id", pa.string()), ("messages", pa.list_(MESSAGE)), ("conversations", pa.list_(SHAREGPT_TURN))]
)
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
_INLINE = re.compile(r"\A\s*<think>(?P<thought>.*?)</think>(?P<answer>.*)\Z", re.DOTALL)
_fix_tags = tag_fixer("<think>")


def synthesize(problems: Sequence[Problem]) -> pa.Table:
    raise ConfigError("the chat dataset has no generator or Hub source: set data.datasets.chat.path")


def _turns(row: dict[str, Any]) -> list[dict[str, Any]]:
    if row.get("messages"):
        return list(row["messages"])
    return [
        {
            "role": SHAREGPT_ROLES.get(str(turn.get("from")).lower(), turn.get("from")),
            "content": turn.get("value"),
        }
        for turn in row.get("conversations") or []
    ]


def normalise(row: dict[str, Any]) -> bool:
    changed = False
    for key, text in (("messages", "content"), ("conversations", "value")):
        for turn in row.get(key) or []:
            if isinstance(turn, dict) and isinstance(turn.get(text), str):
                fixed = _fix_tags(turn[text])
                changed |= fixed != turn[text]
                turn[text] = fixed
    return changed


def parse(row: dict[str, Any]) -> Parsed:
    turns = _turns(row)
    if not turns:
        raise RowError("parse.no_messages", "the row has neither 'messages' nor 'conversations'")
    user_at = next(
        (i for i, t in enumerate(turns) if t.get("role") == "user" and (t.get("content") or "").strip()), None
    )
    if user_at is None:
        raise RowError("parse.no_user_turn", "the conversation has no user turn")
    assistant = next((t for t in turns[user_at + 1 :] if t.get("role") == "assistant"), None)
    if assistant is None or not (assistant.get("content") or "").strip():
        raise RowError("parse.no_assistant_turn", "no assistant turn follows the user turn")
    content = assistant["content"]
    thinking = next((assistant[f] for f in REASONING_FIELDS if (assistant.get(f) or "").strip()), "")
    if not thinking and (inline := _INLINE.match(content)):
        thinking, content = inline["thought"], inline["answer"]
    elif "<think>" in content and "</think>" not in content:
        raise RowError("parse.think_unclosed", "the assistant turn opens <think> and never closes it")
    answer = content.strip()
    return Parsed(
        turns[user_at]["content"], answer, thinking.strip(), last_boxed(answer), key=row.get("id") or None
    )


ADAPTER = DatasetAdapter(
    name="chat",
    hub_id=None,
    revision="local",
    config_name=None,
    schema=SCHEMA,
    required=(),
    synthesize=synthesize,
    parse=parse,
    normalise=normalise,
    id_field="id",
    thinking_optional=True,
)
