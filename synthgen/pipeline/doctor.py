"""``synthgen doctor``: what each server a recipe names really does, before a run relies on it.

The probing lives in :mod:`synthgen.llm.probe` (the llm wing knows no recipe); this module groups a
recipe's profiles by (base URL, model), probes each server afresh (and refreshes the cache that
``structured_output: auto`` reads), and resolves ``auto`` profiles before an online run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from synthgen.llm.probe import Capabilities, capabilities
from synthgen.llm.profile import ModelProfile
from synthgen.recipe import Recipe, load_recipe

__all__ = ["PROBE_ENV", "ServerReport", "doctor", "resolve_auto"]

#: ``SYNTHGEN_PROBE=off`` keeps ``run`` from probing (``auto`` then sends json_schema and falls back to
#: json_object on a rejection): for endpoints that bill per request, or tests scripting each request.
PROBE_ENV = "SYNTHGEN_PROBE"


@dataclass(frozen=True)
class ServerReport:
    """One (base URL, model) of a recipe, the profiles that call it, and what it does."""

    profiles: tuple[str, ...]
    capabilities: Capabilities

    def rows(self) -> list[tuple[str, str]]:
        """The doctor's table, one (label, value) per line."""
        c = self.capabilities

        def said(value: bool | None, yes: str = "yes", no: str = "no") -> str:
            return "unknown" if value is None else yes if value else no

        rows = [
            ("profiles", ", ".join(f"models.{p}" for p in self.profiles)),
            ("endpoint", c.base_url),
            ("model", c.model),
            ("reachable", "yes" if c.reachable else f"no: {c.error}"),
        ]
        if c.reachable:
            rows += [
                ("json_schema", c.json_schema),
                ("json_object", said(c.json_object, "works", "fails")),
                ("sampling varies", said(c.sampling_varies, "yes", "no (temperature/seed ignored)")),
                ("usage reported", said(c.usage_reported)),
                ("rate-limit headers", said(c.rate_limit_headers)),
                ("reasoning field", c.reasoning_field or "none seen"),
                (
                    "token parameter",
                    c.token_parameter
                    + (
                        ""
                        if c.max_completion_tokens_honoured is not False
                        else " (max_completion_tokens ignored)"
                    ),
                ),
                ("probe cost", f"{c.probe_requests} requests, {c.probe_tokens} tokens (not dataset spend)"),
            ]
        rows.append(("synthgen will use", c.plan()))
        return rows


def _servers(
    recipe: Recipe, names: list[str] | None = None, *, each_endpoint: bool = False
) -> dict[tuple[str, str], list[str]]:
    """Profile names by (base URL, model); ``each_endpoint``: a profile listing several servers is in
    the group of each of them, else in one group keyed by the list."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name in names if names is not None else list(recipe.models):
        profile = recipe.models[name]
        for url in profile.endpoints if each_endpoint else (profile.resolved_base_url,):
            groups.setdefault((url, profile.model), []).append(name)
    return groups


def doctor(
    recipe: Recipe | str | Path, *, offline: bool = False, allow_outside_paths: bool = False
) -> list[ServerReport]:
    """Probe every (base URL, model) the recipe's profiles name, afresh; results refresh the cache.

    A profile listing several servers of one model has each of them probed (one report per server)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, allow_outside_paths=allow_outside_paths)
    groups = _servers(recipe, each_endpoint=True)

    async def probe_all() -> list[Capabilities]:
        return [
            await capabilities(recipe.models[names[0]].at(url), offline=offline, refresh=True)
            for (url, _), names in groups.items()
        ]

    found = asyncio.run(probe_all())
    return [ServerReport(tuple(names), caps) for names, caps in zip(groups.values(), found, strict=True)]


def resolve_auto(recipe: Recipe, names: list[str], notify: Callable[[str], None]) -> None:
    """Before an online run: probe (or read the cached probe of) each server an ``auto`` profile calls,
    so the client picks json_schema or json_object from the first request; say what differs."""
    if os.environ.get(PROBE_ENV, "").lower() in ("0", "off", "false", "no"):
        return
    auto = [n for n in names if recipe.models[n].structured_output == "auto"]
    groups = _servers(recipe, auto)

    async def resolve(profile: ModelProfile) -> Capabilities:
        return await capabilities(profile)

    for names_here in groups.values():
        profile = recipe.models[names_here[0]]
        caps = asyncio.run(resolve(profile))
        who = ", ".join(f"models.{n}" for n in names_here)
        if len(profile.endpoints) > 1 and caps.reachable:
            notify(
                f"{who} lists {len(profile.endpoints)} servers of {profile.model}: probed {caps.base_url}, "
                "which stands for all (synthgen doctor probes each)"
            )
        if not caps.reachable:
            notify(f"{who}: could not probe {caps.base_url} ({caps.error}); json_schema is tried first")
        elif caps.structured_output != "json_schema" or caps.token_parameter != "max_completion_tokens":
            notify(f"{who} on {caps.base_url}: synthgen will use {caps.plan()}")
