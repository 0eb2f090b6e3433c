"""Train-stage benchmark: our `train` stage vs a plain TRL SFTTrainer script, side by side in one run.

    python benchmarks/bench_train.py                # SmolLM2-135M, LoRA r 8 all-linear, batch 4, 20 steps
    python benchmarks/bench_train.py --model logicflow/tiny-random-llama --steps 6 --threads 1   # smoke check
    python benchmarks/bench_train.py --set train.packing=true      # the GPU plan below, on a GPU box
    python benchmarks/bench_train.py --json reports/bench/train.json   # also prints it as its last line

Same model, same rows (chat rows of 80–500 tokens, exactly one pass: steps x batch rows), same hyperparameters
(LoRA r/alpha/dropout, all-linear, lr, cosine, batch, cutoff, fp32 on CPU, assistant-only loss with the same
chat template), same number of optimizer steps. Each side runs in its own subprocess (a clean peak RSS);
sides alternate when --repeats > 1. Per side:
- tokens/s: non-padding tokens of the training batches / the trainer's `train_runtime` (one formula, both);
- peak RSS of the process; padding fraction of the training batches;
- final train loss, and held-out loss: token-weighted NLL of the trained adapter on held-out rows, computed
  by the same function for both sides, so "equal loss" compares like with like.

What the stage does differently, and why (profiled with cProfile/torch.profiler on SmolLM2-135M, 2 threads):
1. TRL 1.16's fused LM head scores only labelled positions on Triton devices (CUDA/XPU); on CPU it projects
   **every** position (prompt and padding too) and folds each [4096 x vocab-chunk] tile in fp32 torch ops,
   computing entropy and top-1 as it goes: ~47% of the plain script's step. The stage's compact head
   (logicflow/training/compact_head.py) projects the labelled positions only, as one matmul, then computes
   loss, top-1 and the logits' gradient in one chunked pass (`mean_nll`: one exp per logit, no fp32 copy),
   with the same loss and gradients (tests/test_train_units.py).
2. On a CPU with AVX512-BF16/AMX, `train.precision: auto` trains in bf16 autocast over fp32 master weights:
   bf16 GEMMs measured ~2.3x fp32 here (350-365 vs 140-165 GFLOP/s). The plain script stays fp32 (the
   earlier 1.0x for `bf16=True` was measured with the fused head, whose tiles run in fp32 on CPU).
3. Padding: the forward/backward matmuls scale with the padded batch (`batch x longest row`). Random
   batches of 4 rows of 80-500 tokens are ~25% padding; the stage's LengthGroupedShuffledSampler
   (training/trainer.py) makes each step's rows similar in length, keeping the data order random: padding
   falls to a few percent.

GPU plan (what a GPU run verifies with this script; each is a params switch, no code change):
1. Padding-free packing, `--set train.packing=true`: TRL best-fit-decreasing packing, rows flattened with
   per-row position_ids. With flash-attention-2 installed the stage loads it for bf16/fp16, and varlen kernels
   attend within rows only (cu_seq_lens from the collator): 0% padding, no cross-row attention compute.
   Correct masks are proven on CPU by tests/test_train.py::test_padding_free_rows_do_not_attend_to_each_other
   (sdpa builds the block-diagonal mask; on CPU that mask still costs dense attention, hence grouping there).
2. Flash attention + bf16 (`train.precision: auto` picks bf16 on GPUs that have it).
3. Liger-style fused kernels (RMSNorm, SwiGLU, RoPE) via Hub kernels (`use_kernels=True`, TRL's replacement
   for the deprecated `use_liger_kernel`); fused linear cross-entropy is already TRL's fused LM head.
Expected on an H100 with packing + flash attention: padding 0%, several x tokens/s over padded sdpa batches.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SIDES = ("plain", "ours", "ours-fp32")
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


# ----------------------------------------------------------------------------------------- data


def make_rows(tokenizer: Any, n: int, seed: int, low: int = 80, high: int = 500) -> list[dict[str, Any]]:
    """Reasoning rows whose rendered length (chat template, thinking included) is uniform in [low, high]."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        target = rng.randint(low, high)
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        question = f"A shop sells pencils in boxes of {a}. A school buys {b} boxes. How many pencils is that?"
        answer = f"The school buys {a * b} pencils.\n\nThe answer is \\boxed{{{a * b}}}."
        steps, k = [], 0
        while True:
            k += 1
            steps.append(
                f"Step {k}: {a} x {b % (k + 9)} = {a * (b % (k + 9))}; keep it and check the total again."
            )
            row = {
                "id": f"bench-{seed}-{i}",
                "source": "bench",
                "thinking": "\n".join(steps),
                "answer": str(a * b),
                "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            }
            if _length(tokenizer, row) >= target or k > 60:
                break
        rows.append(row)
    return rows


def _messages(row: dict[str, Any]) -> list[dict[str, str]]:
    messages = [dict(m) for m in row["messages"]]
    messages[-1]["thinking"] = row["thinking"]
    return messages


def _length(tokenizer: Any, row: dict[str, Any]) -> int:
    return len(tokenizer.apply_chat_template(_messages(row), tokenize=True, return_dict=True)["input_ids"])


def write_workspace(ws: Path, model_id: str, steps: int, batch: int, heldout: int) -> None:
    """params.yaml, models/base, data/clean/{train,validation}.parquet: the inputs both sides read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from logicflow.config import load_config
    from logicflow.model import load_tokenizer, resolve
    from logicflow.paths import Paths

    ws.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "params.yaml", ws / "params.yaml")
    paths = Paths.from_root(ws)
    resolve(load_config(paths.params, overrides=[f"model.id={model_id}"]).model, paths)
    tok = load_tokenizer(paths.base_model, template="chatml")
    paths.clean_dir.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", steps * batch, 1), ("validation", heldout, 2)):
        pq.write_table(pa.Table.from_pylist(make_rows(tok, n, seed)), paths.clean(split))


def read_rows(ws: Path, split: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(ws / "data" / "clean" / f"{split}.parquet").to_pylist()


# ----------------------------------------------------------------------------------------- sides


def heldout_loss(base_dir: Path, adapter_dir: Path, rows: list[dict[str, Any]]) -> float:
    """Token-weighted NLL of base + adapter on the assistant tokens of `rows` (identical for both sides)."""
    import torch
    from peft import PeftModel

    from logicflow.model import load_causal_lm, load_tokenizer

    tok = load_tokenizer(base_dir, template="chatml")
    model = PeftModel.from_pretrained(load_causal_lm(base_dir), adapter_dir).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            out = tok.apply_chat_template(
                _messages(row), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
            )
            ids = torch.tensor([out["input_ids"]])
            labels = torch.where(torch.tensor([out["assistant_masks"]]) == 1, ids, -100)
            logits = model(input_ids=ids).logits[:, :-1]
            target = labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += float(nll)
            count += int((target != -100).sum())
    return total / count


def run_plain(ws: Path, hp: dict[str, Any]) -> dict[str, Any]:
    """The baseline: a plain TRL SFTTrainer script with the same hyperparameters (random batches)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from logicflow.model import load_tokenizer

    base = ws / "models" / "base"
    tok = load_tokenizer(base, template="chatml")  # same template: generation markers for assistant-only loss
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    dataset = Dataset.from_list([{"messages": _messages(r)} for r in read_rows(ws, "train")])
    out_dir = ws / "plain"
    args = SFTConfig(
        output_dir=str(out_dir),
        max_steps=hp["steps"],
        per_device_train_batch_size=hp["batch"],
        learning_rate=hp["lr"],
        lr_scheduler_type="cosine",
        warmup_steps=0,
        max_grad_norm=1.0,
        weight_decay=0.0,
        max_length=hp["cutoff"],
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=False,
        assistant_only_loss=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=42,
        optim="adamw_torch",
        disable_tqdm=True,
    )
    peft = LoraConfig(
        r=hp["r"],
        lora_alpha=hp["alpha"],
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tok, peft_config=peft
    )
    counter = _Counter(trainer.data_collator)  # instrumentation only: counts real vs padded slots
    trainer.data_collator = counter
    output = trainer.train()
    trainer.save_model(str(out_dir / "adapter"))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "train_tokens": counter.real,
        "train_runtime_s": output.metrics["train_runtime"],
        "padding_fraction": 1 - counter.real / counter.slots,
        "final_train_loss": losses[-1],
        "adapter": str(out_dir / "adapter"),
        "steps": trainer.state.global_step,
    }


