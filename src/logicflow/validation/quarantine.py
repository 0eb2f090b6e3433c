"""Quarantine: the reasons of each unified row (the checks it failed, and those of the raw rows it came
from), then the clean files and the quarantine file written from them, counted as they are on disk."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from logicflow.validation import report, unparsed
from logicflow.validation.engine import CheckResult
from logicflow.validation.inputs import Inputs
from logicflow.validation.tables import KEY, SPLITS


def positions(keys: pd.Index, result: CheckResult, frame: pd.DataFrame) -> np.ndarray:
    """The rows of `frame` (by position) that failed `result`; a keep-first check spares each first one."""
    found = np.sort(keys.get_indexer(result.unexpected_keys))
    found = found[found >= 0]
    if result.check.keep_first and len(found):
        values = frame[result.check.column].iloc[found]
        found = found[values.duplicated(keep="first").to_numpy()]
    return found


def row_reasons(frame: pd.DataFrame, results: list[CheckResult]) -> list[list[str]]:
    """Per unified row, the names of the row-level checks it failed (empty: clean)."""
    keys = pd.Index(frame[KEY])
    reasons: list[list[str]] = [[] for _ in range(len(frame))]
    for result in results:
        if result.failed_rows:
            for pos in positions(keys, result, frame):
                reasons[pos].append(result.check.name)
    return reasons


def raw_reasons(
    frame: pd.DataFrame,
    raw_frames: dict[str, pd.DataFrame],
    raw_results: dict[str, list[CheckResult]],
    reasons: list[list[str]],
) -> dict[str, dict[str, Any]]:
    """Send the unified row made from a failing raw row (same source and prompt) to quarantine with the raw
    check's name. A prompt shared by several raw rows only passes on the failures all of them have."""
    stats: dict[str, dict[str, Any]] = {}
    for name, rframe in raw_frames.items():
        keys = pd.Index(rframe[KEY])
        failed = [
            (int(p), r.check.name)
            for r in raw_results.get(name, [])
            if r.failed_rows
            for p in positions(keys, r, rframe)
        ]
        by_check = Counter(check for _, check in failed)
        failed_rows = {p for p, _ in failed}
        sent = 0
        unmatched = len(failed_rows)
        if failed:
            hits = pd.DataFrame(failed, columns=["raw", "reason"])
            hits["prompt_key"] = rframe["prompt_key"].to_numpy()[hits["raw"].to_numpy()]
            hits = hits.dropna(subset=["prompt_key"])
            rows_per_key = rframe.groupby("prompt_key").size()
            per = hits.drop_duplicates(["raw", "reason"]).groupby(["prompt_key", "reason"]).size().rename("n")
            per = per.reset_index()
            unanimous = per[per["n"].to_numpy() == rows_per_key.reindex(per["prompt_key"]).to_numpy()]
            targets = frame.loc[frame["source"] == name, ["prompt_key"]].reset_index(names="pos")
            matched = targets.merge(unanimous[["prompt_key", "reason"]], on="prompt_key")
            for pos, reason in zip(matched["pos"].to_numpy(), matched["reason"], strict=True):
                if reason not in reasons[pos]:
                    reasons[pos].append(reason)
            sent = int(matched["pos"].nunique())
            matched_keys = set(matched["prompt_key"])
            unmatched = len(
                {p for p, key in zip(hits["raw"], hits["prompt_key"], strict=True) if key not in matched_keys}
                | (failed_rows - set(hits["raw"]))
            )
        stats[name] = {
            "rows": len(rframe),
            "failed_rows": len(failed_rows),
            "failed_by_check": report.counts(by_check),
            "unified_rows_quarantined": sent,
            "failed_rows_not_in_unified": unmatched,
        }
    return stats


def write_outputs(
    inputs: Inputs, reasons: list[list[str]], clean_files: dict[str, Path], quarantine_file: Path
) -> dict[str, int]:
    """Rows without reasons to their split's clean file (columns unchanged); the others, with `split` and
    `reasons`, and the set-aside upstream rows to the quarantine file. Returns the rows per file on disk,
    keyed by split and `quarantine`."""
    quarantined = np.array([bool(r) for r in reasons], dtype=bool)
    table = inputs.unified
    for split in SPLITS:
        rows = np.flatnonzero(~quarantined & (inputs.splits == split))
        pq.write_table(table.take(pa.array(rows, pa.int64())), clean_files[split], compression="zstd")
    rows = np.flatnonzero(quarantined)
    bad = table.take(pa.array(rows, pa.int64()))
    bad = bad.append_column("split", pa.array(inputs.splits[rows].tolist(), pa.string()))
    bad = bad.append_column("reasons", pa.array([reasons[i] for i in rows], pa.list_(pa.string())))
    bad = bad.append_column("detail", pa.nulls(len(rows), pa.string()))
    bad = bad.append_column("raw", pa.nulls(len(rows), pa.string()))
    bad = pa.concat_tables([bad, unparsed.quarantine_rows(inputs.unparsed, bad.schema)])
    pq.write_table(bad, quarantine_file, compression="zstd")
    # count what is on disk, not what was meant to be written
    written = {split: pq.read_metadata(clean_files[split]).num_rows for split in SPLITS}
    written["quarantine"] = pq.read_metadata(quarantine_file).num_rows
    return written
