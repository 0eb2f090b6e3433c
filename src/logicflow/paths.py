"""Every artifact location, derived from the project root. No other module spells a path.

`Paths` names the project's folders and files. A folder with several files of its own (reports, the card,
server state) has a small layout class, rooted either at the folder itself or at the temp folder a stage
builds it in before renaming it into place (`atomic_dir`): `TrainReports(tmp).metrics`. The marker files
LogicFlow writes into model folders are named here too; the file names of upstream formats (config.json,
tokenizer.json, ...) belong to those formats and are spelled where they are read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def user_cache_dir() -> Path:
    """Per-machine cache shared by all clones (converted models): $LOGICFLOW_CACHE or ~/.cache/logicflow."""
    return Path(os.environ.get("LOGICFLOW_CACHE", Path.home() / ".cache" / "logicflow"))


MODEL_MANIFEST = "logicflow_model.json"  # models/base: what was resolved (id, revision, sha256)
TRAIN_MANIFEST = "logicflow_train.json"  # models/merged, models/adapter: method, merged or not, dtype
CHECKPOINT_STATE = "logicflow_state.json"  # checkpoints/: the fingerprint a resume must match
PUBLISH_MANIFEST = "logicflow.json"  # publish/: the fingerprint of what was pushed


@dataclass(frozen=True)
class TrainReports:
    """reports/train: the train stage's record beside the model."""

    dir: Path

    @property
    def params(self) -> Path:
        return self.dir / "params.json"

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def loss_csv(self) -> Path:
        return self.dir / "loss.csv"

    @property
    def loss_plot(self) -> Path:
        return self.dir / "loss.png"

    @property
    def mlflow_run(self) -> Path:
        """The MLflow run the stages log into (run id, experiment, tracking URI)."""
        return self.dir / "mlflow_run.json"


@dataclass(frozen=True)
class CompareReports:
    """reports/compare: one result per method, the table, the plots and the study card."""

    dir: Path

    def method(self, name: str) -> Path:
        return self.dir / "methods" / f"{name}.json"

    @property
    def summary(self) -> Path:
        """The report stage's outputs: table.md, results.json, plots, README.md (the study card)."""
        return self.dir / "study"

    @property
    def card(self) -> Path:
        return self.summary / "README.md"


@dataclass(frozen=True)
class ValidationReports:
    """reports/validation: GX Data Docs, the summary (a DVC metric) and the token-length histogram."""

    dir: Path

    @property
    def docs(self) -> Path:
        return self.dir / "docs"

    @property
    def docs_index(self) -> Path:
        return self.docs / "index.html"

    @property
    def summary(self) -> Path:
        return self.dir / "summary.json"

    @property
    def histogram(self) -> Path:
        return self.dir / "token_lengths.png"


@dataclass(frozen=True)
class EvalReports:
    """reports/eval: the tables, chart and samples behind reports/eval.json."""

    dir: Path

    @property
    def table(self) -> Path:
        return self.dir / "table.md"

    @property
    def deltas_plot(self) -> Path:
        return self.dir / "deltas.png"

    @property
    def inference_table(self) -> Path:
        return self.dir / "inference.md"

    @property
    def summary(self) -> Path:
        return self.dir / "summary.json"

    @property
    def samples(self) -> Path:
        return self.dir / "samples"

    def model_samples(self, model: str) -> Path:
        """samples/<model>: one JSONL file per task, a record per item."""
        return self.samples / model

    def task_samples(self, model: str, task: str) -> Path:
        return self.model_samples(model) / f"{task}.jsonl"


@dataclass(frozen=True)
class CardFiles:
    """card/: the model card and the files it links (published as they are)."""

    dir: Path

    @property
    def readme(self) -> Path:
        return self.dir / "README.md"

    @property
    def loss_plot(self) -> Path:
        return self.dir / "loss.png"

    @property
    def training_params(self) -> Path:
        return self.dir / "training_params.json"

    @property
    def validation_summary(self) -> Path:
        return self.dir / "validation_summary.json"


