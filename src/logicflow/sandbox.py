"""Run model-written Python against a task's tests, confined by the kernel.

    result = run_untrusted(program, check="def check(f):\\n    assert f(2) == 4\\n", entry_point="f")
    result.passed, result.status, result.isolation     # True, "passed", "kernel: user+net+mount+pid ..."

The program never runs in this process. `logicflow/sandbox_launcher.py` (see its docstring) runs it in a
*candidate* process and the task's tests in a separate *checker* process that calls the candidate's entry
point over a pipe; only the checker holds the pipe the verdict comes back on, so a program cannot fake a
pass by printing, exiting early or reading the runner's state. Isolation (`eval.sandbox`):

- `kernel` (default): new user, network, mount and pid namespaces (`unshare`; as root, first switched to
  `nobody`), then Landlock (reads: the interpreter's standard library and the shared libraries; reads and
  writes: the sandbox folder only) and seccomp (no sockets, ptrace, mount, keyctl, bpf, namespaces, new
  processes or exec), plus resource limits (memory, CPU seconds, output size, open files, no core dumps).
  If this machine cannot provide all of it, `SandboxUnavailable` says what is missing: nothing runs.
- `unisolated`: resource limits and the separate checker only, for machines without Landlock or user
  namespaces, and only when set explicitly. The mode and what it enforced are recorded with every result.

Outputs come back through files this process opened outside the sandbox folder and reads by descriptor,
so nothing the program leaves in its folder (a symlink named like an output, say) is ever opened here. A
wall-clock timeout kills the whole process group; the pid namespace takes anything left with it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from logicflow.errors import LogicFlowError

logger = logging.getLogger(__name__)

Mode = Literal["kernel", "unisolated"]
Status = Literal["passed", "failed", "timeout", "killed"]
LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
NOBODY = 65534
OUTPUT_LIMIT_BYTES = 1 << 20  # a process that writes more output than this is killed (RLIMIT_FSIZE)
TAIL_CHARS = 2000
NAMESPACES = ["--user", "--map-current-user", "--net", "--mount", "--pid", "--fork", "--kill-child"]
SHARED_LIBRARIES = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")
READABLE_FILES = ("/etc/ld.so.cache", "/dev/null", "/dev/urandom")


class SandboxUnavailable(LogicFlowError):
    """The kernel cannot confine generated code here (and `eval.sandbox: unisolated` was not chosen)."""


@dataclass(frozen=True)
class Isolation:
    mode: Mode
    description: str  # what is enforced, for eval.json and the card
    argv: tuple[str, ...]  # what runs the launcher: namespaces, then the interpreter
    stdlib: tuple[str, ...]  # that interpreter's standard library folders (readable under Landlock)
    as_nobody: bool  # the sandbox folder must belong to `nobody`


@dataclass(frozen=True)
class SandboxResult:
    status: Status
    seconds: float
    returncode: int | None
    stdout: str  # tail
    stderr: str  # tail
    isolation: str  # Isolation.description

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def interpreters() -> list[str]:
    """Base interpreters to try (never the venv's launcher), run with -I -S (no site-packages). `nobody` in a
    user namespace may not reach this process's own (e.g. under /root): the system's python3 then."""
    found = [os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)]
    found.append(os.path.realpath(shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or found[0]))
    return list(dict.fromkeys(found))


def _install_runtime(folder: Path, kernel: bool) -> Path:
    """Copy the launcher (and for `kernel` isolation `landlock` and `pyseccomp`) into `folder`, inside the
    sandbox folder, so the sandbox's user can read them wherever this checkout lives (a 0700 temp dir, say);
    returns the launcher. It imports the packages from there before it confines itself, then forgets them."""
    folder.mkdir()
    if kernel:
        import landlock
        import pyseccomp

        no_bytecode = shutil.ignore_patterns("*.pyc")
        shutil.copytree(Path(landlock.__file__).parent, folder / "landlock", ignore=no_bytecode)
        shutil.copy(pyseccomp.__file__, folder)
    return Path(shutil.copy(LAUNCHER, folder))


def _stdlib(argv: list[str]) -> tuple[str, ...] | str:
    """The standard library folders of the interpreter `argv` ends with, run as the sandbox will run it; or
    why it cannot run (its last stderr line)."""
    code = (
        "import json, sysconfig; p = sysconfig.get_paths(); print(json.dumps([p['stdlib'], p['platstdlib']]))"
    )
    try:
        done = subprocess.run(
            [*argv, "-I", "-S", "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if done.returncode:
        return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return tuple(dict.fromkeys(json.loads(done.stdout)))


@functools.lru_cache(maxsize=2)
def isolation(mode: Mode = "kernel") -> Isolation:
    """What `mode` means on this machine; `kernel` raises SandboxUnavailable naming what is missing."""
    if mode == "unisolated":
        logger.warning("eval.sandbox: unisolated: generated code runs with resource limits only")
        argv = interpreters()[:1]
        stdlib = _stdlib(argv)
        assert isinstance(stdlib, tuple), stdlib
        return Isolation(
            mode, "unisolated: resource limits and a separate checker process", tuple(argv), stdlib, False
        )
    missing: list[str] = []
    try:
        import landlock

        abi = landlock.landlock_abi_version()
    except Exception as exc:  # noqa: BLE001 - any reason means no Landlock
        abi = 0
        missing.append(f"Landlock (kernel >= 5.13 with landlock in lsm=): {exc}")
    try:
        import pyseccomp  # noqa: F401 - loads libseccomp
    except Exception as exc:  # noqa: BLE001
        missing.append(f"seccomp (libseccomp2): {exc}")
    as_nobody = os.geteuid() == 0
    setpriv, unshare = shutil.which("setpriv"), shutil.which("unshare")
    prefix = (
        [setpriv or "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        if as_nobody
        else []
    )
    prefix += [unshare or "unshare", *NAMESPACES, "--"]
    tried = {interp: _stdlib([*prefix, interp]) for interp in interpreters()}
    runs = [(interp, found) for interp, found in tried.items() if isinstance(found, tuple)]
    if not runs:
        missing.append(
            f"user/network/mount/pid namespaces (`unshare`, util-linux): {list(tried.values())[-1]}"
        )
    if missing:
        raise SandboxUnavailable(
            "no kernel isolation for generated code on this machine: "
            + "; ".join(missing)
            + ". Fix that, or set eval.sandbox: unisolated to run it with resource limits only "
            "(not safe for untrusted code)"
        )
    interp, stdlib = runs[0]
    who = "as nobody, " if as_nobody else ""
    return Isolation(
        mode,
        f"kernel: {who}user+net+mount+pid namespaces, Landlock ABI {abi}, seccomp",
        (*prefix, interp),
        stdlib,
        as_nobody,
    )


def run_untrusted(
    program: str,
    check: str,
    entry_point: str,
    context: str = "",
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    mode: Mode = "kernel",
) -> SandboxResult:
    """Run `program`, then `check(entry_point)` from `check` (with `context`, the task's stub, in scope) in
    the checker process; passed only when `check` returns. Never raises for bad code."""
    iso = isolation(mode)
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="logicflow-sandbox-") as tmp,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        work = Path(tmp)
        for name, text in (("program.py", program), ("check.py", check), ("context.py", context)):
            (work / name).write_text(text, encoding="utf-8")
        launcher = _install_runtime(work / ".runtime", kernel=iso.mode == "kernel")
        if iso.as_nobody:
            for path in (work, *work.iterdir()):
                os.chown(path, NOBODY, NOBODY)
        verdict_r, verdict_w = os.pipe()
        config = {
            "kernel": iso.mode == "kernel",
            "site": str(launcher.parent),
            "read": [*iso.stdlib, *SHARED_LIBRARIES],
            "read_files": list(READABLE_FILES),
            "memory": memory_mb << 20,
            "cpu": int(timeout_s) + 1,
            "fsize": OUTPUT_LIMIT_BYTES,
            "entry_point": entry_point,
            "result_fd": verdict_w,
        }
        try:
            proc = subprocess.Popen(
                [*iso.argv, "-I", "-S", "-B", str(launcher), json.dumps(config)],
                cwd=work,
                env={"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8"},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                pass_fds=(verdict_w,),
            )
        finally:
            os.close(verdict_w)
        returncode = _wait_then_kill_group(proc, timeout_s)
        passed = _read_verdict(verdict_r)
        stdout, stderr = _tail(out), _tail(err)
    if returncode is None:
        status: Status = "timeout"
    elif passed:
        status = "passed"
    elif returncode < 0:
        status = "killed"  # a signal: CPU or output limit, or the kernel's OOM killer
    else:
        status = "failed"
    return SandboxResult(
        status, round(time.perf_counter() - start, 4), returncode, stdout, stderr, iso.description
    )


def _read_verdict(fd: int) -> bool:
    """What the checker wrote, without waiting on a process that was killed before it wrote anything."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 16) == b"passed"
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _tail(file: IO[bytes]) -> str:
    file.seek(0, os.SEEK_END)
    file.seek(max(0, file.tell() - 4 * TAIL_CHARS))
    return file.read().decode("utf-8", "replace")[-TAIL_CHARS:].rstrip()


def _wait_then_kill_group(proc: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """Wait up to `timeout_s` for the child without reaping it, SIGKILL its whole process group (the group
    id stays reserved while the leader is unreaped, so this can only hit the sandbox's processes), reap it.
    Returns the exit status, or None on timeout."""
    deadline = time.monotonic() + timeout_s
    timed_out = True
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            timed_out = False
            break
        time.sleep(0.005)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    returncode = proc.wait()
    return None if timed_out else returncode
