"""Render `RunData` into a Hugging Face model card and check it before anyone reads it.

The front matter (license, base_model, datasets, tags, pipeline_tag, library_name, model-index) is built by
`huggingface_hub.ModelCardData` + `EvalResult`; the body is `templates/model_card.md.jinja` rendered with
`StrictUndefined`. The output depends only on `RunData`: no clock, no absolute paths, sorted keys, so the
same run files always give a byte-identical card.

    text = render_card(collect(cfg, paths))
    validate_card(text, data.eval)      # PublishError listing every problem
"""

from __future__ import annotations

import importlib.resources
import json
import math
import re
from typing import Any

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from logicflow.errors import PublishError
from logicflow.publishing.card_data import EvalReport, Measurement, RunData

TEMPLATE = "model_card.md.jinja"
PIPELINE_TAG = "text-generation"
LIBRARY_NAME = "transformers"

# task -> (Hub dataset id, pretty name) for the model-index; an unknown task keeps its own name.
TASK_DATASETS: dict[str, tuple[str, str]] = {
    "logicflow_math_heldout": ("logicflow/math-heldout", "LogicFlow held-out math (generated)"),
    "humaneval": ("openai/openai_humaneval", "HumanEval"),
    "ifeval": ("google/IFEval", "IFEval"),
    "gsm8k": ("openai/gsm8k", "GSM8K"),
    "minerva_math": ("EleutherAI/hendrycks_math", "MATH (Minerva prompt)"),
    "mbpp": ("google-research-datasets/mbpp", "MBPP"),
    "aime25": ("math-ai/aime25", "AIME 2025"),
    "gpqa_diamond": ("Idavidrein/gpqa", "GPQA Diamond"),
    "mmlu": ("cais/mmlu", "MMLU"),
    "hellaswag": ("Rowan/hellaswag", "HellaSwag"),
}
SUMMARY_METRICS = (
    ("global_step", "Optimizer steps"),
    ("train_tokens", "Training tokens"),
    ("train_loss", "Final training loss"),
    ("eval_loss", "Final validation loss"),
)
INFERENCE_ROWS = (
    ("latency_p50_s", "latency p50 (s)"),
    ("latency_p95_s", "latency p95 (s)"),
    ("tokens_per_s_batch1", "tokens/s, batch 1"),
    ("best_batch_size", "best batch size"),
    ("tokens_per_s_best_batch", "tokens/s, best batch"),
    ("peak_rss_mb", "peak RSS (MB)"),
    ("weights_bytes", "weights (bytes)"),
    ("adapter_bytes", "adapter (bytes)"),
)
# Text that means "someone forgot to fill this in"; never allowed outside code blocks.
PLACEHOLDERS = ("[More Information Needed]", "{{", "{%", "TODO")
SMALL_SAMPLE = 100


# ---- value formatting (deterministic, one place) ---------------------------------------------------------


def fmt_value(value: Any) -> str:
    """One table cell: numbers compact, bools/None as JSON words, lists as JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    if isinstance(value, str):
        return cell(value)
    return cell(json.dumps(value, sort_keys=True, ensure_ascii=False))


def cell(text: Any) -> str:
    """Escape a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def fmt_metric(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4f}"


def fmt_pm(m: Measurement) -> str:
    if m.value is None:
        return "not measured"
    return fmt_metric(m.value) + ("" if m.stderr is None else f" ± {m.stderr:.4f}")


def fmt_signed(value: float | None) -> str:
    return "not measured" if value is None else f"{value:+.4f}"


def fmt_yesno(value: bool | None) -> str:
    return "not tested" if value is None else ("yes" if value else "no")


def code_or(value: str | None, fallback: str) -> str:
    return f"`{value}`" if value else fallback


def hub_url(repo_id: str) -> str:
    return f"https://huggingface.co/{repo_id}"


