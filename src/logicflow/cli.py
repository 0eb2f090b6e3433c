"""The `logicflow` command: what `dvc.yaml`, the Prefect flow and people call.

logicflow stage data                      # run one stage on params.yaml's profile
logicflow stage train --profile smoke --set lora.r=8 --resume
logicflow model fetch                     # resolve the base model into models/base
logicflow config show --profile gemma3-27b
logicflow plan --profile gemma3-27b --gpus 4  # memory per GPU, before anything is downloaded
logicflow preflight --profile cpu         # token, Hub access, disk, memory, servers: one line each
logicflow up | status | down              # local Prefect + MLflow servers and the deployments
logicflow run --set lora.r=8              # = make run: trigger logicflow/full, wait, summarise
logicflow compare-runs                    # params that differ + key metrics, from MLflow
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from logicflow.atomic import NO_SPACE
from logicflow.errors import ConfigError, Interrupted, LogicFlowError, PreflightFailed

# Offline-friendly defaults; an explicit environment always wins.
QUIET_ENV = {
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

Command = Callable[[argparse.Namespace], Any]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register a sub-command handler; handlers return a result that is printed as JSON."""

    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn

    return register


def _config(args: argparse.Namespace):  # noqa: ANN202 - returns logicflow.config.Config
    from logicflow.config import load_config

    return load_config(Path(args.root) / args.params, args.profile, args.set)


def _paths(args: argparse.Namespace):  # noqa: ANN202 - returns logicflow.paths.Paths
    from logicflow.paths import Paths

    return Paths.from_root(args.root)


def _relaunch_distributed() -> None:
    """`LOGICFLOW_LAUNCHER` (e.g. `torchrun --nproc_per_node 8` or `accelerate launch --config_file
    infra/accelerate/fsdp.yaml`) re-runs this very command under that launcher, one process per device, so
    `dvc repro`, the flow and a pod start multi-GPU training with an env change, not a different command.
    A process the launcher started (LOCAL_RANK set) trains."""
    launcher = shlex.split(os.environ.get("LOGICFLOW_LAUNCHER", ""))
    if not launcher or "LOCAL_RANK" in os.environ:
        return
    beside = Path(sys.executable).parent / launcher[0]  # the venv's torchrun/accelerate, activated or not
    program = str(beside) if "/" not in launcher[0] and beside.exists() else launcher[0]
    os.execvp(program, [program, *launcher[1:], "-m", "logicflow.cli", *sys.argv[1:]])


@command("stage")
def _stage(args: argparse.Namespace) -> Any:
    from logicflow.stages import get_stage

    if args.name == "train":
        _relaunch_distributed()
    if args.dry_run:
        if args.name != "publish":
            raise ConfigError("--dry-run is a publish option: logicflow stage publish --dry-run")
        from logicflow.stages.publish import dry_run

        return dry_run(_config(args), _paths(args))
    run = get_stage(args.name)
    options = {key: True for key in ("resume", "force") if getattr(args, key)}
    if args.method:
        options["method"] = args.method
    return run(_config(args), _paths(args), **options)


@command("model fetch")
def _model_fetch(args: argparse.Namespace) -> Any:
    from logicflow.model import resolve

    return resolve(_config(args).model, _paths(args))


@command("config show")
def _config_show(args: argparse.Namespace) -> None:
    print(yaml.safe_dump(_config(args).to_dict(), sort_keys=False), end="")


@command("plan")
def _plan(args: argparse.Namespace) -> None:
    from logicflow.datasets.mixing import target_counts
    from logicflow.planning import architecture, measured_tokens_per_row, plan_compute, plan_memory

    cfg, paths = _config(args), _paths(args)
    arch = architecture(cfg, paths.base_model)
    memory = plan_memory(cfg, arch, gpus=args.gpus)
    measured = measured_tokens_per_row(cfg, paths.validation_summary)
    planned_rows = round(sum(target_counts(cfg.data).values()) * (1 - cfg.data.val_fraction))
    rows, per_row, source = planned_rows, float(cfg.train.cutoff_len), "upper bound: every row at the cutoff"
    if args.tokens_per_row:
        per_row, source = args.tokens_per_row, "given"
    elif measured:
        (rows, per_row), source = measured, "measured by validate"
    options = {"gpus": args.gpus, "mfu": args.mfu, "usd_per_gpu_hour": args.usd_per_gpu_hour}
    compute = plan_compute(cfg, arch, rows, per_row, tokens_source=source, **options)
    if args.json:
        print(json.dumps({"memory": memory.to_dict(), "compute": dataclasses.asdict(compute)}))
        return
    print(memory.table())
    print(
        f"\n{compute.table()}"
        if compute
        else "\n(compute: run validate on this profile's data or pass --tokens-per-row)"
    )


