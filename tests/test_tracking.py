"""The MLflow adapter: URI resolution, reachability, one run opened by train, attached to by later stages."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logicflow import tracking
from logicflow.config import build_config
from logicflow.errors import TrackingError
from logicflow.paths import Paths

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def cfg(*overrides: str):
    return build_config({}, "cpu", list(overrides))


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setattr(tracking, "_local_server", lambda paths: None)  # no `logicflow up` here


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module (creating one takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def http_server() -> Iterator[tuple[str, dict]]:
    """A local HTTP server whose /health answers with `state["status"]`."""
    state = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self.send_response(state["status"])
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_uri_order_env_then_params_then_local_server_then_project_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = Paths.from_root(tmp_path)
    assert tracking.resolve_tracking_uri(None, paths) == f"sqlite:///{tmp_path / '.logicflow' / 'mlflow.db'}"
    monkeypatch.setattr(tracking, "_local_server", lambda paths: "http://127.0.0.1:5999")
    assert tracking.resolve_tracking_uri(None, paths) == "http://127.0.0.1:5999"
    assert tracking.resolve_tracking_uri("sqlite:////x/db", paths) == "sqlite:////x/db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://remote:5000")
    assert tracking.resolve_tracking_uri("sqlite:////x/db", paths) == "http://remote:5000"


def test_local_server_entry_is_read_from_servers_json_only_while_it_runs(tmp_path: Path) -> None:
    """`logicflow up` records the server; a stale record (dead pid) falls through to the sqlite store."""
    paths = Paths.from_root(tmp_path)
    paths.servers.dir.mkdir()
    (paths.servers.state_file).write_text(
        json.dumps({"mlflow": {"url": "http://127.0.0.1:1", "pid": 999999999, "started": 0}})
    )
    from logicflow.servers import tracking_uri

    assert tracking_uri(paths) is None


def test_unreachable_server_fails_fast_naming_the_uri() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TrackingError, match=rf"MLflow tracking server {uri} is unreachable.*logicflow up"):
        tracking.check_reachable(uri)
    assert time.monotonic() - started < tracking.HEALTH_TIMEOUT_S + 1


def test_health_check_accepts_ok_and_refuses_server_errors(http_server) -> None:
    url, state = http_server
    tracking.check_reachable(url)
    state["status"] = 401  # a guarded remote server still answers: the client gets to try
    tracking.check_reachable(url)
    state["status"] = 503
    with pytest.raises(TrackingError, match=rf"{url} answered 503 on /health"):
        tracking.check_reachable(url)
    tracking.check_reachable("sqlite:////anything.db")  # not http: nothing to check


def test_open_run_then_attach_log_into_one_run(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    paths = Paths.from_root(tmp_path)
    (tmp_path / "note.txt").write_text("hello")
    with tracking.open_run(cfg("tracking.experiment=lineage"), paths, system_metrics=False) as tracker:
        tracker.log_params(
            {"train": {"learning_rate": 0.001, "target_modules": ["q_proj"]}, "profile": "cpu"}
        )
        tracker.log_metrics({"loss": 2.5}, step=1)
        tracker.log_metrics({"loss": 2.0}, step=2)
        tracker.log_artifact(tmp_path / "note.txt", "notes")
        tracking.write_run_file(paths, tracker.info)
    info = json.loads(paths.mlflow_run_file.read_text())
    assert info["experiment_name"] == "lineage" and info["tracking_uri"] == store and info["run_url"] is None

    with tracking.attach(paths, required=True) as later:  # e.g. the evaluate stage
        later.log_metrics({"eval.accuracy": 0.5})
        later.log_dict({"accuracy": 0.5}, "eval/summary.json")
        later.set_tags({"stage.evaluate": "done"})

    client = MlflowClient(store)
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params == {
        "train.learning_rate": "0.001",
        "train.target_modules": '["q_proj"]',
        "profile": "cpu",
    }
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == [
        (1, 2.5),
        (2, 2.0),
    ]
    assert run.data.metrics["eval.accuracy"] == 0.5 and run.data.tags["stage.evaluate"] == "done"
    artifacts = {a.path for d in ("notes", "eval") for a in client.list_artifacts(run.info.run_id, d)}
    assert artifacts == {"notes/note.txt", "eval/summary.json"}
    # artifacts sit beside the sqlite store, not in ./mlruns of the cwd
    root = Path(store.removeprefix("sqlite:///")).parent / "mlartifacts"
    assert (root / info["run_id"] / "artifacts" / "notes" / "note.txt").read_text() == "hello"


def test_failure_inside_the_run_marks_it_failed_and_resume_continues_it(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    paths = Paths.from_root(tmp_path)
    with pytest.raises(RuntimeError), tracking.open_run(cfg(), paths, system_metrics=False) as tracker:
        run_id = tracker.info.run_id
        raise RuntimeError("boom")
    client = MlflowClient(store)
    assert client.get_run(run_id).info.status == "FAILED"
    with tracking.open_run(cfg(), paths, resume_run_id=run_id, system_metrics=False) as again:
        assert again.info.run_id == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    assert client.get_experiment(client.get_run(run_id).info.experiment_id).name == "logicflow-cpu"


def test_attach_without_a_run_is_a_null_tracker_unless_required(tmp_path: Path) -> None:
    paths = Paths.from_root(tmp_path)
    with tracking.attach(paths) as tracker:
        assert isinstance(tracker, tracking.NullTracker) and tracker.info is None
        tracker.log_metrics({"x": 1.0})  # no-op, no branch needed by callers
        tracker.log_artifact(tmp_path / "missing.txt")
    missing = "mlflow_run.json not found; run `logicflow stage train` first"
    with pytest.raises(TrackingError, match=missing), tracking.attach(paths, required=True):
        pass


def test_attach_to_a_moved_local_server_falls_back_to_the_same_store(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run file names the local server of that day; after `down`, the project's store is read directly."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    paths = Paths.from_root(tmp_path)
    with tracking.open_run(cfg(), paths, system_metrics=False) as tracker:
        pass
    gone = f"http://127.0.0.1:{free_port()}"
    tracking.write_run_file(paths, tracking.RunInfo(**{**tracker.info.__dict__, "tracking_uri": gone}))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setattr(tracking, "local_store_uri", lambda paths: store)
    with tracking.attach(paths) as later:
        assert later.info.tracking_uri == store and later.info.run_id == tracker.info.run_id


def test_default_store_and_server_made_experiments_keep_artifacts_in_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No URI anywhere: `.logicflow/mlflow.db`; an experiment the server created (`mlflow-artifacts:`) still
    takes artifacts without the server, in the folder the server would use."""
    from mlflow import MlflowClient

    paths = Paths.from_root(tmp_path)
    uri = tracking.local_store_uri(paths)
    paths.servers.dir.mkdir()
    MlflowClient(uri).create_experiment("served", artifact_location="mlflow-artifacts:/7")
    (tmp_path / "a.txt").write_text("x")
    with tracking.open_run(cfg("tracking.experiment=served"), paths, system_metrics=False) as tracker:
        assert tracker.info.tracking_uri == uri
        tracker.log_artifact(tmp_path / "a.txt", "plots")
    landed = paths.servers.mlflow_artifacts / "7" / tracker.info.run_id / "artifacts" / "plots" / "a.txt"
    assert landed.read_text() == "x"
    assert not (tmp_path / "mlruns").exists()


def test_the_run_file_never_holds_tracking_credentials(tmp_path: Path) -> None:
    """mlflow_run.json is read by the card and shipped in lineage: a URI with user:password is stored
    without them (MLflow reads credentials from MLFLOW_TRACKING_USERNAME/PASSWORD)."""
    paths = Paths.from_root(tmp_path)
    uri = "http://ci-user:s3cret-pass@mlflow.internal:5000"
    info = tracking.RunInfo("r1", "7", "exp", uri, tracking.run_url(uri, "7", "r1"))
    tracking.write_run_file(paths, info)
    text = paths.mlflow_run_file.read_text()
    assert "s3cret-pass" not in text and "ci-user" not in text
    stored = tracking.read_run_file(paths)
    assert stored.tracking_uri == "http://mlflow.internal:5000"
    assert stored.run_url == "http://mlflow.internal:5000/#/experiments/7/runs/r1"
