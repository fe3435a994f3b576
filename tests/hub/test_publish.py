"""``synthgen publish`` end to end against the loopback Hub, and the privacy gate it runs first.

``huggingface_hub`` reads ``HF_ENDPOINT`` at import time, so every publish runs the real CLI in a
subprocess whose environment points at the loopback server (``tests/servers/hub_server.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from synthgen import load_recipe, run
from synthgen.rundir import file_sha256
from tests.conftest import REPO
from tests.servers.hub_server import HubServer

DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"
REPO_ID = "my-faculty/assistant-data"
TOKEN = "hf_WriteToken0123456789secret"
STUDENT_CODE = r"\b(?:UCM|ALU)\d{6}\b"


def _dni(n: int) -> str:
    return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One offline RUN_DIR whose recipe names a student-code pattern and a default repo id."""
    tmp = tmp_path_factory.mktemp("publish-run")
    text = DEMO.read_text(encoding="utf-8").replace("../../seeds/", f"{REPO}/seeds/")
    text = text.replace(
        "  license: cc-by-4.0\n",
        f"  license: cc-by-4.0\n  student_code_pattern: '{STUDENT_CODE}'\n"
        "  hub: {repo_id: my-faculty/from-recipe, private: true}\n",
    )
    (tmp / "recipe.yaml").write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHGEN_HOME", str(tmp / "home"))
        run(load_recipe(tmp / "recipe.yaml"), out=tmp / "run", offline=True, limit=4)
    return tmp / "run"


