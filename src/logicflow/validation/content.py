"""The content phase: the derived columns of the unified and raw rows, then the content suites run over them
through GX, with the `mostly` each check may miss by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from logicflow.config import Config
from logicflow.errors import DataError
from logicflow.paths import Paths
from logicflow.validation import checks, decontam, length, suites, unparsed
from logicflow.validation.engine import CheckResult, GXEngine
from logicflow.validation.inputs import Inputs
from logicflow.validation.suites import Check
from logicflow.validation.tables import KEY, OPENR1_GENERATION_LISTS, UNIFIED
from logicflow.validation.timing import Timer

# the columns of the derived unified frame that the unified content suite looks at
CHECKED_COLUMNS = sorted(
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
        "react_problem",
        "answer_required",
        "thinking_required",
        "n_tokens",
        "answer_start",
        "exact_key",
        "norm_key",
        "contaminated_by",
    }
)


@dataclass
class ContentSuites:
    unified: list[Check]
    raw: dict[str, list[Check]]  # per raw dataset
    parse: list[Check]  # over every upstream row: was it converted
    mostly: dict[str, float]  # check name -> the share of rows that must pass


def content_suites(cfg: Config, raw_names: list[str]) -> ContentSuites:
    """The content checks for these raw datasets, with `validate.mostly` resolved (a ConfigError names an
    unknown check)."""
    v = cfg.validate_
    unified = suites.unified_content(cfg.train.cutoff_len, v.overlong, v.dedupe, cfg.data.format)
    raw = {name: suites.raw_content(name) for name in raw_names}
    parse = suites.upstream_parse()
    every = unified + parse + [c for name in raw_names for c in raw[name]]
    valid_names = suites.all_check_names(raw_names, cfg.train.cutoff_len)
    mostly = suites.resolve_mostly(v.mostly, every, 1.0 - v.max_quarantine_fraction, valid_names)
    if v.overlong == "drop":
        mostly[suites.OVERLONG["drop"]] = 0.0  # dropping is the user's choice, not a failing check
    return ContentSuites(unified, raw, parse, mostly)


@dataclass
class Derived:
    frame: pd.DataFrame  # unified rows + derived columns (positions = rows of the concatenated table)
    n_tokens: np.ndarray
    answer_start: np.ndarray
    raw_frames: dict[str, pd.DataFrame]
    decontamination: dict[str, Any]

    @property
    def sources(self) -> np.ndarray:
        """The `source` of each unified row, `<null>` where missing."""
        return self.frame["source"].fillna("<null>").to_numpy(dtype=object)


def derive(cfg: Config, paths: Paths, inputs: Inputs, timer: Timer) -> Derived:
    """The diagnostic columns the content checks look at, timed per check family."""
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


@dataclass
class ContentResults:
    unified: list[CheckResult]
    raw: dict[str, list[CheckResult]]  # per raw dataset, and the parse check under `suites.UPSTREAM`

    @property
    def every(self) -> list[CheckResult]:
        return self.unified + sum(self.raw.values(), [])


def validate_content(
    engine: GXEngine, plan: ContentSuites, derived: Derived, unparsed_rows: pa.Table
) -> ContentResults:
    """Each content suite through its GX checkpoint (into Data Docs); a check that could not run is a
    DataError."""
    unified = engine.validate(f"{UNIFIED}.content", derived.frame[CHECKED_COLUMNS], plan.unified, plan.mostly)
    raw = {
        name: engine.validate(f"{name}.content", derived.raw_frames[name], suite, plan.mostly)
        for name, suite in plan.raw.items()
    }
    parse_frame = unparsed.parse_frame(derived.sources, unparsed_rows)
    raw[suites.UPSTREAM] = engine.validate(f"{suites.UPSTREAM}.parse", parse_frame, plan.parse, plan.mostly)
    results = ContentResults(unified, raw)
    errors = [f"check {r.check.name} could not run: {r.error}" for r in results.every if r.error]
    if errors:
        raise DataError("; ".join(errors))
    return results
