"""The Prefect flow `logicflow` and its deployments.

Fast: stage planning, param checks, the retry rule, run comparison. Slow (a real Prefect + MLflow server
started by `logicflow.servers` in a temporary project on the smoke profile, plus the deployment server):
`full` triggered through the Prefect client runs all eight stages; the two UIs looked at in headless
chromium; the DVC equivalence both ways; overrides as a DVC experiment; a bad param failing before any
stage; a transient failure retried and a diagnosed one not; Prefect tags on the MLflow run of the train stage.

    LOGICFLOW_SCREENSHOTS=/tmp/shots pytest tests/test_flow.py -m slow   # keep the UI screenshots
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.pop("PREFECT_API_URL", None)  # never talk to a developer's server
os.environ["LOGICFLOW_RETRY_DELAYS"] = "0,0"  # read when flows/pipeline.py is imported

from flow_fixtures import ROOT, git, make_project, offline_env  # noqa: E402
from logicflow import runs, servers  # noqa: E402
from logicflow.errors import ConfigError  # noqa: E402
from logicflow.paths import Paths  # noqa: E402

sys.path.insert(0, str(ROOT / "flows"))
pipeline = importlib.import_module("pipeline")
serve = importlib.import_module("serve")

CANARY = "hf_canary_0d1e2f3a4b5c6d7e8f9a"  # a token the run holds, to look for everywhere afterwards
SETTLE_MS = 5000  # MLflow keeps polling, so "networkidle" never comes: wait for "load", then this long
CHROMIUM_OFFLINE = ("--disable-background-networking", "--disable-component-update", "--no-first-run")


def _dvc_repo(root: Path, dvc_yaml: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    return root


# ------------------------------------------------------------------------------------------------ fast


def test_ran_reads_what_dvc_did() -> None:
    lines = [
        "Stage 'model' didn't change, skipping",
        "Running stage 'data':",
        "> logicflow stage data",
        "Stage 'validate' is cached - skipping run, checking out outputs",
    ]
    assert pipeline._ran(lines) == {
        "model": "up to date",
        "data": "ran",
        "validate": "restored from run-cache",
    }


def test_a_foreach_group_ran_when_any_item_ran() -> None:
    """The study's `compare` group: DVC names its items `compare@lora`...; the run summary names the group."""
    ran = pipeline._ran(
        [
            "Stage 'compare/dvc.yaml:compare@lora' didn't change, skipping",
            "Running stage 'compare/dvc.yaml:compare@dora':",
        ]
    )
    assert pipeline._result(ran, "compare/dvc.yaml:compare") == "ran"
    assert pipeline._result(ran, "compare/dvc.yaml:compare-report") == "up to date"  # not an item of it


def test_plan_follows_the_dependency_graph(tmp_path: Path) -> None:
    # listed out of order in dvc.yaml: `second` reads what `first` writes
    root = _dvc_repo(
        tmp_path / "repo",
        {
            "stages": {
                "second": {"cmd": "cp a.txt b.txt", "deps": ["a.txt"], "outs": ["b.txt"]},
                "first": {"cmd": "echo hi > a.txt", "outs": ["a.txt"]},
                "other": {"cmd": "echo x > c.txt", "outs": ["c.txt"]},
            }
        },
    )
    assert pipeline.plan.fn(root, None) == ["first", "second", "other"]
    assert pipeline.plan.fn(root, ["second", "first"]) == ["first", "second"]
    with pytest.raises(ValueError, match="unknown stage.*trian.*dvc.yaml has: first, second, other"):
        pipeline.plan.fn(root, ["trian"])


