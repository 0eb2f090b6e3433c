r"""Derived diagnostic columns, computed vectorised (pyarrow/pandas), that the expectations then check.

Great Expectations sees one flat frame per table. Row rules that span several values (the order of roles in
a conversation, the shortest turn, a `\boxed{}` that must parse) become one column each here, holding a
value a person can read in Data Docs (e.g. `role_seq = "user,user,assistant"`); `suites.py` states the
rule on that column with a built-in expectation (match a regex, lie in a range, be unique, be null).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from logicflow import react
from logicflow.validation.tables import KEY, THINKING_OPTIONAL

# Reasoning markers of the three sources; none may survive the conversion into `thinking`/messages.
REASONING_TAGS = r"</?think>|<\|(?:begin|end)_of_(?:thought|solution)\|>|</?Thought>|</?Output>"
# Chat-template control tokens (ChatML, Gemma, Llama 3): text holding them would inject fake turns.
TEMPLATE_TOKENS = (
    r"<\|im_start\|>|<\|im_end\|>|<start_of_turn>|<end_of_turn>|<\|endoftext\|>|<\|eot_id\|>"
    r"|<\|start_header_id\|>|<\|end_header_id\|>|<\|begin_of_text\|>"
)
# C0 controls except tab/newline/carriage return, and DEL.
CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
# What a lossy decode leaves behind (tables.repair_utf8 turns invalid bytes into it too).
REPLACEMENT_CHAR = "\ufffd"
ROLE_ORDER = r"^(?:system,)?user,assistant(?:,user,assistant)*$"
ROLES_ALLOWED = r"^(?:system|user|assistant)(?:,(?:system|user|assistant))*$"
BOXED_REQUEST = "\\boxed{}"  # OpenThoughts math prompts: "Return your final response within \boxed{}."


def last_boxed(text: str | None) -> str:
    r"""The content of the last `\boxed{...}` (nested braces allowed), or "" when there is none or it does
    not close."""
    if not isinstance(text, str):  # None, or NaN from a row without that turn
        return ""
    start = text.rfind("\\boxed{")
    if start < 0:
        return ""
    depth = 0
    for end in range(start + 6, len(text)):
        char = text[end]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 7 : end].strip()
    return ""


def unique_keys(ids: pd.Series) -> pd.Series:
    """`ids` made unique and non-null (repeats and nulls get `@<position>`): the row key GX reports."""
    text = ids.astype(object).where(ids.notna(), "<null>").astype(str)
    repeat = text.duplicated(keep="first") | ids.isna()
    keys = text.where(~repeat, text + "@" + pd.Series(np.arange(len(text)), index=text.index).astype(str))
    if keys.duplicated().any():  # an id that itself looks like "x@7": fall back to positions
        keys = pd.Series([f"@{i}" for i in range(len(text))], index=text.index)
    return keys.astype("str")


def normalize_ws(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Whitespace runs collapsed, ends trimmed (the key a unified prompt and its raw prompt share)."""
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s+", " "))


def group_codes(values: pd.Series) -> pd.Series:
    """An integer per distinct value (equal values, equal codes; null stays null): a cheap duplicate key."""
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    return pd.Series(codes, index=values.index, dtype="float64").where(codes >= 0)


def _list_lengths(table: pa.Table, column: str) -> np.ndarray:
    """Entries per list (NaN where the list itself is null): what the not-null check of a list column sees."""
    return pc.list_value_length(table.column(column)).to_numpy(zero_copy_only=False).astype(float)


def _lists(values: pa.Array, parents: np.ndarray, rows: int) -> pa.ListArray:
    """`values` grouped into one list per row by their (ascending) parent row."""
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(parents, minlength=rows), out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)


