"""Clean rows -> chat conversations for TRL, and the token statistics behind the data guards.

A row (`data/clean/<split>.parquet`, written by the validate stage) holds `messages` (optional system, user,
assistant = final answer) and `thinking`. The conversation puts `thinking` on the last assistant message; the
packaged chat template renders it as `<think>…</think>` and wraps the supervised part in
`{% generation %}`, so TRL's `assistant_only_loss` trains on the assistant turn only. `train_on_thinking`
travels with each example as `chat_template_kwargs`, which TRL passes to `apply_chat_template`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logicflow.errors import TrainingError
from logicflow.paths import Paths

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation")


@dataclass(frozen=True)
class Splits:
    rows: dict[str, list[dict[str, Any]]]  # split -> rows as dicts (validation may be empty)
    files: dict[str, Path]  # split -> parquet file read


def load_splits(paths: Paths, max_samples: int | None) -> Splits:
    """Read the validated splits; `max_samples` keeps the first N training rows (already shuffled)."""
    import pyarrow.parquet as pq

    rows: dict[str, list[dict[str, Any]]] = {}
    files: dict[str, Path] = {}
    for split in SPLITS:
        file = paths.clean(split)
        if not file.exists():
            if split == "validation":
                logger.warning("%s not found: no eval loss this run", file)
                rows[split] = []
                continue
            raise TrainingError(f"{file} not found; run `logicflow stage validate` (after `data`) first")
        try:
            rows[split] = pq.read_table(file).to_pylist()
        except Exception as exc:  # noqa: BLE001 - a corrupt parquet file is a data problem, named in one line
            raise TrainingError(
                f"{file}: unreadable parquet ({exc}); re-run `logicflow stage validate`"
            ) from None
        files[split] = file
        missing = {"id", "messages", "thinking"} - set(rows[split][0]) if rows[split] else set()
        if missing:
            raise TrainingError(f"{file}: missing column(s) {', '.join(sorted(missing))}")
    if max_samples is not None:
        rows["train"] = rows["train"][:max_samples]
    return Splits(rows, files)


def conversation(row: dict[str, Any], train_on_thinking: bool) -> dict[str, Any]:
    """One TRL example: `messages` with `thinking` on the last assistant turn, plus the template switch."""
    messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    if not messages or messages[-1]["role"] != "assistant":
        raise TrainingError(f"row {row.get('id')!r}: the last message must be the assistant's answer")
    if row.get("thinking"):
        messages[-1]["thinking"] = row["thinking"]
    return {"messages": messages, "chat_template_kwargs": {"train_on_thinking": bool(train_on_thinking)}}


def to_dataset(rows: list[dict[str, Any]], train_on_thinking: bool) -> Any:
    from datasets import Dataset

    return Dataset.from_list([conversation(r, train_on_thinking) for r in rows])


def flat_frame(rows: list[dict[str, Any]]) -> Any:
    """A pandas view with `messages` as JSON text: what MLflow hashes for the dataset digest."""
    import pandas as pd

    return pd.DataFrame([{**r, "messages": json.dumps(r["messages"], ensure_ascii=False)} for r in rows])


@dataclass
class TokenStats:
    """Per split: lengths of the rendered conversations, counted with the training template and cutoff."""

    rows: int = 0
    tokens: int = 0  # after truncation to the cutoff
    supervised_tokens: int = 0  # tokens with a label (assistant turn), after truncation
    max_length: int = 0  # before truncation
    truncated_rows: int = 0
    no_loss_rows: list[tuple[str, int]] = field(default_factory=list)  # (id, tokens before the first label)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "tokens": self.tokens,
            "supervised_tokens": self.supervised_tokens,
            "max_length": self.max_length,
            "truncated_rows": self.truncated_rows,
            "no_loss_rows": len(self.no_loss_rows),
        }


def token_stats(
    tokenizer: Any, rows: list[dict[str, Any]], cutoff: int, train_on_thinking: bool
) -> TokenStats:
    """Tokenize like TRL does (same template, same assistant mask) and count what the cutoff leaves."""
    stats = TokenStats()
    for row in rows:
        example = conversation(row, train_on_thinking)
        out = tokenizer.apply_chat_template(
            example["messages"],
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            **example["chat_template_kwargs"],
        )
        ids, mask = out["input_ids"], out["assistant_masks"]
        first = mask.index(1) if 1 in mask else len(ids)
        stats.rows += 1
        stats.tokens += min(len(ids), cutoff)
        stats.supervised_tokens += sum(mask[:cutoff])
        stats.max_length = max(stats.max_length, len(ids))
        stats.truncated_rows += len(ids) > cutoff
        if first >= cutoff:
            stats.no_loss_rows.append((str(row.get("id")), first))
    return stats


def check_cutoff(stats: TokenStats, cutoff: int, split: str) -> None:
    """Rows whose prompt fills the cutoff would carry no loss (TRL drops them silently): refuse instead."""
    if stats.no_loss_rows:
        row_id, longest = max(stats.no_loss_rows, key=lambda item: item[1])
        raise TrainingError(
            f"train.cutoff_len={cutoff} is below the prompt length of {len(stats.no_loss_rows)} {split} "
            f"row(s) "
            f"(longest: {longest} prompt tokens, row {row_id!r}), so they would train on nothing; "
            f"raise train.cutoff_len above {longest} or let `validate` quarantine overlong rows"
        )


def check_enough_rows(n_rows: int, batch_size: int, grad_accum: int, world_size: int) -> None:
    """One optimizer step needs batch_size x grad_accum x world_size rows."""
    needed = batch_size * grad_accum * world_size
    if n_rows < needed:
        raise TrainingError(
            f"{n_rows} training row(s) is not enough for one optimizer step: train.batch_size={batch_size} x "
            f"train.grad_accum={grad_accum} x {world_size} process(es) = {needed}; lower those or add data"
        )
