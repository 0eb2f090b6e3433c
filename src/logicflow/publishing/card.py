"""Render `RunData` into a Hugging Face model card and check it before anyone reads it.

The front matter (license, base_model, datasets, tags, pipeline_tag, library_name, model-index) is built by
`huggingface_hub.ModelCardData` + `EvalResult`; the body is `templates/model_card.md.jinja` rendered with
`StrictUndefined`. The card leads with what the evaluation showed (each significant gain, the gate and its
rules), then the paired eval table, held-out examples, data, key hyperparameters, usage, limitations and
lineage. The full training params and validation results travel beside it as JSON (`attachments`). The
output depends only on `RunData`: no clock, no machine-local text, sorted keys, so the same run files always
give a byte-identical card.

    text = render_card(collect(cfg, paths))
    validate_card(text, data.eval)      # PublishError listing every problem
"""

from __future__ import annotations

import importlib.resources
import json
import math
import re
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from logicflow.errors import PublishError
from logicflow.evaluation.report import INFERENCE_ROWS
from logicflow.paths import CardFiles
from logicflow.publishing.card_data import (
    ABSOLUTE_PATH,
    LOCAL_URL,
    DatasetInfo,
    EvalReport,
    Measurement,
    RunData,
    TaskResult,
)
from logicflow.tracking import flatten

TEMPLATE = "model_card.md.jinja"
PIPELINE_TAG = "text-generation"
LIBRARY_NAME = "transformers"
# The card's folder as the card links it (relative names): the JSON files beside README.md are published with
# it (see publishing.repo).
LINKED = CardFiles(Path())
SUMMARY_METRICS = (
    ("global_step", "Optimizer steps"),
    ("train_tokens", "Training tokens"),
    ("train_loss", "Final training loss"),
    ("eval_loss", "Final validation loss"),
)
# Key hyperparameters shown in the body: (label, key in the flattened params.json the train stage writes);
# a key the run did not record (no `peft` block for full fine-tuning) is left out. The rest is in
# LINKED.training_params.
KEY_PARAMS = (
    ("LoRA rank r", "peft.r"),
    ("LoRA alpha", "peft.lora_alpha"),
    ("LoRA dropout", "peft.lora_dropout"),
    ("target modules", "peft.target_modules"),
    ("learning rate", "trainer.learning_rate"),
    ("schedule", "trainer.lr_scheduler_type"),
    ("warmup (steps; below 1 a share of them)", "trainer.warmup_steps"),
    ("cutoff (tokens)", "trainer.max_length"),
    ("precision", "precision"),
    ("seed", "trainer.seed"),
)
TEST_NAMES = {"mcnemar-exact": "exact McNemar", "paired-bootstrap": "paired bootstrap"}
# Text that means "someone forgot to fill this in"; never allowed outside code blocks.
PLACEHOLDERS = ("[More Information Needed]", "{{", "{%", "TODO")
SMALL_SAMPLE = 100
RESPONSE_HEAD, RESPONSE_TAIL = 600, 400  # characters of a long example response kept from each end
DEFAULT_MAX_NEW_TOKENS = 256


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


def fmt_pm(m: Measurement) -> str:
    """A score with its 95% interval, as a proportion: `0.5000 [0.2152, 0.7848]` (publish logs use it)."""
    if m.value is None:
        return "not measured"
    return f"{m.value:.4f}" + ("" if m.ci is None else f" [{m.ci[0]:.4f}, {m.ci[1]:.4f}]")


def fmt_signed(value: float | None) -> str:
    return "not measured" if value is None else f"{value:+.4f}"


def pct(value: float | None) -> str:
    """A proportion as a percentage: 0.15 -> `15.0%`."""
    return "not measured" if value is None else f"{100 * value:.1f}%"


def points(value: float) -> str:
    """A difference of proportions in percentage points: 0.65 -> `+65.0`."""
    return f"{100 * value:+.1f}"