@pytest.fixture(scope="module")
def built_as_shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline demo as shipped: no student-code pattern, no repo id."""
    tmp = tmp_path_factory.mktemp("publish-demo")
    text = DEMO.read_text(encoding="utf-8").replace("../../seeds/", f"{REPO}/seeds/")
    (tmp / "recipe.yaml").write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHGEN_HOME", str(tmp / "home"))
        run(load_recipe(tmp / "recipe.yaml"), out=tmp / "run", offline=True, limit=4)
    return tmp / "run"


@pytest.fixture
def run_dir(built: Path, tmp_path: Path) -> Path:
    """A private copy: publishing appends to .synthgen/publish.json."""
    return Path(shutil.copytree(built, tmp_path / "run"))


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer(tokens={TOKEN: "write", "hf_read": "read"}) as server:
        yield server


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def publish(
    run_dir: Path, endpoint: str, *args: str, token: str | None = TOKEN, repo_id: str | None = REPO_ID
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=os.environ["HF_HOME"],  # the hermetic, empty one: no saved login
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    command = [sys.executable, "-m", "synthgen.cli", "publish", str(run_dir)]
    command += ["--repo-id", repo_id] if repo_id else []
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


def history(run_dir: Path) -> list[dict[str, object]]:
    return json.loads((run_dir / ".synthgen" / "publish.json").read_text(encoding="utf-8"))


# --- the happy path ------------------------------------------------------------------------------


def test_publish_sends_card_data_and_run_json_only(run_dir: Path, hub: HubServer, tmp_path: Path) -> None:
    result = publish(run_dir, hub.url)
    assert result.returncode == 0, result.stderr
    head = hub.head(REPO_ID)
    assert head in result.stdout and "published" in result.stdout
    assert len(hub.commits(REPO_ID)) == 2  # the repo's initial commit, then ours: one atomic commit
    received = hub.files(REPO_ID)
    local = {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    data = sorted(p for p in local if p.startswith("data/"))
    assert set(received) == {".gitattributes", "README.md", "run.json", *data}
    for path in [*data, "run.json"]:
        assert received[path] == local[path], path  # byte-identical
    assert not any(p.startswith(".synthgen") for p in received)
    for content in [
        *received.values(),
        *hub.received_bodies,
        (run_dir / ".synthgen" / "publish.json").read_bytes(),
    ]:
        assert TOKEN.encode() not in content
    assert TOKEN not in result.stdout + result.stderr
    assert "student_code_pattern" not in result.stderr  # the recipe names one

    card = DatasetCard(received["README.md"].decode("utf-8"))
    assert card.data.to_dict()["license"] == "cc-by-4.0"
    assert f'load_dataset("{REPO_ID}", "sft", revision=REV)' in card.text
    assert "ORG/NAME" not in card.text

    # what the Hub holds loads as the same dataset as the RUN_DIR
    mirror = tmp_path / "mirror"
    for path, content in received.items():
        (mirror / path).parent.mkdir(parents=True, exist_ok=True)
        (mirror / path).write_bytes(content)
    datasets.disable_progress_bars()
    for config in ("sft", "prefs", "seeds"):
        ours, theirs = datasets.load_dataset(str(run_dir), config), datasets.load_dataset(str(mirror), config)
        assert set(ours) == set(theirs)
        for split in ours:
            assert theirs[split].to_list() == ours[split].to_list()

    [record] = history(run_dir)
    assert record["commit_sha"] == head and record["repo_id"] == REPO_ID and record["changed"] is True
    assert record["revision"] == "main"


def test_republish_unchanged_makes_no_commit_and_tag_pins_it(run_dir: Path, hub: HubServer) -> None:
    assert publish(run_dir, hub.url).returncode == 0
    head, commits = hub.head(REPO_ID), hub.count("commit")

    again = publish(run_dir, hub.url)
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout and head in again.stdout
    assert hub.count("commit") == commits and hub.head(REPO_ID) == head

    tagged = publish(run_dir, hub.url, "--tag", "v1")
    assert tagged.returncode == 0, tagged.stderr
    assert hub.repos[REPO_ID].tags == {"v1": head} and hub.count("commit") == commits
    assert f"tag v1 -> {head}" in tagged.stdout

    records = history(run_dir)
    assert [r["changed"] for r in records] == [True, False, False]
    assert {r["commit_sha"] for r in records} == {head} and records[-1]["tag"] == "v1"


def test_hand_edits_on_the_hub_survive_a_republish(run_dir: Path, hub: HubServer) -> None:
    assert publish(run_dir, hub.url).returncode == 0
    card = hub.files(REPO_ID)["README.md"].decode("utf-8")
    edited = card.replace("---\n", "---\nthumbnail: https://example.org/logo.png\n", 1)
    edited = edited.replace("pretty_name: ", "pretty_name: hand edited ", 1)
    edited += "\n## Contact\n\nQuestions about this dataset: the Faculty office.\n"
    hub.put_file(REPO_ID, "README.md", edited.encode())
    hub.put_file(REPO_ID, "images/logo.txt", b"a file a person added")
    hub.put_file(REPO_ID, "data/sft/validation-00000-of-00001.parquet", b"stale: no longer produced")

    result = publish(run_dir, hub.url)
    assert result.returncode == 0, result.stderr
    merged = hub.files(REPO_ID)
    text = merged["README.md"].decode("utf-8")
    meta = DatasetCard(text).data.to_dict()
    assert meta["thumbnail"] == "https://example.org/logo.png"  # a foreign key survives
    assert meta["pretty_name"] == "offline-demo"  # a key we own is regenerated
    assert text.index("## Contact") < text.index("## Citation")  # kept, before our footer
    assert "images/logo.txt" in merged  # not ours: untouched
    assert "data/sft/validation-00000-of-00001.parquet" not in merged  # ours and gone locally: deleted
    assert history(run_dir)[-1]["deleted"] == ["data/sft/validation-00000-of-00001.parquet"]

    commits = hub.count("commit")
    assert "unchanged" in publish(run_dir, hub.url).stdout  # the merge is stable
    assert hub.count("commit") == commits


def test_repo_id_defaults_to_the_recipe_and_revision_is_a_branch(run_dir: Path, hub: HubServer) -> None:
    result = publish(run_dir, hub.url, "--revision", "staging", "--public", repo_id=None)
    assert result.returncode == 0, result.stderr
    repo = hub.repos["my-faculty/from-recipe"]
    assert repo.private is False
    assert "README.md" in hub.files("my-faculty/from-recipe", "staging")
    assert "README.md" not in hub.files("my-faculty/from-recipe", "main")
    assert history(run_dir)[-1]["revision"] == "staging"


# --- refusals and failures: exit codes, nothing sent or changed -----------------------------------


def _rewrite_first_row(path: Path, column: str, edit: object) -> None:
    """Plant a value in a finalized dataset as if the run had generated it (run.json's manifest too)."""
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0][column] = edit(rows[0][column]) if callable(edit) else edit
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    run_dir = path.parents[2]
    run_json = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    run_json["files"][path.relative_to(run_dir).as_posix()] = file_sha256(path)
    (run_dir / "run.json").write_text(json.dumps(run_json), encoding="utf-8")


def test_personal_data_is_refused_with_a_masked_report(run_dir: Path, hub: HubServer) -> None:
    email, dni = "lucia.martinez@estudiante.ucm.es", _dni(48123456)

    def leak(messages: list[dict[str, str]]) -> list[dict[str, str]]:
        messages[1]["content"] += f" Soy {dni}, escribidme a {email} o al 612 345 678, expediente UCM123456."
        return messages

    _rewrite_first_row(run_dir / "data" / "sft" / "train-00000-of-00001.parquet", "messages", leak)
    before = tree_hash(run_dir)
    result = publish(run_dir, hub.url)
    assert result.returncode == 2, result.stderr
    report = result.stderr
    where = "data/sft/train-00000-of-00001.parquet sft/train row 0 messages[1].content"
    for kind in ("email", "dni", "phone", "student_code"):
        assert f"{where}: {kind}: " in report, report
    assert email not in report and dni not in report and "UCM123456" not in report
    assert "l***@***.es" in report and "--allow-pii" in report and "nothing was sent" in report
    assert hub.requests == []  # refused before any request
    assert tree_hash(run_dir) == before

    allowed = publish(run_dir, hub.url, "--allow-pii")
    assert allowed.returncode == 0, allowed.stderr
    assert "personal-data hit(s)" in allowed.stderr
    assert history(run_dir)[-1]["pii_allowed"] == 4


