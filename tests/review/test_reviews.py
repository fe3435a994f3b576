"""The review log and its guards without a browser: stale decisions are reported and not applied, many
processes append without losing a line, a killed server keeps what it answered, a torn line is skipped,
the server's host, token and origin checks, and publish's ``output.require_review`` gate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from synthgen.errors import PublishError
from synthgen.hub.publish import publish
from synthgen.pipeline.runner import run
from synthgen.review.apply import apply_reviews_to
from synthgen.review.rows import review_app
from synthgen.review.server import AppServer
from synthgen.reviews import AppendLog, content_hash, make_review, read_unreviewed
from synthgen.rundir import RunDir
from tests.review.conftest import fresh, make_run, off_loop


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("reviews"), seeds=4, require_review=True)


@pytest.fixture
def run_dir(made: Path, tmp_path: Path) -> Path:
    return fresh(made, tmp_path)


def decision(row: dict[str, Any], action: str, **extra: Any) -> dict[str, Any]:
    return make_review(
        config=row["config"],
        key=row["key"],
        hash=content_hash(row["row"]),
        action=action,
        reviewer="Ana",
        **extra,
    )


def request(url: str, body: dict[str, Any] | None = None, **headers: str) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_stale_and_gone_decisions_are_reported_not_applied(run_dir: Path, tmp_path: Path) -> None:
    rows = read_unreviewed(run_dir)
    sft = [r for r in rows if r["config"] == "sft"]
    log = AppendLog(RunDir(run_dir).reviews)
    changed = {**sft[0]["row"], "topic": "otro"}  # as if the row had been different when reviewed
    log.append({**decision(sft[0], "reject", reason="mal"), "hash": content_hash(changed)})
    log.append({**decision(sft[1], "approve"), "key": "no-such-dialogue"})
    log.append(decision(sft[1], "approve"))
    result = off_loop(apply_reviews_to, run_dir)
    assert result.review["reviewed"] == 1 and result.review["rejected"] == 0
    assert result.review["stale"] == [
        f"sft {sft[0]['key']}: the row changed since it was reviewed",
        "sft no-such-dialogue: no such row any more",
    ]
    kept = {r["dialogue_id"]: r["reviewed"] for r in RunDir(run_dir).read_rows("sft")}
    assert kept[sft[0]["key"]] == "" and kept[sft[1]["key"]] == "approved"
    assert "Decisions not applied because their row changed" in RunDir(run_dir).card.read_text()


def test_publish_requires_every_row_reviewed(made: Path, run_dir: Path) -> None:
    with pytest.raises(
        PublishError, match=r"require_review is set and \d+ sft row\(s\), \d+ prefs row"
    ) as exc:
        publish(run_dir, "org/demo")
    assert exc.value.field == "output.require_review" and "synthgen review --apply" in str(exc.value.hint)
    log = AppendLog(RunDir(run_dir).reviews)
    for row in read_unreviewed(run_dir):
        log.append(decision(row, "approve"))
    # `synthgen run` on the RUN_DIR applies them too
    result = off_loop(run, made.parent / "recipe.yaml", out=run_dir, offline=True)
    assert result.review["unreviewed"] == 0 and result.usage_this_run["total"]["requests"] == 0
    with pytest.raises(PublishError, match="HF_HUB_OFFLINE"):  # past the gate: the next check stops it
        publish(run_dir, "org/demo")


APPENDER = """
import sys
from pathlib import Path
from synthgen.reviews import AppendLog
log, who = AppendLog(Path(sys.argv[1])), int(sys.argv[2])
for i in range(40):
    log.append({"reviewer": f"p{who}", "i": i, "text": "x" * (3000 + who)})  # lines > PIPE_BUF
