"""Hub pushes through the real `huggingface_hub` client over HTTP.

The Hugging Face Hub is not reachable from here, so the far end is `hub_server.HubServer`: a small
Hub-compatible endpoint started by each test (a real HTTP server in a thread). Only that network edge is
stood in for; `HfApi`, its request building, NDJSON commits and error mapping are the real ones.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from hub_server import HubServer
from logicflow.config import load_config
from logicflow.errors import PublishError
from logicflow.publishing.hub import FINGERPRINT_PREFIX, HubTarget, RetryPolicy, push_folder
from logicflow.stages import card, publish
from publish_fixtures import RUN_ID, shared_models, write_run

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_test_hub_token_abcdef0123456789"
REPO = "logicflow-test/tiny-thinking"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_models(tmp_path_factory)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    waits: list[float] = []
    monkeypatch.setattr("logicflow.publishing.hub.RETRY", RetryPolicy(sleep=waits.append))  # no real waiting
    with HubServer(TOKEN) as server:
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        server.waits = waits
        yield server


def _cfg(*overrides: str):
    return load_config(
        ROOT / "params.yaml", "smoke", ["publish.targets=[local, hub]", f"publish.repo_id={REPO}", *overrides]
    )


@pytest.fixture
def paths(tmp_path: Path, models: Path):
    paths = write_run(tmp_path / "project", models)
    card.run(_cfg(), paths)
    return paths


def _published(paths) -> dict[str, bytes]:
    return {
        str(p.relative_to(paths.publish_dir)): p.read_bytes()
        for p in sorted(paths.publish_dir.rglob("*"))
        if p.is_file()
    }


def _target(hub: HubServer, revision: str = "main", token: str = TOKEN) -> HubTarget:
    return HubTarget.from_env(
        SimpleNamespace(repo_id=REPO, private=True, revision=revision),
        {"HF_TOKEN": token, "HF_ENDPOINT": hub.url},
    )


def test_one_commit_holds_the_published_folder(hub: HubServer, paths) -> None:
    result = publish.run(_cfg(), paths)
    assert [(t.target, t.status) for t in result.targets] == [("local", "written"), ("hub", "pushed")]
    commits = hub.commits(REPO)
    assert [c.title for c in commits] == [
        "initial commit",
        f"Publish LogicFlow-SmolLM2-135M-thinking from MLflow run {RUN_ID}",
    ]
    assert f"{FINGERPRINT_PREFIX}{result.fingerprint}" in commits[-1].message
    files = hub.files(REPO)
    assert {k: v for k, v in files.items() if k != ".gitattributes"} == _published(paths)
    assert {
        "model.safetensors",
        "README.md",
        "loss.png",
        "eval.json",
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "tokenizer.json",
        "chat_template.jinja",
    } <= set(files)
    assert hub.repos[REPO].private
    assert hub.count("POST", "validate-yaml") == 1  # the card went through the Hub's metadata check
    # publishing the unchanged model again is a no-op: no commit request at all
    again = publish.run(_cfg(), paths)
    assert again.status == "unchanged" and len(hub.commits(REPO)) == 2
    assert sum(1 for m, p, _ in hub.requests if m == "POST" and p.endswith("/commit/main")) == 1


def test_503_then_success_makes_exactly_one_commit(hub: HubServer, paths) -> None:
    hub.fail("commit", 503)
    result = publish.run(_cfg(), paths)
    assert result.targets[1].status == "pushed"
    assert [status for m, p, status in hub.requests if p.endswith("/commit/main")] == [503, 200]
    assert len(hub.commits(REPO)) == 2  # initial + exactly one publish


def test_commit_that_landed_before_a_lost_response_is_not_repeated(hub: HubServer, paths) -> None:
    hub.fail("commit", 503, after_apply=True)  # the Hub commits, then the answer is lost
    result = publish.run(_cfg(), paths)
    assert result.targets[1].status == "pushed"
    assert [status for m, p, status in hub.requests if p.endswith("/commit/main")] == [503]
    assert len(hub.commits(REPO)) == 2


def test_rate_limits_and_server_errors_are_retried_with_backoff(hub: HubServer, paths) -> None:
    hub.fail("create", 429, retry_after=7)
    hub.fail("commit", 500)
    hub.fail("commit", 429)
    result = publish.run(_cfg(), paths)
    assert result.targets[1].status == "pushed" and len(hub.commits(REPO)) == 2
    assert hub.waits == [7.0, 4.0, 8.0]  # Retry-After honoured, else exponential from 2 s


def test_a_changed_model_is_one_new_commit_that_mirrors_the_folder(hub: HubServer, paths) -> None:
    publish.run(_cfg(), paths)
    # the Hub repo picked up a stray file; the next publish must remove it so repo == folder
    hub.new_commit(hub.repos[REPO], "main", "stray", "", {**hub.files(REPO), "old.bin": b"x"}, ["old.bin"])
    report = json.loads(paths.eval_json.read_text())
    report["config"]["seed"] = 99
    paths.eval_json.write_text(json.dumps(report))
    card.run(_cfg(), paths)
    result = publish.run(_cfg(), paths)
    assert result.targets[1].status == "pushed" and len(hub.commits(REPO)) == 4
    assert "old.bin" not in hub.files(REPO)
    assert {k: v for k, v in hub.files(REPO).items() if k != ".gitattributes"} == _published(paths)


def test_branch_revision_is_created_and_pushed(hub: HubServer, paths) -> None:
    result = publish.run(_cfg("publish.revision=candidate"), paths)
    assert result.targets[1].status == "pushed"
    assert [c.title for c in hub.commits(REPO, "candidate")][-1].startswith("Publish ")
    assert len(hub.commits(REPO, "main")) == 1  # main untouched


def test_unreachable_endpoint_fails_clearly_after_retries(
    hub: HubServer, paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = HubTarget.from_env(
        SimpleNamespace(repo_id=REPO, private=True, revision="main"),
        {"HF_TOKEN": TOKEN, "HF_ENDPOINT": f"http://127.0.0.1:{port}"},
    )
    waits: list[float] = []
    with pytest.raises(PublishError, match=r"unreachable or failing after 3 attempts \(ConnectError") as err:
        push_folder(
            target,
            paths.card.dir,
            "f" * 64,
            "msg",
            retry=RetryPolicy(attempts=3, backoff_s=1.0, sleep=waits.append),
        )
    assert waits == [1.0, 2.0]
    assert "\n" not in str(err.value) and TOKEN not in str(err.value)


def test_wrong_token_is_refused_without_retry_or_echo(hub: HubServer, paths) -> None:
    wrong = "hf_wrong_token_that_must_not_leak"
    with pytest.raises(PublishError, match="refused the publish") as err:
        push_folder(_target(hub, token=wrong), paths.card.dir, "f" * 64, "msg")
    assert wrong not in str(err.value) and TOKEN not in str(err.value)
    assert "401" in str(err.value) and "HF_TOKEN" in str(err.value)
    assert hub.count("POST", "create") == 1 and hub.repos == {}  # not retried: a bad token stays bad


def test_invalid_card_metadata_is_refused_by_the_hub(hub: HubServer, paths, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "README.md").write_text("---\n- not a mapping\n---\nbody\n")
    with pytest.raises(PublishError, match="Invalid metadata in README.md"):
        push_folder(_target(hub), folder, "f" * 64, "msg")
    assert len(hub.commits(REPO)) == 1


def test_target_repr_never_shows_the_token(hub: HubServer) -> None:
    target = _target(hub)
    assert TOKEN not in repr(target) and TOKEN not in str(target)


def test_a_public_repo_is_never_pushed_to_when_private_is_asked(hub: HubServer, paths) -> None:
    from huggingface_hub import HfApi

    HfApi(endpoint=hub.url, token=TOKEN).create_repo(REPO, private=False)
    with pytest.raises(PublishError, match="exists and is public, but publish.private is true"):
        push_folder(_target(hub), paths.card.dir, "f" * 64, "msg")
    assert [c.title for c in hub.commits(REPO)] == ["initial commit"]


def test_an_adapter_only_repo_loads_with_peft_on_the_pinned_base(
    hub: HubServer, models: Path, tmp_path: Path
) -> None:
    """publish.artifacts: [adapter] pushes the adapter at the top level (no merged weights) with a card that
    says how to load it, and card.sampling lands in generation_config.json; the downloaded repo loads with
    PeftModel on the base and computes what the merged model computes."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, GenerationConfig

    paths = write_run(tmp_path / "project", models)
    cfg = _cfg("publish.artifacts=[adapter]", "card.sampling.temperature=0.7", "card.sampling.top_k=64")
    card.run(cfg, paths)
    result = publish.run(cfg, paths)
    assert [(t.target, t.status) for t in result.targets] == [("local", "written"), ("hub", "pushed")]
    files = hub.files(REPO)
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= set(files)
    assert not [name for name in files if name.startswith(("model", "adapter/"))]  # no merged weights
    readme = files["README.md"].decode()
    assert "base_model_relation: adapter" in readme and "library_name: peft" in readme
    assert f'PeftModel.from_pretrained(base, "{REPO}")' in readme and 'revision="main"' in readme
    assert "do_sample=True, temperature=0.7, top_k=64" in readme

    download = tmp_path / "download"
    for name, content in files.items():
        (download / name).parent.mkdir(parents=True, exist_ok=True)
        (download / name).write_bytes(content)
    sampling = GenerationConfig.from_pretrained(download)
    assert (sampling.do_sample, sampling.temperature, sampling.top_k) == (True, 0.7, 64)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(paths.base_model), download).eval()
    merged = AutoModelForCausalLM.from_pretrained(paths.merged).eval()
    tokens = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        assert torch.allclose(tuned(tokens).logits, merged(tokens).logits, atol=1e-4)