def fmt_p(p: float) -> str:
    """A p-value in two significant digits: `0.62`, `0.00098`, `1.2e-30` (as the gate's rule details)."""
    return f"{p:.2g}".replace("e-0", "e-")


def fmt_score(m: Measurement) -> str:
    """Eval table cell: `15.0% [11.0, 21.0]`."""
    if m.value is None or m.ci is None:
        return pct(m.value)
    return f"{pct(m.value)} [{100 * m.ci[0]:.1f}, {100 * m.ci[1]:.1f}]"


def fmt_delta(r: TaskResult) -> str:
    """Eval table cell: `+65.0 [+58.0, +72.0]` (percentage points)."""
    if r.delta is None:
        return "not measured"
    return points(r.delta) + (
        "" if r.delta_ci is None else f" [{points(r.delta_ci[0])}, {points(r.delta_ci[1])}]"
    )


def fmt_shares(base: float | None, tuned: float | None) -> str:
    return " / ".join("n/a" if v is None else pct(v) for v in (base, tuned))


def code_or(value: str | None, fallback: str) -> str:
    return f"`{value}`" if value else fallback


def code_cell(text: str | None, fallback: str = "no answer") -> str:
    """Inline code that survives any backticks, pipes or newlines in `text` (for a table cell)."""
    if text is None:
        return fallback
    text = " ".join(text.split()) or " "
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}".replace("|", "\\|")


def shorten(text: str, head: int = RESPONSE_HEAD, tail: int = RESPONSE_TAIL) -> str:
    """A long response cut to its start and its end (where the answer is) at whitespace, saying how much of
    it is left out; an empty one says so."""
    text = text.strip()
    if len(text) <= head + tail + 100:
        return text or "(empty response)"
    start = text[:head].rsplit(None, 1)[0]
    end = text[-tail:].split(None, 1)[-1]
    omitted = len(text) - len(start) - len(end)
    return f"{start}\n[… {omitted} characters left out …]\n{end}"


def hub_url(repo_id: str) -> str:
    return f"https://huggingface.co/{repo_id}"


def dataset_url(repo_id: str) -> str:
    return f"https://huggingface.co/datasets/{repo_id}"


def fence_for(text: str) -> str:
    """A backtick fence longer than any backtick run inside `text`."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


# ---- what the card says ----------------------------------------------------------------------------------


def eval_results(report: EvalReport) -> list[EvalResult]:
    """One EvalResult per measured (task, metric) of the tuned model, on the items eval.json names.

    The dataset is the task's title ("HumanEval, first 32 of 164"); its type is a Hub dataset id only when
    eval.json says the full benchmark ran from the Hub, else `logicflow/<task>`: a partial or generated set
    never carries the full benchmark's id.
    """
    results = []
    for r in report.results:
        if r.tuned.value is None:
            continue
        info = report.tasks.get(r.task)
        results.append(
            EvalResult(
                task_type=PIPELINE_TAG,
                task_name=r.task,
                dataset_type=info.dataset_id if info and info.dataset_id else f"logicflow/{r.task}",
                dataset_name=report.title(r.task),
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
        library_name="peft" if d.adapter_only else LIBRARY_NAME,
        base_model=d.base.id,
        base_model_relation="adapter" if d.adapter_only else None,
        datasets=[ds.hub_id for ds in d.datasets] if d.data_from_hub else None,
        tags=d.tags,
        pipeline_tag=PIPELINE_TAG,
        model_name=d.model_name,
        eval_results=eval_results(d.eval) or None,
    )


def change(r: TaskResult) -> str:
    """`15.0% to 80.0% (+65.0 points, 95% CI +58.0 to +72.0, exact McNemar p = 1.2e-30, n = 200)`."""
    stats = [] if r.delta is None else [f"{points(r.delta)} points"]
    if r.delta_ci is not None:
        stats.append(f"95% CI {points(r.delta_ci[0])} to {points(r.delta_ci[1])}")
    if r.p_value is not None:
        test = TEST_NAMES.get(r.test, r.test) if r.test else None
        stats.append(f"{test} p = {fmt_p(r.p_value)}" if test else f"p = {fmt_p(r.p_value)}")
    if r.n is not None:
        stats.append(f"n = {r.n}")
    return f"{pct(r.base.value)} to {pct(r.tuned.value)} ({', '.join(stats)})"


def headline(report: EvalReport) -> list[str]:
    """One sentence per task whose gated (primary) metric improved significantly: the card's first claim."""
    return [
        f"On {report.title(r.task)}, {r.metric} {'rose' if r.higher_is_better else 'fell'} from {change(r)}."
        for r in report.results
        if r.primary and r.status == "improved"
    ]


