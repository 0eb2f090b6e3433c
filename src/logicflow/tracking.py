"""MLflow adapter: the only module that talks to MLflow for the pipeline's lineage.

One pipeline run = one MLflow run. The train stage opens it and records where it lives in
`reports/train/mlflow_run.json`; later stages (evaluate, card, publish) attach to the same run:

    with open_run(cfg, paths, run_name="train") as tracker:     # train stage
        tracker.log_params({...}); tracker.log_metrics({"loss": 1.2}, step=3)
    with attach(paths) as tracker:                               # any later stage
        tracker.log_metrics({"eval/accuracy": 0.4}); tracker.log_artifact(paths.eval_json, "eval")

Both yield a `Tracker`; `NullTracker` has the same methods and does nothing, so callers never branch on
"is tracking on" (other ranks of a multi-process run, or a later stage when no run file exists).

What the train run records (params, dataset inputs, upstream reports, final metrics, reports and adapter)
is `log_train_inputs` / `log_train_outputs`.

Tracking URI, first hit wins: `$MLFLOW_TRACKING_URI` > `tracking.uri` in params > the project's MLflow server
recorded by `logicflow up` in `.logicflow/servers.json` (only while that process runs) >
`sqlite:///<root>/.logicflow/mlflow.db` with artifacts in `<root>/.logicflow/mlartifacts` — the very store
that `logicflow up` serves, so runs logged without the server appear in its UI later.
An http(s) URI must answer a 3 s health request before any long work starts, else `TrackingError`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from logicflow.atomic import write_json
from logicflow.errors import Interrupted, TrackingError
from logicflow.model import ResolvedModel, file_sha256
from logicflow.paths import Paths

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 3.0
MAX_PARAM_CHARS = 6000  # MLflow's limit on one param value


@dataclass(frozen=True)
class RunInfo:
    """Where a run lives; the content of `reports/train/mlflow_run.json`."""

    run_id: str
    experiment_id: str
    experiment_name: str
    tracking_uri: str
    run_url: str | None  # the UI page when the URI is http(s), else None


# ----------------------------------------------------------------------------------------- URI resolution


def local_store_uri(paths: Paths) -> str:
    """The project's own store (artifacts beside it in `mlartifacts/`), also served by `logicflow up`."""
    return f"sqlite:///{paths.servers.mlflow_db}"


def _local_server(paths: Paths) -> str | None:
    try:
        from logicflow.servers import tracking_uri

        return tracking_uri(paths)
    except Exception as exc:  # noqa: BLE001 - an unreadable servers.json must not stop training; say so
        logger.warning("ignoring %s: %s", paths.servers.state_file, exc)
        return None


def resolve_tracking_uri(cfg_uri: str | None, paths: Paths) -> str:
    """The tracking URI to use (see module docstring for the order)."""
    env_uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env_uri:
        return env_uri
    if cfg_uri:
        return cfg_uri
    return _local_server(paths) or local_store_uri(paths)


def is_http(uri: str) -> bool:
    return urllib.parse.urlparse(uri).scheme in ("http", "https")


def check_reachable(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Raise TrackingError naming `uri` when an http(s) server does not answer; other URIs pass."""
    if not is_http(uri):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - the configured tracking server
            resp.read(64)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise TrackingError(
                f"MLflow tracking server {uri} answered {exc.code} on /health; check the server's log, "
                "or set "
                "MLFLOW_TRACKING_URI / tracking.uri to another server"
            ) from None
        # 401/403/404: a server answered (remote servers may guard /health); let the client try.
        logger.warning("MLflow server %s answered %s on /health; trying it anyway", uri, exc.code)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it with `logicflow up`, or set "
            "MLFLOW_TRACKING_URI / tracking.uri to a reachable server or a sqlite:/// URI"
        ) from None


def without_credentials(uri: str) -> str:
    """`http://user:pass@host:5000` -> `http://host:5000`: what may be stored, logged or published. MLflow
    takes credentials from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_URI)."""
    parts = urllib.parse.urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def run_url(uri: str, experiment_id: str, run_id: str) -> str | None:
    if not is_http(uri):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


# ----------------------------------------------------------------------------------------- lineage tags


def git_commit(root: Path) -> str | None:
    """HEAD of the repository holding `root` (read-only), or None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def lineage_tags(paths: Paths) -> dict[str, str]:
    """Git commit, dvc.lock digest and the Prefect flow run (when run under Prefect)."""
    tags: dict[str, str] = {}
    if commit := git_commit(paths.root):
        tags["git_commit"] = commit
    if paths.dvc_lock.exists():
        tags["dvc_lock_sha256"] = file_sha256(paths.dvc_lock)
    if flow_run := os.environ.get("PREFECT__FLOW_RUN_ID"):
        tags["prefect_flow_run_id"] = flow_run
    return tags


