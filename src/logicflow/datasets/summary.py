"""`reports/data.json`: what the data stage made and from where, the record later stages and the card read.

{"source", "difficulty", "format", "datasets": {<name>: lineage and row accounting}, "replay", "rows": {...}}
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from logicflow.config import DataConfig
from logicflow.datasets.prepare import PreparedDataset
from logicflow.datasets.sources import Source


def data_summary(
    source: Source,
    data: DataConfig,
    datasets: dict[str, PreparedDataset],
    replay: dict[str, Any] | None,
    train: pa.Table,
    validation: pa.Table,
) -> dict[str, Any]:
    """The data report: each dataset's entry, the replay report (None without replay) and the split sizes."""
    return {
        "source": source,
        "difficulty": data.difficulty,
        "format": data.format,  # how the reasoning is rendered: thinking | react
        "datasets": {name: prepared.summary for name, prepared in datasets.items()},
        "replay": replay,
        "rows": {
            "train": train.num_rows,
            "validation": validation.num_rows,
            "heldout": data.heldout_size,
            "total": train.num_rows + validation.num_rows,
        },
    }
