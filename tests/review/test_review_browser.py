"""``synthgen review RUN_DIR`` in headless Chromium: decide on rows with the mouse and the keyboard,
reload and see the decisions, apply them (dataset rows, rejected.jsonl, card, manifest), two reviewers
at once, and markup in a row that stays text."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from synthgen.cli import main
from synthgen.review.rows import review_app
from synthgen.review.server import AppServer
from synthgen.reviews import AppendLog
from synthgen.rundir import RunDir
from tests.review.conftest import HOSTILE_ANSWER, HOSTILE_QUESTION, fresh, make_hostile, make_run, off_loop

REASON = "La fecha de la matrícula es incorrecta"
EDITED = "Corregido por la oficina: la automatrícula es del 28 de julio al 12 de septiembre."


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("review"))


@pytest.fixture
def run_dir(made: Path, tmp_path: Path) -> Path:
    return fresh(made, tmp_path)


@pytest.fixture
def server(run_dir: Path) -> Iterator[AppServer]:
    with AppServer(review_app(run_dir)).running() as served:
        yield served


def listing(server: AppServer) -> dict[str, Any]:
    with urllib.request.urlopen(server.url("/api/rows"), timeout=30) as response:
        data: dict[str, Any] = json.load(response)
    return data


def watch(page: Any) -> list[str]:
    """Uncaught errors and console errors of the page (none when all is well)."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def row_button(key: str, state: str | None = None) -> str:
    return f'#list button[data-key="{key}"]' + (f'[data-state="{state}"]' if state else "")


def test_decide_reload_and_apply(browser: Any, server: AppServer, run_dir: Path) -> None:
    rows = listing(server)["rows"]
    sft = [r for r in rows if r["config"] == "sft"]
    prefs = [r for r in rows if r["config"] == "prefs"]
    approved, rejected, edited, swapped = sft[0], sft[1], sft[2], prefs[0]
    turn = max(i for i, m in enumerate(edited["row"]["messages"]) if m["role"] == "assistant")

    page = browser.new_page()
    errors = watch(page)
    page.goto(server.url())
    page.fill("#reviewer", "Ana")
    page.click(row_button(approved["key"]))
    page.keyboard.press("a")  # the shortcut
    page.wait_for_selector(row_button(approved["key"], "approved"))
    page.click(row_button(rejected["key"]))
    page.keyboard.press("r")
    page.fill("#reason", REASON)
    page.keyboard.press("Enter")
    page.wait_for_selector(row_button(rejected["key"], "rejected"))
    page.click(row_button(edited["key"]))
    page.click(f'.edit[data-turn="{turn}"]')
    page.fill("textarea.editor", EDITED)
    page.click(".save")
    page.wait_for_selector(row_button(edited["key"], "edited"))
    page.click(row_button(swapped["key"]))
    page.click("#swap")
    page.wait_for_selector(row_button(swapped["key"], "swapped"))

    page.reload()
    page.wait_for_selector(row_button(swapped["key"], "swapped"))
    for row, state in ((approved, "approved"), (rejected, "rejected"), (edited, "edited")):
        assert page.get_attribute(row_button(row["key"]), "data-state") == state
    page.click(row_button(rejected["key"]))
    decision = page.text_content("#decision") or ""
    assert decision.startswith("rejected by Ana") and decision.endswith(REASON)
    page.click(row_button(edited["key"]))
    assert page.text_content(f'.msg[data-turn="{turn}"] > .text') == EDITED
    page.keyboard.press("j")  # next: the row after the edited one
    keys = page.eval_on_selector_all("#list button", "bs => bs.map(b => b.dataset.key)")
    assert page.get_attribute("#list button.current", "data-key") == keys[keys.index(edited["key"]) + 1]
    page.select_option("#f-state", "rejected")
    assert page.eval_on_selector_all("#list button", "bs => bs.map(b => b.dataset.key)") == [rejected["key"]]
    assert errors == []
    log = AppendLog(RunDir(run_dir).reviews).read()
    assert [(r["reviewer"], r["action"]) for r in log] == [
        ("Ana", "approve"), ("Ana", "reject"), ("Ana", "edit"), ("Ana", "swap"),
    ]  # fmt: skip

    applied = off_loop(CliRunner().invoke, main, ["review", "--apply", str(run_dir)])
    assert applied.exit_code == 0, applied.output
    assert "4 rows reviewed (1 approved, 1 edited, 1 swapped, 1 rejected)" in applied.output
    rd = RunDir(run_dir)
    assert rd.manifest_problems() == []  # publish would accept the re-finalized RUN_DIR
    dialogues = {r["dialogue_id"]: r for r in rd.read_rows("sft")}
    assert rejected["key"] not in dialogues and len(dialogues) == len(sft) - 1
    assert dialogues[approved["key"]]["reviewed"] == "approved"
    assert dialogues[approved["key"]]["messages"] == approved["row"]["messages"]
    assert dialogues[edited["key"]]["reviewed"] == "edited"
    assert dialogues[edited["key"]]["messages"][turn]["content"] == EDITED
    assert {r["reviewed"] for k, r in dialogues.items() if k not in (approved["key"], edited["key"])} == {""}
    pair = next(r for r in rd.read_rows("prefs") if r["prompt_id"] == swapped["key"])
    assert pair["reviewed"] == "swapped"
    assert pair["chosen"] == swapped["row"]["rejected"] and pair["rejected"] == swapped["row"]["chosen"]
    assert (pair["score_chosen"], pair["score_rejected"]) == (
        swapped["row"]["score_rejected"], swapped["row"]["score_chosen"],
    )  # fmt: skip
    human = [r for r in rd.read_reports("rejected") if r["reason"].startswith("human:")]
    assert [(r["item"], r["reason"]) for r in human] == [(rejected["key"], f"human: {REASON}")]
    assert human[0]["row"]["messages"] == rejected["row"]["messages"]
    card = rd.card.read_text(encoding="utf-8")
    assert "## Human review" in card
    assert "| 4 | 1 | 1 | 1 | 1 | " in card  # reviewed, approved, edited, swapped, rejected
    result = rd.read_result()
    assert result["review"]["reviewed"] == 4 and result["review"]["stale"] == []
    assert result["steps"]["dialogues"]["items"] == 12  # nothing was generated again

    page.reload()  # the rows the page reviews are still the pipeline's: the decisions stand
    page.wait_for_selector(row_button(edited["key"], "edited"))
    assert page.get_attribute(row_button(rejected["key"]), "data-state") == "rejected"
    page.close()


