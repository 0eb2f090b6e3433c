"""Stage `publish`: ship the merged model, its card and eval report to the configured targets.

    logicflow stage publish --profile smoke            # local folder publish/ + MLflow registry
    HF_TOKEN=... logicflow stage publish --force       # also the Hub, even past a failed gate
    logicflow stage publish --dry-run                  # what a push would send; sends nothing, needs no token

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
import os
from dataclasses import dataclass, field

from logicflow.config import Config
from logicflow.paths import Paths
from logicflow.publishing.gate import deltas, warn_gate_failed
from logicflow.publishing.hub import DEFAULT_ENDPOINT, HubTarget, large_file_transfer, upload_mode
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


@dataclass(frozen=True)
class DryRun:
    """What `publish` would do: the checked inputs' files and where they would go; nothing is sent."""

    targets: list[str]
    hub: dict[str, str | bool]  # repo id, revision, privacy, endpoint, how large files travel
    files: list[dict[str, str | int]]  # path, size, upload mode (`lfs` or `regular` on the Hub)
    total_bytes: int
    gate: str


def dry_run(cfg: Config, paths: Paths) -> DryRun:
    """Check the inputs as a publish would, list the operations, touch nothing (no token needed)."""
    inputs = read_inputs(cfg, paths, needs_run=False)
    sizes = {f.path_in_repo: f.source.stat().st_size for f in inputs.plan.files}
    files = [{"path": path, "bytes": size, "upload": upload_mode(path, size)} for path, size in sizes.items()]
    hub = {
        "repo_id": cfg.publish.repo_id,
        "revision": cfg.publish.revision,
        "private": cfg.publish.private,
        "endpoint": os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT,
        "large_files_via": large_file_transfer(),
    }
    targets = chosen_targets(cfg.publish.targets)
    result = DryRun(targets, hub, files, sum(sizes.values()), inputs.report.gate.result)
    for line in _dry_run_lines(result):
        logger.info("publish --dry-run: %s", line)
    return result


def _dry_run_lines(plan: DryRun) -> list[str]:
    hub = plan.hub
    privacy = "private" if hub["private"] else "public"
    lines = [
        f"targets {', '.join(plan.targets)}; evaluation gate {plan.gate}; nothing is sent",
        f"hub: {hub['repo_id']}@{hub['revision']} ({privacy}) on {hub['endpoint']}; large files via "
        f"{hub['large_files_via']}",
    ]
    lines += [f"{f['upload']:<8} {int(f['bytes']):>12,} B  {f['path']}" for f in plan.files]
    lines.append(f"{len(plan.files)} files, {plan.total_bytes:,} bytes")
    return lines


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
