"""Collect one run's recorded facts into a typed `RunData`, the only input of the model card.

Nothing here measures or estimates: every value is read from a file an earlier stage wrote. A missing
required file (the eval report, the training params and metrics, the base-model manifest) is a
`PublishError` that names the file and the stage that writes it; optional reports become `None` and the card
says "not recorded". Values are kept as the stages wrote them, except that machine-local text (absolute
paths, loopback and file URLs) is scrubbed on the way in (`scrub`), so the same files always give the same
card wherever the project lives, and nothing about the machine reaches a reader.

    data = collect(cfg, paths)
    data.eval.results[0].tuned.value
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from logicflow.config import Config
from logicflow.datasets import get_adapter
from logicflow.errors import PublishError
from logicflow.evaluation.report import Gate, NotRun, Rule
from logicflow.model import ResolvedModel, read_manifest
from logicflow.paths import TRAIN_MANIFEST, Paths
from logicflow.tracking import flatten, git_commit

# dvc.lock entries left out of the lineage digest: the card and publish stages come after the card's inputs,
# and including them would make each render change the digest the next render reads.
LOCK_EXCLUDED_STAGES = ("card", "publish")
STATUSES = ("improved", "dropped", "no significant change", "inconclusive")
VERDICTS = ("passed", "failed", "inconclusive")

# Machine-local text. Paths: an absolute POSIX path of two or more segments, a bare home/temp root, or a
# `~/` path, not preceded by a character that makes it part of a URL or a relative path. URLs: loopback
# hosts with any scheme, port and path, and every file:// URL.
_SEGMENT = r"[\w.@+-]+"
ABSOLUTE_PATH = re.compile(
    rf"(?<![\w.~:/\\-])(?:(?:~|/{_SEGMENT})(?:/{_SEGMENT})+/?|/(?:root|home|tmp|Users|work)\b)"
)
LOCAL_URL = re.compile(
    r"\bfile://\S*"
    r"|(?:\b[a-z][\w+.-]*://)?(?:\blocalhost\b|\b127(?:\.\d{1,3}){3}\b|\b0\.0\.0\.0\b|\[::1\])"
    r"(?::\d+)?[^\s)\]\"'`]*",
    re.IGNORECASE,
)
LOCAL_PATH_MARK = "[local path]"
LOCAL_URL_MARK = "[local URL]"

Interval = tuple[float, float]


@dataclass(frozen=True)
class Measurement:
    value: float | None
    ci: Interval | None = None  # 95%
    seconds: float | None = None
    cut_off: float | None = None  # share of answers that hit the generation budget
    no_answer: float | None = None  # share of answers with nothing to score


@dataclass(frozen=True)
class TaskResult:
    task: str
    metric: str
    higher_is_better: bool
    primary: bool  # the metric the gate reads for this task
    n: int | None
    base: Measurement
    tuned: Measurement
    delta: float | None
    delta_ci: Interval | None
    p_value: float | None
    test: str | None  # mcnemar-exact | paired-bootstrap
    status: str  # one of STATUSES

    @property
    def regressed(self) -> bool:
        """Tuned is worse than base (in the metric's own direction), significantly or not."""
        if self.delta is None:
            return False
        return self.delta < 0 if self.higher_is_better else self.delta > 0


@dataclass(frozen=True)
class TaskInfo:
    title: str  # what the items are, e.g. "HumanEval, first 32 of 164"
    dataset_id: str | None  # a Hub dataset id only when the full benchmark ran from the Hub


@dataclass(frozen=True)
class Answer:
    response: str
    predicted: str | None
    correct: bool


@dataclass(frozen=True)
class Example:
    question: str
    gold: str | None
    base: Answer
    tuned: Answer


@dataclass(frozen=True)
class EvalReport:
    config: dict[str, Any]
    models: dict[str, Any]
    results: list[TaskResult]
    not_run: list[NotRun]
    gate: Gate
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # eval tools (lm_eval, math_verify, ...)
    selftest: dict[str, Any] | None = None  # {"passed": bool, "checks": int}

    def title(self, task: str) -> str:
        """What the task's items are, as eval.json names them; the task id when it does not."""
        info = self.tasks.get(task)
        return info.title if info else task


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    hub_id: str
    fetched: dict[str, Any]  # flattened per-dataset block of reports/data.json
    validated: dict[str, Any]  # flattened per-dataset block of reports/validation/summary.json

    @property
    def rows_in(self) -> Any:
        return self.validated.get("rows_in", self.fetched.get("rows"))


@dataclass(frozen=True)
class Lineage:
    git_commit: str | None
    dvc_lock_sha256: str | None
    mlflow_run_id: str | None
    mlflow_experiment: str | None
    base_id: str
    base_revision: str
    base_source: str
    base_sha256: str
    merged_sha256: str


@dataclass(frozen=True)
class RunData:
    model_name: str
    repo_id: str
    license: str
    language: list[str]
    tags: list[str]
    base: ResolvedModel
    datasets: list[DatasetInfo]
    data_source: str | None  # reports/data.json "source": hub | offline (None: not recorded)
    data_format: str | None  # reports/data.json "format": thinking | react (None: not recorded)
    data_totals: dict[str, Any]
    validation_totals: dict[str, Any]
    validation_checks: dict[str, dict[str, Any]]  # check name -> its summary (success, unexpected, ...)
    train_params: dict[str, Any]
    train_metrics: dict[str, Any]
    eval: EvalReport
    inference: dict[str, dict[str, Any]] | None
    inference_extra: dict[str, Any]
    chat_template: str | None
    generation_config: dict[str, Any]  # what the published generation_config.json holds
    sampling: dict[str, Any]  # the recommended sampling it sets (card.sampling), empty for greedy
    artifacts: list[str]  # publish.artifacts: merged, adapter
    gguf: list[dict[str, Any]]  # models/gguf/gguf.json: per type file, bytes, same_greedy_answer or reason
    train_manifest: dict[str, Any]  # models/merged/logicflow_train.json: method, merged, dtype (train stage)
    lineage: Lineage
    loss_plot: Path | None
    params_report: dict[str, Any] = field(default_factory=dict)  # reports/train/params.json, scrubbed
    validation_report: dict[str, Any] | None = None  # reports/validation/summary.json, scrubbed
    missing: list[str] = field(default_factory=list)  # optional reports that were absent

    @property
    def method(self) -> str | None:
        """The PEFT method as the train stage recorded it (manifest first, then params.json)."""
        if self.train_manifest.get("method"):
            return str(self.train_manifest["method"])
        keys = ("lora.method", "method", "peft.method", "peft_method", "peft_type")
        return next((str(self.train_params[k]) for k in keys if self.train_params.get(k)), None)

    @property
    def weights(self) -> str:
        """The top-level weights: "merged" (adapter folded in), "full" or "base" (method not mergeable)."""
        if self.method == "full":
            return "full"
        return "base" if self.train_manifest.get("merged") is False else "merged"

    @property
    def adapter_only(self) -> bool:
        """The repo holds the adapter alone (publish.artifacts: [adapter]): load it on the base with PEFT."""
        return "merged" not in self.artifacts

    @property
    def data_from_hub(self) -> bool:
        """The training rows were downloaded from the datasets themselves (not generated offline)."""
        return self.data_source == "hub"


def scrub(value: Any, root: Path) -> Any:
    """Parsed JSON with machine-local text replaced: paths under `root` become relative to it, any other
    absolute path becomes LOCAL_PATH_MARK and any loopback or file URL LOCAL_URL_MARK."""
    if isinstance(value, str):
        return ABSOLUTE_PATH.sub(lambda m: _relative(m.group(0), root), LOCAL_URL.sub(LOCAL_URL_MARK, value))
    if isinstance(value, dict):
        return {key: scrub(item, root) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item, root) for item in value]
    return value


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return LOCAL_PATH_MARK


