"""The study card: reports/compare/study/README.md, a Markdown page like the model card for the method
comparison (setup, the table, the plots, what each method did, how to reproduce, what it cannot show)."""

from __future__ import annotations

from typing import Any

from logicflow.comparison.report import BASELINE, MethodResult, table
from logicflow.config import Config

METHOD_NOTES = {
    "lora": "LoRA: low-rank updates on the targeted linear layers, merged into the weights.",
    "dora": "DoRA: LoRA with the weight split into magnitude and direction; merged.",
    "ia3": "IA3: learned rescaling of the attention keys/values and the MLP's down projection; merged.",
    "prompt_tuning": "Prompt tuning: learned virtual tokens before the prompt; base weights unchanged.",
    "full": "Full fine-tuning: every weight trained.",
    "prune_lora": "Structured pruning + LoRA: decoder layers dropped by a stated rule, then LoRA recovery.",
    "distill": "Knowledge distillation: LoRA trained on the usual loss mixed with the teacher's logits (KL).",
}


def study_card(cfg: Config, rows: list[MethodResult], results: list[dict[str, Any]]) -> str:
    tasks = list(rows[0].scores)
    n = {task: rows[0].scores[task].n for task in tasks}
    lines = [
        f"# Fine-tuning methods compared on {cfg.model.id}",
        "",
        f"Every method trains `{cfg.model.id}` on the same validated rows (profile `{cfg.profile}`) and is "
        "evaluated by the pipeline's harness against the untouched base on the same items "
        f"(seed {cfg.eval.seed}; {', '.join(f'{t}: n={n[t]}' for t in tasks)}). Scores carry 95% intervals; "
        "each delta is paired (same items, base vs method) with its 95% interval and p-value.",
        "",
        "## Results",
        "",
        table(rows),
        "",
    ]
    for task in tasks:
        lines += [f"![{task} vs trainable parameters]({task}_vs_params.png) "
                  f"![{task} vs train time]({task}_vs_time.png)", ""]  # fmt: skip
    lines += ["## Methods", ""]
    for result in results:
        note = METHOD_NOTES[result["method"]]
        extra = f" Learning rate {result['learning_rate']:g}."
        if "teacher" in result:
            extra += f" Teacher: `{result['teacher']}`."
        if "pruning" in result:
            pruned = result["pruning"]
            extra += (
                f" Rule: {pruned['rule']}; dropped layers {pruned['dropped']} of {pruned['layers_before']} "
                f"(share {pruned['share']})."
            )
        lines.append(f"- **{result['method']}**: {note}{extra}")
    trained = [r for r in rows if r.method != BASELINE]
    lines += [
        "",
        "## Reproduce",
        "",
        "    dvc repro compare/dvc.yaml                        # every method, then this report",
        "    prefect deployment run logicflow/compare          # the same through Prefect",
        "",
        "Each method's MLflow run is nested under the study's parent run; the parent's metrics `compare/*` "
        "(one step per row of the table) are what the MLflow chart view compares.",
        "",
        "## Limitations",
        "",
        f"- {len(trained)} methods, one seed, one base model and one data mix: differences within the "
        "intervals are not evidence either way.",
        "- Train time, tokens/s and peak memory are this machine's; peak memory is the process's peak "
        "resident set on a CPU (accelerator memory on a GPU).",
        "- The learning rate is set per method (`compare.learning_rates`), not tuned per method.",
        "",
    ]
    return "\n".join(lines)
