"""Every artifact location, derived from the project root. No other module spells a path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def user_cache_dir() -> Path:
    """Per-machine cache shared by all clones (converted models): $LOGICFLOW_CACHE or ~/.cache/logicflow."""
    return Path(os.environ.get("LOGICFLOW_CACHE", Path.home() / ".cache" / "logicflow"))


@dataclass(frozen=True)
class Paths:
    root: Path

    @classmethod
    def from_root(cls, root: str | Path = ".") -> Paths:
        return cls(Path(root).resolve())

    # configuration
    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    # data stage
    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw"

    def raw(self, dataset: str) -> Path:
        return self.raw_dir / f"{dataset}.parquet"

    @property
    def messages_dir(self) -> Path:
        return self.root / "data" / "messages"

    def messages(self, split: str) -> Path:
        return self.messages_dir / f"{split}.parquet"

    @property
    def unparsed(self) -> Path:
        """Upstream rows that could not become unified rows, with reasons (validate quarantines them)."""
        return self.messages_dir / "unparsed.parquet"

    @property
    def heldout_dir(self) -> Path:
        return self.root / "data" / "heldout"

    @property
    def heldout_math(self) -> Path:
        return self.heldout_dir / "math.jsonl"

    @property
    def data_summary(self) -> Path:
        return self.root / "reports" / "data.json"

    @property
    def run_metrics(self) -> Path:
        """The flat headline numbers of a run (card stage): the only DVC metrics file."""
        return self.root / "reports" / "metrics.json"

    # validate stage
    @property
    def clean_dir(self) -> Path:
        return self.root / "data" / "clean"

    def clean(self, split: str) -> Path:
        return self.clean_dir / f"{split}.parquet"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "data" / "quarantine"

    @property
    def validation_reports(self) -> Path:
        return self.root / "reports" / "validation"

    @property
    def validation_summary(self) -> Path:
        return self.validation_reports / "summary.json"

    # model stage
    @property
    def base_model(self) -> Path:
        return self.root / "models" / "base"

    # train stage
    @property
    def adapter(self) -> Path:
        return self.root / "models" / "adapter"

    @property
    def merged(self) -> Path:
        return self.root / "models" / "merged"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def train_reports(self) -> Path:
        return self.root / "reports" / "train"

    @property
    def mlflow_run_file(self) -> Path:
        return self.train_reports / "mlflow_run.json"

    # evaluate stage
    @property
    def eval_reports(self) -> Path:
        return self.root / "reports" / "eval"

    @property
    def eval_json(self) -> Path:
        return self.root / "reports" / "eval.json"

    @property
    def inference_json(self) -> Path:
        return self.root / "reports" / "inference.json"

    # card / publish stages
    @property
    def card_dir(self) -> Path:
        return self.root / "card"

    @property
    def publish_dir(self) -> Path:
        return self.root / "publish"

    # local servers and DVC
    @property
    def state_dir(self) -> Path:
        return self.root / ".logicflow"

    @property
    def dvc_lock(self) -> Path:
        return self.root / "dvc.lock"
