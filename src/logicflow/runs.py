"""Trigger and watch a deployment run, print its summary, and compare pipeline runs from MLflow.

    logicflow run                                   # = make run: servers up, `full` deployment, summary
    logicflow run --deployment evaluate --set eval.limit=8
    logicflow compare-runs --experiment logicflow-cpu

Only this module and `servers.py` talk to the Prefect API from the CLI; stages never do.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from logicflow.errors import LogicFlowError, TrackingError
from logicflow.paths import Paths

logger = logging.getLogger(__name__)

FLOW_NAME = "logicflow"
POLL_S = 1.0
KEY_METRIC_HINTS = ("delta", "eval", "accuracy", "exact_match", "pass", "loss", "score")


class RunFailed(LogicFlowError):
    """A deployment run that did not complete: names its final state and where to read its logs."""


@dataclass
class RunResult:
    flow_run_id: str
    name: str
    state: str
    url: str
    seconds: float
    artifacts: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED"

    @property
    def stages(self) -> list[dict[str, Any]]:
        """What DVC did per stage (the flow's `stages` table artifact)."""
        return list(self.artifacts.get("stages") or [])


def _ui_base(api_url: str) -> str:
    return api_url.rstrip("/").removesuffix("/api")


def trigger(
    deployment: str = "full",
    parameters: dict[str, Any] | None = None,
    *,
    api_url: str | None = None,
    wait: bool = True,
    timeout: float | None = None,
    echo: Callable[[str], None] = print,
) -> RunResult:
    """Create a flow run of `logicflow/<deployment>` and (optionally) follow its logs until it ends.

    `api_url` (default $PREFECT_API_URL) must be the server the deployment is served from (`servers.env`).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API poll otherwise
    api_url = api_url or os.environ.get("PREFECT_API_URL", "")
    if not api_url:
        raise RunFailed(
            'PREFECT_API_URL is not set; run `logicflow up` (or `eval "$(logicflow status --env)"`)'
        )
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        try:
            return _trigger(deployment, parameters or {}, api_url, wait, timeout, echo)
        except KeyboardInterrupt:
            echo("stopped watching; the flow run goes on (see the Prefect UI); `logicflow down` stops it")
            raise


def _trigger(
    deployment: str,
    parameters: dict[str, Any],
    api_url: str,
    wait: bool,
    timeout: float | None,
    echo: Callable[[str], None],
) -> RunResult:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    start = time.monotonic()
    with get_client(sync_client=True) as client:  # sync on purpose: callers may run an event loop
        try:
            target = client.read_deployment_by_name(f"{FLOW_NAME}/{deployment}")
        except ObjectNotFound:
            raise RunFailed(
                f"deployment {FLOW_NAME}/{deployment} is not registered on {api_url}; "
                "is `logicflow up` running (see `logicflow status`)?"
            ) from None
        try:
            created = client.create_flow_run_from_deployment(target.id, parameters=parameters)
        except PrefectHTTPStatusError as exc:  # parameters that do not fit the deployment's schema
            raise RunFailed(f"{FLOW_NAME}/{deployment} refused the parameters {parameters}: {exc}") from None
    url = f"{_ui_base(api_url)}/runs/flow-run/{created.id}"
    echo(f"flow run {created.name} ({FLOW_NAME}/{deployment}): {url}")
    if not wait:
        return RunResult(str(created.id), created.name, "SCHEDULED", url, 0.0)

    def stamp() -> str:
        return f"  [{time.monotonic() - start:5.0f}s]"

    task_names: dict[UUID, str] = {}
    seen, last_state, final_reads = 0, "", 0
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(created.id)
            logs = client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[created.id])),
                offset=seen,
                sort=LogSort.TIMESTAMP_ASC,
                limit=200,
            )
            seen += len(logs)
            for log in logs:
                if log.message == "Finished in state Completed()":
                    continue  # the next task's first line says as much
                if log.task_run_id and log.task_run_id not in task_names:
                    task_names[log.task_run_id] = client.read_task_run(log.task_run_id).name
                echo(f"{stamp()} {task_names.get(log.task_run_id, 'flow')}: {log.message}")
            if run.state and run.state.name != last_state:
                last_state = run.state.name
                echo(f"{stamp()} flow run: {last_state}")
            if run.state and run.state.is_final() and len(logs) < 200:
                if final_reads >= 1:  # one more read after the end: log batches trail the state change
                    break
                final_reads += 1
            if timeout is not None and time.monotonic() - start > timeout:
                raise RunFailed(f"flow run {created.name} still {last_state} after {timeout:.0f} s: {url}")
            time.sleep(POLL_S)
        return RunResult(
            str(created.id),
            created.name,
            run.state.type.value,
            url,
            time.monotonic() - start,
            artifacts=_artifacts(client, created.id),
            message=run.state.message or "",
        )


def _artifacts(client: Any, flow_run_id: UUID) -> dict[str, Any]:
    """The artifacts the flow run created, by key (tables decoded to rows)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    )
    out: dict[str, Any] = {}
    for artifact in found:
        data = artifact.data
        if artifact.type == "table" and isinstance(data, str):
            data = json.loads(data)
        if artifact.key:
            out[artifact.key] = data
    return out