def test_check_params_maps_overrides_onto_the_profile(tmp_path: Path) -> None:
    from prefect.logging import disable_run_logger

    root = tmp_path
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = "smoke"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with disable_run_logger():
        check = pipeline.check_params.fn
        assert check(root, None, {}) == [] and check(root, "smoke", {}) == []
        assert check(root, "cpu", {}) == ["profile=cpu"]
        assert check(root, None, {"lora.r": 8, "eval.tasks": ["logicflow_math_heldout"]}) == [
            "profiles.smoke.lora.r=8",
            'profiles.smoke.eval.tasks=["logicflow_math_heldout"]',
        ]
        with pytest.raises(ConfigError, match="lora.rank"):
            check(root, None, {"lora.rank": 8})
        with pytest.raises(ConfigError, match="lora.r"):
            check(root, None, {"lora.r": 0})
        with pytest.raises(ConfigError, match="unknown profile 'nope'"):
            check(root, "nope", {})
        with pytest.raises(ValueError, match="section.key"):
            check(root, None, {"nosuch.x": 1})
        for key, value in (("publish.repo_id", "someone/else"), ("publish.private", False)):
            with pytest.raises(ConfigError, match=f"override '{key}': a flow run cannot change"):
                check(root, None, {key: value})


def test_publish_overrides_need_the_operators_consent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.logging import disable_run_logger

    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.setenv(pipeline.ALLOW_PUBLISH_OVERRIDES, "1")
    with disable_run_logger():
        settings = pipeline.check_params.fn(tmp_path, None, {"publish.targets": ["local"]})
    assert settings == ['profiles.cpu.publish.targets=["local"]']


def test_retry_rule_spares_diagnosed_errors() -> None:
    class State:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def result(self) -> None:
            raise self.exc

    assert pipeline._transient(None, None, State(pipeline.StageFailed("boom", user_error=False)))
    assert not pipeline._transient(None, None, State(pipeline.StageFailed("bad rows", user_error=True)))
    assert pipeline._transient(None, None, State(ConnectionError("hub")))
    assert {"model", "data", "publish"} <= pipeline.NETWORK_STAGES
    assert pipeline.reproduce_with_retries.retries == 2 and pipeline.reproduce.retries == 0


def test_json_reports_render_as_tables() -> None:
    report = {
        "passed": True,
        "reasons": ["overlong", "dup|e"],
        "rows": {"clean": 40, "quarantined": 2},
        "datasets": {"openo1": {"clean": 20, "dup": {"exact": 1}}, "openthoughts": {"clean": 20}},
    }
    md = pipeline._md_section("Validation", report)
    assert "| passed | True |" in md and r"dup\|e" in md
    assert "## rows" in md and "| clean | 40 |" in md
    assert (
        "| datasets | clean | dup.exact |" in md
        and "| openo1 | 20 | 1 |" in md
        and "| openthoughts | 20 |  |" in md
    )


def test_deployments_follow_dvc_yaml(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"model": {}, "data": {}, "card": {}}}))
    found = {d.name: d.parameters for d in serve.deployments(tmp_path)}
    assert found == {"full": {}, "data": {"stages": ["model", "data"]}, "evaluate": {"stages": ["card"]}}
    (tmp_path / "compare").mkdir()
    (tmp_path / "compare" / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"compare": {}}}))
    found = {d.name: d.parameters for d in serve.deployments(tmp_path)}
    assert found["compare"] == {"pipeline": "compare/dvc.yaml"}  # the study: its own pipeline


def test_plan_reads_the_study_pipeline_apart_after_the_stages_it_needs(tmp_path: Path) -> None:
    """The main pipeline never includes the study; the study's plan starts with the main stages whose outputs
    it reads (a fresh clone has none), then its own."""
    root = _dvc_repo(tmp_path / "repo", {"stages": {"first": {"cmd": "echo hi > a.txt", "outs": ["a.txt"]}}})
    (root / "study").mkdir()
    study = {
        "report": {"cmd": "cat m.txt > r.txt", "deps": ["m.txt"], "outs": ["r.txt"]},
        "method": {"cmd": "cp ../a.txt m.txt", "deps": ["../a.txt"], "outs": ["m.txt"]},
    }
    (root / "study" / "dvc.yaml").write_text(yaml.safe_dump({"stages": study}))
    assert pipeline.plan.fn(root, None) == ["first"]  # the main pipeline never includes the study
    assert pipeline.plan.fn(root, None, "study/dvc.yaml") == [
        "first",
        "study/dvc.yaml:method",
        "study/dvc.yaml:report",
    ]
    assert pipeline.plan.fn(root, ["report"], "study/dvc.yaml") == ["first", "study/dvc.yaml:report"]
    assert pipeline.target("study/dvc.yaml", "method") == "study/dvc.yaml:method"
    assert pipeline.target("dvc.yaml", "first") == "first"


