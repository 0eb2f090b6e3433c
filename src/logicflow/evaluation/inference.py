"""Inference cost of a model folder, measured the same way for base and merged-tuned.

    cost = measure(Path("models/merged"), template="chatml", max_batch_size=16, threads=2,
                   adapter_dir=Path("models/adapter"))
    cost["latency_p50_s"], cost["tokens_per_s_best_batch"], cost["peak_rss_mb"]

Each model is measured in a fresh child process (`python -m logicflow.evaluation.inference`), so the peak
resident memory is that model's alone. The child generates greedily with Hugging Face `generate`, a fixed
number of new tokens (end-of-sequence ignored, so a chattier model is not charged for talking more):
- time to first token p50/p95 (prefill + one token) and latency p50/p95, one request at a time over a fixed
  set of chat prompts;
- tokens/s at batch 1, at batch 8, and at the best batch size among 1, 4, 8, ... up to `max_batch_size`;
- peak RSS of the child after everything else, then after one prefill at the profile's context length
  (`train.cutoff_len`: the prompt length the model was tuned for) with its KV cache;
- weights size = the folder's `*.safetensors`; adapter size = the adapter folder's.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from logicflow.errors import EvaluationError

logger = logging.getLogger(__name__)

PROMPTS = (
    "What is 17 + 25?",
    "Name three primary colours.",
    "Write a Python function that returns the square of a number.",
    "Explain in one sentence why ice floats on water.",
    "Solve for x: 3x - 7 = 11.",
    "Give a synonym for the word 'quick'.",
)
NEW_TOKENS = 16
THROUGHPUT_BATCH = 8  # tokens/s is also reported at this batch size, whatever the best one is
CHILD_TIMEOUT_S = 600


def folder_bytes(folder: Path, pattern: str = "*.safetensors") -> int | None:
    files = list(folder.glob(pattern)) if folder.is_dir() else []
    return sum(f.stat().st_size for f in files) if files else None


def batch_sizes(max_batch_size: int) -> list[int]:
    sizes, size = [1], 4
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    if max_batch_size > 1:
        sizes.append(max_batch_size)
    return sorted(set(sizes))


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100.0
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def measure(
    model_dir: Path,
    *,
    template: str,
    max_batch_size: int,
    threads: int,
    context_len: int,
    adapter_dir: Path | None = None,
    new_tokens: int = NEW_TOKENS,
) -> dict[str, Any]:
    """Cost figures for `model_dir` (see module docstring), measured in a child process."""
    args = {
        "model_dir": str(model_dir),
        "template": template,
        "batch_sizes": sorted({*batch_sizes(max_batch_size), THROUGHPUT_BATCH}),
        "threads": threads,
        "new_tokens": new_tokens,
        "context_len": context_len,
    }
    with tempfile.TemporaryDirectory(prefix="logicflow-cost-") as tmp:
        out = Path(tmp) / "cost.json"
        cmd = [sys.executable, "-m", "logicflow.evaluation.inference", json.dumps(args), str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False
        )
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise EvaluationError(f"inference cost measurement of {model_dir} failed: {' | '.join(tail)}")
        cost = json.loads(out.read_text())
    cost["weights_bytes"] = folder_bytes(model_dir)
    if adapter_dir is not None:
        cost["adapter_bytes"] = folder_bytes(adapter_dir)
    return cost


def _measure_here(
    model_dir: Path, template: str, sizes: list[int], threads: int, new_tokens: int, context_len: int
) -> dict[str, Any]:
    import resource

    import torch

    from logicflow.evaluation.harness import device_and_dtype
    from logicflow.model import load_causal_lm, load_tokenizer

    torch.set_num_threads(threads)
    device, dtype = device_and_dtype()
    model = load_causal_lm(model_dir, dtype=dtype).to(device).eval()
    tok = load_tokenizer(model_dir, template=template)
    tok.padding_side = "left"
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in PROMPTS
    ]

    def generate(batch: list[str], tokens: int = new_tokens) -> float:
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        return timed(enc, tokens)

    def timed(enc: Any, tokens: int) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                **enc,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    generate(texts[:1])  # warm-up: first-call allocations and kernel selection
    first_token = [generate([text], tokens=1) for text in texts]
    latencies = [generate([text]) for text in texts]
    rates = {1: len(texts) * new_tokens / sum(latencies)}
    for size in sizes:
        if size > 1:
            batch = [texts[i % len(texts)] for i in range(size)]
            rates[size] = size * new_tokens / generate(batch)
    best = max(rates, key=lambda s: rates[s])
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    long_prompt = {"input_ids": torch.ones((1, context_len), dtype=torch.long, device=device)}
    long_prompt["attention_mask"] = torch.ones_like(long_prompt["input_ids"])
    prefill_s = timed(long_prompt, 1)  # one prefill at the context length, KV cache included
    return {
        "ttft_p50_s": round(percentile(first_token, 50), 4),
        "ttft_p95_s": round(percentile(first_token, 95), 4),
        "latency_p50_s": round(percentile(latencies, 50), 4),
        "latency_p95_s": round(percentile(latencies, 95), 4),
        "tokens_per_s_batch1": round(rates[1], 2),
        f"tokens_per_s_batch{THROUGHPUT_BATCH}": round(rates[THROUGHPUT_BATCH], 2),
        "best_batch_size": best,
        "tokens_per_s_best_batch": round(rates[best], 2),
        "tokens_per_s_by_batch": {str(k): round(v, 2) for k, v in sorted(rates.items())},
        "peak_rss_mb": round(rss_mb, 1),
        "context_len": context_len,
        "ttft_at_context_s": round(prefill_s, 3),
        "peak_rss_at_context_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None,
        "settings": {
            "load_avg_1m": round(os.getloadavg()[0], 2),  # other work on the machine while measuring
            "prompts": len(texts),
            "new_tokens": new_tokens,
            "threads": threads,
            "device": device,
            "dtype": dtype,
            "decoding": "greedy, HF generate",
        },
    }


def main(argv: list[str]) -> int:
    args, out = json.loads(argv[0]), Path(argv[1])
    result = _measure_here(
        Path(args["model_dir"]),
        args["template"],
        args["batch_sizes"],
        args["threads"],
        args["new_tokens"],
        args["context_len"],
    )
    out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
