"""Push a Hub-shaped folder to a Hugging Face Hub endpoint in exactly one commit, or none if unchanged.

    target = HubTarget.from_env(cfg.publish)            # HF_TOKEN, HF_ENDPOINT from the environment
    result = push_folder(target, folder, plan.fingerprint, "Publish X from MLflow run <id>")

How one publish never makes two commits, even when retried:
- the commit description carries `logicflow-fingerprint: <sha256 of the folder>`;
- every attempt first reads the branch head (`list_repo_commits`): if the head already carries this
  fingerprint, the model is there (unchanged, or an earlier attempt's commit landed before its response was
  lost) and nothing is sent;
- otherwise it commits with `parent_commit=<that head>`, so a commit racing ours makes the Hub refuse instead
  of stacking a second one;
- 429, 5xx, 409/412 and connection errors are retried with exponential backoff; anything else (bad token,
  invalid card, unknown repo) stops at once.
The token is held only by the client: it is never logged, stored or put in a message (`scrub`).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from logicflow.errors import PublishError

logger = logging.getLogger(__name__)

FINGERPRINT_PREFIX = "logicflow-fingerprint: "
DEFAULT_ENDPOINT = "https://huggingface.co"
RETRY_STATUS = frozenset({409, 412, 429, 500, 502, 503, 504})
# How the Hub takes a file (it decides at push time, `preupload`; this is its rule for a new repo): through
# large-file storage when the default .gitattributes lists its type or it is over 10 MB, else inline.
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.onnx", "*.msgpack")
LFS_MIN_BYTES = 10 * 1024 * 1024
KEEP_REMOTE = frozenset({".gitattributes"})


def upload_mode(path: str, size: int) -> str:
    """`lfs` or `regular`: how the Hub will store `path` (see LFS_PATTERNS)."""
    name = path.rsplit("/", 1)[-1]
    return "lfs" if size > LFS_MIN_BYTES or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS) else "regular"


def large_file_transfer() -> str:
    """How huggingface_hub sends `lfs` files: Xet when hf_xet is installed (the Hub's default), else Git LFS
    (HTTP PUT per file); HF_HUB_DISABLE_XET=1 forces Git LFS."""
    from huggingface_hub.utils._runtime import is_xet_available

    return "xet" if is_xet_available() else "git-lfs"


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every secret replaced by `***` (one line, for error messages)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())


def _offline() -> bool:
    """HF_HUB_OFFLINE now, or when huggingface_hub was imported (it reads the variable once, at import)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"} or bool(
        constants.HF_HUB_OFFLINE
    )


@dataclass(frozen=True)
class HubTarget:
    repo_id: str
    endpoint: str
    private: bool
    revision: str
    token: str = field(repr=False)

    @classmethod
    def from_env(cls, publish_cfg, env: dict[str, str] | None = None) -> HubTarget:  # noqa: ANN001 - PublishConfig
        """Check everything that can be checked offline; raise PublishError before any network call."""
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        env = os.environ if env is None else env
        repo_id = publish_cfg.repo_id
        try:
            validate_repo_id(repo_id)
        except HFValidationError as exc:
            detail = " ".join(str(exc).split())
            raise PublishError(
                f"publish.repo_id {repo_id!r} is not a valid Hub repo id ({detail}); use namespace/name"
            ) from None
        if repo_id.count("/") != 1:
            raise PublishError(
                f"publish.repo_id {repo_id!r} must be namespace/name (a user or organisation, "
                "then the model name)"
            )
        token = (env.get("HF_TOKEN") or "").strip()
        if not token:
            raise PublishError(
                "the `hub` publish target needs a write token in HF_TOKEN; export it (never put "
                "it in params.yaml) or drop `hub` from publish.targets"
            )
        if _offline():
            raise PublishError(
                "the `hub` publish target cannot run with HF_HUB_OFFLINE set; unset it or drop "
                "`hub` from publish.targets"
            )
        endpoint = (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        return cls(
            repo_id=repo_id,
            endpoint=endpoint,
            private=publish_cfg.private,
            revision=publish_cfg.revision,
            token=token,
        )

    @property
    def url(self) -> str:
        return f"{self.endpoint}/{self.repo_id}"


@dataclass(frozen=True)
class PushResult:
    status: str  # "pushed" | "unchanged"
    repo_url: str
    revision: str
    commit_oid: str | None
    attempts: int


@dataclass
class _Head:
    sha: str | None
    fingerprint: str | None


def _is_retryable(exc: BaseException) -> bool:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        status = getattr(exc.response, "status_code", None)
        return status in RETRY_STATUS or (isinstance(status, int) and status >= 500)
    return isinstance(exc, httpx2.TransportError | ConnectionError | TimeoutError)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}" + (f" {status}" if status else "") + (f": {first}" if first else "")