def test_compare_runs_shows_differing_params_and_metrics(tmp_path: Path) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("logicflow-smoke", artifact_location=(tmp_path / "art").as_uri())
    for r, acc in ((4, 0.25), (16, 0.5)):
        with mlflow.start_run(experiment_id=experiment, run_name=f"r{r}"):
            mlflow.log_params({"lora.r": r, "train.learning_rate": 3e-4})
            mlflow.log_metrics(
                {"eval/logicflow_math_heldout/tuned": acc, "train/loss": 1 / r, "system/cpu": 9}
            )
            mlflow.set_tag("prefect.flow_run_name", f"run-{r}")
    found = runs.compare_runs(uri, "logicflow-smoke")
    assert [r["name"] for r in found["runs"]] == ["r16", "r4"]
    assert found["params"] == {"lora.r": ["16", "4"]}
    assert found["metrics"] == {
        "eval/logicflow_math_heldout/tuned": [0.5, 0.25],
        "train/loss": [0.0625, 0.25],
    }
    text = runs.format_comparison(found)
    assert "lora.r" in text and "run-16" in text and "0.0625" in text and "learning_rate" not in text
    assert "train.learning_rate" in runs.compare_runs(uri, "logicflow-smoke", all_params=True)["params"]
    with pytest.raises(Exception, match="no runs in MLflow experiment 'nope'"):
        runs.compare_runs(uri, "nope")


