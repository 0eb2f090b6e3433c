"""Benchmark: generate, convert and mix 100,000 rows with the data stage (target: under 60 s here).

    python benchmarks/bench_data.py [--rows 100000] [--malformed 0.05]

Prints one JSON line: rows, seconds, rows/s, and the time split between generating rows in the three
upstream schemas and the rest of the stage (parquet round trip, conversion, mixing, writing).
With `--malformed F`, the generated rows are first written as the user's own JSONL files
(`data.datasets.<name>.path`) with a share F of them damaged the way real upstream rows are (unclosed tags,
missing fields, wrong types), so the timing covers reading, typing row by row and quarantining them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from logicflow.config import load_config
from logicflow.datasets import generator, heldout, sources
from logicflow.paths import Paths
from logicflow.stages import data

ROOT = Path(__file__).resolve().parents[1]


DAMAGE = {  # one real-world defect per dataset, applied to every k-th row
    "openo1": lambda row: row | {"output": row["output"].split("</Thought>")[0]},  # <Thought> never closed
    "openthoughts": lambda row: row | {"conversations": row["conversations"][:1]},  # no assistant turn
    "openr1_math": lambda row: row | {"problem": None, "correctness_count": "two"},  # null + wrong type
}


def write_damaged_files(root: Path, rows: int, share: float) -> list[str]:
    """Generated rows as JSONL in data/local, a `share` of them damaged; returns the overrides using them."""
    from logicflow.datasets import get_adapter

    (root / "data" / "local").mkdir(parents=True)
    every = max(1, round(1 / share))
    settings = []
    for i, (name, damage) in enumerate(DAMAGE.items()):
        table = get_adapter(name).synthesize(
            generator.generate(rows // 3, seed=i, split="train", difficulty="hard")
        )
        lines = (
            json.dumps(damage(row) if k % every == 0 else row) for k, row in enumerate(table.to_pylist())
        )
        (root / "data" / "local" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        settings.append(f"data.datasets.{name}.path=data/local/{name}.jsonl")
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--malformed", type=float, default=0.0)
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

    sources.generate = heldout.generate = timed_generate  # the two places the data stage generates rows
    with tempfile.TemporaryDirectory() as tmp:
        if args.malformed:
            overrides += write_damaged_files(Path(tmp), args.rows, args.malformed)
            cfg = load_config(ROOT / "params.yaml", "cpu", overrides)
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
                "malformed_share": args.malformed,
                "set_aside": result.rejected,
                "target_s": 60,
            }
        )
    )


if __name__ == "__main__":
    main()
