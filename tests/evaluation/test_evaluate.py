"""``synthgen evaluate`` against a scripted judge: the summary's numbers equal hand-computed ones.

The judge is the loopback OpenAI server. Each candidate answer carries directives the responder reads
(``[score=8 claims=SC recall=SN decl=11 cov=correct]``), and the pairwise behaviour is scripted per
question (fair, position-biased, always tie, broken in one order), so every figure in the summary can be
derived by hand below: scores and their clustered bootstrap intervals, claim precision/recall and
contradictions, win rates with the swap rule and ties as half, order inconsistency, parse failures
(counted, not dropped), missing answers, near-duplicate paraphrases, and human calibration.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from synthgen.cli import main
from synthgen.errors import ConfigError, RecipeError
from synthgen.evaluation.candidates import AnswersSource, LocalSource
from synthgen.evaluation.evaluator import evaluate
from synthgen.evaluation.recipe import load_eval_recipe
from synthgen.evaluation.stats import cluster_bootstrap, weighted_kappa
from tests.servers.openai_server import OpenAIServer, ServerConfig

REPO = Path(__file__).resolve().parents[2]
KEY_ENV = "SYNTHGEN_TEST_EVAL_KEY"
SEEDS = {
    "m1": (
        "matricula",
        "¿Cuándo es la automatrícula de continuación?",
        "Del 28 de julio al 12 de septiembre.",
    ),
    "m2": ("matricula", "¿Cuántos créditos mínimos en segundo?", "Un mínimo de 48 ECTS y un máximo de 78."),
    "b1": ("becas", "¿Cuándo se pide la beca general?", "En la sede del ministerio hasta el 15 de mayo."),
    "b2": ("becas", "¿Puedo fraccionar el pago de la matrícula?", "Sí, en ocho plazos mensuales."),
}
SPLITS = {"m1": "train", "b1": "train", "m2": "test", "b2": "test"}
PARAPHRASES = {  # (seed, sample) -> the paraphraser's question
    ("m1", 0): "Oye, ¿en qué fechas me toca hacer la automatrícula este curso?",
    ("m1", 1): "Soy de tercero: ¿hasta qué día puedo matricularme por internet?",
    ("b1", 0): "¿Hay un plazo para solicitar la ayuda del ministerio?",
    ("b1", 1): "Hola, ¿cuándo se pide la beca general del ministerio este año?",  # = a training turn
}
TRAINING_TURN = PARAPHRASES[("b1", 1)]
PAIRWISE = {  # question -> how the judge compares
    PARAPHRASES[("m1", 1)]: "biased",  # always "A": the two orders disagree -> tie
    PARAPHRASES[("b1", 0)]: "tie",
    SEEDS["b2"][1]: "broken",  # invalid JSON when the bad answer comes first
}
GOOD = {
    "paraphrases:m1:0": "score=8 claims=SS recall=SN",
    "paraphrases:m1:1": "score=6 claims=SC recall=S",
    "paraphrases:b1:0": "score=9 claims= recall=NN",
    "heldout:m2": "score=7 claims=S recall=S",
    "heldout:b2": "score=5 claims=S recall=S",
    "out_of_scope:1": "decl=11",
    "out_of_scope:2": "decl=11",
    "real:1": "cov=correct",
    "real:2": "cov=correct",
}
BAD = {
    "paraphrases:m1:0": "score=3 claims=C recall=N",
    "paraphrases:m1:1": "score=6 claims=C recall=N",
    "paraphrases:b1:0": "score=2 claims=C recall=N",
    "heldout:m2": "score=4 claims=C recall=N",
    "heldout:b2": "BROKEN claims=C recall=N",  # its single grade never parses
    "out_of_scope:1": "decl=10",
    "out_of_scope:2": "decl=00",
    "real:1": "cov=incorrect",
    "real:2": "cov=declined",
}
CLAIM = {"S": "supported", "C": "contradicted", "N": "not_in_reference"}


def block(text: str, tag: str) -> str:
    found = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, re.S)
    return found.group(1).strip() if found else ""


def directive(answer: str, name: str) -> str:
    found = re.search(rf"{name}=(\S*?)[\]\s]", answer + " ")
    return found.group(1) if found else ""


def judge_responder(body: dict[str, Any]) -> str:
    """The scripted judge: verdicts read from the answers' directives (see the module docstring)."""
    text = body["messages"][0]["content"]
    schema = body["response_format"]["json_schema"]["name"]
    if schema == "Paraphrase":
        seed = next(k for k, v in SEEDS.items() if v[1] == block(text, "seed_question"))
        return json.dumps({"question": PARAPHRASES[(seed, body.get("seed", 0))]})
    answer = block(text, "answer")
    if schema == "SingleGrade":
        score = directive(answer, "score")
        return json.dumps({"rationale": "r", "score": int(score)}) if score else "not json {"
    if schema == "ClaimCheck":
        which = "recall" if "RESPUESTA OFICIAL" in text else "claims"
        return json.dumps({"claims": [{"claim": c, "verdict": CLAIM[c]} for c in directive(answer, which)]})
    if schema == "AbstentionVerdict":
        declined, referred = directive(answer, "decl")
        return json.dumps({"rationale": "r", "declined": declined == "1", "referred": referred == "1"})
    if schema == "CoverageVerdict":
        return json.dumps({"rationale": "r", "verdict": directive(answer, "cov")})
    assert schema == "PairwiseVerdict"
    a, b = block(text, "answer_a"), block(text, "answer_b")
    question = block(text, "conversation").removeprefix("[user]").strip()
    style = PAIRWISE.get(question, "fair")
    if style == "broken" and "mala" in a:
        return "still not json"
    if style in ("biased", "tie"):
        return json.dumps({"rationale": "r", "winner": "A" if style == "biased" else "tie"})
    sa, sb = int(directive(a, "score") or 0), int(directive(b, "score") or 0)
    return json.dumps({"rationale": "r", "winner": "A" if sa > sb else "B" if sb > sa else "tie"})


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with OpenAIServer(ServerConfig(responder=judge_responder)) as srv:
        yield srv


