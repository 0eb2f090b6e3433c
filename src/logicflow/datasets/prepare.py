"""One dataset's share of the data stage, from its upstream sample to what the stage writes.

    prepared = prepare_dataset(adapter, upstream_sample(...), paths.raw(adapter.name))
    prepared.raw        # data/raw/<name>.parquet bytes, in the upstream schema
    prepared.unified    # its unified rows; prepared.set_aside: rows for quarantine, with reasons
    prepared.summary    # its entry in reports/data.json

The raw table is round-tripped through its parquet bytes before conversion, so the conversion reads exactly
what is written.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from logicflow.datasets.base import DatasetAdapter, convert_table, parquet_bytes, read_parquet, upstream_rows
from logicflow.datasets.sources import UpstreamSample

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedDataset:
    raw: bytes
    unified: pa.Table  # UNIFIED_SCHEMA
    set_aside: list[dict[str, Any]]  # REJECTED_SCHEMA rows: they reach data/quarantine through validate
    summary: dict[str, Any]


def prepare_dataset(adapter: DatasetAdapter, sample: UpstreamSample, raw_path: Path) -> PreparedDataset:
    """Check the sampled rows against the upstream schema, convert them, and account for every row."""
    where = sample.lineage.get("path") or str(raw_path)  # the user's file, or the raw file it becomes
    upstream = upstream_rows(adapter, sample.rows, where, sample.positions)
    raw = parquet_bytes(upstream.table)
    converted = convert_table(adapter, read_parquet(raw_path, raw), str(raw_path), upstream.indices)
    set_aside = upstream.rejected + converted.rejected
    logger.info(
        "data: %s: %d rows in, %d converted, %d set aside for quarantine, %d tag variants normalised",
        adapter.name,
        len(sample.rows),
        converted.unified.num_rows,
        len(set_aside),
        upstream.normalised,
    )
    summary = {
        **sample.lineage,
        "rows_in": len(sample.rows),
        "rows": converted.unified.num_rows,
        "rejected": len(set_aside),
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in set_aside).items())),
        "tags_normalised": upstream.normalised,
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
    }
    return PreparedDataset(raw, converted.unified, set_aside, summary)
