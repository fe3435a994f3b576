"""Dataset metrics on hand-built RUN_DIRs whose answers are known: a planted near duplicate is found, an
unused seed is reported, distinct-n matches a hand count, accented Spanish tokens stay whole, and the
summary the card embeds is plain JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import pytest

from synthgen.errors import ConfigError
from synthgen.pipeline.runner import RunResult, StepCounts
from synthgen.records import DialogueRow, PreferenceRow, prompt_id
from synthgen.reports.metrics import distinct_n, distribution, run_metrics, shingle_diversity

SYSTEM = "Eres el asistente virtual de la Facultad de Ciencias."

# n = 48 tokens; the copy differs in its last word only: 3-shingle Jaccard (n-3)/(n-1) = 45/47 = 0.96 >= 0.85
PLANTED = (
    "Hola, soy estudiante de primer curso del grado en Biología y quería saber qué documentos tengo que "
    "presentar para solicitar la beca del ministerio si mi familia cambió de domicilio durante el curso "
    "pasado y ahora vivimos en otra comunidad autónoma bastante lejos de aquí y muy distinta"
)
PLANTED_COPY = PLANTED.rsplit(" ", 1)[0] + " diferente"


def dialogue(
    dialogue_id: str,
    seed_ids: Sequence[str],
    topic: str,
    turns: Sequence[tuple[str, str]],
    split: str = "train",
) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}]
    for user, assistant in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    row = {
        "messages": messages,
        "prompt_id": prompt_id(turns[0][0]),
        "dialogue_id": dialogue_id,
        "seed_ids": list(seed_ids),
        "topic": topic,
        "persona": "primer-curso",
        "generator": "dialogue",
        "model": "gpt-4o-test",
    }
    DialogueRow.model_validate(row)
    return {**row, "split": split}


def pair(
    seed_ids: Sequence[str],
    topic: str,
    question: str,
    chosen: tuple[str, float, str],
    rejected: tuple[str, float, str],
    split: str = "train",
) -> dict[str, Any]:
    prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    row = {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen[0]}],
        "rejected": [{"role": "assistant", "content": rejected[0]}],
        "score_chosen": chosen[1],
        "score_rejected": rejected[1],
        "prompt_id": prompt_id(prompt),
        "seed_ids": list(seed_ids),
        "topic": topic,
        "candidates": [
            {"model": "gpt-4o-test", "variant": v, "content": c, "score": s, "rationale": r}
            for v, (c, s, r) in (("grounded", chosen), ("ungrounded", rejected))
        ],
        "judge_model": "judge-test",
        "generator": "preference",
    }
    PreferenceRow.model_validate(row)
    return {**row, "split": split}


def seed(seed_id: str, topic: str, split: str = "train", language: str = "es") -> dict[str, Any]:
    return {
        "id": seed_id,
        "topic": topic,
        "question": f"Pregunta sobre {topic}",
        "answer": f"Respuesta sobre {topic}.",
        "language": language,
        "source": {"document": "normativa.md", "article": "Art. 1"},
        "tags": [topic],
        "split": split,
    }


def run_result(steps: dict[str, StepCounts], *, cost: float = 0.0) -> dict[str, Any]:
    total = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0, "cost_usd": cost}
    for counts in steps.values():
        for key in total:
            total[key] += counts.usage.get(key, 0)
    total["total_tokens"] = total["prompt_tokens"] + total["completion_tokens"]
    result = RunResult(
        run_dir="ignored",
        recipe="fixture",
        fingerprint="0" * 64,
        offline=False,
        steps=steps,
        usage={"by_model": {}, "total": total, "cache_hits": 3, "cached_by_model": {}, "unpriced_models": []},
        cost_usd=cost,
        usage_this_run={
            "by_model": {},
            "total": total,
            "cache_hits": 3,
            "cached_by_model": {},
            "unpriced_models": [],
        },
        seconds=1.0,
        splits={"train": 3, "test": 1},
        prompts={},
        versions={},
        response_models=["gpt-4o-test"],
        token_counter="test",
        budget={"max_usd": None, "exhausted": False},
        complete=True,
    )
    return result.to_json()


def make_run_dir(
    root: Path,
    *,
    seeds: Sequence[dict[str, Any]],
    sft: Sequence[dict[str, Any]] = (),
    prefs: Sequence[dict[str, Any]] = (),
    result: dict[str, Any] | None = None,
    rejected: Sequence[dict[str, Any]] = (),
) -> Path:
    """A RUN_DIR in the runner's layout: parquet per config and split, run.json, .synthgen reports."""
    datasets.disable_progress_bars()

    def write(rows: Sequence[dict[str, Any]], config: str, split: str) -> None:
        (root / "data" / config).mkdir(parents=True, exist_ok=True)
        path = root / "data" / config / f"{split}-00000-of-00001.parquet"
        datasets.Dataset.from_list(list(rows)).to_parquet(str(path))

    for config, rows in (("sft", sft), ("prefs", prefs)):
        for split in ("train", "test"):
            chosen = [{k: v for k, v in r.items() if k != "split"} for r in rows if r["split"] == split]
            if chosen:
                write(chosen, config, split)
    write(seeds, "seeds", "train")  # as the runner does: one file, each seed with its split
    steps = {"dialogues": StepCounts("dialogue", "1", "sft", items=len(sft), ok=len(sft), rows=len(sft))}
    result = result or run_result(steps)
    (root / "run.json").write_text(json.dumps(result), encoding="utf-8")
    (root / ".synthgen").mkdir(exist_ok=True)
    with (root / ".synthgen" / "rejected.jsonl").open("w", encoding="utf-8") as f:
        for record in rejected:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return root


