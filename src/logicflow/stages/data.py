"""Stage `data`: fetch (or generate) the reasoning datasets, convert them to chat rows, mix and split.

    logicflow stage data --profile smoke

Outputs (see `Paths`): `data/raw/<dataset>.parquet` in each upstream schema,
`data/messages/{train,validation}.parquet` in the unified schema (`logicflow.datasets.UNIFIED_SCHEMA`),
`data/heldout/math.jsonl` (always from the generator, so it is disjoint from generated training rows by
construction) and `reports/data.json`. With `data.replay.rows` > 0 the mix also holds replay rows: the
base model (`models/base`) answering generic code and instruction prompts (`logicflow.datasets.replay`).

Everything is computed in memory first and written at the end, each file atomically, so a failure leaves the
previous outputs untouched. Raw tables are round-tripped through parquet bytes before conversion, so the
conversion reads exactly what is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from logicflow.atomic import atomic_file, write_json
from logicflow.config import DATASET_NAMES, LOCAL_ONLY_DATASETS, Config, DataConfig
from logicflow.datasets import (
    REJECTED_SCHEMA,
    DatasetAdapter,
    convert_table,
    get_adapter,
    parquet_bytes,
    read_parquet,
    upstream_rows,
)
from logicflow.datasets.files import file_digest, read_rows
from logicflow.datasets.generator import Difficulty, generate
from logicflow.datasets.hub import fetch_rows, resolve_revision
from logicflow.datasets.replay import replay_rows
from logicflow.errors import DataError
from logicflow.paths import Paths

logger = logging.getLogger(__name__)

Source = Literal["hub", "offline"]
HUB_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class DataResult:
    source: Source
    rows: dict[str, int]  # unified rows per dataset
    rejected: int  # upstream rows set aside for quarantine (they reach data/quarantine through validate)
    train_rows: int
    validation_rows: int
    heldout_rows: int
    outputs: tuple[str, ...]
    elapsed_s: float


def hub_reachable() -> bool:
    """False when HF_HUB_OFFLINE is set or a quick HEAD request to the Hub endpoint fails."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    from huggingface_hub.constants import ENDPOINT

    try:
        with urllib.request.urlopen(urllib.request.Request(ENDPOINT, method="HEAD"), timeout=HUB_TIMEOUT_S):
            return True
    except OSError:
        return False


def resolve_source(setting: str) -> Source:
    if setting != "auto":
        return "hub" if setting == "hub" else "offline"
    source: Source = "hub" if hub_reachable() else "offline"
    logger.info(
        "data.source=auto: using %s data (%s)",
        source,
        "the Hub is reachable" if source == "hub" else "HF_HUB_OFFLINE is set or the Hub is unreachable",
    )
    return source


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


def _upstream_rows(
    adapter: DatasetAdapter, count: int, source: Source, data: DataConfig, paths: Paths
) -> tuple[list[Any], list[int] | None, dict[str, Any]]:
    """`count` rows of one dataset as dicts, their places in the user's file when sampled from one, and where
    they came from (the lineage in `reports/data.json`): the user's file (`data.datasets.<name>.path`), the
    Hub at a pinned commit, or the offline generator."""
    path = data.datasets[adapter.name].path
    if path is not None:
        file = paths.root / path
        rows = read_rows(file)
        lineage = {"source": "local", "path": path, "file_sha256": file_digest(file)}
        if len(rows) <= count:
            return rows, None, lineage
        positions = sorted(random.Random(data.seed).sample(range(len(rows)), count))  # seeded, in file order
        return [rows[i] for i in positions], positions, lineage
    if source == "offline":
        # a distinct seed per dataset, so the three datasets hold different problems
        seed = data.seed + DATASET_NAMES.index(adapter.name)  # (local-only datasets always have a path)
        table = adapter.synthesize(generate(count, seed=seed, split="train", difficulty=data.difficulty))
        return table.to_pylist(), None, {"source": "generated", "difficulty": data.difficulty}
    sha = resolve_revision(adapter.hub_id, adapter.revision)
    try:
        rows = fetch_rows(
            adapter.hub_id,
            config_name=adapter.config_name,
            data_files=adapter.data_files,
            revision=sha,
            max_samples=count,
            seed=data.seed,
        )
    except Exception as exc:  # network, auth, a vanished revision: all mean "cannot use the Hub now"
        raise DataError(
            f"{adapter.name}: could not load {adapter.hub_id}@{sha} from the Hub ({exc}); "
            "check the network and HF_TOKEN, or set data.source=offline"
        ) from exc
    lineage = {"source": "hub", "hub_id": adapter.hub_id, "revision": adapter.revision, "revision_sha": sha}
    return rows, None, lineage


