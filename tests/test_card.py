"""The `card` stage: a Hub-valid card rendered only from recorded run data, byte-identical on re-render."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from logicflow.config import load_config
from logicflow.errors import PublishError
from logicflow.paths import Paths
from logicflow.publishing.card import fence_for, fmt_value
from logicflow.publishing.card_data import dvc_lock_digest
from logicflow.stages import card
from publish_fixtures import RUN_ID, shared_models, write_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_models(tmp_path_factory)


@pytest.fixture
def cfg():
    return load_config(ROOT / "params.yaml", "smoke")


@pytest.fixture
def run_paths(tmp_path: Path, models: Path) -> Paths:
    return write_run(tmp_path / "project", models)


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("\n---\n", 1)[0][4:])


def _prose(text: str) -> str:
    """The body without fenced code blocks."""
    return re.sub(r"```.*?```", "", text.split("\n---\n", 1)[1], flags=re.S)


def test_card_front_matter_matches_the_run(cfg, run_paths: Paths) -> None:
    result = card.run(cfg, run_paths)
    text = (run_paths.card_dir / "README.md").read_text()
    meta = _front_matter(text)
    eval_report = json.loads(run_paths.eval_json.read_text())

    assert meta["license"] == "apache-2.0"  # inherited from models/base manifest (card.license is null)
    assert meta["base_model"] == "logicflow/tiny-random-llama"
    assert meta["datasets"] == [
        "O1-OPEN/OpenO1-SFT",
        "open-thoughts/OpenThoughts-114k",
        "open-r1/OpenR1-Math-220k",
    ]
    assert {"lora", "reasoning"} <= set(meta["tags"])
    assert meta["pipeline_tag"] == "text-generation" and meta["library_name"] == "transformers"
    # model-index: every measured tuned score, exactly as in eval.json
    claimed = {
        (r["task"]["name"], m["type"]): m["value"]
        for entry in meta["model-index"]
        for r in entry["results"]
        for m in r["metrics"]
    }
    assert claimed == {(r["task"], r["metric"]): r["tuned"]["value"] for r in eval_report["results"]}
    # huggingface_hub parses it back into the same EvalResults
    loaded = ModelCard.load(run_paths.card_dir / "README.md")
    assert sorted((e.task_name, e.metric_value) for e in loaded.data.eval_results) == sorted(
        (r["task"], r["tuned"]["value"]) for r in eval_report["results"]
    )
    assert result.eval_results == 2 and result.not_run == 1 and result.missing_inputs == []
    # the loss plot travels with the card, byte for byte
    assert (run_paths.card_dir / "loss.png").read_bytes() == (
        run_paths.train_reports / "loss.png"
    ).read_bytes()
    assert "![Training and validation loss](loss.png)" in text


def test_card_body_renders_every_recorded_fact_and_no_placeholder(cfg, run_paths: Paths) -> None:
    card.run(cfg, run_paths)
    text = (run_paths.card_dir / "README.md").read_text()
    prose = _prose(text)
    for marker in ("[More Information Needed]", "{{", "{%", "TODO", "None", "nan"):
        assert marker not in prose, marker
    # training configuration: every recorded hyperparameter, sorted, not retyped
    params = [
        "lora.alpha",
        "lora.method",
        "lora.r",
        "lora.target_modules",
        "model.id",
        "model.template",
        "train.batch_size",
        "train.learning_rate",
        "train.lr_scheduler",
        "train.max_steps",
        "train.seed",
    ]
    rows = re.findall(
        r"^\| `([\w.]+)` \| (.+?) \|$",
        text.split("## Training configuration")[1].split("Training run results")[0],
        flags=re.M,
    )
    assert [key for key, _ in rows] == params
    assert dict(rows)["train.learning_rate"] == "0.0003"
    # training data: each dataset with rows, digests and clean/quarantined counts
    assert "| raw_sha256 | " + "1" * 64 + " |" in text
    assert (
        "| validation: quarantined_by_reason.overlong | 1 |" in text and "| validation: clean | 15 |" in text
    )
    assert "| validation: duplicates.exact | 0 |" in text
    assert "| check | evaluated | family | mostly | success | table | unexpected |" in text
    assert "| answer_boxed | 48 | content | 0.95 | true | rows | 1 |" in text
    # benchmark table: base | tuned | delta with stderr; the not-run task with its reason
    assert (
        "| logicflow_math_heldout | exact_match | 8 | 0.1250 ± 0.1250 | 0.5000 ± 0.1890 | +0.3750 | yes |"
        in text
    )
    assert "- **humaneval**: sandbox unavailable: no isolated executor on this host" in text
    assert (
        "| tokens/s, batch 1 | 75.5 | 75.5 |" in text and "| adapter (bytes) | not measured | 4096 |" in text
    )
    # limitations come from the measurements
    limitations = text.split("## Limitations")[1].split("## Lineage")[0]
    assert "Regressed on ifeval (prompt_level_strict_acc)" in limitations
    assert "Not evaluated on humaneval" in limitations and "offline generator" in limitations
    # lineage
    lineage = text.split("## Lineage")[1]
    metrics = json.loads((run_paths.train_reports / "metrics.json").read_text())
    for value in (
        RUN_ID,
        metrics["merged_sha256"],
        metrics["base_sha256"],
        dvc_lock_digest(run_paths.dvc_lock),
        f"http://127.0.0.1:5000/#/experiments/1/runs/{RUN_ID}",
    ):
        assert value in lineage
    # usage and chat template
    assert "tokenizer.apply_chat_template(messages, add_generation_prompt=True" in text
    assert "max_new_tokens=16" in text  # the eval's generation setting, read from eval.json
    assert "<|im_start|>assistant" in text.split("## Chat template")[1]
    assert "@misc{logicflow_smollm2_135m_thinking," in text


def test_card_is_byte_identical_for_the_same_inputs(cfg, tmp_path: Path, models: Path) -> None:
    first = write_run(tmp_path / "a", models)
    second = write_run(tmp_path / "somewhere" / "else", models)  # other absolute paths, other mtimes
    card.run(cfg, first)
    before = (first.card_dir / "README.md").read_bytes()
    card.run(cfg, first)
    assert (first.card_dir / "README.md").read_bytes() == before
    card.run(cfg, second)
    assert (second.card_dir / "README.md").read_bytes() == before
    # a re-render after the card's own dvc.lock entry appears does not change it either
    first.dvc_lock.write_text(first.dvc_lock.read_text() + "  card:\n    cmd: logicflow stage card\n")
    card.run(cfg, first)
    assert (first.card_dir / "README.md").read_bytes() == before


def test_failed_gate_is_stated(cfg, tmp_path: Path, models: Path) -> None:
    paths = write_run(tmp_path / "p", models, passed=False)
    result = card.run(cfg, paths)
    text = (paths.card_dir / "README.md").read_text()
    assert not result.gate_passed
    assert "Evaluation gate: **failed**:" in text
    assert "The evaluation gate failed: ifeval prompt_level_strict_acc dropped" in text


def test_missing_eval_report_renders_no_card(cfg, run_paths: Paths) -> None:
    card.run(cfg, run_paths)
    previous = (run_paths.card_dir / "README.md").read_bytes()
    run_paths.eval_json.unlink()
    with pytest.raises(PublishError, match=r"reports/eval.json: not found; run the `evaluate` stage") as err:
        card.run(cfg, run_paths)
    assert "\n" not in str(err.value)
    assert (run_paths.card_dir / "README.md").read_bytes() == previous  # the earlier card is untouched


def test_incomplete_eval_report_is_refused_not_guessed(cfg, run_paths: Paths) -> None:
    report = json.loads(run_paths.eval_json.read_text())
    del report["results"][0]["tuned"]
    run_paths.eval_json.write_text(json.dumps(report))
    with pytest.raises(PublishError, match=r"results\[0\]: missing key 'tuned'"):
        card.run(cfg, run_paths)
    assert not run_paths.card_dir.exists()


def test_optional_reports_missing_are_said_not_invented(cfg, run_paths: Paths) -> None:
    run_paths.inference_json.unlink()
    (run_paths.train_reports / "loss.png").unlink()
    result = card.run(cfg, run_paths)
    text = (run_paths.card_dir / "README.md").read_text()
    assert result.missing_inputs == ["reports/inference.json", "reports/train/loss.png"]
    assert "Not recorded (`reports/inference.json` missing): no cost is claimed." in text
    assert "loss.png" not in [p.name for p in run_paths.card_dir.iterdir()]


def test_unknown_license_needs_card_license(cfg, run_paths: Paths) -> None:
    manifest = run_paths.base_model / "logicflow_model.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "license": None}))
    with pytest.raises(PublishError, match="set card.license"):
        card.run(cfg, run_paths)
    cfg.card.license = "mit"
    card.run(cfg, run_paths)
    assert _front_matter((run_paths.card_dir / "README.md").read_text())["license"] == "mit"


def test_base_weights_changed_since_training_is_an_error(cfg, run_paths: Paths) -> None:
    metrics = run_paths.train_reports / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "base_sha256": "0" * 64}))
    with pytest.raises(PublishError, match="models/base changed since training"):
        card.run(cfg, run_paths)


def test_dvc_lock_digest_covers_only_stages_before_the_card(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  train:\n    cmd: a\n")
    base = dvc_lock_digest(lock)
    lock.write_text(
        "schema: '2.0'\nstages:\n  train:\n    cmd: a\n  card:\n    cmd: b\n  publish:\n    cmd: c\n"
    )
    assert dvc_lock_digest(lock) == base
    lock.write_text("schema: '2.0'\nstages:\n  train:\n    cmd: changed\n")
    assert dvc_lock_digest(lock) != base
    assert dvc_lock_digest(tmp_path / "absent.lock") is None


def test_formatting_helpers() -> None:
    assert fence_for("no ticks") == "```"
    assert fence_for("has ``` inside") == "````"
    assert fmt_value(0.0003) == "0.0003" and fmt_value(True) == "true" and fmt_value(None) == "null"
    assert fmt_value("a|b") == "a\\|b" and fmt_value([1, 2]) == "[1, 2]"


def test_card_copies_nothing_from_a_stale_card_dir(cfg, run_paths: Paths) -> None:
    run_paths.card_dir.mkdir(parents=True)
    (run_paths.card_dir / "stale.txt").write_text("old")
    card.run(cfg, run_paths)
    assert sorted(p.name for p in run_paths.card_dir.iterdir()) == ["README.md", "loss.png"]
    shutil.rmtree(run_paths.card_dir)


def _set_method(paths: Paths, method: str, merged: bool) -> None:
    manifest = paths.merged / "logicflow_train.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "method": method, "merged": merged}))


def test_card_describes_the_weights_each_method_produced(cfg, run_paths: Paths) -> None:
    card.run(cfg, run_paths)
    text = (run_paths.card_dir / "README.md").read_text()
    assert "holds the merged weights" in text and "same greedy tokens as base + adapter on 3 prompts" in text
    _set_method(run_paths, "full", merged=True)
    card.run(cfg, run_paths)
    text = (run_paths.card_dir / "README.md").read_text()
    assert "fully fine-tuned weights" in text and 'subfolder="adapter"' not in text
    _set_method(run_paths, "prompt_tuning", merged=False)
    card.run(cfg, run_paths)
    text = (run_paths.card_dir / "README.md").read_text()
    assert "The top-level weights are the **unchanged base model**: prompt_tuning learns soft prompts" in text
    assert "gives the base model; load the adapter" in text and 'subfolder="adapter"' in text
