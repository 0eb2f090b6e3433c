"""Run untrusted, model-generated Python in an isolated child process.

    result = run_untrusted("assert 1 + 1 == 2", timeout_s=5, memory_mb=512)
    result.passed, result.status      # True, "passed"

A generated program never runs in this process and cannot change the work tree. Layers of isolation:

1. A fresh interpreter: `python -I -S -B` (no site-packages, no user paths, no bytecode writes) in its own
   temporary folder, with a minimal environment (no tokens, no proxies) and stdin closed.
2. Another identity and no network, when the host allows it (probed once per process):
   as root, `unshare --net --setuid nobody` (an empty network namespace, an unprivileged user that cannot
   write the root-owned work tree); else `user=nobody`; else the current user.
3. Resource limits set by the runner before the program starts: address space (`memory_mb`), CPU seconds,
   file size, open files, no core dumps and `RLIMIT_NPROC = 0` (no new processes for a non-root user).
4. An audit hook (PEP 578, cannot be removed from Python) that refuses writes, renames and deletes outside
   the temporary folder, sockets, process creation (fork, exec, spawn, subprocess, os.system), signals to
   other processes, `ctypes`/`cffi` and raising resource limits.
5. A wall-clock timeout: the child runs in its own session and the whole process group is killed.

A program passes only if it runs to the end without an exception and the runner then prints a random
nonce the program is not given, so `exit(0)` or `os._exit(0)` halfway through counts as a failure. (The
nonce guards against accidents, not against a program written to fake a pass; isolation is layers 1-5.)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

NOBODY = 65534
OUTPUT_LIMIT_BYTES = 1 << 20  # a program that prints more than this is killed (RLIMIT_FSIZE on its output)
TAIL_CHARS = 2000
Status = Literal["passed", "failed", "timeout", "killed"]

# The runner: executed as `python -I -S -B runner.py` in the temporary folder. It lowers its own limits,
# installs the audit hook, runs program.py in a fresh namespace and prints the nonce if it got through.
RUNNER = r"""
import os, resource, sys

NONCE = os.environ.pop("LOGICFLOW_SANDBOX_NONCE", "")
ROOT = os.path.realpath(os.getcwd())
MEMORY = int(os.environ.pop("LOGICFLOW_SANDBOX_MEMORY", "0"))
CPU = int(os.environ.pop("LOGICFLOW_SANDBOX_CPU", "0"))
FSIZE = int(os.environ.pop("LOGICFLOW_SANDBOX_FSIZE", "0"))
with open("program.py", encoding="utf-8") as fh:
    SOURCE = fh.read()

for limit, value in ((resource.RLIMIT_AS, MEMORY), (resource.RLIMIT_CPU, CPU), (resource.RLIMIT_FSIZE, FSIZE),
                     (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 0)):
    if value or limit in (resource.RLIMIT_CORE, resource.RLIMIT_NPROC):
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):
            pass

BLOCKED_EVENTS = {
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.startfile",
    "os.kill", "os.killpg", "signal.pthread_kill", "subprocess.Popen", "pty.spawn", "resource.setrlimit",
    "resource.prlimit", "sys.addaudithook", "os.setuid", "os.setgid", "os.chroot",
}
BLOCKED_PREFIXES = ("socket.", "ctypes.", "_winapi.", "webbrowser.", "urllib.", "http.", "ftplib.",
                    "smtplib.")
BLOCKED_IMPORTS = {"ctypes", "_ctypes", "cffi", "_cffi_backend", "_posixsubprocess", "mmap", "_socket",
                   "socket", "ssl", "_ssl", "multiprocessing", "_multiprocessing", "subprocess", "pty"}
PATH_EVENTS = {"os.chmod", "os.chown", "os.link", "os.mkdir", "os.mkfifo", "os.mknod", "os.remove",
               "os.rename", "os.rmdir", "os.symlink", "os.truncate", "os.utime", "os.chflags",
               "os.lchflags", "os.setxattr", "os.removexattr", "shutil.rmtree", "shutil.move",
               "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.chown", "shutil.make_archive",
               "shutil.unpack_archive", "tempfile.mkstemp", "tempfile.mkdtemp"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_busy = []


def _inside(path):
    if isinstance(path, int):
        return True  # an already open descriptor
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        return True  # not a path argument
    real = os.path.realpath(path)
    return real == ROOT or real.startswith(ROOT + os.sep)


def _hook(event, args):
    if _busy:
        return
    _busy.append(1)
    try:
        if event in BLOCKED_EVENTS or event.startswith(BLOCKED_PREFIXES):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args and str(args[0]).split(".")[0] in BLOCKED_IMPORTS:
            raise ImportError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS)
            if writing and path is not None and not _inside(path):
                raise PermissionError(f"sandbox: writing {path!r} outside the sandbox folder is not allowed")
        elif event in PATH_EVENTS:
            for arg in args:
                if isinstance(arg, (str, bytes, os.PathLike)) and not _inside(arg):
                    raise PermissionError(f"sandbox: {event} on {arg!r} is not allowed")
    finally:
        _busy.pop()