@command("preflight")
def _preflight(args: argparse.Namespace) -> None:
    from logicflow import preflight

    findings = preflight.run(_config(args), _paths(args))
    for finding in findings:
        print(finding.line())
    if found := preflight.problems(findings):
        raise PreflightFailed(f"preflight found {len(found)} problem(s): {', '.join(f.check for f in found)}")


def _server_env(args: argparse.Namespace) -> dict[str, str]:
    """Point this process's Prefect and MLflow clients at the project's servers (before importing prefect)."""
    from logicflow import servers

    found = servers.env(_paths(args))
    os.environ.update(found)
    return found


def _print_servers(state: dict[str, dict[str, Any]]) -> None:
    for service, entry in state.items():
        where = entry.get("url", "(deployments logicflow/*)")
        health = (
            ""
            if "healthy" not in entry
            else ("  ok" if entry["healthy"] else "  NOT ANSWERING" if entry["running"] else "  stopped")
        )
        print(f"{service:<8} {where:<28} pid {entry.get('pid')}{health}  log {entry.get('log')}")


@command("up")
def _up(args: argparse.Namespace) -> None:
    from logicflow import servers

    state = servers.start(
        _paths(args), prefect_port=args.prefect_port, mlflow_port=args.mlflow_port, timeout=args.timeout
    )
    _print_servers(state)
    print(f"export PREFECT_API_URL={state['prefect']['api_url']}")
    print(f"export MLFLOW_TRACKING_URI={state['mlflow']['url']}")


@command("down")
def _down(args: argparse.Namespace) -> None:
    from logicflow import servers

    stopped = servers.stop(_paths(args))
    print(
        ", ".join(f"{k} stopped" if v else f"{k} was not running" for k, v in stopped.items())
        or "nothing was running"
    )


@command("status")
def _status(args: argparse.Namespace) -> None:
    from logicflow import servers

    report = servers.status(_paths(args))
    if args.env:
        for key, value in servers.env(_paths(args)).items():
            print(f"export {key}={value}")
        return None
    if not report:
        print("no servers recorded; start them with `logicflow up`")
        return None
    _print_servers(report)
    return None


@command("ui")
def _ui(args: argparse.Namespace) -> None:
    from logicflow import servers

    state = servers.status(_paths(args))
    if not state.get("prefect", {}).get("healthy") and not state.get("mlflow", {}).get("healthy"):
        raise servers.ServerError(
            "the servers are not running; start them with `logicflow up` (or `make up`)"
        )
    if "prefect" in state:
        url = state["prefect"]["url"]
        print(f"Prefect UI   {url}/runs   (deployments: {url}/deployments)")
    if "mlflow" in state:
        url = state["mlflow"]["url"]
        print(f"MLflow UI    {url}")
        try:
            import mlflow

            name = _config(args).experiment_name
            experiment = mlflow.MlflowClient(tracking_uri=url).get_experiment_by_name(name)
            if experiment is not None:
                print(f"  {name}: {url}/#/experiments/{experiment.experiment_id}/runs")
        except Exception:  # noqa: BLE001 - the links above are what matters
            pass


@command("run")
def _run(args: argparse.Namespace) -> None:
    from logicflow import runs, servers
    from logicflow.config import parse_override
    from logicflow.tracking import flatten

    paths = _paths(args)
    overrides = {key: value for text in args.set for key, value in flatten(parse_override(text)).items()}
    _config(args)  # bad profile or override: fail here, before any server starts
    state = servers.start(paths, timeout=args.timeout)
    _server_env(args)
    parameters: dict[str, Any] = {}
    if args.profile:
        parameters["profile"] = args.profile
    if overrides:
        parameters["overrides"] = overrides
    api_url = state["prefect"]["api_url"]
    result = runs.trigger(args.deployment, parameters, api_url=api_url, wait=not args.no_wait)
    if args.no_wait:
        return None
    print()
    print(runs.summary(paths, result, state))
    if not result.ok:
        raise runs.RunFailed(
            f"flow run {result.name} ended {result.state}: {result.message or 'see its logs'}; "
            f"{result.url} (re-run to resume: finished stages are skipped)"
        )
    return None


