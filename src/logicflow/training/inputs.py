"""What a training run starts from, checked before anything slow: the validated rows, the base model and its
tokenizer, and the token statistics behind the data guards (the model weights load only after these pass)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logicflow.config import Config
from logicflow.model import ResolvedModel, load_tokenizer, resolve
from logicflow.paths import Paths
from logicflow.training import data


@dataclass(frozen=True)
class Inputs:
    splits: data.Splits
    base: ResolvedModel
    tokenizer: Any
    stats: dict[str, data.TokenStats]  # per non-empty split

    def datasets(self) -> dict[str, tuple[Any, Path]]:
        """Split -> (rows as a flat frame, the parquet file read): what MLflow records as run inputs."""
        return {
            split: (data.flat_frame(self.splits.rows[split]), file)
            for split, file in self.splits.files.items()
        }

    def token_stats(self) -> dict[str, dict[str, Any]]:
        """Split -> its token statistics as plain numbers (params.json, MLflow metrics)."""
        return {split: stats.as_dict() for split, stats in self.stats.items()}


def load_inputs(cfg: Config, paths: Paths, state: Any) -> Inputs:
    """Rows, base model and tokenizer, token statistics; the data guards. `state` is accelerate's
    PartialState: the main process resolves the base model first, the guard counts every process."""
    train = cfg.train
    splits = data.load_splits(paths, train.max_samples)
    with state.main_process_first():
        base = resolve(cfg.model, paths)
    tokenizer = load_tokenizer(paths.train_base, template=cfg.model.template)
    stats = {
        split: data.token_stats(tokenizer, rows, train.cutoff_len, train.train_on_thinking)
        for split, rows in splits.rows.items()
        if rows
    }
    for split, split_stats in stats.items():
        data.check_cutoff(split_stats, train.cutoff_len, split)
    data.check_enough_rows(len(splits.rows["train"]), train.batch_size, train.grad_accum, state.num_processes)
    return Inputs(splits, base, tokenizer, stats)
