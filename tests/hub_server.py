"""A small Hugging Face Hub-compatible HTTP endpoint for the publish tests.

The real Hub cannot be reached from the test machines, so this server stands in for it at the network edge:
the code under test drives the real `huggingface_hub.HfApi` client over real HTTP, and only the far end is
ours. It implements the routes huggingface_hub 2.4 calls for what LogicFlow does (read from
`huggingface_hub/hf_api.py` and `_commit_api.py`):

    POST /api/repos/create                                 create_repo (409 + url when it exists)
    POST /api/validate-yaml                                README.md front matter check in create_commit
    POST /api/models/<ns>/<name>/preupload/<rev>           "lfs" for files the repo's .gitattributes sends
                                                           to LFS or over `hub.lfs_threshold`, else "regular"
    POST /<ns>/<name>.git/info/lfs/objects/batch           Git LFS batch API: an upload + verify action per
                                                           object the store lacks (none when it has it)
    PUT  /lfs/<oid>                                        the upload (no auth, like a presigned S3 URL)
    POST /lfs/<oid>/verify                                 the stored bytes must hash to <oid>
    POST /api/models/<ns>/<name>/commit/<rev>              NDJSON commit; honours parentCommit (412)
    GET  /api/models/<ns>/<name>/commits/<rev>             list_repo_commits (newest first)
    GET  /api/models/<ns>/<name>/tree/<rev>                list_repo_files / list_repo_tree
    POST /api/models/<ns>/<name>/branch/<branch>           create_branch
    GET  /api/models/<ns>/<name>[/revision/<rev>]          model_info / repo_info
    GET  /api/models/<ns>/<name>/auth-check[/write]        auth_check (403 GatedRepo for `hub.gated`)
    GET  /api/whoami-v2                                    whoami: `hub.user`, `hub.role`, `hub.orgs`
    HEAD /                                                 "is the Hub reachable"
`/api/datasets/<ns>/<name>/...` reach the same repos under the id `datasets/<ns>/<name>`.

Repos live in memory as commit chains per branch; LFS objects in one store by SHA-256 (a commit's `lfsFile`
lines must name stored objects). Every request but the LFS PUT needs `Authorization: Bearer <token>`.
Xet is not implemented: while the server runs, huggingface_hub in this process and its children is pinned to
LFS (`HF_HUB_DISABLE_XET`; with hf_xet installed the real Hub would be sent Xet uploads instead).
`hub.fail("commit", 503)` makes the next commit request fail; `after_apply=True` records the commit first and
then answers 503, as when a response is lost after the Hub has done the work. `hub.hold("commit")` parks the
next commit request (before or after it is applied) until the test, having killed the client, releases it.

    with HubServer(token="hf_test") as hub:
        HfApi(endpoint=hub.url, token="hf_test").create_repo("me/model")
        assert hub.commits("me/model")[-1].files["README.md"] == b"..."
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

INITIAL_FILES = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}


@dataclass
class Commit:
    oid: str
    title: str
    message: str
    parent: str | None
    files: dict[str, bytes]  # the full tree after this commit
    changed: list[str]  # paths added or deleted by this commit


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # branch -> head oid

    def history(self, branch: str) -> list[Commit]:
        """Oldest first."""
        out, oid = [], self.branches[branch]
        while oid is not None:
            out.append(self.commits[oid])
            oid = self.commits[oid].parent
        return out[::-1]


@dataclass
class Fault:
    status: int
    after_apply: bool = False
    retry_after: int | None = None


@dataclass
class Hold:
    """The next request to a route waits at `reached` until the test calls `released.set()`."""

    after_apply: bool
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def park(self) -> None:
        self.reached.set()
        self.released.wait(120)


class HubServer:
    def __init__(self, token: str, host: str = "127.0.0.1") -> None:
        self.token = token
        self.user, self.role, self.orgs = "logicflow-test", "write", ["logicflow"]  # who the token is
        self.gated: set[str] = set()  # repos the token has not been granted
        self.lfs_threshold = 10 * 1024 * 1024  # the Hub sends files over 10 MB through LFS
        self.lfs: dict[str, bytes] = {}  # verified LFS objects by SHA-256
        self.lfs_pending: dict[str, bytes] = {}  # uploaded, not verified yet
        self.repos: dict[str, Repo] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.holds: dict[str, Hold] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status answered)
        self.lock = threading.Lock()
        self._seq = 0
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = ThreadingHTTPServer((host, 0), handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._pin_lfs(True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._pin_lfs(False)

    def _pin_lfs(self, on: bool) -> None:
        """No Xet here: huggingface_hub in this process and its children takes the LFS path while we run."""
        from huggingface_hub import constants

        if on:
            self._xet_before = (os.environ.get("HF_HUB_DISABLE_XET"), constants.HF_HUB_DISABLE_XET)
            os.environ["HF_HUB_DISABLE_XET"], constants.HF_HUB_DISABLE_XET = "1", True
            return
        env, constants.HF_HUB_DISABLE_XET = self._xet_before
        if env is None:
            os.environ.pop("HF_HUB_DISABLE_XET", None)
        else:
            os.environ["HF_HUB_DISABLE_XET"] = env

    # ---- test helpers ------------------------------------------------------------------------------------
    def fail(
        self,
        route: str,
        status: int,
        *,
        times: int = 1,
        after_apply: bool = False,
        retry_after: int | None = None,
    ) -> None:
        self.faults.setdefault(route, []).extend(
            Fault(status, after_apply, retry_after) for _ in range(times)
        )

    def hold(self, route: str, *, after_apply: bool = False) -> Hold:
        self.holds[route] = Hold(after_apply)
        return self.holds[route]

    def commits(self, repo_id: str, branch: str = "main") -> list[Commit]:
        return self.repos[repo_id].history(branch)

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return self.commits(repo_id, branch)[-1].files

    def add_repo(self, repo_id: str, kind: str = "model") -> Repo:
        """A repo someone else made (a base model, a dataset): one commit holding a README."""
        key = repo_id if kind == "model" else f"datasets/{repo_id}"
        repo = self.repos[key] = Repo(key, private=False)
        self.new_commit(
            repo, "main", "initial commit", "", {"README.md": b"# " + repo_id.encode()}, ["README.md"]
        )
        return repo

    def count(self, method: str, route: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and f"/{route}/" in p + "/")

    # ---- state changes (called under the lock) --------------------------------------------------------
    def new_commit(
        self, repo: Repo, branch: str, title: str, message: str, files: dict[str, bytes], changed: list[str]
    ) -> Commit:
        self._seq += 1
        parent = repo.branches.get(branch)
        oid = hashlib.sha1(f"{repo.repo_id}:{self._seq}:{title}:{parent}".encode()).hexdigest()
        commit = Commit(oid, title, message, parent, files, changed)
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    # ---- plumbing ----------------------------------------------------------------------------------------
    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        hold, self.hold = getattr(self, "hold", None), None
        if hold is not None:  # applied; the answer waits (the client may be gone by then)
            hold.park()
        self.hub.requests.append((self.command, urlsplit(self.path).path, status))
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client was killed while its request was held
            self.close_connection = True

    def _error(self, status: int, message: str, code: str | None = None, fault: Fault | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if fault is not None and fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        self._send(status, {"error": message}, headers)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []  # a streamed upload (httpx sends a file object chunked)
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        return b"".join(chunks)

    def _fault(self, route: str) -> Fault | None:
        queue = self.hub.faults.get(route)
        return queue.pop(0) if queue else None

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.hub.token}":
            return True
        self._error(401, "Invalid credentials in Authorization header")
        return False

    def _route(self) -> tuple[str, str | None, str | None, list[str], dict[str, list[str]]]:
        """-> (kind, repo_id, op, rest, query) for /api/models/<ns>/<name>/<op>/<rest...>."""
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        if parts[:2] in (["api", "models"], ["api", "datasets"]) and len(parts) >= 4:
            repo_id = f"{'datasets/' if parts[1] == 'datasets' else ''}{parts[2]}/{parts[3]}"
            return "model", repo_id, (parts[4] if len(parts) > 4 else None), parts[5:], query
        return "/".join(parts), None, None, [], query

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "Repository not found", "RepoNotFound")
        return repo

    def _branch(self, repo: Repo, rev: str) -> str | None:
        if rev in repo.branches:
            return rev
        if rev in repo.commits:
            return rev
        self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return None

    # ---- verbs -------------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if not self._authorized():
            return
        kind, repo_id, op, rest, query = self._route()
        if kind == "api/whoami-v2":
            orgs = [{"name": org} for org in self.hub.orgs]
            token = {"role": self.hub.role}
            return self._send(
                200, {"type": "user", "name": self.hub.user, "orgs": orgs, "auth": {"accessToken": token}}
            )
        if kind != "model" or repo_id is None:
            return self._error(404, f"no route {self.path}")
        with self.hub.lock:
            fault = self._fault(op or "info")
            if fault:
                return self._error(fault.status, "injected failure", fault=fault)
            repo = self._repo(repo_id)
            if repo is None:
                return None
            if op == "auth-check":
                return self._auth_check(repo_id, write=rest == ["write"])
            rev = "/".join(rest) if rest else "main"
            if op in (None, "revision"):
                ref = self._branch(repo, rev)
                if ref is None:
                    return None
                head = repo.commits.get(repo.branches.get(ref, ref))
                return self._send(
                    200,
                    {
                        "id": repo_id,
                        "sha": head.oid,
                        "private": repo.private,
                        "siblings": [{"rfilename": p} for p in sorted(head.files)],
                    },
                )
            if op == "commits":
                ref = self._branch(repo, rev)
                if ref is None:
                    return None
                history = repo.history(ref) if ref in repo.branches else [repo.commits[ref]]
                return self._send(
                    200,
                    [
                        {
                            "id": c.oid,
                            "title": c.title,
                            "message": c.message,
                            "authors": [{"user": "logicflow-test"}],
                            "date": "2026-01-01T00:00:00.000Z",
                        }
                        for c in reversed(history)
                    ],
                )
            if op == "tree":
                ref = self._branch(repo, rev)
                if ref is None:
                    return None
                files = repo.commits[repo.branches.get(ref, ref)].files
                entries = [
                    {"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                    for p, b in sorted(files.items())
                ]
                folders = sorted({p.rsplit("/", 1)[0] for p in files if "/" in p})
                entries += [{"type": "directory", "path": d, "oid": "0" * 40} for d in folders]
                return self._send(200, entries)
        return self._error(404, f"no route {self.path}")

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = self._body()
        if not self._authorized():
            return
        kind, repo_id, op, rest, _ = self._route()
        self.hold = self.hub.holds.pop(op or "", None)
        if self.hold is not None and not self.hold.after_apply:  # parked before anything is applied
            self.hold.park()
            self.hold = None  # the answer is not held again
            return self._error(503, "the request was held and dropped")
        with self.hub.lock:
            if kind == "api/repos/create":
                return self._create(json.loads(body))
            if kind == "api/validate-yaml":
                return self._validate(json.loads(body))
            if kind.endswith(".git/info/lfs/objects/batch"):
                return self._lfs_batch(json.loads(body))
            if kind.startswith("lfs/") and kind.endswith("/verify"):
                return self._lfs_verify(kind.split("/")[1], json.loads(body))
            if kind != "model" or repo_id is None:
                return self._error(404, f"no route {self.path}")
            fault = self._fault(op or "")
            if fault and not fault.after_apply:
                return self._error(fault.status, "injected failure", fault=fault)
            repo = self._repo(repo_id)
            if repo is None:
                return None
            rev = "/".join(rest) or "main"
            if op == "preupload":
                files = json.loads(body)["files"]
                return self._send(
                    200,
                    {
                        "files": [
                            {
                                "path": f["path"],
                                "uploadMode": self._upload_mode(repo, f),
                                "shouldIgnore": False,
                            }
                            for f in files
                        ],
                        "commitOid": repo.branches.get(rev),
                    },
                )
            if op == "branch":
                if rev in repo.branches:
                    return self._error(409, "Reference already exists")
                repo.branches[rev] = repo.branches["main"]
                return self._send(200, {})
            if op == "commit":
                return self._commit(repo, rev, body, fault)
        return self._error(404, f"no route {self.path}")

    def do_PUT(self) -> None:  # noqa: N802 - http.server naming
        body = self._body()  # an LFS upload: no Authorization, as to a presigned URL
        kind = self._route()[0]
        if not kind.startswith("lfs/"):
            return self._error(404, f"no route {self.path}")
        with self.hub.lock:
            fault = self._fault("lfs-put")
            if fault:
                return self._error(fault.status, "injected failure", fault=fault)
            self.hub.lfs_pending[kind.split("/")[1]] = body
        return self._send(200, {})

    # ---- handlers ----------------------------------------------------------------------------------------
    def _upload_mode(self, repo: Repo, file: dict[str, Any]) -> str:
        attributes = (
            repo.commits[next(iter(repo.branches.values()))].files.get(".gitattributes", b"").decode()
        )
        lfs_patterns = [line.split()[0] for line in attributes.splitlines() if "filter=lfs" in line]
        to_lfs = file["size"] > self.hub.lfs_threshold or any(
            fnmatch.fnmatch(file["path"], p) for p in lfs_patterns
        )
        return "lfs" if to_lfs else "regular"

    def _lfs_batch(self, payload: dict[str, Any]) -> None:
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.hub.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{self.hub.url}/lfs/{obj['oid']}"},
                    "verify": {"href": f"{self.hub.url}/lfs/{obj['oid']}/verify"},
                }
            objects.append(entry)
        return self._send(200, {"transfer": "basic", "objects": objects})

    def _lfs_verify(self, oid: str, payload: dict[str, Any]) -> None:
        data = self.hub.lfs_pending.pop(oid, None)
        if data is None or hashlib.sha256(data).hexdigest() != oid or len(data) != payload["size"]:
            return self._error(
                422, f"LFS object {oid}: the uploaded bytes do not match their SHA-256 or size"
            )
        self.hub.lfs[oid] = data
        return self._send(200, {})

    def _auth_check(self, repo_id: str, write: bool) -> None:
        if repo_id in self.hub.gated:
            return self._error(
                403, f"Access to {repo_id} is restricted: you must be authenticated", "GatedRepo"
            )
        writable = self.hub.role != "read" and repo_id.split("/")[0] in {self.hub.user, *self.hub.orgs}
        if write and not writable:
            return self._error(403, f"You don't have write access to {repo_id}")
        return self._send(200, {})

    def _create(self, payload: dict[str, Any]) -> None:
        fault = self._fault("create")
        if fault:
            return self._error(fault.status, "injected failure", fault=fault)
        repo_id = f"{payload.get('organization')}/{payload['name']}"
        url = f"{self.hub.url}/{repo_id}"
        if repo_id in self.hub.repos:
            return self._send(409, {"error": "You already created this model repo", "url": url})
        repo = Repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        self.hub.repos[repo_id] = repo
        self.hub.new_commit(repo, "main", "initial commit", "", dict(INITIAL_FILES), list(INITIAL_FILES))
        return self._send(200, {"url": url, "name": repo_id})

    def _validate(self, payload: dict[str, Any]) -> None:
        fault = self._fault("validate")
        if fault:
            return self._error(fault.status, "injected failure", fault=fault)
        content = payload.get("content", "")
        errors = []
        if not content.startswith("---\n"):
            errors.append({"message": "no YAML front matter"})
        else:
            try:
                meta = yaml.safe_load(content.split("\n---\n", 1)[0][4:])
                if not isinstance(meta, dict):
                    errors.append({"message": "front matter is not a mapping"})
                else:
                    for entry in meta.get("model-index") or []:
                        for result in entry.get("results", []):
                            if not {"task", "dataset", "metrics"} <= set(result):
                                errors.append({"message": f"model-index result lacks keys: {sorted(result)}"})
            except yaml.YAMLError as exc:
                errors.append({"message": f"invalid YAML: {exc}"})
        return self._send(400 if errors else 200, {"errors": errors, "warnings": []})

    def _commit(self, repo: Repo, rev: str, body: bytes, fault: Fault | None) -> None:
        if rev not in repo.branches:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        head = repo.branches[rev]
        if header.get("parentCommit") and header["parentCommit"] != head:
            return self._error(412, "A commit has happened since the parent commit; refusing to overwrite")
        files = dict(repo.commits[head].files)
        changed = []
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                changed.append(value["path"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.hub.lfs:
                    return self._error(
                        422, f"LFS object {value['oid']} of {value['path']} was never uploaded"
                    )
                files[value["path"]] = self.hub.lfs[value["oid"]]
                changed.append(value["path"])
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
                changed.append(value["path"])
            elif line["key"] == "deletedFolder":
                for path in [p for p in files if p.startswith(value["path"].rstrip("/") + "/")]:
                    files.pop(path)
                changed.append(value["path"])
            elif line["key"] != "header":
                return self._error(400, f"unsupported commit operation {line['key']!r}")
        commit = self.hub.new_commit(
            repo, rev, header["summary"], header.get("description", ""), files, changed
        )
        if fault is not None:  # after_apply: the work is done, the answer is lost
            return self._error(fault.status, "injected failure after the commit was recorded", fault=fault)
        return self._send(
            200,
            {
                "commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{commit.oid}",
                "commitOid": commit.oid,
                "success": True,
            },
        )