def test_compare_runs_reads_the_store_the_stages_write_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """$MLFLOW_TRACKING_URI wins over params `tracking.uri` for the stages (tracking.resolve_tracking_uri), so
    `logicflow compare-runs` must read that store too, not the one params name."""
    import mlflow

    from logicflow.cli import main

    used, other = f"sqlite:///{tmp_path / 'used.db'}", f"sqlite:///{tmp_path / 'other.db'}"
    mlflow.set_tracking_uri(used)
    experiment = mlflow.create_experiment("logicflow-smoke", artifact_location=(tmp_path / "art").as_uri())
    for r in (4, 16):
        with mlflow.start_run(experiment_id=experiment, run_name=f"r{r}"):
            mlflow.log_params({"lora.r": r})
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", used)
    argv = ["compare-runs", "--root", str(tmp_path), "--profile", "smoke", "--set", f"tracking.uri={other}"]
    assert main([*argv, "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["r16", "r4"]


def test_cli_turns_set_into_overrides() -> None:
    from logicflow.config import parse_override
    from logicflow.tracking import flatten

    assert flatten(parse_override("lora.r=8")) == {"lora.r": 8}
    assert flatten(parse_override("eval.tasks=[a, b]")) == {"eval.tasks": ["a", "b"]}


# ------------------------------------------------------------------------------------------------ slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Paths, dict[str, Any]]]:
    """A temporary project with `logicflow up` running (Prefect, MLflow, deployments)."""
    base = tmp_path_factory.mktemp("flow")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in offline_env(base / "cache").items():
            mp.setenv(key, value)
        mp.setenv("HF_TOKEN", CANARY)  # must not end up in any output (test_no_secret_reaches_any_output)
        root = make_project(base / "repo", base / "remote")
        paths = Paths.from_root(root)
        state = servers.start(paths)
        try:
            yield paths, state
        finally:
            servers.stop(paths)
            assert servers.stray_processes(paths) == []


def _trigger(state: dict[str, Any], deployment: str = "full", **params: Any) -> runs.RunResult:
    lines: list[str] = []
    api = state["prefect"]["api_url"]
    result = runs.trigger(deployment, params, api_url=api, timeout=400, echo=lines.append)
    print("\n".join(lines))
    return result


def _flush_prefect() -> None:
    """Send this process's buffered flow-run logs and events while the server still runs."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)


def _stages(result: runs.RunResult) -> dict[str, str]:
    return {row["stage"]: row["result"] for row in result.stages}


def _dvc(root: Path, *args: str) -> str:
    """A DVC command as a user runs it (in the project, one at a time)."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _reproduce(root: Path) -> list[str]:
    """`dvc repro`: the stages it ran."""
    return sorted(re.findall(r"Running stage '([^']+)'", _dvc(root, "repro")))


def _pipeline(root: Path) -> list[str]:
    """The stages in the test project's dvc.yaml, in order."""
    return list(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])


def _dvc_status_clean(root: Path, pipeline: str = "dvc.yaml") -> bool:
    """`dvc status` of one pipeline: without a target DVC also reports compare/dvc.yaml, the study."""
    return "Data and pipelines are up to date." in _dvc(root, "status", pipeline)


@pytest.fixture(scope="module")
def full_run(served: tuple[Paths, dict[str, Any]]) -> runs.RunResult:
    """`prefect deployment run logicflow/full` on the fresh project: every stage runs once."""
    _, state = served
    result = _trigger(state)
    assert result.ok, result.message
    return result


@pytest.fixture
def page() -> Iterator:
    """Headless Debian chromium driven by playwright (`make test` installs chromium when it is missing)."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "chromium not found: `make browser` installs Debian's chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", *CHROMIUM_OFFLINE])
        try:
            yield browser.new_page(viewport={"width": 1440, "height": 900})
        finally:
            browser.close()


def _look(page, url: str, png: Path, tab: str | None = None) -> str:  # noqa: ANN001 - playwright Page
    """Open `url` (and a tab on it) as a person would, save a screenshot, return the page's text."""
    page.goto(url, wait_until="load")
    page.wait_for_timeout(SETTLE_MS)
    if tab:
        page.get_by_text(tab, exact=True).first.click()
        page.wait_for_timeout(SETTLE_MS // 2)
    page.screenshot(path=str(png), full_page=True)
    assert png.stat().st_size > 20_000, f"{png} looks blank"
    return page.inner_text("body")


@pytest.mark.slow
def test_prefect_and_mlflow_pages_show_the_run(
    served: tuple[Paths, dict[str, Any]],
    full_run: runs.RunResult,
    page,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    """The two UIs after the run, in a browser: the flow run with its stages and artifacts, the deployment,
    the MLflow runs table and the run with its Prefect lineage tag. Screenshots are kept in
    $LOGICFLOW_SCREENSHOTS when set."""
    from mlflow import MlflowClient

    paths, state = served
    shots = Path(os.environ.get("LOGICFLOW_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    record = json.loads(paths.mlflow_run_file.read_text())
    mlflow_url = state["mlflow"]["url"]

    text = _look(page, full_run.url, shots / "prefect-flow-run.png")
    assert full_run.name in text and "Completed" in text and "dvc repro data" in text
    text = _look(page, full_run.url, shots / "prefect-artifacts.png", tab="Artifacts")
    assert "stages" in text and "data-summary" in text
    text = _look(page, f"{state['prefect']['url']}/deployments", shots / "prefect-deployments.png")
    assert "full" in text and "logicflow" in text

    exp = record["experiment_id"]
    text = _look(page, f"{mlflow_url}/#/experiments/{exp}/runs", shots / "mlflow-runs.png")
    assert MlflowClient(tracking_uri=mlflow_url).get_run(record["run_id"]).info.run_name in text
    text = _look(page, f"{mlflow_url}/#/experiments/{exp}/runs/{record['run_id']}", shots / "mlflow-run.png")
    assert "prefect.flow_run_id" in text and full_run.flow_run_id in text


@pytest.mark.slow
def test_full_deployment_run_equals_dvc_repro(
    served: tuple[Paths, dict[str, Any]], full_run: runs.RunResult
) -> None:
    """Every stage through the served deployment: the card and the published model come out, the MLflow
    run the train stage opened carries the Prefect lineage, outputs are pushed, and DVC agrees both ways."""
    from mlflow import MlflowClient
    from transformers import AutoModelForCausalLM, AutoTokenizer

    paths, state = served
    root = paths.root
    assert _stages(full_run) == {stage: "ran" for stage in _pipeline(root)}
    assert _pipeline(root) == ["model", "data", "validate", "train", "evaluate", "export", "card", "publish"]
    assert {"stages", "data-summary", "mlflow-run"} <= set(full_run.artifacts)

    record = json.loads(paths.mlflow_run_file.read_text())
    client = MlflowClient(tracking_uri=state["mlflow"]["url"])
    logged = client.get_run(record["run_id"])
    assert (
        f"#/experiments/{record['experiment_id']}/runs/{record['run_id']}" in full_run.artifacts["mlflow-run"]
    )
    assert logged.data.tags["prefect.flow_run_id"] == full_run.flow_run_id
    assert logged.data.tags["prefect.flow_run_url"] == full_run.url
    assert logged.data.tags["prefect.deployment"] == "full"
    assert "loss" in logged.data.metrics and any(k.startswith("eval/") for k in logged.data.metrics)
    assert {d.dataset.name for d in logged.inputs.dataset_inputs}
    assert any((base := Path(root).parent / "remote").rglob("*")), f"nothing pushed to {base}"

    card = paths.card.readme.read_text()
    assert card.startswith("---\n") and "model-index:" in card and "logicflow_math_heldout" in card
    tokenizer = AutoTokenizer.from_pretrained(paths.publish_dir)
    model = AutoModelForCausalLM.from_pretrained(paths.publish_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    # `dvc metrics show` / `dvc exp show` compare the flat headline numbers only, not the detailed reports
    import dvc.api

    flat = json.loads(paths.run_metrics.read_text())
    assert "gate" in flat and "logicflow_math_heldout.p" in flat
    assert len(dvc.api.metrics_show(repo=str(root))) == len(flat)

    # after the deployment run, DVC has nothing to do
    assert _dvc_status_clean(root)
    assert _reproduce(root) == []

    # after `dvc repro` of a change, the deployment run skips every stage
    params = yaml.safe_load(paths.params.read_text())
    params["profiles"]["smoke"]["card"]["license"] = "mit"
    paths.params.write_text(yaml.safe_dump(params, sort_keys=False))
    assert _reproduce(root) == ["card", "publish"]
    assert "license: mit" in paths.card.readme.read_text()
    again = _trigger(state)
    assert again.ok and _stages(again) == {stage: "up to date" for stage in _pipeline(root)}
    assert client.get_run(record["run_id"]).data.tags["prefect.flow_run_id"] == full_run.flow_run_id
    summary = runs.summary(paths, again, state)
    assert "model: up to date, data: up to date" in summary and state["mlflow"]["url"] in summary


@pytest.mark.slow
def test_flow_run_log_holds_a_few_lines_per_progress_bar(
    served: tuple[Paths, dict[str, Any]], full_run: runs.RunResult
) -> None:
    """The stages' tqdm bars (train, generation) reach the flow-run log once per 10% or minute, not once
    per redraw."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from logicflow.progress import PERCENT, bar_name

    _, state = served
    with (
        temporary_settings({PREFECT_API_URL: state["prefect"]["api_url"]}),
        get_client(sync_client=True) as api,
    ):
        only_this_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[full_run.flow_run_id]))
        logs, page = [], None
        while page is None or len(page) == 200:  # the API serves at most 200 per request
            page = api.read_logs(log_filter=only_this_run, limit=200, offset=len(logs))
            logs += page
    bars, repeats = set(), []
    last: dict[str, tuple[str, float]] = {}  # bar -> its last line's tens of percent and time
    for log in sorted(logs, key=lambda log: log.timestamp):
        if match := PERCENT.search(log.message):
            bar, at, tens = bar_name(log.message), log.timestamp.timestamp(), match[1].zfill(3)[:-1]
            before = last.get(bar)
            if before and before[0] == tens and at - before[1] < 59:
                repeats.append(log.message)  # same 10% step again within a minute: a redraw got through
            bars.add(bar)
            last[bar] = (tens, at)
    assert bars, "no progress bar reached the flow-run log"
    assert repeats == []


def readme_use_it_lines() -> list[str]:
    """The shell lines of the README's "Use it" section, verbatim."""
    section = (ROOT / "README.md").read_text().split("## Use it", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.*?)```", section, re.DOTALL)[1].strip().splitlines()


@pytest.mark.slow
def test_readme_use_it_lines_work_in_a_new_shell(
    served: tuple[Paths, dict[str, Any]], full_run: runs.RunResult
) -> None:
    """After a run, a shell that never saw the venv (PATH without it, no server URLs) runs the README's
    "Use it" lines verbatim: `dvc repro` has nothing to do and the deployment run completes; and
    `.venv/bin/dvc repro -f` of a stage, without sourcing anything, runs it (the stage finds its CLI)."""
    paths, _ = served
    root = paths.root
    venv = root / ".venv"
    venv.symlink_to(ROOT / ".venv")  # a checkout's own venv, as `make setup` leaves it
    try:
        _use_it_in_a_new_shell(paths)
    finally:
        venv.unlink()


def _use_it_in_a_new_shell(paths: Paths) -> None:
    root = paths.root
    bare = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ["HOME"],
        "LOGICFLOW_CACHE": str(root.parent / "cache"),
    }
    bare |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    lines = readme_use_it_lines()
    assert lines[0] == "source .logicflow/env" and (root / ".logicflow" / "env").is_file()
    shell = subprocess.run(
        ["bash", "-c", "set -e\n" + "\n".join(lines)], cwd=root, env=bare, capture_output=True, text=True
    )
    assert shell.returncode == 0, shell.stdout + shell.stderr
    assert "Data and pipelines are up to date." in shell.stdout
    assert "Flow run finished successfully in 'Completed'" in shell.stdout + shell.stderr

    forced = subprocess.run(
        [".venv/bin/dvc", "repro", "-f", "--single-item", "data"],
        cwd=root,
        env=bare,
        capture_output=True,
        text=True,
    )
    assert forced.returncode == 0 and "Running stage 'data'" in forced.stdout, forced.stdout + forced.stderr
    assert (paths.messages("train")).is_file() and _dvc_status_clean(root)


@pytest.mark.slow
def test_compare_deployment_runs_the_study_and_dvc_agrees(
    served: tuple[Paths, dict[str, Any]], full_run: runs.RunResult
) -> None:
    """`prefect deployment run logicflow/compare` reproduces compare/dvc.yaml (the smoke profile's two
    methods, then the report) on the main pipeline's data and base; afterwards DVC has nothing to do there,
    and each method's MLflow run is nested under the study's."""
    from mlflow import MlflowClient

    paths, state = served
    result = _trigger(state, "compare")
    assert result.ok, result.message
    study = ["compare", "compare-distill", "compare-report"]  # distill: not in smoke's methods, says so
    needed = {stage: "up to date" for stage in ("model", "data", "validate")}  # the study's base and data
    assert _stages(result) == needed | {f"compare/dvc.yaml:{stage}": "ran" for stage in study}
    card = paths.compare_reports.card.read_text()
    assert "**lora**" in card and "**ia3**" in card and "compare-study" in result.artifacts
    assert _dvc_status_clean(paths.root, "compare/dvc.yaml")
    assert _reproduce(paths.root) == []  # the main pipeline is untouched by the study
    client = MlflowClient(state["mlflow"]["url"])
    experiment = client.get_experiment_by_name("logicflow-smoke")
    found = client.search_runs([experiment.experiment_id], "tags.`logicflow.study` = 'compare'")
    children = client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{found[0].info.run_id}'"
    )
    assert sorted(r.info.run_name for r in children) == ["ia3-smoke", "lora-smoke"]


@pytest.mark.slow
@pytest.mark.faults
def test_no_secret_reaches_any_output(
    served: tuple[Paths, dict[str, Any]],
    full_run: runs.RunResult,
    reliability,  # noqa: ANN001
) -> None:
    """T11: the run held HF_TOKEN (a canary) from start to end; afterwards no byte of any file it wrote holds
    it: data, models, reports, card, published folder, DVC cache and remote, Prefect's database and logs,
    MLflow's database and artifacts."""
    paths, _ = served
    places = [paths.root, paths.root.parent / "remote"]
    files = [f for place in places for f in place.rglob("*") if f.is_file() and ".git" not in f.parts]
    leaked = [str(f) for f in files if CANARY.encode() in f.read_bytes()]
    reliability(
        row="T11",
        fault="a canary HF_TOKEN in the environment of a full deployment run",
        outcome="found in no file: data, models, reports, card, publish/, DVC cache+remote, Prefect, MLflow",
        files_searched=len(files),
        files_with_canary=len(leaked),
    )
    assert {".logicflow/prefect/prefect.db", ".logicflow/mlflow.db", "card/README.md"} <= {
        str(f.relative_to(paths.root)) for f in files if paths.root in f.parents
    }
    assert leaked == []


@pytest.mark.slow
def test_overrides_run_as_a_dvc_experiment(
    served: tuple[Paths, dict[str, Any]], full_run: runs.RunResult
) -> None:
    paths, state = served
    root = paths.root
    git(root, "add", "-A")
    git(root, "commit", "-qm", "state before the experiment")
    before = paths.params.read_bytes(), paths.dvc_lock.read_bytes()

    result = _trigger(state, overrides={"card.license": "apache-2.0"})
    assert result.ok, result.message
    assert _stages(result) == {stage: "up to date" for stage in _pipeline(root)[:6]} | {
        "card": "ran",
        "publish": "ran",
    }
    assert "experiment" in result.artifacts
    name = f"full-{result.name}"
    assert git(root, "for-each-ref", "--format=%(refname)", "refs/exps/").rstrip().endswith(f"/{name}")
    # the workspace (params.yaml, dvc.lock, outputs) is untouched and still up to date
    assert (paths.params.read_bytes(), paths.dvc_lock.read_bytes()) == before
    assert _dvc_status_clean(root)
    shown = json.dumps(json.loads(_dvc(root, "exp", "show", "--json")))
    assert name in shown and '"license": "apache-2.0"' in shown


@pytest.mark.slow
def test_bad_params_fail_before_any_stage(served: tuple[Paths, dict[str, Any]]) -> None:
    _, state = served
    result = _trigger(state, overrides={"lora.r": 0})
    assert result.state == "FAILED"
    assert result.stages == []  # no stage ran
    assert "lora.r: Input should be greater than 0" in result.message  # for the bad param


@pytest.mark.slow
def test_a_preflight_problem_fails_the_run_before_any_stage(
    served: tuple[Paths, dict[str, Any]], full_run: runs.RunResult
) -> None:
    """Preflight is the run's first task: a batch no machine could hold (the model is known once fetched)
    stops the run with preflight's line, and no stage starts."""
    _, state = served
    result = _trigger(state, overrides={"train.batch_size": 10_000_000})
    assert result.state == "FAILED" and result.stages == []
    assert "problem  memory: training needs about" in result.message and "fix:" in result.message


@pytest.mark.slow
def test_transient_failure_is_retried_and_diagnosed_one_is_not(
    served: tuple[Paths, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process flow runs against the served Prefect: a stage that crashes once (like a dropped Hub
    connection) succeeds on retry; one that reports a LogicFlowError fails at once."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _, state = served
    flaky = (
        "import pathlib, sys\n"
        "n = pathlib.Path('attempts'); k = int(n.read_text()) + 1 if n.exists() else 1\n"
        "n.write_text(str(k))\n"
        "if k == 1: sys.exit('ConnectionError: huggingface.co unreachable')\n"
        "pathlib.Path('model.txt').write_text('ok')\n"
    )
    root = _dvc_repo(
        tmp_path / "retry",
        {
            "stages": {
                "model": {"cmd": "python flaky.py", "deps": ["flaky.py"], "outs": ["model.txt"]},
                "data": {
                    "cmd": "python -c \"print('logicflow: error: 3 malformed rows'); exit(1)\"",
                    "deps": ["model.txt"],
                    "outs": ["rows.txt"],
                },
            }
        },
    )
    (root / "flaky.py").write_text(flaky)
    monkeypatch.setenv("LOGICFLOW_ROOT", str(root))
    with temporary_settings(updates={PREFECT_API_URL: state["prefect"]["api_url"]}):
        assert pipeline.logicflow(stages=["model"], push_outputs=False) == {"model": "ran"}
        assert (root / "attempts").read_text() == "2"
        with pytest.raises(pipeline.StageFailed, match="3 malformed rows") as err:
            pipeline.logicflow(stages=["data"], push_outputs=False)
        _flush_prefect()
    assert err.value.user_error


@pytest.mark.slow
@pytest.mark.faults
def test_serve_killed_during_train_resumes_without_duplicates(
    served: tuple[Paths, dict[str, Any]],
    full_run: runs.RunResult,
    reliability,  # noqa: ANN001
) -> None:
    """T14: the deployment runner dies mid-`train` (SIGKILL to it and every process under it, as when its
    machine goes); `logicflow up` restarts it and a re-triggered `full` skips the finished stages, resumes
    training from its checkpoint in the same MLflow run, and registers exactly one model version."""
    import psutil
    from mlflow import MlflowClient

    from logicflow.training import checkpoints

    paths, state = served
    params = yaml.safe_load(paths.params.read_text())
    smoke = params["profiles"]["smoke"]
    smoke["train"].update(max_steps=24, save_steps=4)  # long enough to be killed in the middle
    smoke["publish"]["targets"] = ["local", "mlflow"]
    paths.params.write_text(yaml.safe_dump(params, sort_keys=False))
    earlier = checkpoints.read_state(paths.checkpoints)
    runs.trigger("full", api_url=state["prefect"]["api_url"], wait=False, echo=print)
    deadline = time.monotonic() + 300
    while True:  # this run's training has written a checkpoint
        now = checkpoints.read_state(paths.checkpoints)
        fresh = now is not None and now != earlier and not now.completed
        if fresh and checkpoints.complete_checkpoints(paths.checkpoints):
            break
        assert time.monotonic() < deadline, "training never checkpointed"
        time.sleep(0.05)
    killed_run = now.mlflow_run_id
    serve = psutil.Process(state["serve"]["pid"])
    for process in [serve, *serve.children(recursive=True)]:
        process.kill()
    psutil.wait_procs([serve], timeout=30)
    assert not checkpoints.read_state(paths.checkpoints).completed  # killed before training finished

    restarted = servers.start(paths)
    assert restarted["serve"]["pid"] != state["serve"]["pid"]
    again = _trigger(restarted)
    assert again.ok, again.message
    stages = _stages(again)
    assert {stages[s] for s in ("model", "data", "validate")} == {"up to date"} and stages["train"] == "ran"
    record = json.loads(paths.mlflow_run_file.read_text())
    assert record["run_id"] == killed_run  # training continued the killed run ...
    resumed_at = json.loads(paths.train_reports.metrics.read_text())["resumed_from_step"]
    assert resumed_at and resumed_at % 4 == 0  # ... from the checkpoint it had written
    client = MlflowClient(restarted["mlflow"]["url"])
    versions = client.search_model_versions(f"name = 'logicflow-smoke' and run_id = '{killed_run}'")
    assert len(versions) == 1
    assert _stages(_trigger(restarted)) == {stage: "up to date" for stage in _pipeline(paths.root)}
    assert len(client.search_model_versions(f"name = 'logicflow-smoke' and run_id = '{killed_run}'")) == 1
    reliability(
        row="T14",
        fault="SIGKILL of the Prefect serve process and its flow run during `train`",
        outcome="restart + re-trigger: finished stages skipped, training resumed in the same MLflow run, "
        "one registry version",
        registry_versions=len(versions),
        resumed_from_step=resumed_at,
    )