# ----------------------------------------------------------------------------------------- trackers


def flatten(data: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
    """`{"b": {"c": 1}, "a": {}}` -> `{"a": {}, "b.c": 1}`: dotted keys, sorted level by level; lists and
    empty mappings stay values."""
    out: dict[str, Any] = {}
    for key in sorted(data, key=str):
        name, value = f"{prefix}{key}", data[key]
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def numeric_leaves(data: Mapping[str, Any], prefix: str = "", depth: int = 2) -> dict[str, float]:
    """Finite int/float values of a nested mapping up to `depth` levels (bools excluded), flattened."""
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and depth > 1:
            out.update(numeric_leaves(value, f"{name}.", depth - 1))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


class NullTracker:
    """Same methods as `Tracker`; does nothing. `info` is None."""

    info: RunInfo | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_input(self, df: Any, *, name: str, source: Path, context: str) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None: ...
    def log_dict(self, data: Any, artifact_file: str) -> None: ...


class Tracker(NullTracker):
    """Logs into one existing MLflow run through an explicit client (no global "active run" needed)."""

    def __init__(self, client: Any, info: RunInfo, artifact_root: Path | None = None) -> None:
        self.client = client
        self.info = info
        self._artifact_root = (
            artifact_root  # local folder behind an `mlflow-artifacts:` URI (sqlite fallback)
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = flatten(params)
        items = [
            Param(k, json.dumps(v) if isinstance(v, list | tuple) else str(v))
            for k, v in sorted(flat.items())
        ]
        items = [Param(p.key, p.value[:MAX_PARAM_CHARS]) for p in items]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.info.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step or 0)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        if items:
            self.client.log_batch(self.info.run_id, metrics=items)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.info.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_input(self, df: Any, *, name: str, source: Path, context: str) -> None:
        """Link a dataset (name + MLflow digest) to the run; the file's SHA-256 goes into a tag."""
        import warnings

        import mlflow
        from mlflow.entities import DatasetInput, InputTag

        with (
            warnings.catch_warnings()
        ):  # "source can be interpreted in multiple ways": both are the local file
            warnings.simplefilter("ignore")
            dataset = mlflow.data.from_pandas(df, source=source.resolve().as_uri(), name=name)
        tags = [InputTag("mlflow.data.context", context)]
        self.client.log_inputs(self.info.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags)])
        if source.exists():
            self.set_tags({f"data.{name}.sha256": file_sha256(source), f"data.{name}.digest": dataset.digest})

    def _repo(self, artifact_path: str | None) -> Any:
        """Artifact repository override: `mlflow-artifacts:` mapped onto the local folder (no server)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        uri = self.client.get_run(self.info.run_id).info.artifact_uri
        if (
            uri.startswith("mlflow-artifacts:")
            and not is_http(self.info.tracking_uri)
            and self._artifact_root
        ):
            uri = (self._artifact_root / urllib.parse.urlparse(uri).path.lstrip("/")).as_uri()
            return get_artifact_repository(uri)
        return None

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        repo = self._repo(artifact_path)
        if repo is not None:
            repo.log_artifact(str(path), artifact_path)
        else:
            self.client.log_artifact(self.info.run_id, str(path), artifact_path)

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        repo = self._repo(artifact_path)
        if repo is not None:
            repo.log_artifacts(str(folder), artifact_path)
        else:
            self.client.log_artifacts(self.info.run_id, str(folder), artifact_path)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / Path(artifact_file).name
            file.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
            parent = str(Path(artifact_file).parent)
            self.log_artifact(file, None if parent == "." else parent)


# ----------------------------------------------------------------------------------------- runs


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def sqlite_artifact_root(uri: str) -> Path | None:
    """Artifacts of a server-less sqlite store live beside the database (`<db folder>/mlartifacts`)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    return None


