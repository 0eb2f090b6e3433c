"""The publish targets, looked up by name, and the folder they all receive.

- `local`:  publish/, laid out like the Hub repo; built beside it and swapped in only after every other
            target succeeded (`staged`), so a failing Hub or registry leaves publish/ as it was;
- `hub`:    one commit to `publish.repo_id` (`logicflow.publishing.hub`), only when the gate passed or forced;
- `mlflow`: a Model Registry version (`logicflow.registry`); `champion` moves only when the gate passed.

    with staged(paths, plan, local=True) as (folder, unchanged):
        ctx = TargetContext(cfg, paths, inputs, folder, allowed, hub, local_unchanged=unchanged)
        results = publish_to(["local", "hub"], ctx)
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from logicflow.atomic import atomic_dir
from logicflow.config import Config
from logicflow.errors import PublishError
from logicflow.paths import Paths
from logicflow.publishing.hub import HubTarget, push_folder
from logicflow.publishing.inputs import PublishInputs
from logicflow.publishing.repo import RepoPlan, folder_matches, materialize

logger = logging.getLogger(__name__)

TARGET_ORDER = ("local", "hub", "mlflow")


@dataclass(frozen=True)
class TargetResult:
    target: str
    status: str  # written | pushed | registered | unchanged | skipped
    detail: str
    url: str | None = None


@dataclass(frozen=True)
class TargetContext:
    """What every target reads."""

    cfg: Config
    paths: Paths
    inputs: PublishInputs
    folder: Path  # the Hub-shaped folder to publish
    allowed: bool  # gate passed, or forced
    hub: HubTarget | None
    local_unchanged: bool = False  # publish/ already held this exact folder


def _local(ctx: TargetContext) -> TargetResult:
    gate = ctx.inputs.report.gate
    note = "" if gate.passed else f" (evaluation gate {gate.result}: for review, not for release)"
    where = str(ctx.paths.publish_dir)
    if ctx.local_unchanged:
        return TargetResult("local", "unchanged", f"{where} already holds this model{note}", where)
    return TargetResult("local", "written", f"{where}{note}", where)


def _hub(ctx: TargetContext) -> TargetResult:
    assert ctx.hub is not None
    gate = ctx.inputs.report.gate
    if not ctx.allowed:
        return TargetResult(
            "hub",
            "skipped",
            f"evaluation gate {gate.result}: "
            + "; ".join(gate.reasons)
            + "; nothing was pushed (use --force to publish anyway)",
            ctx.hub.url,
        )
    run_id = ctx.inputs.run["run_id"]
    message = f"Publish {ctx.cfg.card.model_name} from MLflow run {run_id}"
    description = (
        f"MLflow run: {run_id}"
        + f"\nEvaluation gate: {'passed' if gate.passed else f'{gate.result} (published with --force)'}"
    )
    result = push_folder(ctx.hub, ctx.folder, ctx.inputs.plan.fingerprint, message, description=description)
    return TargetResult(
        "hub",
        result.status,
        f"{result.repo_url}@{result.revision} commit {result.commit_oid}",
        result.repo_url,
    )


def _mlflow(ctx: TargetContext) -> TargetResult:
    from logicflow.registry import register_model

    gate = ctx.inputs.report.gate
    result = register_model(
        ctx.paths,
        ctx.folder,
        ctx.cfg.publish.registered_model_name,
        ctx.inputs.plan.fingerprint,
        champion=gate.passed,
        tags={"logicflow_gate": gate.result, "logicflow_repo_id": ctx.cfg.publish.repo_id},
    )
    detail = (
        f"{result.name} version {result.version} (aliases: {', '.join(result.aliases) or 'none'}) "
        f"from run {result.run_id} at {result.tracking_uri}"
    )
    return TargetResult("mlflow", result.status, detail, result.run_url)


TARGETS: dict[str, Callable[[TargetContext], TargetResult]] = {
    "local": _local,
    "hub": _hub,
    "mlflow": _mlflow,
}


def chosen_targets(names: list[str]) -> list[str]:
    """`publish.targets` in `TARGET_ORDER`; an unknown name or none at all lists the valid ones."""
    targets = [t for t in TARGET_ORDER if t in names]
    if set(names) - set(TARGETS) or not targets:
        raise PublishError(f"publish.targets {list(names)}: choose from {', '.join(TARGETS)}")
    return targets


@contextmanager
def staged(paths: Paths, plan: RepoPlan, local: bool) -> Iterator[tuple[Path, bool]]:
    """The folder the targets read -> (folder, publish/ already held it).

    With the `local` target the new folder is built beside publish/ and swapped in only after every other
    target succeeded, so a failing Hub or registry leaves publish/ at its previous version too.
    """
    if local and folder_matches(plan, paths.publish_dir):
        yield paths.publish_dir, True
        return
    if local:
        with atomic_dir(paths.publish_dir) as tmp:
            materialize(plan, tmp)
            yield tmp, False
        return
    paths.servers.dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="publish-", dir=paths.servers.dir))
    try:
        materialize(plan, tmp)
        yield tmp, False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_to(targets: list[str], ctx: TargetContext) -> list[TargetResult]:
    """Run each target, remote ones first (publish/ is swapped in when `staged` exits, after they
    succeeded); the results come back in `TARGET_ORDER`."""
    results = []
    for target in sorted(targets, key=lambda t: t == "local"):
        result = TARGETS[target](ctx)
        logger.info("publish %s: %s (%s)", target, result.status, result.detail)
        results.append(result)
    return sorted(results, key=lambda r: TARGET_ORDER.index(r.target))


def overall_status(allowed: bool, results: list[TargetResult]) -> str:
    """`not published` when the gate held the model back, `unchanged` when every target already held it."""
    if not allowed:
        return "not published"
    return "unchanged" if all(r.status == "unchanged" for r in results) else "published"
