"""Publish a RUN_DIR to the Hugging Face Hub: privacy-gated, one atomic commit, idempotent, pinnable.

What leaves the machine is the card (``README.md``), the parquet files under ``data/``, the seeds
made from documents (``generated/``) and ``run.json``; ``.synthgen/`` never does. Before anything is
sent, :mod:`synthgen.hub.privacy` scans all of it and refuses personal data unless ``allow_pii``. Then:
check the token, create the repo (and branch) if needed, read the remote tree at the branch head,
merge our card with the remote one (hand-made YAML keys and sections survive), and commit only if a
file's git blob sha or LFS sha256 differs, in one commit whose parent is the head we compared with.
The commit sha (and tag) is returned, printed by the CLI and appended to
``RUN_DIR/.synthgen/publish.json`` so a trainer can pin ``dataset_revision``.

``huggingface_hub`` reads ``HF_ENDPOINT`` when imported, so it is imported here lazily. The token
(argument, ``HF_TOKEN`` or the saved login) is passed to the client only: never printed or written.
The Hub calls go through :class:`synthgen.hub.client.HubClient`: transient failures (5xx, 429,
network) are retried a bounded number of times, then exit 1; a missing or rejected token, a forbidden
repo and personal data exit 2 with the fix. A failure changes nothing in the RUN_DIR.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from synthgen.card.merge import merge_card, split_card, with_repo
from synthgen.errors import PersonalDataFound, PublishError
from synthgen.hub.client import HubClient, blob_oid
from synthgen.hub.privacy import PrivacyReport, find_personal_data, scan_files
from synthgen.rundir import RunDir

__all__ = ["PublishResult", "publish", "publishable_files"]

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_REF = re.compile(r"^[\w][\w.\-/]*$")
# said on every publish without a pattern: the heuristic is no promise, the faculty's pattern is
_NO_STUDENT_CODE_PATTERN = (
    "no output.student_code_pattern is configured, so student codes were not checked, except next to "
    "words like 'expediente', 'NIU' or 'student id'; set the faculty's pattern in the recipe "
    "(docs/privacy.md)"
)
_OWNED = re.compile(r"^(?:data/.+\.parquet|generated/.+)$")  # remote files we delete when gone locally


@dataclass(frozen=True)
class PublishResult:
    """What was published where; ``commit_sha`` is the revision to pin."""

    repo_id: str
    revision: str
    commit_sha: str
    commit_url: str
    changed: bool
    tag: str | None = None
    private: bool | None = None
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of what the commit holds
    pii_allowed: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- the local side ----------------------------------------------------------------------------


def publishable_files(run_dir: Path) -> dict[str, bytes]:
    """Path in repo -> bytes of everything a publish sends (never ``.synthgen/``)."""
    rd = RunDir(run_dir)
    files: dict[str, bytes] = {}
    for path in (rd.card, rd.run_json):
        if not path.is_file():
            raise PublishError(
                f"{path.name} is missing: not a finished RUN_DIR",
                path=run_dir,
                hint="run `synthgen run` first",
            )
        files[path.name] = path.read_bytes()
    data = rd.published_files()
    if not any(p.suffix == ".parquet" for p in data):
        raise PublishError("no data files under data/", path=run_dir, hint="run `synthgen run` first")
    for path in data:
        files[path.relative_to(run_dir).as_posix()] = path.read_bytes()
    return files


def _recipe(run_dir: Path, run_json: Mapping[str, Any], card: str) -> dict[str, Any]:
    """The recipe that made the run: run.json's, the local state's, or the one embedded in the card."""
    if isinstance(run_json.get("recipe"), dict):
        return dict(run_json["recipe"])
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        recipe = (RunDir(run_dir).read_state() or {})["recipe"]
        if isinstance(recipe, dict):
            return recipe
    for heading, text in split_card(card)[2]:
        block = re.search(r"^```yaml\n(.*?)^```", text, re.S | re.M)
        if heading.strip().lower() == "recipe" and block:
            with contextlib.suppress(yaml.YAMLError):
                loaded = yaml.safe_load(block.group(1))
                if isinstance(loaded, dict):
                    return loaded
    return {}


def _privacy_gate(files: Mapping[str, bytes], recipe: Mapping[str, Any], allow_pii: bool) -> PrivacyReport:
    output = recipe.get("output") or {}
    pattern = output.get("student_code_pattern")
    try:
        student_code = re.compile(pattern) if pattern else None
    except re.error as exc:
        raise PublishError(
            f"output.student_code_pattern is not a valid regular expression: {exc}",
            field="output.student_code_pattern",
            hint="fix the recipe's pattern, e.g. '\\b[A-Z]{2}\\d{6}\\b'",
        ) from None
    # the deployment contact the author wrote into the system prompt is published on purpose
    allowed = [
        hit.value
        for hit in find_personal_data(str(recipe.get("system_prompt", "")), student_code=student_code)
    ]
    report = scan_files(files, student_code_pattern=pattern, allowed=allowed)
    if report and not allow_pii:
        raise PersonalDataFound(
            report.render()
            + "\nfix: remove or anonymise these values in the seeds, documents or prompts and "
            "run again, or pass --allow-pii (allow_pii=True) if publishing them is lawful and intended",
            report=report,
        )
    return report


def _check_reviewed(run_dir: Path) -> None:
    """``output.require_review``: every published sft and prefs row carries a person's decision."""
    rd = RunDir(run_dir)
    missing = {
        config: sum(not row.get("reviewed") for row in rd.read_rows(config)) for config in ("sft", "prefs")
    }
    if any(missing.values()):
        raise PublishError(
            "output.require_review is set and "
            + ", ".join(f"{n} {config} row(s)" for config, n in missing.items() if n)
            + " were published without a review",
            path=run_dir,
            field="output.require_review",
            hint=f"review them in `synthgen review {run_dir}`, then apply: `synthgen review --apply {run_dir}`",
        )


