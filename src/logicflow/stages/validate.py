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
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from logicflow.atomic import atomic_dir, write_json
from logicflow.config import Config
from logicflow.errors import DataError, LogicFlowError, ValidationFailed
from logicflow.paths import Paths, ValidationReports
from logicflow.validation import checks, decontam, length, report, suites, unparsed
from logicflow.validation.engine import CheckResult, GXEngine
from logicflow.validation.tables import (
    KEY,
    OPENR1_GENERATION_LISTS,
    RAW_COLUMNS,
    SPLITS,
    UNIFIED,
    UNIFIED_COLUMNS,
    nested_type_problems,
    read_parquet,
    repair_utf8,
    schema_frame,
)

logger = logging.getLogger(__name__)

EXAMPLES = 5


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


class Timer:
    """Wall time per named step (check family), summed over repeats."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def rounded(self) -> dict[str, float]:
        return {name: round(value, 3) for name, value in self.seconds.items()}


@dataclass
class Inputs:
    unified_files: dict[str, tuple[Path, pa.Table]]  # split -> (file, rows), as read
    splits: np.ndarray  # split name per unified row, in concatenation order
    raw: dict[str, pa.Table]
    raw_files: dict[str, Path]
    raw_repaired: dict[str, int]  # columns whose invalid UTF-8 was replaced, per raw dataset
    unparsed: pa.Table  # upstream rows the data stage could not convert (see validation.unparsed)
    unified: pa.Table | None = None  # the files concatenated, once their schemas passed


# --- reading and the schema phase ---------------------------------------------------------------------------


def _read_inputs(cfg: Config, paths: Paths) -> Inputs:
    unified_files, splits = {}, []
    for split in SPLITS:
        path = paths.messages(split)
        if split != "train" and not path.exists():
            logger.warning("%s not found: no %s rows to validate", path, split)
            continue
        table, _ = repair_utf8(read_parquet(path), path)
        unified_files[split] = (path, table)
        splits.append(np.full(table.num_rows, split, dtype=object))
    raw, raw_files, repaired = {}, {}, {}
    for name in cfg.data.datasets:
        raw_files[name] = paths.raw(name)
        raw[name], repaired[name] = repair_utf8(read_parquet(raw_files[name]), raw_files[name])
    unparsed_rows = unparsed.read(paths.unparsed)
    return Inputs(unified_files, np.concatenate(splits), raw, raw_files, repaired, unparsed_rows)


def _table_problems(results: list[CheckResult], path: Path) -> list[str]:
    """A failed table-level check as a sentence naming the file and the column."""
    problems = []
    for result in results:
        if result.success or not result.check.table_level:
            continue
        kind = result.check.name.split(".")[-1]
        if kind.startswith("column_"):
            problems.append(f"{path}: column {kind.removeprefix('column_')!r} is missing")
        elif result.error:
            continue  # a type check on a missing column: reported by its column check
        else:
            problems.append(
                f"{path}: column {kind.removeprefix('type_')!r} has type {result.observed}, expected strings"
            )
    return problems


def _schema_gate(engine: GXEngine, inputs: Inputs, timer: Timer) -> None:
    """Columns and types, file by file (GX, then the nested list/struct types GX cannot see): one DataError
    naming every bad file and column, before anything is derived from them."""
    problems: list[str] = []
    tables = [
        (f"{UNIFIED}.{split}", path, table, UNIFIED_COLUMNS, suites.unified_schema())
        for split, (path, table) in inputs.unified_files.items()
    ]
    tables += [
        (name, inputs.raw_files[name], table, RAW_COLUMNS[name], suites.raw_schema(name))
        for name, table in inputs.raw.items()
    ]
    with timer("schema"):
        for suite, path, table, columns, schema_checks in tables:
            frame = schema_frame(table, columns).to_pandas()
            frame.insert(0, KEY, [f"{suite}#{i}" for i in range(len(frame))])
            problems += _table_problems(engine.gate(suite, frame, schema_checks), path)
        for _, path, table, columns, _ in tables:
            problems += nested_type_problems(table, columns, path)
        if problems:
            raise DataError("; ".join(problems) + "; fix the file or re-run the data stage")


# --- the content phase --------------------------------------------------------------------------------------


@dataclass
class Derived:
    frame: pd.DataFrame  # unified rows + derived columns (positions = rows of the concatenated table)
    n_tokens: np.ndarray
    answer_start: np.ndarray
    raw_frames: dict[str, pd.DataFrame]
    decontamination: dict[str, Any]


def _derive(cfg: Config, paths: Paths, inputs: Inputs, timer: Timer) -> Derived:
    v = cfg.validate_
    with timer("chat_structure+reasoning+hygiene"):
        frame = checks.unified_frame(inputs.unified, pa.array(inputs.splits.tolist(), pa.string()))
    with timer("length"):
        counter = length.load_counter(cfg, paths)
        n_tokens, answer_start = length.token_lengths(
            counter, inputs.unified, cfg.train.cutoff_len, need_answer_start=v.overlong == "truncate"
        )
        frame["n_tokens"] = n_tokens
        frame["answer_start"] = answer_start
    with timer("duplicates"):
        checks.add_duplicate_keys(frame)
    with timer("decontamination"):
        eval_sets = decontam.load_eval_sets(v.decontam_against, paths)
        index = decontam.NgramIndex(eval_sets, v.decontam_ngram, v.decontam_min_overlap)
        frame["contaminated_by"] = pd.Series(
            index.contaminated_by(frame["prompts"].fillna("").tolist()), index=frame.index, dtype="str"
        )
    with timer("raw_formats"):
        raw_frames = {
            name: checks.raw_frame(name, table, OPENR1_GENERATION_LISTS) for name, table in inputs.raw.items()
        }
    return Derived(frame, n_tokens, answer_start, raw_frames, decontam.describe(index))


def _positions(keys: pd.Index, result: CheckResult, frame: pd.DataFrame) -> np.ndarray:
    positions = np.sort(keys.get_indexer(result.unexpected_keys))
    positions = positions[positions >= 0]
    if result.check.keep_first and len(positions):
        values = frame[result.check.column].iloc[positions]
        positions = positions[values.duplicated(keep="first").to_numpy()]
    return positions


def _raw_reasons(
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
            for p in _positions(keys, r, rframe)
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


# --- writing, accounting, summary ---------------------------------------------------------------------------


def _write_outputs(
    inputs: Inputs, reasons: list[list[str]], clean_dir: Path, quarantine_rows: Path
) -> dict[str, int]:
    quarantined = np.array([bool(r) for r in reasons], dtype=bool)
    written: dict[str, int] = {}
    table = inputs.unified
    for split in SPLITS:
        rows = np.flatnonzero(~quarantined & (inputs.splits == split))
        pq.write_table(
            table.take(pa.array(rows, pa.int64())), clean_dir / f"{split}.parquet", compression="zstd"
        )
    rows = np.flatnonzero(quarantined)
    bad = table.take(pa.array(rows, pa.int64()))
    bad = bad.append_column("split", pa.array(inputs.splits[rows].tolist(), pa.string()))
    bad = bad.append_column("reasons", pa.array([reasons[i] for i in rows], pa.list_(pa.string())))
    bad = bad.append_column("detail", pa.nulls(len(rows), pa.string()))
    bad = bad.append_column("raw", pa.nulls(len(rows), pa.string()))
    bad = pa.concat_tables([bad, unparsed.quarantine_rows(inputs.unparsed, bad.schema)])
    pq.write_table(bad, quarantine_rows, compression="zstd")
    for split in SPLITS:  # count what is on disk, not what was meant to be written
        written[split] = pq.read_metadata(clean_dir / f"{split}.parquet").num_rows
    written["quarantine"] = pq.read_metadata(quarantine_rows).num_rows
    return written


def _summary(
    cfg: Config,
    inputs: Inputs,
    derived: Derived,
    reasons: list[list[str]],
    results: list[CheckResult],
    raw_stats: dict[str, dict[str, Any]],
    written: dict[str, int],
) -> dict[str, Any]:
    v = cfg.validate_
    frame = derived.frame
    set_aside = inputs.unparsed.to_pydict()
    n = len(frame) + inputs.unparsed.num_rows
    quarantined = np.array([bool(r) for r in reasons], dtype=bool)
    dropped = sum(r == [suites.OVERLONG["drop"]] for r in reasons)  # left out on purpose (overlong: drop)
    clean = sum(written[s] for s in SPLITS)
    family_of = {r.check.name: r.check.family for r in results}
    over = derived.n_tokens > cfg.train.cutoff_len

    def reason_counts(mask: np.ndarray, dataset: str | None = None) -> dict[str, int]:
        found = Counter(r for i in np.flatnonzero(mask) for r in reasons[i])
        found.update(
            r for d, r in zip(set_aside["dataset"], set_aside["reason"], strict=True) if dataset in (None, d)
        )
        return report.counts(found)

    datasets: dict[str, Any] = {}
    sources = frame["source"].fillna("<null>").to_numpy(dtype=object)
    for source in sorted(set(sources.tolist()) | set(inputs.raw)):
        mask = sources == source
        by_reason = reason_counts(mask, source)
        not_converted = set_aside["dataset"].count(source)
        entry: dict[str, Any] = {
            "rows_in": int(mask.sum()) + not_converted,
            "clean": int((mask & ~quarantined).sum()),
            "quarantined": int((mask & quarantined).sum()) + not_converted,
            "not_converted": not_converted,
            "quarantined_by_reason": by_reason,
            "duplicates": {
                "exact": by_reason.get("duplicate", 0),
                "near": by_reason.get("near_duplicate", 0),
            },
            "contaminated": by_reason.get("contaminated", 0),
            "token_length": length.percentiles(derived.n_tokens[mask]),
            "over_cutoff": int((mask & over).sum()),
        }
        if source in raw_stats:
            entry["raw"] = {**raw_stats[source], "utf8_repaired_columns": inputs.raw_repaired.get(source, 0)}
        datasets[source] = entry
    all_reasons = reason_counts(np.ones(len(frame), dtype=bool))
    return {
        "rows_in": n,
        "clean": clean,
        "quarantined": written["quarantine"],
        "quarantine_fraction": round((written["quarantine"] - dropped) / n, 6) if n else 0.0,
        "dropped_overlong": dropped,
        "accounting_ok": n == clean + written["quarantine"],
        "max_quarantine_fraction": v.max_quarantine_fraction,
        "splits": {
            s: {
                "rows_in": int((inputs.splits == s).sum()),
                "clean": written[s],
                "quarantined": int(((inputs.splits == s) & quarantined).sum()),
            }
            for s in SPLITS
        }
        | {unparsed.SPLIT: {"rows_in": n - len(frame), "clean": 0, "quarantined": n - len(frame)}},
        "reasons": all_reasons,
        "families": report.counts(
            Counter(
                family
                for i in np.flatnonzero(quarantined)
                for family in {family_of.get(r, "other") for r in reasons[i]}
            )
            + Counter({"parse": inputs.unparsed.num_rows} if inputs.unparsed.num_rows else {})
        ),
        "datasets": datasets,
        "length": {
            "cutoff_len": cfg.train.cutoff_len,
            "overlong": v.overlong,
            "tokenizer": cfg.model.id,
            "template": cfg.model.template,
            "over_cutoff": int(over.sum()),
            "truncated": int(over.sum()) if v.overlong == "truncate" else 0,
            "dropped": dropped,
            "token_length": length.percentiles(derived.n_tokens),
        },
        "decontamination": {**derived.decontamination, "contaminated": all_reasons.get("contaminated", 0)},
        "dedupe": v.dedupe,
        "checks": {r.check.name: r.summary() for r in results},
        "data_docs": str(ValidationReports(Path()).docs_index),
    }


def _threshold(
    cfg: Config,
    summary: dict[str, Any],
    results: list[CheckResult],
    reasons: list[list[str]],
    frame: pd.DataFrame,
    unparsed_rows: pa.Table,
    docs: Path,
) -> None:
    limit = cfg.validate_.max_quarantine_fraction
    fraction = summary["quarantine_fraction"]
    below_mostly = [r for r in results if not r.check.table_level and not r.success]
    if fraction <= limit and not below_mostly:
        return
    ids = frame["id"].astype(object).where(frame["id"].notna(), frame[KEY]).to_numpy()
    examples: dict[str, list[str]] = defaultdict(list)
    for i, row_reasons in enumerate(reasons):
        for reason in row_reasons:
            if len(examples[reason]) < EXAMPLES:
                examples[reason].append(str(ids[i]))
    for row in unparsed_rows.to_pylist():
        if len(examples[row["reason"]]) < EXAMPLES:
            examples[row["reason"]].append(row["detail"].split(":")[0])
    parts = []
    if fraction > limit:
        parts.append(
            f"{summary['quarantined']} of {summary['rows_in']} rows quarantined ({fraction:.1%}), above "
            f"validate.max_quarantine_fraction={limit}"
        )
    for r in below_mostly:
        share = r.unexpected_count / r.element_count if r.element_count else 0.0
        parts.append(
            f"check {r.check.name} failed on {share:.1%} of {r.element_count} rows, more than "
            f"validate.mostly={r.mostly} allows"
        )
    raise ValidationFailed(
        "; ".join(parts)
        + "; top reasons: "
        + report.top_reasons(summary["reasons"], examples)
        + f". Data Docs of this run: {docs}"
    )


# --- the stage ----------------------------------------------------------------------------------------------


def run(cfg: Config, paths: Paths) -> ValidateResult:
    timer = Timer()
    started = time.perf_counter()
    with timer("read"):
        inputs = _read_inputs(cfg, paths)
    valid_names = suites.all_check_names(list(inputs.raw), cfg.train.cutoff_len)
    with (
        atomic_dir(paths.validation_reports.dir) as reports,
        atomic_dir(paths.clean_dir) as clean_dir,
        atomic_dir(paths.quarantine_dir) as quarantine_dir,
    ):
        try:
            result = _run(cfg, paths, inputs, reports, clean_dir, quarantine_dir, valid_names, timer)
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
    valid_names: list[str],
    timer: Timer,
) -> ValidateResult:
    v = cfg.validate_
    with timer("gx_setup"):
        engine = GXEngine(ValidationReports(reports).docs)
    unified_checks = suites.unified_content(cfg.train.cutoff_len, v.overlong, v.dedupe)
    raw_checks = {name: suites.raw_content(name) for name in inputs.raw}
    parse_checks = suites.upstream_parse()
    every = unified_checks + parse_checks + [c for name in inputs.raw for c in raw_checks[name]]
    mostly = suites.resolve_mostly(v.mostly, every, 1.0 - v.max_quarantine_fraction, valid_names)
    if v.overlong == "drop":
        mostly[suites.OVERLONG["drop"]] = 0.0  # dropping is the user's choice, not a failing check

    _schema_gate(engine, inputs, timer)
    with timer("read"):
        inputs.unified = pa.concat_tables(
            [t for _, t in inputs.unified_files.values()], promote_options="permissive"
        )
    if inputs.unified.num_rows == 0:
        files = ", ".join(str(path) for path, _ in inputs.unified_files.values())
        raise DataError(f"{files}: no rows to validate; re-run the data stage")
    logger.info(
        "validating %d unified rows and %s raw rows",
        inputs.unified.num_rows,
        {name: t.num_rows for name, t in inputs.raw.items()},
    )
    derived = _derive(cfg, paths, inputs, timer)
    frame = derived.frame
    columns = sorted(
        {
            KEY,
            "id",
            "source",
            "answer",
            "messages",
            "thinking",
            "role_seq",
            "min_turn_chars",
            "text",
            "final_answer",
            "boxed_answer",
            "answer_required",
            "thinking_required",
            "n_tokens",
            "answer_start",
            "exact_key",
            "norm_key",
            "contaminated_by",
        }
    )
    with timer("gx_validate"):
        results = engine.validate(f"{UNIFIED}.content", frame[columns], unified_checks, mostly)
        raw_results = {
            name: engine.validate(f"{name}.content", derived.raw_frames[name], raw_checks[name], mostly)
            for name in inputs.raw
        }
        parse_frame = unparsed.parse_frame(
            frame["source"].fillna("<null>").to_numpy(dtype=object), inputs.unparsed
        )
        raw_results[suites.UPSTREAM] = engine.validate(
            f"{suites.UPSTREAM}.parse", parse_frame, parse_checks, mostly
        )
    errors = [
        f"check {r.check.name} could not run: {r.error}"
        for r in results + sum(raw_results.values(), [])
        if r.error
    ]
    if errors:
        raise DataError("; ".join(errors))

    with timer("quarantine"):
        keys = pd.Index(frame[KEY])
        reasons: list[list[str]] = [[] for _ in range(len(frame))]
        for result in results:
            if result.failed_rows:
                for pos in _positions(keys, result, frame):
                    reasons[pos].append(result.check.name)
        raw_stats = _raw_reasons(frame, derived.raw_frames, raw_results, reasons)
        written = _write_outputs(inputs, reasons, clean_dir, quarantine_dir / paths.quarantine_rows.name)
    all_results = results + sum(raw_results.values(), [])
    summary = _summary(cfg, inputs, derived, reasons, all_results, raw_stats, written)
    if not summary["accounting_ok"]:
        raise ValidationFailed(
            f"row accounting broken: {summary['rows_in']} rows in, {summary['clean']} clean + "
            f"{summary['quarantined']} quarantined written; nothing was replaced"
        )
    with timer("report"):
        report.token_histogram(
            derived.n_tokens,
            frame["source"].fillna("<null>").to_numpy(dtype=object),
            cfg.train.cutoff_len,
            ValidationReports(reports).histogram,
        )
        write_json(ValidationReports(reports).summary, summary)
    _threshold(
        cfg,
        summary,
        results + sum(raw_results.values(), []),
        reasons,
        frame,
        inputs.unparsed,
        paths.validation_failed_reports.docs_index,
    )
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
