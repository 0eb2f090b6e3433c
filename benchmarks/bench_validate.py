"""Benchmark of the validate stage: 100,000 unified rows, every check, decontamination against ~2,000 prompts.

    .venv/bin/python benchmarks/bench_validate.py                 # 100k rows, prints one JSON line
    .venv/bin/python benchmarks/bench_validate.py --rows 20000 --keep /tmp/bench-validate

Rows are realistic where the project can make them: the offline generator's problems written by each dataset
adapter in its upstream schema and converted to unified rows exactly as the data stage does (falling back to
`logicflow.validation.synth` rows if the datasets package is missing). About 2% of rows are then damaged the
way real data is (exact and near duplicates, prompts copied from the held-out set, wrong role order, empty
turns, leftover tags, NUL bytes, template tokens, an overlong row). The eval side is the generated held-out
set (2,000 - 164 questions) plus HumanEval's 164 prompts. Token counts use the configured base model's
tokenizer from `models/base` (SmolLM2-135M-Instruct by default), linked into the temporary project.

Reported: GX import and context creation time, the stage's wall time and rows/s, the stage's own time per
step, and per check family its derive time plus the time GX takes for that family's expectations alone
(measured after the run on the same frame, without Data Docs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
ROOT = Path(__file__).resolve().parents[1]
EVAL_PROMPTS = 2000
HUMANEVAL = 164


def import_gx() -> dict[str, float]:
    """Seconds to import Great Expectations and to create an ephemeral context (cold, in this process)."""
    started = time.perf_counter()
    import great_expectations as gx

    imported = time.perf_counter()
    gx.get_context(mode="ephemeral")
    return {
        "gx_import_s": round(imported - started, 3),
        "gx_context_s": round(time.perf_counter() - imported, 3),
        "gx_setup_s": round(time.perf_counter() - started, 3),
    }


def generated_rows(n: int, seed: int) -> tuple[Any, dict[str, Any], list[str]]:
    """(unified table, raw tables, held-out questions) from the generator and the dataset adapters."""
    import pyarrow as pa

    from logicflow.datasets import convert_table, get_adapter
    from logicflow.datasets.generator import generate

    problems = generate(n, seed=seed, split="train", difficulty="hard")  # long rows; more than easy holds
    names = ("openo1", "openthoughts", "openr1_math")
    raw, unified = {}, []
    for i, name in enumerate(names):
        adapter = get_adapter(name)
        raw[name] = adapter.synthesize(problems[i::3])
        unified.append(convert_table(adapter, raw[name], f"generated {name}").unified)
    heldout = [p.question for p in generate(EVAL_PROMPTS - HUMANEVAL, seed, "heldout", difficulty="hard")]
    return pa.concat_tables(unified), raw, heldout


def synth_rows(n: int, seed: int) -> tuple[Any, dict[str, Any], list[str]]:
    import pyarrow as pa

    from logicflow.validation import synth

    rows = synth.make_rows(n, seed=seed)
    raw = {
        name: pa.Table.from_pylist(rows[name], schema=schema) for name, schema in synth.RAW_SCHEMAS.items()
    }
    heldout = [
        f"Held-out {i}: " + synth.phrase(random.Random(i), 14) for i in range(EVAL_PROMPTS - HUMANEVAL)
    ]
    return pa.Table.from_pylist(rows["unified"], schema=synth.UNIFIED_SCHEMA), raw, heldout


def write_project(root: Path, n: int, seed: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from logicflow.paths import Paths

    paths = Paths.from_root(root)
    try:
        table, raw, heldout = generated_rows(n, seed)
        origin = "logicflow.datasets generator + adapters"
    except ImportError:
        table, raw, heldout = synth_rows(n, seed)
        origin = "logicflow.validation.synth"
    rows = table.to_pylist()
    from logicflow.validation.synth import damage_rows

    damaged = {kind: len(ids) for kind, ids in damage_rows(rows, heldout, share=0.02, seed=seed).items()}
    rows[0]["thinking"] = "step " * 20_000  # one very long row
    damaged["overlong"] = 1
    random.Random(seed).shuffle(rows)
    cut = len(rows) * 95 // 100
    for split, part in (("train", rows[:cut]), ("validation", rows[cut:])):
        paths.messages(split).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(part, schema=table.schema), paths.messages(split))
    for name, raw_table in raw.items():
        paths.raw(name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(raw_table, paths.raw(name))
    paths.heldout_dir.mkdir(parents=True, exist_ok=True)
    paths.heldout_math.write_text(
        "".join(
            json.dumps({"id": f"h{i}", "question": q, "answer": "0", "kind": "generated"}) + "\n"
            for i, q in enumerate(heldout)
        )
    )
    return {"rows": len(rows), "origin": origin, "damaged": damaged, "heldout_prompts": len(heldout)}


def link_base_model(paths: Any) -> str:
    from logicflow.paths import user_cache_dir

    for candidate in (ROOT / "models" / "base", *sorted((user_cache_dir() / "models").glob("*SmolLM2*"))):
        if (candidate / "tokenizer.json").exists():
            paths.base_model.parent.mkdir(parents=True, exist_ok=True)
            paths.base_model.symlink_to(candidate, target_is_directory=True)
            return str(candidate)
    raise SystemExit(
        "no base model with a tokenizer in models/base or the machine cache: run `logicflow model fetch`"
    )


def family_gx_times(captured: dict[str, Any], cfg: Any) -> dict[str, float]:
    """GX time of each family's expectations alone, on the frames the stage validated (no Data Docs)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from logicflow.validation import suites
    from logicflow.validation.tables import KEY

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("bench")
    frames = {
        "messages": (
            captured["frame"],
            suites.unified_content(cfg.train.cutoff_len, cfg.validate_.overlong, cfg.validate_.dedupe),
        )
    }
    for name, frame in captured["raw_frames"].items():
        frames[name] = (frame, suites.raw_content(name))
    times: dict[str, float] = {}
    for table, (frame, checks) in frames.items():
        batch = (
            source.add_dataframe_asset(table)
            .add_batch_definition_whole_dataframe("all")
            .get_batch(batch_parameters={"dataframe": frame.reset_index(drop=True)})
        )
        for family in suites.FAMILIES:
            chosen = [c for c in checks if c.family == family]
            if not chosen:
                continue
            suite = gx.ExpectationSuite(
                name=f"{table}.{family}", expectations=[c.expectation(0.0) for c in chosen]
            )
            started = time.perf_counter()
            batch.validate(
                suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [KEY]}
            )
            times[family] = times.get(family, 0.0) + time.perf_counter() - started
    return {k: round(v, 3) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--keep", type=Path, default=None, help="project folder to keep (default: a temp dir)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    setup = import_gx()  # first: a cold import, as in a fresh `logicflow stage validate` process

    from logicflow.config import build_config
    from logicflow.paths import Paths
    from logicflow.stages import validate

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-validate-"))
    if root.exists() and args.keep:
        shutil.rmtree(root)
    paths = Paths.from_root(root)
    made = write_project(root, args.rows, args.seed)
    tokenizer = link_base_model(paths)
    cfg = build_config(
        {},
        None,
        [
            "validate.decontam_against=[logicflow_math_heldout, humaneval, ifeval]",
            "validate.max_quarantine_fraction=0.5",
        ],
    )

    captured: dict[str, Any] = {}
    derive = validate.derive

    def keep_frames(*a: Any, **k: Any) -> Any:  # bench-only: keep the frames the stage built
        derived = derive(*a, **k)
        captured.update(frame=derived.frame, raw_frames=derived.raw_frames)
        return derived

    validate.derive = keep_frames
    load_before = os.getloadavg()[0]  # the machine is shared: record how busy it was
    started = time.perf_counter()
    result = validate.run(cfg, paths)
    wall = time.perf_counter() - started
    gx_family = family_gx_times(captured, cfg)

    steps = result.timings_s
    total = steps["total"]
    derive_of = {
        "schema": steps.get("schema", 0.0),
        "chat_structure": steps.get("chat_structure+reasoning+hygiene", 0.0),
        "length": steps.get("length", 0.0),
        "duplicates": steps.get("duplicates", 0.0),
        "decontamination": steps.get("decontamination", 0.0),
        "reasoning_format": steps.get("raw_formats", 0.0),
    }
    families = {
        f: round(derive_of.get(f, 0.0) + gx_family.get(f, 0.0), 3)
        for f in (
            "schema",
            "chat_structure",
            "reasoning_format",
            "text_hygiene",
            "length",
            "duplicates",
            "decontamination",
        )
    }
    family_total = sum(families.values())
    out = {
        "rows": result.rows_in,
        "input": made,
        "tokenizer": tokenizer,
        "wall_s": round(wall, 2),
        "rows_per_s": round(result.rows_in / wall, 1),
        "under_90s": wall < 90,
        **setup,
        "gx_setup_under_5s": setup["gx_setup_s"] < 5,
        "stage_steps_s": steps,
        "stage_step_share": {k: round(v / total, 3) for k, v in steps.items() if k != "total"},
        "family_gx_alone_s": gx_family,
        "family_s": families,
        "family_share": {k: round(v / family_total, 3) for k, v in families.items()},
        "family_note": "derive time in the stage (schema: the per-file gate; chat_structure includes the "
        "shared reasoning/hygiene columns; reasoning_format the raw-format columns) + GX time of the family",
        "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "quarantined": result.quarantined,
        "reasons": result.reasons,
        "token_length": result.summary["length"]["token_length"],
        "eval_prompts": {k: v["prompts"] for k, v in result.summary["decontamination"]["eval_sets"].items()},
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(out))  # one line: `make bench` (benchmarks/run_all.py) reads the last line
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
