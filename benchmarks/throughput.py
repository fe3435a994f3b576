"""Client throughput: synthgen's ChatClient against a bare ``openai.AsyncOpenAI`` + semaphore.

Why ratios: the box is small and shared, so absolute times drift from run to run. Each repeat runs
synthgen and the bare SDK back to back (alternating which goes first) against the same loopback
server in a subprocess (its CPU is not billed to this process), and the figures reported are the
median over repeats of synthgen/bare within a repeat, where the machine's noise mostly cancels.

Scenario A (overhead): N structured requests, fixed server latency, concurrency C. Efficiency is
the ideal wall time ``N * latency / C`` over the measured one; CPU per request is this process's
``time.process_time()`` delta over N. Targets: efficiency ratio >= 0.97, CPU ratio <= 1.10.

Scenario B (rate limits): the server admits 50 requests in any 1 s window (3000/min enforced over
1 s, as OpenAI enforces sub-minute windows) and announces it in ``x-ratelimit-*`` headers; synthgen
is given no limit and must learn it. Targets: 429s <= 1% of requests, throughput >= 95% of 50/s.

    python -m benchmarks.throughput                  # both scenarios, ~5 minutes on 2 cores
    python -m benchmarks.throughput --quick          # smoke test, ~1 minute
    python -m benchmarks.throughput --json out.json  # also write every run as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx2
import openai
import psutil
import pydantic

from synthgen.llm.cache import ResponseCache
from synthgen.llm.client import ChatClient
from synthgen.llm.profile import ModelProfile
from synthgen.llm.usage import UsageMeter
from tests.servers.openai_server import ServerConfig, SpawnedServer, spawn_server

MODEL = "gpt-4o-2024-08-06"
KEY_ENV = "BENCH_KEY"
Backend = Literal["aiohttp", "httpx"]
Call = Callable[[int], Awaitable[None]]


class Verdict(pydantic.BaseModel):
    """A judge-style answer: the size of schema synthgen's generators ask for."""

    label: Literal["correct", "partial", "incorrect"]
    score: int
    reason: str


def messages_for(i: int, tag: str) -> list[dict[str, str]]:
    """Distinct per request and per run, so no answer can come from a cache."""
    return [
        {"role": "system", "content": "Grade the student's answer against the reference. Be brief."},
        {"role": "user", "content": f"[{tag} #{i}] Reference: classes start in September. Answer: autumn."},
    ]


def http_client(backend: Backend, concurrency: int) -> httpx2.AsyncClient:
    """The HTTP client synthgen builds for a profile (pool sized to the concurrency), for both sides."""
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx2.Timeout(120.0, connect=10.0)
    if backend == "aiohttp":
        return openai.DefaultAioHttpClient(limits=limits, timeout=timeout)
    return openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout)


def profile_for(url: str, concurrency: int, backend: Backend, rpm: int | None = None) -> ModelProfile:
    return ModelProfile(
        name="bench",
        model=MODEL,
        base_url=url,
        api_key_env=KEY_ENV,
        max_concurrency=concurrency,
        requests_per_minute=rpm,
        http_backend=backend,
    )


@asynccontextmanager
async def synthgen_caller(
    url: str, concurrency: int, backend: Backend, tag: str, cache_dir: Path
) -> AsyncIterator[Call]:
    """synthgen as users run it: a fresh cache file (cache on), a usage meter, no limit configured."""
    os.environ.setdefault(KEY_ENV, "sk-bench")
    profile = profile_for(url, concurrency, backend)
    cache = ResponseCache(cache_dir / f"{tag}.sqlite")
    try:
        async with ChatClient(cache=cache, meter=UsageMeter()) as client:

            async def call(i: int) -> None:
                done = await client.complete(messages_for(i, tag), profile=profile, schema=Verdict)
                if not isinstance(done.parsed, Verdict) or done.cached:
                    raise AssertionError(f"unexpected completion {done!r}")

            yield call
    finally:
        cache.close()


@asynccontextmanager
async def bare_caller(
    url: str, concurrency: int, backend: Backend, tag: str, max_retries: int = 0
) -> AsyncIterator[Call]:
    """The baseline: the SDK's parse path on the same HTTP backend, bounded by a semaphore."""
    sdk = openai.AsyncOpenAI(
        api_key="sk-bench",
        base_url=url,
        max_retries=max_retries,
        timeout=120.0,
        http_client=http_client(backend, concurrency),
    )
    semaphore = asyncio.Semaphore(concurrency)

    async def call(i: int) -> None:
        async with semaphore:
            done = await sdk.chat.completions.parse(
                model=MODEL,
                messages=messages_for(i, tag),
                response_format=Verdict,  # type: ignore[arg-type]
            )
        if not isinstance(done.choices[0].message.parsed, Verdict):
            raise AssertionError(f"unexpected completion {done!r}")

    try:
        yield call
    finally:
        await sdk.close()


