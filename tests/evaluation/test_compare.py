"""Candidates compared on the same questions (:mod:`synthgen.evaluation.compare`): paired differences
with clustered bootstrap intervals computed by hand here, the length-controlled win rate against a
closed form, topic folding, and the headline/contamination parts of summary.md on scripted verdicts."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from synthgen.evaluation.compare import (
    compare_candidates,
    length_controlled_win_rate,
    paired_difference,
    read_contamination,
)
from synthgen.evaluation.evaluator import evaluate
from synthgen.evaluation.stats import cluster_bootstrap
from tests.evaluation.test_evaluate import server, straightforward_bootstrap, write_eval
from tests.servers.openai_server import OpenAIServer

__all__ = ["server"]  # the scripted judge's fixture, used below


# --- paired differences -----------------------------------------------------------------------------


def test_identical_per_cluster_differences_give_a_zero_width_interval_at_that_value() -> None:
    a = {"q1": 8.0, "q2": 7.0, "q3": 9.0, "q4": 5.0}
    b = {q: v - 2 for q, v in a.items()} | {"q5": 1.0}  # q5: B alone answered it, so it is not paired
    clusters = {"q1": "s1", "q2": "s1", "q3": "s2", "q4": "s3", "q5": "s3"}
    found = paired_difference(a, b, clusters, samples=500, seed=3)
    assert found is not None
    assert (found.value, found.low, found.high, found.n, found.clusters) == (2.0, 2.0, 2.0, 4, 3)


def test_paired_difference_interval_by_hand() -> None:
    # differences: seed m1 -> [2, 4] (sum 6, two questions), seed b1 -> [1]. Resampling two seeds gives
    # the pooled mean 3 (m1 m1), 7/3 (m1 b1 or b1 m1) or 1 (b1 b1), the extremes each with probability
    # 1/4: the 95% interval is [1, 3] around the point 7/3 (resampling questions would reach 4).
    a = {"m1:0": 5.0, "m1:1": 6.0, "b1:0": 4.0}
    b = {"m1:0": 3.0, "m1:1": 2.0, "b1:0": 3.0}
    clusters = {"m1:0": "m1", "m1:1": "m1", "b1:0": "b1"}
    found = paired_difference(a, b, clusters, samples=2000, seed=7)
    assert found is not None
    assert found.value == pytest.approx(7 / 3)
    assert (found.low, found.high, found.n, found.clusters) == (1.0, 3.0, 3, 2)


def test_paired_difference_equals_an_independent_resampling_of_the_differences() -> None:
    a = {"p1": 9.0, "p2": 4.0, "p3": 7.0, "p4": 6.0, "p5": 8.0}
    b = {"p1": 6.0, "p2": 5.0, "p3": 7.0, "p4": 2.0, "p5": 3.0}
    clusters = {"p1": "x", "p2": "x", "p3": "y", "p4": "z", "p5": "z"}
    found = paired_difference(a, b, clusters, samples=3000, seed=11)
    ids = sorted(a)
    expected = straightforward_bootstrap(
        [a[q] - b[q] for q in ids], [clusters[q] for q in ids], samples=3000, seed=11
    )
    assert found is not None
    assert (found.value, found.low, found.high) == pytest.approx(expected, abs=1e-9)


# --- length control ---------------------------------------------------------------------------------


def test_length_controlled_win_rate_closed_form() -> None:
    """Two length differences (+10, -10) make the logistic model saturated: it fits each group's win rate,
    sigmoid(b0 + b1 c) = 5/6 (A longer: 5 wins of 6) and sigmoid(b0 - b1 c) = 1/2 (A shorter: 1 of 2),
    so b0 = (logit(5/6) + logit(1/2)) / 2 = ln(5) / 2 and the win rate at equal length is
    sigmoid(ln 5 / 2) = sqrt(5) / (1 + sqrt(5)) ~ 0.691, below the raw 6/8 = 0.75 the long answers earned."""
    preferences = [1, 1, 1, 1, 1, 0, 1, 0]
    differences = [10, 10, 10, 10, 10, 10, -10, -10]
    clusters = [f"s{i}" for i in range(8)]
    found = length_controlled_win_rate(preferences, differences, clusters, samples=200, seed=1)
    assert found is not None
    assert found["value"] == pytest.approx(math.sqrt(5) / (1 + math.sqrt(5)), abs=1e-4)
    assert found["slope"] > 0 and found["n"] == 8 and found["clusters"] == 8
    assert found["low"] < found["value"] < found["high"]


def test_at_equal_lengths_the_length_control_changes_nothing() -> None:
    """No length difference: the fit is the mean preference, and its interval the clustered bootstrap's."""
    preferences = [1, 0.5, 0, 1, 1, 0.5]
    clusters = ["a", "a", "b", "c", "c", "d"]
    found = length_controlled_win_rate(preferences, [0] * 6, clusters, samples=1000, seed=5)
    plain = cluster_bootstrap(preferences, clusters, samples=1000, seed=5)
    assert found is not None and plain is not None
    assert (found["value"], found["low"], found["high"]) == pytest.approx(
        (plain.value, plain.low, plain.high), abs=1e-4
    )
    assert found["slope"] == 0


# --- topics and the whole comparison ----------------------------------------------------------------


def _records(values: dict[str, tuple[float, float]], topics: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"mode": "single", "set": "heldout", "question_id": q, "cluster": q, "topic": topics[q],
         "candidate": name, "pair": None, "order": None, "verdict": {"score": score, "rationale": "r"}}
        for q, pair in values.items()
        for name, score in zip(("x", "y"), pair, strict=True)
    ]  # fmt: skip


