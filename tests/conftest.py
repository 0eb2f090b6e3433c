"""Shared test hygiene, and the fault suite's record: a test that takes the `reliability` fixture appends one
JSON line to reports/reliability.jsonl (gitignored); `python tests/faults/table.py` renders them as the table
in docs/reliability.md."""

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from logicflow.atomic import atomic_file
from logicflow.paths import Paths

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _reset_mlflow_globals() -> Iterator[None]:
    """`mlflow.set_tracking_uri` is process-global and beats MLFLOW_TRACKING_URI: undo it after each test
    so one test's store never leaks into the next."""
    yield
    if "mlflow" in sys.modules:
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        tracking_utils._tracking_uri = None
        registry_utils._registry_uri = None


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    """`reliability(row="T15", fault=..., outcome=..., **figures)`: recorded once the test has finished,
    with whether it passed."""
    recorded: dict[str, Any] = {}
    yield lambda **fields: recorded.update(fields)
    if recorded:
        report = getattr(request.node, "rep_call", None)
        line = {**recorded, "test": request.node.nodeid, "passed": bool(report and report.passed)}
        line["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
        log = Paths.from_root(ROOT).reliability_log
        previous = log.read_text() if log.exists() else ""
        with atomic_file(log) as tmp:
            tmp.write_text(previous + json.dumps(line, sort_keys=True) + "\n")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report
