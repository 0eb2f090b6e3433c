"""The tables the validate stage checks, their expected columns, and reading them safely.

Two kinds of table: the unified rows (`data/messages/{train,validation}.parquet`, concatenated with a `split`
column, table name `messages`) and each raw upstream dataset (`data/raw/<name>.parquet`, table name = dataset
name). Only the unified rows are split into clean and quarantine; a raw row that fails its dataset's checks
sends the unified row made from it (same source, same prompt) to quarantine.

Reading never crashes on bad bytes: invalid UTF-8 is replaced by U+FFFD (and logged), so the row reaches
the `utf8` expectation and is quarantined with that reason instead of stopping `to_pandas` with a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from logicflow.errors import DataError

logger = logging.getLogger(__name__)

UNIFIED = "messages"  # table name of the unified rows (the suite and Data Docs page use it)
SPLITS = ("train", "validation")
KEY = "row_id"  # unique row key added to every frame; GX reports failing rows by it
SOURCES = ("openo1", "openthoughts", "openr1_math", "chat", "replay")  # replay: see logicflow.datasets.replay
THINKING_OPTIONAL = ("chat", "replay")  # sources whose rows may come without reasoning


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = True  # may a row hold null here (checked as a row-level expectation when False)

    @property
    def nested(self) -> bool:
        return pa.types.is_list(self.type) or pa.types.is_large_list(self.type)


MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
UNIFIED_COLUMNS = (
    Column("id", pa.string(), nullable=False),
    Column("source", pa.string(), nullable=False),
    Column("messages", pa.list_(MESSAGE), nullable=False),
    Column("thinking", pa.string(), nullable=False),
    Column("answer", pa.string()),
)
# Only the raw columns the checks read (DATASETS.md lists the rest); extra columns are ignored.
RAW_COLUMNS: dict[str, tuple[Column, ...]] = {
    "openo1": (
        Column("instruction", pa.string(), nullable=False),
        Column("output", pa.string(), nullable=False),
    ),
    "openthoughts": (
        Column("system", pa.string()),
        Column(
            "conversations",
            pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())])),
            nullable=False,
        ),
    ),
    "openr1_math": (
        Column("problem", pa.string(), nullable=False),
        Column("answer", pa.string()),
        Column("uuid", pa.string()),
        Column("generations", pa.list_(pa.string())),
        Column(
            "messages", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())])), nullable=False
        ),
    ),
}
RAW_COLUMNS["chat"] = (Column("id", pa.string()),)  # `messages` or `conversations`: checked when parsed
# Per-generation list columns of openr1_math that must have as many entries as `generations` (when present).
OPENR1_GENERATION_LISTS = (
    "is_reasoning_complete",
    "correctness_math_verify",
    "correctness_llama",
    "finish_reasons",
)


def read_parquet(path: Path, produced_by: str = "the data stage (`logicflow stage data`)") -> pa.Table:
    """Read `path`; a missing or unreadable file is a DataError that names it and what produces it."""
    if not path.exists():
        raise DataError(f"{path}: not found; run {produced_by} first")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable parquet file ({exc}); re-run {produced_by}") from None


def _repair_array(array: pa.Array) -> pa.Array:
    """`array` with each invalid UTF-8 string decoded with U+FFFD replacements (any list/struct nesting)."""
    try:
        array.validate(full=True)
        return array
    except pa.ArrowInvalid:
        pass
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        raw = array.cast(pa.large_binary() if pa.types.is_large_string(kind) else pa.binary())
        values = [None if v is None else v.decode("utf-8", errors="replace") for v in raw.to_pylist()]
        return pa.array(values, type=kind)
    array = pa.concat_arrays([array]) if array.offset else array  # offsets below assume an unsliced array
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        cls = pa.LargeListArray if pa.types.is_large_list(kind) else pa.ListArray
        values = _repair_array(array.values)
        return cls.from_arrays(
            array.offsets, values, type=kind, mask=array.is_null() if array.null_count else None
        )
    if pa.types.is_struct(kind):
        fields = [_repair_array(array.field(i)) for i in range(kind.num_fields)]
        return pa.StructArray.from_arrays(
            fields, fields=list(kind), mask=array.is_null() if array.null_count else None
        )
    return array


def repair_utf8(table: pa.Table, path: Path) -> tuple[pa.Table, int]:
    """Replace invalid UTF-8 (which `to_pandas` cannot convert) by U+FFFD; returns the table and how many
    columns needed it. The replaced rows then fail the `utf8` expectation and are quarantined."""
    try:
        table.validate(full=True)
        return table, 0
    except pa.ArrowInvalid:
        pass
    repaired = 0
    columns = []
    for name in table.column_names:
        column = table.column(name)
        chunks = [_repair_array(chunk) for chunk in column.chunks]
        if any(new is not old for new, old in zip(chunks, column.chunks, strict=True)):
            repaired += 1
            logger.warning(
                "%s: column %r holds invalid UTF-8; replaced with U+FFFD, the rows will be quarantined",
                path,
                name,
            )
        columns.append(pa.chunked_array(chunks, type=column.type))
    return pa.Table.from_arrays(columns, schema=table.schema), repaired


def _type_matches(actual: pa.DataType, expected: pa.DataType) -> bool:
    if pa.types.is_null(actual):
        return True  # an all-null column; its null rows are checked by the not-null expectations
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if pa.types.is_list(expected):
        return (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and _type_matches(
            actual.value_type, expected.value_type
        )
    if pa.types.is_struct(expected):
        if not pa.types.is_struct(actual):
            return False
        names = {f.name: f.type for f in actual}
        return all(f.name in names and _type_matches(names[f.name], f.type) for f in expected)
    return actual.equals(expected)


def nested_type_problems(table: pa.Table, columns: tuple[Column, ...], path: Path) -> list[str]:
    """List/struct column types, which pandas (and so GX) cannot see: one sentence per mismatching column."""
    problems = []
    for column in columns:
        if column.nested and column.name in table.column_names:
            actual = table.schema.field(column.name).type
            if not _type_matches(actual, column.type):
                problems.append(f"{path}: column {column.name!r} has type {actual}, expected {column.type}")
    return problems


def schema_frame(table: pa.Table, columns: tuple[Column, ...]) -> pa.Table:
    """The columns a GX schema suite looks at, under their own names: scalar ones as they are, each list
    column as its length (null where the list is null) so presence and nulls are checked without converting
    nested values to Python (their element types are checked by `check_nested_types`)."""
    arrays = {}
    for column in columns:
        if column.name not in table.column_names:
            continue
        array = table.column(column.name)
        if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
            array = pc.list_value_length(array)
        arrays[column.name] = array
    return pa.table(arrays) if arrays else pa.table({"__empty__": pa.nulls(table.num_rows)})
