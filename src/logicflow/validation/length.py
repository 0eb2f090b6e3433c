"""Token counts of each conversation as the trainer will see it.

Each row is rendered with LogicFlow's packaged chat template (`model.template`, the one `load_tokenizer`
installs for training; the thinking goes on the assistant turn) and counted with the base model's fast
tokenizer (`tokenizer.json`, batch-encoded on every core).

Speed matters here (this is most of the stage's time on 100k rows), so the common path avoids importing
transformers: the tokenizer is loaded with `tokenizers` alone and the template is compiled once with a jinja2
environment configured like transformers' chat-template environment (trim_blocks, lstrip_blocks, loop
controls, the `{% generation %}` tag rendering its body; no sandbox: the packaged templates are trusted).
`tests/test_validate_units.py` checks that this gives exactly `tokenizer.apply_chat_template(...)` and the
same token counts. A model folder without
`tokenizer.json` (e.g. SentencePiece only) goes through `logicflow.model.load_tokenizer`.

A row the template rejects (e.g. Gemma's role alternation) is counted on a plain rendering; the chat-structure
checks quarantine such a row anyway.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from logicflow.config import Config
from logicflow.errors import ModelError
from logicflow.paths import Paths

logger = logging.getLogger(__name__)

BATCH = 4096
PROGRESS_ROWS = 50_000  # show a progress bar from this many rows on
ANSWER_MARK = "\ue000LOGICFLOW_ANSWER\ue000"  # private-use sentinel: where the final answer starts


def compile_template(source: str) -> Any:
    """A chat template compiled the way transformers compiles it (for the packaged templates' features)."""
    from jinja2 import Environment, nodes
    from jinja2.ext import Extension

    class Generation(Extension):
        """`{% generation %}` marks the trained text for transformers; here it just renders its body."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Callable[[], str]) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        from jinja2.exceptions import TemplateError

        raise TemplateError(message)

    # the packaged templates are our own code, not Hub input: no sandbox (it costs half the render time)
    env = Environment(
        trim_blocks=True, lstrip_blocks=True, extensions=[Generation, "jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)


@dataclass
class TokenCounter:
    encoder: Any  # a `tokenizers.Tokenizer`
    template: Any  # a compiled jinja2 template
    special_tokens: dict[str, str]

    def render(self, turns: list[dict[str, Any]]) -> str:
        if not turns:
            return ""
        try:
            return self.template.render(messages=turns, add_generation_prompt=False, **self.special_tokens)
        except Exception:  # noqa: BLE001 - any template error: render plainly, the structure checks flag the row
            return "\n".join(f"{t['role']}\n{t.get('thinking', '')}\n{t['content']}" for t in turns)

    def count(self, texts: Sequence[str]) -> np.ndarray:
        """Token count of each text (no special tokens added: the rendered template already holds them)."""
        counts = np.zeros(len(texts), dtype=np.int64)
        encode = getattr(self.encoder, "encode_batch_fast", self.encoder.encode_batch)
        from tqdm import tqdm

        starts = range(0, len(texts), BATCH)
        with _parallel_tokenizers():
            for start in tqdm(
                starts, desc="counting tokens", unit="batch", disable=len(texts) < PROGRESS_ROWS
            ):
                chunk = list(texts[start : start + BATCH])
                counts[start : start + len(chunk)] = [len(e) for e in encode(chunk, add_special_tokens=False)]
        return counts


def _special_tokens(model_dir: Path) -> dict[str, str]:
    """bos/eos/unk/pad token strings from `tokenizer_config.json` (plain or `{"content": ...}` entries)."""
    try:
        config = json.loads((model_dir / "tokenizer_config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    tokens = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = config.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            tokens[key] = value
    return tokens


def load_counter(cfg: Config, paths: Paths) -> TokenCounter:
    """The token counter of `cfg.model.id` from `models/base` with the configured chat template."""
    from logicflow.model import chat_template, read_manifest

    model_dir = paths.base_model
    manifest = read_manifest(model_dir)
    if manifest is not None and manifest.id != cfg.model.id:
        raise ModelError(
            f"{model_dir} holds {manifest.id!r} but model.id is {cfg.model.id!r}; "
            "run `logicflow stage model` first"
        )
    template = compile_template(chat_template(cfg.model.template))
    if (model_dir / "tokenizer.json").exists():
        from tokenizers import Tokenizer

        if manifest is None:
            logger.warning("%s has no manifest; counting tokens with the tokenizer it holds", model_dir)
        return TokenCounter(
            Tokenizer.from_file(str(model_dir / "tokenizer.json")), template, _special_tokens(model_dir)
        )
    from logicflow.model import load_tokenizer  # raises ModelError naming the folder when there is no model

    tokenizer = load_tokenizer(model_dir, cfg.model.template)
    specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    return TokenCounter(tokenizer.backend_tokenizer, template, specials)


def _conversation(
    messages: list[dict[str, Any]] | None, thinking: str | None, answer_mark: bool = False
) -> list[dict[str, Any]]:
    turns = [
        {"role": str(m.get("role") or "unknown"), "content": str(m.get("content") or "")}
        for m in (messages or [])
        if m is not None
    ]
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
    if last is not None:
        if thinking:
            turns[last]["thinking"] = thinking
        if answer_mark:
            turns[last]["content"] = ANSWER_MARK + turns[last]["content"]
    return turns


def render(
    counter: TokenCounter, messages: Sequence[Any], thinking: Sequence[Any], answer_mark: bool = False
) -> list[str]:
    return [counter.render(_conversation(m, t, answer_mark)) for m, t in zip(messages, thinking, strict=True)]


@contextmanager
def _parallel_tokenizers() -> Iterator[None]:
    """The CLI sets TOKENIZERS_PARALLELISM=false (no fork warnings); batch encoding may use every core."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def token_lengths(
    counter: TokenCounter, table: pa.Table, cutoff_len: int, need_answer_start: bool
) -> tuple[np.ndarray, np.ndarray]:
    """`n_tokens` per row and, when asked, `answer_start` (tokens before the final answer) for the rows over
    `cutoff_len` (NaN elsewhere: their answer fits)."""
    messages = table.column("messages").to_pylist()
    thinking = table.column("thinking").to_pylist()
    n_tokens = counter.count(render(counter, messages, thinking))
    answer_start = np.full(len(n_tokens), np.nan)
    if need_answer_start:
        over = np.flatnonzero(n_tokens > cutoff_len)
        if len(over):
            marked = render(
                counter, [messages[i] for i in over], [thinking[i] for i in over], answer_mark=True
            )
            prefixes = [text.split(ANSWER_MARK, 1)[0] for text in marked]
            answer_start[over] = counter.count(prefixes)
    return n_tokens, answer_start


def percentiles(n_tokens: np.ndarray) -> dict[str, float]:
    if len(n_tokens) == 0:
        return {}
    p = np.percentile(n_tokens, [50, 90, 95, 99])
    return {
        "p50": float(p[0]),
        "p90": float(p[1]),
        "p95": float(p[2]),
        "p99": float(p[3]),
        "max": int(n_tokens.max()),
        "mean": round(float(n_tokens.mean()), 2),
    }
