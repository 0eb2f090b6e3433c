"""T8: 5% of the unified rows damaged across eight classes the way real data is broken; the validate stage
quarantines every damaged row with a reason (per-class recall) and no undamaged one (precision)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from logicflow.config import build_config
from logicflow.paths import Paths
from logicflow.stages.validate import run
from logicflow.validation import synth

pytestmark = pytest.mark.faults

MODEL_ID = "logicflow/tiny-random-llama"
ROWS = 480
SHARE = 0.05
DUPLICATES = ("exact_duplicate", "near_duplicate")  # a copy of a row is appended


def original(copy_id: str) -> str:
    return copy_id.rsplit("-", 1)[0]


def test_malformed_rows_are_quarantined_by_class(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    paths = Paths.from_root(tmp_path / "project")
    shutil.copytree(synth.build_tokenizer(tmp_path / "tok", MODEL_ID), paths.base_model)
    rows = synth.make_rows(ROWS, seed=11)
    heldout = [f"Held-out question {i}: " + synth.phrase(random.Random(i), 16) for i in range(40)]
    damaged = synth.damage_rows(rows["unified"], heldout, share=SHARE, seed=11)
    synth.write_project(paths, rows, heldout)
    cfg = build_config(
        {}, None, [f"model.id={MODEL_ID}", "train.cutoff_len=1024", "validate.max_quarantine_fraction=0.5"]
    )
    run(cfg, paths)

    quarantined = {r["id"] for r in pq.read_table(paths.quarantine_rows).to_pylist()}
    pairs = {copy: original(copy) for kind in DUPLICATES for copy in damaged[kind]}

    def caught(row_id: str) -> bool:
        """A damaged row is quarantined; of a duplicate pair exactly one (whichever comes later)."""
        if row_id in pairs:
            return (row_id in quarantined) != (pairs[row_id] in quarantined)
        return row_id in quarantined

    recall = {kind: round(sum(map(caught, ids)) / len(ids), 3) for kind, ids in damaged.items() if ids}
    expected = {i for ids in damaged.values() for i in ids} | set(pairs.values())
    flagged_clean = sorted(quarantined - expected)
    reliability(
        row="T8",
        fault=f"{SHARE:.0%} of {ROWS} rows damaged across {len(damaged)} classes",
        outcome="per-class recall of the quarantine; undamaged rows quarantined",
        **{f"recall_{kind}": value for kind, value in recall.items()},
        clean_rows_quarantined=len(flagged_clean),
    )
    assert len(recall) == len(synth.DAMAGE_CLASSES)
    assert recall == dict.fromkeys(recall, 1.0), recall
    assert flagged_clean == [], flagged_clean[:5]