def _rel(paths: Paths, path: Path) -> str:
    try:
        return str(path.relative_to(paths.root))
    except ValueError:
        return str(path)


def read_json(paths: Paths, path: Path, stage: str, *, required: bool = True) -> Any:
    """Parse a stage's JSON report; a missing required one says which stage writes it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        if not required:
            return None
        raise PublishError(
            f"{_rel(paths, path)}: not found; run the `{stage}` stage first (`dvc repro {stage}`)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PublishError(
            f"{_rel(paths, path)}: not valid JSON ({exc}); re-run the `{stage}` stage"
        ) from None


def _require(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise PublishError(f"{where}: missing key {key!r}; re-run the `evaluate` stage")
    return obj[key]


def _number(value: Any, where: str) -> float | None:
    """A recorded number; null and NaN both mean "not measured" (never shown as a score)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PublishError(f"{where}: expected a number or null, got {value!r}")
    return value


def _interval(value: Any, where: str) -> Interval | None:
    """A recorded [low, high]; null (or a bound not measured) means no interval."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise PublishError(f"{where}: expected [low, high] or null, got {value!r}")
    low, high = (_number(v, where) for v in value)
    return None if low is None or high is None else (low, high)


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise PublishError(
            f"{where}: {value!r} is not one of {', '.join(allowed)}; re-run the `evaluate` stage"
        )
    return str(value)


def _measurement(obj: Any, where: str) -> Measurement:
    if not isinstance(obj, dict):
        raise PublishError(f"{where}: expected an object with value/ci/seconds, got {obj!r}")
    return Measurement(
        value=_number(_require(obj, "value", where), f"{where}.value"),
        ci=_interval(obj.get("ci"), f"{where}.ci"),
        seconds=_number(obj.get("seconds"), f"{where}.seconds"),
        cut_off=_number(obj.get("cut_off"), f"{where}.cut_off"),
        no_answer=_number(obj.get("no_answer"), f"{where}.no_answer"),
    )


def _result(item: Any, first_of_task: bool, at: str) -> TaskResult:
    return TaskResult(
        task=str(_require(item, "task", at)),
        metric=str(_require(item, "metric", at)),
        higher_is_better=bool(item.get("higher_is_better", True)),
        primary=bool(item.get("primary", first_of_task)),
        n=item.get("n"),
        base=_measurement(_require(item, "base", at), f"{at}.base"),
        tuned=_measurement(_require(item, "tuned", at), f"{at}.tuned"),
        delta=_number(item.get("delta"), f"{at}.delta"),
        delta_ci=_interval(item.get("delta_ci"), f"{at}.delta_ci"),
        p_value=_number(item.get("p_value"), f"{at}.p_value"),
        test=item.get("test"),
        status=_choice(_require(item, "status", at), STATUSES, f"{at}.status"),
    )


def _rule(item: Any, where: str) -> Rule:
    return Rule(
        task=str(_require(item, "task", where)),
        rule=str(_require(item, "rule", where)),
        result=_choice(_require(item, "result", where), VERDICTS, f"{where}.result"),
        detail=str(_require(item, "detail", where)),
    )


def _gate(raw: Any, where: str) -> Gate:
    result = _choice(_require(raw, "result", where), VERDICTS, f"{where}.result")
    rules = [_rule(item, f"{where}.rules[{i}]") for i, item in enumerate(raw.get("rules") or [])]
    return Gate(result, rules)


def _answer(obj: Any, where: str) -> Answer:
    return Answer(
        response=str(_require(obj, "response", where)),
        predicted=None if obj.get("predicted") is None else str(obj["predicted"]),
        correct=bool(_require(obj, "correct", where)),
    )


def _example(item: Any, where: str) -> Example:
    return Example(
        question=str(_require(item, "question", where)),
        gold=None if item.get("gold") is None else str(item["gold"]),
        base=_answer(_require(item, "base", where), f"{where}.base"),
        tuned=_answer(_require(item, "tuned", where), f"{where}.tuned"),
    )


def _tasks(raw: Any, where: str) -> dict[str, TaskInfo]:
    return {
        str(task): TaskInfo(
            title=str(_require(info, "title", f"{where}.{task}")),
            dataset_id=None if info.get("dataset_id") is None else str(info["dataset_id"]),
        )
        for task, info in sorted((raw or {}).items())
    }


def parse_eval_report(raw: Any, where: str = "reports/eval.json") -> EvalReport:
    """Check `reports/eval.json` against its contract; a gap is an error, never a guess.

    `tasks`, `examples`, `versions` and `selftest` are optional (reports written before they existed).
    """
    results, seen = [], set()
    for i, item in enumerate(_require(raw, "results", where)):
        task = _require(item, "task", f"{where}: results[{i}]")
        results.append(_result(item, task not in seen, f"{where}: results[{i}]"))
        seen.add(task)
    not_run = [
        NotRun(
            task=str(_require(item, "task", f"{where}: not_run[{i}]")),
            reason=str(_require(item, "reason", f"{where}: not_run[{i}]")),
        )
        for i, item in enumerate(raw.get("not_run") or [])
    ]
    return EvalReport(
        config=dict(raw.get("config") or {}),
        models=dict(raw.get("models") or {}),
        results=results,  # as the evaluate stage ordered them: task by task, primary metric first
        not_run=sorted(not_run, key=lambda r: r.task),
        gate=_gate(_require(raw, "gate", where), f"{where}: gate"),
        tasks=_tasks(raw.get("tasks"), f"{where}: tasks"),
        examples=[
            _example(item, f"{where}: examples[{i}]") for i, item in enumerate(raw.get("examples") or [])
        ],
        versions={str(k): str(v) for k, v in sorted((raw.get("versions") or {}).items())},
        selftest=raw.get("selftest"),
    )


def load_eval_report(paths: Paths) -> EvalReport:
    return parse_eval_report(read_json(paths, paths.eval_json, "evaluate"))


def _per_dataset(report: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """`name`'s block of a report's `datasets` (data.json, validation summary), flattened; {} when absent."""
    return flatten(((report or {}).get("datasets") or {}).get(name) or {})


def _totals(report: Any, names: list[str]) -> dict[str, Any]:
    """Report keys that are not per-dataset blocks (totals, splits, settings)."""
    if not isinstance(report, dict):
        return {}
    rest = {k: v for k, v in report.items() if k != "datasets" and k not in names}
    return flatten(rest)


def _checks(validation: Any) -> dict[str, dict[str, Any]]:
    checks = validation.get("checks") if isinstance(validation, dict) else None
    if not isinstance(checks, dict):
        return {}
    return {str(k): flatten(v) for k, v in sorted(checks.items()) if isinstance(v, dict)}


def dvc_lock_digest(lock: Path, exclude: tuple[str, ...] = LOCK_EXCLUDED_STAGES) -> str | None:
    """SHA-256 of `dvc.lock` without the stages that run after the card (canonical JSON of the rest)."""
    try:
        data = yaml.safe_load(lock.read_text()) or {}
    except FileNotFoundError:
        return None
    except yaml.YAMLError as exc:
        raise PublishError(f"{lock.name}: not valid YAML ({exc}); run `dvc repro` to rewrite it") from None
    stages = {k: v for k, v in (data.get("stages") or {}).items() if k.split("@")[0] not in exclude}
    canonical = json.dumps({"schema": data.get("schema"), "stages": stages}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def read_chat_template(model_dir: Path) -> str | None:
    """The chat template saved with the tokenizer (`chat_template.jinja`, else tokenizer_config.json)."""
    file = model_dir / "chat_template.jinja"
    if file.is_file():
        return file.read_text()
    try:
        template = json.loads((model_dir / "tokenizer_config.json").read_text()).get("chat_template")
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if isinstance(template, list):  # named templates: keep the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    return template if isinstance(template, str) else None


def read_train_manifest(model_dir: Path) -> dict[str, Any]:
    """What the train stage says about the folder (`method`, `merged`, `dtype`); {} when absent."""
    try:
        raw = json.loads((model_dir / TRAIN_MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return raw if isinstance(raw, dict) else {}


def read_generation_config(model_dir: Path) -> dict[str, Any]:
    try:
        raw = json.loads((model_dir / "generation_config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in sorted(raw.items()) if not k.startswith("_") and k != "transformers_version"}


def generation_config(model_dir: Path, sampling: dict[str, Any]) -> dict[str, Any]:
    """The model's generation_config.json with the recommended sampling (card.sampling) set."""
    return dict(sorted({**read_generation_config(model_dir), **sampling}.items()))