def test_weights_go_through_git_lfs_in_one_commit_even_when_an_upload_fails(hub: HubServer, paths) -> None:
    """The real Hub takes weights through LFS (batch API, PUT, verify), not as regular commit lines: the
    push lands exactly one commit whose files hash like the local ones, after one PUT failed with 503.
    hf_xet is installed and would take over: the stand-in pins the LFS path while it runs (production uses
    Xet then, see docs/orchestration.md) and sends *.safetensors to LFS through the repo's .gitattributes."""
    hub.fail("lfs-put", 503)
    result = publish.run(_cfg(), paths)
    assert [(t.target, t.status) for t in result.targets] == [("local", "written"), ("hub", "pushed")]

    local = _published(paths)
    weights = [name for name in local if name.endswith(".safetensors")]
    assert len(hub.commits(REPO)) == 2  # the repo's initial commit, then exactly one publish
    assert weights and {hashlib.sha256(local[name]).hexdigest() for name in weights} <= set(hub.lfs)
    remote = hub.files(REPO)
    assert {name: hashlib.sha256(remote[name]).hexdigest() for name in local} == {
        name: hashlib.sha256(data).hexdigest() for name, data in local.items()
    }
    assert hub.count("PUT", "lfs") == len(weights) + 1  # one retried after the injected 503
    assert not hub.lfs_pending  # every upload verified


def test_dry_run_lists_what_a_push_would_send_without_a_token(
    paths, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    caplog.set_level("INFO", logger="logicflow.stages.publish")
    plan = publish.dry_run(_cfg(), paths)
    files = {f["path"]: f for f in plan.files}
    assert plan.targets == ["local", "hub"] and plan.gate == "passed"
    assert (plan.hub["repo_id"], plan.hub["revision"], plan.hub["private"]) == (REPO, "main", True)
    assert files["model.safetensors"]["upload"] == "lfs" and files["README.md"]["upload"] == "regular"
    assert files["adapter/adapter_model.safetensors"]["upload"] == "lfs"
    assert files["model.safetensors"]["bytes"] == (paths.merged / "model.safetensors").stat().st_size
    assert plan.total_bytes == sum(f["bytes"] for f in plan.files)
    assert not paths.publish_dir.exists()  # nothing written, nothing sent
    assert any("model.safetensors" in r.message and "lfs" in r.message for r in caplog.records)
