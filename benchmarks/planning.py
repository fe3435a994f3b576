"""Planning memory and time: loading a recipe and planning its steps must be linear in the seeds.

Why: ``synthgen validate``, ``estimate`` and ``run`` all load every seed and plan every step before
the first request. A faculty's seeds can run to tens of thousands (documents generator, spreadsheet
exports), and a plan whose items each held every other seed of their topic grew with the square of
the seeds per topic: 16k seeds took 1.9 GB to plan, 50 MB of seeds 3.3 GB to validate.

Each N writes N synthetic seeds (Spanish-like text of seed-like lengths, over 20 topics) and a
recipe shaped like ``recipes/offline-demo/recipe.yaml`` (dialogues, preference pairs from them, and
a preference step straight from the seeds), then measures in a fresh child process, so peak RSS
(``ru_maxrss``) is that N's alone:

* load: ``load_recipe`` (seeds parsed and validated) and the per-seed splits;
* plan: every step's ``plan()`` through :func:`synthgen.pipeline.plan.walk`, with a ``produce``
  that turns planned dialogue items into stub rows (what the preference step plans from);
* validate: ``validate_recipe`` end to end (load, plan, dry run of each step's first item), in a
  second child.

    python -m benchmarks.planning                      # N = 1k, 10k, 100k: about 4 minutes on 2 cores
    python -m benchmarks.planning --sizes 1000 10000 --no-validate
    python -m benchmarks.planning --trace --no-validate   # planning's own memory, by tracemalloc
    python -m benchmarks.planning --format jsonl       # the same seeds as JSON lines

Linear means each 10x in N multiplies time and memory by about 10; a plan quadratic in the seeds per
topic multiplies them by about 100. Planning's own memory hides in RSS (it reuses what loading
freed), so ``--trace`` runs each child under ``tracemalloc`` instead and reports the peak of Python
allocations while planning, over what the loaded recipe holds, and per planned item (flat when
linear); its times are tracemalloc's, not comparable. Children run under an address space cap
(``--max-gib``) so a quadratic plan fails with MemoryError instead of exhausting a shared machine;
such a size is reported as over the cap.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
PERSONAS = ROOT / "seeds" / "faculty-sciences-es" / "personas.yaml"
TOPICS = [
    "matricula", "becas-tasas", "biblioteca", "calendario", "certificados", "laboratorios", "movilidad",
    "permanencia", "practicas", "reconocimiento", "titulos", "anulacion", "tfg", "examenes", "horarios",
    "deportes", "alojamiento", "idiomas", "empleo", "secretaria",
]  # fmt: skip
_VOCABULARY = (
    "el la los las de del en para por con sin sobre plazo solicitud matrícula estudiante asignatura "
    "crédito créditos curso grado máster facultad secretaría sede electrónica documento certificado "
    "beca tasa pago fecha convocatoria examen evaluación prácticas empresa tutor trabajo fin título "
    "expediente reconocimiento movilidad erasmus universidad horario biblioteca préstamo laboratorio "
    "normativa artículo reglamento alumnado profesorado resolución recurso anulación permanencia "
    "cuatrimestre primer segundo tercer cuarto año académico oficial presentar entregar consultar "
    "puede debe tiene hasta desde cuando donde cómo cuántos hábiles días semanas meses"
)
WORDS = _VOCABULARY.split()
MIB = 2**20


def _rss_mib() -> float:
    return float(psutil.Process().memory_info().rss) / MIB


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _sentence(rng: random.Random, low: int, high: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(low, high))
    return " ".join(words).capitalize()


def write_inputs(folder: Path, n: int, fmt: str) -> Path:
    """N seeds (questions ~100 characters, answers ~400, like a faculty's) and the recipe; its path."""
    rng = random.Random(n)
    seeds = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        question = f"¿{_sentence(rng, 8, 20)}?"
        answer = ". ".join(_sentence(rng, 10, 25) for _ in range(rng.randint(2, 4))) + "."
        seeds.append({"id": f"{topic}-{i:06d}", "topic": topic, "question": question, "answer": answer})
    if fmt == "jsonl":
        seeds_file = folder / "seeds.jsonl"
        text = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in seeds)
    else:  # JSON strings are YAML double-quoted scalars: written fast, read by the real YAML loader
        seeds_file = folder / "seeds.yaml"
        entries = (
            "\n".join(f"    {k}: {json.dumps(v, ensure_ascii=False)}" for k, v in s.items()).replace(
                "    id:", "  - id:", 1
            )
            for s in seeds
        )
        text = "language: es\nseeds:\n" + "\n".join(entries) + "\n"
    seeds_file.write_text(text, encoding="utf-8")
    (folder / "personas.yaml").write_text(PERSONAS.read_text(encoding="utf-8"), encoding="utf-8")
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        f"""name: planning-benchmark
version: 1
language: es
seed: 13
seeds: {seeds_file.name}
personas: personas.yaml
grounding: closed_book
system_prompt: Eres el asistente virtual de la Facultad de Ciencias.
models:
  student:   {{model: gpt-4o-mini-2024-07-18, temperature: 1.0}}
  assistant: {{model: gpt-4o-2024-08-06, temperature: 0.7}}
  judge:     {{model: gpt-4o-2024-08-06, temperature: 0.0}}
steps:
  - {{name: dialogues, generator: dialogue, config: {{per_seed: 2, turns: [1, 3]}}}}
  - {{name: prefs, generator: preference, from: dialogues, config: {{candidates: 4, judge: judge}}}}
  - {{name: qa_prefs, generator: preference, config: {{candidates: 4, judge: judge}}}}
output: {{test_fraction: 0.1, license: cc-by-4.0}}
""",
        encoding="utf-8",
    )
    return recipe