def write_recipe(root: Path, url: str) -> Path:
    seeds = [{"id": k, "topic": t, "question": q, "answer": a} for k, (t, q, a) in SEEDS.items()]
    (root / "seeds.yaml").write_text(yaml.safe_dump({"seeds": seeds}, allow_unicode=True), encoding="utf-8")
    profile = {"base_url": url, "api_key_env": KEY_ENV, "temperature": 0.0}
    recipe = {
        "name": "tiny",
        "language": "es",
        "seeds": "seeds.yaml",
        "system_prompt": "Eres el asistente de la Facultad de Ciencias.",
        "models": {
            "student": {"model": "student-model", **profile},
            "assistant": {"model": "assistant-model", **profile},
            "judge": {"model": "labeller-model", **profile},
        },
        "steps": [
            {
                "name": "dialogues",
                "generator": "dialogue",
                "config": {"student": "student", "assistant": "assistant"},
            },
            {"name": "prefs", "generator": "preference", "from": "dialogues", "config": {"judge": "judge"}},
        ],
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return root / "recipe.yaml"


def write_run_dir(root: Path, labeller: str = "labeller-model") -> Path:
    run_dir = root / "run"
    (run_dir / ".synthgen").mkdir(parents=True)
    (run_dir / ".synthgen" / "splits.json").write_text(json.dumps(SPLITS))
    (run_dir / "data" / "sft").mkdir(parents=True)
    (run_dir / "data" / "prefs").mkdir(parents=True)
    messages = [
        {"role": "system", "content": "Eres el asistente."},
        {"role": "user", "content": TRAINING_TURN},
        {"role": "assistant", "content": "En la sede del ministerio hasta el 15 de mayo."},
    ]
    pd.DataFrame([{"messages": messages}]).to_parquet(
        run_dir / "data" / "sft" / "train-00000-of-00001.parquet"
    )
    pd.DataFrame([{"prompt": messages[:2], "judge_model": labeller}]).to_parquet(
        run_dir / "data" / "prefs" / "train-00000-of-00001.parquet"
    )
    return run_dir


def write_answers(root: Path) -> tuple[Path, Path]:
    good, bad = root / "good.jsonl", root / "bad.jsonl"
    rows = [{"question_id": q, "answer": f"Respuesta buena {q} [{d}]"} for q, d in GOOD.items()]
    rows += [
        {"question_id": f"{q}#2", "answer": "Seguimiento bueno [score=7]"}
        for q in GOOD
        if ":" in q and q[0] in "ph"
    ]
    good.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    rows = [{"question_id": q, "answer": f"Respuesta mala {q} [{d}]"} for q, d in BAD.items()]
    bad.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return good, bad


def write_eval(root: Path, url: str, **overrides: Any) -> Path:
    write_recipe(root, url)
    run_dir = write_run_dir(root)
    good, bad = write_answers(root)
    (root / "oos.txt").write_text("# fuera de ámbito\n¿Quién ganó el partido?\n¿Qué tiempo hará mañana?\n")
    (root / "real.csv").write_text(
        "question,topic\n"
        "¿Qué día abre la automatrícula para los de segundo?,matricula\n"
        "¿Cuándo se pide la beca general?,becas\n"  # a seed question: flagged
        "¿Qué día abre la automatrícula para los de segundo?,matricula\n",  # a repeat: dropped
        encoding="utf-8",
    )
    data: dict[str, Any] = {
        "name": "tiny-eval",
        "recipe": "recipe.yaml",
        "run_dir": str(run_dir),
        "seed": 7,
        "judge": "evaljudge",
        "models": {
            "evaljudge": {
                "model": "other-judge",
                "base_url": url,
                "api_key_env": KEY_ENV,
                "temperature": 0.0,
            },
            "paraphraser": {"model": "para-model", "base_url": url, "api_key_env": KEY_ENV, "seed": 0},
        },
        "candidates": [{"name": "good", "answers": str(good)}, {"name": "bad", "answers": str(bad)}],
        "sets": {
            "paraphrases": {"profile": "paraphraser", "per_seed": 2},
            "heldout": {},
            "out_of_scope": {"path": "oos.txt"},
            "real": {"path": "real.csv"},
        },
        "modes": {"follow_ups": ["¿Y dónde lo presento?"]},
        "bootstrap": {"samples": 2000},
        **overrides,
    }
    path = root / "eval.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def row(summary: dict[str, Any], candidate: str, set_name: str, topic: str = "all") -> dict[str, Any]:
    return next(
        r for r in summary["rows"] if (r["candidate"], r["set"], r["topic"]) == (candidate, set_name, topic)
    )


def pairwise(summary: dict[str, Any], set_name: str, topic: str = "all") -> dict[str, Any]:
    return next(p for p in summary["pairwise"] if (p["set"], p["topic"]) == (set_name, topic))


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default), written out."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def straightforward_bootstrap(
    values: list[float], clusters: list[str], samples: int, seed: int
) -> tuple[float, float, float]:
    """An independent clustered bootstrap: the documented draws, pooled with plain loops."""
    names = sorted(set(clusters))
    members = {c: [v for v, k in zip(values, clusters, strict=True) if k == c] for c in names}
    draws = np.random.default_rng(seed).integers(0, len(names), size=(samples, len(names)))
    means = []
    for draw in draws.tolist():
        pooled = [v for i in draw for v in members[names[i]]]
        means.append(sum(pooled) / len(pooled))
    return sum(values) / len(values), percentile(means, 0.025), percentile(means, 0.975)


