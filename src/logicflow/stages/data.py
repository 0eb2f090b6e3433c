"""Stage `data`: fetch (or generate) the reasoning datasets, convert them to chat rows, mix and split.

    logicflow stage data --profile smoke

Outputs (see `Paths`): `data/raw/<dataset>.parquet` in each upstream schema,
`data/messages/{train,validation}.parquet` in the unified schema (`logicflow.datasets.UNIFIED_SCHEMA`),
`data/heldout/math.jsonl` (always from the generator, so it is disjoint from generated training rows by
construction) and `reports/data.json`. With `data.replay.rows` > 0 the mix also holds replay rows: the
base model (`models/base`) answering generic code and instruction prompts (`logicflow.datasets.replay`).
With `data.format: react` the reasoning is moved into the assistant turn as a ReAct trace
(`logicflow.react`).

Everything is computed in memory first and written at the end, each file atomically, so a failure leaves the
previous outputs untouched. Raw tables are round-tripped through parquet bytes before conversion, so the
conversion reads exactly what is written.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from logicflow.atomic import atomic_file, write_json
from logicflow.config import DATASET_NAMES, LOCAL_ONLY_DATASETS, Config
from logicflow.datasets import REJECTED_SCHEMA, get_adapter, parquet_bytes
from logicflow.datasets.heldout import heldout_jsonl
from logicflow.datasets.mixing import mix, target_counts
from logicflow.datasets.prepare import PreparedDataset, prepare_dataset
from logicflow.datasets.replay import replay_rows
from logicflow.datasets.sources import Source, resolve_source, upstream_sample
from logicflow.datasets.summary import data_summary
from logicflow.paths import Paths
from logicflow.react import as_react

logger = logging.getLogger(__name__)


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
    datasets: dict[str, PreparedDataset] = {}
    for name, count in counts.items():
        adapter = get_adapter(name)
        sample = upstream_sample(adapter, count, source, data, paths.root)
        datasets[name] = prepare_dataset(adapter, sample, paths.raw(name))
    unified = [prepared.unified for prepared in datasets.values()]
    replay_report = None
    if data.replay.rows:
        replay, replay_report = replay_rows(
            paths.base_model,
            cfg.model.template,
            data.replay.rows,
            data.replay.max_new_tokens,
            data.replay.batch_size,
            data.seed,
        )
        unified.append(replay)
    train, validation = mix(unified, data.seed, data.val_fraction)
    if data.format == "react":
        train, validation = as_react(train), as_react(validation)
    rejected = [row for prepared in datasets.values() for row in prepared.set_aside]

    outputs: dict[Path, bytes] = {paths.raw(name): prepared.raw for name, prepared in datasets.items()}
    outputs[paths.messages("train")] = parquet_bytes(train)
    outputs[paths.messages("validation")] = parquet_bytes(validation)
    outputs[paths.unparsed] = parquet_bytes(pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA))
    outputs[paths.heldout_math] = heldout_jsonl(data.heldout_size, data.seed, data.difficulty)
    with ExitStack() as stack:  # every file goes to a temp file first; all are renamed once all were written
        for target, content in outputs.items():
            stack.enter_context(atomic_file(target)).write_bytes(content)
    for name in set(DATASET_NAMES + LOCAL_ONLY_DATASETS) - set(counts):  # a dropped dataset: no stale raw
        paths.raw(name).unlink(missing_ok=True)
    write_json(paths.data_summary, data_summary(source, data, datasets, replay_report, train, validation))

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
        rows={name: prepared.unified.num_rows for name, prepared in datasets.items()},
        rejected=len(rejected),
        train_rows=train.num_rows,
        validation_rows=validation.num_rows,
        heldout_rows=data.heldout_size,
        outputs=tuple(str(p) for p in (*outputs, paths.data_summary)),
        elapsed_s=round(elapsed, 3),
    )
