"""Session fixtures: each real server started once on 127.0.0.1, on a free port, and stopped at the end.

A server that cannot be built, found or started fails its tests loudly (never a skip): CI prepares
both beforehand (.ci/run), and a local run builds or converts what is missing (README.md here).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.models import smollm2_gguf, transformers_checkpoint
from tests.integration.servers import (
    Server,
    free_port,
    llama_server_argv,
    llama_server_binary,
    serve,
    transformers_serve_argv,
)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    binary, gguf, port = llama_server_binary(), smollm2_gguf(), free_port()
    log = tmp_path_factory.mktemp("servers") / "llama-server.log"
    argv = llama_server_argv(binary, gguf, port)
    with serve(
        "llama-server", argv, port, model="smollm2-135m-instruct", log=log, ready_timeout=180
    ) as server:
        yield server


@pytest.fixture(scope="session")
def transformers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    checkpoint, port = transformers_checkpoint(), free_port()
    log = tmp_path_factory.mktemp("servers") / "transformers-serve.log"
    argv = transformers_serve_argv(checkpoint, port)
    # the model name is the checkpoint's path: the server is pinned to it and refuses any other name
    with serve("transformers serve", argv, port, model=str(checkpoint), log=log, ready_timeout=600) as server:
        yield server
