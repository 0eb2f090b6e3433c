"""Preflight: what would stop a run, found before anything is downloaded or trained.

    logicflow preflight --profile cpu      # one line per check; exit 1 when one found a problem

Every flow run starts with it. Each check gives one line: `ok`, `skipped` (with why: offline, or the model's
shape is unknown before `logicflow model fetch`) or `problem` (what is wrong, then the fix). The checks:
the Hub token and its write access to `publish.repo_id` (when `hub` is a publish target), the base model
(cached, shipped, or on the Hub: gated access and revision), the datasets' pinned revisions, free disk for
the planned outputs, memory against the profile's training estimate (`logicflow.planning`), and the servers.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from logicflow.config import Config
from logicflow.datasets import get_adapter
from logicflow.datasets.sources import hub_reachable
from logicflow.errors import ConfigError, TrackingError
from logicflow.model import local_source
from logicflow.paths import Paths
from logicflow.planning import Architecture, architecture, plan_memory, trainable_params
from logicflow.tracking import check_reachable, is_http, resolve_tracking_uri

GIB = 1024**3
DATA_BYTES_PER_ROW = 16 * 1024  # raw, converted, validated and quarantined copies of one row, generously
# A run keeps the base and the merged model each about three times (workspace, DVC cache, and the machine
# cache or the publish folder); checkpoints hold the trainable weights with two optimizer moments.
WEIGHT_COPIES = 6
UNKNOWN_SIZE = "size unknown before `logicflow model fetch`"
Status = Literal["ok", "skipped", "problem"]


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    message: str

    def line(self) -> str:
        return f"{self.status:<8} {self.check}: {self.message}"


@dataclass(frozen=True)
class Context:
    cfg: Config
    paths: Paths
    env: Mapping[str, str]
    online: bool

    def api(self) -> Any:  # huggingface_hub.HfApi with the environment's token
        from huggingface_hub import HfApi

        return HfApi(token=self.env.get("HF_TOKEN") or False)


def run(cfg: Config, paths: Paths, env: Mapping[str, str] | None = None) -> list[Finding]:
    """Every check, in the order a run would meet its problems."""
    env = os.environ if env is None else env
    ctx = Context(cfg, paths, env, online=hub_reachable())
    return [check(ctx) for check in CHECKS]


def problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status == "problem"]


# ------------------------------------------------------------------------------------------------ checks


def hub_write(ctx: Context) -> Finding:
    repo = ctx.cfg.publish.repo_id
    if "hub" not in ctx.cfg.publish.targets:
        return Finding("hub", "ok", "not a publish target (publish.targets)")
    if not (ctx.env.get("HF_TOKEN") or "").strip():
        return Finding(
            "hub",
            "problem",
            f"HF_TOKEN is not set and publish.targets has `hub` ({repo}); fix: export HF_TOKEN=<a write "
            "token from https://huggingface.co/settings/tokens>, or drop `hub` from publish.targets",
        )
    if not ctx.online:
        return Finding("hub", "skipped", f"offline: write access to {repo} not checked")
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    api = ctx.api()
    try:
        api.auth_check(repo, write=True)
        return Finding("hub", "ok", f"HF_TOKEN can write to {repo}")
    except RepositoryNotFoundError:
        pass  # a new repo: the token must be able to create it in the namespace
    except HfHubHTTPError as exc:
        return Finding("hub", "problem", _token_problem(exc, f"write to {repo}"))
    try:
        me = api.whoami()
    except HfHubHTTPError as exc:
        return Finding("hub", "problem", _token_problem(exc, "identify itself (whoami)"))
    namespace = repo.split("/")[0]
    role = (me.get("auth", {}).get("accessToken") or {}).get("role", "write")
    writable = {me.get("name")} | {org.get("name") for org in me.get("orgs", [])}
    if role == "read" or namespace not in writable:
        why = "is read-only" if role == "read" else f"(user {me.get('name')}) has no access to {namespace!r}"
        return Finding(
            "hub",
            "problem",
            f"HF_TOKEN {why}, so publish cannot create {repo}; fix: use a write token of {namespace}, or "
            f"set publish.repo_id to {me.get('name')}/{repo.split('/')[1]}",
        )
    return Finding("hub", "ok", f"{repo} does not exist yet; HF_TOKEN can create it in {namespace}")


def base_model(ctx: Context) -> Finding:
    model = ctx.cfg.model
    where = local_source(model.id, model.revision, ctx.paths.base_model)
    if where:
        return Finding("base model", "ok", f"{model.id}: no download needed ({where})")
    if not ctx.online:
        return Finding(
            "base model",
            "problem",
            f"{model.id} is neither cached nor shipped and the Hub is unreachable; fix: connect to the "
            "Hub (unset HF_HUB_OFFLINE), or run `logicflow model fetch` where the Hub is reachable",
        )
    return _hub_repo(ctx, "base model", model.id, model.revision, "model", "model.revision")


def datasets(ctx: Context) -> Finding:
    data = ctx.cfg.data
    own = {name: s.path for name, s in data.datasets.items() if s.path is not None}
    missing = [f"{name}: {path}" for name, path in own.items() if not (ctx.paths.root / path).exists()]
    if missing:
        return Finding(
            "datasets", "problem", f"data.datasets.*.path not found ({'; '.join(missing)}); fix the path"
        )
    from_hub = [name for name in data.datasets if name not in own]
    if data.source == "offline" or not from_hub:
        return Finding("datasets", "ok", "no download needed (offline generator or your own files)")
    if not ctx.online:
        if data.source == "hub":
            return Finding(
                "datasets",
                "problem",
                "data.source=hub but the Hub is unreachable; fix: connect, or set data.source=auto",
            )
        return Finding("datasets", "skipped", "offline: the generator writes rows in each dataset's schema")
    for name in from_hub:
        adapter = get_adapter(name)
        found = _hub_repo(ctx, "datasets", adapter.hub_id, adapter.revision, "dataset", "its adapter")
        if found.status != "ok":
            return found
    return Finding("datasets", "ok", f"{', '.join(from_hub)}: pinned revisions reachable")


def disk(ctx: Context) -> Finding:
    arch = _shape(ctx)
    if arch is None:
        return Finding("disk", "skipped", f"{ctx.cfg.model.id}: {UNKNOWN_SIZE}")
    free, need = shutil.disk_usage(ctx.paths.root).free, _planned_bytes(ctx.cfg, arch)
    sizes = f"{free / GIB:.1f} GiB free at {ctx.paths.root}, the run writes about {need / GIB:.1f} GiB"
    if free < need:
        fix = "fix: free space there, or `dvc gc` old outputs"
        return Finding("disk", "problem", f"{sizes} (models, checkpoints, data); {fix}")
    return Finding("disk", "ok", sizes)


def memory(ctx: Context) -> Finding:
    arch = _shape(ctx)
    if arch is None:
        return Finding("memory", "skipped", f"{ctx.cfg.model.id}: {UNKNOWN_SIZE}")
    (have, where), need = _free_memory(), plan_memory(ctx.cfg, arch).total
    sizes = f"training needs about {need / GIB:.1f} GiB, {where} has {have / GIB:.1f} GiB free"
    if have < need:
        fix = "a smaller train.batch_size or cutoff_len, quantization 4bit, or more GPUs (`logicflow plan`)"
        return Finding("memory", "problem", f"{sizes}; fix: {fix}")
    return Finding("memory", "ok", sizes)


def servers(ctx: Context) -> Finding:
    uri = resolve_tracking_uri(ctx.cfg.tracking.uri, ctx.paths)
    try:
        check_reachable(uri)
    except TrackingError as exc:
        return Finding("servers", "problem", str(exc))
    prefect = (ctx.env.get("PREFECT_API_URL") or "").rstrip("/")
    if prefect:
        try:
            with urllib.request.urlopen(f"{prefect}/health", timeout=5):  # noqa: S310 - the configured server
                pass
        except OSError as exc:
            return Finding(
                "servers",
                "problem",
                f"Prefect API {prefect} is unreachable ({getattr(exc, 'reason', exc)}); fix: `logicflow up`, "
                "or unset PREFECT_API_URL",
            )
    tracking = f"MLflow {uri}" if is_http(uri) else f"MLflow store {uri}"
    return Finding("servers", "ok", f"{tracking}{f', Prefect {prefect}' if prefect else ''}")


CHECKS: list[Callable[[Context], Finding]] = [hub_write, base_model, datasets, disk, memory, servers]


# ------------------------------------------------------------------------------------------------ helpers


def _hub_repo(ctx: Context, check: str, repo_id: str, revision: str, kind: str, field: str) -> Finding:
    """A model or dataset the run will download: visible to this token, not gated for it, revision exists."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api, url = ctx.api(), f"https://huggingface.co/{'datasets/' if kind == 'dataset' else ''}{repo_id}"
    try:
        api.auth_check(repo_id, repo_type=kind)
        api.repo_info(repo_id, repo_type=kind, revision=revision)
    except GatedRepoError:
        return Finding(
            check,
            "problem",
            f"{repo_id} is gated and HF_TOKEN has no access; fix: accept its terms at {url} and export "
            "HF_TOKEN of that account",
        )
    except RevisionNotFoundError:
        return Finding(check, "problem", f"{repo_id} has no revision {revision!r}; fix {field}")
    except RepositoryNotFoundError:
        return Finding(
            check,
            "problem",
            f"{repo_id} not found (or private to another account); fix the id, or export HF_TOKEN of an "
            "account that can read it",
        )
    except HfHubHTTPError as exc:
        return Finding(check, "problem", _token_problem(exc, f"read {repo_id}"))
    return Finding(check, "ok", f"{repo_id}@{revision} readable")


