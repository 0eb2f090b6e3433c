"""Train stage on the tiny random Llama: the loss drops, outputs follow the contract, the merged model
equals base + adapter, MLflow holds the run, a SIGKILLed run resumes to the same result, two processes
shard the data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from logicflow.stages.train import run
from logicflow.training import checkpoints
from logicflow.training.data import to_dataset
from train_fixtures import OVERRIDES, config, make_project, make_rows, tracking_env

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        yield tracking_env(mp, tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="module")
def trained(mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory):
    """One uninterrupted run; the resume test compares against it."""
    paths = make_project(tmp_path_factory.mktemp("trained"))
    return paths, run(config(paths), paths)


def read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as fh:
        return list(csv.DictReader(fh))


def lora_tensors(adapter: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(adapter / "adapter_model.safetensors")


def test_loss_drops_and_outputs_follow_the_contract(trained) -> None:
    paths, result = trained
    reports = paths.train_reports
    metrics = json.loads(reports.metrics.read_text())
    for key in (
        "train_loss",
        "eval_loss",
        "global_step",
        "train_tokens",
        "tokens_per_s",
        "runtime_s",
        "adapter_bytes",
        "merged_bytes",
        "merged_sha256",
        "base_sha256",
    ):
        assert metrics[key] is not None, key
    assert metrics["global_step"] == result.global_step == 16
    assert metrics["train_tokens"] > 0 and metrics["tokens_per_s"] > 0
    assert metrics["merged_equivalent"] is True

    rows = read_csv(reports.loss_csv)
    assert list(rows[0]) == ["step", "train_loss", "eval_loss", "train_loss_smoothed"]
    assert [int(r["step"]) for r in rows] == list(range(1, 17))
    first, last = float(rows[0]["train_loss"]), float(rows[-1]["train_loss_smoothed"])
    assert last < first - 0.15, (first, last)  # learned something (a random model starts at ln(vocab))
    evals = [float(r["eval_loss"]) for r in rows if r["eval_loss"]]
    assert (
        len(evals) == 2 and evals[1] < evals[0] and metrics["eval_loss"] == pytest.approx(evals[1], abs=1e-5)
    )
    assert reports.loss_plot.read_bytes()[:4] == b"\x89PNG"

    # hyperparameters read back from the trainer and PEFT, not retyped
    params = json.loads(reports.params.read_text())
    assert params["trainer"]["learning_rate"] == 0.01
    assert params["trainer"]["per_device_train_batch_size"] == 4
    assert params["trainer"]["assistant_only_loss"] is True
    assert params["trainer"]["world_size"] == 1
    assert params["trainer"]["compact_lm_head"] is True  # CPU: the loss path that scores label positions only
    assert params["peft"]["r"] == 8 and params["peft"]["lora_alpha"] == 16
    targets = {name.rsplit(".", 1)[-1] for name in params["peft"]["target_modules"]}  # all-linear, resolved
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

    # the adapter was trained (LoRA B starts at zero) and names its base by id
    tensors = lora_tensors(paths.adapter)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in tensors.items())
    adapter_config = json.loads((paths.adapter / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "logicflow/tiny-random-llama"
    assert list(paths.merged.glob("*.safetensors")) and (paths.merged / "chat_template.jinja").exists()

    run_file = json.loads(paths.mlflow_run_file.read_text())
    assert set(run_file) == {"run_id", "experiment_id", "experiment_name", "tracking_uri", "run_url"}
    assert run_file["run_id"] == result.run_id and run_file["run_url"] is None
    assert checkpoints.read_state(paths.checkpoints).completed


def test_merged_model_equals_base_plus_adapter(trained) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from logicflow.model import load_tokenizer
    from logicflow.training.merge import greedy

    paths, _ = trained
    tok = load_tokenizer(paths.merged)  # the merged folder's own template
    merged = AutoModelForCausalLM.from_pretrained(paths.merged).eval()  # plain transformers, no logicflow
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(paths.base_model), paths.adapter
    ).eval()
    prompts = [[m for m in row["messages"] if m["role"] == "user"] for row in make_rows(4, seed=7)]
    assert greedy(merged, tok, prompts, 12) == greedy(adapted, tok, prompts, 12)
    ids = tok.apply_chat_template(
        prompts[0], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, atol=1e-4, rtol=1e-4)


def test_mlflow_run_holds_params_inputs_metrics_and_artifacts(trained, mlflow_uri: str) -> None:
    from mlflow import MlflowClient

    from logicflow.model import read_manifest

    paths, result = trained
    client = MlflowClient(mlflow_uri)
    mlrun = client.get_run(result.run_id)
    assert mlrun.info.status == "FINISHED"
    params = mlrun.data.params
    assert (
        params["train.learning_rate"] == "0.01" and params["lora.r"] == "8" and params["profile"] == "smoke"
    )
    assert mlrun.data.tags["base_model"] == "logicflow/tiny-random-llama"
    assert mlrun.data.tags["base_model.sha256"] == read_manifest(paths.base_model).sha256
    inputs = {
        d.dataset.name: (d.dataset.digest, [t.value for t in d.tags]) for d in mlrun.inputs.dataset_inputs
    }
    assert inputs["train"][1] == ["training"] and inputs["validation"][1] == ["validation"]
    assert all(digest for digest, _ in inputs.values())
    for key in ("loss", "learning_rate", "grad_norm", "tokens_per_s"):
        history = client.get_metric_history(result.run_id, key)
        assert sorted(m.step for m in history) == list(range(1, 17)), key
    assert [m.step for m in client.get_metric_history(result.run_id, "eval_loss")] == [8, 16]
    assert any(k.startswith("system/") for k in mlrun.data.metrics)
    artifacts = {
        a.path
        for folder in ("plots", "adapter", "train")
        for a in client.list_artifacts(result.run_id, folder)
    }
    assert {
        "plots/loss.png",
        "plots/loss.csv",
        "adapter/adapter_model.safetensors",
        "train/params.json",
    } <= artifacts


def test_prompt_tokens_carry_no_loss(trained, tmp_path: Path) -> None:
    """TRL's tokenization with our template: labels only on the assistant turn; thinking optional."""
    from logicflow.model import load_tokenizer
    from logicflow.training import trainer as build

    paths, _ = trained
    tok = load_tokenizer(paths.base_model, template="chatml")
    row = make_rows(1, seed=3, system=True)[0]
    hw = build.Hardware(cuda=False, bf16=False, bitsandbytes=False, flash_attn=False)
    for thinking in (True, False):
        cfg = config(paths, f"train.train_on_thinking={str(thinking).lower()}")
        plan = build.plan_hardware(cfg.train, cfg.model, hw)
        args = build.build_sft_config(cfg, tmp_path / "out", plan, hw, has_eval=False)
        model = build.load_model(paths.base_model, plan, hw)
        trainer = build.build_trainer(
            model,
            tok,
            args,
            to_dataset([row], thinking),
            None,
            build.build_peft_config(cfg.lora, cfg.model),
            [],
        )
        example = trainer.train_dataset[0]
        ids, labels = example["input_ids"], example["labels"]
        first = next(i for i, label in enumerate(labels) if label != -100)
        assert all(label == -100 for label in labels[:first])  # system + user + assistant header
        assert tok.decode(ids[:first]).endswith(
            "<|im_start|>assistant\n" + ("" if thinking else f"<think>\n{row['thinking']}\n</think>\n\n")
        )
        supervised = tok.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
        answer = row["messages"][-1]["content"] + "<|im_end|>"
        assert supervised == (f"<think>\n{row['thinking']}\n</think>\n\n{answer}" if thinking else answer)


