"""Unit tests of the validation helpers that need no stage run: decontamination, derived columns, UTF-8."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from logicflow.errors import ConfigError
from logicflow.paths import Paths
from logicflow.validation import checks, decontam, suites
from logicflow.validation.tables import UNIFIED_COLUMNS, nested_type_problems, repair_utf8

EVAL = [
    "A train travels at 57 km/h for 3 hours and then at 88 km/h for 2 hours. How many kilometres does it "
    "travel in total?",
    "Compute 37 + 58 now.",  # short: matched as a whole
    "Add 2 and 2",  # very short: matched only as the whole prompt
]


@pytest.fixture(scope="module")
def index() -> decontam.NgramIndex:
    return decontam.NgramIndex([decontam.EvalSet("heldout", EVAL)], n=8)


def test_copied_prompt_is_contaminated(index: decontam.NgramIndex) -> None:
    found = index.contaminated_by(
        [
            EVAL[0],
            "Please solve: " + EVAL[0].upper() + " Show your work.",
            "Warm-up first. Compute 37 + 58 now. Then rest.",
            "add 2 and 2",
        ]
    )
    assert found == ["heldout", "heldout", "heldout", "heldout"]


def test_shared_template_text_is_not_contamination(index: decontam.NgramIndex) -> None:
    other_numbers = (
        "A bus travels at 41 km/h for 5 hours and then at 63 km/h for 2 hours. How many kilometres does it "
        "travel in total?"
    )
    share, _ = index.overlap([other_numbers])
    assert 0 < share[0] < index.min_overlap
    assert (
        index.contaminated_by([other_numbers, "Compute 37 + 59 now.", "Add 2 and 2 and 2 again", ""])
        == [None] * 4
    )


def test_eval_sets_offline(tmp_path) -> None:  # noqa: ANN001
    paths = Paths.from_root(tmp_path)
    sets = {
        s.name: s for s in decontam.load_eval_sets(["logicflow_math_heldout", "humaneval", "ifeval"], paths)
    }
    assert (
        not sets["logicflow_math_heldout"].available
        and "run the data stage" in sets["logicflow_math_heldout"].detail
    )
    assert sets["humaneval"].available and len(sets["humaneval"].prompts) == 164
    assert not sets["ifeval"].available and sets["ifeval"].prompts == []
    with pytest.raises(
        ConfigError, match="unknown eval set 'mmlu'; valid: logicflow_math_heldout, humaneval"
    ):
        decontam.load_eval_sets(["mmlu"], paths)


def test_last_boxed() -> None:
    assert checks.last_boxed(r"so \boxed{1} then \boxed{\frac{3}{4}} done") == r"\frac{3}{4}"
    assert checks.last_boxed(r"\boxed{12") == ""
    assert checks.last_boxed("no box") == "" and checks.last_boxed(None) == ""


def test_unique_keys_are_unique_and_keep_ids() -> None:
    keys = checks.unique_keys(pd.Series(["a", "b", "a", None], dtype="str"))
    assert keys.tolist() == ["a", "b", "a@2", "<null>@3"]
    collide = checks.unique_keys(pd.Series(["a", "a", "a@1"], dtype="str"))  # "a@1" exists: positions
    assert collide.is_unique and collide.tolist() == ["@0", "@1", "@2"]


def test_role_sequence_and_shortest_turn() -> None:
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    table = pa.table(
        {
            "id": ["1", "2", "3", "4"],
            "source": ["openo1"] * 4,
            "messages": pa.array(
                [
                    [
                        {"role": "system", "content": "s"},
                        {"role": "user", "content": "u"},
                        {"role": "assistant", "content": "a"},
                    ],
                    [{"role": "user", "content": "u"}, {"role": "assistant", "content": " \n"}],
                    [],
                    None,
                ],
                pa.list_(message),
            ),
            "thinking": ["t", "t", "t", None],
            "answer": [None, None, None, None],
        }
    )
    frame = checks.unified_frame(table)
    assert frame["role_seq"].tolist() == ["system,user,assistant", "user,assistant", "", ""]
    assert frame["min_turn_chars"].tolist() == [1, 0, 0, 0]
    assert frame["role_seq"].str.match(checks.ROLE_ORDER).tolist() == [True, True, False, False]
    assert frame["messages"].isna().tolist() == [False, False, False, True]


def test_invalid_utf8_is_replaced_inside_nested_columns(tmp_path) -> None:  # noqa: ANN001
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    contents = pa.array([b"fine", b"bad \xff byte"], pa.binary())
    content = pa.Array.from_buffers(pa.string(), 2, contents.buffers())
    structs = pa.StructArray.from_arrays([pa.array(["user", "assistant"]), content], fields=list(message))
    table = pa.table({"messages": pa.ListArray.from_arrays(pa.array([0, 2], pa.int32()), structs)})
    fixed, columns = repair_utf8(table, tmp_path / "x.parquet")
    assert columns == 1
    assert fixed.column("messages").to_pylist()[0][1]["content"] == "bad \ufffd byte"


def test_nested_types_are_checked() -> None:
    table = pa.table({"messages": pa.array([["x"]], pa.list_(pa.string()))})
    assert (
        "column 'messages' has type list<item: string>"
        in nested_type_problems(table, UNIFIED_COLUMNS, "f")[0]
    )


def test_mostly_resolution() -> None:
    checks_ = suites.unified_content(512, "quarantine", dedupe=True)
    names = suites.all_check_names(["openo1"])
    mostly = suites.resolve_mostly({"chat_structure": 0.9, "role_order": 0.99}, checks_, 0.8, names)
    assert mostly["role_order"] == 0.99 and mostly["empty_turn"] == 0.9 and mostly["overlong"] == 0.8
    with pytest.raises(ConfigError, match="unknown check 'rol_order'"):
        suites.resolve_mostly({"rol_order": 0.9}, checks_, 0.8, names)


@pytest.mark.parametrize("template", ["chatml", "gemma", "llama3"])
def test_token_counter_matches_transformers(tmp_path, template: str) -> None:  # noqa: ANN001
    """The fast path (tokenizers + own jinja env) renders and counts exactly like transformers does."""
    from logicflow.config import build_config
    from logicflow.model import load_tokenizer
    from logicflow.validation import length, synth

    paths = Paths.from_root(tmp_path)
    synth.build_tokenizer(paths.base_model)
    cfg = build_config({}, None, ["model.id=logicflow/tiny-random-llama", f"model.template={template}"])
    counter = length.load_counter(cfg, paths)
    reference = load_tokenizer(paths.base_model, template)
    conversations = [
        [
            {"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": "\\boxed{5}", "thinking": "2 plus 3\nis 5"},
        ],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "  spaced  "},
            {"role": "assistant", "content": "ok"},
        ],
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": "d", "thinking": "e"},
        ],
    ]
    for turns in conversations:
        text = counter.render(turns)
        assert text == reference.apply_chat_template(turns, tokenize=False)
        assert counter.count([text])[0] == len(reference(text, add_special_tokens=False)["input_ids"])
