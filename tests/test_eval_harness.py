"""The task registry, its rendering for lm-eval, the standard-task probe, and LogicFlowLM's batching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from logicflow.errors import EvaluationError
from logicflow.evaluation import standard
from logicflow.evaluation.tasks import REGISTRY, RenderSettings, get_task, render_tasks
from logicflow.paths import Paths

SANDBOX = {"sandbox_timeout_s": 3.0, "sandbox_memory_mb": 256, "sandbox": "kernel"}


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("LOGICFLOW_CACHE", str(tmp_path_factory.getbasetemp() / "logicflow_cache"))


# ---- registry and rendering ------------------------------------------------------------------------------


def test_unknown_task_names_list_close_matches() -> None:
    with pytest.raises(EvaluationError, match=r"unknown eval task .*'humaneva'.*did you mean humaneval"):
        get_task("humaneva")
    with pytest.raises(EvaluationError, match=r"did you mean gsm8k"):
        standard.get_standard("gsm8")
    with pytest.raises(EvaluationError, match=r"known: .*hellaswag"):
        standard.get_standard("zzz")


def heldout(root: Path, rows: int = 4) -> Paths:
    from logicflow.datasets.generator import generate

    paths = Paths.from_root(root)
    paths.heldout_math.parent.mkdir(parents=True, exist_ok=True)
    paths.heldout_math.write_text(
        "".join(
            json.dumps({"id": p.id, "question": p.question, "answer": p.answer, "kind": p.kind}) + "\n"
            for p in generate(rows, seed=0, split="heldout")
        )
    )
    return paths


def test_rendered_tasks_load_in_lm_eval_with_absolute_paths(tmp_path: Path) -> None:
    from lm_eval.tasks import TaskManager

    paths = heldout(tmp_path / "root")
    folder = render_tasks(
        list(REGISTRY),
        RenderSettings(dict.fromkeys(REGISTRY, 24), SANDBOX),
        paths,
        tmp_path / "tasks",
    )
    text = (folder / "logicflow_math_heldout.yaml").read_text()
    assert json.dumps(str(paths.heldout_math)) in text and "max_gen_toks: 24" in text and "@@" not in text
    assert json.loads((folder / "settings.json").read_text()) == SANDBOX
    assert sum(1 for _ in (folder / "humaneval.jsonl").open()) == 164
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    assert {t.lm_eval_name for t in REGISTRY.values()} <= set(manager.all_tasks)


def test_missing_heldout_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="logicflow stage data"):
        render_tasks(
            ["logicflow_math_heldout"],
            RenderSettings({"logicflow_math_heldout": 8}, SANDBOX),
            Paths.from_root(tmp_path),
            tmp_path / "t",
        )


# ---- standard tasks --------------------------------------------------------------------------------------


def test_offline_standard_tasks_are_not_run_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(standard, "cached", lambda dataset: None)
    available, not_run = standard.probe(["gsm8k", "mmlu", "humaneval"], offline_names=["humaneval", "ifeval"])
    assert available == []
    assert [n.task for n in not_run] == ["gsm8k", "mmlu", "humaneval@hub"]
    assert "offline" in not_run[0].reason and "openai/gsm8k is not in the HF cache" in not_run[0].reason


def test_cached_standard_tasks_run_unless_they_execute_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(standard, "cached", lambda dataset: Path("/cache") / dataset)
    available, not_run = standard.probe(["gsm8k", "mbpp"])
    assert [t.lm_eval_name for t in available] == ["gsm8k"]
    assert not_run[0].task == "mbpp" and "outside logicflow.sandbox" in not_run[0].reason


def test_unreachable_hub_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr(standard, "cached", lambda dataset: None)
    monkeypatch.setattr(
        standard, "hub_reason", lambda dataset: f"the Hub is unreachable for {dataset} (ConnectError)"
    )
    _, not_run = standard.probe(["hellaswag"])
    assert not_run[0].reason == "the Hub is unreachable for Rowan/hellaswag (ConnectError)"


# ---- LogicFlowLM -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - (model, tokenizer)
    import torch

    from logicflow.model import build_tiny_model, load_causal_lm, load_tokenizer

    folder = tmp_path_factory.mktemp("tiny")
    build_tiny_model(folder)
    model = load_causal_lm(folder).eval()
    torch.manual_seed(0)  # large random weights: varied outputs, so stop strings end rows at different steps
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    return model, load_tokenizer(folder, template="chatml")


def requests(tok, until: list[str], max_gen_toks: int = 12) -> list:  # noqa: ANN001
    from lm_eval.api.instance import Instance

    questions = [
        "What is 3 + 4?",
        "What is 12 + 30? Think step by step.",
        "1 + 1?",
        "What is 39 + 28 + 14?",
        "Add 5 and 6.",
        "What is 21 + 7? The answer is",
    ]
    kwargs = {"until": until, "max_gen_toks": max_gen_toks, "do_sample": False}
    return [
        Instance(
            "generate_until",
            {},
            (
                tok.apply_chat_template(
                    [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
                ),
                dict(kwargs),
            ),
            i,
        )
        for i, q in enumerate(questions)
    ]


def test_continuous_batching_matches_lm_eval_batch_one(tiny) -> None:  # noqa: ANN001
    from logicflow.evaluation.harness import make_lm

    model, tok = tiny
    reference = make_lm(model, tok, batch_size=1, sample_timeout_s=60, compact=False)
    ours = make_lm(model, tok, batch_size=2, sample_timeout_s=60)
    assert type(ours).__name__ == "LogicFlowLM" and ours._mergeable
    reasons = set()
    for until in (["by"], ["Le"], ["9"], []):  # stop strings end rows at different steps: rows leave and join
        expected = reference.generate_until(requests(tok, until, 24), disable_tqdm=True)
        assert ours.generate_until(requests(tok, until, 24), disable_tqdm=True) == expected
        reasons |= set(ours.finish_reasons.values())
    assert reasons == {"stop", "max_tokens"}


def test_requests_with_different_settings_share_the_batch_and_keep_their_own(tiny) -> None:  # noqa: ANN001
    """Tasks run in one lm-eval call hand over requests with different stop strings and budgets at once: each
    row keeps its own, and the texts equal lm-eval's batch-1 texts (which runs each setting's group apart)."""
    from logicflow.evaluation.harness import make_lm

    model, tok = tiny
    mixed = [*requests(tok, ["by"], 24)[:2], *requests(tok, [], 7)[2:4], *requests(tok, ["\n\n\n"], 30)[4:]]
    reference = make_lm(model, tok, batch_size=1, sample_timeout_s=60, compact=False)
    ours = make_lm(model, tok, batch_size=4, sample_timeout_s=60)
    calls = []
    forward = ours._forward
    ours._forward = lambda **inputs: calls.append(1) or forward(**inputs)
    expected = reference.generate_until(mixed, disable_tqdm=True)
    assert ours.generate_until(mixed, disable_tqdm=True) == expected
    used = [ours.tokens_by_context[r.args[0]] for r in mixed]
    assert all(n <= budget for n, budget in zip(used, [24, 24, 7, 7, 30, 30], strict=True)), used
    assert 7 in used[2:4] and max(used[4:]) > 24, used  # the short budget ends rows, the long one is used
    one_group_after_another = max(used[:2]) + max(used[2:4]) + max(used[4:])  # model calls, at least
    assert len(calls) < one_group_after_another - 10, (len(calls), used)


def test_rows_finish_for_different_reasons_and_the_batch_refills(tiny) -> None:  # noqa: ANN001
    from logicflow.evaluation.harness import make_lm

    model, tok = tiny
    lm = make_lm(model, tok, batch_size=4, sample_timeout_s=60)
    out = lm.generate_until(requests(tok, ["by"], max_gen_toks=40), disable_tqdm=True)
    reasons = [lm.finish_reasons[r.args[0]] for r in requests(tok, ["by"], max_gen_toks=40)]
    assert "stop" in reasons and "max_tokens" in reasons and all("by" not in text for text in out)
    assert sum(lm.tokens_by_context.values()) > 0


def test_the_wall_clock_limit_stops_a_generation(tiny) -> None:  # noqa: ANN001
    from logicflow.evaluation.harness import make_lm

    model, tok = tiny
    lm = make_lm(model, tok, batch_size=2, sample_timeout_s=0.0)
    reqs = requests(tok, [], max_gen_toks=200)
    lm.generate_until(reqs, disable_tqdm=True)
    assert {lm.finish_reasons[r.args[0]] for r in reqs} == {"timeout"}
    assert list(lm.tokens_by_context.values()) == [1] * len(reqs)  # one token each, then the deadline


def test_a_dead_network_is_tried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr(standard, "cached", lambda dataset: None)
    calls = []

    def unreachable(dataset: str) -> str:
        calls.append(dataset)
        return f"the Hub is unreachable for {dataset} (ConnectError: name not known)"

    monkeypatch.setattr(standard, "hub_reason", unreachable)
    _, not_run = standard.probe(["gsm8k", "mmlu", "hellaswag"])
    assert calls == ["openai/gsm8k"]
    assert (
        not_run[2].reason
        == "Rowan/hellaswag is not in the HF cache and the Hub is unreachable (ConnectError: name not known)"
    )


def test_tasks_in_one_call_keep_their_own_item_limits(tiny, tmp_path: Path) -> None:  # noqa: ANN001
    """Per-task limits in one lm-eval call (its own `limit` is one for all): each task gets its first items,
    the same items and texts as when run alone with that limit."""
    from lm_eval.tasks import TaskManager

    from logicflow.evaluation.harness import TaskSpec, make_lm, run_tasks

    model, tok = tiny
    names = ["logicflow_math_heldout", "ifeval"]
    folder = render_tasks(
        names, RenderSettings(dict.fromkeys(names, 6), SANDBOX), heldout(tmp_path), tmp_path / "t"
    )
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    math, ifeval = (get_task(name) for name in names)
    lm = make_lm(model, tok, batch_size=4, sample_timeout_s=60)
    together = run_tasks(
        lm,
        [TaskSpec(math.name, math.lm_eval_name, None), TaskSpec(ifeval.name, ifeval.lm_eval_name, 3)],
        manager,
        seed=1,
    )
    assert [(run.task, run.n) for run in together] == [(math.name, 4), (ifeval.name, 3)]  # 4 held-out rows
    (alone,) = run_tasks(lm, [TaskSpec(ifeval.name, ifeval.lm_eval_name, 3)], manager, seed=1)
    assert [s["doc_id"] for s in together[1].samples] == [0, 1, 2]
    assert [s["resps"] for s in together[1].samples] == [s["resps"] for s in alone.samples]
    assert together[0].generated_tokens > 0 and together[0].finish_reasons
