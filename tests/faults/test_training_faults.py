"""T3: SIGTERM in the middle of training (a preemption, `kill`, a cancelled flow run) stops at a checkpoint
of the current step, marks the MLflow run KILLED, exits 143 (the flow retries it) and the next run resumes
from that checkpoint into the same MLflow run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from logicflow.paths import Paths
from logicflow.stages.train import run
from logicflow.training import checkpoints
from train_fixtures import OVERRIDES, config, make_project, tracking_env

pytestmark = pytest.mark.faults

NO_SCHEDULED_SAVES = "train.save_steps=100"  # 16 steps: any checkpoint is the SIGTERM's


@pytest.fixture
def mlflow_uri(tmp_path: Path):
    with pytest.MonkeyPatch.context() as mp:
        yield tracking_env(mp, tmp_path)


def _steps_logged(paths: Paths, uri: str) -> int:
    """Optimizer steps the running stage has logged to its MLflow run (0 before the run exists)."""
    from mlflow import MlflowClient

    state = checkpoints.read_state(paths.checkpoints)
    if state is None or not state.mlflow_run_id:
        return 0
    return len(MlflowClient(uri).get_metric_history(state.mlflow_run_id, "loss"))


def test_sigterm_mid_epoch_checkpoints_marks_killed_and_resumes(
    mlflow_uri: str,
    tmp_path: Path,
    reliability,  # noqa: ANN001
) -> None:
    from mlflow import MlflowClient

    paths = make_project(tmp_path / "project")
    sets = [arg for item in [*OVERRIDES, NO_SCHEDULED_SAVES] for arg in ("--set", item)]
    argv = [sys.executable, "-m", "logicflow.cli", "stage", "train", "--root", str(paths.root)]
    proc = subprocess.Popen(
        [*argv, "--profile", "smoke", *sets], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    while _steps_logged(paths, mlflow_uri) < 2:  # stop it for real mid-run, after two optimizer steps
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "training never got going"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=120)[1]

    assert proc.returncode == 143, stderr[-3000:]
    assert "logicflow: interrupted: training stopped by SIGTERM after step" in stderr
    saved = checkpoints.last_checkpoint(paths.checkpoints)
    assert saved is not None, "no checkpoint at the step SIGTERM arrived"
    stopped_at = int(saved.name.split("-")[1])
    assert 2 <= stopped_at < 16
    state = checkpoints.read_state(paths.checkpoints)
    assert MlflowClient(mlflow_uri).get_run(state.mlflow_run_id).info.status == "KILLED"
    assert not paths.train_reports.metrics.exists()

    result = run(config(paths, NO_SCHEDULED_SAVES), paths)
    assert result.resumed_from == str(saved) and result.global_step == 16
    assert result.run_id == state.mlflow_run_id
    assert MlflowClient(mlflow_uri).get_run(result.run_id).info.status == "FINISHED"
    reliability(
        row="T3",
        fault="SIGTERM to `logicflow stage train` mid-epoch",
        outcome="checkpoint at the current step, MLflow run KILLED, exit 143 (retried), resumed to the end",
        stopped_at_step=stopped_at,
        exit_code=proc.returncode,
    )