def fixture_rows() -> dict[str, Any]:
    """Four seeds: s1 and s2 used, s3 only shown as a related seed, s4 never touched."""
    seeds = [seed("s1", "matricula"), seed("s2", "becas"), seed("s3", "becas", "test"), seed("s4", "titulos")]
    answer = "La beca del ministerio se solicita en la sede electrónica antes del 15 de octubre."
    sft = [
        dialogue(
            "d1",
            ["s1"],
            "matricula",
            [
                (
                    "¿Cuándo es el plazo de matrícula para los estudiantes de continuación?",
                    "El plazo de matrícula ordinaria va del 28 de julio al 12 de septiembre por la sede.",
                ),
                (
                    "Vale, gracias.",
                    "De nada; para cualquier otra duda, escribe a la Secretaría de la Facultad.",
                ),
            ],
        ),
        dialogue("d2", ["s2"], "becas", [(PLANTED, answer)]),
        dialogue("d3", ["s2", "s3"], "becas", [(PLANTED_COPY, answer)], split="test"),
        dialogue(
            "d4",
            ["s1"],
            "matricula",
            [
                (
                    "Could you please tell me when the enrolment period for continuing students starts?",
                    "La automatrícula de los estudiantes de continuación empieza el 28 de julio en la sede.",
                )
            ],
        ),
    ]
    good = "Puedes ampliar la matrícula del 3 al 14 de febrero desde la sede electrónica de la universidad."
    bad = "No dispongo de esa información; te recomiendo consultarlo con la Secretaría de la Facultad."
    prefs = [
        pair(
            ["s1"],
            "matricula",
            "¿Puedo ampliar la matrícula?",
            (good, 8.0, "Fiel a los hechos."),
            (bad, 2.0, "Evasiva."),
        ),
        pair(
            ["s1"],
            "matricula",
            "¿Hasta cuándo puedo cambiar de grupo?",
            (
                "El cambio de grupo se pide en la Secretaría durante la primera semana del curso.",
                6.0,
                "Correcta.",
            ),
            (
                "Los cambios de grupo se solicitan en la Secretaría de la Facultad durante septiembre.",
                6.0,
                "Igual.",
            ),
        ),
        pair(
            ["s2"],
            "becas",
            "¿Dónde pido la beca?",
            (
                "La solicitud de beca se presenta en la sede electrónica del ministerio antes de octubre.",
                5.0,
                "Vaga.",
            ),
            (
                "Se pide en la página del ministerio de educación durante el plazo que fija la convocatoria.",
                7.0,
                "Mejor.",
            ),
            split="test",
        ),
    ]
    return {"seeds": seeds, "sft": sft, "prefs": prefs}


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rows = fixture_rows()
    steps = {
        "dialogues": StepCounts(
            "dialogue", "1", "sft", items=6, ok=4, failed=1, rejected=1, rows=4, rows_rejected=1,
            failures={"timeout": 1}, rejections={"role_flip": 1}, seconds=2.0,
            usage={"requests": 10, "prompt_tokens": 3000, "completion_tokens": 1000, "cost_usd": 0.02,
                   "total_tokens": 4000},
        ),
        "prefs": StepCounts(
            "preference", "1", "prefs", items=3, ok=3, rows=3, seconds=1.0,
            usage={"requests": 12, "prompt_tokens": 5000, "completion_tokens": 400, "cost_usd": 0.01,
                   "total_tokens": 5400},
        ),
    }  # fmt: skip
    rejected = [
        {
            "step": "dialogues",
            "item": "s1/2",
            "reason": "role_flip",
            "detail": "messages[1] (user) says 'soy el asistente'",
        }
    ]
    root = make_run_dir(
        tmp_path_factory.mktemp("run"), **rows, result=run_result(steps, cost=0.03), rejected=rejected
    )
    return run_metrics(root)