def _head(api, target: HubTarget) -> _Head:  # noqa: ANN001 - HfApi
    """The branch head and the fingerprint it carries; creates the branch when it does not exist yet."""
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        commits = api.list_repo_commits(target.repo_id, revision=target.revision)
    except RevisionNotFoundError:
        logger.info("branch %s does not exist on %s yet: creating it", target.revision, target.repo_id)
        api.create_branch(target.repo_id, branch=target.revision, exist_ok=True)
        commits = api.list_repo_commits(target.repo_id, revision=target.revision)
    if not commits:
        return _Head(None, None)
    head = commits[0]
    text = f"{head.title}\n{head.message}"
    found = next(
        (
            line.split(FINGERPRINT_PREFIX, 1)[1].strip()
            for line in text.splitlines()
            if FINGERPRINT_PREFIX in line
        ),
        None,
    )
    return _Head(head.commit_id, found)


def _operations(api, target: HubTarget, folder: Path) -> list:  # noqa: ANN001 - HfApi
    """Add every file of `folder`; delete remote files the folder no longer has (repo == folder)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    local = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    remote = set(api.list_repo_files(target.repo_id, revision=target.revision))
    ops: list = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(folder / path)) for path in local]
    ops += [CommitOperationDelete(path_in_repo=path) for path in sorted(remote - set(local) - KEEP_REMOTE)]
    return ops


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_s: float = 2.0  # first wait; doubles each attempt, capped, unless the Hub sends Retry-After
    max_backoff_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep


RETRY = RetryPolicy()


def push_folder(
    target: HubTarget,
    folder: Path,
    fingerprint: str,
    message: str,
    *,
    description: str = "",
    retry: RetryPolicy | None = None,
) -> PushResult:
    """Make `target`'s branch hold `folder` (see module docstring); PublishError after the last attempt."""
    from huggingface_hub import HfApi

    policy = retry or RETRY
    attempts = policy.attempts

    api = HfApi(endpoint=target.endpoint, token=target.token)
    sent = False  # a commit request went out; if its fingerprint shows up later, it landed
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            api.create_repo(target.repo_id, repo_type="model", private=target.private, exist_ok=True)
            if target.private and not api.repo_info(target.repo_id).private:
                raise PublishError(
                    f"{target.url} exists and is public, but publish.private is true: nothing was pushed; "
                    "make the repo private on the Hub, or set publish.private: false to publish openly"
                )
            head = _head(api, target)
            if head.fingerprint == fingerprint:
                status = "pushed" if sent else "unchanged"
                logger.info(
                    "%s@%s already holds fingerprint %s (%s)",
                    target.repo_id,
                    target.revision,
                    fingerprint[:12],
                    "an earlier attempt landed" if sent else "nothing to publish",
                )
                return PushResult(status, target.url, target.revision, head.sha, attempt)
            operations = _operations(api, target, folder)
            sent = True
            info = api.create_commit(
                target.repo_id,
                operations,
                commit_message=message,
                revision=target.revision,
                commit_description=f"{description}\n\n{FINGERPRINT_PREFIX}{fingerprint}".strip(),
                parent_commit=head.sha,
            )
            logger.info(
                "pushed %d files to %s@%s (commit %s)",
                len(operations),
                target.repo_id,
                target.revision,
                str(info.oid)[:12],
            )
            return PushResult("pushed", target.url, target.revision, info.oid, attempt)
        except PublishError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below; never shown unscrubbed
            last = exc
            if not _is_retryable(exc):
                status = getattr(getattr(exc, "response", None), "status_code", None)
                hint = (
                    "; check that HF_TOKEN is valid and can write to this namespace"
                    if status in (401, 403)
                    else ""
                )
                raise PublishError(
                    scrub(f"Hub {target.url} refused the publish: {_describe(exc)}{hint}", target.token)
                ) from None
            if attempt == attempts:
                break
            wait = min(policy.max_backoff_s, _retry_after(exc) or policy.backoff_s * 2 ** (attempt - 1))
            logger.warning(
                "%s",
                scrub(
                    f"Hub attempt {attempt}/{attempts} failed ({_describe(exc)}); retrying in {wait:.1f} s",
                    target.token,
                ),
            )
            policy.sleep(wait)
    left = (
        (
            "if the last commit reached the Hub it is complete, else the repo holds its previous version; "
            "re-run to finish (a re-run never commits twice)"
        )
        if sent
        else "the repo was left as it was"
    )
    raise PublishError(
        scrub(
            f"Hub {target.endpoint} unreachable or failing after {attempts} attempts "
            f"({_describe(last) if last else 'no detail'}); {left}",
            target.token,
        )
    )
