"""``synthgen label EVAL_DIR`` in headless Chromium: a labeller labels 10 pairs with scripted scores,
``synthgen evaluate --calibrate`` accepts the file and reports the kappa computed here by hand; the
page is blinded (no candidate names or verdicts reach it, an order of each labeller's own); a second
labeller makes the agreement table appear (one test: the second labeller needs the first's labels)."""

from __future__ import annotations

import csv
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from synthgen.cli import main
from synthgen.review.label import label_app
from synthgen.review.server import AppServer
from tests.evaluation.test_evaluate import matrix_kappa
from tests.review.conftest import make_run, off_loop

REPO = Path(__file__).resolve().parents[2]
DEMO_EVAL = REPO / "recipes" / "offline-demo" / "eval.yaml"
ANA_DELTAS = [0, 0, -1, 1, 0, -2, 0, 1, 0, 0]  # the human's score: the judge's plus this, by answer


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the eval recipe, its EVAL_DIR): the demo evaluation, offline, on a small run."""
    root = tmp_path_factory.mktemp("label")
    run_dir = make_run(root, seeds=16)  # enough paraphrases and held-out questions with single grades
    ev = yaml.safe_load(DEMO_EVAL.read_text(encoding="utf-8"))
    ev["recipe"] = str(root / "recipe.yaml")
    ev["run_dir"] = str(run_dir)
    for name in ("out_of_scope", "real"):
        ev["sets"][name]["path"] = str(DEMO_EVAL.parent / ev["sets"][name]["path"])
    path = root / "eval.yaml"
    path.write_text(yaml.safe_dump(ev, allow_unicode=True, sort_keys=False), encoding="utf-8")
    out = root / "eval"
    done = off_loop(CliRunner().invoke, main, ["evaluate", str(path), "--offline", "--out", str(out)])
    assert done.exit_code == 0, done.output
    return path, out


@pytest.fixture(scope="module")
def server(evaluated: tuple[Path, Path]) -> Iterator[AppServer]:
    with AppServer(label_app(evaluated[1])).running() as served:
        yield served


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def items_for(server: AppServer, labeller: str) -> dict[str, Any]:
    url = server.url("/api/items") + "?labeller=" + urllib.parse.quote(labeller)
    with urllib.request.urlopen(url, timeout=30) as response:
        data: dict[str, Any] = json.load(response)
    return data


class Oracle:
    """Who wrote an answer and what the judge gave it, from the evaluation's own files."""

    def __init__(self, eval_dir: Path) -> None:
        self.qid = {q["text"]: q["id"] for q in jsonl(eval_dir / "questions.jsonl") if "dropped" not in q}
        self.answers = {
            (a["question_id"], a["answer"]): a["candidate"] for a in jsonl(eval_dir / "answers.jsonl")
        }
        self.clash = {
            qid for qid in self.qid.values() if len({c for (q, _), c in self.answers.items() if q == qid}) < 2
        }
        self.judge = {
            (j["candidate"], j["question_id"]): int(j["verdict"]["score"])
            for j in jsonl(eval_dir / "judgments.jsonl")
            if j["mode"] == "single" and j["verdict"] is not None
        }

    def scores(self, question: str, first: str, second: str) -> tuple[int, int] | None:
        """The judge's scores of the two answers shown, when both are known and the answers differ."""
        qid = self.qid[question]
        if first == second or qid in self.clash:
            return None
        keys = [(self.answers[(qid, text)], qid) for text in (first, second)]
        if any(k not in self.judge for k in keys):
            return None
        return self.judge[keys[0]], self.judge[keys[1]]


def label(page: Any, oracle: Oracle, deltas: list[int]) -> tuple[list[int], list[int]]:
    """Label len(deltas) pairs as scripted; (human scores, judge scores) of every labelled answer."""
    human: list[int] = []
    judged: list[int] = []
    done = steps = 0
    while done < len(deltas):
        steps += 1
        assert steps < 200, "ran out of pairs to label"
        question = page.text_content("#question")
        first, second = page.text_content("#answer-1 .text"), page.text_content("#answer-2 .text")
        known = oracle.scores(question, first, second)
        if known is None:
            page.keyboard.press("j")
            continue
        s1 = min(10, max(1, known[0] + deltas[done]))
        s2 = min(10, max(1, known[1] - deltas[done]))
        page.select_option("#score-1", str(s1))
        page.select_option("#score-2", str(s2))
        page.click("#pref-1" if s1 > s2 else "#pref-2" if s2 > s1 else "#pref-tie")
        done += 1
        page.wait_for_selector(f'#progress[data-labelled="{done}"]')
        human += [s1, s2]
        judged += [known[0], known[1]]
    return human, judged


