"""Client memory: peak RSS must not grow with the number of requests, only with concurrency.

Why: a run of a large recipe sends hundreds of thousands of requests through one ChatClient; any
per-request residue (cache rows held in memory, usage records, limiter history, finished futures)
would make memory grow with N until the run dies. Each N is measured in a fresh child process
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, this process only: the loopback server runs in its
own subprocess), with requests fed through a bounded worker pool as the runner does.

    python -m benchmarks.memory                       # N=2000 and N=20000, synthgen, ~2 minutes
    python -m benchmarks.memory --clients synthgen bare --driver gather   # the contrasts

``--driver gather`` creates all N coroutines at once (``asyncio.gather``): it holds every pending
coroutine and every result until the end, so its memory grows with N whatever the client does;
it is there to show what the benchmark itself must avoid, not to judge the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from benchmarks.throughput import bare_caller, drive, synthgen_caller
from tests.servers.openai_server import ServerConfig, spawn_server

FLAT = 1.10  # peak RSS at 10x the requests may be at most 10% higher


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(n: int, concurrency: int, latency: float, client: str, driver: str) -> dict[str, Any]:
    """One measurement, run inside a fresh process so ru_maxrss is this N's peak alone."""
    tag = uuid.uuid4().hex[:12]
    with (
        tempfile.TemporaryDirectory(prefix="synthgen-mem-") as tmp,
        spawn_server(ServerConfig(latency=latency)) as srv,
    ):

        async def run() -> dict[str, Any]:
            maker = (
                synthgen_caller(srv.url, concurrency, "aiohttp", tag, Path(tmp))
                if client == "synthgen"
                else bare_caller(srv.url, concurrency, "aiohttp", tag)
            )
            async with maker as call:
                await call(-1)  # warm: imports, first connection, the limiter's probe
                warm_rss = _rss_mib()
                t0 = time.perf_counter()
                if driver == "pool":
                    failures = sum((await drive(n, 2 * concurrency, call)).values())
                else:
                    semaphore = asyncio.Semaphore(concurrency)

                    async def bounded(i: int) -> None:
                        async with semaphore:
                            await call(i)

                    results = await asyncio.gather(*(bounded(i) for i in range(n)), return_exceptions=True)
                    failures = sum(isinstance(r, BaseException) for r in results)
                wall = time.perf_counter() - t0
            return {"warm_rss_mib": warm_rss, "wall_s": wall, "failures": failures}

        out = asyncio.run(run())
        stats = srv.stats()
    return {
        "n": n,
        "client": client,
        "driver": driver,
        "concurrency": concurrency,
        "latency": latency,
        "peak_rss_mib": _maxrss_mib(),
        "served_ok": stats["served_ok"],
        **out,
    }


def measure(n: int, concurrency: int, latency: float, client: str, driver: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--child",
        str(n),
        "--concurrency",
        str(concurrency),
        "--latency",
        str(latency),
        "--clients",
        client,
        "--driver",
        driver,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[2000, 20000], help="request counts")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.01, help="server latency (s)")
    parser.add_argument("--clients", nargs="+", choices=["synthgen", "bare"], default=["synthgen"])
    parser.add_argument("--driver", choices=["pool", "gather"], default="pool")
    parser.add_argument("--quick", action="store_true", help="N=500 and 5000: a smoke test")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.concurrency, args.latency, args.clients[0], args.driver)))
        return 0
    ns = [500, 5000] if args.quick else args.n
    results = []
    for client in args.clients:
        for n in ns:
            result = measure(n, args.concurrency, args.latency, client, args.driver)
            results.append(result)
            print(
                f"{client} {args.driver} N={n}: peak {result['peak_rss_mib']:.1f} MiB, warm "
                f"{result['warm_rss_mib']:.1f} MiB, {result['wall_s']:.1f}s, ok {result['served_ok']}, "
                f"failures {result['failures']}",
                file=sys.stderr,
                flush=True,
            )
    lines = [
        f"### Peak RSS of the client process (C={args.concurrency}, latency {args.latency}s, "
        f"cache on, driver {args.driver})",
        "",
        "| client | N | peak RSS MiB | RSS after warm-up MiB | growth MiB | ratio to smallest N |",
        "|---|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {}
    for client in args.clients:
        mine = sorted((r for r in results if r["client"] == client), key=lambda r: r["n"])
        base = mine[0]["peak_rss_mib"]
        for r in mine:
            lines.append(
                f"| {client} | {r['n']} | {r['peak_rss_mib']:.1f} | {r['warm_rss_mib']:.1f} "
                f"| {r['peak_rss_mib'] - r['warm_rss_mib']:.1f} | {r['peak_rss_mib'] / base:.3f} |"
            )
        ratio = mine[-1]["peak_rss_mib"] / base
        summary[client] = {"ratio": ratio, "flat": ratio <= FLAT}
    print("\n".join(lines))
    for client, s in summary.items():
        verdict = "flat" if s["flat"] else "NOT flat"
        print(f"\n{client}: peak RSS ratio {s['ratio']:.3f} ({verdict}, target <= {FLAT})")
    if args.json:
        payload = {"date": time.strftime("%Y-%m-%d %H:%M"), "results": results, "summary": summary}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
