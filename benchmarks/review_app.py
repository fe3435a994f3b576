"""The review page's responsiveness on a whole run: what a reviewer waits for.

Why: ``synthgen review`` sends every row of a RUN_DIR to the page at once and filters in the browser,
and every decision re-reads the append-only log; this checks that a run of a few hundred rows stays
instant. It makes the offline demo run (or takes ``--run-dir``), serves it on loopback and drives
Debian's headless Chromium with Playwright:

* ``/api/rows``: the listing's size and time (every row, its hash and its decision);
* page ready: from navigation until the row list is drawn;
* approve + advance: the ``a`` key until the row shows as approved (the log appended and fsynced),
  mean over ``--decisions`` rows;
* search: typing a word until the list is filtered.

    python -m benchmarks.review_app                      # the offline demo (~300 rows): about 30 s
    python -m benchmarks.review_app --run-dir runs/demo --decisions 50
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

from synthgen.pipeline.runner import run
from synthgen.review.rows import review_app
from synthgen.review.server import AppServer

DEMO = Path(__file__).resolve().parents[1] / "recipes" / "offline-demo" / "recipe.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="a finished RUN_DIR (default: make the offline demo)")
    parser.add_argument("--decisions", type=int, default=20)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    scratch = Path(tempfile.mkdtemp(prefix="synthgen-review-bench-"))
    try:
        run_dir = scratch / "run"
        if args.run_dir:
            shutil.copytree(args.run_dir, run_dir)
        else:
            run(DEMO, out=run_dir, offline=True)
        with AppServer(review_app(run_dir)).running() as server:
            started = time.perf_counter()
            with urllib.request.urlopen(server.url("/api/rows"), timeout=60) as response:
                body = response.read()
            listing = time.perf_counter() - started
            rows = json.loads(body)["rows"]
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
                page = browser.new_page()
                started = time.perf_counter()
                page.goto(server.url())
                page.wait_for_selector("#list button")
                ready = time.perf_counter() - started
                page.fill("#reviewer", "bench")
                page.click("#list button")
                started = time.perf_counter()
                for row in rows[: args.decisions]:
                    page.keyboard.press("a")
                    page.wait_for_selector(f'#list button[data-key="{row["key"]}"][data-state="approved"]')
                per_decision = (time.perf_counter() - started) / min(args.decisions, len(rows))
                started = time.perf_counter()
                page.fill("#q", "beca")
                search = time.perf_counter() - started
                browser.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("| rows | /api/rows | page ready | approve + advance | search |\n|---|---|---|---|---|")
    print(
        f"| {len(rows)} | {len(body) / 1e6:.2f} MB in {listing * 1000:.0f} ms | {ready * 1000:.0f} ms | "
        f"{per_decision * 1000:.0f} ms/row | {search * 1000:.0f} ms |"
    )


if __name__ == "__main__":
    main()