def test_summary_is_plain_json(metrics: dict[str, Any]) -> None:
    """The card embeds it: json round-trips it unchanged (no numpy scalars, tuples or sets)."""
    assert json.loads(json.dumps(metrics)) == metrics
    assert metrics["rows"] == {
        "sft": 4,
        "prefs": 3,
        "seeds": 4,
        "splits": {
            "sft": {"train": 3, "test": 1},
            "prefs": {"train": 2, "test": 1},
            "seeds": {"train": 3, "test": 1},
        },
    }


def test_unused_seed_is_reported(metrics: dict[str, Any]) -> None:
    coverage = metrics["coverage"]
    assert coverage["unused_seeds"] == ["s3", "s4"]  # s3 was only shown as a related seed
    assert (coverage["seeds"], coverage["used"]) == (4, 2)
    per_seed = coverage["per_seed"]
    assert per_seed["s1"] == {"topic": "matricula", "split": "train", "sft": 2, "prefs": 2, "related": 0}
    assert per_seed["s2"] == {"topic": "becas", "split": "train", "sft": 2, "prefs": 1, "related": 0}
    assert per_seed["s3"] == {"topic": "becas", "split": "test", "sft": 0, "prefs": 0, "related": 1}
    assert per_seed["s4"] == {"topic": "titulos", "split": "train", "sft": 0, "prefs": 0, "related": 0}
    assert coverage["topics"] == {
        "becas": {"seeds": 2, "unused": 1, "sft": 2, "prefs": 1},
        "matricula": {"seeds": 1, "unused": 0, "sft": 2, "prefs": 2},
        "titulos": {"seeds": 1, "unused": 1, "sft": 0, "prefs": 0},
    }
    assert coverage["rows_per_seed"]["sft"]["histogram"]["counts"] == [2, 0, 2]  # s3, s4: 0; s1, s2: 2


def test_planted_near_duplicate_is_found(metrics: dict[str, Any]) -> None:
    near = metrics["diversity"]["near_duplicates"]
    assert near["sft"]["flagged"] == 1 and near["sft"]["rate"] == pytest.approx(1 / 4)
    assert near["sft"]["reasons"] == {"near_duplicate": 1}
    [example] = near["sft"]["examples"]
    assert "d3" in example["row"] and "d2" in example["detail"] and "(Jaccard 0.96)" in example["detail"]
    assert near["prefs"]["flagged"] == 0 and near["prefs"]["rows"] == 3


def test_language_rate_counts_turns_it_can_tell(metrics: dict[str, Any]) -> None:
    """'Vale, gracias.' is too short to tell; the English question is the one miss among user turns."""
    language = metrics["language"]
    assert language["expected"] == "es"
    assert language["by_role"] == {"user": 0.75, "assistant": 1.0, "chosen": 1.0}
    assert language["counts"]["en"] == 1 and language["undetermined"] == 1
    assert language["rate"] == round(
        11 / 12, 4
    )  # 4 user + 5 assistant + 3 chosen turns decided, 1 in English


def test_judge_scores_and_margins(metrics: dict[str, Any]) -> None:
    judge = metrics["judge"]
    assert judge["pairs"] == 3 and judge["judge_models"] == ["judge-test"]
    assert judge["not_preferred"] == 2  # one tie (6 vs 6), one inversion (5 vs 7)
    assert (judge["margin"]["min"], judge["margin"]["p50"], judge["margin"]["max"]) == (-2, 0, 6)
    assert judge["score_chosen"]["histogram"]["edges"] == judge["score_rejected"]["histogram"]["edges"]
    assert sum(judge["score_chosen"]["histogram"]["counts"]) == 3
    assert judge["candidate_score"]["n"] == 6


def test_turns_and_token_lengths(metrics: dict[str, Any]) -> None:
    from synthgen.llm.usage import count_tokens

    lengths = metrics["lengths"]
    assert lengths["user_turns_per_dialogue"]["histogram"] == {
        "edges": [1.0, 2.0, 3.0],
        "counts": [3, 1],
        "unit": True,
    }
    assert lengths["tokens"]["user_turn"]["n"] == 5 and lengths["tokens"]["assistant_turn"]["n"] == 5
    assert lengths["tokens"]["user_turn"]["min"] == count_tokens("Vale, gracias.")
    assert lengths["tokens"]["chosen"]["n"] == 3


def test_failures_rejections_and_usage(metrics: dict[str, Any]) -> None:
    assert metrics["failures"]["dialogues"] == {"timeout": {"count": 1, "example": None}}  # no failures.jsonl
    assert metrics["rejections"]["dialogues"]["role_flip"] == {
        "count": 1,
        "example": "messages[1] (user) says 'soy el asistente'",
    }
    usage = metrics["usage"]
    assert (
        usage["steps"]["dialogues"]["total_tokens"] == 4000
        and usage["steps"]["dialogues"]["tokens_per_row"] == 1000
    )
    assert usage["steps"]["prefs"]["tokens_per_row"] == 1800 and usage["cost_usd"] == 0.03
    assert usage["total"]["total_tokens"] == 9400
    assert metrics["steps"]["dialogues"]["failed"] == 1


