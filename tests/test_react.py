"""`data.format: react`: the same rows rendered as ReAct traces, validated by their structure, and their
final answers extracted by the eval's scoring, on the smoke profile's real data stage and validate stage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logicflow import react
from logicflow.config import build_config, load_config
from logicflow.datasets.base import UNIFIED_SCHEMA
from logicflow.evaluation.scoring import extract_math_answer, math_equal, split_thinking
from logicflow.paths import Paths
from logicflow.stages import data, validate
from logicflow.validation import synth

ROOT = Path(__file__).resolve().parents[1]
MODEL_ID = "logicflow/tiny-random-llama"
HELDOUT = ["A heldout riddle about paper cranes folded every evening and given away on Sundays."]
TRACE = react.render("Each pen costs 3.\n\nSo 7 pens cost 7 * 3 = 21.", "The total is \\boxed{21}.")


def test_a_rendered_trace_has_a_thought_per_paragraph_and_an_action_per_calculation() -> None:
    assert TRACE.splitlines() == [
        "Thought: Each pen costs 3.",
        "Thought: So 7 pens cost 7 * 3 = 21.",
        "Action: calculate[7 * 3]",
        "Observation: 21",
        "Final Answer: The total is \\boxed{21}.",
    ]
    assert react.problem(TRACE) is None and react.final_answer(TRACE) == "The total is \\boxed{21}."


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda t: t.replace("Observation: 21\n", ""), "react.unanswered_action"),
        (lambda t: t.replace("Action: calculate[7 * 3]\n", ""), "react.observation_without_action"),
        (lambda t: t.replace("calculate[7 * 3]", "calculate 7 * 3"), "react.malformed_action"),
        (lambda t: t.rpartition("\nFinal Answer:")[0], "react.no_final_answer"),
        (lambda t: t + "\nThought: one more step", "react.steps_after_final_answer"),
        (
            lambda t: t.replace("Thought: Each pen costs 3.\nThought: So 7 pens cost 7 * 3 = 21.\n", ""),
            "react.no_thought",
        ),
        (lambda t: t.rpartition("Final Answer:")[0] + "Final Answer:  ", "react.empty_final_answer"),
    ],
)
def test_each_broken_trace_names_its_fault(damage, reason: str) -> None:  # noqa: ANN001 - a lambda
    assert react.problem(damage(TRACE)) == reason


def test_eval_scoring_reads_the_final_answer_of_a_trace() -> None:
    steps, answer = split_thinking(TRACE)
    assert steps.endswith("Observation: 21") and answer == "The total is \\boxed{21}."
    assert extract_math_answer(answer) == "21"
    assert split_thinking("<think>\n7 * 3\n</think>\n\nIt is \\boxed{21}.") == ("7 * 3", "It is \\boxed{21}.")


def test_smoke_data_stage_renders_every_reasoning_row_as_a_trace_the_scorer_reads(tmp_path: Path) -> None:
    paths = Paths.from_root(tmp_path)
    data.run(load_config(ROOT / "params.yaml", "smoke", ["data.format=react"]), paths)
    rows = pq.read_table(paths.messages("train")).to_pylist()
    assert rows and all(row["thinking"] == "" for row in rows)
    for row in rows:
        final = row["messages"][-1]["content"]
        assert react.problem(final) is None, (row["id"], final)
        if row["answer"]:
            assert math_equal(extract_math_answer(split_thinking(final)[1]), row["answer"]), row["id"]


def test_validate_keeps_good_traces_and_quarantines_broken_ones(tmp_path: Path) -> None:
    paths = Paths.from_root(tmp_path)
    shutil.copytree(synth.build_tokenizer(tmp_path / "tok", MODEL_ID), paths.base_model)
    rows = synth.make_rows(12, seed=5)
    table = react.as_react(pa.Table.from_pylist(rows["unified"], schema=UNIFIED_SCHEMA))
    rows["unified"] = table.to_pylist()
    synth.write_project(paths, rows, HELDOUT)
    settings = [f"model.id={MODEL_ID}", "train.cutoff_len=1024", "validate.max_quarantine_fraction=0.5"]
    good = validate.run(build_config({}, None, [*settings, "data.format=react"]), paths)
    assert (good.clean, good.quarantined) == (12, 0)

    first, second = rows["unified"][0]["messages"][-1], rows["unified"][1]["messages"][-1]
    first["content"] = first["content"].replace("Final Answer:", "Action: calculate[1 + 1]\nFinal Answer:")
    second["content"] = second["content"].rpartition("\nFinal Answer:")[0]  # no final answer
    broken = (0, 1)
    synth.write_project(paths, rows, HELDOUT)
    result = validate.run(build_config({}, None, [*settings, "data.format=react"]), paths)
    quarantined = pq.read_table(paths.quarantine_rows).to_pylist()
    assert result.quarantined == 2
    assert {row["id"] for row in quarantined} == {rows["unified"][i]["id"] for i in broken}
    assert all("react_structure" in row["reasons"] for row in quarantined)