class _Counter:
    def __init__(self, collator: Any) -> None:
        self.collator, self.real, self.slots = collator, 0, 0

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        self.real += int(batch["attention_mask"].sum())
        self.slots += int(batch["attention_mask"].numel())
        return batch


def run_ours(ws: Path, hp: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    """The train stage itself (MLflow into a throwaway sqlite store, no checkpoints or evals mid-run)."""
    from logicflow.config import load_config
    from logicflow.paths import Paths
    from logicflow.stages.train import run

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{ws / 'ours-mlflow' / 'mlflow.db'}"
    (ws / "ours-mlflow").mkdir(exist_ok=True)
    paths = Paths.from_root(ws)
    overrides = [
        f"model.id={hp['model']}",
        f"train.max_steps={hp['steps']}",
        f"train.batch_size={hp['batch']}",
        f"train.learning_rate={hp['lr']}",
        f"train.cutoff_len={hp['cutoff']}",
        "train.warmup_steps=0",
        "train.lr_scheduler=cosine",
        "train.grad_accum=1",
        "train.precision=auto",
        f"train.save_steps={hp['steps'] + 1}",
        f"train.eval_steps={hp['steps'] + 1}",
        "train.gradient_checkpointing=false",
        f"lora.r={hp['r']}",
        f"lora.alpha={hp['alpha']}",
        "lora.dropout=0.0",
        "lora.target_modules=all-linear",
        "tracking.experiment=bench-train",
        *extra,
    ]
    cfg = load_config(paths.params, profile="cpu", overrides=overrides)
    started = time.perf_counter()
    result = run(cfg, paths)
    metrics = json.loads((paths.train_reports.metrics).read_text())
    return {
        "train_tokens": metrics["train_tokens"],
        "train_runtime_s": metrics["train_runtime_s"],
        "padding_fraction": metrics["padding_fraction"],
        "final_train_loss": metrics["train_loss"],
        "adapter": str(paths.adapter),
        "steps": result.global_step,
        "stage_wall_s": round(time.perf_counter() - started, 1),
        "stage_tokens_per_s": metrics["tokens_per_s"],
    }


def side(name: str, ws: Path, hp: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    """One side, in this (fresh) process; prints one JSON line."""
    import torch

    if hp["threads"]:
        torch.set_num_threads(hp["threads"])
    load_before = os.getloadavg()[0]
    if name == "plain":
        result = run_plain(ws, hp)
    else:  # ours-fp32: the stage in fp32, the reference for "equal loss" at mixed precision
        result = run_ours(ws, hp, [*extra, "train.precision=fp32"] if name == "ours-fp32" else extra)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["tokens_per_s"] = round(result["train_tokens"] / result["train_runtime_s"], 1)
    result["heldout_loss"] = round(
        heldout_loss(ws / "models" / "base", Path(result["adapter"]), read_rows(ws, "validation")), 4
    )
    result["load_avg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["threads"] = torch.get_num_threads()
    return result


# ----------------------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--cutoff", type=int, default=512)
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--alpha", type=int, default=16)
    parser.add_argument("--heldout", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per side (0 = torch default)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="extra param override for our stage only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--sides", default=",".join(SIDES), help=f"comma-separated subset of {', '.join(SIDES)}"
    )
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    hp = {k: getattr(args, k) for k in ("model", "steps", "batch", "lr", "cutoff", "r", "alpha", "threads")}
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    if args.side:  # child process
        print("BENCH " + json.dumps(side(args.side, args.workspace, hp, args.set)), flush=True)
        return 0

    unknown = set(args.sides.split(",")) - set(SIDES)
    if unknown:
        parser.error(f"--sides: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SIDES)}")
    sides = [name for name in SIDES if name in args.sides.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        ws = Path(tmp)
        write_workspace(ws, args.model, args.steps, args.batch, args.heldout)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        for _ in range(args.repeats):
            for name in sides:
                cmd = [
                    sys.executable,
                    __file__,
                    "--side",
                    name,
                    "--workspace",
                    str(ws),
                    *[f"--{k}={v}" for k, v in hp.items()],
                    *[f"--set={s}" for s in args.set],
                ]
                done = subprocess.run(cmd, capture_output=True, text=True)
                line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
                if done.returncode != 0 or line is None:
                    print(done.stderr[-4000:], file=sys.stderr)
                    return 1
                results[name].append(json.loads(line.removeprefix("BENCH ")))
                shutil.rmtree(ws / "checkpoints", ignore_errors=True)
    report = summarize(hp, args.set, results)
    print(json.dumps(report))  # one line, the last: `make bench` (benchmarks/run_all.py) reads it
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def summarize(
    hp: dict[str, Any], extra: list[str], results: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    def best(name: str) -> dict[str, Any]:  # the fastest repeat: least disturbed by other load
        return max(results[name], key=lambda r: r["tokens_per_s"])

    report: dict[str, Any] = {"hyperparameters": hp, "our_overrides": extra}
    report["rows"] = hp["steps"] * hp["batch"]
    report.update({name: best(name) for name in results})
    report["all_runs"] = results
    for other in ("plain", "ours-fp32"):  # ours against the plain script, and against our own fp32 run
        if "ours" in results and other in results:
            ours, ref = best("ours"), best(other)
            report[f"speedup_vs_{other}"] = round(ours["tokens_per_s"] / ref["tokens_per_s"], 3)
            report[f"heldout_loss_rel_diff_vs_{other}"] = round(
                abs(ours["heldout_loss"] - ref["heldout_loss"]) / ref["heldout_loss"], 4
            )
    headline = ("speedup_vs_plain", "heldout_loss_rel_diff_vs_ours-fp32", "speedup_vs_ours-fp32")
    report["headline"] = (
        {"bench": "train"}
        | {f"{name}_tokens_per_s": best(name)["tokens_per_s"] for name in results}
        | {key: report[key] for key in headline if key in report}
    )
    return report


if __name__ == "__main__":
    sys.exit(main())