def _mix(tables: list[pa.Table], seed: int, val_fraction: float) -> tuple[pa.Table, pa.Table]:
    """Shuffle all rows with `seed`; the first `val_fraction` (at least 1 row when > 0) is validation."""
    mixed = pa.concat_tables(tables)
    if mixed.num_rows == 0:
        raise DataError("no rows to mix: every dataset came back empty; check data.datasets and data.source")
    order = list(range(mixed.num_rows))
    random.Random(seed).shuffle(order)
    mixed = mixed.take(order)
    n_val = min(max(1, round(mixed.num_rows * val_fraction)), mixed.num_rows - 1) if val_fraction > 0 else 0
    return mixed.slice(n_val), mixed.slice(0, n_val)


def _heldout_jsonl(size: int, seed: int, difficulty: Difficulty) -> bytes:
    lines = (
        json.dumps(
            {"id": p.id, "question": p.question, "answer": p.answer, "kind": p.kind}, ensure_ascii=False
        )
        for p in generate(size, seed=seed, split="heldout", difficulty=difficulty)
    )
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _write_all(outputs: dict[Path, bytes]) -> None:
    """Write every file to a temp file first; rename them into place only once all were written."""
    with ExitStack() as stack:
        for target, data in outputs.items():
            stack.enter_context(atomic_file(target)).write_bytes(data)


def run(cfg: Config, paths: Paths) -> DataResult:
    start = time.perf_counter()
    data = cfg.data
    source = resolve_source(data.source)
    counts = target_counts(data)
    logger.info(
        "data: %s rows from %s (%s)",
        data.max_samples,
        source,
        ", ".join(f"{name} {count}" for name, count in counts.items()),
    )

    outputs: dict[Path, bytes] = {}
    unified: list[pa.Table] = []
    rejected: list[dict[str, Any]] = []
    summary: dict[str, dict[str, Any]] = {}
    for name, count in counts.items():
        adapter = get_adapter(name)
        rows, positions, lineage = _upstream_rows(adapter, count, source, data, paths)
        path = paths.raw(name)
        upstream = upstream_rows(adapter, rows, lineage.get("path") or str(path), positions)
        raw = parquet_bytes(upstream.table)
        converted = convert_table(adapter, read_parquet(path, raw), str(path), upstream.indices)
        set_aside = upstream.rejected + converted.rejected
        logger.info(
            "data: %s: %d rows in, %d converted, %d set aside for quarantine, %d tag variants normalised",
            name,
            len(rows),
            converted.unified.num_rows,
            len(set_aside),
            upstream.normalised,
        )
        outputs[path] = raw
        unified.append(converted.unified)
        rejected += set_aside
        summary[name] = {
            **lineage,
            "rows_in": len(rows),
            "rows": converted.unified.num_rows,
            "rejected": len(set_aside),
            "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in set_aside).items())),
            "tags_normalised": upstream.normalised,
            "raw_sha256": hashlib.sha256(raw).hexdigest(),
        }

    replay_report = None
    if data.replay.rows:
        if not (paths.base_model / "config.json").is_file():
            raise DataError(
                f"data.replay needs the base model in {paths.base_model}: run `logicflow stage model`"
            )
        replay, replay_report = replay_rows(
            paths.base_model,
            cfg.model.template,
            data.replay.rows,
            data.replay.max_new_tokens,
            data.replay.batch_size,
            data.seed,
        )
        unified.append(replay)
        logger.info(
            "data: %d replay rows (%d left out)", replay.num_rows, replay_report["left_out_cut_off_or_empty"]
        )

    train, validation = _mix(unified, data.seed, data.val_fraction)
    outputs[paths.messages("train")] = parquet_bytes(train)
    outputs[paths.messages("validation")] = parquet_bytes(validation)
    outputs[paths.unparsed] = parquet_bytes(pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA))
    outputs[paths.heldout_math] = _heldout_jsonl(data.heldout_size, data.seed, data.difficulty)

    _write_all(outputs)
    for name in set(DATASET_NAMES + LOCAL_ONLY_DATASETS) - set(
        counts
    ):  # a dataset dropped from params leaves no stale raw file
        paths.raw(name).unlink(missing_ok=True)
    write_json(
        paths.data_summary,
        {
            "source": source,
            "difficulty": data.difficulty,
            "datasets": summary,
            "replay": replay_report,
            "rows": {
                "train": train.num_rows,
                "validation": validation.num_rows,
                "heldout": data.heldout_size,
                "total": train.num_rows + validation.num_rows,
            },
        },
    )
    elapsed = time.perf_counter() - start
    logger.info(
        "data: %d train, %d validation, %d held-out rows in %.1fs",
        train.num_rows,
        validation.num_rows,
        data.heldout_size,
        elapsed,
    )
    return DataResult(
        source=source,
        rows={name: table.num_rows for name, table in zip(counts, unified, strict=False)},
        rejected=len(rejected),
        train_rows=train.num_rows,
        validation_rows=validation.num_rows,
        heldout_rows=data.heldout_size,
        outputs=tuple(str(p) for p in (*outputs, paths.data_summary)),
        elapsed_s=round(elapsed, 3),
    )
