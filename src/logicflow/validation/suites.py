r"""The expectation catalogue: every rule is a named `Check` in a family, stated as a built-in GX expectation.

A check's name is what a quarantined row carries in its `reasons` column and what `validate.mostly` may key
on (the family name applies to all checks of the family; a check name wins). Raw-dataset checks are named
`<dataset>.<check>`. Families:

- schema: columns present with their types (per file, table level); required values not null, ids unique,
  source known (rows); raw: columns, types, required values, openr1_math uuids and per-generation lists.
- chat_structure: roles in order (optional system, user/assistant alternating, ending with assistant), only
  allowed roles, no empty or whitespace-only turn; raw: the upstream turn roles, a non-blank prompt.
- reasoning_format: thinking present (`data.format: react`: a well-formed ReAct trace instead), no reasoning
  tag left over, a final answer and a parseable `\boxed{}` for math rows; raw: each source's own tags
  present, balanced and in order, an answer after them.
- text_hygiene: valid UTF-8, no NUL/control characters, no chat-template tokens inside content.
- length: within `train.cutoff_len` tokens (or, with `overlong: truncate`, the answer starts before the cut;
  with `overlong: drop`, longer rows go to quarantine as `overlong_dropped` without counting against
  `max_quarantine_fraction`).
- duplicates: exact and normalised-text duplicates (the first of each group stays clean).
- decontamination: the prompt overlaps a prompt of an eval set (see `decontam.py`).
- parse: every upstream row became a unified row; one that could not (the data stage set it aside) is
  quarantined with the adapter's reason code (`parse.thought_unclosed`, `parse.type_error`, ...).

Table-level checks (a missing column, a column of the wrong type) cannot quarantine a row: they stop the stage
with a DataError naming the file and column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import great_expectations.expectations as gxe
from great_expectations.expectations.row_conditions import Column as Col

from logicflow.errors import ConfigError
from logicflow.validation import checks as c
from logicflow.validation.tables import RAW_COLUMNS, SOURCES, UNIFIED, UNIFIED_COLUMNS
from logicflow.validation.tables import Column as TableColumn

FAMILIES = (
    "schema",
    "chat_structure",
    "reasoning_format",
    "text_hygiene",
    "length",
    "duplicates",
    "decontamination",
    "parse",
)
OVERLONG = {"quarantine": "overlong", "drop": "overlong_dropped"}  # the check per `validate.overlong`
UPSTREAM = "upstream"  # table name of the parse check: one row per upstream row, of every dataset
NOT_BLANK = r"\S"


@dataclass(frozen=True)
class Check:
    name: str  # the quarantine reason, e.g. "role_order" or "openo1.thought_tags"
    family: str
    table: str
    rule: str  # one line a person reads in Data Docs
    make: Callable[..., Any]  # (**kwargs) -> GX expectation; kwargs: meta, description[, mostly]
    table_level: bool = False  # a failure stops the stage (schema), it does not quarantine rows
    keep_first: bool = False  # duplicates: the first row of each group stays clean
    column: str | None = None  # the frame column holding the checked value (for keep_first groups)

    def expectation(self, mostly: float) -> Any:
        kwargs: dict[str, Any] = {
            "meta": {"check": self.name, "family": self.family},
            "description": f"{self.name} ({self.family}): {self.rule}",
        }
        if not self.table_level:
            kwargs["mostly"] = mostly
        return self.make(**kwargs)


def _regex(column: str, regex: str, *, match: bool = True, **cond: Any) -> Callable[..., Any]:
    cls = gxe.ExpectColumnValuesToMatchRegex if match else gxe.ExpectColumnValuesToNotMatchRegex
    return lambda **kw: cls(column=column, regex=regex, **cond, **kw)


def _between(column: str, **bounds: Any) -> Callable[..., Any]:
    return lambda **kw: gxe.ExpectColumnValuesToBeBetween(column=column, **bounds, **kw)


def _nonempty(column: str, **cond: Any) -> Callable[..., Any]:
    return lambda **kw: gxe.ExpectColumnValueLengthsToBeBetween(column=column, min_value=1, **cond, **kw)


def _unique(name: str, family: str, table: str, column: str, description: str) -> Check:
    """No repeated value in `column`; the first row of each value is kept, the repeats are quarantined."""
    return Check(
        name,
        family,
        table,
        description,
        lambda **kw: gxe.ExpectColumnValuesToBeUnique(column=column, **kw),
        keep_first=True,
        column=column,
    )


def _when(column: str) -> dict[str, Any]:
    return {"row_condition": Col(column) == True}  # noqa: E712 - builds a GX condition, not a comparison


def table_checks(table: str, columns: tuple[TableColumn, ...], prefix: str = "") -> list[Check]:
    """Columns present with the right scalar types: table level, checked per file before anything else."""
    found: list[Check] = []
    for col in columns:
        found.append(
            Check(
                f"{prefix}column_{col.name}",
                "schema",
                table,
                f"column `{col.name}` exists",
                lambda n=col.name, **kw: gxe.ExpectColumnToExist(column=n, **kw),
                table_level=True,
            )
        )
        if not col.nested:
            found.append(
                Check(
                    f"{prefix}type_{col.name}",
                    "schema",
                    table,
                    f"`{col.name}` holds strings",
                    lambda n=col.name, **kw: gxe.ExpectColumnValuesToBeOfType(column=n, type_="str", **kw),
                    table_level=True,
                )
            )
    return found


def not_null_checks(table: str, columns: tuple[TableColumn, ...], prefix: str = "") -> list[Check]:
    """Required values present (a list column is checked through its length, null where the list is)."""
    return [
        Check(
            f"{prefix}not_null_{col.name}",
            "schema",
            table,
            f"`{col.name}` is never null",
            lambda n=col.name, **kw: gxe.ExpectColumnValuesToNotBeNull(column=n, **kw),
        )
        for col in columns
        if not col.nullable
    ]


def unified_schema() -> list[Check]:
    """The table-level schema checks of one unified file (the gate; they run again in the content suite)."""
    return table_checks(UNIFIED, UNIFIED_COLUMNS)


def unified_content(
    cutoff_len: int, overlong: str, dedupe: bool, data_format: str = "thinking"
) -> list[Check]:
    t = UNIFIED
    reasoning = (
        Check(
            "react_structure",
            "reasoning_format",
            t,
            "the answer turn is a ReAct trace: Thought first, each Action `tool[input]` answered by an "
            "Observation, one Final Answer last (logicflow.react; replay rows carry none)",
            _regex("react_problem", r"^$", **_when("thinking_required")),
        )
        if data_format == "react"
        else Check(
            "thinking_present",
            "reasoning_format",
            t,
            "the thinking text is not blank (replay rows carry none: see logicflow.datasets.replay)",
            _regex("thinking", NOT_BLANK, **_when("thinking_required")),
        )
    )
    found = [
        *table_checks(t, UNIFIED_COLUMNS),
        *not_null_checks(t, UNIFIED_COLUMNS),
        _unique("id_unique", "schema", t, "id", "ids are unique (the first row of an id is kept)"),
        Check(
            "source_known",
            "schema",
            t,
            f"source is one of {', '.join(SOURCES)}",
            lambda **kw: gxe.ExpectColumnValuesToBeInSet(column="source", value_set=list(SOURCES), **kw),
        ),
        Check(
            "role_order",
            "chat_structure",
            t,
            "roles: optional system, then user/assistant alternating, ending with assistant",
            _regex("role_seq", c.ROLE_ORDER),
        ),
        Check(
            "roles_allowed",
            "chat_structure",
            t,
            "every role is system, user or assistant",
            _regex("role_seq", c.ROLES_ALLOWED),
        ),
        Check(
            "empty_turn",
            "chat_structure",
            t,
            "no empty or whitespace-only turn (shortest turn >= 1 char)",
            _between("min_turn_chars", min_value=1),
        ),
        reasoning,
        Check(
            "reasoning_tags",
            "reasoning_format",
            t,
            "no <think>/<Thought>/<|begin_of_thought|>-style tag is left in the turns or the thinking",
            _regex("text", c.REASONING_TAGS, match=False),
        ),
        Check(
            "final_answer",
            "reasoning_format",
            t,
            "math rows (OpenR1-Math, or a prompt asking for \\boxed{}) carry a non-blank answer",
            _nonempty("final_answer", **_when("answer_required")),
        ),
        Check(
            "boxed_parseable",
            "reasoning_format",
            t,
            "math rows end their answer turn with a \\boxed{...} whose braces balance",
            _nonempty("boxed_answer", **_when("answer_required")),
        ),
        Check(
            "utf8",
            "text_hygiene",
            t,
            "valid UTF-8: no U+FFFD left by a lossy decode or invalid bytes",
            _regex("text", c.REPLACEMENT_CHAR, match=False),
        ),
        Check(
            "control_chars",
            "text_hygiene",
            t,
            "no NUL or other control characters (tab/newline allowed)",
            _regex("text", c.CONTROL_CHARS, match=False),
        ),
        Check(
            "template_tokens",
            "text_hygiene",
            t,
            "no chat-template tokens (<|im_start|>, <start_of_turn>, ...)",
            _regex("text", c.TEMPLATE_TOKENS, match=False),
        ),
    ]
    if overlong in ("quarantine", "drop"):
        found.append(
            Check(
                OVERLONG[overlong],
                "length",
                t,
                f"the rendered conversation has 1..{cutoff_len} tokens (train.cutoff_len)"
                + (
                    "; longer rows are left out of training, not counted against the threshold"
                    if overlong == "drop"
                    else ""
                ),
                _between("n_tokens", min_value=1, max_value=cutoff_len),
            )
        )
    else:
        found.append(
            Check(
                "answer_truncated",
                "length",
                t,
                f"rows over {cutoff_len} tokens are truncated by the "
                "trainer; the final answer must start before the cut (null = the row fits)",
                _between("answer_start", max_value=cutoff_len - 1),
            )
        )
    if dedupe:
        found += [
            _unique(
                "duplicate",
                "duplicates",
                t,
                "exact_key",
                "no exact duplicate conversation (the first one is kept)",
            ),
            _unique(
                "near_duplicate",
                "duplicates",
                t,
                "norm_key",
                "no duplicate after lower-casing and dropping punctuation and "
                "whitespace (the first one is kept)",
            ),
        ]
    found.append(
        Check(
            "contaminated",
            "decontamination",
            t,
            "the prompt shares no n-gram run with an eval prompt (value = the eval set it overlaps)",
            lambda **kw: gxe.ExpectColumnValuesToBeNull(column="contaminated_by", **kw),
        )
    )
    return found


def raw_schema(name: str) -> list[Check]:
    """Table-level schema checks of one raw dataset file (the gate; they run again in its content suite)."""
    return table_checks(name, RAW_COLUMNS[name], prefix=f"{name}.")


def raw_content(name: str) -> list[Check]:
    """Row-level checks of one raw dataset: required values, then its own format rules."""
    p = f"{name}."
    found = table_checks(name, RAW_COLUMNS[name], prefix=p) + not_null_checks(
        name, RAW_COLUMNS[name], prefix=p
    )
    if name == "openr1_math":
        found.append(
            _unique(p + "uuid_unique", "schema", name, "uuid", "uuids are unique (the first row is kept)")
        )
    return found + _format_checks(name)


def _format_checks(name: str) -> list[Check]:
    p = f"{name}."
    if name == "openo1":
        return [
            Check(
                p + "prompt_present",
                "chat_structure",
                name,
                "the instruction is not blank",
                _regex("instruction", NOT_BLANK),
            ),
            Check(
                p + "thought_tags",
                "reasoning_format",
                name,
                "output opens with <Thought> and closes it",
                _regex("output", r"^\s*<Thought>[\s\S]*?</Thought>"),
            ),
            Check(
                p + "tags_balanced",
                "reasoning_format",
                name,
                "each of <Thought>, </Thought>, <Output>, </Output> occurs at most once",
                _regex(
                    "output",
                    r"<Thought>[\s\S]*<Thought>|</Thought>[\s\S]*</Thought>|<Output>[\s\S]*<Output>"
                    r"|</Output>[\s\S]*</Output>",
                    match=False,
                ),
            ),
            Check(
                p + "final_answer",
                "reasoning_format",
                name,
                "some answer text follows </Thought>",
                _regex("output", r"</Thought>\s*(?:<Output>\s*)?(?:</Output>\s*)?$", match=False),
            ),
        ]
    if name == "openthoughts":
        tags = (
            "<\\|begin_of_thought\\|>",
            "<\\|end_of_thought\\|>",
            "<\\|begin_of_solution\\|>",
            "<\\|end_of_solution\\|>",
        )
        return [
            Check(
                p + "turns",
                "chat_structure",
                name,
                "conversations are one user then one assistant turn",
                lambda **kw: gxe.ExpectColumnValuesToBeInSet(
                    column="turn_roles", value_set=["user,assistant"], **kw
                ),
            ),
            Check(
                p + "prompt_present",
                "chat_structure",
                name,
                "the user turn is not blank",
                _regex("user_value", NOT_BLANK),
            ),
            Check(
                p + "thought_tags",
                "reasoning_format",
                name,
                "assistant value is <|begin_of_thought|>…"
                "<|end_of_thought|> then <|begin_of_solution|>…<|end_of_solution|>",
                _regex(
                    "assistant_value",
                    r"^\s*"
                    + tags[0]
                    + r"[\s\S]*?"
                    + tags[1]
                    + r"\s*"
                    + tags[2]
                    + r"[\s\S]*?"
                    + tags[3]
                    + r"\s*$",
                ),
            ),
            Check(
                p + "tags_balanced",
                "reasoning_format",
                name,
                "each thought/solution tag occurs at most once",
                _regex("assistant_value", "|".join(f"{tag}[\\s\\S]*{tag}" for tag in tags), match=False),
            ),
            Check(
                p + "final_answer",
                "reasoning_format",
                name,
                "the solution block is not empty",
                _regex("assistant_value", tags[2] + r"\s*(?:" + tags[3] + r"\s*)?$", match=False),
            ),
            Check(
                p + "boxed_parseable",
                "reasoning_format",
                name,
                "math rows (\\boxed{} requested) give a \\boxed{...} whose braces balance",
                _nonempty("boxed_answer", **_when("is_math")),
            ),
        ]
    if name == "openr1_math":
        return [
            Check(
                p + "turns",
                "chat_structure",
                name,
                "messages are one user then one assistant turn",
                lambda **kw: gxe.ExpectColumnValuesToBeInSet(
                    column="turn_roles", value_set=["user,assistant"], **kw
                ),
            ),
            Check(
                p + "prompt_present",
                "chat_structure",
                name,
                "the problem is not blank",
                _regex("problem", NOT_BLANK),
            ),
            Check(
                p + "think_tags",
                "reasoning_format",
                name,
                "the assistant generation closes </think>",
                _regex("assistant_value", r"</think>"),
            ),
            Check(
                p + "tags_balanced",
                "reasoning_format",
                name,
                "<think> and </think> occur at most once each",
                _regex("assistant_value", r"<think>[\s\S]*<think>|</think>[\s\S]*</think>", match=False),
            ),
            Check(
                p + "final_answer",
                "reasoning_format",
                name,
                "the answer column is not blank",
                _nonempty("final_answer"),
            ),
            Check(
                p + "boxed_parseable",
                "reasoning_format",
                name,
                "the text after </think> has a \\boxed{...} whose braces balance",
                _nonempty("boxed_answer"),
            ),
            Check(
                p + "generation_lists",
                "schema",
                name,
                "per-generation lists are as long as `generations`",
                _between("generation_lists_mismatched", max_value=0),
            ),
        ]
    if name == "chat":
        return []  # two accepted shapes (messages or conversations): the data stage's parse checks them
    raise ConfigError(f"unknown dataset {name!r}; valid: {', '.join(RAW_COLUMNS)}")


def upstream_parse() -> list[Check]:
    """The data stage's conversion, shown in Data Docs: rows it set aside carry their reason code."""
    return [
        Check(
            "parsed",
            "parse",
            UPSTREAM,
            "every upstream row converts to a unified row (else: the reason code it was set aside with)",
            lambda **kw: gxe.ExpectColumnValuesToBeNull(column="parse_reason", **kw),
        )
    ]


def all_check_names(datasets: list[str], cutoff_len: int = 512) -> list[str]:
    names = [ch.name for ch in unified_content(cutoff_len, "quarantine", True) + upstream_parse()]
    names += ["answer_truncated", OVERLONG["drop"], "react_structure"]
    for name in datasets:
        names += [ch.name for ch in raw_content(name)]
    return names


def resolve_mostly(
    configured: Mapping[str, float], checks: list[Check], default: float, valid_names: list[str]
) -> dict[str, float]:
    """`mostly` per check: its own key, else its family's key, else `default`; an unknown key: ConfigError."""
    unknown = sorted(set(configured) - set(valid_names) - set(FAMILIES))
    if unknown:
        raise ConfigError(
            f"validate.mostly: unknown check {unknown[0]!r}; valid: families "
            f"{', '.join(FAMILIES)} or checks {', '.join(sorted(set(valid_names)))}"
        )
    return {ch.name: configured.get(ch.name, configured.get(ch.family, default)) for ch in checks}
