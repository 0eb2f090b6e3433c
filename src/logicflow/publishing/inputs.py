"""What the publish stage reads, every part checked before the first target is touched.

    inputs = read_inputs(cfg, paths, needs_run=True)
    inputs.report   # reports/eval.json, parsed; the card must agree with it
    inputs.run      # reports/train/mlflow_run.json: the MLflow run the model came from
    inputs.plan     # the Hub-shaped folder to publish (`logicflow.publishing.repo`), fingerprinted

A missing or stale input is a PublishError saying which stage to re-run, so a bad input leaves every earlier
published version as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from logicflow.config import Config
from logicflow.errors import PublishError
from logicflow.model import read_manifest
from logicflow.paths import Paths
from logicflow.publishing.card import validate_card
from logicflow.publishing.card_data import EvalReport, load_eval_report, read_json
from logicflow.publishing.repo import RepoPlan, plan_repo, verify_weights


@dataclass(frozen=True)
class PublishInputs:
    report: EvalReport
    run: dict[str, Any]  # empty when the train stage recorded no run and no target needs one
    plan: RepoPlan


def read_inputs(cfg: Config, paths: Paths, needs_run: bool) -> PublishInputs:
    """The eval report, the card (checked against it), the training run (required when `needs_run`), the
    merged weights (checked against the digest train recorded) and the base model manifest, as one plan."""
    report = load_eval_report(paths)
    card = paths.card.readme
    if not card.is_file():
        raise PublishError(f"{card}: not found; run the `card` stage first (`dvc repro card`)")
    try:
        validate_card(card.read_text(), report)
    except PublishError as exc:
        raise PublishError(f"{exc}; the card is stale or damaged, re-run `dvc repro card`") from None
    run = read_json(paths, paths.mlflow_run_file, "train", required=needs_run) or {}
    metrics = read_json(paths, paths.train_reports.metrics, "train")
    if "merged" in cfg.publish.artifacts:
        verify_weights(paths.merged, metrics.get("merged_sha256"))
    manifest = read_manifest(paths.base_model)
    base = {"id": manifest.id, "revision": manifest.revision, "sha256": manifest.sha256} if manifest else {}
    plan = plan_repo(
        paths.merged,
        paths.adapter,
        paths.card.dir,
        paths.eval_json,
        # the run URL points at this machine's MLflow server: it stays local, the run id travels
        run={k: run.get(k) for k in ("run_id", "experiment_id") if run.get(k)},
        extra={"model_name": cfg.card.model_name, "repo_id": cfg.publish.repo_id, "base_model": base},
        artifacts=tuple(cfg.publish.artifacts),
        gguf_dir=paths.gguf_dir,
    )
    return PublishInputs(report, run, plan)