@pytest.fixture
def evaluated(server: OpenAIServer, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    path = write_eval(tmp_path, server.url, report={"min_topic_questions": 2})  # matricula: 2 questions
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["evaluate", str(path), "--out", str(out), "--export-labels", str(tmp_path / "labels.csv")]
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "summary.json").read_text(encoding="utf-8")), out


def test_question_sets_drop_overlap_flag_seed_repeats_and_drop_real_repeats(
    evaluated: tuple[dict[str, Any], Path],
) -> None:
    summary, out = evaluated
    sets = summary["sets"]
    assert {k: (v["questions"], v["clusters"], v["flagged"], v["dropped"]) for k, v in sets.items()} == {
        "paraphrases": (3, 2, 0, 1),  # b1's second paraphrase is a training turn: dropped
        "heldout": (2, 2, 0, 0),
        "out_of_scope": (2, 2, 0, 0),
        "real": (2, 2, 1, 1),  # the seed question is flagged, the repeat dropped
    }
    questions = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    dropped = {q["id"]: q["dropped"] for q in questions if "dropped" in q}
    assert dropped["paraphrases:b1:1"].startswith("near-duplicate of a training turn")
    assert dropped["real:3"] == "repeat of real:1"
    kept = {q["id"]: q for q in questions if "dropped" not in q}
    assert kept["real:2"]["flags"] == [  # and a training turn asks it word for word
        "near-duplicate of seed b1",
        "contaminated: 100% of its 8-grams are in the training rows",
    ]
    assert kept["heldout:m2"]["reference"] == SEEDS["m2"][2] and kept["heldout:m2"]["cluster"] == "m2"
    assert kept["paraphrases:m1:1"]["cluster"] == "m1" and kept["paraphrases:m1:1"]["follow_up"]


