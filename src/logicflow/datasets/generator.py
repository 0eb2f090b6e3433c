"""Deterministic offline generator of verifiable math problems with correct worked steps.

It stands in for the Hub datasets when they cannot be fetched (each adapter writes the problems in its
upstream schema) and always supplies the held-out eval set.

    problems = generate(1000, seed=0, split="train", difficulty="easy")
    assert all(solve(p) == p.answer for p in problems)

- Two curricula (`CURRICULA`, `data.difficulty`): `easy` (the embedded default) is two-digit addition and
  subtraction and one-operation word problems, worked in one short step: a skill SmolLM2-135M gets right
  about one time in six and can learn in a few CPU minutes. `hard` is the multi-step
  mix (arithmetic with 3-4 operands, multi-step word problems, linear equations, fractions, percentages),
  where a 135M model stays at the floor before and after tuning.
- Every problem keeps the parameters it was built from (`Problem.params`), and `solve` recomputes the answer
  from them by a separate route (closed-form formulas, or Python's own parser for expressions), so the
  answer reached through the worked steps can be checked.
- Each step that computes something ends in one binary operation `a op b = c` (op in + - × ÷), so tests can
  check every step's arithmetic too.
- Held-out disjointness is by construction: a problem belongs to the held-out split iff the SHA-256 of its
  key (its parameters, not the wording) falls in bucket 0 of `HELDOUT_BUCKETS`, so no seeds can put one
  problem in both splits, not even phrased differently, with other names or as a word problem.
- `generate` is deterministic for (n, seed, split, difficulty), and problem keys are unique within a call.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import math
import operator
import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

Split = Literal["train", "heldout"]
Difficulty = Literal["easy", "hard"]
Number = int | Fraction
Params = tuple[int | str, ...]

HELDOUT_BUCKETS = 8  # 1 question text in 8 belongs to the held-out split

OPS: dict[str, Callable[[Fraction, Fraction], Fraction]] = {
    "+": operator.add,
    "-": operator.sub,
    "×": operator.mul,
    "÷": operator.truediv,
}


@dataclass(frozen=True)
class Problem:
    id: str
    kind: str
    question: str
    steps: tuple[str, ...]  # worked reasoning, one correct step per line
    answer: str  # canonical: "42", "-5", "3/4" (reduced)
    params: Params  # what `solve` recomputes the answer from

    @property
    def key(self) -> str:
        """What the problem is, whatever its wording: its parameters (decide its split)."""
        return problem_key(self.params)


def canonical(value: Number) -> str:
    """`Fraction(6, 8)` -> "3/4", `Fraction(-10, 2)` -> "-5" (Fractions are kept reduced)."""
    return str(value)


def problem_key(params: Params) -> str:
    """`(47, "+", 38)` -> "(47, '+', 38)": the same key for "What is 47 + 38?" and its word problem."""
    return repr(params)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def is_heldout(key: str) -> bool:
    """The split a problem key (`Problem.key`) belongs to, whatever seed produced it."""
    return int.from_bytes(key_digest(key)[:8], "big") % HELDOUT_BUCKETS == 0


def evaluate(expression: str) -> Fraction:
    """Exact value of an expression of numbers, parentheses and + - × ÷ (* and / too)."""
    return _eval_node(ast.parse(expression.replace("×", "*").replace("÷", "/"), mode="eval").body)


_AST_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _eval_node(node: ast.expr) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval_node(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _AST_OPS:
        return _AST_OPS[type(node.op)](_eval_node(node.left), _eval_node(node.right))
    raise ValueError(f"unsupported expression element: {ast.dump(node)}")


class _Work:
    """Collects worked steps; `op` computes one binary operation and records it as `label: a op b = c.`"""

    def __init__(self) -> None:
        self.steps: list[str] = []

    def op(self, label: str, a: Number, sym: str, b: Number) -> Fraction:
        value = OPS[sym](Fraction(a), Fraction(b))
        right = f"({canonical(b)})" if b < 0 else canonical(b)
        self.steps.append(f"{label}: {canonical(a)} {sym} {right} = {canonical(value)}.")
        return value

    def note(self, text: str) -> None:
        self.steps.append(text)


# --- arithmetic: 3 or 4 integers, + - ×, optional parentheses ---------------------------------------------

ARITHMETIC_PHRASES = (
    "What is {e}?",
    "Calculate {e}.",
    "Evaluate {e}.",
    "Compute the value of {e}.",
    "Find the value of {e}.",
    "Work out {e}.",
)
_OP_LABELS = {"+": "Add", "-": "Subtract", "×": "Multiply"}


def _arithmetic(rng: random.Random, work: _Work) -> tuple[str, Fraction, Params]:
    count = rng.randint(3, 4)
    tokens: list[Number | str] = [rng.randint(2, 30)]
    for _ in range(count - 1):
        sym = rng.choice("+-×")
        tokens += [sym, rng.randint(2, 12) if sym == "×" else rng.randint(2, 60)]
    group = rng.randrange(count - 1) if rng.random() < 0.4 else None  # parenthesise operation `group`
    text = " ".join(str(t) for t in tokens)
    if group is not None:
        parts = [str(t) for t in tokens]
        parts[2 * group] = "(" + parts[2 * group]
        parts[2 * group + 2] += ")"
        text = " ".join(parts)
        value = work.op("Parentheses first", tokens[2 * group], tokens[2 * group + 1], tokens[2 * group + 2])
        tokens[2 * group : 2 * group + 3] = [value]
    for syms in ("×", "+-"):  # multiplication before addition and subtraction, each left to right
        i = 1
        while i < len(tokens):
            if tokens[i] in syms:
                sym = tokens[i]
                value = work.op(_OP_LABELS[sym], tokens[i - 1], sym, tokens[i + 1])
                tokens[i - 1 : i + 2] = [value]
            else:
                i += 2
    question = rng.choice(ARITHMETIC_PHRASES).format(e=text)
    return question, Fraction(tokens[0]), (text,)


def _solve_arithmetic(params: Params) -> Fraction:
    return evaluate(str(params[0]))


# --- multi-step word problems -----------------------------------------------------------------------------

NAMES = (
    "Ava",
    "Ben",
    "Chloe",
    "Diego",
    "Emma",
    "Farah",
    "Grace",
    "Hiro",
    "Isla",
    "Jamal",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Uma",
    "Victor",
    "Wen",
    "Yusuf",
    "Zoe",
)
ITEMS = ("marbles", "stickers", "stamps", "trading cards", "beads", "pencils", "shells", "coins", "buttons")
GOODS = ("notebooks", "pens", "apples", "tickets", "books", "mugs", "plants", "candles")
FOODS = ("cookies", "muffins", "cupcakes", "rolls", "tarts")
PLANTS = ("tulips", "carrots", "tomato plants", "roses", "lettuces")
VEHICLES = ("train", "bus", "car", "truck", "ferry")


def _word_collect(rng: random.Random, w: _Work) -> tuple[str, Params]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(5, 80), rng.randint(2, 9), rng.randint(3, 15)
    d = rng.randint(1, a + b * c - 1)
    bought = w.op(f"{item.capitalize()} bought", b, "×", c)
    total = w.op("After buying", a, "+", bought)
    w.op("After giving some away", total, "-", d)
    question = rng.choice(
        (
            "{n} has {a} {i}. {n} buys {b} packs with {c} {i} in each pack, then gives {d} {i} to a friend. "
            "How many {i} does {n} have now?",
            "{n} starts with {a} {i}, buys {b} packs of {c} {i} each, and then gives away {d} of them. "
            "How many {i} are left?",
        )
    )
    return question.format(n=name, i=item, a=a, b=b, c=c, d=d), ("collect", a, b, c, d)


def _word_change(rng: random.Random, w: _Work) -> tuple[str, Params]:
    name, good = rng.choice(NAMES), rng.choice(GOODS)
    a, b = rng.randint(2, 12), rng.randint(2, 25)
    bill = rng.choice((20, 50, 100))
    c = bill * (a * b // bill + rng.randint(1, 2))
    cost = w.op("Total cost", a, "×", b)
    w.op("Change", c, "-", cost)
    question = rng.choice(
        (
            "{n} buys {a} {g} that cost ${b} each and pays with ${c}. "
            "How much change does {n} get, in dollars?",
            "Each of the {g} costs ${b}. {n} buys {a} of them and hands over ${c}. "
            "How many dollars of change should {n} receive?",
        )
    )
    return question.format(n=name, g=good, a=a, b=b, c=c), ("change", a, b, c)


def _word_trip(rng: random.Random, w: _Work) -> tuple[str, Params]:
    vehicle = rng.choice(VEHICLES)
    a, b, c, d = rng.randint(20, 120), rng.randint(2, 6), rng.randint(20, 120), rng.randint(1, 5)
    first = w.op("First part", a, "×", b)
    second = w.op("Second part", c, "×", d)
    w.op("Total distance", first, "+", second)
    question = rng.choice(
        (
            "A {v} travels at {a} km/h for {b} hours and then at {c} km/h for {d} hours. "
            "How many kilometres does it travel in total?",
            "For {b} hours a {v} moves at {a} km/h; after that it moves at {c} km/h for {d} hours. "
            "What total distance, in km, does the {v} cover?",
        )
    )
    return question.format(v=vehicle, a=a, b=b, c=c, d=d), ("trip", a, b, c, d)


def _word_share(rng: random.Random, w: _Work) -> tuple[str, Params]:
    name, food = rng.choice(NAMES), rng.choice(FOODS)
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    c = rng.choice([k for k in range(2, 13) if (a * b) % k == 0])
    total = w.op(f"{food.capitalize()} baked", a, "×", b)
    w.op("Each share", total, "÷", c)
    question = rng.choice(
        (
            "{n} bakes {a} trays of {b} {f} and shares them equally among {c} friends. "
            "How many {f} does each friend get?",
            "There are {a} trays with {b} {f} on each tray. {n} splits all the {f} evenly between {c} "
            "people. How many {f} does each person receive?",
        )
    )
    return question.format(n=name, f=food, a=a, b=b, c=c), ("share", a, b, c)


def _word_savings(rng: random.Random, w: _Work) -> tuple[str, Params]:
    name = rng.choice(NAMES)
    a, b = rng.randint(3, 50), rng.randint(2, 20)
    c = rng.randint(1, a * b - 1)
    saved = w.op("Amount saved", a, "×", b)
    w.op("Left after spending", saved, "-", c)
    question = rng.choice(
        (
            "{n} saves ${a} every week for {b} weeks, then spends ${c} on a gift. How many dollars does {n} "
            "have left?",
            "Over {b} weeks {n} puts aside ${a} a week. Afterwards {n} spends ${c}. "
            "How much money, in dollars, remains?",
        )
    )
    return question.format(n=name, a=a, b=b, c=c), ("savings", a, b, c)


def _word_garden(rng: random.Random, w: _Work) -> tuple[str, Params]:
    plant = rng.choice(PLANTS)
    a, b, d = rng.randint(2, 15), rng.randint(3, 20), rng.randint(1, 8)
    c = rng.randint(1, a * b - 1)
    planted = w.op("Plants at first", a, "×", b)
    left = w.op("After removing some", planted, "-", c)
    added = w.op("New plants", d, "×", b)
    w.op("Plants now", left, "+", added)
    question = rng.choice(
        (
            "A garden has {a} rows of {b} {p}. {c} {p} are removed, and then {d} new rows of {b} {p} "
            "are planted. How many {p} are in the garden now?",
            "A gardener plants {a} rows with {b} {p} in each row, pulls out {c} of them, and later adds "
            "{d} more rows of {b}. How many {p} are there in the end?",
        )
    )
    return question.format(p=plant, a=a, b=b, c=c, d=d), ("garden", a, b, c, d)


def _word_ages(rng: random.Random, w: _Work) -> tuple[str, Params]:
    first, second, third = rng.sample(NAMES, 3)
    a, b = rng.randint(3, 15), rng.randint(2, 5)
    c = rng.randint(1, a * b - 1)
    older = w.op(f"{second}'s age", a, "×", b)
    w.op(f"{third}'s age", older, "-", c)
    question = rng.choice(
        (
            "{x} is {a} years old. {y} is {b} times as old as {x}, and {z} is {c} years younger than {y}. "
            "How old is {z}?",
            "{y}'s age is {b} times {x}'s age, and {x} is {a}. {z} is {c} years younger than {y}. "
            "What is {z}'s age in years?",
        )
    )
    return question.format(x=first, y=second, z=third, a=a, b=b, c=c), ("ages", a, b, c)


WORD_PROBLEMS = (
    _word_collect,
    _word_change,
    _word_trip,
    _word_share,
    _word_savings,
    _word_garden,
    _word_ages,
)
_WORD_FORMULAS: dict[str, Callable[..., Number]] = {
    "collect": lambda a, b, c, d: a + b * c - d,
    "change": lambda a, b, c: c - a * b,
    "trip": lambda a, b, c, d: a * b + c * d,
    "share": lambda a, b, c: Fraction(a * b, c),
    "savings": lambda a, b, c: a * b - c,
    "garden": lambda a, b, c, d: a * b - c + d * b,
    "ages": lambda a, b, c: a * b - c,
}


def _word(rng: random.Random, work: _Work) -> tuple[str, Fraction, Params]:
    question, params = rng.choice(WORD_PROBLEMS)(rng, work)
    return question, _last_value(work), params


def _solve_word(params: Params) -> Fraction:
    return Fraction(_WORD_FORMULAS[str(params[0])](*params[1:]))


# --- linear equations: a·v + b = c·v + d -------------------------------------------------------------------

LINEAR_PHRASES = (
    "Solve for {v}: {eq}.",
    "Find {v} if {eq}.",
    "What value of {v} satisfies {eq}?",
    "Determine {v} given that {eq}.",
    "Solve the equation {eq} for {v}.",
)
VARIABLES = ("x", "y", "n", "t", "k")


def _side(coef: int, const: int, var: str) -> str:
    """Render `coef·var + const` the way people write it: "3x - 5", "-x + 2", "7"."""
    term = {0: "", 1: var, -1: f"-{var}"}.get(coef, f"{coef}{var}")
    if not term:
        return str(const)
    if const == 0:
        return term
    return f"{term} {'+' if const > 0 else '-'} {abs(const)}"


def _linear(rng: random.Random, work: _Work) -> tuple[str, Fraction, Params]:
    var = rng.choice(VARIABLES)
    a = rng.choice([k for k in range(-12, 13) if k != 0])
    c = 0 if rng.random() < 0.6 else rng.choice([k for k in range(-9, 10) if k not in (0, a)])
    b = rng.choice([k for k in range(-40, 41) if k != 0])
    # mostly integer solutions, the rest fractions
    d = (a - c) * rng.randint(-15, 15) + b if rng.random() < 0.7 else rng.randint(-60, 60)
    equation = f"{_side(a, b, var)} = {_side(c, d, var)}"
    coef = Fraction(a)
    if c:
        coef = work.op(f"Collect the {var} terms on the left", a, "-", c)
    const = work.op("Move the constant to the right", d, "-", b)
    work.note(f"So {_side(int(coef), 0, var)} = {canonical(const)}.")
    value = const
    if coef != 1:
        value = work.op(f"Divide both sides by {canonical(coef)}", const, "÷", coef)
        work.note(f"Therefore {var} = {canonical(value)}.")
    return rng.choice(LINEAR_PHRASES).format(v=var, eq=equation), value, (a, b, c, d)


def _solve_linear(params: Params) -> Fraction:
    a, b, c, d = (int(p) for p in params)
    return Fraction(d - b, a - c)


# --- fractions: p/q op r/s ---------------------------------------------------------------------------------

FRACTION_PHRASES = (
    "Compute {e}. Give the answer in lowest terms.",
    "What is {e}?",
    "Evaluate {e} and simplify.",
    "Calculate {e}, writing the result as a reduced fraction.",
)
FRACTION_OP_PHRASES = {
    "+": "Add {a} and {b}.",
    "-": "Subtract {b} from {a}.",
    "×": "Multiply {a} by {b}.",
    "÷": "Divide {a} by {b}.",
}


def _random_fraction(rng: random.Random) -> Fraction:
    while True:
        value = Fraction(rng.randint(1, 23), rng.randint(2, 12))
        if value.denominator > 1:
            return value


def _fraction(rng: random.Random, work: _Work) -> tuple[str, Fraction, Params]:
    x, y, sym = _random_fraction(rng), _random_fraction(rng), rng.choice("+-×÷")
    if sym in "+-":
        common = math.lcm(x.denominator, y.denominator)
        xn, yn = x.numerator * common // x.denominator, y.numerator * common // y.denominator
        work.note(
            f"The least common denominator of {x.denominator} and {y.denominator} is {common}, "
            f"so {x} = {xn}/{common} and {y} = {yn}/{common}."
        )
        numerator = work.op("Combine the numerators", xn, sym, yn)
        denominator: Number = common
    else:
        if sym == "÷":
            work.note(f"Dividing by {y} is the same as multiplying by its reciprocal {1 / y}.")
        right = y if sym == "×" else 1 / y
        numerator = work.op("Multiply the numerators", x.numerator, "×", right.numerator)
        denominator = work.op("Multiply the denominators", x.denominator, "×", right.denominator)
    value = numerator / denominator
    if value.denominator == denominator:
        work.note(f"{canonical(numerator)}/{canonical(denominator)} is already in lowest terms.")
    else:
        work.op("Simplify", numerator, "÷", denominator)
    if rng.random() < 0.5:
        question = FRACTION_OP_PHRASES[sym].format(a=x, b=y)
    else:
        question = rng.choice(FRACTION_PHRASES).format(e=f"{x} {sym} {y}")
    return question, value, (x.numerator, x.denominator, sym, y.numerator, y.denominator)


def _solve_fraction(params: Params) -> Fraction:
    p, q, sym, r, s = params
    return evaluate(f"({p} / {q}) {sym} ({r} / {s})")


# --- percentages -------------------------------------------------------------------------------------------

SALE_ITEMS = ("jacket", "lamp", "bicycle", "backpack", "clock", "kettle", "chair", "tent")
PERCENTS = (5, 10, 12, 15, 20, 25, 30, 40, 45, 50, 60, 75, 80, 90)


def _percent(rng: random.Random, work: _Work) -> tuple[str, Fraction, Params]:
    p = rng.choice(PERCENTS)
    step = 100 // math.gcd(p, 100)  # n must be a multiple of this for p% of n to be whole
    n = step * rng.randint(1, max(1, 2000 // step))
    template = rng.choice(("of", "discount", "increase"))
    part = work.op(f"{p}% of {n}", Fraction(p, 100), "×", n)
    if template == "of":
        question = rng.choice(("What is {p}% of {n}?", "Find {p} percent of {n}.", "Calculate {p}% of {n}."))
    elif template == "discount":
        question = rng.choice(
            (
                "A {g} costs ${n} and is on sale for {p}% off. What is the sale price in dollars?",
                "The price of a {g} is ${n}. After a {p}% discount, how many dollars does it cost?",
            )
        )
        work.op("Sale price", n, "-", part)
    else:
        question = rng.choice(
            (
                "A town had {n} residents, and its population grew by {p}%. How many residents "
                "does it have now?",
                "A club with {n} members grows by {p}%. How many members does it have after the increase?",
            )
        )
        work.op("New total", n, "+", part)
    question = question.format(p=p, n=n, g=rng.choice(SALE_ITEMS))
    return question, _last_value(work), (template, p, n)


def _solve_percent(params: Params) -> Fraction:
    template, p, n = params
    part = Fraction(int(p) * int(n), 100)
    return {"of": part, "discount": int(n) - part, "increase": int(n) + part}[str(template)]


def _last_value(work: _Work) -> Fraction:
    """The result of the last `a op b = c.` step."""
    last = next(s for s in reversed(work.steps) if " = " in s)
    return Fraction(last.rsplit(" = ", 1)[1].rstrip("."))


# --- easy: two-digit + and -, one-operation word problems, one worked step ---------------------------------

EASY_PHRASES = ("What is {e}?", "Calculate {e}.", "Compute {e}.", "Work out {e}.", "Find {e}.")


def _two_digit_op(rng: random.Random) -> tuple[int, str, int]:
    """a + b or a - b with two-digit operands (a > b for subtraction, so the answer is positive)."""
    if rng.random() < 0.7:
        return rng.randint(10, 99), "+", rng.randint(10, 99)
    a = rng.randint(11, 99)
    return a, "-", rng.randint(10, a - 1)


def _easy_arithmetic(rng: random.Random, work: _Work) -> tuple[str, Fraction, Params]:
    a, sym, b = _two_digit_op(rng)
    value = work.op(_OP_LABELS[sym], a, sym, b)
    return rng.choice(EASY_PHRASES).format(e=f"{a} {sym} {b}"), value, (a, sym, b)


EASY_WORD = {
    "+": (
        "{n} has {a} {i} and gets {b} more. How many {i} does {n} have now?",
        "{n} collected {a} {i} on Monday and {b} {i} on Tuesday. How many {i} did {n} collect in all?",
        "A box holds {a} {i}. {n} puts in {b} more {i}. How many {i} are in the box?",
    ),
    "-": (
        "{n} has {a} {i} and gives {b} of them away. How many {i} does {n} have left?",
        "There are {a} {i} in a jar. {n} takes out {b}. How many {i} are still in the jar?",
        "{n} had {a} {i} and lost {b}. How many {i} does {n} have now?",
    ),
}


def _easy_word(rng: random.Random, work: _Work) -> tuple[str, Fraction, Params]:
    a, sym, b = _two_digit_op(rng)
    value = work.op("In all" if sym == "+" else "Left", a, sym, b)
    question = rng.choice(EASY_WORD[sym]).format(n=rng.choice(NAMES), i=rng.choice(ITEMS), a=a, b=b)
    return question, value, (a, sym, b)


def _solve_two_digit(params: Params) -> Fraction:
    return evaluate(f"{params[0]} {params[1]} {params[2]}")


# --- public API --------------------------------------------------------------------------------------------

Builder = Callable[[random.Random, _Work], tuple[str, Fraction, Params]]
KINDS: dict[str, tuple[Builder, Callable[[Params], Fraction]]] = {
    # kind: (builder, independent solver)
    "add_sub": (_easy_arithmetic, _solve_two_digit),
    "word_one_step": (_easy_word, _solve_two_digit),
    "arithmetic": (_arithmetic, _solve_arithmetic),
    "word": (_word, _solve_word),
    "linear": (_linear, _solve_linear),
    "fraction": (_fraction, _solve_fraction),
    "percent": (_percent, _solve_percent),
}
# difficulty -> {kind: share of problems}
CURRICULA: dict[str, dict[str, float]] = {
    "easy": {"add_sub": 0.7, "word_one_step": 0.3},
    "hard": {"arithmetic": 0.2, "word": 0.3, "linear": 0.2, "fraction": 0.15, "percent": 0.15},
}


def solve(problem: Problem) -> str:
    """Recompute the answer from `problem.params` alone (a different route from the worked steps)."""
    return canonical(KINDS[problem.kind][1](problem.params))


def generate(n: int, seed: int, split: Split = "train", difficulty: Difficulty = "easy") -> list[Problem]:
    """`n` distinct problems of `split` and `difficulty`, the same ones for the same arguments."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if difficulty not in CURRICULA:
        raise ValueError(f"difficulty must be one of {', '.join(CURRICULA)}, got {difficulty!r}")
    kinds = tuple(CURRICULA[difficulty])
    cum_weights = tuple(itertools.accumulate(CURRICULA[difficulty].values()))
    rng = random.Random(seed)
    want_heldout = split == "heldout"
    problems: list[Problem] = []
    seen: set[str] = set()
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(
                f"could not generate {n} distinct {split} {difficulty!r} problems (seed {seed}): "
                "fewer exist; lower data.max_samples / data.heldout_size or set data.difficulty: hard"
            )
        kind = rng.choices(kinds, cum_weights=cum_weights)[0]
        work = _Work()
        question, value, params = KINDS[kind][0](rng, work)
        key = problem_key(params)
        if key in seen or is_heldout(key) != want_heldout:
            continue
        seen.add(key)
        digest = key_digest(key).hex()
        problems.append(
            Problem(f"{kind}-{digest[:16]}", kind, question, tuple(work.steps), canonical(value), params)
        )
    return problems
