"""``synthgen report``: the terminal summary and the self-contained HTML page, checked in headless
Chromium (Debian's ``chromium``): every plot image decodes, the sample has the expected cards, the search
filters them (``?q=`` pre-fills it), and nothing throws. Without Chromium these tests FAIL, on purpose:
CI installs it (``apt-get install -y chromium``) and a skipped browser check proves nothing."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from synthgen.cli import main
from synthgen.pipeline.runner import StepCounts
from synthgen.reports.html import render_html, write_html
from synthgen.reports.terminal import summary
from tests.reports.test_metrics import dialogue, fixture_rows, make_run_dir, run_result

DEMO = Path(__file__).resolve().parents[2] / "recipes" / "offline-demo" / "recipe.yaml"
HOSTILE = 'Una duda con <script>document.body.dataset.pwned = "1"</script> & "comillas" <b>negrita</b>'
PLOTS = 10  # topics, rows per seed, turns, 3 token lengths, judge scores, margins, drops, tokens per step


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = fixture_rows()
    answer = "No dispongo de esa información; te recomiendo consultarlo con la Secretaría de la Facultad."
    rows["sft"].append(dialogue("d5", ["s1"], "matricula", [(HOSTILE, answer)]))
    steps = {
        "dialogues": StepCounts(
            "dialogue", "1", "sft", items=6, ok=5, rejected=1, rows=5, rows_rejected=1,
            rejections={"role_flip": 1},
            usage={"requests": 10, "prompt_tokens": 3000, "completion_tokens": 1000, "total_tokens": 4000,
                   "cost_usd": 0.02},
        ),
        "prefs": StepCounts("preference", "1", "prefs", items=3, ok=3, rows=3),
    }  # fmt: skip
    rejected = [
        {"step": "dialogues", "item": "s1/2", "reason": "role_flip", "detail": "user says 'soy el asistente'"}
    ]
    return make_run_dir(
        tmp_path_factory.mktemp("run"), **rows, result=run_result(steps, cost=0.02), rejected=rejected
    )


# --- headless Chromium -------------------------------------------------------------------------------------


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "headless Chromium is required to check the HTML report and none was found on PATH (chromium, "
        "chromium-browser, google-chrome); install it: apt-get update && apt-get install -y chromium"
    )


def dump_dom(page: Path, tmp_path: Path, query: str | None = None) -> tuple[dict[str, str], str, str]:
    """(body data-* attributes after load, the DOM, Chromium's stderr with console messages)."""
    url = page.resolve().as_uri() + (f"?q={urllib.parse.quote(query)}" if query else "")
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
        "--dump-dom", url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    body = re.search(r"<body([^>]*)>", done.stdout)
    assert body, done.stdout[:2000]
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1))), done.stdout, done.stderr