def test_scores_and_clustered_intervals_equal_hand_computed(evaluated: tuple[dict[str, Any], Path]) -> None:
    summary, _ = evaluated
    good = row(summary, "good", "paraphrases")["metrics"]["score"]
    # clusters m1 = [8, 6], b1 = [9]; resampling two clusters gives 9 (b1 b1), 23/3 (b1 m1) or 7 (m1 m1),
    # each extreme with probability 1/4: the 95% interval is [7, 9] (resampling questions would reach 6)
    assert good["value"] == pytest.approx(23 / 3, abs=1e-6)
    assert (good["low"], good["high"], good["n"], good["clusters"]) == (7.0, 9.0, 3, 2)
    bad = row(summary, "bad", "paraphrases")["metrics"]["score"]
    expected = straightforward_bootstrap([3.0, 6.0, 2.0], ["m1", "m1", "b1"], samples=2000, seed=7)
    assert (bad["value"], bad["low"], bad["high"]) == pytest.approx(expected, abs=1e-6)
    held = row(summary, "good", "heldout")["metrics"]
    assert held["score"]["value"] == pytest.approx(6.0)
    assert held["multi_turn_score"]["value"] == pytest.approx(7.0) and held["multi_turn_score"]["n"] == 2
    per_topic = row(summary, "good", "paraphrases", "becas")["metrics"]["score"]
    assert (per_topic["value"], per_topic["n"]) == (9.0, 1)


def test_claim_precision_recall_and_contradictions(evaluated: tuple[dict[str, Any], Path]) -> None:
    summary, _ = evaluated
    good = row(summary, "good", "paraphrases")["metrics"]
    # precision: SS -> 1, SC -> 1/2, no claims -> none; recall: SN -> 1/2, S -> 1, NN -> 0
    assert good["claim_precision"]["value"] == pytest.approx(0.75) and good["claim_precision"]["n"] == 2
    assert good["contradiction_rate"]["value"] == pytest.approx(0.25)
    assert good["claim_recall"]["value"] == pytest.approx(0.5) and good["claim_recall"]["n"] == 3
    bad = row(summary, "bad", "heldout")["metrics"]
    assert (
        bad["claim_precision"]["value"],
        bad["contradiction_rate"]["value"],
        bad["claim_recall"]["value"],
    ) == (0, 1, 0)


