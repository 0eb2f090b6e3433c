"""T2's warm start: `python train_forker.py ARGS...` imports the train stage's libraries once, then for each
line on stdin forks a fresh `logicflow ARGS...` process and prints its pid, then its exit code. The test
SIGKILLs the child in between, so twenty kills cost twenty trainings, not twenty interpreter start-ups.

The parent never runs torch, so the forked child starts with no thread pool or lock held."""

from __future__ import annotations

import os
import sys

import mlflow  # noqa: F401 - the heavy imports, done once before any fork
import peft  # noqa: F401
import transformers  # noqa: F401
import trl  # noqa: F401

from logicflow import cli
from logicflow.stages import train  # noqa: F401


def main() -> None:
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the stage's result JSON is not ours to print
            os._exit(cli.main(sys.argv[1:]))
        print(pid, flush=True)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)


if __name__ == "__main__":
    main()
