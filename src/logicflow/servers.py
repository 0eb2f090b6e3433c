"""Local Prefect and MLflow servers for one project, plus the process that serves its deployments.

    logicflow up        # start (or reuse) both servers and `flows/serve.py`; prints their URLs
    logicflow status    # what runs, where, and whether it answers
    logicflow down      # stop exactly the processes `up` started

Everything binds to 127.0.0.1 on free ports (the previous ports when they are still free, so URLs stay
stable) and lives under `.logicflow/`: the Prefect database in `prefect/` (PREFECT_HOME), the MLflow
store in `mlflow.db` + `mlartifacts/`, one log per process in `logs/`, `env` (what a new shell sources:
`source .logicflow/env`) and `servers.json`:

    {"prefect": {"url", "api_url", "pid", "log", ...}, "mlflow": {"url", "pid", "log", ...},
     "serve": {"pid", "log", ...}}

Each process starts in its own session, so `down` signals its whole process group (flow runs and the
DVC stages they started included); a recorded pid counts as ours only while its start time matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

from logicflow.atomic import write_json, write_text
from logicflow.errors import LogicFlowError
from logicflow.paths import Paths, ServerState

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
SERVICES = ("prefect", "mlflow", "serve")
# Environment variables the Prefect and MLflow servers never get (only `serve`, which runs the stages, needs
# a Hub token): a server's environment is readable by anyone who can read its /proc entry or crash dump.
SECRET_ENV = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_KEY|PRIVATE_KEY", re.IGNORECASE)
STARTUP_TIMEOUT_S = 180.0  # MLflow's first start runs its migrations: ~25 s on an idle 2-core box
STOP_TIMEOUT_S = 15.0
SERVE_POLL_S = 2  # how often the serve process asks Prefect for new runs (Prefect's default is 10 s)
QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
}


class ServerError(LogicFlowError):
    """A local server that cannot start, answer or stop: names the port and the log to read."""


# ---------------------------------------------------------------------------------------------- state


def read_state(paths: Paths) -> dict[str, dict[str, Any]]:
    """The recorded servers (empty when `up` never ran or `down` cleaned up)."""
    try:
        return json.loads(paths.servers.state_file.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ServerError(
            f"{paths.servers.state_file}: unreadable ({exc}); delete it and run `logicflow up`"
        ) from None


def _owned(entry: dict[str, Any] | None) -> psutil.Process | None:
    """The recorded process if it still runs and is the one we started (same pid *and* start time)."""
    if not entry or not entry.get("pid"):
        return None
    try:
        proc = psutil.Process(int(entry["pid"]))
        if abs(proc.create_time() - float(entry.get("started", 0))) > 1.0:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _answers(url: str, expect: Callable[[str], bool], timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
            return resp.status == 200 and expect(resp.read().decode(errors="replace"))
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _healthy(service: str, entry: dict[str, Any]) -> bool:
    if service == "prefect":
        return _answers(f"{entry['api_url']}/health", lambda body: body.strip() == "true")
    if service == "mlflow":
        return _answers(f"{entry['url']}/health", lambda body: body.strip() == "OK")
    return True  # serve has no endpoint; alive is all we can ask


def status(paths: Paths) -> dict[str, dict[str, Any]]:
    """Each recorded service with `running` (our process is alive) and `healthy` (it answers)."""
    report: dict[str, dict[str, Any]] = {}
    for service, entry in read_state(paths).items():
        running = _owned(entry) is not None
        report[service] = {**entry, "running": running, "healthy": running and _healthy(service, entry)}
    return report


def env(paths: Paths) -> dict[str, str]:
    """Environment that points Prefect and MLflow clients at this project's running servers."""
    state = read_state(paths)
    out: dict[str, str] = {}
    if _owned(state.get("prefect")):
        out["PREFECT_API_URL"] = state["prefect"]["api_url"]
    if _owned(state.get("mlflow")):
        out["MLFLOW_TRACKING_URI"] = state["mlflow"]["url"]
    return out


def tracking_uri(paths: Paths) -> str | None:
    """The MLflow server `logicflow up` started for this project, if it runs (for `tracking.uri: null`)."""
    return env(paths).get("MLFLOW_TRACKING_URI")


# ---------------------------------------------------------------------------------------------- ports


def port_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on `port` now. Like the servers (uvicorn), with SO_REUSEADDR: a server
    that just died leaves its closed connections in TIME_WAIT, and its port must still count as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST, avoid: Iterable[int] = ()) -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    avoid = set(avoid)
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port
    raise ServerError(f"no free port found on {host}")


