"""The review app's fixtures: small offline RUN_DIRs and evaluations, the app served on loopback, and
one headless Chromium per test module (Debian's ``chromium``, driven by Playwright without a browser
download; per module, because Playwright's sync API keeps an event loop running in the main thread
while it is open, and the rest of the suite starts its own with ``asyncio.run``). Without Chromium or
Playwright these tests FAIL, on purpose: a skipped browser test proves nothing (CI installs both)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from synthgen.pipeline.runner import run
from tests.test_cli import demo_copy, write_recipe

T = TypeVar("T")
HOSTILE_QUESTION = '¿Puedo <script>document.body.dataset.pwned = "1"</script> matricularme?'
HOSTILE_ANSWER = "Sí. <img src=x onerror=\"document.body.dataset.pwned = '2'\"> Consulta la sede electrónica."


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is required (apt-get install -y chromium) and none is on PATH")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is required for the browser tests: pip install -e '.[dev]'")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def make_run(root: Path, *, seeds: int = 6, **output: Any) -> Path:
    """An offline RUN_DIR of the demo recipe on its first ``seeds`` seeds (a few seconds)."""
    root.mkdir(parents=True, exist_ok=True)
    recipe = demo_copy(root, seeds=seeds)
    recipe["output"] = {**recipe.get("output", {}), **output}
    out = root / "run"
    off_loop(run, write_recipe(root / "recipe.yaml", recipe), out=out, offline=True)
    return out


def off_loop(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``func`` in a thread of its own: Playwright's sync API keeps an event loop running in this
    one, and synthgen's runs and evaluations start theirs with ``asyncio.run``."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(func, *args, **kwargs).result()


def fresh(made: Path, tmp_path: Path) -> Path:
    """A test's own copy of a module's RUN_DIR, so tests decide on rows in any order; its recipe is
    copied beside it as it was beside the original (a RUN_DIR keeps its recipe's path relative)."""
    out = tmp_path / "run"
    shutil.copytree(made, out)
    for name in ("recipe.yaml", "seeds.yaml", "personas.yaml"):
        if (made.parent / name).is_file():
            shutil.copy2(made.parent / name, tmp_path / name)
    return out


def make_hostile(run_dir: Path) -> str:
    """Put markup into the first dialogue the reviewers see (its user and assistant turns), as text a
    seed, a document or a model could carry; returns that row's key."""
    path = run_dir / ".synthgen" / "unreviewed.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    first = next(r for r in records if r["config"] == "sft")
    for message in first["row"]["messages"]:
        if message["role"] == "user":
            message["content"] = HOSTILE_QUESTION
        elif message["role"] == "assistant":
            message["content"] = HOSTILE_ANSWER
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(first["key"])