@command("compare-runs")
def _compare_runs(args: argparse.Namespace) -> dict[str, Any] | None:
    from logicflow import runs
    from logicflow.tracking import resolve_tracking_uri

    cfg = _config(args)
    _server_env(args)
    uri = resolve_tracking_uri(cfg.tracking.uri, _paths(args))  # the store the stages write to
    comparison = runs.compare_runs(
        uri, args.experiment or cfg.experiment_name, args.max_runs, args.metric, args.all_params
    )
    if args.json:
        return comparison
    print(runs.format_comparison(comparison))
    return None


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default=".", help="project root (default: current directory)")
    common.add_argument("--params", default="params.yaml", help="params file, relative to --root")
    common.add_argument("--profile", default=None, help="profile name (default: params.yaml's `profile`)")
    common.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param, e.g. --set lora.r=16 (repeatable)",
    )

    parser = argparse.ArgumentParser(prog="logicflow", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    stage = sub.add_parser("stage", parents=[common], help="run one pipeline stage")
    stage.add_argument(
        "name", help="data | model | validate | train | evaluate | card | publish | compare | compare-report"
    )
    stage.add_argument("--resume", action="store_true", help="train: continue from the last checkpoint")
    stage.add_argument("--force", action="store_true", help="publish: publish even if the eval gate failed")
    stage.add_argument(
        "--dry-run", action="store_true", help="publish: list what would go where; send nothing (no token)"
    )
    stage.add_argument("--method", help="compare: the method of the comparison study to train and evaluate")

    model = sub.add_parser("model", help="base model commands").add_subparsers(dest="action", required=True)
    model.add_parser("fetch", parents=[common], help="resolve the base model into models/base")

    config = sub.add_parser("config", help="configuration commands").add_subparsers(
        dest="action", required=True
    )
    config.add_parser("show", parents=[common], help="print the effective configuration")

    sub.add_parser(
        "preflight", parents=[common], help="check token, Hub access, disk, memory and servers before a run"
    )
    plan = sub.add_parser("plan", parents=[common], help="GPU memory a profile's training needs")
    plan.add_argument("--gpus", type=int, default=1, help="GPUs sharing the model (FSDP full shard)")
    plan.add_argument("--json", action="store_true", help="print the estimate as JSON")
    plan.add_argument(
        "--tokens-per-row", type=float, help="mean tokens per row (default: validate's, else cutoff)"
    )
    plan.add_argument("--mfu", type=float, default=0.35, help="model FLOPs utilisation (default 0.35)")
    plan.add_argument("--usd-per-gpu-hour", type=float, help="price of one GPU-hour, for the cost line")

    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", default=".", help="project root (default: current directory)")
    up = sub.add_parser(
        "up", parents=[root], help="start the local Prefect + MLflow servers and the deployments"
    )
    up.add_argument(
        "--prefect-port", type=int, default=None, help="default: a free port (the last one if free)"
    )
    up.add_argument(
        "--mlflow-port", type=int, default=None, help="default: a free port (the last one if free)"
    )
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the servers to answer")
    sub.add_parser("down", parents=[root], help="stop the servers `logicflow up` started")
    status = sub.add_parser("status", parents=[root], help="show the local servers")
    status.add_argument(
        "--env",
        action="store_true",
        help='print `export` lines for PREFECT_API_URL / MLFLOW_TRACKING_URI (eval "$(...)")',
    )
    sub.add_parser("ui", parents=[common], help="print the Prefect and MLflow UI URLs")

    run = sub.add_parser(
        "run",
        parents=[common],
        help="start the servers, run a deployment (default: full), wait and summarise",
    )
    run.add_argument("--deployment", default="full", help="full | data | evaluate | compare (default: full)")
    run.add_argument("--no-wait", action="store_true", help="trigger and return the flow-run URL")
    run.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the servers to answer")

    compare = sub.add_parser("compare-runs", parents=[common], help="compare pipeline runs from MLflow")
    compare.add_argument(
        "--experiment", default=None, help="MLflow experiment (default: logicflow-<profile>)"
    )
    compare.add_argument("--max-runs", type=int, default=10, help="newest runs to show (default: 10)")
    compare.add_argument(
        "--metric",
        action="append",
        default=None,
        help="only metrics containing this text (repeatable; default: eval/accuracy/loss-like)",
    )
    compare.add_argument(
        "--all-params", action="store_true", help="show every param, not just differing ones"
    )
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    return parser


def _jsonable(result: Any) -> Any:
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return result


def main(argv: list[str] | None = None) -> int:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    name = " ".join(filter(None, [args.command, getattr(args, "action", None)]))
    try:
        result = COMMANDS[name](args)
    except LogicFlowError as exc:
        print(f"logicflow: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in NO_SPACE:  # a full disk outside an atomic write (a checkpoint) is one line too
            raise
        where = exc.filename or exc
        print(f"logicflow: error: no space left on the device ({where}); free some, re-run", file=sys.stderr)
        return 1
    except Interrupted as exc:  # not the user's error: the flow retries, the stage resumes
        print(f"logicflow: interrupted: {exc}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("logicflow: interrupted", file=sys.stderr)
        return 130
    if result is not None:
        print(json.dumps(_jsonable(result), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
