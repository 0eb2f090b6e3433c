"""The `publish` stage: the local Hub-layout folder, the evaluation gate, bad inputs, and the MLflow registry.

The registry is a real MLflow sqlite store in a temp dir, read back with `MlflowClient`. Hub pushes are in
test_publish_hub.py (against the local Hub-compatible endpoint in hub_server.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import HubServer
from logicflow.config import load_config
from logicflow.errors import LogicFlowError, PublishError
from logicflow.paths import PUBLISH_MANIFEST, Paths
from logicflow.publishing.hub import RetryPolicy
from logicflow.publishing.repo import fingerprint, read_fingerprint
from logicflow.stages import card, publish
from publish_fixtures import mlflow_training_run, shared_models, write_run

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_test_publish_token_0123456789"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_models(tmp_path_factory)


@pytest.fixture(autouse=True)
def quiet_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may fall back to a store in the checkout
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


def _cfg(*overrides: str):
    return load_config(ROOT / "params.yaml", "smoke", list(overrides))


def _ready(root: Path, models: Path, *, passed: bool = True, mlflow: bool = False) -> Paths:
    """A finished run with its card rendered (and, with `mlflow`, a real training run in a sqlite store)."""
    root.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    if mlflow:
        uri, experiment_id, run_id = mlflow_training_run(root)
        kwargs = {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": run_id}
    paths = write_run(root, models, passed=passed, **kwargs)
    card.run(_cfg(), paths)
    return paths


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_local_folder_is_laid_out_like_the_hub_repo_and_loads(tmp_path: Path, models: Path) -> None:
    paths = _ready(tmp_path / "p", models)
    result = publish.run(_cfg(), paths)
    assert result.status == "published" and [t.status for t in result.targets] == ["written"]
    tree = _tree(paths.publish_dir)
    assert sorted(tree) == [
        "README.md",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "adapter/chat_template.jinja",
        "adapter/logicflow_train.json",
        "adapter/tokenizer.json",
        "adapter/tokenizer_config.json",
        "chat_template.jinja",
        "config.json",
        "eval.json",
        "generation_config.json",
        "logicflow.json",
        "logicflow_train.json",
        "loss.png",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "training_params.json",
        "validation_summary.json",
    ]
    assert tree["README.md"] == _tree(paths.card.dir)["README.md"]
    assert tree["eval.json"] == hashlib.sha256(paths.eval_json.read_bytes()).hexdigest()
    assert tree["model.safetensors"] == _tree(paths.merged)["model.safetensors"]
    manifest = json.loads((paths.publish_dir / PUBLISH_MANIFEST).read_text())
    assert (
        manifest["fingerprint"]
        == result.fingerprint
        == fingerprint({k: v for k, v in tree.items() if k != PUBLISH_MANIFEST})
    )
    assert manifest["run"]["run_id"] and manifest["base_model"]["id"] == "logicflow/tiny-random-llama"
    # re-publishing the unchanged model is a no-op
    mtime = (paths.publish_dir / PUBLISH_MANIFEST).stat().st_mtime_ns
    again = publish.run(_cfg(), paths)
    assert again.status == "unchanged" and (paths.publish_dir / PUBLISH_MANIFEST).stat().st_mtime_ns == mtime
    # the card's own usage snippet loads the folder with transformers and chats (fresh interpreter)
    snippet = re.search(
        r"```python\n(from transformers.*?)```", (paths.publish_dir / "README.md").read_text(), re.S
    ).group(1)
    snippet = snippet.replace('"logicflow/LogicFlow-SmolLM2-135M-thinking"', repr(str(paths.publish_dir)))
    out = subprocess.run(
        [sys.executable, "-c", snippet],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]


def test_failed_gate_publishes_nothing_to_the_hub_unless_forced(
    tmp_path: Path, models: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    paths = _ready(tmp_path / "p", models, passed=False)
    with HubServer(TOKEN) as hub:
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        cfg = _cfg("publish.targets=[local, hub]", "publish.repo_id=me/gated")
        with caplog.at_level("WARNING"):
            result = publish.run(cfg, paths)
        assert result.status == "not published" and not result.gate_passed
        assert [(t.target, t.status) for t in result.targets] == [("local", "written"), ("hub", "skipped")]
        assert "ifeval must_not_drop failed: significant drop" in result.targets[1].detail
        assert any("delta -0.3125 (regressed)" in line for line in result.deltas)
        assert "evaluation gate failed" in caplog.text and "delta -0.3125" in caplog.text
        assert hub.requests == []  # not even contacted
        forced = publish.run(cfg, paths, force=True)
        assert forced.status == "published" and forced.forced
        assert [c.title for c in hub.commits("me/gated")][-1].startswith("Publish LogicFlow-SmolLM2")


def test_cli_reports_not_published_and_exits_zero(
    tmp_path: Path, models: Path, capsys: pytest.CaptureFixture
) -> None:
    from logicflow.cli import main

    paths = _ready(tmp_path / "p", models, passed=False)
    (paths.root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    assert main(["stage", "publish", "--root", str(paths.root), "--profile", "smoke"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "not published"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("invalid repo id", r"publish.repo_id 'not a repo' is not a valid Hub repo id"),
        ("missing token", r"the `hub` publish target needs a write token in HF_TOKEN"),
        ("missing eval report", r"reports/eval.json: not found; run the `evaluate` stage"),
        ("truncated weights", r"model.safetensors: not readable as safetensors"),
        ("changed weights", r"weights sha256 \w+ differ from \w+ recorded by train"),
        ("weights that do not load", r"transformers cannot load the model"),
        ("stale card", r"the card is stale or damaged, re-run `dvc repro card`"),
        ("unreachable endpoint", r"Hub http://127.0.0.1:\d+ unreachable or failing after 5 attempts"),
    ],
)
def test_bad_input_is_one_clear_line_and_leaves_published_versions(
    case: str, message: str, tmp_path: Path, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _ready(tmp_path / "p", models)
    publish.run(_cfg(), paths)
    before = _tree(paths.publish_dir)
    overrides = ["publish.targets=[local, hub]"]
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # only the unreachable case gets this far
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    weights = paths.merged / "model.safetensors"
    if case == "invalid repo id":
        overrides.append("publish.repo_id='not a repo'")
    elif case == "missing token":
        monkeypatch.delenv("HF_TOKEN")
    elif case == "missing eval report":
        paths.eval_json.unlink()
    elif case == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif case == "changed weights":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif case == "weights that do not load":
        config = json.loads((paths.merged / "config.json").read_text())
        (paths.merged / "config.json").write_text(json.dumps({**config, "hidden_size": 48}))
    elif case == "unreachable endpoint":  # publish/ is rebuilt from a changed model, then the Hub fails
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{sock.getsockname()[1]}")
        monkeypatch.setattr("logicflow.publishing.hub.RETRY", RetryPolicy(sleep=lambda s: None))
        report = json.loads(paths.eval_json.read_text())
        report["config"]["seed"] = 7
        paths.eval_json.write_text(json.dumps(report))
        card.run(_cfg(), paths)
    elif case == "stale card":
        report = json.loads(paths.eval_json.read_text())
        report["results"][0]["tuned"]["value"] = 0.75
        paths.eval_json.write_text(json.dumps(report))
    if case != "changed weights":
        metrics_file = paths.train_reports.metrics
        from logicflow.model import weights_sha256

        metrics_file.write_text(
            json.dumps(
                {**json.loads(metrics_file.read_text()), "merged_sha256": weights_sha256(paths.merged)}
            )
        )
    with pytest.raises(PublishError, match=message) as err:
        publish.run(_cfg(*overrides), paths)
    assert "\n" not in str(err.value) and TOKEN not in str(err.value)
    assert _tree(paths.publish_dir) == before


def test_mlflow_registry_versions_and_aliases(
    tmp_path: Path, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    paths = _ready(tmp_path / "p", models, mlflow=True)
    run = json.loads(paths.mlflow_run_file.read_text())
    cfg = _cfg("publish.targets=[local, mlflow]", "publish.registered_model_name=logicflow-test")
    client = MlflowClient(tracking_uri=run["tracking_uri"], registry_uri=run["tracking_uri"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run["tracking_uri"])  # for download_artifacts("models:/...")

    first = publish.run(cfg, paths)
    assert first.status == "published" and first.targets[1].status == "registered"
    v1 = client.get_model_version_by_alias("logicflow-test", "candidate")
    assert str(v1.version) == "1" and v1.run_id == run["run_id"]
    assert str(client.get_model_version_by_alias("logicflow-test", "champion").version) == "1"
    assert v1.source == f"runs:/{run['run_id']}/published/{first.fingerprint[:16]}"
    assert v1.tags["logicflow_fingerprint"] == first.fingerprint and v1.tags["logicflow_gate"] == "passed"
    # the registered artifacts are the published folder, downloadable through the alias
    local = Path(
        download_artifacts(artifact_uri="models:/logicflow-test@champion", dst_path=str(tmp_path / "dl"))
    )
    assert _tree(local) == _tree(paths.publish_dir)

    # the same model again: no new version, aliases unchanged
    again = publish.run(cfg, paths)
    assert again.status == "unchanged" and again.targets[1].status == "unchanged"
    assert len(client.search_model_versions("name = 'logicflow-test'")) == 1

    # a new evaluation that fails the gate: a new candidate, the champion stays where it was
    report = json.loads(paths.eval_json.read_text())
    report["gate"] = {
        "result": "failed",
        "rules": [
            {"task": "ifeval", "rule": "must_not_drop", "result": "failed", "detail": "significant drop"}
        ],
    }
    paths.eval_json.write_text(json.dumps(report))
    card.run(cfg, paths)
    failed = publish.run(cfg, paths)
    assert failed.status == "not published" and failed.fingerprint != first.fingerprint
    assert str(client.get_model_version_by_alias("logicflow-test", "candidate").version) == "2"
    assert str(client.get_model_version_by_alias("logicflow-test", "champion").version) == "1"
    assert client.get_model_version("logicflow-test", "2").tags["logicflow_gate"] == "failed"
    # version 1's artifacts are untouched
    assert _tree(
        Path(download_artifacts(artifact_uri="models:/logicflow-test/1", dst_path=str(tmp_path / "v1")))
    ) == _tree(local)


def test_mlflow_target_without_training_run_is_a_clear_error(tmp_path: Path, models: Path) -> None:
    paths = _ready(tmp_path / "p", models)
    paths.mlflow_run_file.unlink()
    with pytest.raises(PublishError, match=r"mlflow_run.json: not found; run the `train` stage"):
        publish.run(_cfg("publish.targets=[local, mlflow]"), paths)
    assert read_fingerprint(paths.publish_dir) is None  # nothing was written


def test_mlflow_unknown_run_is_a_clear_error(tmp_path: Path, models: Path) -> None:
    paths = _ready(tmp_path / "p", models, mlflow=True)
    run = json.loads(paths.mlflow_run_file.read_text())
    paths.mlflow_run_file.write_text(json.dumps({**run, "run_id": "f" * 32}))
    with pytest.raises(LogicFlowError, match=r"MLflow run f+ not found at sqlite:"):
        publish.run(_cfg("publish.targets=[mlflow]"), paths)


def test_full_fine_tune_publishes_without_an_adapter_folder(tmp_path: Path, models: Path) -> None:
    paths = _ready(tmp_path / "p", models)
    manifest = paths.merged / "logicflow_train.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "method": "full"}))
    for file in paths.adapter.iterdir():
        if file.name.startswith("adapter_"):
            file.unlink()
    card.run(_cfg(), paths)
    publish.run(_cfg(), paths)
    assert not (paths.publish_dir / "adapter").exists()
    assert (paths.publish_dir / "logicflow_train.json").is_file()
    # any other method without an adapter is an error
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "method": "lora"}))
    card.run(_cfg(), paths)
    with pytest.raises(PublishError, match="no adapter_config.json"):
        publish.run(_cfg(), paths)
