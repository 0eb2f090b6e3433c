"""A deliberately damaged tuned model fails the gate, and the publish stage then pushes nothing.

The base is the real SmolLM2-135M-Instruct (the model stage's offline GGUF path); the "tuned" model is the
base with a LoRA adapter whose weights are scaled up until it babbles. Real evaluate stage, real scorers,
real paired statistics: the gate must fail on a significant drop, not merely come out inconclusive.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hub_server import HubServer
from logicflow.config import load_config
from logicflow.datasets.generator import generate
from logicflow.paths import Paths
from logicflow.stages import card, evaluate, model, publish
from publish_fixtures import shared_models, write_run

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_damaged_model_test_token"
pytestmark = pytest.mark.slow

EVAL = [
    "eval.tasks=[logicflow_math_heldout, ifeval]",
    # 48 of the 160 IFEval-style prompts: enough for a babbling model's drop to be significant, and the
    # slow test stays a few minutes (all 160 on two models took over 9 minutes)
    "eval.per_task={logicflow_math_heldout: {limit: 48, max_new_tokens: 48},"
    " ifeval: {limit: 48, max_new_tokens: 256}}",
    "eval.batch_size=16",
    "publish.gate={must_improve: [logicflow_math_heldout], must_not_drop: [ifeval], max_drop: 0.15}",
]


def damage(paths: Paths, scale: float) -> None:
    """models/adapter + models/merged: the base with a LoRA whose update is `scale` times too large."""
    import torch
    from peft import LoraConfig, get_peft_model

    from logicflow.model import load_causal_lm

    torch.manual_seed(0)
    peft_model = get_peft_model(
        load_causal_lm(paths.base_model),
        LoraConfig(r=8, lora_alpha=8 * scale, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    peft_model.save_pretrained(paths.adapter)
    peft_model.merge_and_unload().save_pretrained(paths.merged)
    for file in paths.base_model.glob("tokenizer*"):
        shutil.copy(file, paths.merged / file.name)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny models the publish fixtures lay out (the publish half needs a finished run around them)."""
    return shared_models(tmp_path_factory)


@pytest.fixture(scope="module")
def damaged_eval(tmp_path_factory: pytest.TempPathFactory) -> dict:
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.setenv("LOGICFLOW_EVAL_CACHE", "0")
    try:
        paths = Paths.from_root(tmp_path_factory.mktemp("damaged"))
        cfg = load_config(ROOT / "params.yaml", "cpu", EVAL)
        model.run(cfg, paths)
        damage(paths, scale=64.0)
        problems = generate(48, seed=0, split="heldout", difficulty="easy")
        paths.heldout_math.parent.mkdir(parents=True, exist_ok=True)
        paths.heldout_math.write_text(
            "".join(
                json.dumps({"id": p.id, "question": p.question, "answer": p.answer, "kind": p.kind}) + "\n"
                for p in problems
            )
        )
        evaluate.run(cfg, paths)
        return json.loads(paths.eval_json.read_text())
    finally:
        mp.undo()


def test_damaged_model_fails_the_gate_on_significant_drops(damaged_eval: dict) -> None:
    gate = damaged_eval["gate"]
    assert gate["result"] == "failed" and not gate["passed"]
    rules = {(r["task"], r["rule"]): r for r in gate["rules"]}
    print(json.dumps(gate["rules"], indent=1))  # shown when an assertion below fails
    drop = rules[("ifeval", "must_not_drop")]
    assert drop["result"] == "failed" and drop["detail"].startswith("significant drop")
    assert rules[("logicflow_math_heldout", "must_improve")]["result"] == "failed"
    ifeval = next(r for r in damaged_eval["results"] if r["task"] == "ifeval" and r["primary"])
    assert ifeval["status"] == "dropped" and ifeval["p_value"] < 0.05 and ifeval["delta_ci"][1] < 0


def test_damaged_models_report_publishes_nothing_to_the_hub(
    damaged_eval: dict, models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = write_run(tmp_path / "run", models)
    fixture_models = json.loads(paths.eval_json.read_text())["models"]  # the run's own weights digests
    paths.eval_json.write_text(json.dumps({**damaged_eval, "models": fixture_models}))
    overrides = ["publish.targets=[local, hub]", "publish.repo_id=me/damaged"]
    cfg = load_config(ROOT / "params.yaml", "smoke", overrides)
    card.run(cfg, paths)
    with HubServer(TOKEN) as hub:
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result = publish.run(cfg, paths)
        assert result.status == "not published" and not result.gate_passed
        assert dict((t.target, t.status) for t in result.targets)["hub"] == "skipped"
        assert hub.requests == []  # the Hub was not even contacted
    assert "Evaluation gate: **failed**" in (paths.card.readme).read_text()
