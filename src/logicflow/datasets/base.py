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
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from logicflow.datasets.generator import Problem
from logicflow.errors import DataError, RowError

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


# One upstream row that could not be used: it goes to quarantine (through the validate stage) with its reason.
REJECTED_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("index", pa.int64(), nullable=False),  # position in the rows as fetched or read
        pa.field("upstream_id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),  # e.g. parse.thought_unclosed, parse.type_error
        pa.field("detail", pa.string(), nullable=False),  # one line naming the field
        pa.field("raw", pa.string(), nullable=False),  # the row as JSON text, nothing lost
    ]
)


@dataclass(frozen=True)
class DatasetAdapter:
    name: str
    hub_id: str | None  # None: only from a local file (`data.datasets.<name>.path`)
    revision: str
    config_name: str | None
    schema: pa.Schema  # the exact upstream columns and types
    required: tuple[str, ...]  # columns a file must have (the others may be absent: null)
    synthesize: Callable[[Sequence[Problem]], pa.Table]  # generated problems -> rows in `schema`
    parse: Callable[[dict[str, Any]], Parsed]  # raises RowError with a reason code naming the bad field
    normalise: Callable[[dict[str, Any]], bool]  # fixes tag variants (case, whitespace) in place: changed?
    data_files: str | None = None  # for repos whose default config would mix several files
    id_field: str | None = None  # the upstream id column, when there is one
    thinking_optional: bool = False  # rows without reasoning are kept (the user's own chat data)

    def to_unified(self, row: dict[str, Any]) -> dict[str, Any]:
        """One upstream row as a unified row; a row that cannot be one raises RowError with a reason code."""
        parsed = self.parse(row)
        for field, value in (
            ("user_turn", parsed.user),
            ("final_answer", parsed.assistant),
            ("thinking", parsed.thinking),
        ):
            if not value.strip() and not (field == "thinking" and self.thinking_optional):
                raise RowError(f"parse.empty_{field}", f"empty {field.replace('_', ' ')}")
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


def text_field(row: dict[str, Any], field: str) -> str:
    """`row[field]` as a non-empty string, else a RowError naming the field."""
    value = row.get(field)
    if value is not None and not isinstance(value, str):
        raise RowError("parse.type_error", f"field {field!r} is {type(value).__name__}, expected a string")
    if not value or not value.strip():
        raise RowError(f"parse.empty_{field}", f"field {field!r} is missing or empty")
    return value


def tag_fixer(*tags: str) -> Callable[[str], str]:
    """A function writing variants of `tags` (any case, whitespace inside the brackets) as the canonical tag:
    `< thought >`, `<THOUGHT>` and `</ Thought>` all become `<Thought>` / `</Thought>`."""
    canonical = {}
    for tag in tags:
        inner = tag.strip("<>")
        canonical[inner.lower()] = inner
    names = "|".join(re.escape(name) for name in canonical)
    pattern = re.compile(rf"<\s*(/?)\s*({names})\s*>", re.IGNORECASE)

    def fix(text: str) -> str:
        return pattern.sub(lambda m: f"<{m[1]}{canonical[m[2].lower()]}>", text)

    return fix


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
    """`table` reduced to `adapter.schema` (column order, exact types; absent optional columns null); a
    missing required column or a column of the wrong type is a DataError naming the file and the column."""
    expected = ", ".join(f"{f.name}: {f.type}" for f in adapter.schema)
    columns = []
    for field in adapter.schema:
        if field.name not in table.column_names:
            if field.name in adapter.required:
                raise DataError(
                    f"{source}: {adapter.name} column {field.name!r} is missing; expected columns: {expected}"
                )
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise DataError(
                f"{source}: {adapter.name} column {field.name!r} has type {column.type}, expected "
                f"{field.type}; expected columns: {expected}"
            ) from None
    return pa.Table.from_arrays(columns, schema=adapter.schema)


@dataclass(frozen=True)
class Unreadable:
    """A line of a user's file that is not JSON: quarantined as `parse.invalid_json` with its text."""

    text: str
    error: str


@dataclass
class Upstream:
    """Rows of one dataset in its upstream schema, ready to write to `data/raw`, and what was set aside."""

    table: pa.Table
    indices: list[int]  # the position of each table row in the rows as fetched or read
    rejected: list[dict[str, Any]]  # REJECTED_SCHEMA rows (type errors, unreadable lines)
    normalised: int  # rows whose tag variants were rewritten


