"""The validate stage's inputs: the unified files and raw datasets as read, and the schema gate they pass
(columns and types, file by file) before anything is derived from them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from logicflow.config import Config
from logicflow.errors import DataError
from logicflow.paths import Paths
from logicflow.validation import suites, unparsed
from logicflow.validation.engine import CheckResult, GXEngine
from logicflow.validation.tables import (
    KEY,
    RAW_COLUMNS,
    SPLITS,
    UNIFIED,
    UNIFIED_COLUMNS,
    nested_type_problems,
    read_parquet,
    repair_utf8,
    schema_frame,
)
from logicflow.validation.timing import Timer

logger = logging.getLogger(__name__)


@dataclass
class Inputs:
    unified_files: dict[str, tuple[Path, pa.Table]]  # split -> (file, rows), as read
    splits: np.ndarray  # split name per unified row, in concatenation order
    raw: dict[str, pa.Table]
    raw_files: dict[str, Path]
    raw_repaired: dict[str, int]  # columns whose invalid UTF-8 was replaced, per raw dataset
    unparsed: pa.Table  # upstream rows the data stage could not convert (see validation.unparsed)
    unified: pa.Table | None = None  # the files concatenated, once their schemas passed (`join_unified`)


def read_inputs(cfg: Config, paths: Paths) -> Inputs:
    """Every split's unified file (train required), each raw dataset and the set-aside rows; invalid UTF-8
    replaced so its row is quarantined, not a crash."""
    unified_files, splits = {}, []
    for split in SPLITS:
        path = paths.messages(split)
        if split != "train" and not path.exists():
            logger.warning("%s not found: no %s rows to validate", path, split)
            continue
        table, _ = repair_utf8(read_parquet(path), path)
        unified_files[split] = (path, table)
        splits.append(np.full(table.num_rows, split, dtype=object))
    raw, raw_files, repaired = {}, {}, {}
    for name in cfg.data.datasets:
        raw_files[name] = paths.raw(name)
        raw[name], repaired[name] = repair_utf8(read_parquet(raw_files[name]), raw_files[name])
    unparsed_rows = unparsed.read(paths.unparsed)
    return Inputs(unified_files, np.concatenate(splits), raw, raw_files, repaired, unparsed_rows)


def table_problems(results: list[CheckResult], path: Path) -> list[str]:
    """A failed table-level check as a sentence naming the file and the column."""
    problems = []
    for result in results:
        if result.success or not result.check.table_level:
            continue
        kind = result.check.name.split(".")[-1]
        if kind.startswith("column_"):
            problems.append(f"{path}: column {kind.removeprefix('column_')!r} is missing")
        elif result.error:
            continue  # a type check on a missing column: reported by its column check
        else:
            problems.append(
                f"{path}: column {kind.removeprefix('type_')!r} has type {result.observed}, expected strings"
            )
    return problems


def schema_gate(engine: GXEngine, inputs: Inputs, timer: Timer) -> None:
    """Columns and types, file by file (GX, then the nested list/struct types GX cannot see): one DataError
    naming every bad file and column, before anything is derived from them."""
    problems: list[str] = []
    tables = [
        (f"{UNIFIED}.{split}", path, table, UNIFIED_COLUMNS, suites.unified_schema())
        for split, (path, table) in inputs.unified_files.items()
    ]
    tables += [
        (name, inputs.raw_files[name], table, RAW_COLUMNS[name], suites.raw_schema(name))
        for name, table in inputs.raw.items()
    ]
    with timer("schema"):
        for suite, path, table, columns, schema_checks in tables:
            frame = schema_frame(table, columns).to_pandas()
            frame.insert(0, KEY, [f"{suite}#{i}" for i in range(len(frame))])
            problems += table_problems(engine.gate(suite, frame, schema_checks), path)
        for _, path, table, columns, _ in tables:
            problems += nested_type_problems(table, columns, path)
        if problems:
            raise DataError("; ".join(problems) + "; fix the file or re-run the data stage")


def join_unified(inputs: Inputs) -> pa.Table:
    """The unified files as one table, in `inputs.splits` order (after the schema gate); no rows at all is a
    DataError."""
    table = pa.concat_tables([t for _, t in inputs.unified_files.values()], promote_options="permissive")
    if table.num_rows == 0:
        files = ", ".join(str(path) for path, _ in inputs.unified_files.values())
        raise DataError(f"{files}: no rows to validate; re-run the data stage")
    return table
