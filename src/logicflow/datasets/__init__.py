"""Upstream reasoning datasets, one adapter each, and the offline problem generator.

    adapter = get_adapter("openr1_math")
    converted = convert_table(adapter, adapter.synthesize(generate(100, seed=0)), "generated")
    converted.unified, converted.rejected   # unified rows; rows set aside with a reason code

See `base` for the unified row schema and `generator` for the offline problems. The data stage's steps:
`sources` (Hub, offline generator or the user's file), `prepare` (one dataset's rows checked and converted),
`replay` (the base model's own answers), `mixing` (counts per dataset, the train/validation split),
`heldout` (the eval's held-out questions) and `summary` (reports/data.json).
"""

from __future__ import annotations

from logicflow.datasets import chat, openo1, openr1_math, openthoughts
from logicflow.datasets.base import (
    REJECTED_SCHEMA,
    UNIFIED_SCHEMA,
    DatasetAdapter,
    Parsed,
    conform,
    convert_table,
    parquet_bytes,
    read_parquet,
    upstream_rows,
)
from logicflow.errors import ConfigError

ADAPTERS: dict[str, DatasetAdapter] = {
    m.ADAPTER.name: m.ADAPTER for m in (openo1, openthoughts, openr1_math, chat)
}


def get_adapter(name: str) -> DatasetAdapter:
    """The adapter registered as `name`; an unknown name lists the valid ones."""
    if name not in ADAPTERS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(ADAPTERS)}")
    return ADAPTERS[name]


__all__ = [
    "ADAPTERS",
    "REJECTED_SCHEMA",
    "UNIFIED_SCHEMA",
    "DatasetAdapter",
    "Parsed",
    "conform",
    "convert_table",
    "get_adapter",
    "parquet_bytes",
    "read_parquet",
    "upstream_rows",
]
