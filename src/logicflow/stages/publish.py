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
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logicflow.atomic import atomic_dir
from logicflow.config import Config
from logicflow.errors import PublishError
from logicflow.model import read_manifest
from logicflow.paths import Paths
from logicflow.publishing.card import fmt_pm, fmt_signed, validate_card
from logicflow.publishing.card_data import EvalReport, load_eval_report, read_json
from logicflow.publishing.hub import HubTarget, push_folder
from logicflow.publishing.repo import RepoPlan, folder_matches, materialize, plan_repo, verify_weights

logger = logging.getLogger(__name__)

TARGET_ORDER = ("local", "hub", "mlflow")


@dataclass(frozen=True)
class TargetResult:
    target: str
    status: str  # written | pushed | registered | unchanged | skipped
    detail: str
    url: str | None = None


@dataclass(frozen=True)
class PublishResult:
    status: str  # published | unchanged | not published
    gate_passed: bool
    forced: bool
    fingerprint: str
    reasons: list[str] = field(default_factory=list)
    deltas: list[str] = field(default_factory=list)
    targets: list[TargetResult] = field(default_factory=list)


@dataclass
class _Context:
    cfg: Config
    paths: Paths
    plan: RepoPlan
    report: EvalReport
    run: dict[str, Any]
    folder: Path
    allowed: bool  # gate passed, or forced
    hub: HubTarget | None
    local_unchanged: bool = False  # publish/ already held this exact folder


def deltas(report: EvalReport) -> list[str]:
    return [
        f"{r.task} {r.metric}: base {fmt_pm(r.base)} -> tuned {fmt_pm(r.tuned)}, delta {fmt_signed(r.delta)}"
        + (" (regressed)" if r.regressed else "")
        for r in report.results
    ]


def _local(ctx: _Context) -> TargetResult:
    note = (
        ""
        if ctx.report.gate.passed
        else f" (evaluation gate {ctx.report.gate.result}: for review, not for release)"
    )
    where = str(ctx.paths.publish_dir)
    if ctx.local_unchanged:
        return TargetResult("local", "unchanged", f"{where} already holds this model{note}", where)
    return TargetResult("local", "written", f"{where}{note}", where)


def _hub(ctx: _Context) -> TargetResult:
    assert ctx.hub is not None
    if not ctx.allowed:
        return TargetResult(
            "hub",
            "skipped",
            f"evaluation gate {ctx.report.gate.result}: "
            + "; ".join(ctx.report.gate.reasons)
            + "; nothing was pushed (use --force to publish anyway)",
            ctx.hub.url,
        )
    run_id = ctx.run["run_id"]
    message = f"Publish {ctx.cfg.card.model_name} from MLflow run {run_id}"
    gate = ctx.report.gate
    description = (
        f"MLflow run: {run_id}"
        + f"\nEvaluation gate: {'passed' if gate.passed else f'{gate.result} (published with --force)'}"
    )
    result = push_folder(ctx.hub, ctx.folder, ctx.plan.fingerprint, message, description=description)
    return TargetResult(
        "hub",
        result.status,
        f"{result.repo_url}@{result.revision} commit {result.commit_oid}",
        result.repo_url,
    )


def _mlflow(ctx: _Context) -> TargetResult:
    from logicflow.registry import register_model

    gate = ctx.report.gate.result
    result = register_model(
        ctx.paths,
        ctx.folder,
        ctx.cfg.publish.registered_model_name,
        ctx.plan.fingerprint,
        champion=ctx.report.gate.passed,
        tags={"logicflow_gate": gate, "logicflow_repo_id": ctx.cfg.publish.repo_id},
    )
    detail = (
        f"{result.name} version {result.version} (aliases: {', '.join(result.aliases) or 'none'}) "
        f"from run {result.run_id} at {result.tracking_uri}"
    )
    return TargetResult("mlflow", result.status, detail, result.run_url)


TARGETS: dict[str, Callable[[_Context], TargetResult]] = {"local": _local, "hub": _hub, "mlflow": _mlflow}


@contextmanager
def _staged(paths: Paths, plan: RepoPlan, local: bool) -> Iterator[tuple[Path, bool]]:
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


def run(cfg: Config, paths: Paths, force: bool = False) -> PublishResult:
    targets = [t for t in TARGET_ORDER if t in cfg.publish.targets]
    unknown = sorted(set(cfg.publish.targets) - set(TARGETS))
    if unknown or not targets:
        raise PublishError(f"publish.targets {list(cfg.publish.targets)}: choose from {', '.join(TARGETS)}")
    # Every check that can fail comes before the first target is touched.
    hub = HubTarget.from_env(cfg.publish) if "hub" in targets else None
    report = load_eval_report(paths)
    card = paths.card.readme
    if not card.is_file():
        raise PublishError(f"{card}: not found; run the `card` stage first (`dvc repro card`)")
    try:
        validate_card(card.read_text(), report)
    except PublishError as exc:
        raise PublishError(f"{exc}; the card is stale or damaged, re-run `dvc repro card`") from None
    run_info = read_json(
        paths, paths.mlflow_run_file, "train", required=bool({"hub", "mlflow"} & set(targets))
    )
    run_info = run_info or {}
    metrics = read_json(paths, paths.train_reports.metrics, "train")
    verify_weights(paths.merged, metrics.get("merged_sha256"))
    manifest = read_manifest(paths.base_model)
    base = {"id": manifest.id, "revision": manifest.revision, "sha256": manifest.sha256} if manifest else {}
    plan = plan_repo(
        paths.merged,
        paths.adapter,
        paths.card.dir,
        paths.eval_json,
        # the run URL points at this machine's MLflow server: it stays local, the run id travels
        run={k: run_info.get(k) for k in ("run_id", "experiment_id") if run_info.get(k)},
        extra={"model_name": cfg.card.model_name, "repo_id": cfg.publish.repo_id, "base_model": base},
    )

    passed = report.gate.passed
    changes = deltas(report)
    if not passed:
        logger.warning(
            "evaluation gate %s: %s", report.gate.result, "; ".join(report.gate.reasons) or "no reason"
        )
        for line in changes:
            logger.warning("  %s", line)
        if force:
            logger.warning("--force: publishing anyway (alias `champion` still does not move)")

    results: list[TargetResult] = []
    with _staged(paths, plan, "local" in targets) as (folder, unchanged):
        ctx = _Context(
            cfg=cfg,
            paths=paths,
            plan=plan,
            report=report,
            run=run_info,
            folder=folder,
            allowed=passed or force,
            hub=hub,
            local_unchanged=unchanged,
        )
        # Remote targets first: publish/ is only swapped in (when this block exits) after they succeeded.
        for target in [t for t in targets if t != "local"] + (["local"] if "local" in targets else []):
            result = TARGETS[target](ctx)
            logger.info("publish %s: %s (%s)", target, result.status, result.detail)
            results.append(result)
    results.sort(key=lambda r: TARGET_ORDER.index(r.target))

    if not (passed or force):
        status = "not published"
    elif all(r.status == "unchanged" for r in results):
        status = "unchanged"
    else:
        status = "published"
    logger.info("publish: %s (fingerprint %s)", status, plan.fingerprint[:12])
    return PublishResult(
        status=status,
        gate_passed=passed,
        forced=force and not passed,
        fingerprint=plan.fingerprint,
        reasons=list(report.gate.reasons),
        deltas=changes,
        targets=results,
    )
