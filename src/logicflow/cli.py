"""The `logicflow` command: what `dvc.yaml`, the Prefect flow and people call.

    logicflow stage data                      # run one stage on params.yaml's profile
    logicflow stage train --profile smoke --set lora.r=8 --resume
    logicflow model fetch                     # resolve the base model into models/base
    logicflow config show --profile gemma3-27b
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from logicflow.errors import LogicFlowError

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


@command("stage")
def _stage(args: argparse.Namespace) -> Any:
    from logicflow.stages import get_stage

    run = get_stage(args.name)
    options = {key: True for key in ("resume", "force") if getattr(args, key)}
    return run(_config(args), _paths(args), **options)


@command("model fetch")
def _model_fetch(args: argparse.Namespace) -> Any:
    from logicflow.model import resolve

    return resolve(_config(args).model, _paths(args))


@command("config show")
def _config_show(args: argparse.Namespace) -> None:
    print(yaml.safe_dump(_config(args).to_dict(), sort_keys=False), end="")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default=".", help="project root (default: current directory)")
    common.add_argument("--params", default="params.yaml", help="params file, relative to --root")
    common.add_argument("--profile", default=None, help="profile name (default: params.yaml's `profile`)")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param, e.g. --set lora.r=16 (repeatable)")

    parser = argparse.ArgumentParser(prog="logicflow", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    stage = sub.add_parser("stage", parents=[common], help="run one pipeline stage")
    stage.add_argument("name", help="data | model | validate | train | evaluate | card | publish")
    stage.add_argument("--resume", action="store_true", help="train: continue from the last checkpoint")
    stage.add_argument("--force", action="store_true", help="publish: publish even if the eval gate failed")

    model = sub.add_parser("model", help="base model commands").add_subparsers(dest="action", required=True)
    model.add_parser("fetch", parents=[common], help="resolve the base model into models/base")

    config = sub.add_parser("config", help="configuration commands").add_subparsers(dest="action", required=True)
    config.add_parser("show", parents=[common], help="print the effective configuration")
    return parser


def _jsonable(result: Any) -> Any:
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return result


def main(argv: list[str] | None = None) -> int:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    name = " ".join(filter(None, [args.command, getattr(args, "action", None)]))
    try:
        result = COMMANDS[name](args)
    except LogicFlowError as exc:
        print(f"logicflow: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("logicflow: interrupted", file=sys.stderr)
        return 130
    if result is not None:
        print(json.dumps(_jsonable(result), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
