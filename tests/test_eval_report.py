"""Paired statistics and the publish gate from known numbers; the report files' contents."""

from __future__ import annotations

from pathlib import Path

import pytest

from logicflow.config import GateConfig
from logicflow.evaluation.harness import Measurement, TaskRun, parse_results
from logicflow.evaluation.outputs import mlflow_metric_name, tracking_metrics
from logicflow.evaluation.report import (
    Gate,
    NotRun,
    compare,
    delta_chart,
    eval_document,
    evaluate_gate,
    inference_markdown,
    markdown_table,
)
from logicflow.evaluation.stats import compare_items, mcnemar_exact, wilson


def task_run(
    task: str, items: list, metric: str = "accuracy", *, cut_off: int = 0, no_answer: int | None = None
) -> TaskRun:
    """A TaskRun scored per item (0/1, or lists of per-instruction results)."""
    values = [sum(v) / len(v) if isinstance(v, list) else v for v in items]
    return TaskRun(
        task,
        {metric: Measurement(sum(values) / len(values), None)},
        {metric: True},
        len(items),
        2.5,
        finish_reasons={"eos": len(items) - cut_off, "max_tokens": cut_off},
        items={metric: list(items)},
        no_answer=no_answer,
    )


def pairs(both: int, base_only: int, tuned_only: int, neither: int) -> tuple[list[int], list[int]]:
    """Per-item base/tuned pass-fail lists from a 2x2 table."""
    base = [1] * both + [1] * base_only + [0] * tuned_only + [0] * neither
    tuned = [1] * both + [0] * base_only + [1] * tuned_only + [0] * neither
    return base, tuned


def test_mcnemar_exact_from_a_2x2_table() -> None:
    # 5/32 -> 0/32 with all five discordant: the example, p = 2 * 0.5^5 = 0.0625
    assert mcnemar_exact(5, 0) == pytest.approx(0.0625)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(2, 10) == pytest.approx(0.0385742, abs=1e-6)  # binomial(12, 1/2), two-sided
    base, tuned = pairs(0, 5, 0, 27)
    paired = compare_items(base, tuned)
    assert paired.test == "mcnemar-exact" and paired.p_value == pytest.approx(0.0625)
    assert paired.delta == pytest.approx(-5 / 32)