def _experiment_id(client: Any, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    location = None
    if folder := sqlite_artifact_root(uri):
        # Without this, MLflow would put artifacts under ./mlruns of whatever the cwd is.
        folder.mkdir(parents=True, exist_ok=True)
        location = folder.resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


@contextmanager
def open_run(
    cfg: Any,
    paths: Paths,
    *,
    run_name: str = "train",
    resume_run_id: str | None = None,
    parent_run_id: str | None = None,
    system_metrics: bool = True,
) -> Iterator[Tracker]:
    """Start (or continue `resume_run_id`) the pipeline's MLflow run; ends FINISHED, KILLED when Interrupted
    (SIGTERM), or FAILED on an error.

    Checks reachability first, so a dead server fails in seconds. System metrics (CPU, memory, GPU when
    present) are sampled in the background while the run is open.
    """
    uri = resolve_tracking_uri(cfg.tracking.uri, paths)
    check_reachable(uri)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        client = _client(uri)
        experiment_id = _experiment_id(client, cfg.experiment_name, uri)
        run = None
        if resume_run_id:
            try:
                run = client.get_run(resume_run_id)
                if run.info.experiment_id != experiment_id:
                    run = None
            except Exception:  # noqa: BLE001 - the run is gone (other store): start a fresh one
                run = None
        if run is None:
            tags = {"logicflow.profile": cfg.profile}
            if parent_run_id:  # a method of the comparison study: nested under the study's run in the UI
                tags["mlflow.parentRunId"] = parent_run_id
            run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        else:
            client.update_run(run.info.run_id, status="RUNNING")
            logger.info("continuing MLflow run %s", run.info.run_id)
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001 - any store failure is a tracking problem, said in one line
        raise TrackingError(f"MLflow at {uri}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    info = RunInfo(
        run.info.run_id, experiment_id, cfg.experiment_name, uri, run_url(uri, experiment_id, run.info.run_id)
    )
    tracker = Tracker(client, info, sqlite_artifact_root(uri))
    tracker.set_tags(lineage_tags(paths))
    monitor = None
    if system_metrics:
        monitor = _start_system_metrics(run.info.run_id, uri, resume=resume_run_id == run.info.run_id)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except Interrupted:
        status = "KILLED"  # stopped from outside after a checkpoint: the next run continues this one
        raise
    finally:
        if monitor is not None:
            monitor.finish()
        try:
            client.set_terminated(info.run_id, status=status)
        except Exception as exc:  # noqa: BLE001 - never mask the real error with a bookkeeping one
            logger.warning("could not mark MLflow run %s %s: %s", info.run_id, status, exc)


def _start_system_metrics(run_id: str, uri: str, resume: bool) -> Any:
    """Background CPU/memory/disk (and GPU) sampling into `system/*` metrics; None when unavailable."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides the 5 s default
        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=5, samples_before_logging=1, resume_logging=resume, tracking_uri=uri
        )
        monitor.start()
        return monitor
    except Exception as exc:  # noqa: BLE001 - system metrics are a nice-to-have
        logger.warning("system metrics disabled: %s", exc)
        return None


def write_run_file(paths: Paths, info: RunInfo) -> None:
    """reports/train/mlflow_run.json, without any credentials in its URIs (the card and Hub read it)."""
    uri, url = without_credentials(info.tracking_uri), info.run_url and without_credentials(info.run_url)
    write_json(paths.mlflow_run_file, asdict(replace(info, tracking_uri=uri, run_url=url)))


def read_run_file(paths: Paths) -> RunInfo | None:
    try:
        return RunInfo(**json.loads(paths.mlflow_run_file.read_text()))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, TypeError) as exc:
        raise TrackingError(
            f"{paths.mlflow_run_file}: unreadable ({exc}); re-run `logicflow stage train`"
        ) from None


def _attach_uri(info: RunInfo, paths: Paths) -> str:
    """The recorded URI, unless it was the project's local server that has since moved or stopped."""
    env_uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env_uri:
        return env_uri
    host = urllib.parse.urlparse(info.tracking_uri).hostname
    if is_http(info.tracking_uri) and host in ("127.0.0.1", "localhost"):
        try:
            check_reachable(info.tracking_uri)
        except TrackingError:
            return _local_server(paths) or local_store_uri(paths)  # same store, served or not
    return info.tracking_uri


@contextmanager
def attach(paths: Paths, *, required: bool = False) -> Iterator[NullTracker]:
    """Log into the run recorded in `reports/train/mlflow_run.json` (a NullTracker when there is none).

    With `required=True` a missing run file is a TrackingError. The run's status is left as it was.
    """
    info = read_run_file(paths)
    if info is None:
        if required:
            raise TrackingError(f"{paths.mlflow_run_file} not found; run `logicflow stage train` first")
        logger.info("no MLflow run recorded in %s; not tracking", paths.mlflow_run_file)
        yield NullTracker()
        return
    uri = _attach_uri(info, paths)
    check_reachable(uri)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    client = _client(uri)
    try:
        client.get_run(info.run_id)
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(
            f"MLflow run {info.run_id} not found at {uri}: {str(exc).splitlines()[0]}"
        ) from None
    yield Tracker(client, RunInfo(**{**asdict(info), "tracking_uri": uri}), sqlite_artifact_root(uri))


# ----------------------------------------------------------------------------------------- the train run

DATA_CONTEXT = {"train": "training", "validation": "validation"}  # split -> MLflow dataset context
LINEAGE_KEYS = {"raw_sha256": "sha256", "revision_sha": "revision_sha", "file_sha256": "file_sha256"}


def log_train_inputs(
    tracker: NullTracker,
    cfg: Any,
    paths: Paths,
    base: ResolvedModel,
    datasets: Mapping[str, tuple[Any, Path]],
    token_stats: Mapping[str, Mapping[str, Any]],
) -> None:
    """Everything known before training: params, the base model's identity, the datasets (split -> (frame,
    file)) with digests and token statistics, and the upstream reports (data, validation, dvc.lock)."""
    tracker.log_params(
        {
            "profile": cfg.profile,
            "train": cfg.train.model_dump(),
            "lora": cfg.lora.model_dump(),
            "model": cfg.model.model_dump(),
        }
    )
    tracker.set_tags(
        {
            "base_model": base.id,
            "base_model.revision": base.revision,
            "base_model.sha256": base.sha256,
            "base_model.source": base.source,
        }
    )
    for split, (frame, file) in datasets.items():
        tracker.log_input(frame, name=split, source=file, context=DATA_CONTEXT[split])
    tracker.log_metrics({f"data.{split}.{k}": v for split, s in token_stats.items() for k, v in s.items()})
    if paths.data_summary.exists():
        tracker.log_artifact(paths.data_summary, "data")
        summary = json.loads(paths.data_summary.read_text())
        tracker.set_tags(
            {
                f"data.raw.{name}.{tag}": info[key]
                for name, info in (summary.get("datasets") or {}).items()
                if isinstance(info, dict)
                for key, tag in LINEAGE_KEYS.items()
                if info.get(key)
            }
        )
    if paths.validation_summary.exists():
        tracker.log_artifact(paths.validation_summary, "data")
        validation = numeric_leaves(json.loads(paths.validation_summary.read_text()))
        tracker.log_metrics({f"validation.{k}": v for k, v in validation.items()})
    if paths.dvc_lock.exists():
        tracker.log_artifact(paths.dvc_lock, "lineage")


def log_train_outputs(tracker: NullTracker, paths: Paths, metrics: Mapping[str, Any]) -> None:
    """The final metrics, the train reports and the adapter; then `reports/train/mlflow_run.json`, so the
    later stages log into this run."""
    tracker.log_metrics(
        {f"final.{k}": v for k, v in metrics.items() if isinstance(v, int | float)},
        step=metrics["global_step"],
    )
    reports = paths.train_reports
    tracker.log_artifact(reports.loss_plot, "plots")
    tracker.log_artifact(reports.loss_csv, "plots")
    tracker.log_artifact(reports.params, "train")
    tracker.log_artifact(reports.metrics, "train")
    tracker.log_artifacts(paths.adapter, "adapter")
    if tracker.info:
        write_run_file(paths, tracker.info)


STUDY_TAG = "logicflow.study"


def study_parent_run(cfg: Any, paths: Paths) -> str:
    """The comparison study's parent run in the profile's experiment (created by the first method)."""
    uri = resolve_tracking_uri(cfg.tracking.uri, paths)
    check_reachable(uri)
    client = _client(uri)
    experiment_id = _experiment_id(client, cfg.experiment_name, uri)
    found = client.search_runs(
        [experiment_id], f"tags.`{STUDY_TAG}` = 'compare'", order_by=["start_time DESC"], max_results=1
    )
    if found:
        return found[0].info.run_id
    tags = {STUDY_TAG: "compare", "logicflow.profile": cfg.profile, **lineage_tags(paths)}
    run = client.create_run(experiment_id, run_name=f"compare-{cfg.profile}", tags=tags)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def log_study(cfg: Any, paths: Paths, rows: list[Any], folder: Path) -> None:
    """Per-method figures as metrics of the study's parent run (one step per method, in table order, so the
    MLflow chart view compares them), and the report folder as its artifacts."""
    parent = study_parent_run(cfg, paths)
    uri = resolve_tracking_uri(cfg.tracking.uri, paths)
    client = _client(uri)
    info = RunInfo(parent, client.get_run(parent).info.experiment_id, cfg.experiment_name, uri, None)
    tracker = Tracker(client, info, sqlite_artifact_root(uri))
    for step, row in enumerate(rows):
        figures = {f"compare/{task}": score.value for task, score in row.scores.items()}
        figures["compare/trainable_params"] = row.trainable_params
        figures["compare/train_time_s"] = row.train_time_s
        tracker.log_metrics(figures, step=step)
        client.set_tag(parent, f"compare.step.{step}", row.method)
    tracker.log_artifacts(folder, "compare")
