"""Train stage failure paths: each user-caused problem is one clear error, raised before the slow work."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from logicflow.errors import TrackingError, TrainingError
from logicflow.stages.train import run
from logicflow.training import checkpoints
from logicflow.training import trainer as build
from train_fixtures import config, make_project, tracking_env

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        yield tracking_env(mp, tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the model is where the long work starts: a guard must fire before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the guard fired")

    monkeypatch.setattr(build, "load_model", refuse)


def test_missing_clean_data_names_the_stage_to_run(mlflow_uri: str, tmp_path: Path, no_model_load) -> None:
    paths = make_project(tmp_path / "p")
    paths.clean("train").unlink()
    with pytest.raises(TrainingError, match=r"train\.parquet not found; run `logicflow stage validate`"):
        run(config(paths), paths)


def test_too_few_rows_for_one_step(mlflow_uri: str, tmp_path: Path, no_model_load) -> None:
    paths = make_project(tmp_path / "p", n_train=3)
    with pytest.raises(TrainingError, match=r"3 training row\(s\) is not enough for one optimizer step.*= 8"):
        run(config(paths, "train.grad_accum=2"), paths)


def test_cutoff_below_the_prompt_length(mlflow_uri: str, tmp_path: Path, no_model_load) -> None:
    paths = make_project(tmp_path / "p")
    with pytest.raises(
        TrainingError, match=r"train\.cutoff_len=40 is below the prompt length of 32 train row"
    ):
        run(config(paths, "train.cutoff_len=40"), paths)


def test_unreachable_tracking_server(
    mlflow_uri: str, tmp_path: Path, no_model_load, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    paths = make_project(tmp_path / "p")
    with pytest.raises(TrackingError, match=rf"MLflow tracking server {uri} is unreachable"):
        run(config(paths), paths)


def test_unknown_target_module_lists_the_real_ones(mlflow_uri: str, tmp_path: Path) -> None:
    paths = make_project(tmp_path / "p")
    with pytest.raises(
        TrainingError, match=r"lora\.target_modules: qkv_proj not found in LlamaForCausalLM.*q_proj"
    ):
        run(config(paths, "lora.target_modules=[q_proj, qkv_proj]"), paths)


def test_nan_loss_stops_with_step_and_last_good_checkpoint(
    mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedding turns NaN at the 6th training forward: checkpoints 2 and 4 are good, 6 is never saved."""
    original = build.load_model

    def poisoned(*args, **kwargs):
        model = original(*args, **kwargs)
        calls = {"n": 0}

        def hook(module, inputs, output):
            if module.training:
                calls["n"] += 1
                if calls["n"] >= 6:
                    return output * float("nan")
            return output

        model.get_input_embeddings().register_forward_hook(hook)
        return model

    monkeypatch.setattr(build, "load_model", poisoned)
    paths = make_project(tmp_path / "p")
    cfg = config(paths, "train.save_steps=2", "train.max_steps=10", "train.save_total_limit=5")
    with pytest.raises(TrainingError) as err:
        run(cfg, paths)
    message = str(err.value)
    assert "training stopped at step 6: loss=nan is not finite" in message
    assert f"last good checkpoint: {paths.checkpoints / 'checkpoint-4'}" in message
    assert [p.name for p in checkpoints.complete_checkpoints(paths.checkpoints)] == [
        "checkpoint-2",
        "checkpoint-4",
    ]
    assert not (paths.train_reports.metrics).exists() and not paths.adapter.exists()

    from mlflow import MlflowClient

    run_id = checkpoints.read_state(paths.checkpoints).mlflow_run_id
    assert MlflowClient(mlflow_uri).get_run(run_id).info.status == "FAILED"


def test_failed_run_keeps_previous_outputs(
    mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that fails at the merge check leaves the last good adapter, merged model and reports."""
    from logicflow.training import merge

    paths = make_project(tmp_path / "p")
    cfg = config(paths, "train.max_steps=2", "train.eval_steps=100")
    run(cfg, paths)
    before = {
        p: p.read_bytes()
        for p in [
            paths.adapter / "adapter_model.safetensors",
            paths.train_reports.metrics,
            paths.mlflow_run_file,
        ]
    }

    def broken(*args, **kwargs):
        raise TrainingError("merged model disagrees with base + adapter (simulated)")

    monkeypatch.setattr(merge, "write_merged", broken)
    with pytest.raises(TrainingError, match="simulated"):
        run(config(paths, "train.max_steps=3", "train.eval_steps=100"), paths)
    assert {p: p.read_bytes() for p in before} == before
    assert json.loads((paths.train_reports.metrics).read_text())["global_step"] == 2
