"""Stage `model`: put the configured base model into `models/base` (see `logicflow.model` for the sources).

logicflow stage model        # or: logicflow model fetch
"""

from __future__ import annotations

from logicflow.config import Config
from logicflow.model import ResolvedModel, resolve
from logicflow.paths import Paths


def run(cfg: Config, paths: Paths) -> ResolvedModel:
    return resolve(cfg.model, paths)