def console_problems(stderr: str) -> list[str]:
    """Console messages and uncaught errors Chromium logged for the page (it logs none when all is well)."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


# --- terminal ----------------------------------------------------------------------------------------------


def test_terminal_summary(run_dir: Path) -> None:
    text = summary(run_dir)
    assert (
        "dialogues [dialogue v1 -> sft]: 6 items: 5 ok, 0 failed, 1 rejected, 0 not started; 5 rows" in text
    )
    assert "coverage: 2/4 seeds used" in text and "unused seeds (2): s3, s4" in text
    assert "near duplicates (Jaccard >= 0.85): sft 1/5 (20.0%); prefs 0/3 (0.0%)" in text
    assert "  sft test/4 d3: near duplicate of train/1 d2 (Jaccard 0.96)" in text
    assert "judge (judge-test): 3 pairs" in text and "2 ties or inversions" in text
    assert "language: " in text and "other: en=1" in text
    assert "dialogues rejection role_flip (x1), e.g.: user says 'soy el asistente'" in text


# --- HTML --------------------------------------------------------------------------------------------------


def test_html_is_self_contained_and_escaped(run_dir: Path) -> None:
    page = render_html(run_dir)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "remote asset"
    assert "<link" not in page and "<script src" not in page and "@import" not in page and "url(" not in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == PLOTS
    for src in images:
        prefix = "data:image/svg+xml;base64,"
        assert src.startswith(prefix)
        svg = ET.fromstring(base64.b64decode(src[len(prefix) :]))
        assert svg.tag == "{http://www.w3.org/2000/svg}svg"
        assert float(svg.attrib["width"]) > 0 and float(svg.attrib["height"]) > 0
    assert page.count('<article class="card dialogue">') == 5
    assert page.count('<article class="card preference">') == 3
    assert page.count('<div class="side chosen">') == 3 and page.count('<div class="side rejected">') == 3
    assert "Fiel a los hechos." in page and "Evasiva." in page  # the judge's rationale for both sides
    assert "<script>document.body" not in page and "&lt;script&gt;document.body" in page


def test_html_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    page = write_html(run_dir, tmp_path / "report.html")
    attrs, dom, stderr = dump_dom(page, tmp_path)
    assert attrs.get("loaded") == "true", attrs
    assert (attrs["images"], attrs["images-decoded"], attrs["images-ok"]) == (str(PLOTS), str(PLOTS), "true")
    assert (attrs["cards"], attrs["cards-visible"]) == ("8", "8")
    assert attrs["errors"] == "0" and console_problems(stderr) == []
    assert "pwned" not in attrs  # the hostile turn is text, not markup
    assert "8 of 8 shown" in dom

    # ?q= pre-fills the search; words must all appear, accents optional ("automatricula" finds d4)
    attrs, dom, stderr = dump_dom(page, tmp_path, query="AUTOMATRICULA continuación")
    assert (attrs["cards"], attrs["cards-visible"]) == ("8", "1")
    assert attrs["errors"] == "0" and console_problems(stderr) == []
    visible = [a for a in re.findall(r"<article ([^>]*)>", dom) if "hidden" not in a]
    assert visible == ['class="card dialogue"']
    assert "1 of 8 shown" in dom

    # the system prompt is on every card: searching it would match all, so it is left out of the search
    attrs, _, _ = dump_dom(page, tmp_path, query="Facultad de Ciencias")
    assert attrs["cards-visible"] == "0"


def test_chromium_checks_can_fail(run_dir: Path, tmp_path: Path) -> None:
    """Negative control: a thrown error and a broken image show up where the other test looks."""
    page = render_html(run_dir)
    first = re.search(r'<img src="data:image/svg\+xml;base64,[^"]+"', page)
    assert first
    broken = page.replace(first.group(0), '<img src="data:image/svg+xml;base64,bm90IGFuIHN2Zw=="', 1)
    broken = broken.replace("</main>", "<script>undefinedFunction();</script></main>", 1)
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    attrs, _, stderr = dump_dom(path, tmp_path)
    assert attrs["images-ok"] == "false" and attrs["images-decoded"] == str(PLOTS - 1)
    assert attrs["errors"] == "1"
    assert any("Uncaught" in line for line in console_problems(stderr)), stderr[-2000:]


def test_cli_report_html_on_an_offline_run(tmp_path: Path) -> None:
    """The real pipeline end to end: an offline run, then `synthgen report RUN_DIR --html FILE`."""
    out, html = tmp_path / "run", tmp_path / "site" / "report.html"
    runner = CliRunner()
    ran = runner.invoke(main, ["run", str(DEMO), "--offline", "--out", str(out), "--limit", "3"])
    assert ran.exit_code == 0, ran.output
    result = runner.invoke(main, ["report", str(out), "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert f"wrote {html}" in result.stdout and "coverage: " in result.stdout
    import pyarrow.parquet as pq

    rows: dict[str, Any] = {
        c: sum(pq.read_metadata(p).num_rows for p in (out / "data" / c).glob("*.parquet"))
        for c in ("sft", "prefs")
    }
    attrs, _, stderr = dump_dom(html, tmp_path)
    assert attrs["images-ok"] == "true" and int(attrs["images"]) >= 6
    assert attrs["cards"] == str(rows["sft"] + rows["prefs"]) and rows["sft"] == 3
    assert attrs["errors"] == "0" and console_problems(stderr) == []
