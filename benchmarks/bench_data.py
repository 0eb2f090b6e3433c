"""Benchmark: generate, convert and mix 100,000 rows with the data stage (target: under 60 s here).

    python benchmarks/bench_data.py [--rows 100000]

Prints one JSON line: rows, seconds, rows/s, and the time split between generating rows in the three
upstream schemas and the rest of the stage (parquet round trip, conversion, mixing, writing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from logicflow.config import load_config
from logicflow.datasets import generator
from logicflow.paths import Paths
from logicflow.stages import data

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    # the hard mix: 100k distinct problems need its larger space; replay rows are a model's work, not data's
    overrides = [
        "data.source=offline",
        f"data.max_samples={args.rows}",
        "data.difficulty=hard",
        "data.replay.rows=0",
    ]
    cfg = load_config(ROOT / "params.yaml", "cpu", overrides)

    generating = 0.0
    real_generate = generator.generate

    def timed_generate(*a, **kw):  # noqa: ANN002, ANN003 - pass-through wrapper that only times the call
        nonlocal generating
        start = time.perf_counter()
        try:
            return real_generate(*a, **kw)
        finally:
            generating += time.perf_counter() - start

    data.generate = timed_generate
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = data.run(cfg, Paths.from_root(tmp))
        seconds = time.perf_counter() - start
    rows = result.train_rows + result.validation_rows
    print(
        json.dumps(
            {
                "bench": "data",
                "rows": rows,
                "seconds": round(seconds, 2),
                "rows_per_s": round(rows / seconds),
                "generate_s": round(generating, 2),
                "convert_mix_write_s": round(seconds - generating, 2),
                "target_s": 60,
            }
        )
    )


if __name__ == "__main__":
    main()