def _record(run_dir: Path, record: Mapping[str, Any]) -> None:
    """Append to ``.synthgen/publish.json`` (a JSON list), atomically."""
    path = RunDir(run_dir).publish_record
    history: list[Any] = []
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(path.read_text(encoding="utf-8"))
        history = loaded if isinstance(loaded, list) else []
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps([*history, dict(record)], indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    os.replace(tmp, path)


# --- the commit ----------------------------------------------------------------------------------


def publish(
    run_dir: str | Path,
    repo_id: str | None = None,
    *,
    private: bool | None = None,
    revision: str | None = None,
    tag: str | None = None,
    token: str | None = None,
    allow_pii: bool = False,
) -> PublishResult:
    """Publish ``run_dir`` to the dataset repo ``repo_id`` (default: the recipe's ``output.hub.repo_id``).

    ``private`` applies when the repo is created (default: the recipe's ``output.hub.private``, else
    True); an existing repo keeps its visibility. ``revision`` is the branch (default ``main``,
    created from main when missing); ``tag`` tags the published commit. Unchanged content makes no
    commit: the result then carries the head's sha with ``changed=False``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PublishError("no such RUN_DIR", path=run_dir, hint="pass the --out folder of `synthgen run`")
    with RunDir(run_dir).locked("publish"):  # no run may swap the dataset while it is uploaded
        return _publish(
            run_dir, repo_id, private=private, revision=revision, tag=tag, token=token, allow_pii=allow_pii
        )


def _publish(
    run_dir: Path,
    repo_id: str | None,
    *,
    private: bool | None,
    revision: str | None,
    tag: str | None,
    token: str | None,
    allow_pii: bool,
) -> PublishResult:
    files = publishable_files(run_dir)
    try:
        run_json = json.loads(files["run.json"])
    except ValueError as exc:
        raise PublishError(f"run.json is not valid JSON: {exc}", path=run_dir / "run.json") from None
    mismatched = RunDir(run_dir).manifest_problems()
    if mismatched:
        raise PublishError(
            "the data files do not match run.json (a finalize was interrupted, or files were edited): "
            + "; ".join(mismatched[:5]),
            path=run_dir,
            hint="re-run the same `synthgen run` command: it finishes the interrupted swap",
        )
    recipe = _recipe(run_dir, run_json, files["README.md"].decode("utf-8"))
    if (recipe.get("output") or {}).get("require_review"):
        _check_reviewed(run_dir)
    hub_cfg = (recipe.get("output") or {}).get("hub") or {}
    repo_id = repo_id or hub_cfg.get("repo_id")
    if not repo_id:
        raise PublishError(
            "no repo id", hint="pass --repo-id ORG/NAME or set output.hub.repo_id in the recipe"
        )
    if not _REPO_ID.match(repo_id):
        raise PublishError(f"invalid repo id {repo_id!r}", field="repo_id", hint="write it as org/name")
    branch = revision or "main"
    for label, ref in (("revision", branch), ("tag", tag)):
        if ref is not None and (not _REF.match(ref) or ".." in ref or ref.endswith((".lock", "/"))):
            raise PublishError(
                f"invalid {label} {ref!r}", field=label, hint="use letters, digits, '.', '-', '_'"
            )
    private = private if private is not None else bool(hub_cfg.get("private", True))
    files["README.md"] = with_repo(files["README.md"].decode("utf-8"), repo_id).encode("utf-8")
    report = _privacy_gate(files, recipe, allow_pii)

    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, get_token
    from huggingface_hub import constants as hf_constants

    if hf_constants.HF_HUB_OFFLINE:
        raise PublishError("HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE to publish")
    token = token or get_token()
    if not token:
        raise PublishError(
            "no Hugging Face token",
            hint="set HF_TOKEN to a write token or run `hf auth login`; tokens: https://huggingface.co/settings/tokens",
        )
    hub = HubClient(repo_id, token)
    hub.call("checking the token", hub.api.whoami)
    hub.call(
        "creating the repo", hub.api.create_repo, repo_id, repo_type="dataset", private=private, exist_ok=True
    )
    head, is_private = hub.head(branch)
    remote = hub.tree(head)
    if "README.md" in remote:
        theirs = hub.download("README.md", head).decode("utf-8", errors="replace")
        files["README.md"] = merge_card(files["README.md"].decode("utf-8"), theirs).encode("utf-8")

    uploads = [
        p
        for p, content in files.items()
        if p not in remote or blob_oid(content, remote[p][1]) != remote[p][0]
    ]
    deletes = sorted(p for p in remote if _OWNED.match(p) and p not in files)
    tags = hub.tags() if tag else {}
    if tag and tag in tags and (uploads or deletes or tags[tag] != head):
        raise PublishError(
            f"tag {tag!r} already points at commit {tags[tag]}",
            field="tag",
            hint="tags pin a release: choose a new tag name",
        )
    if uploads or deletes:
        steps = run_json.get("steps", {})
        rows = ", ".join(f"{name} {c.get('rows', 0)} rows" for name, c in steps.items())
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=p, path_or_fileobj=files[p]) for p in uploads
        ]
        operations += [CommitOperationDelete(path_in_repo=p) for p in deletes]
        info = hub.call(
            "committing",
            hub.api.create_commit,
            repo_id,
            operations,
            commit_message=f"synthgen: publish {run_json.get('recipe', 'run')} "
            f"({str(run_json.get('fingerprint', ''))[:12]})",
            commit_description=f"{rows}. Recipe fingerprint {run_json.get('fingerprint')}; "
            f"synthgen {run_json.get('versions', {}).get('synthgen', '?')}.",
            repo_type="dataset",
            revision=branch,
            parent_commit=head,
        )
        sha, url = str(info.oid), str(info.commit_url)
    else:
        sha, url = head, f"{hub.api.endpoint}/datasets/{repo_id}/commit/{head}"
    if tag and tag not in tags:
        hub.call(
            f"creating tag {tag}", hub.api.create_tag, repo_id, tag=tag, revision=sha, repo_type="dataset"
        )

    notes = []
    if is_private is not None and is_private != private:
        notes.append(
            f"{repo_id} already exists and is {'private' if is_private else 'public'}: visibility unchanged "
            "(change it in the repo settings)"
        )
    if report.findings:
        notes.append(f"published with {len(report.findings)} personal-data hit(s): --allow-pii")
    if not (recipe.get("output") or {}).get("student_code_pattern"):
        notes.append(_NO_STUDENT_CODE_PATTERN)
    if not run_json.get("complete", True):
        notes.append("the run is incomplete (items not started); the card says so")
    result = PublishResult(
        repo_id=repo_id,
        revision=branch,
        commit_sha=sha,
        commit_url=url,
        changed=bool(uploads or deletes),
        tag=tag,
        private=is_private,
        uploaded=sorted(uploads),
        deleted=deletes,
        files={p: hashlib.sha256(content).hexdigest() for p, content in sorted(files.items())},
        pii_allowed=len(report.findings),
        notes=notes,
    )
    _record(
        run_dir,
        {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "endpoint": hub.api.endpoint,
            "fingerprint": run_json.get("fingerprint"),
            **result.to_json(),
        },
    )
    return result
