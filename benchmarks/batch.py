"""A ~2,000-request recipe through the Batch API: client CPU and peak memory, against the same recipe online.

Why: in batch mode every work item of a step is live at once (a wave must hold all of them) and a
batch's answers arrive together in one output file; the client must stay cheap per request and must
not hold a whole output file (the collector streams it, resolving each request as its line is read).

The recipe is the faculty recipe's dialogue step with one turn per dialogue (a student call and an
assistant call per item) and ``per_seed`` set so that 93 seeds give ~1,000 items, ~2,000 requests.
The loopback batch server (tests/servers/batch_server.py) runs in its own process, so its CPU is not
the client's; each ``synthgen run`` runs in a child process, measured with ``os.wait4`` (CPU user+sys
and peak RSS of that process alone).

    python -m benchmarks.batch                  # batch and online, ~2,000 requests each
    python -m benchmarks.batch --per-seed 2     # a smoke test (~400 requests)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from synthgen.llm.batch import read_batches
from synthgen.rundir import RunDir
from tests.servers.batch_server import BatchConfig, spawn_batch_server
from tests.servers.openai_server import ServerConfig

REPO = Path(__file__).resolve().parents[1]
FACULTY = REPO / "recipes" / "faculty-sciences-es" / "recipe.yaml"


def recipe(tmp: Path, url: str, *, batch: bool, per_seed: int) -> Path:
    data = yaml.safe_load(FACULTY.read_text(encoding="utf-8"))
    data["seeds"] = str(REPO / "seeds" / "faculty-sciences-es" / "seeds.yaml")
    data["personas"] = str(REPO / "seeds" / "faculty-sciences-es" / "personas.yaml")
    data["steps"] = [s for s in data["steps"] if s["generator"] == "dialogue"]
    data["steps"][0]["config"].update(per_seed=per_seed, turns=[1, 1])
    data.pop("budget", None)
    for profile in data["models"].values():
        profile.pop("requests_per_minute", None)
        profile.update(base_url=url, batch=batch, max_concurrency=64)
    path = tmp / f"{'batch' if batch else 'online'}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def measure(tmp: Path, url: str, *, batch: bool, per_seed: int) -> dict[str, Any]:
    """One ``synthgen run`` in a child process: its own CPU and peak RSS (``os.wait4``)."""
    mode = "batch" if batch else "online"
    out = tmp / f"run-{mode}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SYNTHGEN_HOME": str(tmp / f"home-{mode}"),  # a cache of its own: every request is paid
        "OPENAI_API_KEY": "sk-loopback",
        "SYNTHGEN_BATCH_POLL_SECONDS": "0.2",
        "SYNTHGEN_PROBE": "off",
        "SYNTHGEN_PROGRESS_SECONDS": "0",
    }
    cmd = [sys.executable, "-m", "synthgen.cli", "run", str(recipe(tmp, url, batch=batch, per_seed=per_seed))]
    t0 = time.perf_counter()
    process = subprocess.Popen(
        [*cmd, "--out", str(out), "--yes"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - t0
    process.returncode = os.waitstatus_to_exitcode(status)
    # exit 1: the loopback's made-up text fails the quality checks (no dataset); every call was made
    if process.returncode not in (0, 1):
        raise RuntimeError(f"{mode} run failed ({process.returncode}): {process.stderr.read()[-2000:]}")  # type: ignore[union-attr]
    ledger = (out / ".synthgen" / "ledger.jsonl").read_text().splitlines()
    requests = len(ledger)
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "mode": mode,
        "requests": requests,
        "waves": len(read_batches(RunDir(out).batch_journal)) or None,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_request": round(1000 * cpu / max(1, requests), 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-seed", type=int, default=11, help="dialogues per seed (93 seeds)")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds a batch stays in progress")
    parser.add_argument("--pad-kb", type=int, default=0, help="KB added to each batch answer (streaming)")
    parser.add_argument("--modes", nargs="+", choices=["batch", "online"], default=["batch", "online"])
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args(argv)
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="synthgen-batch-bench-") as tmp,
        spawn_batch_server(
            ServerConfig(),
            BatchConfig(completion_delay=args.delay, concurrency=64, pad_bytes=1024 * args.pad_kb),
        ) as srv,
    ):
        for mode in args.modes:
            result = measure(Path(tmp), srv.url, batch=mode == "batch", per_seed=args.per_seed)
            if mode == "batch":
                stats = srv._call("GET", "/_batches")
                result["output_file_mib"] = round(stats["output_bytes"] / 2**20, 2)
                result["largest_output_file_mib"] = round(stats["largest_output_bytes"] / 2**20, 2)
            results.append(result)
            print(json.dumps(result), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print("| mode | requests | waves | wall s | client CPU s | CPU ms/request | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['mode']} | {r['requests']} | {r['waves'] or '-'} | {r['wall_s']} | {r['cpu_s']} | "
            f"{r['cpu_ms_per_request']} | {r['peak_rss_mib']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