def test_small_topics_fold_into_other() -> None:
    topics = {"q1": "becas", "q2": "becas", "q3": "becas", "q4": "titulos", "q5": "horarios"}
    values = {"q1": (8, 5), "q2": (7, 7), "q3": (9, 4), "q4": (3, 6), "q5": (6, 6)}
    questions = [{"id": q, "set": "heldout", "cluster": q, "topic": t} for q, t in topics.items()]
    kwargs: dict[str, Any] = {"candidates": ["x", "y"], "sets": ["heldout"], "samples": 200, "confidence": 0.95,
                              "seed": 0}  # fmt: skip
    found = compare_candidates(_records(values, topics), questions=questions, min_topic_questions=3, **kwargs)
    topics_table = found["sets"]["heldout"]["topics"]
    assert [(t["topic"], t["questions"], t["members"]) for t in topics_table] == [
        ("becas", 3, ["becas"]),
        ("other", 2, ["horarios", "titulos"]),
    ]
    assert topics_table[1]["candidates"]["x"]["score"]["value"] == pytest.approx(4.5)  # (3 + 6) / 2
    headline = found["sets"]["heldout"]
    assert headline["headline"]["x"]["metrics"]["score"]["value"] == pytest.approx(33 / 5)
    diff = headline["pairs"][0]["differences"]["score"]
    assert diff["value"] == pytest.approx((3 + 0 + 5 - 3 + 0) / 5) and diff["clusters"] == 5
    # one group left (every topic small): no topic table, it would repeat the headline
    again = compare_candidates(
        _records(values, topics), questions=questions, min_topic_questions=10, **kwargs
    )
    assert again["sets"]["heldout"]["topics"] == []


def test_read_contamination_is_defensive(tmp_path: Path) -> None:
    assert read_contamination(tmp_path) is None  # no check ran
    (tmp_path / "contamination.json").write_text("{not json", encoding="utf-8")
    assert read_contamination(tmp_path) is None
    (tmp_path / "contamination.json").write_text('["a list"]', encoding="utf-8")
    assert read_contamination(tmp_path) is None
    data = {"n": 8, "threshold": 0.5, "drop": False, "sets": {"heldout": {"checked": 2, "flagged": []}}}
    (tmp_path / "contamination.json").write_text(json.dumps(data), encoding="utf-8")
    assert read_contamination(tmp_path) == data


def test_headline_pairs_and_contamination_on_scripted_verdicts(server: OpenAIServer, tmp_path: Path) -> None:
    """The scripted judge of test_evaluate: good's and bad's scores on the paraphrases are m1 -> (8, 3),
    (6, 6) and b1 -> (9, 2); on the held-out seeds m2 -> (7, 4) and b2's bad grade never parses."""
    out = tmp_path / "out"
    summary = evaluate(write_eval(tmp_path, server.url), out=out).summary
    para = summary["comparison"]["sets"]["paraphrases"]
    (pair,) = para["pairs"]
    # differences m1 -> [5, 0] (sum 5, n 2), b1 -> [7]: resamples give 2.5 (m1 m1), 4 (mixed), 7 (b1 b1)
    assert (pair["a"], pair["b"]) == ("good", "bad")
    score = pair["differences"]["score"]
    assert score["value"] == pytest.approx(4.0)
    assert (score["low"], score["high"], score["clusters"], score["significant"]) == (2.5, 7.0, 2, True)
    # claim precision: only m1's questions have claims on both sides: one seed, never significant
    precision = pair["differences"]["claim_precision"]
    assert (precision["value"], precision["clusters"], precision["significant"]) == (0.75, 1, False)
    assert pair["win_rate"]["value"] == pytest.approx(2 / 3) and not pair["win_rate"]["significant"]
    # both answers have six words on every question: length control leaves the win rate as it is
    assert (
        pair["lc_win_rate"]["value"] == pytest.approx(2 / 3, abs=1e-4) and pair["lc_win_rate"]["slope"] == 0
    )
    assert para["headline"]["good"]["words"]["value"] == 6.0
    assert para["headline"]["good"]["above"] == {"score": ["bad"]}
    held = summary["comparison"]["sets"]["heldout"]["pairs"][0]["differences"]["score"]
    assert (held["value"], held["low"], held["high"], held["n"], held["significant"]) == (
        3.0,
        3.0,
        3.0,
        1,
        False,
    )
    oos = summary["comparison"]["sets"]["out_of_scope"]["pairs"][0]["differences"]["abstained"]
    assert (oos["value"], oos["low"], oos["high"], oos["significant"]) == (1.0, 1.0, 1.0, True)

    markdown = (out / "summary.md").read_text(encoding="utf-8")
    lines = markdown.splitlines()
    first_table = next(i for i, line in enumerate(lines) if line.startswith("| candidate |"))
    assert lines[first_table - 2].startswith("## paraphrases")  # the headline comes first
    assert "| good | 3 | 7.67 [7.00, 9.00] ↑bad |" in markdown
    assert "| good | bad | +4.00 [+2.50, +7.00] * |" in markdown
    # the real check ran: real:2 is a training turn word for word (test_evaluate's TRAINING_TURN)
    assert "| heldout | 2 | 2 | 0 | 0 | 0 |" in markdown  # the question sets' contaminated column
    assert "| real | 2 | 2 | 1 | 1 | 1 |" in markdown
    assert "| paraphrases | 3 | 2 | 0 | 1 | not checked |" in markdown
    assert "| real | 2 | 1 | real:2 (1.00) |" in markdown
    assert "1 question(s) of this set were flagged by the contamination check" in markdown
    assert summary["contamination"] == json.loads((out / "contamination.json").read_text(encoding="utf-8"))
