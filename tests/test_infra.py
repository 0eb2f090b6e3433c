"""The team stack (infra/docker-compose.yml) never serves without auth on all interfaces: every published
port binds to 127.0.0.1, MLflow runs its basic-auth app, Prefect's server requires an auth string and the
worker sends one. (No Docker engine here: the file is checked as data.)"""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "infra" / "docker-compose.yml"


def test_compose_binds_loopback_and_turns_auth_on() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = [(name, port) for name, s in services.items() for port in s.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for _, port in published), published
    assert "--app-name basic-auth" in services["mlflow"]["command"]
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in services["mlflow"]["environment"]
    assert "PREFECT_SERVER_API_AUTH_STRING" in services["prefect-server"]["environment"]
    worker = services["prefect-worker"]["environment"]
    assert "PREFECT_API_AUTH_STRING" in worker and "MLFLOW_TRACKING_PASSWORD" in worker
