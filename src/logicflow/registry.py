"""The MLflow Model Registry side of publishing: register the published model under its training run.

    result = register_model(paths, folder, "logicflow-smoke", fingerprint, champion=gate_passed)

It attaches to the training run through `logicflow.tracking.attach` (the run in reports/train/mlflow_run.json,
same URI resolution and artifact handling as every other stage), then:
- logs the Hub-shaped folder (merged weights, tokenizer, card, eval.json, adapter/) into that run under
  `published/<fingerprint[:16]>` and creates a model version from `runs:/<run_id>/<that path>` with `run_id`
  set, so the registry, the run and the card all point at each other;
- moves alias `candidate` to the new version, and `champion` only when the evaluation gate passed.
Idempotent: a version already tagged with the same fingerprint is reused, nothing is logged twice, and aliases
that already point at it are left alone. Earlier versions and their artifacts are never touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from logicflow.errors import PublishError
from logicflow.paths import Paths
from logicflow.tracking import without_credentials

logger = logging.getLogger(__name__)

CANDIDATE = "candidate"
CHAMPION = "champion"
FINGERPRINT_TAG = "logicflow_fingerprint"
ARTIFACT_ROOT = "published"


@dataclass(frozen=True)
class RegistryResult:
    status: str  # "registered" | "unchanged"
    name: str
    version: str
    aliases: list[str]
    source: str
    run_id: str
    tracking_uri: str  # redacted
    run_url: str | None


def _fail(what: str, uri: str, exc: Exception) -> PublishError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PublishError(
        f"MLflow at {without_credentials(uri)}: {what} failed ({first}); check the tracking server "
        "(`logicflow up`) and reports/train/mlflow_run.json"
    )


def register_model(
    paths: Paths,
    folder: Path,
    name: str,
    fingerprint: str,
    *,
    champion: bool,
    tags: dict[str, str] | None = None,
) -> RegistryResult:
    """Register `folder` as a version of `name` (see module docstring); returns what changed."""
    from logicflow.tracking import attach

    with attach(paths, required=True) as tracker:
        return _register(tracker, folder, name, fingerprint, champion=champion, tags=tags or {})


def _register(
    tracker,
    folder: Path,
    name: str,
    fingerprint: str,
    *,
    champion: bool,  # noqa: ANN001 - Tracker
    tags: dict[str, str],
) -> RegistryResult:
    from mlflow.exceptions import MlflowException

    client, info = tracker.client, tracker.info
    uri = without_credentials(info.tracking_uri)
    try:
        existing = client.search_model_versions(
            f"name = '{name}' and run_id = '{info.run_id}' and tags.{FINGERPRINT_TAG} = '{fingerprint}'"
        )
    except MlflowException:
        existing = []  # no registered model of that name yet
    status = "unchanged"
    if existing:
        version = max(existing, key=lambda v: int(v.version))
        logger.info(
            "MLflow: %s version %s already holds fingerprint %s", name, version.version, fingerprint[:12]
        )
    else:
        artifact_path = f"{ARTIFACT_ROOT}/{fingerprint[:16]}"
        try:
            tracker.log_artifacts(folder, artifact_path)
            try:
                client.create_registered_model(
                    name,
                    description="LogicFlow reasoning models (merged weights + "
                    "adapter + card), one version per published fingerprint",
                )
            except MlflowException as exc:  # another publisher created it first: fine
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            version = client.create_model_version(
                name,
                source=f"runs:/{info.run_id}/{artifact_path}",
                run_id=info.run_id,
                tags={FINGERPRINT_TAG: fingerprint, **tags},
                description=f"Published from MLflow run {info.run_id}",
            )
        except Exception as exc:  # noqa: BLE001 - store, artifact or network failure: one line, what to check
            raise _fail(f"registering {name}", info.tracking_uri, exc) from None
        status = "registered"
        logger.info("MLflow: registered %s version %s from run %s", name, version.version, info.run_id)
    wanted = [CANDIDATE, *([CHAMPION] if champion else [])]
    try:
        current = set(client.get_model_version(name, version.version).aliases or [])
        for alias in wanted:
            if alias not in current:
                client.set_registered_model_alias(name, alias, version.version)
                status = "registered"
                logger.info("MLflow: alias %s@%s -> version %s", name, alias, version.version)
        aliases = sorted(client.get_model_version(name, version.version).aliases or [])
    except MlflowException as exc:
        raise _fail(f"setting aliases of {name}", info.tracking_uri, exc) from None
    return RegistryResult(
        status=status,
        name=name,
        version=str(version.version),
        aliases=aliases,
        source=version.source,
        run_id=info.run_id,
        tracking_uri=uri,
        run_url=info.run_url,
    )
