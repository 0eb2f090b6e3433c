"""The Prefect flow `logicflow`: one task per DVC stage (DVC decides what is stale), then `dvc push`.

    logicflow up && prefect deployment run logicflow/full --watch         # through the served deployment
    prefect deployment run logicflow/full -p overrides='{"lora.r": 8}'    # a DVC experiment, see below
    python flows/pipeline.py --profile smoke --set lora.r=8               # one run in this process

Every run starts with `logicflow preflight` (token, Hub access, disk, memory, servers); a problem stops it
before any stage, with one line per problem saying how to fix it.

Each task runs `dvc repro <stage> --single-item` in pipeline order, so `dvc.lock` records every run and
either front door (`dvc repro` or a deployment run) leaves nothing for the other to do. The stages that
touch the network (base model and dataset fetch, publish, `dvc push`) retry with backoff; the others fail
at once, and so does a stage that reports a `LogicFlowError` (bad params, failed validation).
A failed run is re-run as a whole: DVC skips the stages that finished and training resumes from its
checkpoint.

With a non-default `profile` or any `overrides`, the run is a DVC experiment (`dvc exp run --temp -S ...`):
the workspace and its `params.yaml` stay as they are, the results land in a git ref (`dvc exp show`,
`dvc exp apply <name>`) and in MLflow. Experiments need a git repo with at least one commit.

The run page gets artifacts: what each stage did, the data and validation summaries, the eval table,
links to the MLflow run, the Data Docs and the card. The MLflow run is tagged with the flow-run id and URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import deployment, flow_run
from prefect.utilities.urls import url_for

from logicflow import progress
from logicflow.paths import Paths

# Stages that reach the network (Hugging Face Hub, object store): retried with backoff.
NETWORK_STAGES = frozenset({"model", "data", "publish"})
RETRY_DELAYS_S = [int(s) for s in os.environ.get("LOGICFLOW_RETRY_DELAYS", "10,60,300").split(",")]
# How a stage reports an error the user caused (logicflow.cli prints LogicFlowError this way): never retried.
USER_ERROR = "logicflow: error:"
# Run overrides may not retarget publishing (repo id, privacy, targets): whoever can trigger a run could
# otherwise push the model somewhere else. The operator allows it on the serve process's environment.
ALLOW_PUBLISH_OVERRIDES = "LOGICFLOW_ALLOW_PUBLISH_OVERRIDES"


def project_root() -> Path:
    """The DVC project the flow drives: $LOGICFLOW_ROOT (set by `logicflow up`) or the current directory."""
    return Path(os.environ.get("LOGICFLOW_ROOT") or Path.cwd()).resolve()


class StageFailed(RuntimeError):
    """A `dvc` command failed; `user_error` says the stage itself diagnosed it (so retrying cannot help)."""

    def __init__(self, message: str, user_error: bool) -> None:
        super().__init__(message)
        self.user_error = user_error


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # DVC stages call `logicflow` from this venv
    return {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
    }


def dvc(root: Path, *args: str) -> list[str]:
    """Run `dvc <args>` in `root`, streaming its output (and the stage's) into the task log."""
    logger = get_run_logger()
    argv = [sys.executable, "-m", "dvc", *args]
    logger.info("$ dvc %s", " ".join(args))
    lines: list[str] = []
    proc = subprocess.Popen(
        argv, cwd=root, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    output = io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace", newline="")
    for line in progress.throttled(output, progress.ProgressThrottle(), live=progress.terminal()):
        lines.append(line)  # progress bars: one line per 10% or per minute (live bars stay on a terminal)
        logger.info(line)
    if proc.wait() != 0:
        diagnosed = [line for line in lines if line.startswith(USER_ERROR)]
        user_error = bool(diagnosed)
        tail = diagnosed[-1] if diagnosed else (lines[-1] if lines else "")
        raise StageFailed(f"dvc {' '.join(args)} failed (exit {proc.returncode}): {tail}", user_error)
    return lines


def _ran(lines: list[str]) -> dict[str, str]:
    """What DVC did per stage, from its log lines."""
    done: dict[str, str] = {}
    for line in lines:
        if m := re.search(r"Running stage '([^']+)'", line):
            done[m.group(1)] = "ran"
        elif m := re.search(r"Stage '([^']+)' is cached", line):
            done.setdefault(m.group(1), "restored from run-cache")
        elif m := re.search(r"Stage '([^']+)' didn't change", line):
            done.setdefault(m.group(1), "up to date")
    return done


def _result(ran: dict[str, str], stage: str) -> str:
    """One target's result from `_ran`: a foreach group ran if any of its items (`stage@item`) did."""
    results = [result for name, result in ran.items() if name == stage or name.startswith(f"{stage}@")]
    return "ran" if "ran" in results else (results[0] if results else "up to date")


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry condition: anything but an error the stage diagnosed itself (bad params, failed checks)."""
    try:
        state.result()
    except StageFailed as exc:
        return not exc.user_error
    except Exception:  # noqa: BLE001 - any other crash (network, OOM, killed) may pass on a retry
        return True
    return False


# ----------------------------------------------------------------------------------------------- tasks


@task(name="plan", task_run_name="plan stages", cache_policy=NO_CACHE)
def plan(root: Path, stages: list[str] | None, pipeline: str = "dvc.yaml") -> list[str]:
    """The DVC targets to reproduce, dependencies first: the stages of `pipeline` (a dvc.yaml; all, or the
    requested subset), after the stages of other dvc.yaml files they depend on (the method study in
    compare/dvc.yaml needs the main pipeline's validated data, which a fresh clone does not have yet)."""
    import networkx as nx
    from dvc.repo import Repo

    order = list((yaml.safe_load((root / pipeline).read_text()) or {}).get("stages", {}))
    with contextlib.chdir(root), Repo(str(root)) as repo:  # DVC resolves some paths from the cwd
        graph = repo.index.graph  # DVC's edges point from a stage to its dependency
        groups = {node: getattr(node, "name", str(node)).split("@")[0] for node in graph.nodes}
        own = {n for n in graph.nodes if getattr(n, "path_in_repo", None) == pipeline and groups[n] in order}
        ranked = list(
            nx.lexicographical_topological_sort(
                graph.reverse(),
                key=lambda n: (order.index(groups[n]) if groups[n] in order else len(order), groups[n]),
            )
        )
        names = list(dict.fromkeys(groups[n] for n in ranked if n in own))
        unknown = [s for s in stages or [] if s not in names]
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(unknown)}; {pipeline} has: {', '.join(names)}")
        chosen = {n for n in own if stages is None or groups[n] in stages}
        upstream = set().union(*(nx.descendants(graph, n) for n in chosen)) - own  # other dvc.yaml files
        needed = chosen | upstream
        targets = [target(n.path_in_repo, groups[n]) for n in ranked if n in needed]
    return list(dict.fromkeys(targets))


@task(name="check-params", task_run_name="check params", cache_policy=NO_CACHE)
def check_params(root: Path, profile: str | None, overrides: dict[str, Any]) -> list[str]:
    """Validate profile + overrides exactly as DVC will see them; return the `-S` settings (none = defaults).

    An override `lora.r` becomes `profiles.<profile>.lora.r`, because the profile overlay wins in params.yaml.
    A bad key or value, or a `publish.*` override the deployment does not allow, fails here, before any stage
    runs, and is never retried.
    """
    from logicflow.config import SECTION_KEYS, build_config, deep_merge
    from logicflow.errors import ConfigError

    params = yaml.safe_load((root / "params.yaml").read_text()) or {}
    current = params.get("profile", "cpu")
    name = profile or current
    settings = [] if name == current else [f"profile={name}"]
    overlay: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        section = key.split(".")[0]
        if section not in SECTION_KEYS or "." not in key:
            raise ValueError(
                f"override {key!r} must be section.key with a section in {', '.join(SECTION_KEYS)}"
            )
        if section == "publish" and os.environ.get(ALLOW_PUBLISH_OVERRIDES) != "1":
            raise ConfigError(
                f"override {key!r}: a flow run cannot change where or how the model is published; change "
                f"params.yaml, or start the deployments with {ALLOW_PUBLISH_OVERRIDES}=1"
            )
        settings.append(f"profiles.{name}.{key}={json.dumps(value)}")
        node: Any = value
        for part in reversed(key.split(".")):
            node = {part: node}
        overlay = deep_merge(overlay, node)
    trial = deep_merge(params, {"profile": name})
    if name in (params.get("profiles") or {}):  # else build_config names the unknown profile
        trial = deep_merge(trial, {"profiles": {name: overlay}})
    build_config(trial)  # raises ConfigError naming the key
    get_run_logger().info("params: profile %s%s", name, f", overrides {overrides}" if overrides else "")
    return settings


@task(name="preflight", task_run_name="preflight", cache_policy=NO_CACHE)
def preflight(root: Path, profile: str | None, overrides: dict[str, Any]) -> None:
    """`logicflow preflight` on the run's settings: token, Hub access, disk, memory, servers, one line each.
    A problem fails the run before any stage starts (never retried: the lines say what to fix)."""
    logger = get_run_logger()
    argv = [sys.executable, "-m", "logicflow.cli", "preflight", "--root", str(root)]
    argv += ["--profile", profile] if profile else []
    for key, value in overrides.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    done = subprocess.run(argv, cwd=root, env=_env(), capture_output=True, text=True)
    for line in done.stdout.splitlines():
        logger.info(line)
    if done.returncode != 0:
        found = [line for line in done.stdout.splitlines() if line.startswith("problem")]
        raise StageFailed("; ".join(found) or done.stderr.strip()[-500:], user_error=True)


@task(name="dvc-repro", task_run_name="dvc repro {stage}", cache_policy=NO_CACHE)
def reproduce(root: Path, stage: str) -> str:
    """`dvc repro <stage> --single-item`: runs the stage (every item of a foreach group) only if its deps,
    params or outs changed. `stage` may name another pipeline: `compare/dvc.yaml:compare`."""
    return _result(_ran(dvc(root, "repro", stage, "--single-item")), stage)


def target(pipeline: str, stage: str) -> str:
    """How DVC names a stage of `pipeline` from the project root."""
    return stage if pipeline == "dvc.yaml" else f"{pipeline}:{stage}"


reproduce_with_retries = reproduce.with_options(
    retries=len(RETRY_DELAYS_S), retry_delay_seconds=RETRY_DELAYS_S, retry_condition_fn=_transient
)


@task(name="dvc-exp-run", task_run_name="dvc exp run {name}", cache_policy=NO_CACHE)
def run_experiment(
    root: Path, stages: list[str], settings: list[str], full: bool, name: str
) -> dict[str, Any]:
    """`dvc exp run --temp`: the pipeline with `settings`, outside the workspace; returns the exp commit."""
    _require_git(root)
    targets = [] if full else [*stages, "--single-item"]
    lines = dvc(root, "exp", "run", "--temp", "-n", name, *[a for s in settings for a in ("-S", s)], *targets)
    rev = subprocess.run(
        ["git", "for-each-ref", "--format=%(objectname)", f"refs/exps/**/{name}"],
        cwd=root,
        capture_output=True,
        text=True,
    ).stdout.split()
    ran = _ran(lines)
    return {
        "name": name,
        "rev": rev[0] if rev else None,
        "stages": {s: _result(ran, s) for s in stages},
    }


@task(
    name="dvc-push",
    task_run_name="dvc push",
    cache_policy=NO_CACHE,
    retries=len(RETRY_DELAYS_S),
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=_transient,
)
def push(root: Path, rev: str | None = None) -> int:
    """Upload the outputs (of the workspace, or of an experiment commit) to the default DVC remote."""
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo:  # DVC resolves some paths from the cwd
        pushed = repo.push(revs=[rev], workspace=False) if rev else repo.push()
    get_run_logger().info("dvc push: %d file(s) uploaded", pushed)
    return pushed


@task(name="report", task_run_name="run page artifacts", cache_policy=NO_CACHE)
def report(
    root: Path, stages: dict[str, str], seconds: dict[str, float], experiment: dict[str, Any] | None
) -> dict[str, str]:
    """Artifacts for the run page from whatever the stages produced; returns the links it made."""
    rev = experiment["rev"] if experiment else None
    files, paths = Outputs(root, rev), Paths.from_root(root)
    links: dict[str, str] = {}
    if experiment:
        create_markdown_artifact(
            key="experiment",
            markdown=f"DVC experiment `{experiment['name']}` (commit {str(rev)[:7]}); the workspace is "
            f"unchanged: `dvc exp show` lists it, `dvc exp apply {experiment['name']}` brings it in.",
            description="where this run's outputs are",
        )
    create_table_artifact(
        key="stages",
        description="What DVC did for each stage in this run",
        table=[
            {"stage": s, "result": r, "seconds": round(seconds.get(s, 0.0), 1)} for s, r in stages.items()
        ],
    )
    if (data := files.json(paths.data_summary)) is not None:
        create_markdown_artifact(
            key="data-summary", markdown=_md_section("Data", data), description=files.name(paths.data_summary)
        )
    if (summary := files.json(paths.validation_summary)) is not None:
        create_markdown_artifact(
            key="validation-summary",
            markdown=_md_section("Validation", summary),
            description=files.name(paths.validation_summary),
        )
    if (table := files.text(paths.eval_reports.table)) is not None:
        create_markdown_artifact(
            key="eval-table",
            markdown=table,  # it opens with its own "# Evaluation: base vs tuned" heading
            description=files.name(paths.eval_reports.table),
        )
    if (run := files.json(paths.mlflow_run_file)) and (url := mlflow_run_url(run)):
        links["mlflow-run"] = url
    docs = paths.validation_reports.docs_index
    if rev is None and docs.exists():  # file links only for the workspace's own outputs
        links["data-docs"] = docs.as_uri()
    study_card = paths.compare_reports.card
    if (study := files.text(study_card)) is not None:
        create_markdown_artifact(key="compare-study", markdown=study, description=files.name(study_card))
    if (card := files.text(paths.card.readme)) is not None:
        if rev is None:
            links["model-card"] = paths.card.readme.as_uri()
        create_markdown_artifact(
            key="model-card-text",
            markdown=_strip_front_matter(card),
            description=files.name(paths.card.readme),
        )
    for key, url in links.items():
        create_link_artifact(key=key, link=url, link_text=url, description=key.replace("-", " "))
    return links


@task(
    name="tag-mlflow-run",
    task_run_name="tag MLflow run",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
)
def tag_mlflow_run(root: Path, rev: str | None, before: str | None) -> str | None:
    """Tag the pipeline's MLflow run with this flow run, when this flow run produced it (or it has no tag)."""
    run = Outputs(root, rev).json(Paths.from_root(root).mlflow_run_file)
    if not run or not run.get("run_id"):
        return None
    tags = {
        "prefect.flow_run_id": str(flow_run.get_id()),
        "prefect.flow_run_name": flow_run.get_name() or "",
        "prefect.flow_run_url": url_for("flow-run", obj_id=flow_run.get_id()) or "",
        "prefect.deployment": deployment.get_name() or "",
    }
    changed = _digest(run) != before
    set_tags(root, rev, run, tags, only_if_untagged=not changed)
    return run["run_id"]


# ------------------------------------------------------------------------------------------------ flow


@flow(name="logicflow", log_prints=True)
def logicflow(
    profile: str | None = None,
    overrides: dict[str, Any] | None = None,
    stages: list[str] | None = None,
    push_outputs: bool = True,
    pipeline: str = "dvc.yaml",
) -> dict[str, str]:
    """Reproduce the DVC pipeline stage by stage, push the outputs and publish the run page.

    profile: a profile from params.yaml (default: params.yaml's `profile`).
    overrides: dotted params, e.g. {"lora.r": 8}; with a non-default `profile`, run as a DVC experiment.
    stages: a subset of the pipeline's stages (default: all, in pipeline order).
    push_outputs: end with `dvc push` to the default remote.
    pipeline: the dvc.yaml to reproduce: the main one, or compare/dvc.yaml (the method study).
    """
    root = project_root()
    order = plan(root, stages, pipeline)
    settings = check_params(root, profile, overrides or {})
    preflight(root, profile, overrides or {})
    before = _digest(Outputs(root, None).json(Paths.from_root(root).mlflow_run_file))
    exp, done, seconds = None, {}, {}
    if settings:  # another profile or overrides: a DVC experiment, outside the workspace
        full = stages is None and pipeline == "dvc.yaml"  # the whole main pipeline needs no targets
        exp = run_experiment(root, order, settings, full=full, name=experiment_name())
        done = exp["stages"]
    else:
        for stage in order:
            start = time.monotonic()
            repro = reproduce_with_retries if stage in NETWORK_STAGES else reproduce
            done[stage] = repro(root, stage)
            seconds[stage] = time.monotonic() - start
    rev = exp["rev"] if exp else None
    if push_outputs:
        push(root, rev)
    report(root, done, seconds, exp)
    tag_mlflow_run(root, rev, before)
    return done


# --------------------------------------------------------------------------------------------- helpers


class Outputs:
    """Read pipeline outputs (paths from `logicflow.paths.Paths`) from the workspace, or from an experiment
    commit (through DVC)."""

    def __init__(self, root: Path, rev: str | None) -> None:
        self.root, self.rev = root.resolve(), rev

    def name(self, path: Path) -> str:
        """The output's path in the project, as `dvc` and git name it."""
        return path.relative_to(self.root).as_posix()

    def text(self, path: Path) -> str | None:
        if self.rev is None:
            return path.read_text(errors="replace") if path.is_file() else None
        import dvc.api

        try:
            return dvc.api.read(self.name(path), repo=str(self.root), rev=self.rev)
        except Exception:  # noqa: BLE001 - absent in that commit (stage not run or not in dvc.yaml yet)
            return None

    def json(self, path: Path) -> Any:
        text = self.text(path)
        try:
            return json.loads(text) if text is not None else None
        except json.JSONDecodeError:
            return None


def _digest(data: Any) -> str | None:
    return None if data is None else hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _require_git(root: Path) -> None:
    ok = (
        subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=root, capture_output=True).returncode
        == 0
    )
    if not ok:
        raise ValueError(
            f"{root}: a profile or overrides run as a DVC experiment, which needs a git repo with a "
            "commit: git init && git add -A && git commit -m init"
        )


def experiment_name() -> str:
    """A git-ref-safe name for this run's DVC experiment: <deployment>-<flow run name>."""
    base = f"{deployment.get_name() or 'local'}-{flow_run.get_name() or int(time.time())}"
    return re.sub(r"[^A-Za-z0-9_-]+", "-", base)


def mlflow_run_url(run: dict[str, Any]) -> str | None:
    """The run's MLflow UI page: as the train stage recorded it, else built from the tracking server."""
    if run.get("run_url"):
        return run["run_url"]
    uri = run.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("http") and run.get("experiment_id") and run.get("run_id"):
        return f"{uri.rstrip('/')}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}"
    return None


def set_tags(
    root: Path, rev: str | None, run: dict[str, Any], tags: dict[str, str], only_if_untagged: bool
) -> None:
    """Set `tags` on the pipeline's MLflow run: the workspace's through `logicflow.tracking` (same URI rules
    as the stages), an experiment's (its run file lives in the experiment commit) through MLflow directly."""
    from contextlib import nullcontext

    from logicflow import tracking

    if rev is None:
        opened: Any = tracking.attach(Paths.from_root(root), required=True)
    else:
        from mlflow import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or run.get("tracking_uri")
        opened = nullcontext(tracking.Tracker(MlflowClient(tracking_uri=uri), tracking.RunInfo(**run)))
    with opened as tracker:
        if only_if_untagged and "prefect.flow_run_id" in tracker.client.get_run(run["run_id"]).data.tags:
            get_run_logger().info("MLflow run %s comes from an earlier flow run; tags kept", run["run_id"])
            return
        tracker.set_tags(tags)
    get_run_logger().info("tagged MLflow run %s with flow run %s", run["run_id"], tags["prefect.flow_run_id"])


def _md_section(title: str, data: Any) -> str:
    """A JSON report as Markdown: its scalars in one table, each dict of records (datasets, checks, splits)
    as a table of its own, anything else flattened to dotted keys."""
    from logicflow.tracking import flatten

    if not isinstance(data, dict):
        return f"# {title}\n\n{_cell(data)}\n"
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    out = [
        f"# {title}",
        "",
        "| key | value |",
        "|---|---|",
        *(f"| {k} | {_cell(v)} |" for k, v in scalars.items()),
    ]
    for key, value in data.items():
        if not isinstance(value, dict) or not value:
            continue
        if all(isinstance(v, dict) for v in value.values()):
            rows = {name: flatten(record) for name, record in value.items()}
            columns = list(dict.fromkeys(c for row in rows.values() for c in row))[:12]
            out += [
                "",
                f"## {key}",
                "",
                f"| {key} | " + " | ".join(columns) + " |",
                "|---" * (len(columns) + 1) + "|",
            ]
            out += [
                f"| {name} | " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |"
                for name, row in rows.items()
            ]
        else:
            out += ["", f"## {key}", "", "| key | value |", "|---|---|"]
            out += [f"| {k} | {_cell(v)} |" for k, v in flatten(value).items()]
    return "\n".join(out) + "\n"


def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 200 else text[:197] + "..."


def _strip_front_matter(card: str) -> str:
    return re.sub(r"\A---\n.*?\n---\n", "", card, flags=re.S)


if __name__ == "__main__":
    import argparse

    cli = argparse.ArgumentParser(description="Run the logicflow flow once, in this process.")
    cli.add_argument("--profile", default=None)
    cli.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    cli.add_argument("--stage", action="append", default=None, dest="stages")
    cli.add_argument("--no-push", action="store_true")
    ns = cli.parse_args()
    sets = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in ns.set)}
    logicflow(profile=ns.profile, overrides=sets, stages=ns.stages, push_outputs=not ns.no_push)