def has_shares(report: EvalReport) -> bool:
    """Some row recorded the cut-off or no-answer share of its answers."""
    return any(
        v is not None
        for r in report.results
        for v in (r.base.cut_off, r.tuned.cut_off, r.base.no_answer, r.tuned.no_answer)
    )


def eval_table(report: EvalReport) -> list[str]:
    """The paired eval table, line by line; the cut-off / no-answer columns only when some row has them."""
    shares = has_shares(report)
    header = ["task", "metric", "n", "base [95% CI]", "tuned [95% CI]", "Δ [95% CI]", "p", "result"]
    align = ["---", "---", "---:", "---:", "---:", "---:", "---:", "---"]
    if shares:
        header += ["cut off (base / tuned)", "no answer (base / tuned)"]
        align += ["---:", "---:"]
    lines = [_table_row(header), "|" + "|".join(align) + "|"]
    for r in report.results:
        cells = [
            cell(report.title(r.task)),
            cell(r.metric) + ("" if r.higher_is_better else " (lower is better)"),
            "not recorded" if r.n is None else str(r.n),
            fmt_score(r.base),
            fmt_score(r.tuned),
            fmt_delta(r),
            "not tested" if r.p_value is None else fmt_p(r.p_value),
            r.status,
        ]
        if shares:
            cells += [
                fmt_shares(r.base.cut_off, r.tuned.cut_off),
                fmt_shares(r.base.no_answer, r.tuned.no_answer),
            ]
        lines.append(_table_row(cells))
    return lines


def _table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def key_hyperparameters(d: RunData) -> list[tuple[str, str]]:
    """At most ~15 (label, value) rows a reader needs to reproduce the run; the rest is in the JSON file."""
    p = d.train_params
    rows = [
        ("base model", f"`{d.base.id}` @ `{d.base.revision}`"),
        ("method", cell(d.method or "not recorded")),
    ]
    rows += [(label, _param(p.get(key))) for label, key in KEY_PARAMS]
    steps, epochs = p.get("trainer.max_steps"), p.get("trainer.num_train_epochs")
    if steps and steps > 0:  # -1: the trainer ran epochs instead
        rows.append(("training length", f"{steps} steps"))
    elif epochs:
        rows.append(("training length", f"{_param(epochs)} epochs"))
    per_device = p.get("trainer.per_device_train_batch_size")
    if per_device:
        accumulation = p.get("trainer.gradient_accumulation_steps") or 1
        effective = p.get("trainer.effective_batch_size")
        batch = f"{per_device} × {accumulation}" + (f" (effective {effective})" if effective else "")
        rows.append(("batch per device × accumulation", batch))
    return [(label, value) for label, value in rows if value != "not recorded"]


