"""``synthgen doctor`` / ``validate --online`` and the resolution of ``structured_output: auto`` before
a run, against the loopback server bending the protocol as real servers do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import synthgen
from synthgen.cli import main
from synthgen.llm.offline import offline_reply
from tests.conftest import REPO
from tests.servers.openai_server import OpenAIServer, ServerConfig

DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"


def plausible(request: dict[str, Any]) -> str:
    return str(offline_reply(request)["choices"][0]["message"]["content"])


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Any:
    started: list[OpenAIServer] = []

    def start(**config: Any) -> OpenAIServer:
        srv = OpenAIServer(ServerConfig(**config)).__enter__()
        started.append(srv)
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
        return srv

    yield start
    for srv in started:
        srv.__exit__(None, None, None)


def test_doctor_prints_what_each_server_does_and_what_synthgen_will_use(server: Any) -> None:
    srv = server(json_schema_mode="reject", temperature_ignored=True)
    result = CliRunner().invoke(main, ["doctor", str(DEMO)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("endpoint") == 2  # gpt-4o-mini and gpt-4o: one table per (base URL, model)
    assert "models.assistant, models.judge" in out
    assert srv.url in out
    assert "json_schema         rejected" in out
    assert "no (temperature/seed ignored)" in out
    assert "synthgen will use   json_object + the schema in the prompt" in out


def test_doctor_api_returns_one_report_per_server(server: Any) -> None:
    server(ignore_max_completion_tokens=True, reasoning_field="reasoning")
    reports = synthgen.doctor(DEMO)
    assert [r.capabilities.model for r in reports] == ["gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"]
    assert all(r.capabilities.token_parameter == "max_tokens" for r in reports)
    assert dict(reports[0].rows())["reasoning field"] == "reasoning"


def test_doctor_exits_1_when_a_server_cannot_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    with OpenAIServer() as srv:
        url = srv.url
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    result = CliRunner().invoke(main, ["doctor", str(DEMO)])
    assert result.exit_code == 1
    assert "connection refused" in result.output


def test_validate_online_runs_the_same_checks(server: Any) -> None:
    server(json_schema_mode="ignore")
    result = CliRunner().invoke(main, ["validate", str(DEMO), "--online"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")
    assert "json_schema         ignored" in result.output


def test_a_run_resolves_auto_before_its_first_paid_call(
    server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYNTHGEN_PROBE")
    seen: list[str] = []

    def record(body: dict[str, Any]) -> str:
        seen.append(body["response_format"]["type"] if "response_format" in body else "text")
        return plausible(body)

    srv = server(json_schema_mode="reject", responder=record)
    notes: list[str] = []
    result = synthgen.run(DEMO, out=tmp_path / "run", limit=1, notify=notes.append)
    assert result.steps["dialogues"].rows >= 1
    # each model's probe was rejected once; no request of the run itself was
    assert srv.stats()["status"]["500"] == 2
    assert "json_schema" not in seen  # run requests went out as json_object from the first one
    assert any("synthgen will use json_object" in note for note in notes)