def _choose_port(
    service: str, requested: int | None, previous: int | None, log: Path, taken: set[int]
) -> int:
    if requested:
        if requested in taken or not port_free(requested):
            raise ServerError(
                f"{service}: port {requested} on {HOST} is already in use; pick another "
                f"(--{service}-port) or leave it out to use a free one (log: {log})"
            )
        return requested
    if previous and previous not in taken and port_free(previous):
        return previous  # same URL as last time, so bookmarks keep working
    return free_port(avoid=taken)


# ---------------------------------------------------------------------------------------------- start


def _bin_dir() -> Path:
    return Path(sys.executable).parent


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """Our environment plus `extra`, with this venv's scripts first on PATH (DVC stages call `logicflow`)."""
    out = {**os.environ, **QUIET, **extra}
    out["PATH"] = os.pathsep.join([str(_bin_dir()), out.get("PATH", "")])
    return out


def _spawn(
    service: str, argv: list[str], paths: Paths, extra_env: dict[str, str], drop_env: Iterable[str] = ()
) -> dict[str, Any]:
    log = paths.servers.log(service)
    log.parent.mkdir(parents=True, exist_ok=True)
    environ = child_env(extra_env)
    for key in [*drop_env, *(k for k in environ if service != "serve" and SECRET_ENV.search(k))]:
        environ.pop(key, None)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            cwd=paths.root,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return {
        "pid": proc.pid,
        "started": psutil.Process(proc.pid).create_time(),
        "log": str(log),
        "argv": argv,
        "_popen": proc,
    }


def _tail(log: str | Path, lines: int = 15) -> str:
    try:
        text = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def _wait_healthy(pending: dict[str, dict[str, Any]], timeout: float) -> None:
    """Wait until every entry answers its health check; a process that exits fails at once."""
    deadline = time.monotonic() + timeout
    waiting = dict(pending)
    while waiting:
        for service, entry in list(waiting.items()):
            popen: subprocess.Popen = entry["_popen"]
            if popen.poll() is not None:
                raise ServerError(
                    f"{service} exited with code {popen.returncode} before answering on "
                    f"{entry.get('url', '')} (log: {entry['log']}):\n{_tail(entry['log'])}"
                )
            if _healthy(service, entry):
                logger.info(
                    "%s is up at %s (%.0f s)", service, entry.get("url", "-"), time.time() - entry["started"]
                )
                del waiting[service]
        if waiting and time.monotonic() > deadline:
            service, entry = next(iter(waiting.items()))
            raise ServerError(
                f"{service} did not answer on {entry.get('url')} within {timeout:.0f} s "
                f"(log: {entry['log']}):\n{_tail(entry['log'])}"
            )
        if waiting:
            time.sleep(0.5)


def _wait_served(
    api_url: str, entry: dict[str, Any], deployments: Iterable[str], since: float, timeout: float
) -> None:
    """Wait until the serve process has registered `deployments` and polled for runs after `since`."""
    deadline = time.monotonic() + timeout
    popen: subprocess.Popen | None = entry.get("_popen")
    missing = list(deployments)
    while True:
        if popen is not None and popen.poll() is not None:
            raise ServerError(
                f"the deployment server (flows/serve.py) exited with code {popen.returncode} "
                f"(log: {entry['log']}):\n{_tail(entry['log'])}"
            )
        missing = [name for name in missing if not _deployment_ready(api_url, name, since)]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ServerError(
                f"deployments {', '.join(missing)} were not served within {timeout:.0f} s "
                f"(log: {entry['log']}):\n{_tail(entry['log'])}"
            )
        time.sleep(0.5)


def _deployment_ready(api_url: str, name: str, since: float) -> bool:
    """`flow/deployment` exists and a runner polled it after `since` (so runs will be picked up)."""
    try:
        with urllib.request.urlopen(f"{api_url}/deployments/name/{name}", timeout=2) as resp:  # noqa: S310
            body = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    polled = body.get("last_polled")
    if not polled:
        return False
    from datetime import datetime

    return datetime.fromisoformat(polled.replace("Z", "+00:00")).timestamp() >= since - 1


def _prefect_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)]


def _mlflow_argv(layout: ServerState, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{layout.mlflow_db}",
        "--artifacts-destination",
        str(layout.mlflow_artifacts),
    ]


def _serve_argv(paths: Paths) -> list[str]:
    return [sys.executable, str(paths.root / "flows" / "serve.py")]


