"""``synthgen init``: a new faculty's starting point (seeds, personas, recipe) to edit, then validate.

The starter answers end with a placeholder sentence (:data:`synthgen.seeds.PLACEHOLDERS`) that the seeds
loader refuses, so ``validate`` and ``run`` stop until the faculty has written its real answers.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from synthgen.errors import ConfigError
from synthgen.seeds import PLACEHOLDERS

__all__ = ["scaffold"]

_CONTENT = {
    "es": {
        "system_prompt": "Eres el asistente virtual de la Facultad. Respondes con precisión y amabilidad a las "
        "consultas de estudiantes sobre normativa, trámites y servicios. Si no sabes algo, lo dices y remites a "
        "la Secretaría de la Facultad.",
        "seeds": [
            {
                "id": "matricula-plazo",
                "topic": "matricula",
                "question": "¿Cuándo es el plazo de matrícula?",
                "answer": "La matrícula ordinaria se realiza en julio a través de la sede electrónica. "
                + PLACEHOLDERS["es"],
            },
            {
                "id": "certificado-solicitud",
                "topic": "certificados",
                "question": "¿Cómo pido un certificado académico?",
                "answer": "El certificado se solicita en la sede electrónica y se emite en un plazo de diez días "
                "hábiles. " + PLACEHOLDERS["es"],
            },
        ],
        "personas": [
            {
                "id": "primer-curso",
                "name": "Estudiante de primer curso",
                "situation": "Acaba de llegar a la universidad y no conoce los trámites.",
                "register": "informal",
                "urgency": "media",
                "typical_mistakes": ["Confunde la matrícula con la preinscripción."],
            },
            {
                "id": "familia",
                "name": "Madre o padre de un estudiante",
                "situation": "Escribe en nombre de su hija, con tono formal.",
                "register": "formal",
                "urgency": "alta",
                "typical_mistakes": ["Pide datos que solo puede consultar el estudiante."],
            },
        ],
    },
    "en": {
        "system_prompt": "You are the Faculty's virtual assistant. You answer students' questions about "
        "regulations, procedures and services accurately and kindly. When you do not know, you say so and refer "
        "them to the Faculty office.",
        "seeds": [
            {
                "id": "enrolment-deadline",
                "topic": "enrolment",
                "question": "When is the enrolment period?",
                "answer": "Ordinary enrolment takes place in July through the online portal. "
                + PLACEHOLDERS["en"],
            },
            {
                "id": "certificate-request",
                "topic": "certificates",
                "question": "How do I request an academic certificate?",
                "answer": "Certificates are requested online and issued within ten working days. "
                + PLACEHOLDERS["en"],
            },
        ],
        "personas": [
            {
                "id": "first-year",
                "name": "First-year student",
                "situation": "Just arrived at university and does not know the procedures.",
                "register": "informal",
                "urgency": "medium",
                "typical_mistakes": ["Confuses enrolment with pre-registration."],
            },
            {
                "id": "parent",
                "name": "Parent of a student",
                "situation": "Writes on behalf of their daughter.",
                "register": "formal",
                "urgency": "high",
                "typical_mistakes": ["Asks for data only the student can access."],
            },
        ],
    },
}


def _slug(name: str) -> str:
    """A recipe name the schema accepts (it keys the default RUN_DIR), whatever the folder is called."""
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_") or "my-faculty"


def scaffold(directory: str | Path, *, language: str = "es") -> list[Path]:
    """Write seeds/seeds.yaml, seeds/personas.yaml and recipe.yaml under ``directory``."""
    if language not in _CONTENT:
        raise ConfigError(
            f"no starter content for language {language!r}",
            field="--language",
            hint=f"use one of {', '.join(_CONTENT)} and translate the prompts you need",
        )
    root = Path(directory)
    targets = [root / "seeds" / "seeds.yaml", root / "seeds" / "personas.yaml", root / "recipe.yaml"]
    existing = [p for p in targets if p.exists()]
    if existing:
        raise ConfigError(
            f"{existing[0]} already exists",
            path=existing[0],
            hint="choose an empty directory; init never overwrites",
        )
    content = _CONTENT[language]
    recipe = {
        "name": _slug(root.resolve().name),
        "version": 1,
        "language": language,
        "seed": 13,
        "seeds": "seeds/seeds.yaml",
        "personas": "seeds/personas.yaml",
        "grounding": "closed_book",
        "system_prompt": content["system_prompt"],
        "models": {
            "student": {"model": "gpt-4o-mini-2024-07-18", "temperature": 1.0},
            "assistant": {"model": "gpt-4o-2024-08-06", "temperature": 0.7},
            "judge": {"model": "gpt-4o-2024-08-06", "temperature": 0.0},
        },
        "steps": [
            {
                "name": "dialogues",
                "generator": "dialogue",
                "config": {"per_seed": 4, "turns": [2, 4], "student": "student", "assistant": "assistant"},
            },
            {
                "name": "prefs",
                "generator": "preference",
                "from": "dialogues",
                "config": {"candidates": 4, "judge": "judge"},
            },
        ],
        "output": {"test_fraction": 0.1, "license": "cc-by-4.0"},
        "budget": {"max_usd": 10},
    }
    targets[0].parent.mkdir(parents=True, exist_ok=True)
    dump = lambda data: yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)  # noqa: E731
    targets[0].write_text(f"language: {language}\n" + dump({"seeds": content["seeds"]}), encoding="utf-8")
    targets[1].write_text(dump({"personas": content["personas"]}), encoding="utf-8")
    targets[2].write_text(dump(recipe), encoding="utf-8")
    return targets
