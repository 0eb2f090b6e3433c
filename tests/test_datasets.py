"""Dataset adapters: exact upstream schemas and tags, conversion of real-shaped rows, clear failures."""

import json
import re
from typing import Any

import pyarrow as pa
import pytest

from logicflow.config import DATASET_NAMES
from logicflow.datasets import (
    REJECTED_SCHEMA,
    UNIFIED_SCHEMA,
    DatasetAdapter,
    convert_table,
    get_adapter,
    parquet_bytes,
    read_parquet,
    upstream_rows,
)
from logicflow.datasets.base import last_boxed
from logicflow.datasets.generator import Problem, generate
from logicflow.errors import ConfigError, DataError

TAGS = re.compile(r"</?(think|Thought|Output)>|<\|(begin|end)_of_(thought|solution)\|>")
SYSTEM_START = (
    "Your role as an assistant involves thoroughly exploring questions through a systematic long "
    "thinking process before providing the final precise and accurate solutions."
)
MATH_PREFIX = "Return your final response within \\boxed{}. "


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return generate(120, seed=11)


def convert_rows(adapter: DatasetAdapter, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    converted = convert_table(
        adapter, pa.Table.from_pylist(rows, schema=adapter.schema), f"{adapter.name}.parquet"
    )
    assert converted.unified.schema.equals(UNIFIED_SCHEMA) and converted.rejected == []
    return converted.unified.to_pylist()


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_synthesized_rows_have_the_exact_upstream_schema(
    name: str, problems: list[Problem], tmp_path
) -> None:
    adapter = get_adapter(name)
    table = adapter.synthesize(problems)
    assert table.schema.equals(adapter.schema) and table.num_rows == len(problems)
    assert read_parquet(tmp_path / "x.parquet", parquet_bytes(table)).equals(table)  # survives parquet


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_synthesized_rows_convert_to_valid_unified_rows(name: str, problems: list[Problem]) -> None:
    adapter = get_adapter(name)
    rows = convert_table(adapter, adapter.synthesize(problems), "generated").unified.to_pylist()
    assert len({row["id"] for row in rows}) == len(rows)
    for row, problem in zip(rows, problems, strict=True):
        assert row["id"].startswith(f"{name}-") and row["source"] == name
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        user, assistant = (m["content"] for m in row["messages"])
        assert user.endswith(problem.question)
        assert row["thinking"].strip() and not TAGS.search(row["thinking"])
        assert not TAGS.search(assistant) and row["thinking"] not in assistant
        assert all(step in row["thinking"] for step in problem.steps)
        assert row["answer"] == problem.answer


def test_openo1_output_format(problems: list[Problem]) -> None:
    output = get_adapter("openo1").synthesize(problems[:1]).column("output")[0].as_py()
    assert re.fullmatch(r"<Thought>\n[^<]+\n</Thought>\n<Output>\n[^<]+\n</Output>", output)


def test_openthoughts_format(problems: list[Problem]) -> None:
    row = get_adapter("openthoughts").synthesize(problems[:1]).to_pylist()[0]
    assert row["system"].startswith(SYSTEM_START)
    user, assistant = row["conversations"]
    assert (user["from"], assistant["from"]) == ("user", "assistant")
    assert user["value"] == MATH_PREFIX + problems[0].question
    assert re.fullmatch(
        r"<\|begin_of_thought\|>\n\n(?!\s)[^<]+(?<!\s)\n\n<\|end_of_thought\|>\n\n"
        r"<\|begin_of_solution\|>\n\n(?!\s)[^<]+(?<!\s)\n\n<\|end_of_solution\|>",
        assistant["value"],
    )


def test_openr1_generations_are_consistent(problems: list[Problem]) -> None:
    rows = get_adapter("openr1_math").synthesize(problems).to_pylist()
    assert {len(row["generations"]) for row in rows} == {2, 3, 4}
    for row in rows:
        n = len(row["generations"])
        lists = ["is_reasoning_complete", "correctness_math_verify", "finish_reasons"]
        assert all(len(row[key]) == n for key in lists)
        assert row["correctness_llama"] is None or len(row["correctness_llama"]) == n
        assert row["correctness_count"] == sum(row["correctness_math_verify"])
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert row["messages"][1]["content"] in row["generations"]
        assert all(
            re.fullmatch(r"<think>\n[^<]+\n</think>\n\n[^<]+\\boxed\{[^}]+\}\$\.", g)
            for g in row["generations"]
        )


# --- hand-written rows in the real upstream shapes ---------------------------------------------------------

OPENO1_ROW = {  # extra whitespace between the blocks and no closing </Output>, as reported upstream
    "instruction": "A shop sells pens at $3 each. How much do 4 pens cost?",
    "output": "<Thought>\n  Alright, each pen costs $3 and I need 4 of them.\n4 × 3 = 12.\n</Thought>  \n\n "
    "<Output>\nThe 4 pens cost $12.\n",
}
OPENTHOUGHTS_ROW = {
    "system": SYSTEM_START
    + " Please structure your response into two main sections: Thought and Solution. ...",
    "conversations": [
        {"from": "user", "value": MATH_PREFIX + "What is $\\frac{1}{2} + \\frac{1}{4}$?"},
        {
            "from": "assistant",
            "value": "<|begin_of_thought|>\n\nOkay, so I need to add 1/2 and 1/4.\n\n"
            "1/2 = 2/4, so the sum is 3/4.\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n"
            "Writing $\\frac{1}{2} = \\frac{2}{4}$:\n\n\\[\n\\boxed{\\frac{3}{4}}\n\\]"
            "\n\n<|end_of_solution|>",
        },
    ],
}
OPENR1_ROW = {
    "problem": "Find $x$ if $2x + 3 = 11$.",
    "solution": "Subtracting 3 gives $2x = 8$, so $x = 4$.",
    "answer": "4",
    "problem_type": "Algebra",
    "question_type": "math-word-problem",
    "source": "olympiads",
    "uuid": "3f1c2b9e-5d7a-5c1e-9a0b-2f4e6d8c1a3b",
    "is_reasoning_complete": [True, True],
    "generations": [
        "<think>\nOkay, 2x = 8, so x = 4.\n</think>\n\nSo $x = \\boxed{4}$.",
        "<think>\nLet me see. 2x + 3 = 11 means x = 5.\n</think>\n\n$\\boxed{5}$",
    ],
    "correctness_math_verify": [True, False],
    "correctness_llama": None,
    "finish_reasons": ["stop", "stop"],
    "correctness_count": 1,
    "messages": [
        {"content": "Find $x$ if $2x + 3 = 11$.", "role": "user"},
        {
            "content": "<think>\nOkay, 2x = 8, so x = 4.\n</think>\n\nSo $x = \\boxed{4}$.",
            "role": "assistant",
        },
    ],
}


def test_real_shaped_openo1_row() -> None:
    (row,) = convert_rows(get_adapter("openo1"), [OPENO1_ROW])
    assert row["messages"] == [
        {"role": "user", "content": OPENO1_ROW["instruction"]},
        {"role": "assistant", "content": "The 4 pens cost $12."},
    ]
    assert row["thinking"] == "Alright, each pen costs $3 and I need 4 of them.\n4 × 3 = 12."
    assert row["answer"] is None  # no \boxed{} in the output


def test_real_shaped_openthoughts_row_drops_the_system_prompt() -> None:
    (row,) = convert_rows(get_adapter("openthoughts"), [OPENTHOUGHTS_ROW])
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert row["messages"][0]["content"] == OPENTHOUGHTS_ROW["conversations"][0]["value"]
    assert (
        row["messages"][1]["content"].startswith("Writing $\\frac{1}{2}")
        and "end_of" not in row["messages"][1]["content"]
    )
    assert row["thinking"] == "Okay, so I need to add 1/2 and 1/4.\n\n1/2 = 2/4, so the sum is 3/4."
    assert row["answer"] == "\\frac{3}{4}"


def test_real_shaped_openr1_row_with_null_llama_correctness() -> None:
    (row,) = convert_rows(get_adapter("openr1_math"), [OPENR1_ROW])
    assert row["id"] == f"openr1_math-{OPENR1_ROW['uuid']}"
    assert row["messages"][1]["content"] == "So $x = \\boxed{4}$."
    assert row["thinking"] == "Okay, 2x = 8, so x = 4." and row["answer"] == "4"


def test_openr1_without_assistant_message_uses_the_first_correct_generation() -> None:
    generations = [
        "Wrong start </think> $\\boxed{5}$",
        "Right: 2x = 8.\n</think>\n\n$\\boxed{4}$",
    ]  # no <think>
    row = OPENR1_ROW | {
        "messages": OPENR1_ROW["messages"][:1],
        "generations": generations,
        "correctness_math_verify": [False, True],
        "answer": None,
    }
    (converted,) = convert_rows(get_adapter("openr1_math"), [row])
    assert converted["thinking"] == "Right: 2x = 8." and converted["answer"] == "4"


def test_large_string_columns_are_accepted() -> None:
    table = pa.table(
        {
            "instruction": pa.array([OPENO1_ROW["instruction"]], pa.large_string()),
            "output": pa.array([OPENO1_ROW["output"]], pa.large_string()),
        }
    )
    assert convert_table(get_adapter("openo1"), table, "x.parquet").unified.num_rows == 1


def test_duplicate_rows_get_distinct_stable_ids() -> None:
    ids = [row["id"] for row in convert_rows(get_adapter("openo1"), [OPENO1_ROW] * 3)]
    assert len(set(ids)) == 3 and ids[1] == f"{ids[0]}-2"
    assert ids == [row["id"] for row in convert_rows(get_adapter("openo1"), [OPENO1_ROW] * 3)]


# --- failures name the file, the row and the field ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "column"),
    [("openo1", "output"), ("openthoughts", "conversations"), ("openr1_math", "problem")],
)
def test_missing_column_names_the_column_and_the_file(
    name: str, column: str, problems: list[Problem]
) -> None:
    adapter = get_adapter(name)
    table = adapter.synthesize(problems[:3])
    renamed = table.rename_columns([f"{c}_v2" if c == column else c for c in table.column_names])
    with pytest.raises(
        DataError, match=rf"data/raw/{name}\.parquet.*'{column}' is missing.*expected columns"
    ):
        convert_table(adapter, renamed, f"data/raw/{name}.parquet")


