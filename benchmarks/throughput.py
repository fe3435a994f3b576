"""Client throughput: synthgen's ChatClient against the bare ``openai.AsyncOpenAI``, on both backends.

Why ratios: the box is small and shared, so absolute times drift from run to run. Each repeat runs
every client of a scenario back to back (rotating which goes first) against the same loopback
server in a subprocess (its CPU is not billed to this process); the figures reported are medians
over repeats, and each ratio is the median of synthgen/bare within a repeat, where the machine's
noise mostly cancels.

Scenarios (the rows of issue 13's table; ``--only`` picks some):

* ``A64``, ``A256``: N=2000 structured requests, 0.5 s latency, C=64 / C=256: efficiency (ideal
  ``N * latency / C`` over wall); synthgen at least the bare SDK's on the same backend.
* ``cpu``: the same at 0 latency, C=64: client CPU per request (``time.process_time()`` of this
  process / N), synthgen with the cache on (every request a miss) and off; target <= 1.10x the
  bare SDK on the same backend (``create`` + validation: its cheapest structured path; ``parse``
  shown too).
* ``faults``: 5% 429 (retry-after 1 s) + 5% 500, N=500, 0.5 s, C=64: wall; the bare SDK retries
  on its own (``max_retries=4``, so that it loses ~nothing); target <= 1.2x the bare SDK's wall.
* ``rpm``: the server enforces 3000/min as 50 in any 1 s and says so in ``x-ratelimit-*``
  headers; N=500, 0.5 s, C=64, no limit configured: efficiency (N / 50 per s over wall), 429s,
  requests lost; targets >= 0.95 and <= 1% 429s. The bare SDK keeps its default ``max_retries=2``.
* ``schema``: 5% of answers malformed (not JSON, or JSON off the schema), N=500, 0.2 s, C=64:
  wall; the bare SDK re-sends an answer that fails validation (up to 3 tries), synthgen re-asks.

    python -m benchmarks.throughput                  # every scenario, 3 repeats: ~10 minutes on 2 cores
    python -m benchmarks.throughput --quick          # smoke test: small N, one repeat, ~1.5 minutes
    python -m benchmarks.throughput --only cpu faults --repeats 5 --json out.json
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
from synthgen.llm.structured import response_format
from synthgen.llm.usage import UsageMeter
from tests.servers.openai_server import ServerConfig, SpawnedServer, spawn_server

MODEL = "gpt-4o-2024-08-06"
KEY_ENV = "BENCH_KEY"
Backend = Literal["aiohttp", "httpx"]
Call = Callable[[int], Awaitable[None]]
LIMIT_PER_S = 50.0  # the rpm scenario's 3000/min


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
        max_attempts=12,
    )


@asynccontextmanager
async def synthgen_caller(
    url: str, concurrency: int, backend: Backend, tag: str, cache_dir: Path | None
) -> AsyncIterator[Call]:
    """synthgen as users run it: a fresh cache file (``cache_dir`` None: no cache), a usage meter,
    no limit configured."""
    os.environ.setdefault(KEY_ENV, "sk-bench")
    profile = profile_for(url, concurrency, backend)
    cache = ResponseCache(cache_dir / f"{tag}.sqlite") if cache_dir is not None else None
    try:
        async with ChatClient(cache=cache, meter=UsageMeter()) as client:

            async def call(i: int) -> None:
                done = await client.complete(messages_for(i, tag), profile=profile, schema=Verdict)
                if not isinstance(done.parsed, Verdict) or done.cached:
                    raise AssertionError(f"unexpected completion {done!r}")

            yield call
    finally:
        if cache is not None:
            cache.close()


@asynccontextmanager
async def bare_caller(
    url: str,
    concurrency: int,
    backend: Backend,
    tag: str,
    max_retries: int = 0,
    how: Literal["create", "parse"] = "parse",
    tries: int = 1,
) -> AsyncIterator[Call]:
    """The baseline: the SDK on the same HTTP backend, bounded by a semaphore.

    ``create``: the strict schema built once, ``create`` and ``Verdict.model_validate_json`` (the
    SDK's cheapest structured path); ``parse``: ``chat.completions.parse(response_format=Verdict)``.
    ``tries`` > 1 sends again an answer that fails validation (what a user of the SDK writes).
    """
    sdk = openai.AsyncOpenAI(
        api_key="sk-bench",
        base_url=url,
        max_retries=max_retries,
        timeout=120.0,
        http_client=http_client(backend, concurrency),
    )
    semaphore = asyncio.Semaphore(concurrency)
    strict = response_format(Verdict)

    async def once(i: int) -> Verdict:
        async with semaphore:
            if how == "parse":
                parsed = await sdk.chat.completions.parse(
                    model=MODEL,
                    messages=messages_for(i, tag),  # type: ignore[arg-type]
                    response_format=Verdict,
                )
                verdict = parsed.choices[0].message.parsed
                if verdict is None:
                    raise ValueError("no parsed answer")
                return verdict
            done = await sdk.chat.completions.create(  # type: ignore[call-overload]
                model=MODEL, messages=messages_for(i, tag), response_format=strict
            )
        return Verdict.model_validate_json(done.choices[0].message.content or "")

    async def call(i: int) -> None:
        for attempt in range(tries):
            try:
                await once(i)
                return
            except (pydantic.ValidationError, ValueError):
                if attempt == tries - 1:
                    raise

    try:
        yield call
    finally:
        await sdk.close()


async def drive(n: int, workers: int, call: Call) -> Counter[str]:
    """Feed ``n`` requests through ``workers`` tasks, as the runner does: memory stays bounded in n.

    Returns failures by exception type: a lost request is a result here.
    """
    pending = iter(range(n))
    failures: Counter[str] = Counter()

    async def worker() -> None:
        for i in pending:
            try:
                await call(i)
            except Exception as exc:  # counted and reported
                failures[type(exc).__name__] += 1

    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(worker())
    return failures


# --------------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Client:
    """One side of a comparison: who, on which backend, and how the bare SDK calls."""

    who: Literal["synthgen", "synthgen-nocache", "bare"]
    backend: Backend = "aiohttp"
    how: Literal["create", "parse"] = "create"

    @property
    def label(self) -> str:
        if self.who == "bare":
            return f"bare {self.how} {self.backend}"
        return f"{self.who} {self.backend}"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    n: int
    concurrency: int
    latency: float
    clients: tuple[Client, ...]
    server: dict[str, Any] = field(default_factory=dict)
    bare_retries: int = 0
    bare_tries: int = 1
    warmup: bool = True  # one untimed request first (connection, imports, the limiter's probe)


SG = Client("synthgen")
BARE = Client("bare")
BARE_HTTPX = Client("bare", "httpx")


def scenarios(quick: bool) -> list[Scenario]:
    big, small = (400, 150) if quick else (2000, 500)
    return [
        Scenario("A64", f"N={big}, 0.5 s latency, C=64", big, 64, 0.5, (SG, BARE, BARE_HTTPX)),
        Scenario(
            "A256",
            f"N={big}, 0.5 s latency, C=256",
            big,
            256,
            0.5,
            (SG, BARE, Client("synthgen", "httpx"), BARE_HTTPX),
        ),
        Scenario(
            "cpu",
            f"client CPU per request, N={big}, 0 latency, C=64",
            big,
            64,
            0.0,
            (
                SG,
                Client("synthgen-nocache"),
                BARE,
                Client("bare", how="parse"),
                Client("synthgen", "httpx"),
                BARE_HTTPX,
            ),
        ),
        Scenario(
            "faults",
            f"5% 429 (retry-after 1 s) + 5% 500, N={small}, 0.5 s, C=64",
            small,
            64,
            0.5,
            (SG, BARE, BARE_HTTPX),
            server={"fault_rate": 0.1, "faults": ("429", "500"), "retry_after": 1.0},
            bare_retries=4,
        ),
        Scenario(
            "rpm",
            f"server-enforced 3000/min (50 in any 1 s), N={small}, 0.5 s, C=64, no limit configured",
            small,
            64,
            0.5,
            (SG, BARE),
            server={"rpm_limit": 3000, "rpm_window": 1.0},
            bare_retries=2,
            warmup=False,  # learning the limit is the test
        ),
        Scenario(
            "schema",
            f"5% malformed answers, N={small}, 0.2 s, C=64",
            small,
            64,
            0.2,
            (SG, BARE, BARE_HTTPX),
            server={"fault_rate": 0.05, "faults": ("invalid_json_content", "schema_violation")},
            bare_tries=3,
        ),
    ]


@dataclass
class Run:
    """One measured run of one client."""

    scenario: str
    client: str
    repeat: int
    n: int
    concurrency: int
    latency: float
    wall_s: float
    cpu_s: float
    server_cpu_s: float
    failures: dict[str, int]
    server: dict[str, Any] = field(default_factory=dict)

    @property
    def efficiency(self) -> float:
        """Ideal over wall: the ideal is N/50 s under the rate limit, N * latency / C otherwise."""
        if self.scenario == "rpm":
            return self.n / LIMIT_PER_S / self.wall_s
        return self.n * self.latency / self.concurrency / self.wall_s if self.latency else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.n

    @property
    def lost(self) -> int:
        return sum(self.failures.values())

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "efficiency": self.efficiency, "cpu_ms_per_request": self.cpu_ms}


def caller(scenario: Scenario, client: Client, url: str, tag: str, cache_dir: Path) -> Any:
    if client.who == "bare":
        return bare_caller(
            url,
            scenario.concurrency,
            client.backend,
            tag,
            max_retries=scenario.bare_retries,
            how=client.how,
            tries=scenario.bare_tries,
        )
    cache = cache_dir if client.who == "synthgen" else None
    return synthgen_caller(url, scenario.concurrency, client.backend, tag, cache)


def measure(srv: SpawnedServer, make: Callable[[], Any], scenario: Scenario, label: str, repeat: int) -> Run:
    """Run a scenario's N requests through a fresh client in a fresh event loop; time only those."""
    server_proc = psutil.Process(srv.pid)

    async def run() -> tuple[float, float, float, Counter[str]]:
        async with make() as call:
            if scenario.warmup:
                await call(-1)
            srv.reset()
            gc.collect()
            server_cpu0 = sum(server_proc.cpu_times()[:2])
            cpu0, t0 = time.process_time(), time.perf_counter()
            failures = await drive(scenario.n, 2 * scenario.concurrency, call)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            return wall, cpu, sum(server_proc.cpu_times()[:2]) - server_cpu0, failures

    wall, cpu, server_cpu, failures = asyncio.run(run())
    stats = srv.stats()
    keep = ("requests", "served_ok", "unique_ok", "rate_limited", "max_in_window", "peak_in_flight", "status")
    return Run(
        scenario=scenario.name,
        client=label,
        repeat=repeat,
        n=scenario.n,
        concurrency=scenario.concurrency,
        latency=scenario.latency,
        wall_s=wall,
        cpu_s=cpu,
        server_cpu_s=server_cpu,
        failures=dict(failures),
        server={k: stats[k] for k in keep},
    )


def run_scenario(scenario: Scenario, repeats: int, cache_dir: Path, log: Callable[[str], None]) -> list[Run]:
    runs: list[Run] = []
    config = ServerConfig(latency=scenario.latency, **scenario.server)
    with spawn_server(config) as srv:
        for r in range(repeats):
            k = r % len(scenario.clients)
            for client in scenario.clients[k:] + scenario.clients[:k]:  # rotate who goes first
                srv.update_config(seed=r)  # the same fault draws for every client of a repeat
                if scenario.name == "rpm":
                    time.sleep(1.1)  # let the previous run's window drain (reset clears it too)
                tag = uuid.uuid4().hex[:12]

                def make(c: Client = client, t: str = tag) -> Any:
                    return caller(scenario, c, srv.url, t, cache_dir)

                run = measure(srv, make, scenario, client.label, r)
                runs.append(run)
                log(
                    f"{scenario.name:6} {client.label:22} r{r}: wall {run.wall_s:6.2f}s eff {run.efficiency:.3f} "
                    f"cpu {run.cpu_ms:.2f} ms/req 429s {run.server['status'].get('429', 0)} lost {run.lost}"
                )
    return runs


# --------------------------------------------------------------------------------- summaries


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def _paired(runs: list[Run], a: str, b: str, metric: Callable[[Run], float]) -> float | None:
    """Median over repeats of metric(a) / metric(b) within each repeat."""
    by_repeat: dict[int, dict[str, Run]] = {}
    for run in runs:
        by_repeat.setdefault(run.repeat, {})[run.client] = run
    ratios = [metric(d[a]) / metric(d[b]) for d in by_repeat.values() if a in d and b in d and metric(d[b])]
    return median(ratios) if ratios else None


def summarize(scenario: Scenario, runs: list[Run]) -> dict[str, Any]:
    mine = [r for r in runs if r.scenario == scenario.name]
    per_client: dict[str, dict[str, Any]] = {}
    for client in scenario.clients:
        rs = [r for r in mine if r.client == client.label]
        per_client[client.label] = {
            "wall_s": median(r.wall_s for r in rs),
            "efficiency": median(r.efficiency for r in rs),
            "cpu_ms": median(r.cpu_ms for r in rs),
            "server_cpu_ms": median(1000 * r.server_cpu_s / r.n for r in rs),
            "lost": median(r.lost for r in rs),
            "lost_max": max(r.lost for r in rs),
            "status_429": median(r.server["status"].get("429", 0) for r in rs),
            "rate_limited": median(r.server["rate_limited"] for r in rs),
            "max_in_window": max(r.server["max_in_window"] for r in rs),
            # rpm: over the best a client can do that never sends more than the limit in any window
            # and does not know the limit before its first answer: one latency to learn it, then
            # N-1 sends at exactly 50/s, then the last answer's latency
            "vs_even_pacer": median((scenario.latency * 2 + (r.n - 1) / LIMIT_PER_S) / r.wall_s for r in rs),
        }
    ratios: dict[str, float | None] = {}
    for backend in ("aiohttp", "httpx"):
        sg, bare = f"synthgen {backend}", f"bare create {backend}"
        ratios[f"wall {backend}"] = _paired(mine, sg, bare, lambda r: r.wall_s)
        ratios[f"efficiency {backend}"] = _paired(mine, sg, bare, lambda r: r.efficiency)
        ratios[f"cpu {backend}"] = _paired(mine, sg, bare, lambda r: r.cpu_ms)
    ratios["cpu nocache aiohttp"] = _paired(
        mine, "synthgen-nocache aiohttp", "bare create aiohttp", lambda r: r.cpu_ms
    )
    ratios["cpu vs parse aiohttp"] = _paired(
        mine, "synthgen aiohttp", "bare parse aiohttp", lambda r: r.cpu_ms
    )
    ratios["wall vs httpx"] = _paired(mine, "synthgen aiohttp", "bare create httpx", lambda r: r.wall_s)
    return {
        "title": scenario.title,
        "repeats": len({r.repeat for r in mine}),
        "clients": per_client,
        "ratios": ratios,
    }


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _goal(ok: bool | None) -> str:
    return "" if ok is None else (" ok" if ok else " **missed**")


def tables(summary: dict[str, dict[str, Any]]) -> str:
    """The issue's table (goals as ratios measured in this run), then the detail per scenario."""
    lines = [
        "| scenario | bare SDK, aiohttp | bare SDK, httpx | synthgen (aiohttp) | synthgen / bare SDK (goal) |",
        "|---|---|---|---|---|",
    ]

    def cell(s: dict[str, Any], label: str, what: str) -> str:
        c = s["clients"].get(label)
        if c is None:
            return "-"
        lost = f", {c['lost']:g} lost" if c["lost_max"] else ""
        if what == "eff":
            return f"{c['efficiency']:.2f}{lost}"
        if what == "cpu":
            return f"{c['cpu_ms']:.2f} ms"
        if what == "rpm":
            return (
                f"{c['efficiency']:.2f} / {c['rate_limited'] / s['n']:.1%} 429s{lost} "
                f"({c['vs_even_pacer']:.2f} of an even pacer)"
            )
        return f"{c['wall_s']:.1f} s{lost}"

    for name, s in summary.items():
        r = s["ratios"]
        if name in ("A64", "A256"):
            what, ratio = "eff", r["efficiency aiohttp"]
            goal = f"{_fmt(ratio)} eff (>= 1.00){_goal(None if ratio is None else ratio >= 0.995)}"
            if r.get("efficiency httpx") is not None:
                goal += f"; httpx {_fmt(r['efficiency httpx'])}"
        elif name == "cpu":
            what, ratio = "cpu", r["cpu aiohttp"]
            nocache = r["cpu nocache aiohttp"]
            ok = None if ratio is None or nocache is None else max(ratio, nocache) <= 1.10
            goal = (
                f"{_fmt(ratio)} cache on, {_fmt(nocache)} off (<= 1.10){_goal(ok)}; "
                f"vs `parse` {_fmt(r['cpu vs parse aiohttp'])}; httpx {_fmt(r['cpu httpx'])}"
            )
        elif name == "rpm":
            what = "rpm"
            c = s["clients"].get("synthgen aiohttp", {})
            ok = (
                bool(c)
                and c["efficiency"] >= 0.95
                and c["rate_limited"] <= 0.01 * s["n"]
                and not c["lost_max"]
            )
            goal = f"eff >= 0.95, <= 1% 429s, none lost{_goal(ok if c else None)}"
        else:
            what, ratio = "wall", r["wall aiohttp"]
            goal = f"{_fmt(ratio)} wall; vs httpx {_fmt(r['wall vs httpx'])}"
            if name == "faults":
                best = None if ratio is None else max(ratio, r["wall vs httpx"] or 0)
                goal += f" (<= 1.2){_goal(None if best is None else best <= 1.2)}"
        lines.append(
            f"| {s['title']} | {cell(s, 'bare create aiohttp', what)} | {cell(s, 'bare create httpx', what)} "
            f"| {cell(s, 'synthgen aiohttp', what)} | {goal} |"
        )
    lines += [
        "",
        "| scenario | client | wall s | efficiency | CPU ms/req | server CPU ms/req | 429s | lost |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        for label, c in s["clients"].items():
            lines.append(
                f"| {name} | {label} | {c['wall_s']:.2f} | {c['efficiency']:.3f} | {c['cpu_ms']:.2f} "
                f"| {c['server_cpu_ms']:.2f} | {c['status_429']:g} | {c['lost']:g} (max {c['lost_max']}) |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N and one repeat: a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of every scenario (3; --quick: 1)")
    names = [s.name for s in scenarios(False)]
    parser.add_argument("--only", nargs="+", choices=names, help="run these scenarios only")
    parser.add_argument("--json", type=Path, help="write summaries and every run to this file")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "python": sys.version.split()[0],
        "openai": openai.__version__,
        "repeats": repeats,
    }
    runs: list[Run] = []
    summary: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="synthgen-bench-") as tmp:
        for scenario in scenarios(args.quick):
            if args.only and scenario.name not in args.only:
                continue
            mine = run_scenario(scenario, repeats, Path(tmp), log)
            runs += mine
            summary[scenario.name] = {"n": scenario.n, **summarize(scenario, mine)}
    report["load_after"] = os.getloadavg()
    report["summary"] = summary
    load = f"load average {report['load_before'][0]:.1f} before, {report['load_after'][0]:.1f} after"
    print(
        f"synthgen client benchmarks, {report['date']}, {report['cpus']} CPUs, {load}, "
        f"openai {report['openai']}, median of {repeats} repeat(s)\n"
    )
    print(tables(summary))
    if args.json:
        report["runs"] = [r.to_json() for r in runs]
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
