"""Helpers for the orchestration tests: a throw-away copy of the project as a git + DVC repo.

The copy runs the smoke profile with its own DVC remote; `FLOW_TEST_STAGES` limits its dvc.yaml to the
stages the flow tests exercise (widen it as stages land; `None` keeps every stage of dvc.yaml).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FLOW_TEST_STAGES: tuple[str, ...] | None = ("model", "data", "validate")
BIN = Path(sys.executable).parent


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def project_files() -> list[str]:
    out = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard")
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


def make_project(dest: Path, remote: Path, stages: tuple[str, ...] | None = FLOW_TEST_STAGES) -> Path:
    """Copy the project (code, params, dvc.yaml, flows) into `dest` as a committed git + DVC repo on smoke."""
    for name in project_files():
        if name == "dvc.lock" or name.startswith(("tests/", "docs/", "infra/", "benchmarks/")):
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["profile"] = "smoke"
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if stages is not None:
        pipeline = yaml.safe_load((dest / "dvc.yaml").read_text())
        pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in stages}
        (dest / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    git(dest, "init", "-q")
    subprocess.run([str(BIN / "dvc"), "remote", "modify", "local", "url", str(remote)], cwd=dest, check=True)
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "fixture")
    return dest


def offline_env(cache: Path) -> dict[str, str]:
    """What every process of a test run needs: no network, a per-session model cache, no dev server."""
    return {
        "LOGICFLOW_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
    }


def record_mlflow_run(
    root: Path, tracking_uri: str, experiment_name: str, run_name: str = "train-smoke"
) -> str:
    """Stand-in for the train stage until it is in FLOW_TEST_STAGES: an MLflow run with a few metrics,
    recorded in reports/train/mlflow_run.json as `logicflow.tracking` writes it. Returns the run id."""
    from mlflow import MlflowClient

    from logicflow import tracking
    from logicflow.paths import Paths

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment_name)
    experiment = found.experiment_id if found else client.create_experiment(experiment_name)
    run_id = client.create_run(experiment, run_name=run_name).info.run_id
    for step, loss in enumerate([2.0, 1.6, 1.3, 1.1]):
        client.log_metric(run_id, "train/loss", loss, step=step)
    client.log_param(run_id, "lora.r", 4)
    client.set_terminated(run_id)
    info = tracking.RunInfo(
        run_id, experiment, experiment_name, tracking_uri, tracking.run_url(tracking_uri, experiment, run_id)
    )
    tracking.write_run_file(Paths.from_root(root), info)
    return run_id
