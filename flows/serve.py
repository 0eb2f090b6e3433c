"""Serve the `logicflow` deployments from this machine (started and stopped by `logicflow up` / `down`).

    PREFECT_API_URL=http://127.0.0.1:<port>/api python flows/serve.py

Deployments (all run the flow `logicflow`; parameters `profile` and `overrides` on each):
    full      every stage in dvc.yaml, then dvc push
    data      model + data + validate (fetch, convert and check the data)
    evaluate  evaluate + card for the model already in models/ (no retraining)
    compare   the method comparison study: every stage of compare/dvc.yaml
A deployment is registered only if dvc.yaml has at least one of its stages. One flow run at a time:
DVC holds a repo lock, so concurrent runs would only fail on it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `python flows/serve.py` from anywhere

from pipeline import logicflow, project_root  # noqa: E402

# deployment -> its stages (None = all of dvc.yaml)
DEPLOYMENTS: dict[str, list[str] | None] = {
    "full": None,
    "data": ["model", "data", "validate"],
    "evaluate": ["evaluate", "card"],
}
STUDY = "compare/dvc.yaml"  # the `compare` deployment reproduces this pipeline
DESCRIPTIONS = {
    "full": "Every DVC stage in pipeline order, then dvc push.",
    "data": "Fetch the base model and the data, convert and validate it.",
    "evaluate": "Evaluate the existing model against its base and rebuild the card.",
    "compare": "The method study (compare/dvc.yaml): each method trained and evaluated, then the report.",
}


def dvc_stages(root: Path) -> list[str]:
    stages = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages", {})
    return list(stages)


def deployments(root: Path) -> list:
    present = dvc_stages(root)
    out = []
    for name, wanted in DEPLOYMENTS.items():
        stages = None if wanted is None else [s for s in wanted if s in present]
        if stages == []:
            continue
        out.append(
            logicflow.to_deployment(
                name=name,
                description=DESCRIPTIONS[name],
                tags=["logicflow"],
                parameters={} if stages is None else {"stages": stages},
            )
        )
    if (root / STUDY).exists():
        study = {"pipeline": STUDY}
        out.append(
            logicflow.to_deployment(
                name="compare", description=DESCRIPTIONS["compare"], tags=["logicflow"], parameters=study
            )
        )
    return out


def main() -> None:
    from prefect import serve

    if not os.environ.get("PREFECT_API_URL"):
        sys.exit("flows/serve.py: PREFECT_API_URL is not set; start the servers with `logicflow up`")
    served = deployments(project_root())
    serve(*served, limit=1, pause_on_shutdown=False)


if __name__ == "__main__":
    main()
