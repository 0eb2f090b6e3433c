"""GGUF files of the merged model for llama.cpp and Ollama (`publish.gguf`), each checked against the model.

    results = export_gguf(paths.merged, out_dir, ["f16", "q8_0"], prompt_ids)

The writer is the `gguf` package's (the one llama.cpp's own converter uses): llama-architecture models
(SmolLM2, Llama 3, the tiny test model) with a BPE tokenizer, metadata and tensor names as llama.cpp reads
them (q/k projections permuted to its rotary layout). Types: `f16`, and the block quantizations the package
writes in Python, `q8_0` and `q4_0`. `q4_k_m` needs llama.cpp's C++ quantizer, which no wheel ships, so it
is reported as not exported with that reason, never faked.

Each file is checked by loading it back with `transformers` (which reads GGUF and dequantizes it) and
answering a prompt greedily: at f16 the answer must equal the merged model's, token for token; for the
quantized types whether it does is recorded.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from logicflow.atomic import atomic_file
from logicflow.errors import PublishError

logger = logging.getLogger(__name__)

NOT_EXPORTABLE = {
    "q4_k_m": "needs llama.cpp's C++ quantizer (llama-quantize), which no PyPI wheel ships here"
}
CHECK_NEW_TOKENS = 24
GGML_TYPES = {
    "f16": gguf.GGMLQuantizationType.F16,
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
    "q4_0": gguf.GGMLQuantizationType.Q4_0,
}
FILE_TYPES = {
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
}
EXPORTABLE = (*GGML_TYPES, *NOT_EXPORTABLE)


@dataclass(frozen=True)
class GGUFResult:
    type: str
    file: str | None  # the file name, None when not exported
    bytes: int | None
    same_greedy_answer: bool | None  # as the merged model, on the check prompt
    seconds: float | None
    reason: str | None = None  # why it was not exported

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_gguf(model_dir: Path, out_dir: Path, types: list[str], prompt_ids: list[int]) -> list[GGUFResult]:
    """Write `<out_dir>/model-<type>.gguf` for each exportable type and check it (see module docstring)."""
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "llama":
        reason = f"model_type {config.get('model_type')!r}: only llama-architecture models are exported"
        return [GGUFResult(t, None, None, None, None, reason) for t in types]
    reference = _greedy_answer(model_dir, prompt_ids)
    results = []
    for qtype in types:
        if qtype in NOT_EXPORTABLE:
            results.append(GGUFResult(qtype, None, None, None, None, NOT_EXPORTABLE[qtype]))
            continue
        start = time.monotonic()
        target = out_dir / f"model-{qtype}.gguf"
        with atomic_file(target) as tmp:
            _write(model_dir, config, tmp, qtype)
        same = _greedy_answer(out_dir, prompt_ids, gguf_file=target.name) == reference
        if qtype == "f16" and not same:
            raise PublishError(
                f"{target}: answers differently from the merged model at f16; the export is wrong"
            )
        seconds = time.monotonic() - start
        logger.info(
            "gguf: %s %.1f MB, same greedy answer: %s (%.0f s)",
            target.name,
            target.stat().st_size / 1e6,
            same,
            seconds,
        )
        results.append(GGUFResult(qtype, target.name, target.stat().st_size, same, round(seconds, 1)))
    return results


def _write(model_dir: Path, config: dict[str, Any], target: Path, qtype: str) -> None:
    from safetensors.torch import load_file

    writer = gguf.GGUFWriter(str(target), "llama")
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config.get("rope_parameters") or {}
    writer.add_name(model_dir.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(FILE_TYPES[qtype])
    _add_tokenizer(writer, model_dir, config)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    weights: dict[str, Any] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        weights.update(load_file(str(file)))
    for hf_name, tensor in weights.items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise PublishError(f"{model_dir}: no GGUF name for tensor {hf_name}")
        data = tensor.float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, kv_heads)
        _add_tensor(writer, name, data, qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_tensor(writer: Any, name: str, data: np.ndarray, qtype: str) -> None:
    """Norms stay f32; a matrix whose rows do not split into the type's blocks falls back to f16 (as
    llama.cpp's converter does)."""
    if data.ndim == 1:
        writer.add_tensor(name, data.astype(np.float32))
        return
    ggml_type = GGML_TYPES[qtype]
    block = gguf.GGML_QUANT_SIZES[ggml_type][0]
    if ggml_type == gguf.GGMLQuantizationType.F16 or data.shape[-1] % block:
        writer.add_tensor(name, data.astype(np.float16))
        return
    writer.add_tensor(name, gguf.quants.quantize(data, ggml_type), raw_dtype=ggml_type)


def _add_tokenizer(writer: Any, model_dir: Path, config: dict[str, Any]) -> None:
    vocab = gguf.BpeVocab(model_dir)
    tokens, _, types = zip(*vocab.all_tokens(), strict=True)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    padded = config["vocab_size"] - len(tokens)  # embedding rows past the tokenizer's vocabulary
    writer.add_token_list([*tokens, *(f"[PAD{i}]".encode() for i in range(padded))])
    writer.add_token_types([*types, *([gguf.TokenType.UNUSED] * padded)])
    # merges, bos/eos/pad ids and the chat template, from the tokenizer files
    gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=config["vocab_size"]).add_to_gguf(writer)


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotary layout (halves) to llama.cpp's (interleaved pairs), per head: what its converter does."""
    rows = weights.shape[0]
    return (
        weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _greedy_answer(model_dir: Path, prompt_ids: list[int], gguf_file: str | None = None) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    options = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **options).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=CHECK_NEW_TOKENS, do_sample=False)
    return out[0, len(prompt_ids) :].tolist()