"""


def test_processes_appending_at_once_lose_no_line(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"reviewer": "torn", "i"', encoding="utf-8")  # a line a kill cut short
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    workers = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(path), str(w)], env=env) for w in range(4)
    ]
    assert [w.wait(60) for w in workers] == [0, 0, 0, 0]
    records = AppendLog(path).read()
    assert sorted((r["reviewer"], r["i"]) for r in records) == sorted(
        (f"p{w}", i) for w in range(4) for i in range(40)
    )


def test_a_killed_server_keeps_every_decision_it_answered(run_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "synthgen.cli", "review", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("open http://127.0.0.1:"), line
        url = line.split()[1]
        status, text = request(url + "api/rows")
        assert status == 200
        row = json.loads(text)["rows"][-1]
        before = len(AppendLog(RunDir(run_dir).reviews).read())
        body = {"config": row["config"], "key": row["key"], "hash": row["hash"], "action": "reject",
                "reason": "killed right after", "reviewer": "Ana"}  # fmt: skip
        status, text = request(url + "api/review", body, **{"Content-Type": "application/json"})
        assert status == 200 and json.loads(text)["decision"]["state"] == "rejected"
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    finally:
        server.kill()
        server.wait(30)
    after = AppendLog(RunDir(run_dir).reviews).read()
    assert len(after) == before + 1 and after[-1]["reason"] == "killed right after"


def test_guards(run_dir: Path) -> None:
    rows = read_unreviewed(run_dir)
    row = rows[0]
    body = {"config": row["config"], "key": row["key"], "hash": content_hash(row["row"]), "action": "reject",
            "reviewer": "Ana"}  # fmt: skip
    json_type = {"Content-Type": "application/json"}
    with AppServer(review_app(run_dir)).running() as local:
        assert local.token is None and local.url() == f"http://127.0.0.1:{local.port}/"
        assert request(local.url("/api/rows"))[0] == 200
        assert request(local.url("/api/rows"), Host="evil.example")[0] == 403  # DNS rebinding
        assert request(local.url("/api/review"), body)[0] == 415  # a form post cannot be JSON
        status, text = request(local.url("/api/review"), body, Origin="http://evil.example", **json_type)
        assert status == 403 and "cross-origin" in text
        status, text = request(local.url("/api/review"), body, **json_type)
        assert status == 400 and "a rejection needs a reason" in json.loads(text)["error"]
        status, _ = request(local.url("/api/review"), {**body, "hash": "0" * 64, "reason": "x"}, **json_type)
        assert status == 409  # the row changed since the page loaded
        edit = {**body, "action": "edit", "turn": 0, "text": "hola"}  # turn 0: the system turn
        status, text = request(local.url("/api/review"), edit, **json_type)
        assert status == 400 and "only the assistant's turns are edited" in text
        headers = urllib.request.urlopen(local.url("/"), timeout=30).headers
        assert (
            "script-src 'self'" in headers["Content-Security-Policy"]
            and "unsafe-inline" not in headers["Content-Security-Policy"]
        )
    with AppServer(review_app(run_dir), host="0.0.0.0").running() as shared:
        assert shared.token and shared.url().endswith(f"/?token={shared.token}")
        plain = f"http://127.0.0.1:{shared.port}"
        assert request(plain + "/api/rows")[0] == 403
        assert request(plain + "/api/rows?token=wrong")[0] == 403
        assert request(plain + f"/api/rows?token={shared.token}")[0] == 200
        assert request(plain + "/api/rows", **{"X-Synthgen-Token": shared.token})[0] == 200
        with urllib.request.urlopen(plain + f"/?token={shared.token}", timeout=30) as response:
            assert f"synthgen_token={shared.token}" in response.headers["Set-Cookie"]


def test_cli_says_what_is_wrong(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from synthgen.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    review = CliRunner().invoke(main, ["review", str(empty)])
    assert review.exit_code == 2 and "not a finished RUN_DIR (no run.json)" in review.output
    applied = CliRunner().invoke(main, ["review", "--apply", str(empty)])
    assert applied.exit_code == 2 and "no .synthgen/state.json" in applied.output
    label = CliRunner().invoke(main, ["label", str(empty)])
    assert label.exit_code == 2 and "questions.jsonl is missing" in label.output