@pytest.mark.parametrize(
    ("template", "end", "system"),
    [
        ("gemma", "<end_of_turn>", "<start_of_turn>user\nThink step by step.\n\nWhat is"),  # folded into user
        (
            "llama3",
            "<|eot_id|>",
            "<|start_header_id|>system<|end_header_id|>\n\nThink step by step.<|eot_id|>",
        ),
    ],
)
def test_template_supervises_only_the_model_turn(trained, template: str, end: str, system: str) -> None:  # noqa: ANN001
    from logicflow.model import load_tokenizer

    paths, _ = trained
    tok = load_tokenizer(paths.base_model, template=template)
    row = make_rows(1, seed=4, system=True)[0]
    messages = [dict(m) for m in row["messages"]]
    messages[-1]["thinking"] = row["thinking"]
    for thinking in (True, False):
        out = tok.apply_chat_template(
            messages,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            train_on_thinking=thinking,
        )
        supervised = tok.decode(
            [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
        )
        answer = messages[-1]["content"] + end
        assert supervised == (f"<think>\n{row['thinking']}\n</think>\n\n{answer}" if thinking else answer)
        assert system in tok.decode(out["input_ids"])


def _cli(root: Path, *extra: str) -> list[str]:
    sets = [arg for item in [*OVERRIDES, *extra] for arg in ("--set", item)]
    return [
        sys.executable,
        "-m",
        "logicflow.cli",
        "stage",
        "train",
        "--root",
        str(root),
        "--profile",
        "smoke",
        *sets,
    ]


def test_resume_after_sigkill_reaches_the_same_adapter(trained, mlflow_uri: str, tmp_path: Path) -> None:
    reference, _ = trained
    paths = make_project(tmp_path / "killed")
    proc = subprocess.Popen(
        _cli(paths.root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ
    )
    try:
        deadline = time.monotonic() + 240
        while not checkpoints.complete_checkpoints(paths.checkpoints):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.stderr.close()
    killed_at = checkpoints.last_checkpoint(paths.checkpoints)
    assert killed_at is not None and int(killed_at.name.split("-")[1]) < 16  # really mid-run
    assert not (paths.train_reports.metrics).exists()
    killed_run = checkpoints.read_state(paths.checkpoints).mlflow_run_id

    result = run(config(paths), paths, resume=True)
    assert result.resumed_from == str(killed_at)
    assert result.run_id == killed_run  # the same MLflow run continues
    want, got = read_csv(reference.train_reports.loss_csv), read_csv(paths.train_reports.loss_csv)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for a, b in zip(want, got, strict=True):
        for key in ("train_loss", "eval_loss"):
            assert (a[key] == "") == (b[key] == "")
            if a[key]:
                assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-6, abs=1e-7), (a["step"], key)
    ref, res = lora_tensors(reference.adapter), lora_tensors(paths.adapter)
    assert ref.keys() == res.keys()
    for key in ref:
        torch.testing.assert_close(res[key], ref[key], atol=1e-7, rtol=1e-6)  # bit-equal here


def test_two_cpu_processes_shard_the_data_into_one_run(mlflow_uri: str, tmp_path: Path) -> None:
    """torchrun + gloo through LOGICFLOW_LAUNCHER, the launch path of a GPU pod (there `accelerate launch`
    with an infra/accelerate config): the plain stage command, two ranks each training on half the rows;
    one MLflow run, one adapter."""
    paths = make_project(tmp_path / "ddp", n_train=16, n_val=4)
    extra = [
        "train.max_steps=-1",
        "train.epochs=1",
        "train.batch_size=2",
        "train.eval_steps=100",
        "tracking.experiment=ddp-test",
    ]
    launcher = "torchrun --standalone --nproc_per_node 2"  # --standalone: a free rendezvous port
    env = {**os.environ, "LOGICFLOW_LAUNCHER": launcher}
    done = subprocess.run(_cli(paths.root, *extra), capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = json.loads((paths.train_reports.metrics).read_text())
    params = json.loads((paths.train_reports.params).read_text())
    assert metrics["world_size"] == 2 == params["trainer"]["world_size"]  # a silent single process fails here
    # 16 rows / (2 per device x 2 devices) = 4 steps; the gathered token count covers every row exactly once
    assert metrics["global_step"] == 4
    assert metrics["train_tokens"] == params["data"]["train"]["tokens"]
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("ddp-test").experiment_id])
    assert len(runs) == 1 and runs[0].data.metrics["final.world_size"] == 2
    assert (paths.adapter / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("method", ["dora", "ia3", "prompt_tuning", "full"])
def test_each_method_changes_only_what_it_should(method: str, mlflow_uri: str, tmp_path: Path) -> None:
    """DoRA and IA3 train adapters that fold into the weights (merged = base + adapter, checked by the
    stage); prompt tuning leaves the base weights bit-identical (its virtual tokens live in the adapter);
    full fine-tuning changes every block."""
    from transformers import AutoModelForCausalLM

    paths = make_project(tmp_path / method)
    lr = {"prompt_tuning": "0.1", "ia3": "0.05"}.get(method, "0.001")
    result = run(
        config(
            paths,
            f"lora.method={method}",
            f"train.learning_rate={lr}",
            "train.max_steps=4",
            "train.eval_steps=100",
        ),
        paths,
    )
    assert result.global_step == 4
    merged = json.loads((paths.merged / "logicflow_train.json").read_text())
    assert merged["method"] == method and merged["merged"] is (method != "prompt_tuning")
    assert (paths.adapter / "adapter_model.safetensors").exists() is (method != "full")
    tuned = AutoModelForCausalLM.from_pretrained(paths.merged).state_dict()  # loadable either way
    base = AutoModelForCausalLM.from_pretrained(paths.base_model).state_dict()
    changed = {name for name, weight in base.items() if not torch.equal(weight, tuned[name].to(weight.dtype))}
    adapter = lora_tensors(paths.adapter) if method != "full" else {}
    if method == "full":  # every block trained
        assert any(".layers.0." in name for name in changed) and any(".layers.1." in name for name in changed)
    elif method == "prompt_tuning":  # only the virtual tokens (in the adapter): base weights bit-identical
        assert changed == set()
        prompt = adapter["prompt_embeddings"]
        assert prompt.ndim == 2 and torch.isfinite(prompt).all()
    elif method == "ia3":  # a learned scale per k/v output and per down_proj input; only those layers merge
        assert any("ia3_l" in key for key in adapter)
        scaled = ("k_proj.weight", "v_proj.weight", "down_proj.weight")
        assert changed and all(name.endswith(scaled) for name in changed)
    else:  # DoRA: low-rank A/B plus a magnitude vector per targeted layer
        assert {"lora_magnitude_vector", "lora_A"} <= {part for key in adapter for part in key.split(".")}
        assert changed and all(".layers." in name for name in changed)


def test_padding_free_rows_do_not_attend_to_each_other(trained) -> None:
    """What `train.packing` relies on: rows flattened into one sequence with per-row position_ids get exactly
    their own logits (a block-diagonal mask under sdpa; varlen kernels under flash attention). As in training,
    no KV cache: with one, transformers skips the packed-sequence detection."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from logicflow.model import load_causal_lm, load_tokenizer

    paths, _ = trained
    tok = load_tokenizer(paths.base_model, template="chatml")
    model = load_causal_lm(paths.base_model).eval()
    rows = [to_dataset([row], True)[0]["messages"] for row in make_rows(3, seed=5)]
    ids = [tok.apply_chat_template(m, tokenize=True, return_dict=True)["input_ids"] for m in rows]
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)(
        [{"input_ids": x} for x in ids]
    )
    assert "attention_mask" not in batch and batch["input_ids"].shape == (1, sum(map(len, ids)))
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits[0]
        start = 0
        for row in ids:
            alone = model(input_ids=torch.tensor([row])).logits[0]
            torch.testing.assert_close(packed[start : start + len(row)], alone, atol=1e-5, rtol=1e-4)
            start += len(row)


def test_polling_checkpoints_during_rotation_never_raises(trained, tmp_path: Path) -> None:
    """A checkpoint folder deleted while `last_checkpoint` reads it counts as not intact, never an error
    (the trainer's rotation deletes old checkpoints while a watcher polls)."""
    import shutil
    import threading

    source = checkpoints.last_checkpoint(trained[0].checkpoints)
    assert source is not None
    folder, stop = tmp_path / "checkpoints", threading.Event()

    def rotate() -> None:
        while not stop.is_set():
            shutil.copytree(source, folder / "checkpoint-1")
            shutil.rmtree(folder / "checkpoint-1")

    folder.mkdir()
    rotator = threading.Thread(target=rotate)
    rotator.start()
    try:
        seen = {checkpoints.last_checkpoint(folder) for _ in range(3000)}
    finally:
        stop.set()
        rotator.join()
    assert seen <= {None, folder / "checkpoint-1"}
