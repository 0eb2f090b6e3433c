r"""Synthetic inputs for the validate stage's tests and benchmark: no download, deterministic.

- `build_tokenizer` trains a tiny byte-level BPE and saves it as a model folder (`models/base` layout, with
  the manifest `logicflow.model` writes), so token counting runs without the real base model.
- `make_rows` writes well-formed rows of the three sources in both shapes (raw upstream columns and unified
  rows made from them), each with its own words so no two rows are near-duplicates by accident.
- `write_project` lays them out where `Paths` expects them, plus a held-out eval file.
- `damage_rows` damages a share of unified rows the ways real data is broken, one of eight classes each.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from logicflow.config import DATASET_NAMES
from logicflow.datasets import ADAPTERS, UNIFIED_SCHEMA
from logicflow.datasets.base import MATH_PREFIX
from logicflow.model import train_tiny_tokenizer
from logicflow.paths import MODEL_MANIFEST, Paths

SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ne",
    "ru",
    "sa",
    "to",
    "vi",
    "ze",
    "po",
    "qua",
    "dri",
    "fen",
    "gol",
    "hut",
    "jor",
)
OPENTHOUGHTS_SYSTEM = (
    "Your role as an assistant involves thoroughly exploring questions through a systematic long "
    "thinking process before providing the final precise and accurate solutions."
)
RAW_SCHEMAS = {name: ADAPTERS[name].schema for name in DATASET_NAMES}  # the upstream schemas, as fetched


def build_tokenizer(target: Path, model_id: str = "logicflow/tiny-random-llama") -> Path:
    """A tiny byte-level BPE tokenizer saved as a model folder (config.json + tokenizer + manifest)."""
    corpus = [
        f"{a}{b} {b}{a} think step answer boxed {n}" for a in SYLLABLES for b in SYLLABLES for n in range(3)
    ]
    tok = train_tiny_tokenizer(corpus, vocab_size=600)
    target.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(target)
    (target / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": len(tok)}))
    manifest = {
        "id": model_id,
        "revision": "main",
        "source": "tiny",
        "sha256": "0" * 64,
        "license": "apache-2.0",
    }
    (target / MODEL_MANIFEST).write_text(json.dumps(manifest))
    return target


def phrase(rng: random.Random, words: int) -> str:
    return " ".join("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(words))


def make_rows(
    n: int, seed: int = 0, thinking_words: tuple[int, int] = (20, 60)
) -> dict[str, list[dict[str, Any]]]:
    """`n` rows spread over the three sources: {"unified": [...], "openo1": [...], ...} (raw rows in upstream
    shape, unified rows converted from them the way the data stage does)."""
    rng = random.Random(seed)
    out: dict[str, list[dict[str, Any]]] = {
        "unified": [],
        "openo1": [],
        "openthoughts": [],
        "openr1_math": [],
    }
    sources = ("openo1", "openthoughts", "openr1_math")
    for i in range(n):
        source = sources[i % 3]
        question = f"Problem {seed}-{i}: {phrase(rng, rng.randint(8, 20))}. What is {i} plus {i % 97}?"
        thought = phrase(rng, rng.randint(*thinking_words))
        value = str(i + i % 97)
        solution = f"{phrase(rng, rng.randint(3, 8))}. The answer is \\boxed{{{value}}}."
        if source == "openo1":
            out["openo1"].append(
                {
                    "instruction": question,
                    "output": f"<Thought>\n{thought}\n</Thought>\n<Output>\n{solution}\n</Output>",
                }
            )
            user, answer = question, value
        elif source == "openthoughts":
            user = MATH_PREFIX + question
            out["openthoughts"].append(
                {
                    "system": OPENTHOUGHTS_SYSTEM,
                    "conversations": [
                        {"from": "user", "value": user},
                        {
                            "from": "assistant",
                            "value": f"<|begin_of_thought|>\n\n{thought}\n\n<|end_of_thought|>\n\n"
                            f"<|begin_of_solution|>\n\n{solution}\n\n<|end_of_solution|>",
                        },
                    ],
                }
            )
            answer = value
        else:
            generation = f"<think>\n{thought}\n</think>\n\n{solution}"
            out["openr1_math"].append(
                {
                    "problem": question,
                    "solution": solution,
                    "answer": value,
                    "uuid": f"uuid-{seed}-{i}",
                    "generations": [generation, generation],
                    "correctness_math_verify": [True, False],
                    "messages": [
                        {"content": question, "role": "user"},
                        {"content": generation, "role": "assistant"},
                    ],
                }
            )
            user, answer = question, value
        out["unified"].append(
            {
                "id": f"{source}-{seed}-{i}",
                "source": source,
                "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": solution}],
                "thinking": thought,
                "answer": answer,
            }
        )
    return out


def write_table(rows: list[dict[str, Any]], schema: pa.Schema, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def write_project(
    paths: Paths, rows: dict[str, list[dict[str, Any]]], heldout: list[str], val_every: int = 10
) -> None:
    """Unified rows (every `val_every`-th in validation), raw tables and the held-out questions."""
    unified = rows["unified"]
    write_table([r for i, r in enumerate(unified) if i % val_every], UNIFIED_SCHEMA, paths.messages("train"))
    write_table(
        [r for i, r in enumerate(unified) if not i % val_every], UNIFIED_SCHEMA, paths.messages("validation")
    )
    for name, schema in RAW_SCHEMAS.items():
        write_table(rows[name], schema, paths.raw(name))
    paths.heldout_dir.mkdir(parents=True, exist_ok=True)
    with paths.heldout_math.open("w", encoding="utf-8") as fh:
        for i, question in enumerate(heldout):
            fh.write(
                json.dumps({"id": f"heldout-{i}", "question": question, "answer": "0", "kind": "test"}) + "\n"
            )


DAMAGE_CLASSES = (
    "role_order",
    "empty_turn",
    "reasoning_tags",
    "control_chars",
    "template_tokens",
    "copied_eval_prompt",
    "exact_duplicate",
    "near_duplicate",
)


def damage_rows(
    rows: list[dict[str, Any]], heldout: list[str], share: float, seed: int
) -> dict[str, list[str]]:
    """Damage `share` of the unified `rows` in place, cycling through DAMAGE_CLASSES (the two duplicate
    classes append a copy instead); returns the ids that must be quarantined, by class."""
    rng = random.Random(seed)
    picks = rng.sample(range(len(rows)), k=round(len(rows) * share))
    done: dict[str, list[str]] = {kind: [] for kind in DAMAGE_CLASSES}
    for j, i in enumerate(picks):
        row, kind = rows[i], DAMAGE_CLASSES[j % len(DAMAGE_CLASSES)]
        target = row["id"]
        if kind == "role_order":
            row["messages"] = list(reversed(row["messages"]))
        elif kind == "empty_turn":
            row["messages"][-1]["content"] = "  "
        elif kind == "reasoning_tags":
            row["thinking"] += "\n</think>"
        elif kind == "control_chars":
            row["thinking"] += " \x00"
        elif kind == "template_tokens":
            row["messages"][-1]["content"] += " <|im_start|>user"
        elif kind == "copied_eval_prompt":
            row["messages"][0]["content"] = rng.choice(heldout)
        else:
            copy = json.loads(json.dumps(row))
            target = copy["id"] = row["id"] + ("-copy" if kind == "exact_duplicate" else "-near")
            if kind == "near_duplicate":
                copy["messages"][0]["content"] = copy["messages"][0]["content"].upper() + " "
            rows.append(copy)
        done[kind].append(target)
    return done
