"""Stage `publish`: ship the merged model, its card and eval report to the configured targets.

    logicflow stage publish --profile smoke            # local folder publish/ + MLflow registry
    HF_TOKEN=... logicflow stage publish --force       # also the Hub, even past a failed gate

Targets (`publish.targets`):
- `local`:  publish/, laid out exactly like the Hub repo (the offline default); built beside publish/ and
            swapped in only after the other targets succeeded;
- `hub`:    one commit to `publish.repo_id`@`publish.revision` on $HF_ENDPOINT with $HF_TOKEN
            (logicflow.publishing.hub);
- `mlflow`: a Model Registry version sourced from the training run; alias `candidate`, and `champion`
            only when the evaluation gate passed (logicflow.registry).
If the gate in reports/eval.json failed, nothing goes to the Hub and `champion` does not move: the stage logs
why (the gate's reasons and every delta) and returns status "not published" (exit 0) unless `force`.
Everything is checked before the first target is touched (repo id, token, eval report, card, weights), so a
bad input leaves every earlier published version as it was; a re-publish of an unchanged model is a no-op
everywhere (same fingerprint, see logicflow.publishing.repo).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from logicflow.config import Config
from logicflow.paths import Paths
from logicflow.publishing.gate import deltas, warn_gate_failed
from logicflow.publishing.hub import HubTarget
from logicflow.publishing.inputs import read_inputs
from logicflow.publishing.targets import (
    TargetContext,
    TargetResult,
    chosen_targets,
    overall_status,
    publish_to,
    staged,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishResult:
    status: str  # published | unchanged | not published
    gate_passed: bool
    forced: bool
    fingerprint: str
    reasons: list[str] = field(default_factory=list)
    deltas: list[str] = field(default_factory=list)
    targets: list[TargetResult] = field(default_factory=list)


def run(cfg: Config, paths: Paths, force: bool = False) -> PublishResult:
    targets = chosen_targets(cfg.publish.targets)
    # Every check that can fail comes before the first target is touched.
    hub = HubTarget.from_env(cfg.publish) if "hub" in targets else None
    inputs = read_inputs(cfg, paths, needs_run=bool({"hub", "mlflow"} & set(targets)))
    gate = inputs.report.gate
    changes = deltas(inputs.report)
    if not gate.passed:
        warn_gate_failed(inputs.report, changes, force)

    with staged(paths, inputs.plan, "local" in targets) as (folder, unchanged):
        ctx = TargetContext(cfg, paths, inputs, folder, gate.passed or force, hub, local_unchanged=unchanged)
        results = publish_to(targets, ctx)
    status = overall_status(gate.passed or force, results)
    logger.info("publish: %s (fingerprint %s)", status, inputs.plan.fingerprint[:12])
    return PublishResult(
        status=status,
        gate_passed=gate.passed,
        forced=force and not gate.passed,
        fingerprint=inputs.plan.fingerprint,
        reasons=list(gate.reasons),
        deltas=changes,
        targets=results,
    )