# ---------------------------------------------------------------------------------------------- summary


def summary(paths: Paths, result: RunResult, state: dict[str, dict[str, Any]]) -> str:
    """What `make run` prints at the end: stages, eval table, where things are, the two UIs."""
    root = paths.root
    lines = [f"flow run {result.name}: {result.state.lower()} in {result.seconds:.0f} s"]
    if result.stages:
        lines.append("  " + ", ".join(_stage_cell(row) for row in result.stages))
        staged = sum(row.get("seconds") or 0.0 for row in result.stages)
        if staged and result.seconds:
            overhead = result.seconds - staged
            lines.append(
                f"  stages {staged:.0f} s; orchestration overhead {overhead:.0f} s "
                f"({overhead / result.seconds:.0%} of the flow run)"
            )
    if result.message and not result.ok:
        lines.append(f"  {result.message}")
    if experiment := result.artifacts.get("experiment"):
        lines.append(f"  {experiment.strip()}")
    table = result.artifacts.get("eval-table")
    if table is None and paths.eval_reports.table.is_file():
        table = paths.eval_reports.table.read_text()
    if table:
        lines += ["", table.strip()]
    where = [
        ("model card", paths.card.readme),
        ("adapter", paths.adapter),
        ("merged model", paths.merged),
        ("base model", paths.base_model),
        ("eval report", paths.eval_json),
        ("published", paths.publish_dir),
        ("data docs", paths.validation_reports.docs_index),
    ]
    found = [(label, path) for label, path in where if path.exists()]
    if found:
        lines += ["", "Outputs:"] + [f"  {label:<13} {path.relative_to(root)}" for label, path in found]
    lines += ["", "UIs:"]
    run_info = _read_json(paths.mlflow_run_file)
    if run_info and (url := run_info.get("run_url")):
        lines.append(f"  MLflow run    {url}")
    if "mlflow" in state:
        lines.append(f"  MLflow UI     {state['mlflow']['url']}")
    lines.append(f"  Prefect run   {result.url}")
    if "prefect" in state:
        lines.append(f"  Prefect UI    {state['prefect']['url']}")
    lines.append("  (`logicflow down` / `make down` stops the servers)")
    if paths.servers.shell_env.is_file():
        lines += [
            "",
            'In a new shell (README, "Use it"):',
            f"  source {paths.servers.shell_env.relative_to(root)}",
            "  dvc repro                                        # nothing to do after this run",
            "  prefect deployment run logicflow/full --watch    # the same pipeline through Prefect",
        ]
    return "\n".join(lines)