def test_distinct_n_by_hand() -> None:
    text = "El gato y el perro y el gato"  # 8 tokens, 4 types; 7 bigrams, 5 types
    assert distinct_n([text], 1) == 0.5
    assert distinct_n([text], 2) == round(5 / 7, 4)
    assert distinct_n(["a b", "b a"], 2) == 1.0  # n-grams never cross texts ("b b" would)
    assert distinct_n([], 1) is None and distinct_n(["solo"], 2) is None


def test_accented_spanish_tokens_stay_whole(tmp_path: Path) -> None:
    """matrícula and matricula are two words, MATRÍCULA (or a decomposed í) the first one again; an
    ASCII tokenizer would cut "matrícula" into "matr" + "cula" and count more, different n-grams."""
    turns = [
        ("El gato y el perro y el gato", "Sí."),
        ("Matrícula, matricula y MATRI\u0301CULA", "Así es."),
    ]
    root = make_run_dir(tmp_path, seeds=[seed("s1", "x")], sft=[dialogue("d1", ["s1"], "x", turns)])
    user = run_metrics(root)["diversity"]["user"]
    # unigrams: 8 + 4 tokens, types el gato y perro matrícula matricula = 6
    # bigrams: 7 (5 types) + 3 (matrícula matricula, matricula y, y matrícula: 3 new types) = 10, 8 types
    assert (user["turns"], user["distinct_1"], user["distinct_2"]) == (2, 0.5, 0.8)


def test_shingle_diversity_by_hand() -> None:
    assert shingle_diversity(["a b c d", "a b c d"]) == 0.0
    assert shingle_diversity(["a b c d", "e f g h"]) == 1.0
    assert shingle_diversity(["a b c d", "b c d e"]) == round(2 / 3, 4)  # {abc, bcd} vs {bcd, cde}
    assert shingle_diversity(["uno"]) is None
    texts = [f"texto número {i} con palabras distintas {i * 7}" for i in range(600)]
    assert shingle_diversity(texts) == shingle_diversity(list(reversed(texts)))  # sample is order-free


def test_distribution_statistics() -> None:
    d = distribution([3, 1, 2, 2])
    assert (d["n"], d["min"], d["p50"], d["p90"], d["max"], d["mean"]) == (4, 1, 2, 3, 3, 2)
    assert d["histogram"] == {"edges": [1.0, 2.0, 3.0, 4.0], "counts": [1, 2, 1], "unit": True}
    wide = distribution([0.0, 9.5, 10.0, 37.0])
    assert wide["histogram"]["edges"][0] <= 0 and wide["histogram"]["edges"][-1] > 37
    assert sum(wide["histogram"]["counts"]) == 4 and not wide["histogram"]["unit"]
    assert distribution([]) == {"n": 0}


def test_missing_run_json_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no run\.json") as info:
        run_metrics(tmp_path)
    assert "synthgen run" in str(info.value)


def test_runner_counts_shape_is_what_metrics_read() -> None:
    """Guard: the fixture's run.json comes from the runner's own dataclasses, not a hand-copied dict."""
    counts = asdict(StepCounts("dialogue", "1", "sft"))
    assert {
        "items",
        "ok",
        "failed",
        "rejected",
        "not_started",
        "rows",
        "failures",
        "rejections",
        "usage",
    } <= set(counts)


def test_a_run_where_everything_failed(tmp_path: Path) -> None:
    """No sft or prefs files at all: every seed is unused, distributions are empty, nothing raises."""
    steps = {"dialogues": StepCounts("dialogue", "1", "sft", items=2, failed=2, failures={"auth": 2})}
    root = make_run_dir(tmp_path, seeds=[seed("s1", "x"), seed("s2", "y")], result=run_result(steps))
    metrics = run_metrics(root)
    assert metrics["coverage"]["unused_seeds"] == ["s1", "s2"] and metrics["rows"]["sft"] == 0
    assert metrics["lengths"]["tokens"]["dialogue"] == {"n": 0} and metrics["judge"]["pairs"] == 0
    assert metrics["diversity"]["user"]["distinct_1"] is None and metrics["language"]["rate"] is None
    assert metrics["failures"]["dialogues"] == {"auth": {"count": 2, "example": None}}
    assert json.loads(json.dumps(metrics)) == metrics

    from synthgen.reports.html import render_html
    from synthgen.reports.terminal import summary

    assert "unused seeds (2): s1, s2" in summary(root)
    assert render_html(root).count("<article") == 0