def test_two_reviewers_at_once_lose_nothing(browser: Any, server: AppServer, run_dir: Path) -> None:
    rows = [r for r in listing(server)["rows"] if r["decision"] is None][:12]
    before = len(AppendLog(RunDir(run_dir).reviews).read())
    contexts = [browser.new_context(), browser.new_context()]
    pages = [c.new_page() for c in contexts]
    for page, name in zip(pages, ("Ana", "Ben"), strict=True):
        page.goto(server.url())
        page.fill("#reviewer", name)
    for i, row in enumerate(rows):  # interleaved: each reviewer takes every other row
        page = pages[i % 2]
        page.click(row_button(row["key"]))
        page.keyboard.press("a")
    for i, row in enumerate(rows):
        pages[i % 2].wait_for_selector(row_button(row["key"], "approved"))
    pages[0].reload()  # Ana sees Ben's decisions too
    for row in rows:
        pages[0].wait_for_selector(row_button(row["key"], "approved"))
    log = AppendLog(RunDir(run_dir).reviews).read()[before:]
    assert sorted((r["key"], r["reviewer"]) for r in log) == sorted(
        (row["key"], ("Ana", "Ben")[i % 2]) for i, row in enumerate(rows)
    )
    for context in contexts:
        context.close()


def test_markup_in_a_row_stays_text(browser: Any, run_dir: Path) -> None:
    key = make_hostile(run_dir)
    with AppServer(review_app(run_dir)).running() as server:
        page = browser.new_page()
        errors = watch(page)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(server.url())
        page.fill("#q", "<script>")  # search finds it as text
        page.wait_for_selector(row_button(key))
        assert page.eval_on_selector_all("#list button", "bs => bs.length") == 1
        page.click(row_button(key))
        texts = page.eval_on_selector_all("#detail .text", "ps => ps.map(p => p.textContent)")
        assert HOSTILE_QUESTION in texts and HOSTILE_ANSWER in texts
        assert (
            page.eval_on_selector_all("#detail script, #detail img, #list script, #list img", "n => n.length")
            == 0
        )
        page.wait_for_timeout(300)  # an onerror would have fired by now
        assert page.evaluate("document.body.dataset.pwned") is None
        assert dialogs == [] and errors == []
        page.close()


def test_off_loopback_the_page_works_with_its_token(browser: Any, run_dir: Path) -> None:
    with AppServer(review_app(run_dir), host="0.0.0.0").running() as shared:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{shared.port}/")
        assert "?token=" in (page.text_content("body") or "")  # refused, saying how to get in
        page.goto(shared.url().replace("0.0.0.0", "127.0.0.1"))  # the printed URL: the cookie carries on
        page.wait_for_selector("#list button")
        page.reload()  # the address bar still has the token; the API calls have only the cookie
        page.wait_for_selector("#list button")
        page.close()
