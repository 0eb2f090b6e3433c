"""The offline generator: deterministic, correct step by step, unique, held-out disjoint by construction."""

import re
from fractions import Fraction

import pytest

from logicflow.datasets.generator import CURRICULA, generate, is_heldout, solve

# one binary operation per computing step: "label: a op b = c." (a negative right operand in parentheses)
NUM = r"-?\d+(?:/\d+)?"
STEP = re.compile(rf"(?<![\w/.])({NUM}) ([-+×÷]) \(?({NUM})\)? = ({NUM})\.$")
APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "×": lambda a, b: a * b, "÷": lambda a, b: a / b}


DIFFICULTIES = pytest.mark.parametrize("difficulty", sorted(CURRICULA))


@DIFFICULTIES
def test_same_seed_same_problems_different_seed_different(difficulty: str) -> None:
    assert generate(300, seed=7, difficulty=difficulty) == generate(300, seed=7, difficulty=difficulty)
    heldout = generate(300, seed=7, split="heldout", difficulty=difficulty)
    assert heldout == generate(300, seed=7, split="heldout", difficulty=difficulty)
    assert [p.question for p in generate(300, 7, difficulty=difficulty)] != [
        p.question for p in generate(300, 8, difficulty=difficulty)
    ]


@pytest.mark.parametrize(
    ("seed", "split", "difficulty"),
    [(0, "train", "hard"), (1, "train", "easy"), (2, "heldout", "hard"), (3, "heldout", "easy")],
)
def test_every_answer_is_recomputed_from_params(seed: int, split: str, difficulty: str) -> None:
    # the easy space holds about 12,000 problems, one in eight of them held out
    n = 1000 if (split, difficulty) == ("heldout", "easy") else 3000
    problems = generate(n, seed=seed, split=split, difficulty=difficulty)
    assert {p.kind for p in problems} == set(CURRICULA[difficulty])
    for p in problems:
        assert solve(p) == p.answer, p
        assert p.answer == str(Fraction(p.answer)), f"not canonical: {p.answer!r}"


@DIFFICULTIES
def test_every_computing_step_is_correct(difficulty: str) -> None:
    for p in generate(3000, seed=3, difficulty=difficulty):
        checked = 0
        for step in p.steps:
            if match := STEP.search(step):
                a, op, b, c = match.groups()
                assert APPLY[op](Fraction(a), Fraction(b)) == Fraction(c), (p.question, step)
                checked += 1
        assert checked >= 1, p
        assert p.answer in p.steps[-1], p  # the steps end at the answer


def test_linear_answers_satisfy_their_equation() -> None:
    for p in (p for p in generate(2000, seed=4, difficulty="hard") if p.kind == "linear"):
        a, b, c, d = p.params
        x = Fraction(p.answer)
        assert a * x + b == c * x + d, p


@DIFFICULTIES
def test_heldout_and_train_are_disjoint_whatever_the_seeds(difficulty: str) -> None:
    train = [p for seed in range(4) for p in generate(2000, seed=seed, split="train", difficulty=difficulty)]
    heldout = [
        p for seed in range(4) for p in generate(200, seed=seed, split="heldout", difficulty=difficulty)
    ]
    assert {p.question for p in train}.isdisjoint(p.question for p in heldout)
    # disjoint as problems, not only as texts: "What is 47 + 38?" and its word problem share one key
    assert {p.key for p in train}.isdisjoint(p.key for p in heldout)
    assert all(is_heldout(p.key) for p in heldout) and not any(is_heldout(p.key) for p in train)


def test_easy_problems_are_two_digit_one_step_with_a_short_worked_line() -> None:
    for p in generate(2000, seed=6, difficulty="easy"):
        a, sym, b = p.params
        assert 10 <= a <= 99 and 10 <= b <= 99 and sym in "+-" and int(p.answer) > 0
        assert len(p.steps) == 1 and p.steps[0].endswith(f"{a} {sym} {b} = {p.answer}.")


def test_questions_and_ids_are_unique_and_varied() -> None:
    problems = generate(20000, seed=5, difficulty="hard")
    assert len({p.question for p in problems}) == len(problems) == len({p.id for p in problems})
    normalised = {re.sub(r"\W+", " ", p.question.lower()).strip() for p in problems}
    assert len(normalised) > 0.99 * len(problems)
    openings = {" ".join(p.question.split()[:2]) for p in problems if not p.question[0].isdigit()}
    assert len(openings) > 30  # phrasing varies, not one template per kind


def test_unknown_split_is_rejected() -> None:
    with pytest.raises(ValueError, match="split"):
        generate(1, seed=0, split="test")  # type: ignore[arg-type]