def test_label_ten_pairs_and_calibrate(browser: Any, server: AppServer, evaluated: tuple[Path, Path]) -> None:
    eval_recipe, eval_dir = evaluated
    oracle = Oracle(eval_dir)
    view = items_for(server, "Ana")
    assert {k for item in view["items"] for k in item} == {
        "item_id", "set", "question", "reference", "answer_1", "answer_2",
    }  # fmt: skip
    text = json.dumps(view)
    assert "gpt-4o" not in text and '"weak"' not in text and "verdict" not in text
    ben = {i["item_id"]: i for i in items_for(server, "Ben")["items"]}
    differ = [i for i in view["items"] if i["answer_1"] != i["answer_2"]]
    flipped = [i for i in differ if i["answer_1"] == ben[i["item_id"]]["answer_2"]]
    assert flipped and len(flipped) < len(differ)  # each labeller has an order of their own

    page = browser.new_page()
    page.goto(server.url())
    page.fill("#labeller", "Ana")
    page.click("#start")
    page.wait_for_selector("#question")
    human, judged = label(page, oracle, ANA_DELTAS)
    sheet = eval_dir / "labels" / "ana.csv"
    assert page.text_content("#file") == f"Your labels: {sheet}"
    assert page.is_hidden("#agreement-box")  # one labeller: nothing to agree with yet
    rows = list(csv.DictReader(sheet.open(encoding="utf-8-sig")))
    assert len(rows) == len(view["items"]) and sum(bool(r["human_preference"]) for r in rows) == 10
    page.close()

    out = eval_dir.parent / "calibrated"
    done = off_loop(
        CliRunner().invoke,
        main,
        ["evaluate", str(eval_recipe), "--offline", "--out", str(out), "--calibrate", str(sheet)],
    )
    assert done.exit_code == 0, done.output
    calibration = json.loads((out / "summary.json").read_text(encoding="utf-8"))["calibration"]
    assert calibration["rows"] == len(view["items"]) and calibration["unknown_items"] == 0
    assert calibration["scores"]["n"] == 20
    assert calibration["scores"]["kappa_quadratic"] == pytest.approx(matrix_kappa(human, judged, 2), abs=1e-4)
    assert calibration["scores"]["kappa_linear"] == pytest.approx(matrix_kappa(human, judged, 1), abs=1e-4)
    a_second_labeller_shows_agreement(browser, server, eval_dir)


def a_second_labeller_shows_agreement(browser: Any, server: AppServer, eval_dir: Path) -> None:
    """Ben labels the first three of Ana's pairs: the agreement table appears, with the kappa by hand."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url())
    page.fill("#labeller", "Ben")
    page.click("#start")
    page.wait_for_selector("#question")
    label(page, Oracle(eval_dir), [1, 0, -1])  # disagrees with Ana now and then
    page.wait_for_selector("#agreement-box:not([hidden])")
    cells = page.eval_on_selector_all("#agreement tbody td", "tds => tds.map(td => td.textContent)")
    ana = {
        r["item_id"]: r for r in csv.DictReader((eval_dir / "labels" / "ana.csv").open(encoding="utf-8-sig"))
    }
    ben = [
        r
        for r in csv.DictReader((eval_dir / "labels" / "ben.csv").open(encoding="utf-8-sig"))
        if r["human_preference"]
    ]
    both = [
        (ana[r["item_id"]]["human_preference"], r["human_preference"])
        for r in ben
        if ana[r["item_id"]]["human_preference"]
    ]
    assert cells[:2] == ["ana / ben", "3"] and len(both) == 3
    assert cells[2] == f"{sum(a == b for a, b in both) / 3:.2f}"
    assert cells[3] == textbook_kappa(both)
    context.close()


def textbook_kappa(pairs: list[tuple[str, str]]) -> str:
    """Cohen's kappa from the confusion matrix, as the page shows it (n/a when chance agreement is 1)."""
    n = len(pairs)
    labels = sorted({x for pair in pairs for x in pair})
    observed = sum(a == b for a, b in pairs) / n
    chance = sum(sum(a == c for a, _ in pairs) * sum(b == c for _, b in pairs) for c in labels) / n**2
    return "n/a" if chance == 1 else f"{(observed - chance) / (1 - chance):.2f}"
