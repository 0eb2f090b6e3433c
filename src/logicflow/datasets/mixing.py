"""How many rows each dataset gives, and how the rows are mixed and split into train and validation.

counts = target_counts(cfg.data)       # {"openo1": 200, "openthoughts": 200, "openr1_math": 200}
train, validation = mix(tables, seed=0, val_fraction=0.05)
"""

from __future__ import annotations

import random

import pyarrow as pa

from logicflow.config import DataConfig
from logicflow.errors import DataError


def _largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    weight_sum = sum(weights.values())
    exact = {name: total * weight / weight_sum for name, weight in weights.items()}
    counts = {name: int(value) for name, value in exact.items()}
    for name in sorted(weights, key=lambda n: counts[n] - exact[n])[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def target_counts(data: DataConfig) -> dict[str, int]:
    """Rows per dataset: `data.max_samples` split by weight (largest remainder, so the counts sum exactly);
    a dataset over its own `max_samples` is capped there and the rest is split among the others."""
    fixed: dict[str, int] = {}
    pending = {name: source.weight for name, source in data.datasets.items()}
    while pending:
        shares = _largest_remainder(data.max_samples - sum(fixed.values()), pending)
        over = [n for n in pending if (cap := data.datasets[n].max_samples) is not None and shares[n] > cap]
        if not over:
            fixed |= shares
            break
        for name in over:
            fixed[name] = data.datasets[name].max_samples
            del pending[name]
    return {name: fixed[name] for name in data.datasets}


def mix(tables: list[pa.Table], seed: int, val_fraction: float) -> tuple[pa.Table, pa.Table]:
    """Shuffle all rows with `seed`; the first `val_fraction` (at least 1 row when > 0) is validation."""
    mixed = pa.concat_tables(tables)
    if mixed.num_rows == 0:
        raise DataError("no rows to mix: every dataset came back empty; check data.datasets and data.source")
    order = list(range(mixed.num_rows))
    random.Random(seed).shuffle(order)
    mixed = mixed.take(order)
    n_val = min(max(1, round(mixed.num_rows * val_fraction)), mixed.num_rows - 1) if val_fraction > 0 else 0
    return mixed.slice(n_val), mixed.slice(0, n_val)
