"""A loopback Hugging Face Hub: the subset of the Hub API that ``huggingface_hub`` calls to publish.

Why this exists: ``synthgen publish`` must be tested against the real client (``HfApi``: its
preupload, NDJSON commit, refs, tags and downloads), not a patched one, and without the internet.
This aiohttp app on 127.0.0.1 keeps repos in memory (commits as full file snapshots, branches, tags)
and answers like the Hub does, including the headers ``huggingface_hub`` turns into typed errors::

    with HubServer(tokens={"hf_write": "write"}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_write", "HF_HUB_DISABLE_XET": "1"}
        ...  # run the publish in a subprocess: huggingface_hub reads HF_ENDPOINT at import time
        hub.files("org/name")   # {path: bytes} at the head of main

Preupload answers ``uploadMode: regular`` for every file, so content travels base64 inside the
NDJSON commit (no LFS, no Xet); an ``lfsFile`` line is refused with 400. ``fail(route, status,
times)`` injects errors (``times=None``: always); ``requests`` logs every request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from aiohttp import web

__all__ = ["Commit", "HubServer", "Repo", "git_sha"]

_FRONT = re.compile(r"\A\s*---\r?\n(.*?)\r?\n---", re.S)


def git_sha(content: bytes) -> str:
    """The git blob sha1 the Hub reports as a regular file's ``oid``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    parent: str | None
    files: dict[str, bytes]
    message: str
    description: str = ""


@dataclass
class Repo:
    repo_id: str
    type: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # commit shas, oldest first

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        return revision if revision in self.commits else None