def rejected_row(adapter: DatasetAdapter, index: int, row: Any, code: str, detail: str) -> dict[str, Any]:
    upstream_id = row.get(adapter.id_field) if adapter.id_field and isinstance(row, dict) else None
    return {
        "dataset": adapter.name,
        "index": index,
        "upstream_id": upstream_id if isinstance(upstream_id, str) else None,
        "reason": code,
        "detail": f"{adapter.name} row {index}: {detail}",
        "raw": row if isinstance(row, str) else json.dumps(row, ensure_ascii=False, default=str),
    }


def fits(value: Any, type_: pa.DataType) -> bool:
    """Does `value` (as read from JSON or a row dict) have `type_` exactly? Stricter than pyarrow, which
    would read a string as a list of characters or a number as a string."""
    if value is None:
        return True
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return isinstance(value, str)
    if pa.types.is_boolean(type_):
        return isinstance(value, bool)
    if pa.types.is_integer(type_):
        return isinstance(value, int) and not isinstance(value, bool)
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return isinstance(value, list | tuple) and all(fits(v, type_.value_type) for v in value)
    if pa.types.is_struct(type_):
        return isinstance(value, dict) and all(fits(value.get(f.name), f.type) for f in type_)
    raise TypeError(f"no row check for arrow type {type_}")  # the adapters' schemas use only the above


def upstream_rows(
    adapter: DatasetAdapter, rows: list[Any], source: str, positions: Sequence[int] | None = None
) -> Upstream:
    """Rows as fetched or read (dicts) in `adapter.schema`: a row of the wrong shape or type is set aside
    (`parse.type_error`), tag variants are normalised and counted. A required column no row has, or one no
    row holds with the right type, is a file-level DataError naming `source` and the column.
    `positions`: each row's place in its file when `rows` is a sample of it (default: its place in `rows`)."""
    at = positions if positions is not None else range(len(rows))
    rejected = []
    dicts = {i: row for i, row in enumerate(rows) if isinstance(row, dict)}
    for i in sorted(set(range(len(rows))) - set(dicts)):
        row = rows[i]
        if isinstance(row, Unreadable):
            rejected.append(
                rejected_row(adapter, at[i], row.text, "parse.invalid_json", f"not JSON ({row.error})")
            )
        else:
            rejected.append(rejected_row(adapter, at[i], row, "parse.type_error", "not a JSON object"))
    positions = list(dicts)
    bad: dict[int, str] = {}
    for field in adapter.schema:
        values = [dicts[i].get(field.name) for i in positions]
        if field.name in adapter.required and rows and all(field.name not in dicts[i] for i in positions):
            raise DataError(f"{source}: {adapter.name} column {field.name!r} is missing from every row")
        wrong = [k for k, value in enumerate(values) if not fits(value, field.type)]
        if wrong and len(wrong) == len(positions):
            raise DataError(
                f"{source}: {adapter.name} column {field.name!r} holds no value of type {field.type} "
                "in any row; is this the right dataset format?"
            )
        for k in wrong:
            bad.setdefault(positions[k], f"field {field.name!r} is not of type {field.type}")
    for i, detail in bad.items():
        rejected.append(rejected_row(adapter, at[i], dicts[i], "parse.type_error", detail))
    kept = [i for i in positions if i not in bad]
    normalised = 0
    for i in kept:
        normalised += adapter.normalise(dicts[i])
    table = pa.Table.from_pylist(
        [{f.name: dicts[i].get(f.name) for f in adapter.schema} for i in kept], schema=adapter.schema
    )
    return Upstream(table, [at[i] for i in kept], rejected, normalised)


@dataclass
class Converted:
    unified: pa.Table  # UNIFIED_SCHEMA
    rejected: list[dict[str, Any]]  # REJECTED_SCHEMA rows: rows that could not be parsed


def convert_table(
    adapter: DatasetAdapter, table: pa.Table, source_file: str, indices: Sequence[int] | None = None
) -> Converted:
    """Check the upstream columns, then convert every row to a unified row (ids unique within the file); a row
    that cannot be converted is set aside with its reason code. `indices`: each row's upstream position."""
    table = conform(adapter, table, source_file)
    rows, rejected = [], []
    for position, row in enumerate(table.to_pylist()):
        index = indices[position] if indices is not None else position
        try:
            rows.append(adapter.to_unified(row))
        except RowError as exc:
            rejected.append(rejected_row(adapter, index, row, exc.code, str(exc)))
    seen: Counter[str] = Counter()
    for row in rows:  # exact duplicate rows share a content hash; keep ids unique and stable
        seen[row["id"]] += 1
        if seen[row["id"]] > 1:
            row["id"] = f"{row['id']}-{seen[row['id']]}"
    return Converted(pa.Table.from_pylist(rows, schema=UNIFIED_SCHEMA), rejected)


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
