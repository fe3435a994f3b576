"""Without a terminal (nohup, CI) a run still says how it is going: a progress line every N seconds."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import pytest

from synthgen import run
from synthgen.pipeline.progress import Stderr as _Stderr
from tests.pipeline.test_reliability import KEY, plausible, recipe_file
from tests.servers.openai_server import OpenAIServer, ServerConfig

LINE = re.compile(
    r"^(dialogues|prefs): (\d+)/(\d+) items, (\d+) rows, (\d+) failed, (\d+) rejected; (\d+) requests, "
    r"(\d+) tokens, \$\d+\.\d\d; \d+\.\d items/min, ETA (\d+\.\d min|unknown)$"
)


def test_a_run_without_a_bar_logs_progress_lines_at_the_set_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY, "sk-loopback")
    monkeypatch.setenv("SYNTHGEN_PROGRESS_SECONDS", "0.3")
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    progress = logging.getLogger("synthgen.progress")
    progress.addHandler(handler)
    level = progress.level
    progress.setLevel(logging.INFO)  # setLevel, not .level =: it clears the logger's enabled-for cache
    try:
        with OpenAIServer(ServerConfig(responder=plausible, latency=0.1)) as server:
            recipe = recipe_file(tmp_path, server.url, max_concurrency=2)
            result = run(recipe, out=tmp_path / "run", limit=6, progress=False)
    finally:
        progress.removeHandler(handler)
        progress.setLevel(level)
    parsed = [LINE.match(line) for line in lines]
    assert lines and all(parsed), lines
    dialogues = [m for m in parsed if m and m.group(1) == "dialogues"]
    assert len(dialogues) >= 3  # periodic lines while it runs, not only the closing one
    last = dialogues[-1]
    assert last.group(2) == last.group(3) == "6" and int(last.group(4)) == result.steps["dialogues"].rows
    assert int(last.group(7)) > 0 and int(last.group(8)) > 0
    assert any(m.group(9) != "unknown" for m in dialogues[:-1])  # a rate, hence an ETA, once items end


def test_no_lines_with_a_bar_or_when_set_to_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthgen.pipeline.progress import progress_seconds as _progress_seconds

    monkeypatch.setenv("SYNTHGEN_PROGRESS_SECONDS", "0")
    assert _progress_seconds() is None
    monkeypatch.delenv("SYNTHGEN_PROGRESS_SECONDS")
    assert _progress_seconds() == 30.0


def test_the_fallback_handler_writes_to_the_stderr_of_the_moment(capsys: pytest.CaptureFixture[str]) -> None:
    handler = _Stderr()
    handler.emit(logging.makeLogRecord({"msg": "prefs: 1/2 items"}))
    assert "prefs: 1/2 items" in capsys.readouterr().err and handler.stream is sys.stderr
