"""How synthgen speaks to each server: what the probe found, the structured-output mode, the parameters.

A server is known by (base URL, model). ``structured_output: auto`` is decided here from the probe's
capabilities, and falls back to json_object for the rest of the run the first time a server rejects
json_schema; the request parameters carry what the server honours (``max_tokens`` where it ignores
``max_completion_tokens``), the sample's seed and the schema in the mode chosen.
"""

from __future__ import annotations

import logging
from typing import Any

import pydantic

from synthgen.errors import ProviderError
from synthgen.llm.probe import Capabilities, cached
from synthgen.llm.profile import ModelProfile
from synthgen.llm.structured import response_format

__all__ = ["SAMPLE_HEADER", "Dialects"]

log = logging.getLogger("synthgen.llm.client")

SAMPLE_HEADER = "x-synthgen-sample"  # the k-th of K samples: servers that cache by body tell them apart


class Dialects:
    """Per server: its probed capabilities and the json_schema rejections learnt during the run."""

    def __init__(self, *, offline: bool = False) -> None:
        self.offline = offline
        self._capabilities: dict[tuple[str, str], Capabilities | None] = {}
        self._rejects_json_schema: set[tuple[str, str]] = set()  # learnt from a rejection under auto

    def use(self, caps: Capabilities) -> None:
        """Decide ``structured_output: auto`` and the token parameter from this probe result."""
        self._capabilities[(caps.base_url, caps.model)] = caps

    def capabilities(self, profile: ModelProfile) -> Capabilities | None:
        """The probe result for ``profile``'s server: handed in, else the cache's (no request here)."""
        key = (profile.resolved_base_url, profile.model)
        if key not in self._capabilities:
            self._capabilities[key] = None if self.offline else cached(profile)
        return self._capabilities[key]

    def structured_mode(self, profile: ModelProfile) -> str:
        """The mode a schema request goes out in: the profile's, or for ``auto`` what the server does.

        ``auto`` without a probe result sends json_schema and falls back to json_object the first
        time the server rejects it (the offline provider enforces schemas).
        """
        if profile.structured_output != "auto":
            return profile.structured_output
        if self.offline:
            return "json_schema"
        key = (profile.resolved_base_url, profile.model)
        if key in self._rejects_json_schema:
            return "json_object"
        caps = self.capabilities(profile)
        return caps.structured_output if caps is not None else "json_schema"

    def fall_back(
        self, exc: ProviderError, profile: ModelProfile, schema: type[pydantic.BaseModel] | None
    ) -> bool:
        """Under ``auto``, a server that rejects json_schema is asked again in json_object mode."""
        if (
            schema is None
            or profile.structured_output != "auto"
            or self.structured_mode(profile) != "json_schema"
            or not (exc.field or "").endswith(".structured_output")
        ):
            return False
        self._rejects_json_schema.add((profile.resolved_base_url, profile.model))
        log.warning(
            "%s rejects json_schema (%s); profile %r uses json_object with the schema in the prompt",
            profile.resolved_base_url,
            exc.message,
            profile.name or profile.model,
        )
        return True

    def params(
        self, profile: ModelProfile, schema: type[pydantic.BaseModel] | None, sample: int
    ) -> dict[str, Any]:
        """The request's parameters as ``create`` takes them (:func:`wire.poster` sends them as is)."""
        params: dict[str, Any] = {"model": profile.model, **profile.sampling()}
        caps = None if self.offline else self.capabilities(profile)
        # Ollama ignores max_completion_tokens: the limit the profile sets must still hold
        if caps is not None and caps.token_parameter == "max_tokens" and "max_completion_tokens" in params:
            limit = params.pop("max_completion_tokens")
            params.setdefault("max_tokens", limit)
        if profile.seed is not None:
            params["seed"] = profile.seed + sample  # K samples with one seed would be K equal answers
        if profile.extra_body:
            params["extra_body"] = profile.extra_body
        params["extra_headers"] = {SAMPLE_HEADER: str(sample)}
        if schema is not None:
            if self.structured_mode(profile) == "json_schema":
                params["response_format"] = response_format(schema)
            else:
                params["response_format"] = {"type": "json_object"}
        return params
