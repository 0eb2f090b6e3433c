"""T12: four processes write to the project's local MLflow server at once (per-step metrics, then a
registry version each and the `candidate` alias): no point is lost, no "database is locked" reaches a
writer, and the registry ends with four distinct versions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow_writer import MODEL, POINTS

from logicflow import servers
from logicflow.paths import Paths

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
