"""Stage `validate`: check the unified chat rows (and the raw rows they came from) with Great Expectations,
then split them into clean rows and quarantined rows, with a report.

    logicflow stage validate                  # reads data/messages, data/raw, data/heldout, models/base

Every row ends in exactly one of `data/clean/{train,validation}.parquet` (the input columns, unchanged) or
`data/quarantine/rows.parquet` (the input columns + `split` + `reasons`, the names of the failed checks); the
stage checks `rows_in == clean + quarantined` on the written files. It fails (ValidationFailed, listing the
top reasons with example ids) when the quarantined share is over `validate.max_quarantine_fraction` or a check
misses its `validate.mostly`; a missing column or a column of the wrong type is a DataError naming the file.
Outputs are replaced atomically: a failing run leaves the previous ones as they were, and puts its own Data
Docs and summary in `reports/validation-failed/` for a person to read.

Reports in `reports/validation/`: `docs/index.html` (GX Data Docs: every suite, every failed expectation with
its failing values), `summary.json` (the DVC metric) and `token_lengths.png`.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logicflow.atomic import atomic_dir, write_json
from logicflow.config import Config
from logicflow.errors import LogicFlowError
from logicflow.paths import Paths, ValidationReports
from logicflow.validation import report
from logicflow.validation.content import content_suites, derive, validate_content
from logicflow.validation.engine import GXEngine
from logicflow.validation.inputs import Inputs, join_unified, read_inputs, schema_gate
from logicflow.validation.quarantine import raw_reasons, row_reasons, write_outputs
from logicflow.validation.summary import check_accounting, check_threshold, summarise
from logicflow.validation.tables import SPLITS
from logicflow.validation.timing import Timer

logger = logging.getLogger(__name__)


@dataclass
class ValidateResult:
    rows_in: int
    clean: int
    quarantined: int
    quarantine_fraction: float
    reasons: dict[str, int]
    clean_files: dict[str, str]
    quarantine_file: str
    summary_file: str
    data_docs: str
    histogram: str
    summary: dict[str, Any] = field(repr=False)
    timings_s: dict[str, float] = field(default_factory=dict)


def run(cfg: Config, paths: Paths) -> ValidateResult:
    timer = Timer()
    started = time.perf_counter()
    with timer("read"):
        inputs = read_inputs(cfg, paths)
    with (
        atomic_dir(paths.validation_reports.dir) as reports,
        atomic_dir(paths.clean_dir) as clean_dir,
        atomic_dir(paths.quarantine_dir) as quarantine_dir,
    ):
        try:
            result = _run(cfg, paths, inputs, reports, clean_dir, quarantine_dir, timer)
        except LogicFlowError:
            if ValidationReports(reports).docs.exists():
                with atomic_dir(paths.validation_failed_reports.dir) as tmp:
                    shutil.copytree(reports, tmp, dirs_exist_ok=True)
            raise
    shutil.rmtree(paths.validation_failed_reports.dir, ignore_errors=True)  # a failed run's reports: stale
    result.timings_s = {**timer.rounded(), "total": round(time.perf_counter() - started, 3)}
    return result


def _run(
    cfg: Config,
    paths: Paths,
    inputs: Inputs,
    reports: Path,
    clean_dir: Path,
    quarantine_dir: Path,
    timer: Timer,
) -> ValidateResult:
    staged = ValidationReports(reports)
    with timer("gx_setup"):
        engine = GXEngine(staged.docs)
    plan = content_suites(cfg, list(inputs.raw))
    schema_gate(engine, inputs, timer)
    with timer("read"):
        inputs.unified = join_unified(inputs)
    logger.info(
        "validating %d unified rows and %s raw rows",
        inputs.unified.num_rows,
        {name: t.num_rows for name, t in inputs.raw.items()},
    )
    derived = derive(cfg, paths, inputs, timer)
    with timer("gx_validate"):
        results = validate_content(engine, plan, derived, inputs.unparsed)
    with timer("quarantine"):
        reasons = row_reasons(derived.frame, results.unified)
        raw_stats = raw_reasons(derived.frame, derived.raw_frames, results.raw, reasons)
        clean_files = {s: clean_dir / paths.clean(s).name for s in SPLITS}
        written = write_outputs(inputs, reasons, clean_files, quarantine_dir / paths.quarantine_rows.name)
    summary = summarise(cfg, inputs, derived, reasons, results.every, raw_stats, written)
    check_accounting(summary)
    with timer("report"):
        report.token_histogram(derived.n_tokens, derived.sources, cfg.train.cutoff_len, staged.histogram)
        write_json(staged.summary, summary)
    docs = paths.validation_failed_reports.docs_index
    check_threshold(cfg, summary, results.every, reasons, derived, inputs.unparsed, docs)
    logger.info(
        "validate: %d rows in, %d clean, %d quarantined (%.1f%%)",
        summary["rows_in"],
        summary["clean"],
        summary["quarantined"],
        100 * summary["quarantine_fraction"],
    )
    return ValidateResult(
        rows_in=summary["rows_in"],
        clean=summary["clean"],
        quarantined=summary["quarantined"],
        quarantine_fraction=summary["quarantine_fraction"],
        reasons=summary["reasons"],
        clean_files={s: str(paths.clean(s)) for s in SPLITS},
        quarantine_file=str(paths.quarantine_rows),
        summary_file=str(paths.validation_summary),
        data_docs=str(paths.validation_reports.docs_index),
        histogram=str(paths.validation_reports.histogram),
        summary=summary,
    )
