"""Pipeline throughput and memory: a whole ``synthgen run`` of the faculty recipe against the loopback server.

Why: the client benchmarks (``throughput.py``, ``memory.py``) measure requests alone; a run also
plans, schedules items whose requests are sequential (a dialogue's turns), checks and journals rows,
and writes the dataset. This measures the run as a user starts it, against
``tests/servers/openai_server.py`` in a subprocess with a fixed latency (its CPU is not the run's):

* requests/s, and the ideal the recipe allows: per step, the longest of (every request of a key
  over that key's ``max_concurrency``, every item's sequential rounds over the runner's workers, the
  longest item), times the latency: a dialogue item's requests are all sequential, a preference
  item's are two rounds (candidates, then judges). Efficiency = ideal wall / measured wall of the
  steps (generation); the whole run's wall (planning, finalize) is reported beside it;
* peak RSS (``ru_maxrss`` of the run's own process, one fresh process per size) as items grow:
  flat means the dataset streams to disk (journals, parquet) instead of piling up in memory;
* time to first request: from the ``run()`` call (and from the process start, imports included) to
  the server's first request, on the faculty recipe itself with the budget gate on (it estimates).

Sizes are dialogue items (the faculty recipe writes 8 per seed, and a preference item per dialogue),
on synthetic seeds scaled as ``benchmarks/planning.py`` writes them; the recipe is the faculty one
with the loopback server's key and no request-per-minute limits.

    python -m benchmarks.pipeline                         # 100 and 1,000 items at 0.5 s: ~4 min on 2 cores
    python -m benchmarks.pipeline --sizes 100 1000 10000 --latency 0.05   # memory at 10,000 (CPU-bound)
    python -m benchmarks.pipeline --only first-request    # time to first request, estimate times
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from benchmarks.planning import write_inputs
from tests.servers.openai_server import ServerConfig, spawn_server

ROOT = Path(__file__).resolve().parents[1]
FACULTY = ROOT / "recipes" / "faculty-sciences-es" / "recipe.yaml"
PER_SEED = 8  # the faculty recipe's dialogues per seed
ROUNDS = {"dialogue": None, "preference": 2}  # sequential rounds per item (None: every request)


def faculty_recipe(folder: Path, items: int | None) -> Path:
    """The faculty recipe for the loopback server: ``items`` dialogue items on synthetic seeds (None:
    the faculty's own seeds), no request-per-minute limits, a budget too large to stop it."""
    text = FACULTY.read_text(encoding="utf-8").replace("../../seeds/", str(ROOT / "seeds") + "/")
    lines = [line for line in text.splitlines() if "requests_per_minute" not in line]
    text = "\n".join(lines).replace("budget: {max_usd: 25}", "budget: {max_usd: 100000}")
    if items is not None:
        synthetic = write_inputs(folder, max(1, items // PER_SEED), "jsonl")
        seeds = (folder / "seeds.jsonl").resolve()
        synthetic.unlink()
        swap = {"seeds:": f"seeds: {seeds}", "personas:": f"personas: {(folder / 'personas.yaml').resolve()}"}
        text = "\n".join(
            next((new for key, new in swap.items() if line.startswith(key)), line)
            for line in text.splitlines()
        )
    path = folder / "faculty.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    return path


def _ideal(out: Path, recipe_path: Path, latency: float) -> dict[str, Any]:
    """The ideal generation wall from the journals: per step, the longest bound (see the module doc)."""
    from synthgen.pipeline.preflight import profiles_used
    from synthgen.pipeline.runner import _workers
    from synthgen.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    concurrency: dict[str, int] = {}
    for name in profiles_used(recipe):  # the first profile of a key sets its limiter (Limits.get)
        profile = recipe.models[name]
        concurrency.setdefault(profile.model, profile.max_concurrency)
    workers = _workers(recipe.models.values())  # the runner's own sizing
    steps: dict[str, Any] = {}
    for step in recipe.steps:
        generator = recipe.generator(step).name
        per_model: Counter[str] = Counter()
        rounds: list[int] = []
        journal = out / ".synthgen" / "journal" / f"{step.name}.jsonl"
        for line in journal.read_text(encoding="utf-8").splitlines():
            by_model = json.loads(line)["usage"]["by_model"]
            sent = {m: u["requests"] for m, u in by_model.items()}
            per_model.update(sent)
            rounds.append(ROUNDS.get(generator) or sum(sent.values()))
        bounds = {
            "keys": max((n / concurrency.get(m, 16) for m, n in per_model.items()), default=0.0),
            "items": sum(rounds) / workers,
            "longest": float(max(rounds, default=0)),
        }
        steps[step.name] = {
            "requests": sum(per_model.values()),
            "ideal_s": latency * max(bounds.values()),
            "bound": max(bounds, key=lambda k: bounds[k]),
        }
    return steps


def child_run(recipe_path: Path, out: Path, latency: float) -> dict[str, Any]:
    """One whole run in this (fresh) process; its peak RSS is this size's alone."""
    from synthgen.pipeline import runner
    from synthgen.pipeline.runner import run

    generated: dict[str, float] = {}
    write_run_dir = runner.write_run_dir

    def finalize(*args: Any, **named: Any) -> None:  # the peak of generation, before finalize writes
        generated["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        write_run_dir(*args, **named)

    runner.write_run_dir = finalize  # type: ignore[assignment]
    before = resource.getrusage(resource.RUSAGE_SELF)
    baseline, cpu_before = before.ru_maxrss / 1024, before.ru_utime + before.ru_stime
    called = time.time()
    result = run(recipe_path, out=out)
    wall = time.time() - called
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss / 1024
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    steps = _ideal(out, recipe_path, latency)
    for name, counts in result.steps.items():
        steps[name]["seconds"] = counts.seconds
        steps[name]["items"] = counts.items
        steps[name]["rows"] = counts.rows
    return {
        "called": called,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_mib": peak,
        "generation_peak_mib": generated.get("peak_mib", peak),
        "baseline_mib": baseline,
        "steps": steps,
    }


def child_first_request(recipe_path: Path, out: Path) -> dict[str, Any]:
    """The faculty recipe with the budget gate on (``confirm`` given: the run estimates first)."""
    from synthgen.pipeline.runner import run  # imports (openai, the tokenizer) before the clock starts

    called = time.time()
    print(json.dumps({"called": called}), flush=True)
    run(recipe_path, out=out, confirm=lambda message: True, limit=6)
    return {"called": called}


def _env(home: Path, url: str) -> dict[str, str]:
    return {
        **os.environ,
        "SYNTHGEN_HOME": str(home),
        "SYNTHGEN_PROBE": "off",
        "SYNTHGEN_PROGRESS_SECONDS": "0",
        "OPENAI_BASE_URL": url,
        "OPENAI_API_KEY": "sk-loopback",
        "PYTHONPATH": str(ROOT),
    }


def _watch_first(srv: Any, seen: dict[str, float], stop: threading.Event) -> None:
    while not stop.is_set():
        if srv.stats()["requests"] > 0:
            seen["first"] = time.time()
            return
        time.sleep(0.01)


def measure_run(items: int, latency: float) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="synthgen-pipe-") as tmp,
        spawn_server(ServerConfig(latency=latency, plausible=True)) as srv,
    ):
        folder = Path(tmp)
        recipe = faculty_recipe(folder, items)
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.pipeline",
            "--child",
            "run",
            str(recipe),
            str(folder / "out"),
        ]
        cmd += ["--latency", str(latency)]
        started = time.time()
        done = subprocess.run(
            cmd, capture_output=True, text=True, env=_env(folder / "home", srv.url), check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"run of {items} items failed: {done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["process_s"] = time.time() - started
        result["server_requests"] = srv.stats()["requests"]
        times = psutil.Process(srv.process.pid).cpu_times()
        result["server_cpu_s"] = times.user + times.system
    generation = sum(s["seconds"] for s in result["steps"].values())
    ideal = sum(s["ideal_s"] for s in result["steps"].values())
    requests = sum(s["requests"] for s in result["steps"].values())
    return {
        "items": items,
        "latency": latency,
        "load": os.getloadavg()[0],  # the machine's 1-minute load average as the run ended
        **result,
        "generation_s": generation,
        "ideal_s": ideal,
        "requests": requests,
        "rps": requests / generation,
        "ideal_rps": requests / ideal,
        "efficiency": ideal / generation,
    }


def measure_first_request() -> dict[str, Any]:
    """Time to the first request (gate on, estimate not yet kept, then kept) and `estimate` times."""
    out: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="synthgen-first-") as tmp,
        spawn_server(ServerConfig(plausible=True)) as srv,
    ):
        folder = Path(tmp)
        recipe = faculty_recipe(folder, None)
        env = _env(folder / "home", srv.url)
        for label in ("estimate fresh", "estimate kept"):
            t0 = time.time()
            subprocess.run(
                [sys.executable, "-m", "synthgen.cli", "estimate", str(recipe)], env=env, check=True,
                capture_output=True,
            )  # fmt: skip
            out[label] = time.time() - t0
        for label, home in (("first request, estimate kept", "home"), ("first request, fresh home", "home2")):
            srv.reset()
            seen: dict[str, float] = {}
            stop = threading.Event()
            watcher = threading.Thread(target=_watch_first, args=(srv, seen, stop), daemon=True)
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.pipeline",
                "--child",
                "first",
                str(recipe),
                str(folder / label),
            ]
            started = time.time()
            watcher.start()
            child = subprocess.Popen(
                cmd, env={**env, "SYNTHGEN_HOME": str(folder / home)}, stdout=subprocess.PIPE, text=True
            )
            assert child.stdout is not None
            called = json.loads(child.stdout.readline())["called"]
            watcher.join(timeout=120)
            stop.set()
            child.wait(timeout=600)
            out[label] = {
                "from_run_call_s": seen["first"] - called,
                "from_process_start_s": seen["first"] - started,
            }
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| items | latency s | requests | generation s | ideal s | req/s | ideal req/s | efficiency "
        "| whole run s | run CPU s | server CPU s | load | peak RSS MiB: generation | whole run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['items']:,} | {r['latency']} | {r['requests']:,} | {r['generation_s']:.1f} | {r['ideal_s']:.1f} | "
            f"{r['rps']:.1f} | {r['ideal_rps']:.1f} | {r['efficiency']:.2f} | {r['wall_s']:.1f} | "
            f"{r['cpu_s']:.1f} | {r['server_cpu_s']:.1f} | {r['load']:.1f} | "
            f"{r['generation_peak_mib']:.0f} | {r['peak_mib']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="dialogue items")
    parser.add_argument("--latency", type=float, default=0.5, help="server latency per request, s")
    parser.add_argument("--only", choices=["runs", "first-request"], help="one part only")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "RECIPE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, recipe, out = args.child[0], Path(args.child[1]), Path(args.child[2])
        found = child_run(recipe, out, args.latency) if mode == "run" else child_first_request(recipe, out)
        print(json.dumps(found), flush=True)
        return 0
    payload: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "load": os.getloadavg()}
    if args.only != "runs":
        payload["first_request"] = measure_first_request()
        print(f"first request: {json.dumps(payload['first_request'])}", file=sys.stderr, flush=True)
    if args.only != "first-request":
        payload["runs"] = []
        for n in args.sizes:
            found = measure_run(n, args.latency)
            payload["runs"].append(found)
            print(f"N={n}: {json.dumps(found)}", file=sys.stderr, flush=True)
        print(f"### Pipeline, faculty recipe, loopback server at {args.latency} s\n")
        print(table(payload["runs"]))
    if "first_request" in payload:
        print("\n" + "\n".join(f"* {k}: {json.dumps(v)}" for k, v in payload["first_request"].items()))
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
