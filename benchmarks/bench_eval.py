"""Eval throughput: the evaluate stage's LogicFlowLM vs lm-eval's HF backend at its fastest batch size.

    python benchmarks/bench_eval.py               # SmolLM2 (models/base, else fetched), cpu-profile settings
    python benchmarks/bench_eval.py --limit 8 --max-new-tokens 64     # quicker
    python benchmarks/bench_eval.py --model /tmp/tiny --out bench.json

Both sides run the same offline tasks in one lm-eval call (same rendered tasks, prompts, chat template, limit,
seed, generation budget, CPU threads) on the same in-memory model; only the LM object differs:
- `lm-eval HF, batch B`: `HFLM(pretrained=model, tokenizer=tok, batch_size=B)` for each B of --hflm-batches
  (default 1, 8, 16, 32, 64: what a user of lm-eval would try, up to ours); the fastest is the baseline;
- `LogicFlowLM, batch N`: the stage's continuous-batching greedy decoder (`evaluation.harness`) at the stage's
  batch size (params.yaml's `eval.batch_size`). HFLM batches each group of requests with the same generation
  settings apart (each task here), so a batch beyond one task's requests does not help it; LogicFlowLM decodes
  every task's requests in one stream.
Generated tokens are counted the same way for both (the tokens of each raw response), so tokens/s compare
like for like. Wall time is noisy on a shared machine; the process CPU time is reported beside it. The
scores must be identical; per-sample output agreement is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def heldout_fixture(root: Path, rows: int) -> None:
    """The generator's held-out split, as the data stage writes it (used when data/heldout is missing)."""
    from logicflow.datasets.generator import generate

    target = root / "data" / "heldout" / "math.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        "".join(
            json.dumps({"id": p.id, "question": p.question, "answer": p.answer, "kind": p.kind}) + "\n"
            for p in generate(rows, seed=0, split="heldout")
        )
    )


