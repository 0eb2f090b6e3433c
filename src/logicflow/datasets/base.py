"""What every dataset adapter shares: the adapter type, the unified row schema and the table helpers.

An adapter knows one upstream dataset: its Hub id and exact schema, how to write generated problems in
that schema (`synthesize`, the offline stand-in) and how to turn one upstream row into the unified row
(`to_unified`). The unified row is what every later stage reads:

    {id, source, messages: [{role, content}], thinking, answer}

- `messages`: an optional system turn, the user turn, then the assistant turn holding the final
  answer/solution only, never the reasoning.
- `thinking`: the reasoning, taken out of the dataset's tags (no tags left in it).
- `answer`: the final `\\boxed{}` content when there is one (or the dataset's own answer column), else null.
- `id`: `<adapter>-<upstream id or content hash>`, so stable across runs and unique across datasets.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from logicflow.datasets.generator import Problem
from logicflow.errors import DataError

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
UNIFIED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE), nullable=False),
        pa.field("thinking", pa.string(), nullable=False),
        pa.field("answer", pa.string()),
    ]
)


@dataclass(frozen=True)
class Parsed:
    """One upstream row, taken apart by an adapter's `parse`."""

    user: str
    assistant: str  # the final answer/solution text
    thinking: str
    answer: str | None
    key: str | None = None  # the upstream row id, when the dataset has one


@dataclass(frozen=True)
class DatasetAdapter:
    name: str
    hub_id: str
    revision: str
    config_name: str | None
    schema: pa.Schema  # the exact upstream columns and types
    synthesize: Callable[[Sequence[Problem]], pa.Table]  # generated problems -> rows in `schema`
    parse: Callable[[dict[str, Any]], Parsed]  # raises DataError naming the bad field
    data_files: str | None = None  # for repos whose default config would mix several files

    def to_unified(self, row: dict[str, Any], index: int | None = None) -> dict[str, Any]:
        """One upstream row as a unified row; a malformed row raises DataError naming dataset, row, field."""
        where = f"{self.name} row {index if index is not None else '?'}"
        try:
            parsed = self.parse(row)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        for field, value in (
            ("user turn", parsed.user),
            ("final answer", parsed.assistant),
            ("thinking", parsed.thinking),
        ):
            if not value.strip():
                raise DataError(f"{where}: empty {field}")
        key = (
            parsed.key
            or hashlib.sha1(
                "\0".join((parsed.user, parsed.thinking, parsed.assistant)).encode("utf-8")
            ).hexdigest()[:16]
        )
        return {
            "id": f"{self.name}-{key}",
            "source": self.name,
            "messages": [
                {"role": "user", "content": parsed.user},
                {"role": "assistant", "content": parsed.assistant},
            ],
            "thinking": parsed.thinking,
            "answer": parsed.answer,
        }

    def load_hub(self, max_samples: int) -> pa.Table:
        """The first `max_samples` rows of the Hub dataset, streamed (needs network access)."""
        from datasets import load_dataset  # heavy; only the hub path pays for it

        stream = load_dataset(
            self.hub_id,
            self.config_name,
            data_files=self.data_files,
            split="train",
            revision=self.revision,
            streaming=True,
        )
        return pa.Table.from_pylist(list(itertools.islice(stream, max_samples)))


def text_field(row: dict[str, Any], field: str) -> str:
    """`row[field]` as a non-empty string, else a DataError naming the field."""
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"field {field!r} is missing or empty")
    return value


def last_boxed(text: str) -> str | None:
    r"""The content of the last `\boxed{...}` in `text` (nested braces allowed), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth = 0
    for end in range(start + len("\\boxed"), len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            return text[start + len("\\boxed{") : end].strip() or None
    return None


def boxed(answer: str) -> str:
    return f"\\boxed{{{answer}}}"


# The request OpenThoughts math turns start with. The offline generator puts it on the math prompts of all
# three datasets: one consistent cue for "think, then give one boxed answer", so a model tuned on these rows
# does not open a think block on prompts that do not ask for one (the eval's math prompt carries it too).
MATH_PREFIX = "Return your final response within \\boxed{}. "


def conform(adapter: DatasetAdapter, table: pa.Table, source: str) -> pa.Table:
    """`table` reduced to `adapter.schema` (column order, exact types); DataError names the bad column."""
    expected = ", ".join(f"{f.name}: {f.type}" for f in adapter.schema)
    columns = []
    for field in adapter.schema:
        if field.name not in table.column_names:
            raise DataError(
                f"{source}: {adapter.name} column {field.name!r} is missing; expected columns: {expected}"
            )
        column = table.column(field.name)
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise DataError(
                f"{source}: {adapter.name} column {field.name!r} has type {column.type}, expected "
                f"{field.type}; expected columns: {expected}"
            ) from None
    return pa.Table.from_arrays(columns, schema=adapter.schema)


def convert_table(adapter: DatasetAdapter, table: pa.Table, source_file: str) -> pa.Table:
    """Check the upstream columns, then convert every row to a unified row (ids unique within the file)."""
    table = conform(adapter, table, source_file)
    try:
        rows = [adapter.to_unified(row, index) for index, row in enumerate(table.to_pylist())]
    except DataError as exc:
        raise DataError(f"{source_file}: {exc}") from None
    seen: Counter[str] = Counter()
    for row in rows:  # exact duplicate rows share a content hash; keep ids unique and stable
        seen[row["id"]] += 1
        if seen[row["id"]] > 1:
            row["id"] = f"{row['id']}-{seen[row['id']]}"
    return pa.Table.from_pylist(rows, schema=UNIFIED_SCHEMA)


def read_parquet(path: Path, data: bytes | None = None) -> pa.Table:
    """Read a parquet file (or `data`, its bytes not yet written); unreadable -> DataError naming the file."""
    try:
        return pq.read_table(pa.BufferReader(data) if data is not None else path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"{path}: not a readable parquet file ({exc}); delete it and re-run the data stage"
        ) from None


def parquet_bytes(table: pa.Table) -> bytes:
    """`table` as parquet bytes (same table, same bytes)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()
