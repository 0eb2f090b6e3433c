"""One of T12's concurrent writers: `python mlflow_writer.py URL EXPERIMENT_ID INDEX FOLDER` logs
POINTS metric points one request at a time into a new run, then registers FOLDER as a version of one shared
registered model and moves the `candidate` alias to it, exactly as the publish stage does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mlflow import MlflowClient

from logicflow.registry import _register
from logicflow.tracking import RunInfo, Tracker, run_url

POINTS = 150
MODEL = "logicflow-t12"


def main() -> None:
    url, experiment_id, index, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    client = MlflowClient(url)
    run = client.create_run(experiment_id, run_name=f"writer-{index}")
    run_id = run.info.run_id
    tracker = Tracker(client, RunInfo(run_id, experiment_id, "t12", url, run_url(url, experiment_id, run_id)))
    for step in range(POINTS):
        tracker.log_metrics({"loss": 1.0 / (step + 1), "writer": float(index)}, step=step)
    result = _register(tracker, folder, MODEL, f"{index:064d}", champion=False, tags={})
    client.set_terminated(run_id)
    print(json.dumps({"run_id": run_id, "version": result.version}))


if __name__ == "__main__":
    main()