def test_an_absent_optional_column_reads_as_null() -> None:
    adapter = get_adapter("openr1_math")
    table = pa.Table.from_pylist([OPENR1_ROW], schema=adapter.schema).drop_columns(["correctness_llama"])
    assert convert_table(adapter, table, "r1.parquet").unified.num_rows == 1


def test_wrong_column_type_names_the_column() -> None:
    adapter = get_adapter("openr1_math")
    table = pa.Table.from_pylist([OPENR1_ROW], schema=adapter.schema)
    table = table.set_column(table.schema.get_field_index("generations"), "generations", pa.array(["oops"]))
    with pytest.raises(DataError, match=r"f\.parquet: openr1_math column 'generations' has type string"):
        convert_table(adapter, table, "f.parquet")


THINKING_ONLY = "<|begin_of_thought|>\n\nhmm\n\n<|end_of_thought|>"
DEFECTS = [  # (dataset, defect as seen in the real upstream files, reason code)
    ("openo1", {"output": "<Thought>\nhmm, 3 + 4 = 7 and then"}, "parse.thought_unclosed"),
    ("openo1", {"output": "The answer is 12."}, "parse.thought_missing"),
    ("openo1", {"instruction": ""}, "parse.empty_instruction"),
    ("openo1", {"instruction": None}, "parse.empty_instruction"),
    ("openo1", {"output": "<Thought>\nhmm\n</Thought>\n<Output>\n</Output>"}, "parse.empty_answer"),
    ("openo1", {"output": "<Thought>\nhmm\n</Thought>\n   "}, "parse.empty_answer"),
    ("openthoughts", {"conversations": OPENTHOUGHTS_ROW["conversations"][:1]}, "parse.no_assistant_turn"),
    ("openthoughts", {"conversations": OPENTHOUGHTS_ROW["conversations"][1:]}, "parse.no_user_turn"),
    (
        "openthoughts",
        {
            "conversations": [
                OPENTHOUGHTS_ROW["conversations"][0],
                {"from": "assistant", "value": THINKING_ONLY},
            ]
        },
        "parse.solution_missing",
    ),
    (
        "openthoughts",
        {"conversations": [OPENTHOUGHTS_ROW["conversations"][0], {"from": "assistant", "value": 42}]},
        "parse.type_error",
    ),
    ("openr1_math", {"problem": None}, "parse.empty_problem"),
    (
        "openr1_math",
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "<think>\nonly"}]},
        "parse.think_unclosed",
    ),
    (
        "openr1_math",
        {"messages": OPENR1_ROW["messages"][:1], "correctness_math_verify": [False, False]},
        "parse.no_assistant_turn",
    ),
    ("openr1_math", {"generations": "not a list"}, "parse.type_error"),
]
GOOD_ROWS = {"openo1": OPENO1_ROW, "openthoughts": OPENTHOUGHTS_ROW, "openr1_math": OPENR1_ROW}