def child_plan(recipe_path: Path, trace: bool) -> dict[str, Any]:
    """Load, then plan every step; imports are done before the baseline is read."""
    from synthgen.pipeline.plan import StepPlan, assign_splits, walk
    from synthgen.recipe import load_recipe

    baseline = _rss_mib()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    recipe = load_recipe(recipe_path)
    splits = assign_splits(recipe.loaded_seeds, recipe.output.test_fraction, recipe.seed)
    load_s, load_peak = time.perf_counter() - t0, _maxrss_mib()
    traced: dict[str, float] = {}
    if trace:
        loaded, traced["load_traced_mib"] = (b / MIB for b in tracemalloc.get_traced_memory())
        tracemalloc.reset_peak()
    topics = {s.id: s.topic for s in recipe.loaded_seeds}
    messages = [{"role": "user", "content": "¿Pregunta?"}, {"role": "assistant", "content": "Respuesta."}]
    items: dict[str, int] = {}

    async def produce(plan: StepPlan) -> list[dict[str, Any]]:
        items[plan.step.name] = len(plan.items)
        if plan.generator.output != "sft":
            return []
        return [
            {
                "dialogue_id": i.id,
                "seed_ids": list(i.seed_ids),
                "topic": topics[i.seed_ids[0]],
                "messages": messages,
            }
            for i in plan.items
        ]

    t1 = time.perf_counter()
    asyncio.run(walk(recipe, splits, produce))
    plan_s = time.perf_counter() - t1
    if trace:
        traced["plan_traced_mib"] = tracemalloc.get_traced_memory()[1] / MIB - loaded
    return {
        "seeds": len(recipe.loaded_seeds),
        "baseline_mib": baseline,
        "load_s": load_s,
        "load_peak_mib": load_peak,
        "plan_s": plan_s,
        "plan_peak_mib": _maxrss_mib(),
        "items": items,
        **traced,
    }


def child_validate(recipe_path: Path) -> dict[str, Any]:
    from synthgen.pipeline.validate import validate_recipe

    baseline = _rss_mib()
    t0 = time.perf_counter()
    validate_recipe(recipe_path)
    return {
        "baseline_mib": baseline,
        "validate_s": time.perf_counter() - t0,
        "validate_peak_mib": _maxrss_mib(),
    }


