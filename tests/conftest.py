"""Shared test hygiene."""

import sys
from collections.abc import Iterator

import pytest


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
