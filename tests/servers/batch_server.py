"""The loopback OpenAI server plus the Files and Batches endpoints (the Batch API).

Why a sibling of :mod:`tests.servers.openai_server` and not more of it: the batch machinery only adds
routes; every request line of a batch is answered by the very chat-completions handler online calls
reach (posted to it over loopback HTTP), so a batch answer is the online answer for the same body,
with the same faults, responder, usage and stats. Served::

    POST /v1/files                  upload (multipart: file, purpose)
    GET  /v1/files/{id}             metadata
    GET  /v1/files/{id}/content     the bytes (input, output and error files)
    POST /v1/batches                create (input_file_id, endpoint, completion_window)
    GET  /v1/batches/{id}           state, request counts, output/error file ids
    POST /v1/batches/{id}/cancel    cancelling -> cancelled, with the answers made so far
    GET  /_batches                  control: what was created, uploaded and answered (``batch_stats``)
    POST /_batch_config             control: change :class:`BatchConfig` in a spawned server

A batch stays ``in_progress`` for ``completion_delay`` seconds, then its lines are answered and it
ends by the next entry of ``outcomes`` (one per created batch; ``completed`` when the list is empty):
``completed``; ``expired:N`` (the first N lines answered, the rest in the error file as
``batch_expired``, the partial output kept, as OpenAI does); ``failed`` (no line answered,
``errors.data`` says why); ``hold`` (in progress until cancelled).

    with BatchServer(ServerConfig(responder=...), BatchConfig(completion_delay=0.2)) as srv: ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.servers.openai_server import (
    _REPO_ROOT,
    OpenAIServer,
    ServerConfig,
    SpawnedServer,
    _apply_config,
    _Core,
    _dumps,
    _json_error,
    _serve,
)

__all__ = ["BatchConfig", "BatchServer", "main", "spawn_batch_server"]


@dataclass
class BatchConfig:
    """How batches behave; mutable at runtime (``server.batch_config.<field> = ...``)."""

    completion_delay: float = 0.0  # seconds in_progress before the lines are answered
    outcomes: list[str] = field(default_factory=list)  # consumed one per created batch
    concurrency: int = 32  # lines answered at once
    pad_bytes: int = 0  # added to each answer's body (an ignored field): big output files, same answers


def _now() -> int:
    return int(time.time())


class _BatchCore(_Core):
    def __init__(self, config: ServerConfig, batch_config: BatchConfig) -> None:
        super().__init__(config)
        self.batch_config = batch_config
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._events: dict[str, asyncio.Event] = {}
        self._session: aiohttp.ClientSession | None = None
        self._batch_stats: dict[str, Any] = self._zero()

    @staticmethod
    def _zero() -> dict[str, Any]:
        return {
            "uploads": 0,
            "created": 0,
            "retrieves": 0,
            "cancels": 0,
            "downloads": 0,
            "lines": 0,
            "answered": 0,
            "output_bytes": 0,
            "largest_output_bytes": 0,
            "batches": [],  # per created batch: id, outcome, custom_ids
        }

    def batch_stats(self) -> dict[str, Any]:
        """Counters plus ``duplicates``: custom_ids that went into more than one batch."""
        with self._lock:
            stats = json.loads(json.dumps(self._batch_stats))
        seen: dict[str, int] = {}
        for batch in stats["batches"]:
            for custom_id in batch["custom_ids"]:
                seen[custom_id] = seen.get(custom_id, 0) + 1
        stats["duplicates"] = sum(n - 1 for n in seen.values())
        stats["states"] = {k: b["status"] for k, b in self.batches.items()}
        return stats

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._batch_stats = self._zero()

    def build_app(self) -> web.Application:
        app = super().build_app()
        app._client_max_size = 256 * 1024 * 1024  # OpenAI takes input files up to 200 MB
        app.router.add_post("/v1/files", self.handle_upload)
        app.router.add_get("/v1/files/{id}", self.handle_file)
        app.router.add_get("/v1/files/{id}/content", self.handle_content)
        app.router.add_post("/v1/batches", self.handle_create)
        app.router.add_get("/v1/batches/{id}", self.handle_retrieve)
        app.router.add_post("/v1/batches/{id}/cancel", self.handle_cancel)
        app.router.add_get("/_batches", self.handle_batch_stats)
        app.router.add_post("/_batch_config", self.handle_batch_config)
        app.on_cleanup.append(self._close_session)
        return app

    async def _close_session(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    # --- files -------------------------------------------------------------------------------------

    def _store(self, data: bytes, purpose: str, filename: str) -> dict[str, Any]:
        file_id = f"file-loop{next(self._ids):06d}"
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": _now(),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[file_id] = {"meta": meta, "data": data}
        return meta

    async def handle_upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload, purpose = form.get("file"), str(form.get("purpose", ""))
        if not isinstance(upload, web.FileField) or purpose != "batch":
            return _json_error(400, "expected a file and purpose=batch", "invalid_request_error", None)
        meta = self._store(upload.file.read(), purpose, upload.filename or "input.jsonl")
        with self._lock:
            self._batch_stats["uploads"] += 1
        return web.json_response(meta)

    async def handle_file(self, request: web.Request) -> web.Response:
        stored = self.files.get(request.match_info["id"])
        if stored is None:
            return _json_error(404, "No such File object", "invalid_request_error", None)
        return web.json_response(stored["meta"])

    async def handle_content(self, request: web.Request) -> web.Response:
        stored = self.files.get(request.match_info["id"])
        if stored is None:
            return _json_error(404, "No such File object", "invalid_request_error", None)
        with self._lock:
            self._batch_stats["downloads"] += 1
        return web.Response(body=stored["data"], content_type="application/octet-stream")

    # --- batches -----------------------------------------------------------------------------------

    async def handle_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        stored = self.files.get(str(body.get("input_file_id")))
        if stored is None:
            return _json_error(400, "input_file_id does not exist", "invalid_request_error", None)
        lines = [json.loads(line) for line in stored["data"].splitlines() if line.strip()]
        outcome = self.batch_config.outcomes.pop(0) if self.batch_config.outcomes else "completed"
        batch_id = f"batch_loop{next(self._ids):06d}"
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "input_file_id": body.get("input_file_id"),
            "completion_window": body.get("completion_window", "24h"),
            "status": "in_progress",
            "created_at": _now(),
            "in_progress_at": _now(),
            "expires_at": _now() + 86400,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
        }
        self.batches[batch_id] = batch
        self._events[batch_id] = asyncio.Event()
        with self._lock:
            self._batch_stats["created"] += 1
            self._batch_stats["lines"] += len(lines)
            self._batch_stats["batches"].append(
                {"id": batch_id, "outcome": outcome, "custom_ids": [line["custom_id"] for line in lines]}
            )
        origin = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        auth = request.headers.get("Authorization", "")
        asyncio.get_running_loop().create_task(self._run(batch, lines, outcome, origin, auth))
        return web.json_response(batch)

    async def handle_retrieve(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _json_error(404, "No such Batch object", "invalid_request_error", None)
        with self._lock:
            self._batch_stats["retrieves"] += 1
        return web.json_response(batch)

    async def handle_cancel(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _json_error(404, "No such Batch object", "invalid_request_error", None)
        if batch["status"] in ("validating", "in_progress"):
            batch["status"] = "cancelling"
            batch["cancelling_at"] = _now()
            self._events[batch["id"]].set()
        with self._lock:
            self._batch_stats["cancels"] += 1
        return web.json_response(batch)

    async def handle_batch_stats(self, request: web.Request) -> web.Response:
        return web.Response(body=_dumps(self.batch_stats()), content_type="application/json")

    async def handle_batch_config(self, request: web.Request) -> web.Response:
        fields = await request.json()
        for name, value in fields.items():
            setattr(self.batch_config, name, value)
        return web.json_response(dataclasses.asdict(self.batch_config))

    async def _run(
        self, batch: dict[str, Any], lines: list[dict[str, Any]], outcome: str, origin: str, auth: str
    ) -> None:
        """Wait, answer the lines through the chat handler, then end as ``outcome`` says."""
        cancel = self._events[batch["id"]]
        hold = outcome == "hold"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if hold else self.batch_config.completion_delay):
                await cancel.wait()
        if outcome == "failed":
            batch.update(
                status="failed",
                failed_at=_now(),
                errors={
                    "object": "list",
                    "data": [{"code": "scripted_failure", "message": "failed (scripted)"}],
                },
            )
            return
        answer = len(lines)
        if outcome.startswith("expired:"):
            answer = int(outcome.split(":", 1)[1])
        if batch["status"] == "cancelling":
            answer = 0
        if self._session is None:
            self._session = aiohttp.ClientSession()
        gate = asyncio.Semaphore(self.batch_config.concurrency)
        output: list[bytes] = []
        errors: list[bytes] = []

        async def one(index: int, line: dict[str, Any]) -> None:
            entry: dict[str, Any] = {"id": f"batch_req_{batch['id']}_{index}", "custom_id": line["custom_id"]}
            if index >= answer:
                code = "batch_cancelled" if batch["status"] == "cancelling" else "batch_expired"
                entry.update(
                    response=None,
                    error={
                        "code": code,
                        "message": "This request could not be executed before the window closed.",
                    },
                )
                errors.append(_dumps(entry) + b"\n")
                return
            async with (
                gate,
                self._session.post(  # type: ignore[union-attr]
                    f"{origin}/v1/chat/completions",
                    data=_dumps(line["body"]),
                    headers={"Authorization": auth, "Content-Type": "application/json"},
                ) as reply,
            ):
                status, text = reply.status, await reply.read()
            try:
                body: Any = json.loads(text)
            except ValueError:
                body = {"error": {"message": text.decode(errors="replace")[:200]}}
            if status == 200 and self.batch_config.pad_bytes:
                body["x_padding"] = "x" * self.batch_config.pad_bytes
            entry.update(
                response={"status_code": status, "request_id": f"req_{index}", "body": body}, error=None
            )
            (output if status == 200 else errors).append(_dumps(entry) + b"\n")

        await asyncio.gather(*(one(i, line) for i, line in enumerate(lines)))
        counts = batch["request_counts"]
        counts["completed"], counts["failed"] = len(output), len(errors)
        size = sum(len(line) for line in output)
        with self._lock:
            self._batch_stats["answered"] += len(output)
            self._batch_stats["output_bytes"] += size
            self._batch_stats["largest_output_bytes"] = max(self._batch_stats["largest_output_bytes"], size)
        if output:
            batch["output_file_id"] = self._store(b"".join(output), "batch_output", "output.jsonl")["id"]
        if errors:
            batch["error_file_id"] = self._store(b"".join(errors), "batch_output", "errors.jsonl")["id"]
        if batch["status"] == "cancelling":
            batch.update(status="cancelled", cancelled_at=_now())
        elif outcome.startswith("expired"):
            batch.update(status="expired", expired_at=_now())
        else:
            batch.update(status="completed", completed_at=_now(), finalizing_at=_now())


class BatchServer(OpenAIServer):
    """:class:`OpenAIServer` in a thread, plus the Batch API; ``batch_stats()`` says what it did."""

    def __init__(
        self, config: ServerConfig | None = None, batch_config: BatchConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(config, **kwargs)
        self.batch_config = batch_config if batch_config is not None else BatchConfig()
        self._core = _BatchCore(self.config, self.batch_config)

    def batch_stats(self) -> dict[str, Any]:
        core: _BatchCore = self._core  # type: ignore[assignment]
        return core.batch_stats()


@contextlib.contextmanager
def spawn_batch_server(
    config: ServerConfig | None = None,
    batch_config: BatchConfig | None = None,
    *,
    startup_timeout: float = 20.0,
) -> Iterator[SpawnedServer]:
    """The batch server in a child process (benchmarks: its CPU is not the client's); stdin EOF stops it."""
    config = config if config is not None else ServerConfig()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(_REPO_ROOT), os.environ.get("PYTHONPATH")))),
    }
    cmd = [
        sys.executable,
        "-m",
        "tests.servers.batch_server",
        "--config",
        json.dumps(config.to_json()),
        "--batch-config",
        json.dumps(dataclasses.asdict(batch_config or BatchConfig())),
    ]
    process = subprocess.Popen(cmd, cwd=_REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    try:
        line = lines.get(timeout=startup_timeout).decode().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"batch server failed to start: {line!r}")
        yield SpawnedServer(process, line.removeprefix("READY "))
    finally:
        with contextlib.suppress(OSError):
            process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.servers.batch_server``: serve until stdin closes; prints ``READY <url>``."""
    parser = argparse.ArgumentParser(description="Loopback OpenAI server with the Files and Batches API.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config", default="{}")
    parser.add_argument("--batch-config", default="{}")
    args = parser.parse_args(argv)
    config = ServerConfig()
    _apply_config(config, json.loads(args.config), allow_responder=False)
    batch_config = BatchConfig(**json.loads(args.batch_config))
    asyncio.run(_serve(_BatchCore(config, batch_config), "127.0.0.1", args.port, True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