def run_side(
    label: str, lm: Any, tokenizer: Any, tasks: list[Any], manager: Any, limit: int, seed: int
) -> dict[str, Any]:
    """All tasks in one lm-eval call (as `lm_eval --tasks a,b,c` and the evaluate stage run them)."""
    from logicflow.evaluation.harness import TaskSpec, run_tasks

    wall, cpu = time.perf_counter(), cpu_seconds()
    specs = [TaskSpec(task.name, task.lm_eval_name, limit) for task in tasks]
    runs = run_tasks(lm, specs, manager, seed=seed)
    scores = {run.task: {metric: m.value for metric, m in run.metrics.items()} for run in runs}
    outputs = {run.task: [s["resps"][0][0] for s in run.samples] for run in runs}
    texts = [text for task_outputs in outputs.values() for text in task_outputs]
    tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    print(
        f"{label}: {tokens} tokens in {wall:.1f} s wall ({tokens / wall:.1f} tok/s), {cpu:.1f} s CPU",
        file=sys.stderr,
    )
    return {
        "label": label,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
        "tokens_per_cpu_s": round(tokens / cpu, 2),
        "scores": scores,
        "outputs": outputs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", type=Path, default=None, help="default: models/base, else params.yaml's model fetched"
    )
    parser.add_argument("--tasks", default="logicflow_math_heldout,humaneval,ifeval")
    parser.add_argument("--limit", type=int, default=16, help="samples per task")
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="LogicFlowLM batch (default: params.yaml's eval.batch_size)",
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: evaluate's choice)"
    )
    parser.add_argument("--template", default="chatml")
    parser.add_argument(
        "--dtype", default="float32", help="both sides' weights: float32 | bfloat16 (the stage's on AMX CPUs)"
    )
    parser.add_argument(
        "--hflm-batches", default="1,8,16,32,64", help="HFLM batch sizes to try; the fastest is the baseline"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    args = parser.parse_args(argv)

    import torch
    from lm_eval.tasks import TaskManager

    from logicflow.config import EvalConfig, load_config
    from logicflow.evaluation.harness import make_lm, pick_threads
    from logicflow.evaluation.punkt import ensure_punkt_tab
    from logicflow.evaluation.tasks import RenderSettings, get_task, render_tasks
    from logicflow.model import load_causal_lm, load_tokenizer, resolve
    from logicflow.paths import Paths

    config = load_config(ROOT / "params.yaml")
    args.batch_size = args.batch_size or config.eval.batch_size
    threads = args.threads or pick_threads()
    torch.set_num_threads(threads)
    ensure_punkt_tab()
    tasks = [get_task(name) for name in args.tasks.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        paths = Paths.from_root(ROOT)
        if not paths.heldout_math.exists():
            paths = Paths.from_root(tmp)
            heldout_fixture(paths.root, max(args.limit, 8))
        include = render_tasks(
            [t.name for t in tasks],
            RenderSettings({t.name: args.max_new_tokens for t in tasks}, EvalConfig().sandbox_settings()),
            paths,
            Path(tmp) / "tasks",
        )
        manager = TaskManager(include_path=str(include), include_defaults=False)
        if args.model is None:  # as the model stage would make it, without touching this project's outputs
            args.model = Paths.from_root(ROOT).base_model
            if not list(args.model.glob("*.safetensors")):
                args.model = Paths.from_root(tmp).base_model
                resolve(config.model, Paths.from_root(tmp))
        model = load_causal_lm(args.model, args.dtype).eval()
        tokenizer = load_tokenizer(args.model, template=args.template)
        # untimed warm-up: dataset caches, lazy imports, the sandbox's isolation probe
        run_side(
            "warm-up",
            make_lm(model, tokenizer, batch_size=1, sample_timeout_s=600, compact=False),
            tokenizer,
            tasks,
            manager,
            1,
            args.seed,
        )
        ours = run_side(
            f"LogicFlowLM, batch {args.batch_size}",
            make_lm(model, tokenizer, batch_size=args.batch_size, sample_timeout_s=600),
            tokenizer,
            tasks,
            manager,
            args.limit,
            args.seed,
        )
        hflm = [
            run_side(
                f"lm-eval HF, batch {batch}",
                make_lm(model, tokenizer, batch_size=batch, sample_timeout_s=600, compact=False),
                tokenizer,
                tasks,
                manager,
                args.limit,
                args.seed,
            )
            for batch in (int(b) for b in args.hflm_batches.split(","))
        ]
    baseline = max(hflm, key=lambda side: side["tokens_per_s"])

    same = {
        task: sum(a == b for a, b in zip(ours["outputs"][task], baseline["outputs"][task], strict=True))
        for task in ours["outputs"]
    }
    total = {task: len(outputs) for task, outputs in ours["outputs"].items()}
    result = {
        "model": str(args.model),
        "tasks": args.tasks.split(","),
        "limit": args.limit,
        "max_new_tokens": args.max_new_tokens,
        "threads": threads,
        "dtype": args.dtype,
        "sides": [{k: v for k, v in side.items() if k != "outputs"} for side in (*hflm, ours)],
        "baseline": baseline["label"],
        "speedup_wall": round(baseline["seconds"] / ours["seconds"], 2),
        "speedup_cpu": round(baseline["cpu_seconds"] / ours["cpu_seconds"], 2),
        "scores_identical": ours["scores"] == baseline["scores"],
        "identical_outputs": {task: f"{same[task]}/{total[task]}" for task in same},
    }
    result["headline"] = {
        "bench": "eval",
        "dtype": args.dtype,
        "ours_tokens_per_s": ours["tokens_per_s"],
        "baseline": baseline["label"],
        "baseline_tokens_per_s": baseline["tokens_per_s"],
        **{k: result[k] for k in ("speedup_wall", "scores_identical", "identical_outputs")},
    }
    lines = [
        "| side | generated tokens | wall s | tok/s (wall) | CPU s | tok/CPU s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for side in (*hflm, ours):
        lines.append(
            f"| {side['label']} | {side['generated_tokens']} | {side['seconds']} | {side['tokens_per_s']} "
            f"| {side['cpu_seconds']} | {side['tokens_per_cpu_s']} |"
        )
    lines.append(
        f"\nspeed-up vs {baseline['label']} (the fastest HFLM): {result['speedup_wall']}x wall, "
        f"{result['speedup_cpu']}x CPU; scores identical: "
        f"{result['scores_identical']}; identical outputs: {result['identical_outputs']}"
    )
    for task, metrics in baseline["scores"].items():
        lines.append(
            f"- {task}: "
            + ", ".join(
                f"{m} {v:.4f} vs {ours['scores'][task].get(m, float('nan')):.4f}" for m, v in metrics.items()
            )
        )
    print("\n".join(lines))
    print(json.dumps(result))  # one line, the last: `make bench` (benchmarks/run_all.py) reads it
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["scores_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