def _sep(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _pick(values: pa.Array, parents: np.ndarray, selected: np.ndarray, rows: int, last: bool) -> pa.Array:
    """Per row, the first (or last) of `values[selected]`; null for rows with none."""
    chosen = np.flatnonzero(selected)
    owner = parents[chosen]
    if last:
        edge = np.r_[owner[1:] != owner[:-1], True] if len(owner) else np.zeros(0, bool)
    else:
        edge = np.r_[True, owner[1:] != owner[:-1]] if len(owner) else np.zeros(0, bool)
    where = np.full(rows, -1, dtype=np.int64)
    where[owner[edge]] = chosen[edge]
    index = pa.array(where, pa.int64(), mask=where < 0)
    return values.take(index)


def conversation_columns(messages: pa.ChunkedArray, role: str, content: str, rows: int) -> pd.DataFrame:
    """Per conversation, with pyarrow kernels: role sequence, shortest stripped turn, first user turn, all
    user turns, last assistant turn, all contents joined. A null turn counts as role "<null>", content ""."""
    array = messages.combine_chunks() if isinstance(messages, pa.ChunkedArray) else messages
    flat = pc.list_flatten(array)
    parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False).astype(np.int64)
    roles = pc.fill_null(pc.struct_field(flat, role), "<null>").cast(pa.large_string())
    contents = pc.fill_null(pc.struct_field(flat, content), "").cast(pa.large_string())
    role_names = roles.to_numpy(zero_copy_only=False)
    users = role_names == "user"
    stripped = pc.utf8_length(pc.utf8_trim_whitespace(contents)).to_numpy(zero_copy_only=False)
    shortest = np.zeros(rows, dtype=np.int64)
    counts = np.bincount(parents, minlength=rows)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    if len(stripped):
        shortest[counts > 0] = np.minimum.reduceat(stripped, starts[counts > 0])
    return pd.DataFrame(
        {
            "role_seq": pc.binary_join(_lists(roles, parents, rows), _sep(",")).to_pandas(),
            "min_turn_chars": shortest,
            "prompt": _pick(contents, parents, users, rows, last=False).to_pandas(),
            "prompts": pc.binary_join(
                _lists(contents.filter(pa.array(users)), parents[users], rows), _sep("\n")
            ).to_pandas(),
            "final": _pick(contents, parents, role_names == "assistant", rows, last=True).to_pandas(),
            "contents": pc.binary_join(_lists(contents, parents, rows), _sep("\n")).to_pandas(),
            "n_turns": counts,
        }
    )


def unified_frame(table: pa.Table, splits: pa.Array | None = None) -> pd.DataFrame:
    """The unified rows with every derived column the unified suites check (see suites.py)."""
    rows = table.num_rows
    frame = table.select(["id", "source", "thinking", "answer"]).to_pandas()
    frame.insert(0, KEY, unique_keys(frame["id"]))
    frame["messages"] = _list_lengths(table, "messages")
    if splits is not None:
        frame["split"] = splits.to_pandas()
    conv = conversation_columns(table.column("messages"), "role", "content", rows)
    conv.index = frame.index
    frame = pd.concat([frame, conv], axis=1)
    thinking = pc.fill_null(table.column("thinking").cast(pa.large_string()), "")
    text = pc.binary_join_element_wise(
        pa.chunked_array([pa.array(conv["contents"], pa.large_string())]), thinking, _sep("\n")
    )
    frame["thinking"] = frame["thinking"].astype("str")
    frame["answer"] = frame["answer"].astype("str")
    frame["text"] = text.to_pandas().astype("str")
    frame["thinking_required"] = ~frame["source"].isin(THINKING_OPTIONAL).to_numpy(bool)
    frame["answer_required"] = (frame["source"] == "openr1_math").fillna(False).to_numpy(bool) | frame[
        "prompts"
    ].str.contains(BOXED_REQUEST, regex=False).fillna(False).to_numpy(bool)
    frame["final_answer"] = frame["answer"].fillna("").str.strip()
    frame["boxed_answer"] = pd.Series([last_boxed(t) for t in frame["final"]], index=frame.index, dtype="str")
    traces = [react.problem(t if isinstance(t, str) else "") or "" for t in frame["final"]]
    frame["react_problem"] = pd.Series(traces, index=frame.index, dtype="str")
    frame["prompt_key"] = normalize_ws(pa.array(frame["prompt"], pa.large_string())).to_pandas()
    return frame


