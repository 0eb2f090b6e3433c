"""Upstream rows the data stage could not convert (`data/messages/unparsed.parquet`), bound for quarantine.

Each such row carries its dataset, upstream index/id, a reason code (`parse.thought_unclosed`, ...), a line
naming the field and the row itself as JSON text. The validate stage counts them in `rows_in`, shows them in
Data Docs through the `parsed` check (one row per upstream row: null reason = converted) and writes them to
`data/quarantine/rows.parquet` beside the rows that failed a check, so `upstream rows = clean + quarantined`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from logicflow.validation.tables import KEY, read_parquet

REJECTED_COLUMNS = ("dataset", "index", "upstream_id", "reason", "detail", "raw")
SPLIT = "unparsed"  # the quarantine `split` of these rows


def read(path: Path) -> pa.Table:
    """The set-aside rows (an empty table when the data stage set none aside, or predates the file)."""
    if not path.exists():
        return pa.table({name: pa.array([], pa.string()) for name in REJECTED_COLUMNS})
    return read_parquet(path).select(list(REJECTED_COLUMNS))


def parse_frame(sources: np.ndarray, unparsed: pa.Table) -> pd.DataFrame:
    """One row per upstream row: the converted ones (by the `source` of their unified row) with a null
    `parse_reason`, then the set-aside ones with theirs. Replay rows are not upstream rows."""
    converted = sources[sources != "replay"]
    frame = pd.DataFrame(
        {
            "dataset": np.concatenate(
                [converted, np.array(unparsed.column("dataset").to_pylist(), dtype=object)]
            ),
            "parse_reason": [None] * len(converted) + unparsed.column("reason").to_pylist(),
        }
    )
    frame.insert(0, KEY, [f"upstream#{i}" for i in range(len(frame))])
    return frame


def quarantine_rows(unparsed: pa.Table, schema: pa.Schema) -> pa.Table:
    """The set-aside rows in the quarantine file's `schema` (unified columns empty, `raw` holding the row)."""
    rows = unparsed.to_pylist()
    return pa.Table.from_pylist(
        [
            {
                "id": f"{r['dataset']}-{r['upstream_id'] or 'row' + str(r['index'])}",
                "source": r["dataset"],
                "messages": [],
                "thinking": "",
                "answer": None,
                "split": SPLIT,
                "reasons": [r["reason"]],
                "detail": r["detail"],
                "raw": r["raw"],
            }
            for r in rows
        ],
        schema=schema,
    )
