"""Hermetic tests: a temporary SYNTHGEN_HOME, no API keys or Hub tokens, one thread for torch."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# set before any test module imports datasets / huggingface_hub / torch, which read them at import
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# datasets reads its cache path at import time, and caches a local folder by name, not by content:
# one fresh cache per test session keeps RUN_DIRs named alike in different tests apart from ~/.cache.
_SESSION_CACHE = tempfile.mkdtemp(prefix="synthgen-tests-hf-")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_SESSION_CACHE, "datasets")

_SECRETS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "AZURE_OPENAI_API_KEY")


@pytest.fixture(autouse=True)
def hermetic(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("synthgen-home")
    monkeypatch.setenv("SYNTHGEN_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    # runs do not probe servers first (tests script each request); tests of the probe unset it
    monkeypatch.setenv("SYNTHGEN_PROBE", "off")
    for name in _SECRETS:
        monkeypatch.delenv(name, raising=False)
    yield home


REPO = Path(__file__).resolve().parents[1]