class _Reply(Exception):
    """Raised by a handler to answer with an error status (and the Hub's error headers)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code

    def response(self) -> web.Response:
        headers = {"X-Error-Message": self.message}
        if self.code:
            headers["X-Error-Code"] = self.code
        return web.json_response({"error": self.message}, status=self.status, headers=headers)


Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


class HubServer:
    """The loopback Hub in a background thread (its own event loop); ``url`` is the ``HF_ENDPOINT``."""

    def __init__(
        self,
        *,
        tokens: Mapping[str, str] | None = None,
        user: str = "tester",
        orgs: tuple[str, ...] = ("my-faculty",),
        host: str = "127.0.0.1",
    ) -> None:
        self.tokens = dict(tokens if tokens is not None else {"hf_write": "write"})
        self.user, self.orgs, self.host = user, orgs, host
        self.port: int | None = None
        self.repos: dict[str, Repo] = {}
        self.requests: list[dict[str, Any]] = []
        self.received_bodies: list[bytes] = []
        self._faults: dict[str, list[int | None]] = {}
        self._always: dict[str, int] = {}
        self._counter = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        repo = r"/api/(?P<type>\w+)s/(?P<repo>[^/]+/[^/]+)"
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = [
            ("GET", re.compile(r"/api/whoami-v2"), "whoami", self._whoami),
            ("POST", re.compile(r"/api/repos/create"), "create", self._create),
            ("POST", re.compile(r"/api/validate-yaml"), "validate", self._validate),
            ("POST", re.compile(repo + r"/preupload/(?P<rev>.+)"), "preupload", self._preupload),
            ("POST", re.compile(repo + r"/commit/(?P<rev>.+)"), "commit", self._commit),
            ("GET", re.compile(repo + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"), "tree", self._tree),
            ("POST", re.compile(repo + r"/paths-info/(?P<rev>.+)"), "paths_info", self._paths_info),
            ("GET", re.compile(repo + r"/refs"), "refs", self._refs),
            ("POST", re.compile(repo + r"/tag/(?P<rev>.+)"), "tag", self._tag),
            ("POST", re.compile(repo + r"/branch/(?P<branch>.+)"), "branch", self._branch),
            ("GET", re.compile(repo + r"(?:/revision/(?P<rev>.+))?"), "info", self._info),
            ("GET", re.compile(r"/(?P<type>\w+)s/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
             "resolve", self._resolve),
        ]  # fmt: skip

    # --- control (test thread) -------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}"

    def fail(self, route: str, status: int, times: int | None = 1) -> None:
        """Answer the next ``times`` requests of ``route`` with ``status`` (``None``: every one)."""
        with self._lock:
            if times is None:
                self._always[route] = status
            else:
                self._faults.setdefault(route, []).extend([status] * times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._always.clear()

    def head(self, repo_id: str, branch: str = "main") -> str:
        return self.repos[repo_id].branches[branch]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        sha = repo.resolve(revision)
        assert sha is not None, f"no revision {revision}"
        return dict(repo.commits[sha].files)

    def commits(self, repo_id: str) -> list[Commit]:
        repo = self.repos[repo_id]
        return [repo.commits[sha] for sha in repo.order]

    def count(self, route: str) -> int:
        return sum(1 for r in self.requests if r["route"] == route)

    def put_file(self, repo_id: str, path: str, content: bytes, message: str = "edit on the Hub") -> str:
        """A commit made outside synthgen (a person editing the card on the website)."""
        with self._lock:
            repo = self.repos[repo_id]
            files = dict(repo.commits[repo.branches["main"]].files)
            files[path] = content
            return self._new_commit(repo, "main", files, message, "")

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> HubServer:
        self._thread = threading.Thread(target=self._run, name="hub-loopback-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self.port is None:
            raise RuntimeError("loopback Hub did not start")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, 0)
        loop.run_until_complete(site.start())
        self.port = int(self._runner.addresses[0][1])
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- dispatch -----------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        method = "GET" if request.method == "HEAD" else request.method
        for verb, pattern, route, handler in self._routes:
            m = pattern.fullmatch(path)
            if verb != method or m is None:
                continue
            params = {k: _unquote(v) for k, v in m.groupdict().items() if v is not None}
            body = await request.read()
            entry = {"method": request.method, "route": route, "path": path, "status": 200}
            with self._lock:
                self.requests.append(entry)
                self.received_bodies.append(body)
            try:
                self._check_fault(route)
                self._auth(request, route, params)
                response = await handler(request, params)
            except _Reply as reply:
                response = reply.response()
            entry["status"] = response.status
            return response
        return web.json_response({"error": f"no route for {request.method} {path}"}, status=404)

    def _check_fault(self, route: str) -> None:
        with self._lock:
            queue = self._faults.get(route)
            status = queue.pop(0) if queue else self._always.get(route)
        if status is not None:
            raise _Reply(status, f"injected {status}")

    def _auth(self, request: web.Request, route: str, params: dict[str, str]) -> None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
        role = self.tokens.get(token or "")
        if role is None:
            raise _Reply(401, "Invalid credentials in Authorization header")
        writes = route in ("create", "commit", "preupload", "tag", "branch")
        namespace = params.get("repo", "").split("/")[0] or None
        if writes and (role != "write" or (namespace and namespace not in (self.user, *self.orgs))):
            raise _Reply(
                403, f"You don't have the rights to write to {params.get('repo') or 'this namespace'}"
            )

    def _repo(self, params: dict[str, str]) -> Repo:
        repo = self.repos.get(params["repo"])
        if repo is None or repo.type != params["type"]:
            raise _Reply(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit_at(self, repo: Repo, revision: str) -> Commit:
        sha = repo.resolve(revision)
        if sha is None:
            raise _Reply(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[sha]

    def _new_commit(
        self, repo: Repo, branch: str, files: dict[str, bytes], message: str, description: str
    ) -> str:
        self._counter += 1
        parent = repo.branches.get(branch)
        digest = hashlib.sha1(f"{parent}\n{message}\n{self._counter}".encode())
        for path in sorted(files):
            digest.update(f"{path}:{git_sha(files[path])}".encode())
        sha = digest.hexdigest()
        repo.commits[sha] = Commit(sha, parent, files, message, description)
        repo.order.append(sha)
        repo.branches[branch] = sha
        return sha

    # --- handlers -------------------------------------------------------------------------------------

    async def _whoami(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return web.json_response(
            {
                "type": "user",
                "name": self.user,
                "orgs": [{"name": org, "type": "org"} for org in self.orgs],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            }
        )

    async def _create(self, request: web.Request, params: dict[str, str]) -> web.Response:
        payload = await request.json()
        namespace = payload.get("organization") or self.user
        repo_id = f"{namespace}/{payload['name']}"
        kind = payload.get("type") or "model"
        self._auth(request, "create", {"repo": repo_id})
        if repo_id in self.repos:  # the Hub's 409 carries the url; create_repo(exist_ok=True) reads it
            return web.json_response(
                {"error": "You already created this repo", "url": f"{self.url}/{kind}s/{repo_id}"}, status=409
            )
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        with self._lock:
            repo = self.repos[repo_id] = Repo(repo_id, kind, private)
            attributes = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
            self._new_commit(repo, "main", {".gitattributes": attributes}, "initial commit", "")
        return web.json_response({"url": f"{self.url}/{kind}s/{repo_id}", "name": repo_id, "id": repo_id})

    async def _validate(self, request: web.Request, params: dict[str, str]) -> web.Response:
        content = (await request.json()).get("content", "")
        m = _FRONT.match(content)
        try:
            meta = yaml.safe_load(m.group(1)) if m else {}
        except yaml.YAMLError as exc:
            return web.json_response({"errors": [{"message": str(exc)}]}, status=400)
        if not isinstance(meta, dict | None):
            return web.json_response({"errors": [{"message": "metadata must be a mapping"}]}, status=400)
        return web.json_response({"errors": [], "warnings": []})

    async def _info(self, request: web.Request, params: dict[str, str]) -> web.Response:
        repo = self._repo(params)
        commit = self._commit_at(repo, params.get("rev", "main"))
        card: dict[str, Any] = {}
        m = _FRONT.match(commit.files.get("README.md", b"").decode("utf-8", "replace"))
        with contextlib.suppress(yaml.YAMLError):
            card = (yaml.safe_load(m.group(1)) if m else None) or {}
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return web.json_response(
            {
                "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.sha,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "lastModified": now,
                "createdAt": now,
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "cardData": card if isinstance(card, dict) else {},
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            }
        )

    async def _preupload(self, request: web.Request, params: dict[str, str]) -> web.Response:
        repo = self._repo(params)
        commit = self._commit_at(repo, params["rev"])
        files = (await request.json())["files"]
        return web.json_response(
            {
                "files": [
                    {
                        "path": f["path"],
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        "oid": git_sha(commit.files[f["path"]]) if f["path"] in commit.files else None,
                    }
                    for f in files
                ],
                "commitOid": commit.sha,
            }
        )

    async def _commit(self, request: web.Request, params: dict[str, str]) -> web.Response:
        repo = self._repo(params)
        branch = params["rev"]
        if branch not in repo.branches:
            raise _Reply(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        lines = [
            json.loads(line) for line in (await request.read()).decode("utf-8").splitlines() if line.strip()
        ]
        if not lines or lines[0].get("key") != "header":
            raise _Reply(400, "the first line of a commit must be its header")
        header = lines[0]["value"]
        with self._lock:
            parent = header.get("parentCommit")
            if parent and parent != repo.branches[branch]:
                raise _Reply(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.commits[repo.branches[branch]].files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise _Reply(400, "only base64 content is supported")
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if value["path"] not in files:
                        raise _Reply(404, "A file with this name doesn't exist", "EntryNotFound")
                    del files[value["path"]]
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: c for p, c in files.items() if not p.startswith(prefix)}
                else:
                    raise _Reply(
                        400, f"unsupported commit operation {key!r} (this Hub only takes regular files)"
                    )
            sha = self._new_commit(
                repo, branch, files, header.get("summary", ""), header.get("description", "")
            )
        return web.json_response(
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self.url}/{repo.type}s/{repo.repo_id}/commit/{sha}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    @staticmethod
    def _entries(files: Mapping[str, bytes], prefix: str, recursive: bool) -> list[dict[str, Any]]:
        base = prefix.strip("/") + "/" if prefix.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for path in sorted(files):
            if not path.startswith(base):
                continue
            parts = path[len(base) :].split("/")
            for depth in range(1, len(parts)):
                folder = base + "/".join(parts[:depth])
                if recursive or depth == 1:
                    oid = git_sha(folder.encode())
                    entries.setdefault(folder, {"type": "directory", "oid": oid, "size": 0, "path": folder})
            if recursive or len(parts) == 1:
                content = files[path]
                entries[path] = {"type": "file", "oid": git_sha(content), "size": len(content), "path": path}
        return list(entries.values())

    async def _tree(self, request: web.Request, params: dict[str, str]) -> web.Response:
        repo = self._repo(params)
        commit = self._commit_at(repo, params["rev"])
        recursive = request.query.get("recursive", "false").lower() in ("1", "true")
        return web.json_response(self._entries(commit.files, params.get("path", ""), recursive))

    async def _paths_info(self, request: web.Request, params: dict[str, str]) -> web.Response:
        repo = self._repo(params)
        commit = self._commit_at(repo, params["rev"])
        if request.content_type == "application/json":
            paths = [str(p) for p in (await request.json()).get("paths", [])]
        else:
            paths = [str(p) for p in (await request.post()).getall("paths", [])]
        entries = self._entries(commit.files, "", True)
        return web.json_response([e for e in entries if e["path"] in paths])

    async def _refs(self, request: web.Request, params: dict[str, str]) -> web.Response:
        repo = self._repo(params)

        def refs(kind: str, names: Mapping[str, str]) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha} for n, sha in names.items()]

        return web.json_response(
            {
                "branches": refs("heads", repo.branches),
                "converts": [],
                "tags": refs("tags", repo.tags),
                "pullRequests": [],
            }
        )

    async def _tag(self, request: web.Request, params: dict[str, str]) -> web.Response:
        repo = self._repo(params)
        commit = self._commit_at(repo, params["rev"])
        tag = (await request.json())["tag"]
        with self._lock:
            if tag in repo.tags:
                raise _Reply(409, f"Tag {tag} already exists")
            repo.tags[tag] = commit.sha
        return web.json_response({})

    async def _branch(self, request: web.Request, params: dict[str, str]) -> web.Response:
        repo = self._repo(params)
        body = await request.read()
        start = (json.loads(body) if body else {}).get("startingPoint") or "main"
        commit = self._commit_at(repo, start)
        with self._lock:
            if params["branch"] in repo.branches:
                raise _Reply(409, f"Reference refs/heads/{params['branch']} already exists")
            repo.branches[params["branch"]] = commit.sha
        return web.json_response({})

    async def _resolve(self, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        repo = self._repo(params)
        commit = self._commit_at(repo, params["rev"])
        content = commit.files.get(params["path"])
        if content is None:
            raise _Reply(404, "Entry not found", "EntryNotFound")
        headers = {
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{git_sha(content)}"',
            "Content-Length": str(len(content)),
        }
        if request.method == "HEAD":
            return web.Response(status=200, headers=headers)
        return web.Response(body=content, headers=headers, content_type="application/octet-stream")


def _unquote(value: str) -> str:
    from urllib.parse import unquote

    return unquote(value)
