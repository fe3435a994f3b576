"""The Hub's HTTP API as publishing needs it: bounded retries and errors that say what to do.

:class:`HubClient` wraps ``HfApi``: transient failures (5xx, 408, 429, network) are retried
:data:`ATTEMPTS` times with jittered backoff, then become a :class:`~synthgen.errors.PublishError`
that exits 1; a rejected token, a forbidden or missing repo exit 2 with the fix. The token is only
passed to the client and scrubbed from every message. ``huggingface_hub`` reads ``HF_ENDPOINT`` when
imported, so it is imported lazily, inside the calls.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from synthgen.errors import PublishError, PublishFailed

__all__ = ["ATTEMPTS", "HubClient", "blob_oid"]

T = TypeVar("T")
ATTEMPTS = 3


def _transient(exc: BaseException) -> bool:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return False
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        return status is not None and (status >= 500 or status in (408, 429))
    return isinstance(exc, httpx2.TransportError | TimeoutError | ConnectionError)


class HubClient:
    """``HfApi`` calls with bounded retries and errors that say what to do; never shows the token."""

    def __init__(self, repo_id: str, token: str) -> None:
        from huggingface_hub import HfApi

        self.api = HfApi(token=token)
        self.repo_id, self._token = repo_id, token

    def call(
        self,
        action: str,
        fn: Callable[..., T],
        *args: Any,
        passthrough: tuple[type[Exception], ...] = (),
        **kwargs: Any,
    ) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return fn(*args, **kwargs)
            except passthrough:
                raise
            except Exception as exc:
                if attempt < ATTEMPTS and _transient(exc):
                    time.sleep(0.5 * 2 ** (attempt - 1) * random.uniform(0.8, 1.2))
                    continue
                raise self._translate(exc, action, attempt) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _translate(self, exc: Exception, action: str, attempts: int) -> PublishError:
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

        where = f"while {action} ({self.repo_id} on {self.api.endpoint})"
        namespace = self.repo_id.split("/")[0]
        if isinstance(exc, OfflineModeIsEnabled):
            return PublishError(f"HF_HUB_OFFLINE is set {where}", hint="unset HF_HUB_OFFLINE to publish")
        status = (
            exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None else None
        )
        detail = self._scrub(str(getattr(exc, "server_message", None) or exc).strip().splitlines()[0])
        if status == 401:
            return PublishError(
                f"the Hub rejected the token (401) {where}",
                hint="set HF_TOKEN to a valid token or run `hf auth login`; tokens: https://huggingface.co/settings/tokens",
            )
        if status == 403:
            return PublishError(
                f"the token may not write to {self.repo_id} (403) {where}: {detail}",
                hint=f"use a token with write access to the '{namespace}' namespace: a write token, or a "
                "fine-grained token with write permission on it",
            )
        if status == 404:
            return PublishError(
                f"not found (404) {where}: {detail}",
                hint="check --repo-id and that the token can see the repo",
            )
        if status == 412:
            return PublishFailed(
                f"the branch moved {where} (someone else committed)",
                hint="run publish again: it compares with the new head and commits only what differs",
            )
        if status is not None and (status >= 500 or status in (408, 429)):
            return PublishFailed(
                f"the Hub answered {status} {where}, {attempts} attempt(s): {detail}",
                hint="nothing was committed; try again later: publishing again is safe",
            )
        if status is not None:
            return PublishError(f"the Hub refused the request ({status}) {where}: {detail}")
        if _transient(exc):
            reason = self._scrub(str(exc)) or type(exc).__name__
            return PublishFailed(
                f"could not reach the Hub {where}, {attempts} attempt(s): {reason}",
                hint="check the network and HF_ENDPOINT; nothing was committed",
            )
        if isinstance(exc, ValueError):  # e.g. card metadata the Hub's validator rejects
            return PublishError(f"{self._scrub(str(exc))} {where}")
        return PublishFailed(f"{type(exc).__name__} {where}: {self._scrub(str(exc))}")

    def head(self, revision: str) -> tuple[str, bool | None]:
        """(commit sha, private) of the branch, creating the branch from main when missing."""
        from huggingface_hub.errors import RevisionNotFoundError

        read = "reading the branch"
        try:
            info = self.call(
                read,
                self.api.repo_info,
                self.repo_id,
                repo_type="dataset",
                revision=revision,
                passthrough=(RevisionNotFoundError,),
            )
        except RevisionNotFoundError:
            self.call(
                f"creating branch {revision}",
                self.api.create_branch,
                self.repo_id,
                branch=revision,
                repo_type="dataset",
                exist_ok=True,
            )
            info = self.call(read, self.api.repo_info, self.repo_id, repo_type="dataset", revision=revision)
        return str(info.sha), info.private

    def tree(self, sha: str) -> dict[str, tuple[str, bool]]:
        """path -> (oid, is_lfs): the git blob sha1, or the sha256 for LFS/Xet files."""
        from huggingface_hub import RepoFile

        entries = self.call(
            "listing the remote files",
            lambda: list(
                self.api.list_repo_tree(self.repo_id, recursive=True, revision=sha, repo_type="dataset")
            ),
        )
        return {
            e.path: ((e.lfs.sha256, True) if e.lfs else (e.blob_id, False))
            for e in entries
            if isinstance(e, RepoFile)
        }

    def download(self, path: str, sha: str) -> bytes:
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        def get() -> bytes:
            url = hf_hub_url(
                self.repo_id, path, repo_type="dataset", revision=sha, endpoint=self.api.endpoint
            )
            response = get_session().get(
                url, headers=build_hf_headers(token=self._token), follow_redirects=True
            )
            hf_raise_for_status(response)
            return bytes(response.content)

        return self.call(f"downloading {path}", get)

    def tags(self) -> dict[str, str]:
        refs = self.call("listing tags", self.api.list_repo_refs, self.repo_id, repo_type="dataset")
        return {ref.name: ref.target_commit for ref in refs.tags}


def blob_oid(content: bytes, lfs: bool) -> str:
    """The oid :meth:`HubClient.tree` reports for ``content``: sha256 for LFS/Xet, else the git blob sha1."""
    from huggingface_hub.utils.sha import git_hash

    return hashlib.sha256(content).hexdigest() if lfs else git_hash(content)