def measure(mode: str, recipe: Path, max_gib: float, trace: bool = False) -> dict[str, Any]:
    """One child process; {"over_cap": True} when it ran out of its address space."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.planning",
        "--child",
        mode,
        str(recipe),
        "--max-gib",
        str(max_gib),
    ]
    cmd += ["--trace"] if trace else []
    env = {**os.environ, "SYNTHGEN_HOME": str(recipe.parent / "home")}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        if "MemoryError" in done.stderr:
            return {"over_cap": True}
        raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _ratios(rows: list[dict[str, Any]], key: str) -> list[float | None]:
    """Each size's figure over the previous size's (None for the first size or a missing figure)."""
    out: list[float | None] = [None]
    for before, now in itertools.pairwise(rows):
        known = key in before and key in now and before[key] > 0
        out.append(now[key] / before[key] if known else None)
    return out


def table(results: list[dict[str, Any]], *, validate: bool, trace: bool) -> str:
    """A Markdown table, one row per N, each figure with its ratio to the previous N's."""
    rows = []
    for r in sorted(results, key=lambda r: r["n"]):
        plan, check = r["plan"], r.get("validate", {})
        row: dict[str, Any] = {"n": r["n"], "over_cap": bool(plan.get("over_cap") or check.get("over_cap"))}
        if not plan.get("over_cap"):
            row["items"] = sum(plan["items"].values())
            row["load_s"], row["plan_s"], row["peak"] = plan["load_s"], plan["plan_s"], plan["plan_peak_mib"]
            row["load_mib"] = plan["load_peak_mib"] - plan["baseline_mib"]
            row["whole_mib"] = plan["plan_peak_mib"] - plan["baseline_mib"]
            if "plan_traced_mib" in plan:
                row["load_traced"], row["plan_traced"] = plan["load_traced_mib"], plan["plan_traced_mib"]
                row["per_item"] = plan["plan_traced_mib"] * MIB / row["items"]
        if check and not check.get("over_cap"):
            row["validate_s"] = check["validate_s"]
            row["validate_mib"] = check["validate_peak_mib"] - check["baseline_mib"]
        rows.append(row)
    if trace:
        columns = [
            ("load, traced peak MiB", "load_traced", "{:.0f}"),
            ("plan, traced peak MiB", "plan_traced", "{:.1f}"),
            ("plan bytes per item", "per_item", "{:.0f}"),
        ]
    else:
        columns = [
            ("load s", "load_s", "{:.2f}"),
            ("plan s", "plan_s", "{:.2f}"),
            ("load MiB", "load_mib", "{:.0f}"),
            ("load+plan MiB", "whole_mib", "{:.0f}"),
            ("peak RSS MiB", "peak", "{:.0f}"),
        ]
    if validate:
        columns += [("validate s", "validate_s", "{:.2f}"), ("validate MiB", "validate_mib", "{:.0f}")]
    ratios = {key: _ratios(rows, key) for _, key, _ in columns}
    header = ["N seeds", "items planned", *(name for name, _, _ in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(rows):
        cells = [f"{row['n']:,}", f"{row['items']:,}" if "items" in row else "-"]
        for _, key, fmt in columns:
            if key not in row:
                cells.append("over the cap" if row["over_cap"] else "-")
                continue
            ratio = ratios[key][i] if key != "peak" else None
            cells.append(fmt.format(row[key]) + (f" ({ratio:.1f}x)" if ratio is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    what = (
        "tracemalloc peaks: loading's, and planning's above what the loaded recipe holds"
        if trace
        else "MiB: peak RSS above the child's RSS after imports; peak RSS: the child's own"
    )
    return "\n".join(lines) + f"\n\n{what}. (Nx): the figure over the previous N's (at 10x N: linear ~10x)."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000], help="seed counts")
    parser.add_argument("--format", choices=["yaml", "jsonl"], default="yaml", help="seeds file format")
    parser.add_argument("--no-validate", dest="validate", action="store_false", help="skip validate_recipe")
    parser.add_argument("--trace", action="store_true", help="planning's own memory, by tracemalloc")
    parser.add_argument("--max-gib", type=float, default=8.0, help="address space cap of each child")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "RECIPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        cap = int(args.max_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        mode, recipe = args.child[0], Path(args.child[1])
        print(json.dumps(child_plan(recipe, args.trace) if mode == "plan" else child_validate(recipe)))
        return 0
    results = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="synthgen-plan-") as tmp:
            recipe = write_inputs(Path(tmp), n, args.format)
            size = sum(p.stat().st_size for p in Path(tmp).glob("seeds.*")) / MIB
            result: dict[str, Any] = {"n": n, "format": args.format, "seeds_mib": size}
            result["plan"] = measure("plan", recipe, args.max_gib, args.trace)
            if args.validate:
                result["validate"] = measure("validate", recipe, args.max_gib)
            results.append(result)
            print(
                f"N={n} ({size:.1f} MiB of {args.format}): {json.dumps(result)}", file=sys.stderr, flush=True
            )
    steps = "steps: dialogues, prefs, qa_prefs"
    print(f"### Planning, {args.format} seeds over {len(TOPICS)} topics ({steps})\n")
    print(table(results, validate=args.validate, trace=args.trace))
    if args.json:
        payload = {"date": time.strftime("%Y-%m-%d %H:%M"), "trace": args.trace, "results": results}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
