"""The validation summary (`reports/validation/summary.json`, the DVC metric) and the checks on it that fail
the stage: broken row accounting, or too many rows quarantined (ValidationFailed naming the top reasons with
example ids)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from logicflow.config import Config
from logicflow.errors import ValidationFailed
from logicflow.paths import ValidationReports
from logicflow.validation import length, report, suites, unparsed
from logicflow.validation.content import Derived
from logicflow.validation.engine import CheckResult
from logicflow.validation.inputs import Inputs
from logicflow.validation.tables import KEY, SPLITS

EXAMPLES = 5  # example ids kept per reason for the failure message


def summarise(
    cfg: Config,
    inputs: Inputs,
    derived: Derived,
    reasons: list[list[str]],
    results: list[CheckResult],
    raw_stats: dict[str, dict[str, Any]],
    written: dict[str, int],
) -> dict[str, Any]:
    """Rows in, clean and quarantined (from the files `written`), per split, reason, check family and
    dataset, with token lengths, decontamination and every check's outcome."""
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
    sources = derived.sources
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


def check_accounting(summary: dict[str, Any]) -> None:
    """Every row in is in exactly one written file, or nothing is replaced."""
    if not summary["accounting_ok"]:
        raise ValidationFailed(
            f"row accounting broken: {summary['rows_in']} rows in, {summary['clean']} clean + "
            f"{summary['quarantined']} quarantined written; nothing was replaced"
        )


def check_threshold(
    cfg: Config,
    summary: dict[str, Any],
    results: list[CheckResult],
    reasons: list[list[str]],
    derived: Derived,
    unparsed_rows: pa.Table,
    docs: Path,
) -> None:
    """ValidationFailed when the quarantined share is over `validate.max_quarantine_fraction` or a row-level
    check misses its `mostly`: the top reasons with example ids, and where this run's Data Docs are."""
    limit = cfg.validate_.max_quarantine_fraction
    fraction = summary["quarantine_fraction"]
    below_mostly = [r for r in results if not r.check.table_level and not r.success]
    if fraction <= limit and not below_mostly:
        return
    frame = derived.frame
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
