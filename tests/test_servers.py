"""Local servers: free ports, clear errors naming the log, ownership checks, and (slow) a real
`up` / `status` / `down` of Prefect + MLflow + the deployment server that leaves no process behind."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest

from logicflow import servers
from logicflow.paths import Paths

os.environ.pop("PREFECT_API_URL", None)  # never talk to a developer's server


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths.from_root(tmp_path)


def test_free_port_is_bindable_and_loopback_only() -> None:
    port = servers.free_port()
    assert servers.port_free(port)
    with socket.socket() as sock:
        sock.bind((servers.HOST, port))
        sock.listen()
        assert not servers.port_free(port)
    assert servers.HOST == "127.0.0.1"
    assert "127.0.0.1" in servers._prefect_argv(port) and "127.0.0.1" in servers._mlflow_argv(
        Paths.from_root(".").servers, port
    )


def test_port_in_use_is_a_clear_error(paths: Paths) -> None:
    with socket.socket() as sock:
        sock.bind((servers.HOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(servers.ServerError, match=rf"port {port} .* already in use.*log: .*prefect\.log"):
            servers.start(paths, prefect_port=port, services=("prefect",))
    assert servers.read_state(paths) == {}


def test_server_that_exits_names_its_log(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    crash = [sys.executable, "-c", "import sys; print('cannot open database'); sys.exit(3)"]
    monkeypatch.setattr(servers, "_prefect_argv", lambda port: crash)
    with pytest.raises(servers.ServerError) as err:
        servers.start(paths, services=("prefect",), timeout=30)
    message = str(err.value)
    assert "exited with code 3" in message and "cannot open database" in message
    assert str(paths.servers.log("prefect")) in message
    assert servers.read_state(paths) == {}


def test_server_that_never_answers_is_stopped(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    hang = [sys.executable, "-c", "import time; print('migrating', flush=True); time.sleep(120)"]
    monkeypatch.setattr(servers, "_mlflow_argv", lambda layout, port: hang)
    with pytest.raises(
        servers.ServerError, match=r"mlflow did not answer .* within 2 s \(log: .*mlflow\.log\)"
    ):
        servers.start(paths, services=("mlflow",), timeout=2)
    assert servers.stray_processes(paths) == []
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if "print('migrating'" in " ".join(p.info["cmdline"] or [])
    ]


def test_serve_needs_prefect(paths: Paths) -> None:
    with pytest.raises(servers.ServerError, match="needs the Prefect server"):
        servers.start(paths, services=("serve",))
    with pytest.raises(servers.ServerError, match="unknown service 'redis'"):
        servers.start(paths, services=("redis",))


def test_down_and_status_without_servers(paths: Paths) -> None:
    assert servers.stop(paths) == {}
    assert servers.status(paths) == {}
    assert servers.env(paths) == {}
    assert servers.tracking_uri(paths) is None


def test_a_recycled_pid_is_never_ours(paths: Paths) -> None:
    """A pid in servers.json whose start time differs is someone else's process: status says stopped, down
    leaves it alone (here: the test process itself)."""
    me = psutil.Process()
    state = {
        "prefect": {
            "pid": me.pid,
            "started": me.create_time() - 1000,
            "log": "x",
            "url": "http://x",
            "api_url": "http://x/api",
            "port": 1,
        }
    }
    layout = paths.servers
    layout.dir.mkdir(parents=True)
    layout.state_file.write_text(json.dumps(state))
    assert servers.status(paths)["prefect"]["running"] is False
    assert servers.env(paths) == {}
    assert servers.stop(paths) == {"prefect": False}
    assert me.is_running() and not layout.state_file.exists()


def test_unreadable_state_file(paths: Paths) -> None:
    layout = paths.servers
    layout.dir.mkdir(parents=True)
    layout.state_file.write_text("{not json")
    with pytest.raises(servers.ServerError, match="servers.json: unreadable"):
        servers.status(paths)


@pytest.mark.slow
def test_up_status_down_leaves_no_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flow_fixtures import make_project, offline_env

    for key, value in offline_env(tmp_path / "cache").items():
        monkeypatch.setenv(key, value)
    root = make_project(tmp_path / "repo", tmp_path / "remote")
    paths = Paths.from_root(root)
    monkeypatch.setenv("HF_TOKEN", "hf_canary_for_servers")

    started = time.monotonic()
    state = servers.start(paths)
    first_up = time.monotonic() - started
    assert set(state) == {"prefect", "mlflow", "serve"}
    # the servers never hold the token; the deployment runner (which publishes) does
    env_of = {name: psutil.Process(entry["pid"]).environ() for name, entry in state.items()}
    assert "HF_TOKEN" not in env_of["prefect"] and "HF_TOKEN" not in env_of["mlflow"]
    assert env_of["serve"]["HF_TOKEN"] == "hf_canary_for_servers"
    report = servers.status(paths)
    assert all(entry["running"] and entry["healthy"] for entry in report.values()), report
    assert state["prefect"]["url"].startswith("http://127.0.0.1:")
    assert servers.env(paths) == {
        "PREFECT_API_URL": state["prefect"]["api_url"],
        "MLFLOW_TRACKING_URI": state["mlflow"]["url"],
    }
    saved = json.loads(paths.servers.state_file.read_text())
    assert {k: saved[k]["pid"] for k in saved} == {k: state[k]["pid"] for k in state}
    assert (root / ".logicflow" / "prefect" / "prefect.db").exists()
    assert (root / ".logicflow" / "mlflow.db").exists()

    # a second `up` reuses what runs
    again_started = time.monotonic()
    again = servers.start(paths)
    assert {k: v["pid"] for k, v in again.items()} == {k: v["pid"] for k, v in state.items()}
    assert time.monotonic() - again_started < first_up / 2  # health checks only, nothing started

    # asking for another port while it runs is refused with a hint
    with pytest.raises(servers.ServerError, match="run `logicflow down` first"):
        servers.start(paths, prefect_port=servers.free_port())

    groups = {pid: servers._group(pid) for pid in (v["pid"] for v in state.values())}
    procs = [proc for group in groups.values() for proc in group]
    assert len(procs) >= 3
    assert servers.stop(paths) == {"serve": True, "mlflow": True, "prefect": True}
    assert not any(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE for proc in procs)
    assert servers.stray_processes(paths) == []
    assert servers.status(paths) == {}

    # the next `up` comes back on the same ports (URLs recorded in runs stay valid)
    ports = json.loads(paths.servers.ports_file.read_text())
    assert ports == {"prefect": state["prefect"]["port"], "mlflow": state["mlflow"]["port"]}