def test_wilson_bounds_against_known_values() -> None:
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 32) == pytest.approx((0.0686, 0.3175), abs=1e-4)  # worked by hand
    assert wilson(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    low, high = wilson(32, 32)
    assert high == 1.0 and low == pytest.approx(0.8928, abs=1e-4)


def test_paired_bootstrap_for_non_binary_items_is_seeded_and_pooled() -> None:
    base = [[1, 0], [1, 1, 1], [0], [1, 0]] * 8
    tuned = [[1, 1], [1, 1, 1], [0], [0, 0]] * 8
    first, second = compare_items(base, tuned), compare_items(base, tuned)
    assert first == second and first.test == "paired-bootstrap"
    assert first.base == pytest.approx(5 / 8) and first.tuned == pytest.approx(5 / 8)  # pooled instructions
    assert first.delta_ci[0] < 0 < first.delta_ci[1] and first.p_value > 0.5


def test_bootstrap_interval_of_a_zero_score_starts_at_exactly_zero() -> None:
    base = [[0, 0], [0], [0, 0, 0]]
    tuned = [[1, 0], [0], [0, 0, 0]]
    paired = compare_items(base, tuned)
    assert paired.base_ci == (0.0, 0.0) and paired.tuned_ci[0] == 0.0 <= paired.tuned <= paired.tuned_ci[1]


def test_floor_for_both_models_is_inconclusive_not_no_change() -> None:
    (row,) = compare([task_run("math", [0] * 32)], [task_run("math", [0] * 32)])
    assert row.status == "inconclusive" and row.p_value == 1.0
    (row,) = compare([task_run("math", [1] * 8)], [task_run("math", [1] * 8)])
    assert row.status == "inconclusive"


def test_rows_carry_intervals_p_and_answer_quality() -> None:
    base, tuned = pairs(10, 2, 40, 148)
    (row,) = compare(
        [task_run("math", base, cut_off=20, no_answer=30)], [task_run("math", tuned, no_answer=0)]
    )
    assert row.n == 200 and row.primary and row.status == "improved" and row.p_value < 1e-8
    assert row.base.ci == pytest.approx(wilson(12, 200)) and row.tuned.ci == pytest.approx(wilson(50, 200))
    assert row.delta_ci[0] > 0.1 and row.delta_ci[1] < 0.26
    assert (row.base.cut_off, row.base.no_answer, row.tuned.no_answer) == (0.1, 0.15, 0.0)


def test_only_tasks_and_metrics_present_for_both_models_are_compared() -> None:
    rows = compare([task_run("a", [1, 0]), task_run("b", [0, 1])], [task_run("a", [1, 1])])
    assert [r.task for r in rows] == ["a"]


GATE = GateConfig(must_improve=["math"], must_not_drop=["code"], max_drop=0.15, alpha=0.05)


def gate_for(math: tuple[int, int, int, int], code: tuple[int, int, int, int]) -> Gate:
    rows = compare(
        [task_run("math", pairs(*math)[0]), task_run("code", pairs(*code)[0], metric="pass@1")],
        [task_run("math", pairs(*math)[1]), task_run("code", pairs(*code)[1], metric="pass@1")],
    )
    return evaluate_gate(rows, [], GATE)


def test_gate_passes_a_significant_gain_with_no_drop() -> None:
    gate = gate_for((20, 2, 100, 78), (150, 2, 2, 46))
    assert gate.result == "passed" and gate.passed and gate.reasons == []
    assert [(r.task, r.rule, r.result) for r in gate.rules] == [
        ("math", "must_improve", "passed"),
        ("code", "must_not_drop", "passed"),
    ]
    code_gain = gate_for((20, 2, 100, 78), (100, 0, 60, 40))  # code gains clearly: no drop within the CI
    assert "the drop is at most 0.000 (95%)" in code_gain.rules[1].detail


def test_gate_fails_a_significant_drop_even_with_a_gain() -> None:
    gate = gate_for((20, 2, 100, 78), (10, 20, 0, 170))  # code 30/200 -> 10/200, p ~ 2e-6
    assert gate.result == "failed" and not gate.passed
    assert gate.reasons[0].startswith("code must_not_drop failed: significant drop")


def test_gate_fails_no_gain_and_is_inconclusive_on_a_small_n() -> None:
    assert gate_for((20, 10, 10, 160), (150, 2, 2, 46)).result == "failed"  # math delta 0
    small = gate_for((20, 2, 100, 78), (10, 3, 1, 18))  # code n = 32: drop could be > 0.15
    assert small.result == "inconclusive" and "n too small" in small.reasons[0]
    floor = gate_for((0, 0, 0, 50), (150, 2, 2, 46))
    assert floor.result == "inconclusive" and "no signal" in floor.reasons[0]
    weak = gate_for((20, 4, 9, 167), (150, 2, 2, 46))  # a gain, p = 0.27
    assert weak.result == "inconclusive" and "gain not significant" in weak.reasons[0]


def test_gate_fails_when_a_ruled_task_was_not_run() -> None:
    gate = evaluate_gate([], [NotRun("math", "data missing")], GATE)
    assert gate.result == "failed"
    assert gate.reasons[0] == "math must_improve failed: not evaluated (data missing)"
    assert gate.reasons[1] == "code must_not_drop failed: not evaluated (not in eval.tasks)"


def test_markdown_table_shows_intervals_p_and_lists_not_run(tmp_path: Path) -> None:
    base, tuned = pairs(10, 2, 40, 148)
    rows = compare([task_run("math", base)], [task_run("math", tuned)])
    gate = evaluate_gate(rows, [], GateConfig(must_improve=["math"], must_not_drop=[]))
    text = markdown_table(rows, [NotRun("gsm8k", "offline | no cache")], gate)
    assert "| math | accuracy | 200 | 0.060 [0.035, 0.102] | 0.250 [0.195, 0.314] | +0.190 [" in text
    assert "| improved | 0% / 0% |" in text
    assert "| gsm8k | offline / no cache |" in text and "**passed**" in text
    assert "math `must_improve`: **passed**: significant gain" in text
    chart = tmp_path / "deltas.png"
    delta_chart(rows, chart)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    delta_chart([], tmp_path / "empty.png")  # no results still gives a (empty) chart


def test_eval_document_follows_the_contract() -> None:
    base, tuned = pairs(1, 0, 1, 2)
    rows = compare([task_run("math", base)], [task_run("math", tuned)])
    gate = evaluate_gate(rows, [], GATE)
    doc = eval_document(
        {"seed": 1},
        {"base": {"path": "models/base", "sha256": "b"}},
        rows,
        [NotRun("gsm8k", "offline")],
        gate,
    )
    assert set(doc) == {"config", "models", "results", "not_run", "gate"}
    row = doc["results"][0]
    assert set(row) == {
        "task", "metric", "higher_is_better", "primary", "n", "base", "tuned", "delta", "delta_ci",
        "p_value", "test", "status",
    }  # fmt: skip
    assert row["base"] == {
        "value": 0.25,
        "ci": [float(f"{v:.6g}") for v in wilson(1, 4)],
        "seconds": 2.5,
        "cut_off": 0.0,
        "no_answer": None,
    }
    assert doc["not_run"] == [{"task": "gsm8k", "reason": "offline"}]
    big = compare([task_run("math", pairs(0, 0, 60, 140)[0])], [task_run("math", pairs(0, 0, 60, 140)[1])])
    tiny_p = eval_document({}, {}, big, [], gate)["results"][0]["p_value"]
    assert tiny_p == pytest.approx(2 * 0.5**60, rel=1e-5) and tiny_p > 0  # significant digits, not decimals
    assert doc["gate"]["result"] == "failed" and doc["gate"]["passed"] is False
    assert doc["gate"]["rules"][0]["rule"] == "must_improve"


def test_mlflow_metric_names_and_values() -> None:
    assert mlflow_metric_name("eval", "base", "humaneval", "pass@1") == "eval/base/humaneval/pass_at_1"
    assert (
        mlflow_metric_name("eval", "delta", "gsm8k", "exact_match,strict-match")
        == "eval/delta/gsm8k/exact_match_strict-match"
    )
    rows = compare([task_run("math", [1, 0, 0, 0])], [task_run("math", [1, 1, 1, 0])])
    metrics = tracking_metrics(rows, {"base": {"latency_p50_s": 0.2, "settings": {}}}, gate_passed=True)
    assert metrics == {
        "eval/gate_passed": 1.0,
        "eval/base/math/accuracy": 0.25,
        "eval/tuned/math/accuracy": 0.75,
        "eval/delta/math/accuracy": 0.5,
        "eval/p_value/math/accuracy": 0.5,
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


def test_inference_markdown_says_when_serving_cost_was_not_measured() -> None:
    assert "Not measured (eval.serving_cost is false)" in inference_markdown({})


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
        "samples": {"ifx": [{"doc_id": 1, "inst": [True, True]}, {"doc_id": 0, "inst": [True, False]}]},
    }
    runs = parse_results(results, "mmlu", "mmlu")
    assert [(r.task, r.metrics["acc"].value, r.n) for r in runs] == [
        ("mmlu", 0.4, 10),
        ("mmlu_stem", 0.3, 10),
    ]
    (ifx,) = parse_results(results, "ifx", "ifx")
    assert ifx.metrics["inst"].value == 0.5 and ifx.metrics["inst"].stderr is None  # lm-eval gave "N/A"
    assert ifx.items == {"inst": [[1.0, 0.0], [1.0, 1.0]]}  # per item, in doc order, for pairing