def fence_for(text: str) -> str:
    """A backtick fence longer than any backtick run inside `text`."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


# ---- the card ----------------------------------------------------------------------------------------


def eval_results(report: EvalReport) -> list[EvalResult]:
    """One EvalResult per measured (task, metric) of the tuned model; unmeasured ones are left out."""
    results = []
    for r in report.results:
        if r.tuned.value is None:
            continue
        dataset_id, dataset_name = TASK_DATASETS.get(r.task, (r.task, r.task))
        results.append(
            EvalResult(
                task_type=PIPELINE_TAG,
                task_name=r.task,
                dataset_type=dataset_id,
                dataset_name=dataset_name,
                metric_type=r.metric,
                metric_value=r.tuned.value,
                metric_name=r.metric,
            )
        )
    return results


def card_data(d: RunData) -> ModelCardData:
    return ModelCardData(
        language=d.language,
        license=d.license,
        library_name=LIBRARY_NAME,
        base_model=d.base.id,
        datasets=[ds.hub_id for ds in d.datasets],
        tags=d.tags,
        pipeline_tag=PIPELINE_TAG,
        model_name=d.model_name,
        eval_results=eval_results(d.eval) or None,
    )


def limitations(d: RunData) -> list[str]:
    """What the measurements say this model cannot be trusted with."""
    items = []
    for r in d.eval.results:
        if r.regressed:
            sig = {True: "significant", False: "within noise", None: "significance not tested"}[r.significant]
            items.append(
                f"Regressed on {r.task} ({r.metric}): base {fmt_pm(r.base)} → tuned {fmt_pm(r.tuned)}, "
                f"delta {fmt_signed(r.delta)} ({sig})."
            )
    for t in d.eval.not_run:
        items.append(f"Not evaluated on {t.task} ({t.reason}); this card claims nothing about it.")
    sizes = sorted({r.n for r in d.eval.results if isinstance(r.n, int)})
    if sizes and sizes[0] < SMALL_SAMPLE:
        span = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"
        items.append(
            f"Scores come from {span} samples per task, so their standard errors are wide; "
            "a delta within about two standard errors is not evidence of a change."
        )
    if not d.eval.gate.passed:
        items.append(
            "The evaluation gate failed: " + "; ".join(d.eval.gate.reasons or ["no reason recorded"]) + "."
        )
    generated = [ds for ds in d.datasets if _generated(ds.fetched.get("source", d.data_totals.get("source")))]
    if generated:
        items.append(
            "Training rows for "
            + ", ".join(f"{ds.name} ({ds.hub_id})" for ds in generated)
            + " came from LogicFlow's offline generator written in those datasets' schemas, not from the "
            "datasets themselves; the scores say nothing about training on the real data."
        )
    items.append(
        f"It inherits the limitations and biases of its base model {d.base.id}; reasoning traces can "
        "look convincing and still be wrong, so check answers that matter."
    )
    return items


def _generated(source: object) -> bool:
    return any(word in str(source or "").lower() for word in ("offline", "generat", "synthetic"))


def citation(d: RunData) -> str:
    key = re.sub(r"[^a-z0-9]+", "_", d.model_name.lower()).strip("_") or "logicflow"
    note = (
        f"Fine-tuned from {d.base.id}; MLflow run {d.lineage.mlflow_run_id or 'not recorded'}; "
        f"git {d.lineage.git_commit or 'not recorded'}"
    )
    return "\n".join(
        [
            f"@misc{{{key},",
            f"  title        = {{{d.model_name}}},",
            "  author       = {LogicFlow},",
            f"  howpublished = {{\\url{{{hub_url(d.repo_id)}}}}},",
            f"  note         = {{{note}}}",
            "}",
        ]
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(
        value=fmt_value,
        cell=cell,
        pm=fmt_pm,
        signed=fmt_signed,
        yesno=fmt_yesno,
        metric=fmt_metric,
        code_or=code_or,
        measured=lambda v: "not measured" if v is None else fmt_value(v),
    )
    return env


def render_body(d: RunData) -> str:
    source = importlib.resources.files("logicflow.templates").joinpath(TEMPLATE).read_text()
    method = d.method
    template = d.chat_template or ""
    try:
        body = (
            _environment()
            .from_string(source)
            .render(
                d=d,
                hub_url=hub_url,
                method=method or "not recorded",
                method_phrase=f"fine-tuned with {method}" if method else "fine-tuned",
                thinking="<think>" in template,
                summary_metrics=[(k, label) for k, label in SUMMARY_METRICS if k in d.train_metrics],
                inference_rows=_inference_rows(d),
                eval_settings=_settings(d.eval.config),
                max_new_tokens=d.eval.config.get("max_new_tokens", 256),
                fence=fence_for(template),
                limitations=limitations(d),
                citation=citation(d),
            )
        )
    except jinja2.UndefinedError as exc:
        raise PublishError(
            f"card template {TEMPLATE}: {exc}; the run data lacks a value the card needs"
        ) from None
    return re.sub(r"\n{3,}", "\n\n", body).strip() + "\n"


def _settings(config: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {fmt_value(v)}" for k, v in sorted(config.items())) or "not recorded"


def _inference_rows(d: RunData) -> list[tuple[str, str]]:
    if not d.inference:
        return []
    keys = set().union(*(v.keys() for v in d.inference.values()))
    known = [(k, label) for k, label in INFERENCE_ROWS if k in keys]
    return known + [(k, k) for k in sorted(keys - {k for k, _ in INFERENCE_ROWS})]


def render_card(d: RunData) -> str:
    """The full README.md: ModelCardData front matter + rendered body."""
    card = ModelCard(f"---\n{card_data(d).to_yaml()}\n---\n\n{render_body(d)}")
    return str(card).rstrip("\n") + "\n"


def _prose(text: str) -> str:
    """The card without its front matter and fenced code blocks (where template syntax is legitimate)."""
    body = text.split("\n---\n", 1)[-1]
    out, fence = [], None
    for line in body.splitlines():
        match = re.match(r"^(`{3,}|~{3,})", line)
        if fence is None and match:
            fence = match.group(1)
        elif fence is not None and line.startswith(fence) and not line.strip(fence[0]).strip():
            fence = None
        elif fence is None:
            out.append(line)
    return "\n".join(out)


def validate_card(text: str, report: EvalReport) -> ModelCard:
    """Offline checks equivalent to what the Hub enforces, plus LogicFlow's own; raise listing every problem.

    (`ModelCard.validate()` itself posts to the Hub; the Hub push runs that check server-side.)
    """
    problems: list[str] = []
    try:
        card = ModelCard(text)
        data = card.data
    except ValueError as exc:
        raise PublishError(f"card: front matter is not valid Hub metadata: {exc}") from None
    for key in ("license", "base_model", "datasets", "tags", "pipeline_tag", "library_name"):
        if not getattr(data, key, None):
            problems.append(f"front matter lacks {key!r}")
    if data.license == "other" and not getattr(data, "license_name", None):
        problems.append("license 'other' needs license_name")
    claimed = sorted((e.task_name, e.metric_type, e.metric_value) for e in data.eval_results or [])
    measured = sorted((r.task, r.metric, r.tuned.value) for r in report.results if r.tuned.value is not None)
    if claimed != measured:
        problems.append(f"model-index {claimed} differs from reports/eval.json {measured}")
    prose = _prose(text)
    for marker in PLACEHOLDERS:
        if re.search(rf"(?<![\w]){re.escape(marker)}(?![\w])", prose):
            problems.append(f"placeholder text {marker!r} outside code blocks")
    if problems:
        raise PublishError("card: " + "; ".join(problems))
    return card
