"""``synthgen evaluate --html``: the self-contained evaluation report, checked in headless Chromium as the
data report is (tests/reports/test_report.py): every figure decodes, nothing throws, the question browser
has a card per question with every candidate's answer, and HTML injected into an answer stays text."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from synthgen.cli import main
from synthgen.errors import ConfigError
from synthgen.reports.eval_html import render_eval_html, write_eval_html
from tests.evaluation.test_evaluate import server, write_eval
from tests.reports.test_report import console_problems, dump_dom
from tests.servers.openai_server import OpenAIServer

__all__ = ["server"]  # the scripted judge's fixture, used below

HOSTILE = (
    '<script>document.body.dataset.pwned = "1"</script>'
    "<img src=x onerror=\"document.body.dataset.pwned = '2'\"> & <b>negrita</b> "
)
FIGURES = 8  # per set (4): a forest plot of the main metric and the win-rate bars
QUESTIONS = 9  # 3 paraphrases, 2 held-out, 2 out-of-scope, 2 real queries


@pytest.fixture
def eval_dir(server: OpenAIServer, tmp_path: Path) -> tuple[Path, Path]:
    """The scripted evaluation of test_evaluate through the CLI with --html; one of good's answers
    carries markup, and the contamination check flags real:2 (a training turn word for word)."""
    path = write_eval(tmp_path, server.url)
    good = tmp_path / "good.jsonl"
    rows = [json.loads(line) for line in good.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        if row["question_id"] == "heldout:m2":
            row["answer"] = HOSTILE + row["answer"]
    good.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    out, html = tmp_path / "out", tmp_path / "site" / "eval.html"
    result = CliRunner().invoke(main, ["evaluate", str(path), "--out", str(out), "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert f"wrote {html}" in result.stdout
    return out, html


def test_eval_html_is_self_contained_and_escaped(eval_dir: tuple[Path, Path]) -> None:
    out, html = eval_dir
    page = html.read_text(encoding="utf-8")
    assert page == render_eval_html(out)  # the API renders what the CLI wrote
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "remote asset"
    assert "<link" not in page and "<script src" not in page and "@import" not in page and "url(" not in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == FIGURES
    titles = []
    for src in images:
        prefix = "data:image/svg+xml;base64,"
        assert src.startswith(prefix)
        svg = ET.fromstring(base64.b64decode(src[len(prefix) :]))
        assert svg.tag == "{http://www.w3.org/2000/svg}svg" and float(svg.attrib["height"]) > 0
        titles.append(svg.findtext("{http://www.w3.org/2000/svg}title"))
    assert titles[:2] == ["paraphrases: score (1-10)", "paraphrases: win rates"]
    assert "out_of_scope: declined+referred" in titles and "real: correct" in titles
    # the headline: the same numbers as summary.md, with the significance marks
    assert "<td>7.67 [7.00, 9.00] ↑bad</td>" in page and "<td>+4.00 [+2.50, +7.00] *</td>" in page
    # the browser: one card per question, both candidates side by side, the reference, the rationale
    assert page.count('<article class="card"') == QUESTIONS
    card = page[page.index('<article class="card" data-set="heldout">') :]
    card = card[: card.index("</article>")]
    assert card.count('<div class="answer">') == 2 + 2  # first answers, and the follow-up answers
    assert (
        "Del 28 de julio" not in card and "Un mínimo de 48 ECTS y un máximo de 78." in card
    )  # m2's reference
    assert "score 7" in card and "score 4" in card and "answer&#x27;s claims: 1 supported" in card
    assert "pairwise verdicts (2;" in card
    broken = page[page.index("heldout · becas · seed b2") :]
    assert "single: judge failed (invalid_json)" in broken[: broken.index("</article>")]
    assert '<span class="badge warn">contamination 1.00</span>' in page  # real:2 was flagged
    assert page.count('<span class="badge warn">contamination') == 1
    # injected markup is text: escaped once, never live
    assert "<script>document.body" not in page and "<img src=x" not in page
    assert "&lt;script&gt;document.body.dataset.pwned" in page and "&lt;img src=x onerror=" in page


def test_eval_html_in_headless_chromium(eval_dir: tuple[Path, Path], tmp_path: Path) -> None:
    _, html = eval_dir
    attrs, dom, stderr = dump_dom(html, tmp_path)
    assert attrs.get("loaded") == "true", attrs
    assert (attrs["images"], attrs["images-decoded"], attrs["images-ok"]) == (
        str(FIGURES),
        str(FIGURES),
        "true",
    )
    assert (attrs["cards"], attrs["cards-visible"]) == (str(QUESTIONS), str(QUESTIONS))
    assert attrs["errors"] == "0" and console_problems(stderr) == []
    assert "pwned" not in attrs  # neither the <script> nor the <img onerror> ran
    assert f"{QUESTIONS} of {QUESTIONS} shown" in dom
    # the search box filters the questions (set names are searchable; ?q= pre-fills it)
    attrs, _, stderr = dump_dom(html, tmp_path, query="heldout")
    assert (attrs["cards"], attrs["cards-visible"]) == (str(QUESTIONS), "2")
    assert attrs["errors"] == "0" and console_problems(stderr) == []


def test_eval_chromium_checks_can_fail(eval_dir: tuple[Path, Path], tmp_path: Path) -> None:
    """Negative control: a broken figure and a thrown error show up where the other test looks."""
    out, _ = eval_dir
    page = render_eval_html(out)
    first = re.search(r'<img src="data:image/svg\+xml;base64,[^"]+"', page)
    assert first
    broken = page.replace(first.group(0), '<img src="data:image/svg+xml;base64,bm90IGFuIHN2Zw=="', 1)
    broken = broken.replace("</main>", "<script>undefinedFunction();</script></main>", 1)
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    attrs, _, stderr = dump_dom(path, tmp_path)
    assert attrs["images-ok"] == "false" and attrs["images-decoded"] == str(FIGURES - 1)
    assert attrs["errors"] == "1"
    assert any("Uncaught" in line for line in console_problems(stderr)), stderr[-2000:]


def test_eval_html_without_an_eval_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"summary\.json not found.*synthgen evaluate"):
        write_eval_html(tmp_path / "nothing", tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()
