"""The comparison study's report built from known numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from logicflow.comparison.report import Delta, MethodResult, Score, table, write_report

BASE = MethodResult("base", 0, 134_515_008, 0, 0, 0, 269_060_000, {"math": Score(0.10, 0.05, 0.16, 100)})
LORA = MethodResult(
    "lora", 4_884_480, 134_515_008, 252.0, 412.4, 1_900_000_000, 269_100_000,
    {"math": Score(0.31, 0.22, 0.40, 100)}, {"math": Delta(0.21, 0.12, 0.30, 0.00004)},
)  # fmt: skip


def test_table_rows_from_known_numbers() -> None:
    lines = table([BASE, LORA]).splitlines()
    assert lines[0] == (
        "| method | trainable params | train time | tokens/s | peak memory | size | math [95% CI] "
        "| Δ math vs base [95% CI], p |"
    )
    assert lines[2] == "| base | 0 | – | – | – | 269.1 MB | 0.100 [0.050, 0.160] (n=100) | – |"
    assert lines[3] == (
        "| lora | 4.88 M (3.63%) | 4.2 min | 412 | 1.9 GB | 269.1 MB | 0.310 [0.220, 0.400] (n=100) "
        "| +0.210 [+0.120, +0.300], p=4e-05 |"
    )


def test_report_files_and_the_baseline_first(tmp_path: Path) -> None:
    written = write_report([BASE, LORA], tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["math_vs_params.png", "math_vs_time.png", "results.json", "table.md"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written if p.suffix == ".png")
    assert json.loads((tmp_path / "results.json").read_text())[1]["deltas"]["math"]["p"] == 0.00004
    with pytest.raises(ValueError, match="first row must be the untouched base"):
        write_report([LORA, BASE], tmp_path)
