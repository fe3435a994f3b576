"""Versioned prompt templates, shipped as package data per language and role.

A template file ``synthgen/prompts/<language>/<role>.txt`` starts with a ``version: N`` line and a
``---`` line; the rest is a :class:`string.Template` body (``$name`` placeholders, so JSON braces in
prompts need no escaping). Each template's sha256 goes into ``run.json`` and the dataset card, so a
dataset says exactly which prompts made it. A recipe may override a role with its own file.

A plugin ships its own roles the same way, as ``<package>/prompts/<language>/<role>.txt``, and names
the package in ``Generator.prompt_package``: its templates are then looked up, overridden, hashed and
recorded exactly like synthgen's own.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from synthgen.errors import ConfigError

__all__ = ["PromptLibrary", "PromptTemplate"]

FALLBACK_LANGUAGE = "en"


@dataclass(frozen=True)
class PromptTemplate:
    role: str
    language: str
    version: int
    body: str
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()

    @property
    def fields(self) -> set[str]:
        return set(string.Template(self.body).get_identifiers())

    def render(self, **values: object) -> str:
        try:
            return string.Template(self.body).substitute({k: str(v) for k, v in values.items()})
        except KeyError as exc:
            raise ConfigError(
                f"template needs ${exc.args[0]}, which the generator does not provide",
                path=self.source,
                field=self.role,
                hint=f"available: {', '.join(sorted(values))}",
            ) from None
        except ValueError as exc:
            raise ConfigError(
                str(exc), path=self.source, field=self.role, hint="write $$ for a literal $"
            ) from None

    @classmethod
    def parse(cls, text: str, *, role: str, language: str, source: str) -> PromptTemplate:
        header, sep, body = text.partition("\n---\n")
        if not sep or not header.startswith("version:"):
            raise ConfigError(
                "a prompt template starts with 'version: N' and a '---' line",
                path=source,
                field=role,
                hint="add the two header lines above the prompt text",
            )
        try:
            version = int(header.split(":", 1)[1].strip())
        except ValueError:
            raise ConfigError("version must be an integer", path=source, field=role) from None
        return cls(role=role, language=language, version=version, body=body.strip() + "\n", source=source)


class PromptLibrary:
    """Templates for one language; a role missing in that language falls back to English."""

    def __init__(
        self,
        language: str,
        overrides: Mapping[str, str | Path] | None = None,
        packages: Mapping[str, str] | None = None,
    ) -> None:
        """``overrides``: role -> a recipe's own file; ``packages``: role -> the plugin package shipping it."""
        self.language = language
        self.overrides = {k: Path(v) for k, v in (overrides or {}).items()}
        self.packages = dict(packages or {})
        self._loaded: dict[str, PromptTemplate] = {}

    def get(self, role: str) -> PromptTemplate:
        if role not in self._loaded:
            self._loaded[role] = self._load(role)
        return self._loaded[role]

    def render(self, role: str, **values: object) -> str:
        return self.get(role).render(**values)

    def _load(self, role: str) -> PromptTemplate:
        if role in self.overrides:
            path = self.overrides[role]
            if not path.is_file():
                raise ConfigError(
                    f"prompt file not found: {path}",
                    field=f"prompts.{role}",
                    hint="paths are relative to the recipe file",
                )
            return PromptTemplate.parse(
                path.read_text(encoding="utf-8"), role=role, language=self.language, source=str(path)
            )
        # a plugin's package first (a role it does not ship falls through to synthgen's own)
        packages = dict.fromkeys((self.packages.get(role, "synthgen"), "synthgen"))
        for package in packages:
            for language in (self.language, FALLBACK_LANGUAGE):
                resource = resources.files(package) / "prompts" / language / f"{role}.txt"
                if resource.is_file():
                    return PromptTemplate.parse(
                        resource.read_text(encoding="utf-8"),
                        role=role,
                        language=language,
                        source=f"{package}/prompts/{language}/{role}.txt",
                    )
        where = " or ".join(f"{p}/prompts/{self.language}/{role}.txt" for p in packages)
        raise ConfigError(
            f"no prompt template for role {role!r}",
            field=f"prompts.{role}",
            hint=f"ship {where}, or override it in the recipe",
        )

    def hashes(self) -> dict[str, dict[str, object]]:
        """Role -> version and sha256 of every template loaded so far (provenance)."""
        return {
            r: {"version": t.version, "sha256": t.sha256, "language": t.language, "source": t.source}
            for r, t in sorted(self._loaded.items())
        }
