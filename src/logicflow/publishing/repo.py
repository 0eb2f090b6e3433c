"""The Hub-shaped folder every publish target receives, and the checks the weights pass before it is built.

Layout (the same on disk, in the MLflow registry and on the Hub):

    README.md  loss.png  training_params.json  validation_summary.json    (card/, as the card stage wrote it)
    eval.json  logicflow.json
    config.json  generation_config.json  model*.safetensors  tokenizer*.json  chat_template.jinja  ...
    adapter/adapter_config.json  adapter/adapter_model.safetensors  adapter/tokenizer*  ...

`publish.artifacts: [adapter]` publishes the adapter files at the top level instead, without merged weights.
`publish.gguf` adds the export stage's `gguf/model-<type>.gguf` files.

`logicflow.json` names the run and carries the folder's fingerprint: a SHA-256 over every other file's path
and SHA-256. Equal fingerprints mean byte-identical repositories, which is how every target recognises a
re-publish of an unchanged model.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logicflow.errors import PublishError
from logicflow.model import file_sha256, weights_sha256
from logicflow.paths import PUBLISH_MANIFEST, TRAIN_MANIFEST

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
MODEL_FILES = (
    TRAIN_MANIFEST,
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    *TOKENIZER_FILES,
)
ADAPTER_FILES = (TRAIN_MANIFEST, "adapter_config.json", "adapter_model.safetensors", *TOKENIZER_FILES)
# A real load is cheap for small models; above this only headers and digests are checked.
LOAD_CHECK_MAX_BYTES = 2 << 30


@dataclass(frozen=True)
class SourceFile:
    path_in_repo: str
    source: Path


@dataclass(frozen=True)
class RepoPlan:
    """What the folder will hold, before anything is copied."""

    files: list[SourceFile]
    manifest: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])


def fingerprint(file_digests: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for path in sorted(file_digests):
        digest.update(f"{path}\0{file_digests[path]}\n".encode())
    return digest.hexdigest()


def _matching(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted(
        f for f in folder.iterdir() if f.is_file() and any(fnmatch.fnmatch(f.name, p) for p in patterns)
    )


def _train_method(model_dir: Path) -> str | None:
    try:
        return json.loads((model_dir / TRAIN_MANIFEST).read_text()).get("method")
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return None


def verify_weights(model_dir: Path, expected_sha256: str | None) -> None:
    """Weights that do not parse, differ from what training recorded, or do not load: a PublishError."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise PublishError(f"{model_dir}: no *.safetensors weights; re-run `dvc repro train`")
    for file in files:
        try:
            with safe_open(str(file), framework="numpy") as fh:
                fh.keys()
        except Exception as exc:  # noqa: BLE001 - any parse failure means a damaged file
            raise PublishError(
                f"{file}: not readable as safetensors ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); re-run `dvc repro train`"
            ) from None
    if expected_sha256:
        actual = weights_sha256(model_dir)
        if actual != expected_sha256:
            raise PublishError(
                f"{model_dir}: weights sha256 {actual[:12]} differ from {expected_sha256[:12]} "
                "recorded by train (reports/train/metrics.json); re-run `dvc repro train`"
            )
    size = sum(f.stat().st_size for f in files)
    if size > LOAD_CHECK_MAX_BYTES:
        logger.info(
            "weights are %.1f GB: checked headers and digest, skipping the full load check", size / 1e9
        )
        return
    try:
        import torch
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - whatever stops transformers from loading them
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        raise PublishError(
            f"{model_dir}: transformers cannot load the model ({type(exc).__name__}: {first}); "
            "re-run `dvc repro train`"
        ) from None


def plan_repo(
    merged: Path,
    adapter: Path,
    card_dir: Path,
    eval_json: Path,
    run: dict[str, Any],
    extra: dict[str, Any],
    artifacts: tuple[str, ...] = ("merged", "adapter"),
    gguf_dir: Path | None = None,
) -> RepoPlan:
    """Choose the files and compute the fingerprint (reads every file once). `artifacts` (publish.artifacts):
    the merged model at the top level, the adapter in adapter/ beside it, or the adapter alone at the top."""
    chosen: dict[str, SourceFile] = {}
    if "merged" in artifacts:
        chosen |= {f.name: SourceFile(f.name, f) for f in _matching(merged, MODEL_FILES)}
        if not any(name.endswith(".safetensors") for name in chosen):
            raise PublishError(f"{merged}: no *.safetensors weights; re-run `dvc repro train`")
        if "config.json" not in chosen:
            raise PublishError(f"{merged}: no config.json; re-run `dvc repro train`")
    adapter_files = _matching(adapter, ADAPTER_FILES) if adapter.is_dir() else []
    if any(f.name == "adapter_config.json" for f in adapter_files):
        if "adapter" in artifacts:
            prefix = f"{ADAPTER_DIR}/" if "merged" in artifacts else ""
            chosen |= {prefix + f.name: SourceFile(prefix + f.name, f) for f in adapter_files}
    elif "adapter" in artifacts and _train_method(merged) != "full":  # full fine-tuning has no adapter
        raise PublishError(f"{adapter}: no adapter_config.json; re-run `dvc repro train`")
    if gguf_dir is not None and gguf_dir.is_dir():  # the export stage's files (publish.gguf)
        chosen |= {f"gguf/{f.name}": SourceFile(f"gguf/{f.name}", f) for f in sorted(gguf_dir.glob("*.gguf"))}
    card = card_dir / "README.md"
    if not card.is_file():
        raise PublishError(f"{card}: not found; run the `card` stage first (`dvc repro card`)")
    # the card stage's files win: its generation_config.json carries the recommended sampling
    chosen |= {f.name: SourceFile(f.name, f) for f in sorted(card_dir.iterdir()) if f.is_file()}
    if not eval_json.is_file():
        raise PublishError(f"{eval_json}: not found; run the `evaluate` stage first")
    chosen["eval.json"] = SourceFile("eval.json", eval_json)
    files = sorted(chosen.values(), key=lambda f: f.path_in_repo)
    digests = {f.path_in_repo: file_sha256(f.source) for f in files}
    manifest = {"fingerprint": fingerprint(digests), "files": digests, "run": run, **extra}
    return RepoPlan(files=files, manifest=manifest)


def manifest_bytes(plan: RepoPlan) -> bytes:
    return (json.dumps(plan.manifest, indent=2, sort_keys=True) + "\n").encode()


def materialize(plan: RepoPlan, out: Path) -> None:
    """Write the planned folder into the empty folder `out`."""
    # Copies, not hard links: a link would let a later in-place write to models/ or card/ change an
    # already-published folder.
    for file in plan.files:
        (out / file.path_in_repo).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file.source, out / file.path_in_repo)
    (out / PUBLISH_MANIFEST).write_bytes(manifest_bytes(plan))


def read_fingerprint(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / PUBLISH_MANIFEST).read_text())["fingerprint"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return None


def folder_matches(plan: RepoPlan, folder: Path) -> bool:
    """`folder` already holds exactly this plan (same manifest bytes, same files and sizes)."""
    try:
        if (folder / PUBLISH_MANIFEST).read_bytes() != manifest_bytes(plan):
            return False
    except FileNotFoundError:
        return False
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - {PUBLISH_MANIFEST}
    if present != {f.path_in_repo for f in plan.files}:
        return False
    return all((folder / f.path_in_repo).stat().st_size == f.source.stat().st_size for f in plan.files)
