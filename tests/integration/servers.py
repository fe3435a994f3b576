"""Real OpenAI-compatible servers for the integration suite: start, wait, read their counters, stop.

Each server runs as a child process on 127.0.0.1 on a free port, its output in a log file; a server
that exits or does not answer its health check in time fails the fixture with its log's tail (it is
never skipped: a missing server is a CI failure).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LLAMA_ALIAS = "smollm2-135m-instruct"  # the name llama-server answers to (it serves one model)


class ServerFailed(RuntimeError):
    pass


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    root: str  # http://127.0.0.1:PORT
    model: str  # the `model` field requests must carry
    log: Path

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", errors="replace")


def http_post_json(url: str, body: dict[str, object], timeout: float = 300.0) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": "Bearer dummy"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read().decode("utf-8", errors="replace")
        try:
            return error.code, json.loads(text)
        except json.JSONDecodeError:
            return error.code, {"text": text}


def _tail(path: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def serve(
    name: str, argv: Sequence[str], port: int, model: str, log: Path, *, ready_timeout: float, env=None
) -> Iterator[Server]:
    """Run ``argv`` until ``GET /health`` answers 200, yield it, then stop it (SIGTERM, then SIGKILL)."""
    root = f"http://127.0.0.1:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(name, process, root, model, log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise ServerFailed(f"{name} exited with {process.returncode}:\n{_tail(log)}")
            with contextlib.suppress(OSError):
                if http_get(root + "/health", timeout=5)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise ServerFailed(f"{name} did not answer /health in {ready_timeout:.0f} s:\n{_tail(log)}")
            time.sleep(0.5)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


# --- llama-server ---------------------------------------------------------------------------------


def llama_server_binary() -> Path:
    """``$SYNTHGEN_LLAMA_SERVER``, else what ``.ci/llama-server.sh`` prints (cached; builds if absent)."""
    given = os.environ.get("SYNTHGEN_LLAMA_SERVER")
    if given:
        return Path(given)
    done = subprocess.run(
        ["bash", str(REPO / ".ci" / "llama-server.sh")],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHON": sys.executable},
        check=False,
    )
    if done.returncode != 0:
        raise ServerFailed(f".ci/llama-server.sh failed with {done.returncode}")
    return Path(done.stdout.decode().strip().splitlines()[-1])


def llama_server_argv(binary: Path, gguf: Path, port: int) -> list[str]:
    return [
        str(binary),
        "-m", str(gguf),
        "--alias", LLAMA_ALIAS,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--jinja",  # the model's own chat template (and json_schema -> grammar)
        "--metrics",  # /metrics: the server's own token counters
        "-c", "4096",
        "-np", "2",  # two slots of 2048 tokens: requests run concurrently, as synthgen sends them
        "-t", "2",
        "--no-webui",
    ]  # fmt: skip


_SAMPLE = re.compile(r"^(llamacpp:[a-z_]+)(?:\{[^}]*\})?\s+(\S+)$")


def llama_metrics(server: Server) -> dict[str, float]:
    """llama-server's ``/metrics`` (Prometheus text) as ``{name: value}``, e.g.
    ``llamacpp:prompt_tokens_total`` (prompt tokens evaluated, cached ones excluded),
    ``llamacpp:prompt_tokens_cached_total``, ``llamacpp:tokens_predicted_total``,
    ``llamacpp:requests_processing``."""
    status, text = http_get(server.root + "/metrics")
    if status != 200:
        raise ServerFailed(f"GET /metrics answered {status}: {text[:300]}")
    metrics: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match:
            metrics[match.group(1)] = float(match.group(2))
    return metrics


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def llama_completions_logged(server: Server) -> int:
    """Completions the server finished, from its log (one timing report per finished task; llama-server
    has no request counter in /metrics)."""
    return server.log_text().count("prompt eval time =")


# --- transformers serve -----------------------------------------------------------------------------


def transformers_serve_argv(checkpoint: Path, port: int) -> list[str]:
    """``transformers serve MODEL`` pins the server to that model: a request naming another is refused."""
    executable = Path(sys.executable).parent / "transformers"
    return [
        str(executable),
        "serve",
        str(checkpoint),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--device", "cpu",
        "--dtype", "float32",
    ]  # fmt: skip
