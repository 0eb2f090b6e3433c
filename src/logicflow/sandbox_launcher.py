"""The inside of `logicflow.sandbox`: `python -I -S -B sandbox_launcher.py CONFIG` in the sandbox folder.

Two processes, both confined before any untrusted line runs:
- the *candidate* runs program.py (model-written) and answers calls to its entry point over a pipe;
- the *checker* runs context.py and check.py (the task's stub and tests) with the entry point bound to a
  proxy for those calls, and writes "passed" to the result pipe only when `check(entry_point)` returns.
The candidate closes its copy of the result pipe before it reads program.py, so nothing it runs can report a
verdict; values cross the call pipe as tagged JSON (`encode`/`decode`), never as code or pickles.

Confinement (`confine`), kernel-enforced and irreversible: resource limits; Landlock (reads limited to the
interpreter, its standard library and the shared libraries; reads and writes to the sandbox folder);
seccomp (no sockets, ptrace, mount, keyctl, bpf, namespaces, new processes or exec). The namespaces (user,
network, mount, pid) are entered by `unshare` before this script starts. With `"kernel": false` (the
explicit `eval.sandbox: unisolated`) only the limits and the two-process verdict apply.

Stdlib only, plus the `landlock` and `pyseccomp` packages, imported from CONFIG["site"] (copied beside this
file by the host) and dropped from sys.path before any untrusted code runs.
"""

import errno
import json
import math
import os
import resource
import sys
import traceback

MAX_MESSAGE = 1 << 24  # bytes of one encoded call or answer
DENIED_SYSCALLS = (
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "unshare",
    "setns",
    "fork",
    "vfork",
    "execve",
    "execveat",
    "io_uring_setup",
    "kexec_load",
    "init_module",
    "finit_module",
    "delete_module",
    "personality",
)
CLONE_THREAD = 0x00010000


# ---- values across the pipe ----------------------------------------------------------------------------


def encode(value):
    """A plain value (None, bool, int, float, str, bytes, list, tuple, set, dict) as JSON-able data."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, (list, tuple, set, frozenset)):
        kind = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset"}[type(value)]
        return {kind: [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[encode(k), encode(v)] for k, v in value.items()]}
    raise TypeError(f"a {type(value).__name__} cannot cross the sandbox pipe")


def decode(data):
    if not isinstance(data, dict):
        return data
    ((kind, inner),) = data.items()
    if kind == "float":
        return float(inner)
    if kind == "bytes":
        return bytes.fromhex(inner)
    if kind == "dict":
        return {decode(k): decode(v) for k, v in inner}
    items = [decode(v) for v in inner]
    return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)


def send(fd, message):
    data = json.dumps(message).encode()
    os.write(fd, len(data).to_bytes(4, "big"))
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def receive(fd):
    size = int.from_bytes(read_exactly(fd, 4), "big")
    if size > MAX_MESSAGE:
        raise RuntimeError("sandbox: message too large")
    return json.loads(read_exactly(fd, size))


def read_exactly(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError("sandbox: the candidate process ended")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


# ---- confinement -----------------------------------------------------------------------------------------


def confine(config):
    limits = (
        (resource.RLIMIT_AS, config["memory"]),
        (resource.RLIMIT_CPU, config["cpu"]),
        (resource.RLIMIT_FSIZE, config["fsize"]),
        (resource.RLIMIT_NOFILE, 64),
        (resource.RLIMIT_CORE, 0),
    )
    for limit, value in limits:
        resource.setrlimit(limit, (value, value))
    if not config["kernel"]:
        return
    import landlock
    import pyseccomp

    read = landlock.FSAccess.READ_FILE | landlock.FSAccess.READ_DIR | landlock.FSAccess.EXECUTE
    rules = landlock.Ruleset()
    rules.allow(*[p for p in config["read"] if os.path.isdir(p)], rules=read)
    files = [p for p in config["read_files"] if os.path.isfile(p)]
    if files:
        rules.allow(*files, rules=landlock.FSAccess.READ_FILE)
    rules.allow(os.getcwd())
    rules.apply()  # also sets no_new_privs, which seccomp needs

    deny = pyseccomp.ERRNO(errno.EPERM)
    seccomp = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        seccomp.add_rule(deny, name)
    seccomp.add_rule(deny, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, CLONE_THREAD, 0))  # threads only
    seccomp.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")  # glibc then falls back to clone
    seccomp.load()


# ---- the two roles ---------------------------------------------------------------------------------------


def candidate(config, calls, answers):
    """Run program.py, then answer calls to its entry point until the checker closes the pipe."""
    with open("program.py", encoding="utf-8") as fh:
        code = compile(fh.read(), "program.py", "exec")
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(code, namespace)  # noqa: S102 - confined above: this is what the sandbox is for
    function = namespace.get(config["entry_point"])
    while True:
        try:
            args, kwargs = decode(receive(calls))
        except EOFError:
            return
        try:
            send(answers, {"value": encode(function(*args, **kwargs))})
        except BaseException as exc:  # noqa: BLE001 - the checker decides what a failure means
            send(answers, {"error": type(exc).__name__, "message": str(exc)[:2000]})


def checker(config, context, check, calls, answers):
    """Run the stub and the tests with the entry point bound to the candidate; True when `check` returns."""

    def call_candidate(*args, **kwargs):
        send(calls, encode((list(args), kwargs)))
        answer = receive(answers)
        if "error" in answer:
            error = getattr(__builtins__, answer["error"], None)
            error = error if isinstance(error, type) and issubclass(error, Exception) else RuntimeError
            raise error(answer["message"])
        return decode(answer["value"])

    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(context, "context.py", "exec"), namespace)  # noqa: S102 - the task's own stub
    exec(compile(check, "check.py", "exec"), namespace)  # noqa: S102 - the task's own tests
    namespace[config["entry_point"]] = call_candidate
    namespace["check"](call_candidate)
    return True


def main():
    config = json.loads(sys.argv[1])
    sys.path.insert(0, config["site"])
    if config["kernel"]:
        import landlock  # noqa: F401 - loaded while the files can still be read
        import pyseccomp  # noqa: F401
    sys.path.remove(config["site"])
    with open("context.py", encoding="utf-8") as fh:
        context = fh.read()
    with open("check.py", encoding="utf-8") as fh:
        check = fh.read()
    calls_r, calls_w = os.pipe()
    answers_r, answers_w = os.pipe()
    result = config["result_fd"]
    sys.stdout.flush()
    if os.fork() == 0:  # the candidate: no verdict pipe, no checker ends
        for fd in (result, calls_w, answers_r):
            os.close(fd)
        code = 0
        try:
            confine(config)
            candidate(config, calls_r, answers_w)
        except BaseException:  # noqa: BLE001 - report, then end this process only
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(calls_r)
    os.close(answers_w)
    confine(config)
    try:
        passed = checker(config, context, check, calls_w, answers_r)
    except BaseException:  # noqa: BLE001 - a failing test is the expected way to fail
        traceback.print_exc()
        passed = False
    os.close(calls_w)  # the candidate's loop ends
    os.write(result, b"passed" if passed else b"failed")
    os.wait()


main()