def _stage_cell(row: dict[str, Any]) -> str:
    """`train: ran (212 s)`; an up-to-date stage shows no time (DVC's check is a second or two)."""
    seconds = row.get("seconds") if row["result"] == "ran" else None
    return f"{row['stage']}: {row['result']}" + (f" ({seconds:.0f} s)" if seconds else "")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# ------------------------------------------------------------------------------------------ compare-runs


def compare_runs(
    tracking_uri: str,
    experiment: str,
    max_runs: int = 10,
    metrics: list[str] | None = None,
    all_params: bool = False,
) -> dict[str, Any]:
    """The last `max_runs` runs of `experiment`: params that differ between them and the key metrics.

    Returns {"runs": [{"run_id", "name", "status", "flow_run"}...], "params": {name: [values]},
    "metrics": {name: [values]}}, one value per run, newest first.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    try:
        frame = mlflow.search_runs(
            experiment_names=[experiment], max_results=max_runs, order_by=["attributes.start_time DESC"]
        )
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for an unreachable store
        raise TrackingError(
            f"cannot read MLflow at {tracking_uri}: {exc}; is `logicflow up` running?"
        ) from None
    if frame is None or frame.empty:
        raise TrackingError(
            f"no runs in MLflow experiment {experiment!r} at {tracking_uri}; "
            "run the pipeline first (make run) or pass --experiment"
        )

    def column(name: str) -> list[Any]:
        return (
            [None if _missing(v) else v for v in frame[name].tolist()]
            if name in frame
            else [None] * len(frame)
        )

    runs = [
        {"run_id": rid, "name": name, "status": status, "flow_run": flow}
        for rid, name, status, flow in zip(
            frame["run_id"],
            column("tags.mlflow.runName"),
            column("status"),
            column("tags.prefect.flow_run_name"),
            strict=True,
        )
    ]
    params = {c.removeprefix("params."): column(c) for c in sorted(frame.columns) if c.startswith("params.")}
    if not all_params and len(frame) > 1:
        params = {k: v for k, v in params.items() if len({str(x) for x in v}) > 1}
    metric_cols = [c.removeprefix("metrics.") for c in frame.columns if c.startswith("metrics.")]
    if metrics:
        chosen = [m for m in metric_cols if any(pattern in m for pattern in metrics)]
    else:
        chosen = [m for m in metric_cols if any(h in m.lower() for h in KEY_METRIC_HINTS)] or metric_cols
    return {
        "experiment": experiment,
        "tracking_uri": tracking_uri,
        "runs": runs,
        "params": params,
        "metrics": {m: column(f"metrics.{m}") for m in sorted(chosen)},
    }


def _missing(value: Any) -> bool:
    try:
        return value is None or value != value  # NaN
    except (TypeError, ValueError):
        return False


def format_comparison(comparison: dict[str, Any]) -> str:
    """A plain-text table: one column per run (newest first), params that differ, then metrics."""
    runs = comparison["runs"]
    header = ["", *[(r["name"] or r["run_id"][:8]) for r in runs]]
    rows: list[list[str]] = [
        ["run id", *[r["run_id"][:8] for r in runs]],
        ["status", *[str(r["status"] or "") for r in runs]],
        ["flow run", *[str(r["flow_run"] or "-") for r in runs]],
    ]
    if comparison["params"]:
        rows.append(["params (differing)"] + [""] * len(runs))
        rows += [[f"  {k}", *[_fmt(v) for v in values]] for k, values in comparison["params"].items()]
    if comparison["metrics"]:
        rows.append(["metrics"] + [""] * len(runs))
        rows += [[f"  {k}", *[_fmt(v) for v in values]] for k, values in comparison["metrics"].items()]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    out = [f"MLflow experiment {comparison['experiment']} ({comparison['tracking_uri']}), newest first"]
    for row in [header, *rows]:
        out.append("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
