"""The local MLflow server under load and under fire.

T6: the server is SIGKILLed while a train stage logs to it and `logicflow up` brings it back on the same
port: the stage rides out the gap (the client retries), finishes, and its run holds every step once.
T12: four processes write to it at once (per-step metrics, then a registry version each and the `candidate`
alias): no point is lost, no "database is locked" reaches a writer, and the registry ends with four distinct
versions."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow_writer import MODEL, POINTS

from logicflow import servers
from logicflow.paths import Paths
from train_fixtures import OVERRIDES, make_project, tracking_env

pytestmark = pytest.mark.faults

HERE = Path(__file__).resolve().parent
WRITERS = 4


def test_concurrent_writers_lose_nothing(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    paths = Paths.from_root(tmp_path / "project")
    paths.root.mkdir()
    state = servers.start(paths, services=["mlflow"])
    try:
        url = state["mlflow"]["url"]
        client = MlflowClient(url)
        experiment_id = client.create_experiment("t12")
        folder = tmp_path / "model"
        folder.mkdir()
        (folder / "README.md").write_text("a model")
        writers = [
            subprocess.Popen(
                [sys.executable, str(HERE / "mlflow_writer.py"), url, experiment_id, str(i), str(folder)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(WRITERS)
        ]
        done = [(w.wait(300), *w.communicate()) for w in writers]
        for code, _, err in done:
            assert code == 0 and "database is locked" not in err, err[-3000:]
        results = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in done]
        for result in results:
            history = client.get_metric_history(result["run_id"], "loss")
            assert sorted(m.step for m in history) == list(range(POINTS))
        versions = sorted(int(r["version"]) for r in results)
        assert versions == list(range(1, WRITERS + 1))
        alias = client.get_model_version_by_alias(MODEL, "candidate")
        assert int(alias.version) in versions
    finally:
        servers.stop(paths)
    reliability(
        row="T12",
        fault=f"{WRITERS} processes logging and registering into the local MLflow server at once",
        outcome="every point stored, no 'database is locked', distinct registry versions, one alias",
        writers=WRITERS,
        points_per_writer=POINTS,
    )


OUTAGE_S = 3.0


def test_server_killed_mid_training_loses_no_step(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reliability,  # noqa: ANN001
) -> None:
    from mlflow import MlflowClient

    paths = make_project(tmp_path / "project")
    tracking_env(monkeypatch, tmp_path)
    state = servers.start(paths, services=["mlflow"])
    url = state["mlflow"]["url"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    client = MlflowClient(url)
    sets = [arg for item in OVERRIDES for arg in ("--set", item)]
    argv = [sys.executable, "-m", "logicflow.cli", "stage", "train", "--root", str(paths.root)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    train = subprocess.Popen([*argv, "--profile", "smoke", *sets], **pipes)
    try:
        deadline = time.monotonic() + 240
        while not _losses(client):  # the run exists and has logged a step
            assert train.poll() is None, train.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "training never logged a step"
            time.sleep(0.1)
        killed_at = len(_losses(client))
        server = psutil.Process(state["mlflow"]["pid"])
        for proc in [*server.children(recursive=True), server]:
            proc.kill()
        time.sleep(OUTAGE_S)
        restarted = servers.start(paths, services=["mlflow"])
        assert restarted["mlflow"]["url"] == url  # the same port: the stage's URI still points at it
        out, err = train.communicate(timeout=600)
        assert train.returncode == 0, err.decode()[-3000:]
        text = out.decode()
        result = json.loads(text[text.rfind("\n{") + 1 :])  # the stage's result, printed last
        steps = [m.step for m in client.get_metric_history(result["run_id"], "loss")]
        assert sorted(steps) == list(range(1, result["global_step"] + 1)), steps  # every step, once
        assert client.get_run(result["run_id"]).info.status == "FINISHED"
    finally:
        train.kill()
        servers.stop(paths)
    reliability(
        row="T6",
        fault=f"SIGKILL of the MLflow server mid-training, back {OUTAGE_S:.0f} s later on the same port",
        outcome="the stage waits it out and finishes; its run holds every step's loss exactly once",
        steps=len(steps),
        killed_after_steps=killed_at,
    )


def _losses(client) -> list:  # noqa: ANN001 - MlflowClient
    """Loss points of the only run in the store (empty before it exists)."""
    runs = client.search_runs(experiment_ids=[e.experiment_id for e in client.search_experiments()])
    return client.get_metric_history(runs[0].info.run_id, "loss") if runs else []
