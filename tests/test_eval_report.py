"""Deltas, significance and the publish gate from known numbers; the report files' contents."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from logicflow.config import GateConfig
from logicflow.evaluation.harness import Measurement, TaskRun, parse_results
from logicflow.evaluation.report import (
    NotRun,
    Side,
    compare,
    delta_chart,
    eval_document,
    evaluate_gate,
    inference_markdown,
    is_significant,
    make_row,
    markdown_table,
)
from logicflow.stages.evaluate import mlflow_metric_name, tracking_metrics


def task_run(task: str, value: float, stderr: float | None, n: int = 32, metric: str = "accuracy") -> TaskRun:
    return TaskRun(task, {metric: Measurement(value, stderr)}, {metric: True}, n, 2.5)


def test_delta_and_significance_from_known_numbers() -> None:
    rows = compare(
        [task_run("math", 0.25, 0.05), task_run("ifeval", 0.5, 0.1)],
        [task_run("math", 0.75, 0.05), task_run("ifeval", 0.6, 0.1)],
    )
    math_row, if_row = rows
    assert math_row.delta == pytest.approx(0.5)
    assert math_row.significant  # 0.5 > 2 * sqrt(0.05^2 + 0.05^2) = 0.1414
    assert if_row.delta == pytest.approx(0.1)
    assert not if_row.significant  # 0.1 < 2 * sqrt(0.1^2 + 0.1^2) = 0.2828
    assert if_row.noise == pytest.approx(2 * math.sqrt(0.02))
    assert math_row.base == Side(0.25, 0.05, 2.5) and math_row.n == 32


def test_significance_edge_cases() -> None:
    assert is_significant(0.01, None, None)  # no stderr: any change counts
    assert not is_significant(0.0, None, None)
    assert not is_significant(0.2, 0.1, 0.0)  # exactly on the 2-stderr band is not outside it


def test_only_tasks_and_metrics_present_for_both_models_are_compared() -> None:
    rows = compare([task_run("a", 0.1, 0.01), task_run("b", 0.2, 0.01)], [task_run("a", 0.2, 0.01)])
    assert [r.task for r in rows] == ["a"]


GATE = GateConfig(must_not_drop=["math"], max_drop=0.05)


def gate_for(base: float, tuned: float, se: float, task: str = "math", higher: bool = True):
    row = make_row(task, "accuracy", higher, 32, Side(base, se, 1.0), Side(tuned, se, 1.0))
    return evaluate_gate([row], [], GATE if task == "math" else GateConfig(must_not_drop=[], max_drop=0.05))


def test_gate_on_a_must_not_drop_task() -> None:
    assert gate_for(0.5, 0.6, 0.05).passed  # improved
    assert gate_for(0.5, 0.45, 0.05).passed  # dropped within noise (band 0.1414)
    failed = gate_for(0.5, 0.2, 0.05)  # dropped 0.3 > band
    assert not failed.passed and "must_not_drop" in failed.reasons[0] and "math accuracy" in failed.reasons[0]


def test_gate_max_drop_beyond_noise_for_any_task() -> None:
    assert gate_for(0.5, 0.33, 0.05, task="ifeval").passed  # drop 0.17 - band 0.1414 = 0.03 <= 0.05
    failed = gate_for(0.5, 0.25, 0.05, task="ifeval")  # 0.25 - 0.1414 = 0.109 > 0.05
    assert not failed.passed and "max_drop 0.05" in failed.reasons[0]
    assert gate_for(0.2, 0.1, 0.0, task="loss", higher=False).passed  # lower is better: this improved
    assert not gate_for(0.1, 0.3, 0.0, task="loss", higher=False).passed


def test_gate_fails_when_a_must_not_drop_task_was_not_run() -> None:
    gate = evaluate_gate([], [NotRun("math", "data missing")], GATE)
    assert not gate.passed and gate.reasons == [
        "math: not evaluated (data missing); publish.gate.must_not_drop needs it"
    ]


def test_markdown_table_marks_non_significant_deltas_and_lists_not_run(tmp_path: Path) -> None:
    rows = compare(
        [task_run("math", 0.25, 0.05), task_run("ifeval", 0.5, 0.1)],
        [task_run("math", 0.75, 0.05), task_run("ifeval", 0.6, 0.1)],
    )
    gate = evaluate_gate(rows, [], GATE)
    text = markdown_table(rows, [NotRun("gsm8k", "offline | no cache")], gate)
    assert "| math | accuracy | 32 | 0.2500 ± 0.0500 | 0.7500 ± 0.0500 | +0.5000 | yes |" in text
    assert "| ifeval | accuracy | 32 | 0.5000 ± 0.1000 | 0.6000 ± 0.1000 | +0.1000 † | no |" in text
    assert "| gsm8k | offline / no cache |" in text and "**passed**" in text
    chart = tmp_path / "deltas.png"
    delta_chart(rows, chart)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    delta_chart([], tmp_path / "empty.png")  # no results still gives a (empty) chart


def test_eval_document_follows_the_contract() -> None:
    rows = compare([task_run("math", 0.25, None)], [task_run("math", 0.5, 0.1)])
    doc = eval_document(
        {"seed": 1},
        {"base": {"path": "models/base", "sha256": "b"}},
        rows,
        [NotRun("gsm8k", "offline")],
        evaluate_gate(rows, [], GATE),
    )
    assert set(doc) == {"config", "models", "results", "not_run", "gate"}
    row = doc["results"][0]
    assert set(row) == {"task", "metric", "higher_is_better", "n", "base", "tuned", "delta", "significant"}
    assert row["base"] == {"value": 0.25, "stderr": None, "seconds": 2.5}
    assert doc["not_run"] == [{"task": "gsm8k", "reason": "offline"}]
    assert doc["gate"] == {"passed": True, "reasons": []}


def test_mlflow_metric_names_and_values() -> None:
    assert mlflow_metric_name("eval", "base", "humaneval", "pass@1") == "eval/base/humaneval/pass_at_1"
    assert (
        mlflow_metric_name("eval", "delta", "gsm8k", "exact_match,strict-match")
        == "eval/delta/gsm8k/exact_match_strict-match"
    )
    rows = compare([task_run("math", 0.25, 0.05)], [task_run("math", 0.75, 0.05)])
    metrics = tracking_metrics(rows, {"base": {"latency_p50_s": 0.2, "settings": {}}}, gate_passed=True)
    assert metrics == {
        "eval/gate_passed": 1.0,
        "eval/base/math/accuracy": 0.25,
        "eval/tuned/math/accuracy": 0.75,
        "eval/delta/math/accuracy": 0.5,
        "inference/base/latency_p50_s": 0.2,
    }


def test_inference_markdown_has_one_column_per_model() -> None:
    text = inference_markdown(
        {
            "base": {"latency_p50_s": 0.25, "weights_bytes": 10, "adapter_bytes": None},
            "tuned": {"latency_p50_s": 0.5, "weights_bytes": 10, "adapter_bytes": 3},
        }
    )
    assert "| | base | tuned |" in text and "| latency p50 (s) | 0.25 | 0.5 |" in text
    assert "| adapter (bytes) | n/a | 3 |" in text


def test_parse_results_reads_groups_stderr_and_sample_counts() -> None:
    results = {
        "results": {
            "mmlu": {"acc,none": 0.4, "acc_stderr,none": 0.01, "alias": "mmlu"},
            "mmlu_stem": {"acc,none": 0.3, "acc_stderr,none": 0.02},
            "mmlu_abstract_algebra": {"acc,none": 0.2, "acc_stderr,none": 0.04},
            "ifx": {"inst,none": 0.5, "inst_stderr,none": "N/A"},
        },
        "group_subtasks": {"mmlu": ["mmlu_stem"], "mmlu_stem": ["mmlu_abstract_algebra"]},
        "n-samples": {"mmlu_abstract_algebra": {"original": 100, "effective": 10}, "ifx": {"effective": 2}},
        "higher_is_better": {"mmlu": {"acc": True}, "mmlu_stem": {"acc": True}, "ifx": {"inst": True}},
        "samples": {"ifx": [{"inst": [True, False]}, {"inst": [True, True]}]},
    }
    runs = parse_results(results, "mmlu", "mmlu")
    assert [(r.task, r.metrics["acc"].value, r.n) for r in runs] == [
        ("mmlu", 0.4, 10),
        ("mmlu_stem", 0.3, 10),
    ]
    (ifx,) = parse_results(results, "ifx", "ifx")
    assert ifx.metrics["inst"].value == 0.5 and ifx.metrics["inst"].stderr == pytest.approx(0.25)