def start(
    paths: Paths,
    *,
    prefect_port: int | None = None,
    mlflow_port: int | None = None,
    services: Iterable[str] = SERVICES,
    serve_deployments: Iterable[str] = ("logicflow/full",),
    timeout: float = STARTUP_TIMEOUT_S,
) -> dict[str, dict[str, Any]]:
    """Start (or reuse) the servers and the deployment server; return the recorded state.

    A service that already runs and answers is kept. The serve process is restarted when Prefect was.
    On failure every process this call started is stopped again and the error names its log.
    """
    layout = paths.servers
    services = tuple(services)
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        raise ServerError(f"unknown service {unknown[0]!r}; known: {', '.join(SERVICES)}")
    if "serve" in services and "prefect" not in services:
        raise ServerError("the deployment server needs the Prefect server: add 'prefect' to the services")
    layout.dir.mkdir(parents=True, exist_ok=True)
    previous = read_state(paths)
    last_ports = _read_ports(layout)
    state: dict[str, dict[str, Any]] = {}
    started: dict[str, dict[str, Any]] = {}
    taken: set[int] = set()

    for service in ("prefect", "mlflow"):
        entry = previous.get(service)
        if _owned(entry) and _healthy(service, entry):
            requested = prefect_port if service == "prefect" else mlflow_port
            if requested and requested != entry.get("port"):
                raise ServerError(
                    f"{service} already runs on port {entry.get('port')}; "
                    f"run `logicflow down` first to move it to {requested}"
                )
            state[service] = entry
            taken.add(int(entry["port"]))
        elif entry and _owned(entry):  # alive but not answering: not ours to trust any more
            _stop_entry(service, entry)

    try:
        for service in ("prefect", "mlflow"):
            if service not in services or service in state:
                continue
            requested = prefect_port if service == "prefect" else mlflow_port
            port = _choose_port(service, requested, last_ports.get(service), layout.log(service), taken)
            taken.add(port)
            url = f"http://{HOST}:{port}"
            if service == "prefect":
                argv = _prefect_argv(port)
                entry = _spawn(
                    service,
                    argv,
                    paths,
                    {  # the UI asks the browser to call this API (its default is port 4200)
                        "PREFECT_HOME": str(layout.prefect_home),
                        "PREFECT_UI_API_URL": f"{url}/api",
                        "PREFECT_UI_URL": url,
                    },
                    drop_env=("PREFECT_API_URL", "PREFECT_PROFILE"),
                )
                entry.update(url=url, api_url=f"{url}/api", port=port)
            else:
                layout.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
                entry = _spawn(
                    service,
                    _mlflow_argv(layout, port),
                    paths,
                    # no job runner: it forks ~8 huey workers (GenAI jobs we do not use) on a 2-core box
                    {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                    drop_env=("MLFLOW_TRACKING_URI",),
                )
                entry.update(
                    url=url,
                    port=port,
                    backend_store_uri=f"sqlite:///{layout.mlflow_db}",
                    artifacts=str(layout.mlflow_artifacts),
                )
            started[service] = state[service] = entry
        _wait_healthy(started, timeout)

        if "serve" in services:
            serve_entry = previous.get("serve")
            fingerprint = _serve_fingerprint(paths)
            if (
                _owned(serve_entry)
                and "prefect" not in started
                and serve_entry.get("fingerprint") == fingerprint
                and serve_entry.get("api_url") == state["prefect"]["api_url"]
            ):
                state["serve"] = serve_entry
            else:
                if _owned(serve_entry):
                    _stop_entry("serve", serve_entry)
                since = time.time()
                entry = _spawn("serve", _serve_argv(paths), paths, serve_env(paths, state))
                entry.update(api_url=state["prefect"]["api_url"], fingerprint=fingerprint)
                started["serve"] = state["serve"] = entry
                _wait_served(state["prefect"]["api_url"], entry, serve_deployments, since, timeout)
                logger.info("deployments served (%.0f s)", time.time() - since)
    except BaseException:
        _stop_entries(dict(reversed(list(started.items()))))
        raise
    finally:
        for entry in started.values():
            entry.pop("_popen", None)

    # keep entries of services not asked for this time (they may still run from an earlier `up`)
    for service, entry in previous.items():
        if service not in state and _owned(entry):
            state[service] = entry
    write_json(layout.state_file, {k: state[k] for k in SERVICES if k in state})
    write_json(layout.ports_file, {**last_ports, **{k: v["port"] for k, v in state.items() if "port" in v}})
    write_shell_env(paths)
    return state


def write_shell_env(paths: Paths) -> None:
    """`.logicflow/env`: what a new shell sources to use this project (its CLI, dvc, prefect and mlflow on
    PATH, the servers' URLs), so that the README's commands work without activating anything."""
    lines = [
        "# source .logicflow/env    (written by `logicflow up`; `logicflow down` removes it)",
        f'export PATH="{Path(sys.executable).parent}:$PATH"',
        *(f"export {key}={value}" for key, value in env(paths).items()),
    ]
    write_text(paths.servers.shell_env, "\n".join(lines) + "\n")


def _read_ports(layout: ServerState) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in json.loads(layout.ports_file.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _serve_fingerprint(paths: Paths) -> str:
    """dvc.yaml + flows/serve.py: when either changes, the served deployments must be re-registered."""
    digest = hashlib.sha256()
    for path in (paths.root / "dvc.yaml", paths.root / "flows" / "serve.py"):
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def serve_env(paths: Paths, state: dict[str, dict[str, Any]]) -> dict[str, str]:
    """What the serve process and its flow runs need: the two servers and the project root."""
    out = {
        "PREFECT_API_URL": state["prefect"]["api_url"],
        "PREFECT_HOME": str(paths.servers.prefect_home),
        "PREFECT_UI_URL": state["prefect"]["url"],
        "PREFECT_RUNNER_POLL_FREQUENCY": str(SERVE_POLL_S),
        "LOGICFLOW_ROOT": str(paths.root),
    }
    if "mlflow" in state:
        out["MLFLOW_TRACKING_URI"] = state["mlflow"]["url"]
    return out


# ---------------------------------------------------------------------------------------------- stop


def _group(pid: int) -> list[psutil.Process]:
    """The process, its descendants, and everything else in its process group."""
    procs: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        procs[pid] = root
        for child in root.children(recursive=True):
            procs[child.pid] = child
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            if os.getpgid(proc.pid) == pid:
                procs[proc.pid] = proc
    return list(procs.values())


def _stop_entry(service: str, entry: dict[str, Any], timeout: float = STOP_TIMEOUT_S) -> bool:
    return _stop_entries({service: entry}, timeout)[service]


def _stop_entries(entries: dict[str, dict[str, Any]], timeout: float = STOP_TIMEOUT_S) -> dict[str, bool]:
    """Signal every service's process group (and strayed descendants) at once; SIGKILL what is left later.

    The serve process gets SIGINT: Prefect 3.8's runner logs SIGTERM but never stops on it.
    """
    stopped: dict[str, bool] = {}
    procs: list[psutil.Process] = []
    for service, entry in entries.items():
        stopped[service] = _owned(entry) is not None
        if not stopped[service]:
            continue
        pid = int(entry["pid"])
        sig = signal.SIGINT if service == "serve" else signal.SIGTERM
        group = _group(pid)
        procs += group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        for proc in group:  # descendants that left the group (new sessions) get it too
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError, PermissionError):
                if os.getpgid(proc.pid) != pid:
                    proc.send_signal(sig)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    if alive:
        names = ", ".join(_describe(proc) for proc in alive)
        logger.warning(
            "%d process(es) still running %.0f s after the stop signal; killing them: %s",
            len(alive),
            timeout,
            names,
        )
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
    for service, entry in entries.items():
        if (popen := entry.get("_popen")) is not None:
            popen.poll()  # reap our own child so it does not linger as a zombie
        if stopped[service]:
            logger.info("stopped %s (pid %s)", service, entry["pid"])
    return stopped


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} ({' '.join(proc.cmdline())[:80]})"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return str(proc.pid)


