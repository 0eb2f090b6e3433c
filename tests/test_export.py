"""Stage `export`: GGUF files of the merged model, written with the `gguf` package, read back by the `gguf`
reader and by `transformers`, answering like the merged model at f16; q4_k_m is reported, not faked."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from logicflow.config import load_config
from logicflow.paths import Paths
from logicflow.stages import export
from publish_fixtures import shared_models, write_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    models = shared_models(tmp_path_factory)
    paths = write_run(tmp_path_factory.mktemp("export") / "project", models)
    paths.heldout_math.parent.mkdir(parents=True, exist_ok=True)
    paths.heldout_math.write_text(
        json.dumps({"id": "h-0", "question": "What is 12 + 30?", "answer": "42"}) + "\n"
    )
    cfg = load_config(ROOT / "params.yaml", "smoke", ["publish.gguf=[f16, q8_0, q4_k_m]"])
    result = export.run(cfg, paths)
    assert result.exported == ["f16", "q8_0"] and "llama.cpp" in result.not_exported["q4_k_m"]
    return paths


def test_each_file_reads_back_with_the_models_shape_and_tokenizer(exported: Paths) -> None:
    config = json.loads((exported.merged / "config.json").read_text())
    for name, kind in (("model-f16.gguf", "F16"), ("model-q8_0.gguf", "Q8_0")):
        reader = gguf.GGUFReader(exported.gguf_dir / name)
        fields = {
            key: field.contents() for key, field in reader.fields.items() if key != "tokenizer.ggml.merges"
        }
        assert fields["general.architecture"] == "llama"
        assert fields["llama.block_count"] == config["num_hidden_layers"]
        assert len(fields["tokenizer.ggml.tokens"]) == config["vocab_size"]
        assert fields["tokenizer.ggml.eos_token_id"] == config["eos_token_id"]
        types = {t.name: t.tensor_type.name for t in reader.tensors}
        assert types["blk.0.attn_norm.weight"] == "F32"  # norms stay f32
        assert kind in set(types.values())


def test_f16_computes_what_the_merged_model_computes(exported: Paths) -> None:
    """The logits, not only the greedy answer: q/k permuted to llama.cpp's rotary layout and back."""
    merged = AutoModelForCausalLM.from_pretrained(exported.merged, dtype=torch.float32).eval()
    loaded = AutoModelForCausalLM.from_pretrained(
        exported.gguf_dir, gguf_file="model-f16.gguf", dtype=torch.float32
    )
    tokens = torch.tensor([[1, 7, 19, 42, 3, 11]])
    with torch.no_grad():
        expected, got = merged(tokens).logits.numpy(), loaded.eval()(tokens).logits.numpy()
    np.testing.assert_allclose(got, expected, atol=2e-2)


def test_the_report_and_the_card_and_the_published_repo_carry_the_files(exported: Paths) -> None:
    from logicflow.stages import card, publish

    report = json.loads(exported.gguf_report.read_text())["gguf"]
    rows = {row["type"]: row for row in report}
    assert rows["f16"]["same_greedy_answer"] is True and rows["f16"]["bytes"] > rows["q8_0"]["bytes"]
    assert rows["q4_k_m"]["file"] is None and rows["q4_k_m"]["reason"]
    cfg = load_config(ROOT / "params.yaml", "smoke", ["publish.gguf=[f16, q8_0, q4_k_m]"])
    card.run(cfg, exported)
    text = exported.card.readme.read_text()
    assert "## GGUF (llama.cpp, Ollama)" in text and "| q4_k_m | not exported |" in text
    publish.run(cfg, exported)
    published = {p.name for p in (exported.publish_dir / "gguf").iterdir()}
    assert published == {"model-f16.gguf", "model-q8_0.gguf"}
