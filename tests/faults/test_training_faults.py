"""T3: SIGTERM in the middle of training (a preemption, `kill`, a cancelled flow run) stops at a checkpoint
of the current step, marks the MLflow run KILLED, exits 143 (the flow retries it) and the next run resumes
from that checkpoint into the same MLflow run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
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


KILL_TRIALS = 20
HERE = Path(__file__).resolve().parent


def test_sigkill_while_checkpointing_never_resumes_from_a_torn_checkpoint(
    mlflow_uri: str,
    tmp_path: Path,
    reliability,  # noqa: ANN001
) -> None:
    """T2: a checkpoint every step, SIGKILL at a random moment (often mid-write or mid-rotation), restart;
    every restart continues from an intact checkpoint and the last one trains to the end."""
    import random

    paths = make_project(tmp_path / "project")
    every_step = ["train.save_steps=1", "train.save_total_limit=2", "train.max_steps=80"]  # kills reach ~45
    sets = [arg for item in [*OVERRIDES, *every_step] for arg in ("--set", item)]
    argv = ["stage", "train", "--root", str(paths.root), "--profile", "smoke", *sets]
    forker = subprocess.Popen(
        [sys.executable, str(HERE / "train_forker.py"), *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    rng = random.Random(0)
    torn_seen, steps_at_kill = 0, []
    try:
        for _ in range(KILL_TRIALS):
            before = checkpoints.last_checkpoint(paths.checkpoints)
            forker.stdin.write("go\n")
            forker.stdin.flush()
            child = int(forker.stdout.readline())
            deadline = time.monotonic() + 240
            while checkpoints.last_checkpoint(paths.checkpoints) == before:  # this attempt has saved once
                assert psutil.pid_exists(child), "the run ended before it saved"
                assert time.monotonic() < deadline, "no checkpoint appeared"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))  # lands in a step, a save or a rotation
            os.kill(child, signal.SIGKILL)
            assert int(forker.stdout.readline()) == -signal.SIGKILL, "the run ended before it was killed"
            found = checkpoints.checkpoint_dirs(paths.checkpoints)
            torn_seen += sum(not checkpoints.intact(path) for path in found)
            last = checkpoints.last_checkpoint(paths.checkpoints)
            assert last is not None
            steps_at_kill.append(int(last.name.split("-")[1]))
    finally:
        forker.kill()
        forker.wait()
    assert steps_at_kill == sorted(steps_at_kill)  # every restart went on from where the last one stopped

    resumed_from = checkpoints.last_checkpoint(paths.checkpoints)
    result = run(config(paths, *every_step), paths)
    assert result.resumed_from == str(resumed_from) and result.global_step == 80
    reliability(
        row="T2",
        fault=f"SIGKILL at a random moment of a run that checkpoints every step, {KILL_TRIALS} times",
        outcome="each restart resumed from an intact checkpoint; torn ones skipped and removed",
        kills=KILL_TRIALS,
        torn_checkpoints_seen=torn_seen,
        last_intact_step_at_kill=steps_at_kill[-1],
    )


def test_a_torn_checkpoint_is_never_the_one_resumed(mlflow_uri: str, tmp_path: Path) -> None:
    """Every way a kill can tear the newest checkpoint (a file missing, cut short, or an unparsable trainer
    state) makes the resume plan fall back to the previous intact one."""
    import shutil

    paths = make_project(tmp_path / "project")
    run(config(paths, "train.max_steps=2", "train.save_steps=1", "train.save_total_limit=3"), paths)
    older, newest = checkpoints.complete_checkpoints(paths.checkpoints)[-2:]
    names = [
        "trainer_state.json",
        "adapter_config.json",
        "adapter_model.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
    ]
    pristine = tmp_path / "pristine"
    shutil.copytree(newest, pristine)
    for name in names:
        for damage in ("missing", "cut short"):
            shutil.rmtree(newest)
            shutil.copytree(pristine, newest)
            target = newest / name
            if damage == "missing":
                target.unlink()
            else:
                target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
            assert not checkpoints.intact(newest), (name, damage)
            assert checkpoints.last_checkpoint(paths.checkpoints) == older, (name, damage)
