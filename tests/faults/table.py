"""Render reports/reliability.jsonl (the fault suite's record) as the Markdown table of docs/reliability.md.

make test-faults && python tests/faults/table.py      # the latest result of each test, by row
"""

from __future__ import annotations

import json
from pathlib import Path

from logicflow.paths import Paths

ROOT = Path(__file__).resolve().parents[2]
SKIP = {"row", "fault", "outcome", "test", "passed", "date"}


def _row_number(row: str) -> int:
    """T2 before T11; rows without a number (the escape corpus) first."""
    return int(row[1:]) if row[1:].isdigit() else 0


def table(lines: list[dict]) -> str:
    latest = {line["test"]: line for line in lines}  # later lines win
    rows = ["| row | fault injected | what happened | figures | result | when |", "|---|---|---|---|---|---|"]
    for line in sorted(latest.values(), key=lambda r: (_row_number(r["row"]), r["test"])):
        figures = ", ".join(f"{k} = {v}" for k, v in sorted(line.items()) if k not in SKIP)
        result = "pass" if line["passed"] else "**FAIL**"
        cells = [line["row"], line["fault"], line["outcome"], figures, result, line["date"]]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    log = Paths.from_root(ROOT).reliability_log
    print(table([json.loads(line) for line in log.read_text().splitlines() if line.strip()]))