def test_abstention_and_coverage_rates(evaluated: tuple[dict[str, Any], Path]) -> None:
    summary, _ = evaluated
    assert row(summary, "good", "out_of_scope")["metrics"]["abstained"]["value"] == 1.0
    bad = row(summary, "bad", "out_of_scope")["metrics"]
    assert (bad["abstained"]["value"], bad["declined"]["value"]) == (
        0.0,
        0.5,
    )  # declined once, never referred
    real = row(summary, "bad", "real")["metrics"]
    assert (real["correct"]["value"], real["incorrect"]["value"], real["declined"]["value"]) == (
        0.0,
        0.5,
        0.5,
    )
    assert row(summary, "good", "real", "becas")["metrics"]["correct"]["value"] == 1.0


def test_win_rates_swap_rule_ties_as_half_and_order_inconsistency(
    evaluated: tuple[dict[str, Any], Path],
) -> None:
    summary, _ = evaluated
    para = pairwise(summary, "paraphrases")
    assert (para["a"], para["b"]) == ("good", "bad")
    # fair judge: good wins both orders (1); biased judge: A then A = good, then bad -> tie (0.5);
    # tie both orders (0.5). Ties as half: (1 + 0.5 + 0.5) / 3
    assert para["win_rate"]["value"] == pytest.approx(2 / 3)
    assert (para["comparisons"], para["ties"], para["failed"]) == (3, 2, 0)
    assert para["order_inconsistency"] == pytest.approx(1 / 3)
    # from the single scores: 8 > 3, 6 = 6, 9 > 2
    assert para["score_win_rate"]["value"] == pytest.approx(2.5 / 3)
    held = pairwise(summary, "heldout")
    assert (held["comparisons"], held["failed"], held["win_rate"]["value"]) == (1, 1, 1.0)


def test_parse_failures_and_missing_answers_are_counted_not_dropped(
    evaluated: tuple[dict[str, Any], Path],
) -> None:
    summary, out = evaluated
    failures = summary["failures"]
    # good: 5 seed questions x (single, claims, recall, follow-up) + 2 abstention + 2 coverage = 24;
    # bad: no follow-up answers: 5 x 3 + 4 = 19; pairwise: 9 questions x 2 orders
    assert failures["calls"] == 24 + 19 + 18
    assert failures["parse_failures"] == 2  # bad's single grade on b2, and one order of b2's comparison
    assert (
        failures["by_mode"]["single"]["parse_failures"]
        == failures["by_mode"]["pairwise"]["parse_failures"]
        == 1
    )
    assert failures["answer_failures"] == 5  # bad has no answers to the follow-ups
    judgments = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == failures["calls"]
    broken = [j for j in judgments if j["parse_failure"]]
    assert {(j["mode"], j["question_id"], j["failure"]) for j in broken} == {
        ("single", "heldout:b2", "invalid_json"),
        ("pairwise", "heldout:b2", "invalid_json"),
    }
    assert row(summary, "bad", "heldout")["failed"] == 1
    assert row(summary, "bad", "heldout")["metrics"]["score"]["n"] == 1  # only m2's grade counts
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert sum(a["failure"] == "missing_answer" for a in answers) == 5
    markdown = (out / "summary.md").read_text(encoding="utf-8")
    assert "parse failures: 2" in markdown and "### good" in markdown and "| matricula |" in markdown
    assert "7.67 [7.00, 9.00]" in markdown
    assert not summary["warnings"]