def _param(value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return cell(", ".join(value))
    return fmt_value(value)


def dataset_source(d: RunData, ds: DatasetInfo) -> str:
    if ds.fetched.get("source") == "local":
        digest = str(ds.fetched.get("file_sha256"))[:16]
        return f"the user's own file `{ds.fetched.get('path')}` (sha256 `{digest}`)"
    link = f"[`{ds.hub_id}`]({dataset_url(ds.hub_id)})"
    if d.data_from_hub:
        sha = ds.fetched.get("revision_sha")
        return f"Hub: {link} at commit `{sha}`" if sha else f"Hub: {link}"
    if d.data_source == "offline":
        return f"generated offline in the schema of {link}"
    return f"not recorded ({link})"


def checks_summary(d: RunData) -> str | None:
    """`68 of 70 data checks passed; failed: a, b.`, or None when no checks were recorded."""
    if not d.validation_checks:
        return None
    failed = sorted(name for name, check in d.validation_checks.items() if check.get("success") is False)
    passed = len(d.validation_checks) - len(failed)
    line = f"{passed} of {len(d.validation_checks)} data checks passed"
    return line + (f"; failed: {', '.join(failed)}." if failed else ".")


def limitations(d: RunData) -> list[str]:
    """What the measurements say this model cannot be trusted with."""
    report = d.eval
    items = []
    for r in report.results:
        where = f"{report.title(r.task)} ({r.metric})"
        if r.status == "dropped":
            items.append(f"Dropped significantly on {where}: from {change(r)}.")
        elif r.status == "inconclusive":
            items.append(
                f"No signal on {where}: both models scored at the floor or the ceiling on every item, so "
                "this evaluation cannot tell them apart."
            )
        elif r.regressed:
            items.append(f"Lower on {where}, though not significantly: from {change(r)}.")
    for t in report.not_run:
        items.append(f"Not evaluated on {t.task} ({t.reason}); this card claims nothing about it.")
    sizes = sorted({r.n for r in report.results if isinstance(r.n, int)})
    if sizes and sizes[0] < SMALL_SAMPLE:
        span = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"
        items.append(
            f"Scores come from {span} items per task, so their 95% intervals are wide; a difference inside "
            "them is not evidence of a change either way."
        )
    if not report.gate.passed:
        items.append(
            f"The evaluation gate did not pass ({report.gate.result}): "
            + "; ".join(report.gate.reasons or ["no reason recorded"])
            + "."
        )
    if d.data_source == "offline":
        items.append(
            "Training rows for "
            + ", ".join(f"{ds.name} ({ds.hub_id})" for ds in d.datasets)
            + " came from LogicFlow's offline generator written in those datasets' schemas, not from the "
            "datasets themselves; the scores say nothing about training on the real data."
        )
    items.append(
        f"It inherits the limitations and biases of its base model {d.base.id}; reasoning traces can "
        "look convincing and still be wrong, so check answers that matter."
    )
    return items


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


def attachments(d: RunData) -> dict[str, str]:
    """The JSON files the card links (file name -> content), written beside it and published with it, and
    generation_config.json with the recommended sampling when card.sampling sets any."""
    files: dict[str, Any] = {LINKED.training_params.name: d.params_report}
    if d.validation_report is not None:
        files[LINKED.validation_summary.name] = d.validation_report
    if d.sampling:  # replaces the model's own file in the published folder (logicflow.publishing.repo)
        files["generation_config.json"] = d.generation_config
    return {name: json.dumps(data, indent=2, sort_keys=True) + "\n" for name, data in files.items()}


# ---- rendering -------------------------------------------------------------------------------------------


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
        code_or=code_or,
        code_cell=code_cell,
        measured=lambda v: "not measured" if v is None else fmt_value(v),
        shorten=shorten,
        yesno=lambda v: "yes" if v else "no",
    )
    env.globals.update(fence_for=fence_for, hub_url=hub_url)
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
                method=method or "not recorded",
                method_phrase=f"fine-tuned with {method}" if method else "fine-tuned",
                thinking="<think>" in template,
                headline=headline(d.eval),
                summary_metrics=[(k, label) for k, label in SUMMARY_METRICS if k in d.train_metrics],
                key_params=key_hyperparameters(d),
                dataset_rows=[(ds, dataset_source(d, ds)) for ds in d.datasets],
                checks_summary=checks_summary(d),
                eval_table=eval_table(d.eval),
                show_shares=has_shares(d.eval),
                inference_rows=_inference_rows(d),
                eval_settings=_settings(d.eval.config),
                alpha=d.eval.config.get("alpha"),
                max_new_tokens=_max_new_tokens(d.eval.config),
                decoding=", ".join(f"{k}={v!r}" for k, v in (d.sampling or {"do_sample": False}).items()),
                fence=fence_for(template),
                limitations=limitations(d),
                citation=citation(d),
                training_params_file=LINKED.training_params.name,
                loss_plot_file=LINKED.loss_plot.name,
                validation_file=LINKED.validation_summary.name,
            )
        )
    except jinja2.UndefinedError as exc:
        raise PublishError(
            f"card template {TEMPLATE}: {exc}; the run data lacks a value the card needs"
        ) from None
    return re.sub(r"\n{3,}", "\n\n", body).strip() + "\n"


