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
    "export": "logicflow.stages.export",
    "card": "logicflow.stages.card",
    "publish": "logicflow.stages.publish",
    "compare": "logicflow.stages.compare",  # one method of the comparison study (--method)
    "compare-report": "logicflow.stages.compare:report",
}


def get_stage(name: str) -> Callable[..., Any]:
    """Return the `run` function of stage `name`; an unknown name lists the valid ones."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; valid stages: {', '.join(STAGES)}")
    module, _, function = STAGES[name].partition(":")
    return getattr(importlib.import_module(module), function or "run")