def add_duplicate_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """`exact_key`: one code per distinct (roles, turns, thinking); `norm_key`: the same text lower-cased with
    every run of non-letters/digits collapsed, null for rows that are already exact repeats (a row counts
    once, as exact) and for rows with no letter or digit at all."""
    exact = group_codes((frame["role_seq"] + "\x1f" + frame["text"]).astype("str"))
    text = pa.array(frame["text"], pa.large_string())
    normalized = pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(text), r"[^\pL\pN]+", " "))
    normalized = pd.Series(normalized.to_pandas(), index=frame.index).astype("str")
    norm = group_codes(normalized.where(normalized.str.len() > 0))
    frame["exact_key"] = exact
    frame["norm_key"] = norm.where(~exact.duplicated(keep="first"))
    return frame


def chat_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.select(["id"]).to_pandas()
    frame["prompt_key"] = None  # parse failures are quarantined by the data stage; no raw format checks
    return frame


def openo1_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.select(["instruction", "output"]).to_pandas()
    frame["prompt_key"] = normalize_ws(table.column("instruction")).to_pandas()
    return frame


def openthoughts_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.select(["system"]).to_pandas()
    frame["conversations"] = _list_lengths(table, "conversations")
    conv = conversation_columns(table.column("conversations"), "from", "value", table.num_rows)
    conv.index = frame.index
    frame["turn_roles"] = conv["role_seq"]
    frame["user_value"] = conv["prompt"].astype("str")
    frame["assistant_value"] = conv["final"].astype("str")
    frame["is_math"] = frame["user_value"].str.contains(BOXED_REQUEST, regex=False).fillna(False).astype(bool)
    frame["boxed_answer"] = pd.Series(
        [last_boxed(t) for t in frame["assistant_value"]], index=frame.index, dtype="str"
    )
    frame["prompt_key"] = normalize_ws(pa.array(frame["user_value"], pa.large_string())).to_pandas()
    return frame


def openr1_math_frame(table: pa.Table, generation_lists: tuple[str, ...]) -> pd.DataFrame:
    frame = table.select(["problem", "answer", "uuid"]).to_pandas()
    frame["messages"] = _list_lengths(table, "messages")
    frame["generations"] = _list_lengths(table, "generations")
    conv = conversation_columns(table.column("messages"), "role", "content", table.num_rows)
    conv.index = frame.index
    frame["turn_roles"] = conv["role_seq"]
    frame["assistant_value"] = conv["final"].astype("str")
    after_think = [
        t.rpartition("</think>")[2] if isinstance(t, str) else None for t in frame["assistant_value"]
    ]
    frame["boxed_answer"] = pd.Series([last_boxed(t) for t in after_think], index=frame.index, dtype="str")
    # how many per-generation lists disagree in length with `generations` (null lists are not compared)
    generations = pc.list_value_length(table.column("generations")).to_numpy(zero_copy_only=False)
    mismatched = np.zeros(table.num_rows, dtype=np.int64)
    for name in generation_lists:
        if name in table.column_names:
            lengths = pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False)
            both = ~(np.isnan(lengths.astype(float)) | np.isnan(generations.astype(float)))
            mismatched += both & (lengths != generations)
    frame["generation_lists_mismatched"] = mismatched
    frame["final_answer"] = frame["answer"].fillna("").astype("str").str.strip()
    frame["prompt_key"] = normalize_ws(table.column("problem")).to_pandas()
    return frame


def raw_frame(name: str, table: pa.Table, generation_lists: tuple[str, ...] = ()) -> pd.DataFrame:
    """The derived frame of raw dataset `name`, keyed `<name>#<row>`."""
    builders = {
        "openo1": openo1_frame,
        "openthoughts": openthoughts_frame,
        "openr1_math": lambda t: openr1_math_frame(t, generation_lists),
        "chat": chat_frame,
    }
    frame = builders[name](table)
    frame.insert(0, KEY, [f"{name}#{i}" for i in range(len(frame))])
    return frame