def _settings(config: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {fmt_value(v)}" for k, v in flatten(config).items()) or "not recorded"


def _max_new_tokens(config: dict[str, Any]) -> int:
    """The generation budget for the usage example: the largest any task had in evaluation."""
    budget = config.get("max_new_tokens")
    if isinstance(budget, dict):
        budget = max((v for v in budget.values() if isinstance(v, int)), default=None)
    return budget if isinstance(budget, int) else DEFAULT_MAX_NEW_TOKENS


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


# ---- checks ----------------------------------------------------------------------------------------------


def outside_fences(text: str) -> str:
    """`text` without its fenced code blocks (where template syntax and example paths are legitimate)."""
    out, fence = [], None
    for line in text.splitlines():
        match = re.match(r"^(`{3,}|~{3,})", line)
        if fence is None and match:
            fence = match.group(1)
        elif fence is not None and line.startswith(fence) and not line.strip(fence[0]).strip():
            fence = None
        elif fence is None:
            out.append(line)
    return "\n".join(out)


def machine_local(text: str) -> list[str]:
    """Loopback and file URLs anywhere in a card, absolute paths outside its fenced code blocks."""
    found = {m.group(0) for m in LOCAL_URL.finditer(text)}
    found |= {m.group(0) for m in ABSOLUTE_PATH.finditer(outside_fences(text))}
    return sorted(found)


def validate_card(text: str, report: EvalReport) -> ModelCard:
    """Offline checks equivalent to what the Hub enforces, plus LogicFlow's own; raise listing every problem.

    (`ModelCard.validate()` itself posts to the Hub; the Hub push runs that check server-side.) `datasets` is
    not required: a model trained on offline-generated rows names no Hub dataset.
    """
    problems: list[str] = []
    try:
        card = ModelCard(text)
        data = card.data
    except ValueError as exc:
        raise PublishError(f"card: front matter is not valid Hub metadata: {exc}") from None
    for key in ("license", "base_model", "tags", "pipeline_tag", "library_name"):
        if not getattr(data, key, None):
            problems.append(f"front matter lacks {key!r}")
    if data.license == "other" and not getattr(data, "license_name", None):
        problems.append("license 'other' needs license_name")
    claimed = sorted((e.task_name, e.metric_type, e.metric_value) for e in data.eval_results or [])
    measured = sorted((r.task, r.metric, r.tuned.value) for r in report.results if r.tuned.value is not None)
    if claimed != measured:
        problems.append(f"model-index {claimed} differs from reports/eval.json {measured}")
    prose = outside_fences(text.split("\n---\n", 1)[-1])
    for marker in PLACEHOLDERS:
        if re.search(rf"(?<![\w]){re.escape(marker)}(?![\w])", prose):
            problems.append(f"placeholder text {marker!r} outside code blocks")
    local = machine_local(text)
    if local:
        problems.append(f"machine-local text (absolute paths, loopback or file URLs): {', '.join(local[:5])}")
    if problems:
        raise PublishError("card: " + "; ".join(problems))
    return card
