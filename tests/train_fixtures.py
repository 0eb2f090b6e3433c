"""A tiny LogicFlow project for the train-stage tests: fixture rows in the validated schema, the tiny random
Llama as base model, the smoke profile with overrides that keep a run to a few seconds.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from logicflow.config import Config, load_config
from logicflow.model import resolve
from logicflow.paths import Paths

REPO = Path(__file__).resolve().parents[1]
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("thinking", pa.string()),
        ("answer", pa.string()),
    ]
)
# Short rows (the tiny tokenizer is byte-level BPE trained on arithmetic), a fast but visible learning rate.
OVERRIDES = [
    "train.cutoff_len=384",
    "train.learning_rate=0.01",
    "train.batch_size=4",
    "train.max_steps=16",
    "train.save_steps=4",
    "train.save_total_limit=2",
    "train.eval_steps=8",
    "train.warmup_steps=0",
    "lora.r=8",
    "lora.alpha=16",
]


def make_rows(n: int, seed: int = 0, system: bool = False) -> list[dict]:
    """Arithmetic rows with thinking; lengths vary so batches need padding."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        terms = [rng.randint(1, 40) for _ in range(rng.randint(2, 5))]
        total = sum(terms)
        question = f"What is {' + '.join(map(str, terms))}?"
        steps = " ".join(f"{sum(terms[: k + 1])}." for k in range(1, len(terms)))
        thinking = f"Let me think step by step. {steps} The answer is {total}."
        messages = [
            {"role": "user", "content": question},
            {"role": "assistant", "content": f"The answer is \\boxed{{{total}}}."},
        ]
        if system:
            messages.insert(0, {"role": "system", "content": "Think step by step."})
        rows.append(
            {
                "id": f"row-{seed}-{i}",
                "source": "fixture",
                "messages": messages,
                "thinking": thinking,
                "answer": str(total),
            }
        )
    return rows


def write_split(paths: Paths, split: str, rows: list[dict]) -> None:
    paths.clean_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), paths.clean(split))


def make_project(root: Path, n_train: int = 32, n_val: int = 6) -> Paths:
    """params.yaml, data/clean/{train,validation}.parquet and models/base (tiny random Llama)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    paths = Paths.from_root(root)
    write_split(paths, "train", make_rows(n_train, seed=1))
    if n_val:
        write_split(paths, "validation", make_rows(n_val, seed=2))
    resolve(config(paths).model, paths)
    return paths


def config(paths: Paths, *extra: str) -> Config:
    return load_config(paths.params, profile="smoke", overrides=[*OVERRIDES, *extra])


def tracking_env(mp, store: Path) -> str:
    """Point MLflow at a throwaway sqlite store (artifacts beside it) and keep everything offline.

    One torch thread: the tiny model gains nothing from more, and on a busy shared box two spinning OpenMP
    threads made a step 6x slower. Subprocesses inherit it through OMP_NUM_THREADS.
    """
    import torch

    torch.set_num_threads(1)
    mp.setenv("OMP_NUM_THREADS", "1")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TOKENIZERS_PARALLELISM", "false")
    return uri