sys.addaudithook(_hook)
del resource
code = compile(SOURCE, "program.py", "exec")
del SOURCE
exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
sys.stdout.flush()
sys.stdout.write("\n" + NONCE + "\n")
sys.stdout.flush()
"""


@dataclass(frozen=True)
class SandboxResult:
    status: Status
    seconds: float
    returncode: int | None
    stdout: str  # tail, without the runner's nonce
    stderr: str  # tail
    isolation: str  # how the child was isolated (see module docstring)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _probe(argv: list[str], **kwargs: object) -> bool:
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=20,
            env={"PATH": "/usr/bin:/bin"},
            **kwargs,
        )  # type: ignore[call-overload]
    except (OSError, subprocess.SubprocessError, ValueError):
        return False
    return done.returncode == 0


def _candidate_interpreters() -> list[str]:
    found = [sys.executable, getattr(sys, "_base_executable", "")]
    found.append(shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "")
    return list(dict.fromkeys(p for p in found if p and os.path.exists(p)))


@functools.lru_cache(maxsize=1)
def isolation_plan() -> tuple[str, list[str], dict[str, object]]:
    """(name, argv prefix + interpreter, Popen kwargs): the strongest isolation this host allows."""
    interpreters = _candidate_interpreters()
    check = ["-I", "-S", "-B", "-c", "pass"]
    unshare = shutil.which("unshare")
    if os.geteuid() == 0:
        for interp in interpreters:
            if unshare:
                prefix = [unshare, "--net", "--setuid", str(NOBODY), "--setgid", str(NOBODY), "--"]
                if _probe([*prefix, interp, *check]):
                    return "netns+nobody", [*prefix, interp], {}
            kwargs: dict[str, object] = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
            if _probe([interp, *check], **kwargs):
                return "nobody", [interp], kwargs
    elif unshare and _probe([unshare, "--net", "--map-current-user", "--", interpreters[0], *check]):
        return "netns", [unshare, "--net", "--map-current-user", "--", interpreters[0]], {}
    logger.warning(
        "sandbox: no separate user or network namespace available; relying on the audit hook "
        "and resource limits only"
    )
    return "hook-only", [interpreters[0]], {}


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4 * TAIL_CHARS))
            return fh.read().decode("utf-8", "replace")[-TAIL_CHARS:]
    except OSError:
        return ""


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


def run_untrusted(code: str, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Run `code` as a program in a fresh sandbox (see module docstring); never raises for bad code."""
    name, argv, popen_kwargs = isolation_plan()
    nonce = secrets.token_hex(16)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="logicflow-sandbox-") as tmp:
        work = Path(tmp)
        (work / "program.py").write_text(code, encoding="utf-8")
        (work / "runner.py").write_text(RUNNER, encoding="utf-8")
        if popen_kwargs or name == "netns+nobody":
            os.chown(work, NOBODY, NOBODY)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(work),
            "TMPDIR": str(work),
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "PYTHONIOENCODING": "utf-8",
            "LOGICFLOW_SANDBOX_NONCE": nonce,
            "LOGICFLOW_SANDBOX_MEMORY": str(memory_mb << 20),
            "LOGICFLOW_SANDBOX_CPU": str(int(timeout_s) + 1),
            "LOGICFLOW_SANDBOX_FSIZE": str(OUTPUT_LIMIT_BYTES),
        }
        out_path, err_path = work / "stdout.txt", work / "stderr.txt"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [*argv, "-I", "-S", "-B", "runner.py"],
                cwd=work,
                env=env,  # type: ignore[call-overload]
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
                **popen_kwargs,
            )
            returncode = _wait_then_kill_group(proc, timeout_s)
        stdout, stderr = _tail(out_path), _tail(err_path)
    seconds = time.perf_counter() - start
    finished = stdout.rstrip().endswith(nonce)
    if returncode is None:
        status: Status = "timeout"
    elif returncode < 0:
        status = "killed"  # a signal: CPU or file-size limit, or the kernel's OOM killer
    elif returncode == 0 and finished:
        status = "passed"
    else:
        status = "failed"
    stdout = stdout.rstrip()
    if finished:
        stdout = stdout[: -len(nonce)].rstrip()
    return SandboxResult(status, round(seconds, 4), returncode, stdout, stderr, name)