def resolve_license(cfg: Config, base: ResolvedModel) -> str:
    license_ = cfg.card.license or base.license
    if not license_:
        raise PublishError(
            f"the license of base model {base.id!r} is unknown (not in models/base manifest); "
            "set card.license in params.yaml to the license the model is released under"
        )
    return license_


def collect(cfg: Config, paths: Paths) -> RunData:
    """Read every input of the card; raises PublishError naming the first missing required one."""

    def report(path: Path, stage: str, *, required: bool = True) -> Any:
        return scrub(read_json(paths, path, stage, required=required), paths.root)

    eval_report = parse_eval_report(report(paths.eval_json, "evaluate"), _rel(paths, paths.eval_json))
    params = report(paths.train_reports.params, "train")
    metrics = report(paths.train_reports.metrics, "train")
    if not isinstance(params, dict) or not isinstance(metrics, dict):
        raise PublishError(
            "reports/train/params.json and metrics.json must hold JSON objects; re-run `train`"
        )
    base = read_manifest(paths.base_model)
    if base is None:
        raise PublishError(
            f"{_rel(paths, paths.base_model)}: no base-model manifest; run `logicflow model fetch`"
        )
    if not metrics.get("merged_sha256"):
        raise PublishError("reports/train/metrics.json: missing 'merged_sha256'; re-run the `train` stage")
    if metrics.get("base_sha256") and metrics["base_sha256"] != base.sha256:
        raise PublishError(
            f"models/base changed since training: sha256 {base.sha256[:12]} != "
            f"{str(metrics['base_sha256'])[:12]} recorded by train; re-run `dvc repro train`"
        )

    missing: list[str] = []

    def optional(path: Path, stage: str) -> Any:
        value = report(path, stage, required=False)
        if value is None:
            missing.append(_rel(paths, path))
        return value

    data_report = optional(paths.data_summary, "data")
    validation = optional(paths.validation_summary, "validate")
    inference_raw = optional(paths.inference_json, "evaluate")
    run_file = optional(paths.mlflow_run_file, "train") or {}
    gguf = (report(paths.gguf_report, "export", required=False) or {}).get("gguf", [])

    names = list(cfg.data.datasets)
    datasets = [
        DatasetInfo(
            name=n,
            hub_id=get_adapter(n).hub_id,
            fetched=_per_dataset(data_report, n),
            validated=_per_dataset(validation, n),
        )
        for n in names
    ]
    inference = None
    inference_extra: dict[str, Any] = {}
    if isinstance(inference_raw, dict):
        inference = {
            k: flatten(v) for k, v in inference_raw.items() if k in ("base", "tuned") and isinstance(v, dict)
        }
        inference_extra = flatten({k: v for k, v in inference_raw.items() if k not in ("base", "tuned")})

    loss_plot = paths.train_reports.loss_plot
    if not loss_plot.is_file():
        missing.append(_rel(paths, loss_plot))
        loss_plot = None

    lineage = Lineage(
        git_commit=run_file.get("git_commit") or git_commit(paths.root),
        dvc_lock_sha256=dvc_lock_digest(paths.dvc_lock),
        mlflow_run_id=run_file.get("run_id"),
        mlflow_experiment=run_file.get("experiment_name"),
        base_id=base.id,
        base_revision=base.revision,
        base_source=scrub(base.source, paths.root),
        base_sha256=base.sha256,
        merged_sha256=str(metrics["merged_sha256"]),
    )
    validation = validation if isinstance(validation, dict) else None
    return RunData(
        model_name=cfg.card.model_name,
        repo_id=cfg.publish.repo_id,
        license=resolve_license(cfg, base),
        language=list(cfg.card.language),
        tags=list(dict.fromkeys(cfg.card.tags)),
        base=base,
        datasets=datasets,
        data_source=data_report.get("source") if isinstance(data_report, dict) else None,
        data_format=data_report.get("format") if isinstance(data_report, dict) else None,
        data_totals=_totals(data_report, names),
        validation_totals=_totals(
            {k: v for k, v in validation.items() if k != "checks"} if validation else None, names
        ),
        validation_checks=_checks(validation),
        train_params=flatten(params),
        train_metrics=flatten(metrics),
        eval=eval_report,
        inference=inference,
        inference_extra=inference_extra,
        gguf=gguf,
        chat_template=read_chat_template(paths.merged),
        generation_config=generation_config(paths.merged, cfg.card.sampling.settings()),
        sampling=cfg.card.sampling.settings(),
        artifacts=list(cfg.publish.artifacts),
        train_manifest=read_train_manifest(paths.merged),
        lineage=lineage,
        loss_plot=loss_plot,
        params_report=params,
        validation_report=validation,
        missing=sorted(missing),
    )