async def drive(n: int, workers: int, call: Call) -> Counter[str]:
    """Feed ``n`` requests through ``workers`` tasks, as the runner does: memory stays bounded in n.

    Returns failures by exception type (none expected in scenario A).
    """
    pending = iter(range(n))
    failures: Counter[str] = Counter()

    async def worker() -> None:
        for i in pending:
            try:
                await call(i)
            except Exception as exc:  # counted and reported: a lost request is a result here
                failures[type(exc).__name__] += 1

    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(worker())
    return failures


@dataclass
class Run:
    """One measured run of one client."""

    scenario: str
    client: str
    backend: str
    concurrency: int
    n: int
    latency: float
    repeat: int
    wall_s: float
    cpu_s: float
    server_cpu_s: float
    failures: dict[str, int]
    server: dict[str, Any] = field(default_factory=dict)

    @property
    def ideal_s(self) -> float:
        return self.n * self.latency / self.concurrency

    @property
    def efficiency(self) -> float:
        return self.ideal_s / self.wall_s

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_s / self.n

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "ideal_s": self.ideal_s,
            "efficiency": self.efficiency,
            "cpu_ms_per_request": self.cpu_ms_per_request,
        }


def measure(
    srv: SpawnedServer,
    caller: Callable[[], Any],
    *,
    n: int,
    workers: int,
    warmup: bool,
    **labels: Any,
) -> Run:
    """Run ``n`` requests through a fresh client in a fresh event loop; time only the n requests.

    ``warmup`` sends one request first (untimed): it opens the first connection and, for synthgen,
    is the limiter's cold-start probe (the first request of a key with no known limit goes alone).
    """
    server_proc = psutil.Process(srv.pid)

    async def run() -> tuple[float, float, float, Counter[str]]:
        async with caller() as call:
            if warmup:
                await call(-1)
            srv.reset()
            gc.collect()
            server_cpu0 = sum(server_proc.cpu_times()[:2])
            cpu0, t0 = time.process_time(), time.perf_counter()
            failures = await drive(n, workers, call)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            return wall, cpu, sum(server_proc.cpu_times()[:2]) - server_cpu0, failures

    wall, cpu, server_cpu, failures = asyncio.run(run())
    stats = srv.stats()
    keep = ("requests", "served_ok", "unique_ok", "rate_limited", "max_in_window", "peak_in_flight", "status")
    return Run(
        wall_s=wall,
        cpu_s=cpu,
        server_cpu_s=server_cpu,
        failures=dict(failures),
        n=n,
        server={k: stats[k] for k in keep},
        **labels,
    )


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# ------------------------------------------------------------------------------------ scenario A


def scenario_a(
    n: int,
    concurrencies: list[int],
    repeats: int,
    latency: float,
    warmup: bool,
    cache_dir: Path,
    log: Callable[[str], None],
) -> list[Run]:
    """synthgen vs bare at each C on aiohttp; at the highest C also both backends for both clients."""
    runs: list[Run] = []
    top = max(concurrencies)
    with spawn_server(ServerConfig(latency=latency)) as srv:
        for c in concurrencies:
            backends: list[Backend] = ["aiohttp", "httpx"] if c == top else ["aiohttp"]
            for backend in backends:
                for r in range(repeats):
                    order = ["synthgen", "bare"] if r % 2 == 0 else ["bare", "synthgen"]
                    for who in order:
                        tag = uuid.uuid4().hex[:12]

                        def caller(
                            who: str = who, tag: str = tag, c: int = c, backend: Backend = backend
                        ) -> Any:
                            if who == "synthgen":
                                return synthgen_caller(srv.url, c, backend, tag, cache_dir)
                            return bare_caller(srv.url, c, backend, tag)

                        run = measure(
                            srv,
                            caller,
                            n=n,
                            workers=2 * c,
                            warmup=warmup,
                            scenario="A",
                            client=who,
                            backend=backend,
                            concurrency=c,
                            latency=latency,
                            repeat=r,
                        )
                        runs.append(run)
                        log(
                            f"A C={c} {backend:7} {who:8} r{r}: wall {run.wall_s:.2f}s "
                            f"eff {run.efficiency:.3f} cpu {run.cpu_ms_per_request:.2f} ms/req "
                            f"server {1000 * run.server_cpu_s / n:.2f} ms/req fail {run.failures}"
                        )
    return runs