def test_without_a_student_code_pattern_publish_warns_and_checks_only_near_context_words(
    built_as_shipped: Path, hub: HubServer, tmp_path: Path
) -> None:
    run_dir = Path(shutil.copytree(built_as_shipped, tmp_path / "run"))
    result = publish(run_dir, hub.url)
    assert result.returncode == 0, result.stderr  # the shipped demo has nothing the gate mistakes
    warning = "no output.student_code_pattern is configured, so student codes were not checked"
    assert f"note: {warning}" in result.stderr
    notes = history(run_dir)[-1]["notes"]
    assert isinstance(notes, list) and any(warning in note for note in notes)

    _rewrite_first_row(
        run_dir / "data" / "seeds" / "train-00000-of-00001.parquet", "answer", "Mi expediente es 20231234."
    )
    refused = publish(run_dir, hub.url)
    assert refused.returncode == 2, refused.stderr
    assert "seeds/train row 0 answer: student_code: " in refused.stderr and "20231234" not in refused.stderr


def test_the_python_api_raises_what_the_cli_maps_to_exit_codes(run_dir: Path) -> None:
    from synthgen import PersonalDataFound, PublishError, PublishFailed
    from synthgen import publish as publish_api

    _rewrite_first_row(
        run_dir / "data" / "seeds" / "train-00000-of-00001.parquet", "answer", "Escribe a ana@correo.es."
    )
    with pytest.raises(PersonalDataFound) as refused:
        publish_api(run_dir, REPO_ID, token="hf_unused")  # refused before the token is even checked
    assert refused.value.exit_code == 2 and "--allow-pii" in str(refused.value)
    assert [f.kind for f in refused.value.report.findings] == ["email"]  # type: ignore[attr-defined]
    assert issubclass(PublishFailed, PublishError) and PublishFailed("x").exit_code == 1
    assert PublishError("x").exit_code == 2


def test_without_local_state_the_recipe_comes_from_the_card(run_dir: Path, hub: HubServer) -> None:
    (run_dir / ".synthgen" / "state.json").unlink()  # e.g. a RUN_DIR copied without .synthgen/
    _rewrite_first_row(
        run_dir / "data" / "seeds" / "train-00000-of-00001.parquet", "answer", "Alumno ALU000042."
    )
    refused = publish(run_dir, hub.url, repo_id=None)
    assert (
        refused.returncode == 2
        and "data/seeds/train-00000-of-00001.parquet seeds/train row 0 answer: student_code" in refused.stderr
    )
    assert hub.requests == []
    assert publish(run_dir, hub.url, "--allow-pii", repo_id=None).returncode == 0
    assert "run.json" in hub.files("my-faculty/from-recipe")  # output.hub.repo_id, read from the card


@pytest.mark.parametrize(
    ("token", "expected"),
    [(None, "no Hugging Face token"), ("hf_wrong", "rejected the token (401)"), ("hf_read", "(403)")],
)
def test_auth_problems_exit_2_with_the_fix(
    run_dir: Path, hub: HubServer, token: str | None, expected: str
) -> None:
    before = tree_hash(run_dir)
    result = publish(run_dir, hub.url, token=token)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert re.search(r"\((set HF_TOKEN|use a token with write access)", result.stderr)
    assert tree_hash(run_dir) == before
    assert REPO_ID not in hub.repos or len(hub.commits(REPO_ID)) == 1


def test_server_errors_are_retried_then_exit_1(run_dir: Path, hub: HubServer) -> None:
    before = tree_hash(run_dir)
    hub.fail("commit", 503, times=None)
    result = publish(run_dir, hub.url)
    assert result.returncode == 1, result.stderr
    assert "503" in result.stderr and "3 attempt(s)" in result.stderr
    assert hub.count("commit") == 3 and len(hub.commits(REPO_ID)) == 1  # bounded, nothing committed
    assert tree_hash(run_dir) == before

    hub.clear_faults()
    hub.fail("commit", 502, times=1)
    recovered = publish(run_dir, hub.url)
    assert recovered.returncode == 0, recovered.stderr
    assert len(hub.commits(REPO_ID)) == 2


def test_unreachable_hub_exits_1(run_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connection refused
    before = tree_hash(run_dir)
    result = publish(run_dir, f"http://127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    assert "could not reach the Hub" in result.stderr
    assert tree_hash(run_dir) == before


def test_tag_on_another_commit_is_refused_before_committing(run_dir: Path, hub: HubServer) -> None:
    assert publish(run_dir, hub.url, "--tag", "v1").returncode == 0
    hub.put_file(REPO_ID, "README.md", b"---\nlicense: mit\n---\n# replaced by hand\n")
    commits = len(hub.commits(REPO_ID))
    result = publish(run_dir, hub.url, "--tag", "v1")
    assert result.returncode == 2 and "tag 'v1' already points at commit" in result.stderr
    assert len(hub.commits(REPO_ID)) == commits
