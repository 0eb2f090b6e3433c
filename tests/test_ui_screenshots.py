"""Look at the two UIs as a person would after a pipeline run: headless Chromium (Debian `chromium`,
driven by PyPI `playwright`) opens the Prefect flow-run page, its artifacts, the MLflow runs table and
the MLflow run, saves a screenshot of each and checks what a person would look for on them.

    LOGICFLOW_SCREENSHOTS=/tmp/shots pytest tests/test_ui_screenshots.py -m slow   # keep the PNGs

Skipped when chromium or playwright is missing (`apt-get install -y chromium`, `pip install playwright`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.pop("PREFECT_API_URL", None)  # never talk to a developer's server

from flow_fixtures import make_project, offline_env, record_mlflow_run  # noqa: E402
from logicflow import runs, servers  # noqa: E402
from logicflow.paths import Paths  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SETTLE_MS = 5000  # MLflow keeps polling, so "networkidle" never comes: wait for "load", then this long

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
    ),
]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("LOGICFLOW_SCREENSHOTS") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def page() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1440, "height": 900})
        finally:
            browser.close()


def _look(page, url: str, png: Path, tab: str | None = None) -> str:  # noqa: ANN001 - playwright Page
    page.goto(url, wait_until="load")
    page.wait_for_timeout(SETTLE_MS)
    if tab:
        page.get_by_text(tab, exact=True).first.click()
        page.wait_for_timeout(SETTLE_MS // 2)
    page.screenshot(path=str(png), full_page=True)
    assert png.stat().st_size > 20_000, f"{png} looks blank"
    return page.inner_text("body")


def test_prefect_and_mlflow_pages_show_the_run(tmp_path: Path, shots: Path, page, monkeypatch) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    for key, value in offline_env(tmp_path / "cache").items():
        monkeypatch.setenv(key, value)
    paths = Paths.from_root(make_project(tmp_path / "repo", tmp_path / "remote"))
    state = servers.start(paths)
    try:
        mlflow_url = state["mlflow"]["url"]
        client = MlflowClient(tracking_uri=mlflow_url)
        if not paths.mlflow_run_file.exists():  # until train is in the test pipeline
            record_mlflow_run(paths.root, mlflow_url, "logicflow-smoke")
        record = json.loads(paths.mlflow_run_file.read_text())

        result = runs.trigger("full", api_url=state["prefect"]["api_url"], timeout=600, echo=lambda _: None)
        assert result.ok, result.message

        text = _look(page, result.url, shots / "prefect-flow-run.png")
        assert result.name in text and "Completed" in text and "dvc repro data" in text
        text = _look(page, result.url, shots / "prefect-artifacts.png", tab="Artifacts")
        assert "stages" in text and "data-summary" in text
        text = _look(page, f"{state['prefect']['url']}/deployments", shots / "prefect-deployments.png")
        assert "full" in text and "logicflow" in text

        exp = record["experiment_id"]
        text = _look(page, f"{mlflow_url}/#/experiments/{exp}/runs", shots / "mlflow-runs.png")
        assert client.get_run(record["run_id"]).info.run_name in text
        text = _look(
            page, f"{mlflow_url}/#/experiments/{exp}/runs/{record['run_id']}", shots / "mlflow-run.png"
        )
        assert "prefect.flow_run_id" in text and result.flow_run_id in text
    finally:
        servers.stop(paths)
    assert servers.stray_processes(paths) == []