def test_recipe_seeds_missing_from_the_run_dir_splits_are_reported(
    server: OpenAIServer, tmp_path: Path
) -> None:
    path = write_eval(tmp_path, server.url, sets={"heldout": {}}, modes={"claims": False, "pairwise": False})
    (tmp_path / "run" / ".synthgen" / "splits.json").write_text(json.dumps({"m1": "train", "m2": "test"}))
    result = evaluate(path, out=tmp_path / "o")
    assert result.summary["sets"]["heldout"]["questions"] == 1
    assert result.warnings == [
        f"2 seed(s) of the recipe are not in {tmp_path / 'run'}'s splits (e.g. b1): the recipe changed since "
        "the run; they are in no question set"
    ]


def test_calibration_against_a_filled_sheet(
    server: OpenAIServer, evaluated: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    sheet = list(csv.DictReader((tmp_path / "labels.csv").open(encoding="utf-8-sig")))
    assert list(sheet[0]) == [
        "item_id", "set", "question", "reference", "answer_a", "answer_b",
        "human_score_a", "human_score_b", "human_preference",
    ]  # fmt: skip
    assert len(sheet) == 9 and all("good" not in r["answer_a"] + r["answer_b"] for r in sheet)
    assert {("buena" in r["answer_a"]) for r in sheet} == {True, False}  # the order is randomised
    human_scores = {  # (question id, good?) -> the human's score: the judge's, except bad on m1:1
        ("paraphrases:m1:0", True): 8, ("paraphrases:m1:0", False): 3,
        ("paraphrases:m1:1", True): 6, ("paraphrases:m1:1", False): 4,
        ("paraphrases:b1:0", True): 9, ("paraphrases:b1:0", False): 2,
        ("heldout:m2", True): 7, ("heldout:m2", False): 4,
        ("heldout:b2", True): 5, ("heldout:b2", False): 3,  # the judge has no score for bad here
    }  # fmt: skip
    for r in sheet:
        qid = re.search(r"Respuesta \w+ (\S+) \[", r["answer_a"]).group(1)  # type: ignore[union-attr]
        a_good = "buena" in r["answer_a"]
        r["human_score_a"] = str(human_scores.get((qid, a_good), ""))
        r["human_score_b"] = str(human_scores.get((qid, not a_good), ""))
        r["human_preference"] = {"out_of_scope:2": "tie", "real:2": ""}.get(qid, "a" if a_good else "b")
    filled = tmp_path / "filled.csv"
    with filled.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(sheet[0]))
        writer.writeheader()
        writer.writerows(sheet)
    path = tmp_path / "eval.yaml"
    result = CliRunner().invoke(
        main, ["evaluate", str(path), "--out", str(tmp_path / "cal"), "--calibrate", str(filled)]
    )
    assert result.exit_code == 0, result.output
    calibration = json.loads((tmp_path / "cal" / "summary.json").read_text())["calibration"]
    # judge (good = x): m1:0 good, m1:1 tie (inconsistent), b1:0 tie, m2 good, b2 failed (left out),
    # out-of-scope and real: no scores -> tie. Human: good everywhere, tie on oos:2, nothing on real:2.
    assert calibration["rows"] == 9 and calibration["unknown_items"] == 0
    assert calibration["preference"] == {
        "n": 7,
        "accuracy_with_ties": pytest.approx(3 / 7, abs=1e-6),  # m1:0, m2, oos:2
        "n_without_ties": 2,
        "accuracy_without_ties": 1.0,  # m1:0, m2
    }
    assert calibration["judge_order_consistency"] == {"n": 7, "rate": pytest.approx(6 / 7, abs=1e-6)}
    human = [8, 3, 6, 4, 9, 2, 7, 4, 5]
    judge = [8, 3, 6, 6, 9, 2, 7, 4, 5]
    assert calibration["scores"]["n"] == 9
    assert calibration["scores"]["kappa_linear"] == pytest.approx(matrix_kappa(human, judge, 1), abs=1e-6)
    assert calibration["scores"]["kappa_quadratic"] == pytest.approx(matrix_kappa(human, judge, 2), abs=1e-6)
    assert "calibration: preference agreement" in result.output
    rerun = [json.loads(line) for line in (tmp_path / "cal" / "judgments.jsonl").read_text().splitlines()]
    assert all(j["cached"] for j in rerun if j["verdict"] is not None)  # the second run paid for nothing