def _pairs(runs: list[Run], c: int, backend: str) -> list[tuple[Run, Run]]:
    mine = [r for r in runs if r.scenario == "A" and r.concurrency == c and r.backend == backend]
    by_repeat: dict[int, dict[str, Run]] = {}
    for run in mine:
        by_repeat.setdefault(run.repeat, {})[run.client] = run
    return [(d["synthgen"], d["bare"]) for _, d in sorted(by_repeat.items()) if len(d) == 2]


def summarize_a(runs: list[Run]) -> dict[str, Any]:
    rows = []
    for c in sorted({r.concurrency for r in runs if r.scenario == "A"}):
        for backend in ("aiohttp", "httpx"):
            pairs = _pairs(runs, c, backend)
            if not pairs:
                continue
            eff_ratio = median(s.efficiency / b.efficiency for s, b in pairs)
            cpu_ratio = median(s.cpu_ms_per_request / b.cpu_ms_per_request for s, b in pairs)
            rows.append(
                {
                    "concurrency": c,
                    "backend": backend,
                    "repeats": len(pairs),
                    "synthgen": _medians([s for s, _ in pairs]),
                    "bare": _medians([b for _, b in pairs]),
                    "efficiency_ratio": eff_ratio,
                    "cpu_ratio": cpu_ratio,
                    "efficiency_ok": eff_ratio >= 0.97,
                    "cpu_ok": cpu_ratio <= 1.10,
                    "failures": sum(sum(r.failures.values()) for pair in pairs for r in pair),
                }
            )
    return {"rows": rows}


def _medians(runs: list[Run]) -> dict[str, float]:
    return {
        "wall_s": median(r.wall_s for r in runs),
        "efficiency": median(r.efficiency for r in runs),
        "cpu_ms_per_request": median(r.cpu_ms_per_request for r in runs),
        "server_cpu_ms_per_request": median(1000 * r.server_cpu_s / r.n for r in runs),
    }