def _token_problem(exc: Exception, action: str) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        return f"HF_TOKEN is invalid or expired (401 when trying to {action}); fix: create a new token"
    if status == 403:
        return (
            f"HF_TOKEN may not {action} (403); fix: give the token write access to it (fine-grained tokens: "
            "add the repo), or use another token"
        )
    return f"the Hub answered {status} when trying to {action}; fix: retry later, or check HF_ENDPOINT"


def _planned_bytes(cfg: Config, arch: Architecture) -> int:
    """Disk the run writes: model copies (bf16/fp16 files for half-precision profiles, else fp32), kept
    checkpoints (fp32 trainable weights and Adam's two moments), data."""
    weight_bytes = 2 if cfg.train.precision in ("bf16", "fp16") else 4
    checkpoints = cfg.train.save_total_limit * trainable_params(arch, cfg) * 4 * 3
    data = cfg.data.max_samples * DATA_BYTES_PER_ROW
    return WEIGHT_COPIES * arch.params * weight_bytes + checkpoints + data


def _shape(ctx: Context) -> Architecture | None:
    """The model's shape, known once it is fetched (or built into `logicflow.planning`)."""
    try:
        return architecture(ctx.cfg, ctx.paths.base_model)
    except ConfigError:
        return None


def _free_memory() -> tuple[int, str]:
    """Free memory where training runs: the first GPU, else RAM."""
    import torch

    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(0)
        return free, f"GPU 0 ({torch.cuda.get_device_name(0)})"
    import psutil

    return psutil.virtual_memory().available, "RAM"