@dataclass(frozen=True)
class ServerState:
    """.logicflow: the local Prefect and MLflow servers' state, databases and logs."""

    dir: Path

    @property
    def state_file(self) -> Path:
        return self.dir / "servers.json"

    @property
    def shell_env(self) -> Path:
        """`source .logicflow/env`: the project's CLI on PATH and the servers' URLs, for a new shell."""
        return self.dir / "env"

    @property
    def ports_file(self) -> Path:
        """The last ports used, kept across `down` so the URLs (and links recorded in runs) stay valid."""
        return self.dir / "ports.json"

    @property
    def prefect_home(self) -> Path:
        return self.dir / "prefect"

    @property
    def mlflow_db(self) -> Path:
        return self.dir / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.dir / "mlartifacts"

    def log(self, service: str) -> Path:
        return self.dir / "logs" / f"{service}.log"


@dataclass(frozen=True)
class Paths:
    root: Path
    study: str | None = None  # a method of the comparison study: its models and reports live apart
    train_from: Path | None = None  # the model a study method trains on, when not models/base (pruned)
    teacher: Path | None = None  # the model a study method distills from (its `distill` method)

    @classmethod
    def from_root(cls, root: str | Path = ".") -> Paths:
        return cls(Path(root).resolve())

    def for_study(self, method: str, train_from: Path | None = None, teacher: Path | None = None) -> Paths:
        """The same project, with the train and evaluate outputs of one compared method under
        compare/<method>/ (data, base model and caches stay shared; evaluation compares with models/base)."""
        return Paths(self.root, method, train_from, teacher)

    @property
    def study_outputs(self) -> tuple[Path, Path]:
        """A study method's two DVC outputs: its models/ and reports/ folders."""
        return self.run_dir / "models", self.run_dir / "reports"

    @property
    def train_base(self) -> Path:
        """The model training starts from: models/base, or a study method's own (the pruned base)."""
        return self.train_from or self.base_model

    @property
    def compare_reports(self) -> CompareReports:
        return CompareReports(self.root / "reports" / "compare")

    @property
    def run_dir(self) -> Path:
        """Where a training run's models, checkpoints and reports go: the root, or compare/<method>."""
        return self.root if self.study is None else self.root / "compare" / self.study

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
    def reliability_log(self) -> Path:
        """One JSON line per fault-suite test (tests/faults): the fault, what happened, the figures."""
        return self.root / "reports" / "reliability.jsonl"

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
    def quarantine_rows(self) -> Path:
        """Every quarantined row: the input columns + split, reasons, detail, raw."""
        return self.quarantine_dir / "rows.parquet"

    @property
    def validation_reports(self) -> ValidationReports:
        return ValidationReports(self.root / "reports" / "validation")

    @property
    def validation_failed_reports(self) -> ValidationReports:
        """Where a failing validate run leaves its Data Docs and summary for a person to read."""
        return ValidationReports(self.root / "reports" / "validation-failed")

    @property
    def validation_summary(self) -> Path:
        return self.validation_reports.summary

    # model stage
    @property
    def base_model(self) -> Path:
        return self.root / "models" / "base"

    # train stage
    @property
    def adapter(self) -> Path:
        return self.run_dir / "models" / "adapter"

    @property
    def merged(self) -> Path:
        return self.run_dir / "models" / "merged"

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    # export stage
    @property
    def gguf_dir(self) -> Path:
        """GGUF files of the merged model (publish.gguf), published under gguf/."""
        return self.run_dir / "models" / "gguf"

    @property
    def gguf_report(self) -> Path:
        """What the export stage did per type; inside the folder, so that it is never empty (DVC, git)."""
        return self.gguf_dir / "gguf.json"

    @property
    def train_reports(self) -> TrainReports:
        return TrainReports(self.run_dir / "reports" / "train")

    @property
    def mlflow_run_file(self) -> Path:
        return self.train_reports.mlflow_run

    # evaluate stage
    @property
    def eval_reports(self) -> EvalReports:
        return EvalReports(self.run_dir / "reports" / "eval")

    @property
    def eval_json(self) -> Path:
        return self.run_dir / "reports" / "eval.json"

    @property
    def inference_json(self) -> Path:
        return self.run_dir / "reports" / "inference.json"

    # card / publish stages
    @property
    def card(self) -> CardFiles:
        return CardFiles(self.root / "card")

    @property
    def publish_dir(self) -> Path:
        return self.root / "publish"

    # local servers and DVC
    @property
    def servers(self) -> ServerState:
        return ServerState(self.root / ".logicflow")

    @property
    def dvc_lock(self) -> Path:
        return self.root / "dvc.lock"
