"""The team and cluster files in infra/ and prefect.yaml, checked by real validators and the real Prefect
Kubernetes worker (no Docker engine or cluster here): the compose file against the compose-spec schema, the
Kubernetes manifests against Kubernetes' own schemas, the work pool's job template rendered for a flow run
the way the worker renders it, and the stack's names (databases, buckets, pools) agreeing with each other."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
K8S_VERSION = "1.32"


def _compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def _deployments() -> dict[str, dict]:
    return {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}


def _work_pool() -> dict:
    return json.loads((INFRA / "k8s" / "work-pool.json").read_text())


def test_compose_file_is_valid_compose_spec() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    done = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(INFRA / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_binds_loopback_and_turns_auth_on() -> None:
    services = _compose()["services"]
    published = [(name, port) for name, s in services.items() for port in s.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for _, port in published), published
    assert "--app-name basic-auth" in services["mlflow"]["command"]
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in services["mlflow"]["environment"]
    assert "PREFECT_SERVER_API_AUTH_STRING" in services["prefect-server"]["environment"]
    worker = services["worker"]["environment"]
    assert "PREFECT_API_AUTH_STRING" in worker and "MLFLOW_TRACKING_PASSWORD" in worker


def test_every_database_and_bucket_the_stack_uses_is_created() -> None:
    services = _compose()["services"]
    text = yaml.safe_dump(services)
    used_dbs = set(re.findall(r"postgres(?:ql(?:\+asyncpg)?)?://[^@\s]+@postgres/(\w+)", text))
    created = {services["postgres"]["environment"]["POSTGRES_DB"]}
    created |= set(re.findall(r"CREATE DATABASE (\w+)", (INFRA / "postgres" / "init.sql").read_text()))
    assert used_dbs == {"mlflow", "prefect"} and used_dbs <= created
    mounts = services["postgres"]["volumes"]
    assert "./postgres:/docker-entrypoint-initdb.d:ro" in mounts  # relative to infra/, where init.sql is
    used_buckets = set(re.findall(r"s3://([\w-]+)", text))
    made = set(re.findall(r"team/([\w-]+)", services["minio-buckets"]["command"][0]))
    assert used_buckets == {"mlflow-artifacts", "logicflow-dvc"} and used_buckets <= made
    assert "--serve-artifacts" in services["mlflow"]["command"]  # clients go through MLflow, not to MinIO
    assert "psycopg2-binary" in (INFRA / "mlflow.Dockerfile").read_text()  # MLflow's image lacks both
    assert "boto3" in (INFRA / "mlflow.Dockerfile").read_text()


def test_the_worker_polls_the_pool_the_deployments_target() -> None:
    services = _compose()["services"]
    pool = re.search(r"--pool (\S+)", services["worker"]["command"])[1]
    assert f"work-pool create {pool} --type process" in services["deploy"]["command"][2]
    deployments = _deployments()
    assert deployments["full"]["work_pool"]["name"] == pool == deployments["data"]["work_pool"]["name"]
    for deployment in deployments.values():  # every entrypoint is the one flow
        path, name = deployment["entrypoint"].split(":")
        assert (ROOT / path).is_file() and f"def {name}(" in (ROOT / path).read_text()


def test_image_context_leaves_out_local_state() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "data", "models", "checkpoints", ".logicflow", ".dvc/cache"} <= ignored
    assert ".git" not in ignored  # lineage (git commit) and DVC need the repository


@pytest.mark.parametrize("manifest", sorted((INFRA / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid(manifest: Path) -> None:
    for doc in yaml.safe_load_all(manifest.read_text()):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_train_job_pulls_its_inputs_and_pushes_its_outputs() -> None:
    job = yaml.safe_load((INFRA / "k8s" / "train-job.yaml").read_text())
    container = job["spec"]["template"]["spec"]["containers"][0]
    script = container["args"][0]
    steps = ["dvc remote add", "dvc pull --with-deps train", "dvc exp run", "dvc push train", "log-artifact"]
    assert [script.index(step) for step in steps] == sorted(script.index(step) for step in steps)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["LOGICFLOW_DVC_REMOTE"].startswith("s3://")
    assert env["LOGICFLOW_LAUNCHER"].startswith("accelerate launch --config_file infra/accelerate/")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8


class NoApi:
    """The Prefect client handed to the render: our template holds no block or variable references, so the
    worker configuration must never need the API (any use fails the test)."""

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"rendering the template asked the Prefect API for {name}")


def test_work_pool_template_renders_a_valid_gpu_job_for_a_flow_run() -> None:
    """The gemma3-27b deployment's job variables through prefect-kubernetes' own job configuration, as its
    worker prepares a flow run; the manifest it would submit must pass Kubernetes' schema. (Prefect's own
    default template puts `completions`/`parallelism` in the pod spec, which this check refuses.)"""
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = _work_pool()
    job_variables = _deployments()["gemma3-27b"]["work_pool"]["job_variables"]
    jsonschema.validate(job_variables, template["variables"])  # what the server checks on `prefect deploy`
    defaults = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
    config = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(
            template, {**defaults, **job_variables}, client=NoApi()
        )
    )
    flow_run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="gentle-otter", parameters={"p": 1})
    config.prepare_for_flow_run(flow_run)
    manifest = config.job_manifest
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)

    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/logicflow/logicflow:0.1.0-gpu"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert pod["nodeSelector"] and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {"name": "hf-cache", "mountPath": "/hf-cache"} in container["volumeMounts"]
    assert container["envFrom"] == [{"secretRef": {"name": "logicflow-secrets"}}]  # HF token, S3, MLflow
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PREFECT__FLOW_RUN_ID"] == str(flow_run.id)  # the worker's own variables are there too
    assert env["LOGICFLOW_LAUNCHER"] == job_variables["launcher"]
    assert env["LOGICFLOW_DVC_REMOTE"] == "s3://logicflow-dvc" and env["HF_HOME"] == "/hf-cache"


@pytest.mark.slow  # resolves against the package registry
def test_gpu_extra_resolves_to_cuda_torch_and_bitsandbytes(tmp_path: Path) -> None:
    """`make setup GPU=1` asks PyPI (not this machine's CPU wheel) for the pinned torch and the `gpu` extra:
    resolved without installing, the plan holds torch's CUDA build and bitsandbytes."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_pin = next(d for d in meta["dependencies"] if d.startswith("torch=="))
    report = tmp_path / "report.json"
    pip = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--quiet", "--ignore-installed"]
    done = subprocess.run(
        [*pip, "--report", str(report), torch_pin, *meta["optional-dependencies"]["gpu"]],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    install = json.loads(report.read_text())["install"]
    planned = {i["metadata"]["name"]: i["metadata"]["version"] for i in install}
    assert planned["torch"] == torch_pin.split("==")[1]  # no +cpu local version
    assert planned["bitsandbytes"] == "0.50.2"
    assert any(name.startswith("nvidia-cuda-runtime") for name in planned)
