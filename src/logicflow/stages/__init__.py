"""Stage registry: each stage is a module with `run(cfg, paths) -> <Name>Result`.

Modules are imported on demand so `logicflow stage data` never pays for importing torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from logicflow.errors import ConfigError

STAGES: dict[str, str] = {
    "data": "logicflow.stages.data",
    "model": "logicflow.stages.model",
    "validate": "logicflow.stages.validate",
    "train": "logicflow.stages.train",
    "evaluate": "logicflow.stages.evaluate",
    "card": "logicflow.stages.card",
    "publish": "logicflow.stages.publish",
}


def get_stage(name: str) -> Callable[..., Any]:
    """Return the `run` function of stage `name`; an unknown name lists the valid ones."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; valid stages: {', '.join(STAGES)}")
    return importlib.import_module(STAGES[name]).run