def stop(paths: Paths, services: Iterable[str] = SERVICES) -> dict[str, bool]:
    """Stop the recorded services; True for each one that was running."""
    layout = paths.servers
    state = read_state(paths)
    chosen = {s: state.pop(s) for s in reversed(SERVICES) if s in state and s in set(services)}
    # serve first and alone: it talks to Prefect while it shuts down, and hangs if Prefect went first
    stopped = _stop_entries({k: v for k, v in chosen.items() if k == "serve"})
    stopped.update(_stop_entries({k: v for k, v in chosen.items() if k != "serve"}))
    if state:
        write_json(layout.state_file, state)
        write_shell_env(paths)
    else:
        layout.state_file.unlink(missing_ok=True)
        layout.shell_env.unlink(missing_ok=True)
        _reap(stray_processes(paths))  # a server that outlived its group's signal (seen once: MLflow)
    return stopped


def _reap(procs: list[psutil.Process], grace_s: float = 10.0) -> None:
    """Terminate what is left of this project's servers, then kill what outlives `grace_s`."""
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def stray_processes(paths: Paths) -> list[psutil.Process]:
    """Processes still running with this project's state dir on their command line or in their env."""
    marker = str(paths.servers.dir)
    root = str(paths.root)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            cmd = " ".join(proc.info["cmdline"] or [])
            if marker in cmd or (root in cmd and "flows/serve.py" in cmd):
                found.append(proc)
    return found