def table_a(summary: dict[str, Any], n: int, latency: float) -> str:
    lines = [
        f"### A: overhead (N={n}, latency {latency}s; median of paired repeats)",
        "",
        "| C | backend | synthgen eff | bare eff | eff ratio (>= 0.97) | synthgen CPU ms/req "
        "| bare CPU ms/req | CPU ratio (<= 1.10) | server CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["rows"]:
        s, b = row["synthgen"], row["bare"]
        lines.append(
            f"| {row['concurrency']} | {row['backend']} | {s['efficiency']:.3f} | {b['efficiency']:.3f} "
            f"| {row['efficiency_ratio']:.3f} {_mark(row['efficiency_ok'])} | {s['cpu_ms_per_request']:.2f} "
            f"| {b['cpu_ms_per_request']:.2f} | {row['cpu_ratio']:.3f} {_mark(row['cpu_ok'])} "
            f"| {s['server_cpu_ms_per_request']:.2f} |"
        )
    return "\n".join(lines)


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# ------------------------------------------------------------------------------------ scenario B


def scenario_b(
    n: int, concurrency: int, repeats: int, latency: float, cache_dir: Path, log: Callable[[str], None]
) -> list[Run]:
    """Server-enforced 3000/min over any 1 s window; no warm-up: learning the limit is the test."""
    runs: list[Run] = []
    config = ServerConfig(latency=latency, rpm_limit=3000, rpm_window=1.0)
    with spawn_server(config) as srv:
        for r in range(repeats):
            order = ["synthgen", "bare"] if r % 2 == 0 else ["bare", "synthgen"]
            for who in order:
                tag = uuid.uuid4().hex[:12]

                def caller(who: str = who, tag: str = tag) -> Any:
                    if who == "synthgen":
                        return synthgen_caller(srv.url, concurrency, "aiohttp", tag, cache_dir)
                    return bare_caller(srv.url, concurrency, "aiohttp", tag, max_retries=2)

                time.sleep(1.1)  # let the previous run's window drain (reset clears it too)
                run = measure(
                    srv,
                    caller,
                    n=n,
                    workers=2 * concurrency,
                    warmup=False,
                    scenario="B",
                    client=who,
                    backend="aiohttp",
                    concurrency=concurrency,
                    latency=latency,
                    repeat=r,
                )
                runs.append(run)
                log(
                    f"B {who:8} r{r}: wall {run.wall_s:.2f}s {n / run.wall_s:.1f} req/s "
                    f"429s {run.server['rate_limited']} lost {sum(run.failures.values())} "
                    f"max/1s {run.server['max_in_window']}"
                )
    return runs


LIMIT_PER_S = 50.0


def summarize_b(runs: list[Run]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for who in ("synthgen", "bare"):
        mine = [r for r in runs if r.scenario == "B" and r.client == who]
        if not mine:
            continue
        n = mine[0].n
        out[who] = {
            "repeats": len(mine),
            "n": n,
            "all_back": all(not r.failures for r in mine),
            "lost_median": median(sum(r.failures.values()) for r in mine),
            "rate_limited_median": median(r.server["rate_limited"] for r in mine),
            "rate_limited_fraction": median(r.server["rate_limited"] / n for r in mine),
            # answered requests per second: a request the bare SDK lost is not throughput
            "throughput_per_s": median((n - sum(r.failures.values())) / r.wall_s for r in mine),
            "throughput_fraction": median(
                (n - sum(r.failures.values())) / r.wall_s / LIMIT_PER_S for r in mine
            ),
            "max_in_window": max(r.server["max_in_window"] for r in mine),
            "wall_s": median(r.wall_s for r in mine),
        }
    if "synthgen" in out:
        s = out["synthgen"]
        s["rate_limited_ok"] = s["rate_limited_fraction"] <= 0.01
        s["throughput_ok"] = s["throughput_fraction"] >= 0.95
    return out


def table_b(summary: dict[str, Any], n: int, concurrency: int, latency: float) -> str:
    lines = [
        f"### B: server limit 3000/min over 1 s windows (= 50/s), N={n}, C={concurrency}, "
        f"latency {latency}s; median of repeats",
        "",
        "| client | all back | lost | 429s / requests (<= 1%) | throughput / 50 per s (>= 0.95) "
        "| max in any 1 s | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for who, label in (("synthgen", "synthgen, no limit configured"), ("bare", "bare SDK, max_retries=2")):
        s = summary.get(who)
        if s is None:
            continue
        rl = f"{s['rate_limited_fraction']:.1%} ({s['rate_limited_median']:g})"
        tp = f"{s['throughput_fraction']:.3f}"
        if who == "synthgen":
            rl += f" {_mark(s['rate_limited_ok'])}"
            tp += f" {_mark(s['throughput_ok'])}"
        lines.append(
            f"| {label} | {'yes' if s['all_back'] else 'no'} | {s['lost_median']:g} | {rl} | {tp} "
            f"| {s['max_in_window']} | {s['wall_s']:.2f} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N and one repeat: a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help="paired repeats (3; --quick: 1)")
    parser.add_argument("--n", type=int, default=None, help="scenario A requests (default 2000)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256], help="scenario A levels")
    parser.add_argument("--latency", type=float, default=0.5, help="scenario A server latency (s)")
    parser.add_argument("--no-warmup", action="store_true", help="time the first request too (cold start)")
    parser.add_argument("--n-b", type=int, default=None, help="scenario B requests (default 500)")
    parser.add_argument("--only", choices=["A", "B"], help="run one scenario")
    parser.add_argument("--json", type=Path, help="write summaries and every run to this file")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    n_a = args.n or (300 if args.quick else 2000)
    n_b = args.n_b or (150 if args.quick else 500)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    runs: list[Run] = []
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "openai": openai.__version__,
        "repeats": repeats,
        "warmup": not args.no_warmup,
    }
    tables = []
    with tempfile.TemporaryDirectory(prefix="synthgen-bench-") as tmp:
        if args.only in (None, "A"):
            warm = not args.no_warmup
            runs_a = scenario_a(n_a, args.concurrency, repeats, args.latency, warm, Path(tmp), log)
            runs += runs_a
            report["A"] = {"n": n_a, "latency": args.latency, **summarize_a(runs_a)}
            tables.append(table_a(report["A"], n_a, args.latency))
        if args.only in (None, "B"):
            runs_b = scenario_b(n_b, 64, repeats, 0.1, Path(tmp), log)
            runs += runs_b
            report["B"] = {"n": n_b, "concurrency": 64, "latency": 0.1, **summarize_b(runs_b)}
            tables.append(table_b(report["B"], n_b, 64, 0.1))
    print(f"synthgen client benchmarks, {report['date']}, {report['cpus']} CPUs, openai {report['openai']}\n")
    print("\n\n".join(tables))
    if args.json:
        report["runs"] = [r.to_json() for r in runs]
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