@pytest.mark.parametrize(("name", "defect", "code"), DEFECTS)
def test_a_malformed_row_is_set_aside_with_its_reason_and_the_rest_converts(
    name: str, defect: dict[str, Any], code: str
) -> None:
    adapter, good = get_adapter(name), GOOD_ROWS[name]
    bad = good | defect
    upstream = upstream_rows(adapter, [good, bad, good], f"{name}.jsonl")
    converted = convert_table(adapter, upstream.table, f"{name}.parquet", upstream.indices)
    rejected = upstream.rejected + converted.rejected
    assert converted.unified.num_rows == 2  # in = converted + set aside
    assert [(r["dataset"], r["index"], r["reason"]) for r in rejected] == [(name, 1, code)]
    assert rejected[0]["detail"].startswith(f"{name} row 1: ")
    assert json.loads(rejected[0]["raw"])  # the row itself, as JSON text: nothing lost
    assert pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA).num_rows == 1


def test_tag_variants_are_normalised_and_counted() -> None:
    variants = {
        "openo1": OPENO1_ROW | {"output": "< thought >\nhmm\n</THOUGHT>\n<output>\n\\boxed{4}\n</Output>"},
        "openthoughts": OPENTHOUGHTS_ROW
        | {
            "conversations": [
                OPENTHOUGHTS_ROW["conversations"][0],
                {
                    "from": "assistant",
                    "value": "<|Begin_of_Thought|>\nhmm\n<| end_of_thought |>\n<|BEGIN_OF_SOLUTION|>\n4\n",
                },
            ]
        },
        "openr1_math": OPENR1_ROW
        | {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": "<Think>a</ think>4"},
            ]
        },
    }
    for name, row in variants.items():
        adapter = get_adapter(name)
        upstream = upstream_rows(adapter, [GOOD_ROWS[name], row], f"{name}.jsonl")
        assert upstream.normalised == 1 and upstream.rejected == []
        converted = convert_table(adapter, upstream.table, name, upstream.indices)
        assert converted.rejected == [] and converted.unified.num_rows == 2
        assert converted.unified.column("thinking")[1].as_py() in {"hmm", "a"}


def test_a_column_missing_from_every_row_stops_the_stage_naming_file_and_column() -> None:
    rows = [{"instruction": "q", "answer": "no output column"}] * 3
    with pytest.raises(DataError, match=r"mine\.jsonl: openo1 column 'output' is missing from every row"):
        upstream_rows(get_adapter("openo1"), rows, "mine.jsonl")


def test_a_column_of_the_wrong_type_in_every_row_stops_the_stage() -> None:
    rows = [OPENR1_ROW | {"generations": "text"}] * 2
    with pytest.raises(
        DataError, match=r"r1\.jsonl: openr1_math column 'generations' holds no value of type"
    ):
        upstream_rows(get_adapter("openr1_math"), rows, "r1.jsonl")


def test_unknown_dataset_lists_the_valid_names() -> None:
    with pytest.raises(
        ConfigError, match="unknown dataset 'gsm8k'; valid datasets: openo1, openthoughts, openr1_math"
    ):
        get_adapter("gsm8k")


def test_last_boxed_handles_nested_braces() -> None:
    assert last_boxed("a \\boxed{1} then \\boxed{\\frac{3}{4}} end") == "\\frac{3}{4}"
    assert last_boxed("no box") is None and last_boxed("\\boxed{unclosed") is None