def matrix_kappa(a: list[int], b: list[int], power: int) -> float:
    """Textbook weighted kappa on the full 1-10 scale: weights (|i-j| / 9) ** power."""
    observed = np.zeros((10, 10))
    for x, y in zip(a, b, strict=True):
        observed[x - 1, y - 1] += 1
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    weights = np.array([[(abs(i - j) / 9) ** power for j in range(10)] for i in range(10)])
    return float(1 - (weights * observed).sum() / (weights * expected).sum())


def test_weighted_kappa_on_a_hand_computed_example() -> None:
    # pairs (1,1) (2,3) (3,3) (3,2); both raters' marginals (1/4, 1/4, 1/2).
    # linear: observed mean |d| = 1/2, expected = 7/8 -> 1 - 4/7 = 3/7
    # quadratic: observed mean d^2 = 1/2, expected = 11/8 -> 1 - 4/11 = 7/11
    a, b = [1, 2, 3, 3], [1, 3, 3, 2]
    assert weighted_kappa(a, b, weights="linear") == pytest.approx(3 / 7)
    assert weighted_kappa(a, b, weights="quadratic") == pytest.approx(7 / 11)
    assert weighted_kappa([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert weighted_kappa([5, 5], [5, 5]) is None  # no variation: undefined, not 1
    assert weighted_kappa([], []) is None


def test_cluster_bootstrap_resamples_clusters_not_questions() -> None:
    # one cluster of four 1s and one of a single 0: half the resamples draw one cluster twice, so the
    # interval spans [0, 1]; resampling the five questions independently would not reach 0 or 1.
    values, clusters = [1.0, 1.0, 1.0, 1.0, 0.0], ["a", "a", "a", "a", "b"]
    found = cluster_bootstrap(values, clusters, samples=1000, seed=1)
    assert found is not None
    assert (found.value, found.low, found.high, found.n, found.clusters) == (0.8, 0.0, 1.0, 5, 2)
    iid = cluster_bootstrap(values, ["q1", "q2", "q3", "q4", "q5"], samples=1000, seed=1)
    assert iid is not None and iid.low > 0.0 and iid.high == 1.0
    assert cluster_bootstrap(values, clusters, samples=1000, seed=1) == found  # fixed seed, same interval
    single = cluster_bootstrap([3.0, 5.0], ["s", "s"], samples=100, seed=0)
    assert single is not None and (single.low, single.high) == (4.0, 4.0)
    assert cluster_bootstrap([], [], seed=0) is None


def test_warns_when_the_judge_labelled_the_preference_pairs(server: OpenAIServer, tmp_path: Path) -> None:
    path = write_eval(tmp_path, server.url, judge="judge", sets={"heldout": {}}, modes={"claims": False})
    result = CliRunner().invoke(main, ["evaluate", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert (
        "warning: the judge labeller-model is the model that labelled the preference pairs" in result.stderr
    )
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert "another family" in summary["warnings"][0]
    assert "> **Warning:** the judge labeller-model" in (tmp_path / "o" / "summary.md").read_text()


def test_missing_run_dir_is_a_clear_error(server: OpenAIServer, tmp_path: Path) -> None:
    path = write_eval(tmp_path, server.url, run_dir="nowhere")
    result = CliRunner().invoke(main, ["evaluate", str(path)])
    assert result.exit_code == 2
    assert (
        "RUN_DIR not found" in result.stderr
        and "synthgen run" in result.stderr
        and "run_dir" in result.stderr
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"candidate": [{"name": "x", "answers": "good.jsonl"}]}, "did you mean 'candidates'"),
        ({"judge": "jduge"}, "judge: unknown model profile 'jduge'"),
        ({"candidates": [{"name": "x", "endpoint": "assistant", "answers": "good.jsonl"}]}, "exactly one of"),
        ({"candidates": [{"name": "x", "answers": "missing.jsonl"}]}, "candidates.0.answers: file not found"),
        ({"sets": {"heldout": {"max_question": 3}}}, "sets.heldout.max_question"),
        ({"bootstrap": {"confidence": 1.5}}, "bootstrap.confidence"),
    ],
)
def test_eval_recipe_errors_name_file_line_and_field(
    server: OpenAIServer, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = write_eval(tmp_path, server.url)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(change)
    if "candidate" in change:
        del data["candidates"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RecipeError) as failed:
        load_eval_recipe(path)
    assert message in str(failed.value) and str(path) in str(failed.value)
    assert re.search(r"eval\.yaml:\d+: ", str(failed.value))


def test_answers_file_errors_and_local_model_without_the_train_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "answers.jsonl"
    broken.write_text('{"question_id": "a", "answer": "x"}\n{"question": "b"}\n')
    with pytest.raises(ConfigError, match=r"answers\.jsonl:2: .*question_id"):
        AnswersSource("x", path=broken)
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # as if the train extra were missing
    with pytest.raises(ConfigError, match=r"synthgen\[train\]"):
        LocalSource("tuned", path=tmp_path, system_prompt="s").load()


def test_shipped_offline_demo_eval_recipe(tmp_path: Path) -> None:
    """recipes/offline-demo/eval.yaml works offline on a fresh install (no torch needed)."""
    from tests.tiny_model import make_run_dir

    ev = load_eval_recipe(REPO / "recipes" / "offline-demo" / "eval.yaml")
    assert [c.name for c in ev.candidates] == ["assistant", "weak"] and all(
        c.model is None for c in ev.candidates
    )
    assert ev.judge != "judge"  # the demo models good practice: not the judge that labelled the pairs
    assert (
        sum(1 for line in ev.sets.out_of_scope.path.read_text().splitlines() if line and line[0] != "#") >= 20
    )  # type: ignore[union-attr]
    ev.run_dir = make_run_dir(tmp_path, limit=4)
    ev.sets.paraphrases.max_seeds = 3  # type: ignore[union-attr]
    ev.bootstrap.samples = 200
    result = evaluate(ev, offline=True, out=tmp_path / "eval")
    summary = result.summary
    assert summary["failures"]["parse_failures"] == 0 and summary["failures"]["answer_failures"] == 0
    assert summary["sets"]["out_of_scope"]["questions"] == 20
    teacher = row(summary, "assistant", "heldout")["metrics"]["score"]["value"]
    weak = row(summary, "weak", "heldout")["metrics"]["score"]["value"]
    assert teacher > weak  # offline scores reflect grounding: the teacher saw the facts
    assert pairwise(summary, "heldout")["score_win_rate"]["value"] > 0.5
    assert (
        (tmp_path / "eval" / "summary.md")
        .read_text(encoding="utf-8")
        .startswith("# Evaluation: offline-demo-eval")
    )


def test_judge_provenance_warnings_by_model_and_family() -> None:
    from synthgen.evaluation.calibration import judge_warnings

    labellers = ["gpt-4o-2024-08-06-offline"]  # as the offline provider names the response model
    assert "is the model that labelled" in judge_warnings("gpt-4o-2024-08-06", labellers, Path("run"))[0]
    assert "is the model that labelled" in judge_warnings("gpt-4o", labellers, Path("run"))[0]
    assert "of the family (gpt)" in judge_warnings("gpt-4o-mini-2024-07-18", labellers, Path("run"))[0]
    assert judge_warnings("Qwen/Qwen2.5-72B-Instruct", labellers, Path("run")) == []
