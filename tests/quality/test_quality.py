"""Quality filters: each reason fires on a hand-built row that deserves it, and a clean row passes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from synthgen.quality.dedup import NearDuplicates
from synthgen.quality.filters import QualityConfig, Rejection, check_dialogue, check_preference
from synthgen.quality.text import detect_language, tokenize
from synthgen.records import OUTPUT_KINDS
from synthgen.seeds import Seed

SYSTEM = "Eres el asistente de la Facultad de Ciencias. Responde con amabilidad y precisión."
QUESTION = "¿Cuándo es el plazo de matrícula ordinaria para estudiantes de continuación?"
ANSWER = (
    "Los estudiantes de continuación se matriculan por automatrícula en la sede electrónica del 28 de julio "
    "al 12 de septiembre. Desde el 21 de julio cada estudiante puede consultar su cita de matrícula, "
    "asignada según los créditos superados y la nota media."
)
SEEDS = {
    "matricula-plazo": Seed(id="matricula-plazo", topic="matricula", question=QUESTION, answer=ANSWER),
    "library-hours": Seed(
        id="library-hours",
        topic="library",
        language="en",
        question="When is the faculty library open?",
        answer="The faculty library is open Monday to Friday from 8:00 to 21:00, and on Saturdays from "
        "9:00 to 14:00 during exam periods.",
    ),
}
SEEDS["tfg-deposito"] = Seed(
    id="tfg-deposito",
    topic="tfg",
    question="¿Dónde hay que depositar el trabajo de fin de grado en la facultad?",
    answer="Hay que depositar el trabajo de fin de grado en la secretaría del departamento, diez días "
    "hábiles antes de la defensa.",
)
CONFIG = QualityConfig()


def dialogue(*turns: str, seed: str = "matricula-plazo") -> dict[str, Any]:
    """An sft row: the system prompt, then turns alternating user/assistant."""
    messages = [{"role": "system", "content": SYSTEM}]
    messages += [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(turns)]
    return {"messages": messages, "seed_ids": [seed], "dialogue_id": "d1"}


CLEAN = (
    "Hola, una duda: ¿cuándo es el plazo de matrícula ordinaria para estudiantes de continuación?",
    ANSWER,
    "¿Y dónde puedo ver mi cita de matrícula?",
    "Tu cita de matrícula aparece en la sede electrónica a partir del 21 de julio.",
    "Vale, gracias.",
    "De nada, ¡mucha suerte con la matrícula!",
)


def check(*turns: str, config: QualityConfig = CONFIG, language: str = "es", seed: str = "matricula-plazo"):
    return check_dialogue(dialogue(*turns, seed=seed), seeds=SEEDS, language=language, config=config)


def reason(*turns: str, **kwargs: Any) -> str | None:
    found = check(*turns, **kwargs)
    return found.reason if found else None


# -- text -------------------------------------------------------------------------------------------


def test_tokenize_keeps_accented_letters_and_splits_on_punctuation() -> None:
    assert tokenize("¿Cuándo abre la Matrícula?") == ["cuándo", "abre", "la", "matrícula"]
    assert tokenize("El pingüino del AÑO: 3,5 créditos") == [
        "el",
        "pingüino",
        "del",
        "año",
        "3",
        "5",
        "créditos",
    ]
    assert tokenize("matri\u0301cula") == ["matrícula"]  # decomposed input (NFD) is composed first
    assert tokenize("STRASSE Straße") == ["strasse", "strasse"]  # casefold, not lower
    assert tokenize("e-mail_secretaría") == ["e", "mail", "secretaría"]


def test_detect_language() -> None:
    assert detect_language("Vale, gracias.") == ("und", 0.0)
    language, probability = detect_language(
        "Gracias por la información, me ha sido muy útil para la matrícula."
    )
    assert language == "es" and probability >= 0.8
    assert detect_language("The enrollment period opens in September; please contact the office.")[0] == "en"


def test_config_forbids_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        QualityConfig.model_validate({"near_duplicate_treshold": 0.9})


# -- dialogues ----------------------------------------------------------------------------------------


def test_clean_spanish_dialogue_passes() -> None:
    assert check(*CLEAN) is None


def test_clean_english_dialogue_passes_in_an_english_recipe() -> None:
    turns = (
        "Hi, quick question: when is the faculty library open?",
        SEEDS["library-hours"].answer,
        "Thanks, that was all.",
        "You are welcome, good luck with your exams!",
    )
    assert check(*turns, language="en", seed="library-hours") is None
    hidden = ("When is the library open?", "Based on the context, it opens at 8:00 from Monday to Friday.")
    assert reason(*hidden, language="en", seed="library-hours") == "hidden_context"


@pytest.mark.parametrize(
    ("messages", "detail"),
    [
        ([], "non-empty list"),
        ([{"role": "system", "content": SYSTEM}], "no user turn"),
        (
            [{"role": "user", "content": "Hola"}, {"role": "user", "content": "¿Hay alguien?"}],
            "expected assistant",
        ),
        ([{"role": "assistant", "content": "Hola"}], "expected user"),
        ([{"role": "user", "content": QUESTION}], "end with an assistant"),
        ([{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "  "}], "is empty"),
        (
            [{"role": "user", "content": QUESTION}, {"role": "bot", "content": ANSWER}],
            "not a {role, content}",
        ),
        (
            [{"role": "user", "content": QUESTION}, {"role": "system", "content": SYSTEM}],
            "expected assistant",
        ),
    ],
)
def test_bad_structure(messages: list[dict[str, str]], detail: str) -> None:
    found = check_dialogue({"messages": messages, "seed_ids": []}, seeds=SEEDS, language="es", config=CONFIG)
    assert found is not None and found.reason == "bad_structure" and detail in found.detail


@pytest.mark.parametrize(
    "answer",
    [
        '{"message": "El plazo es del 15 al 31 de julio."}',
        '"answer": "El plazo es del 15 al 31 de julio."',
        '[{"role": "assistant", "content": "El plazo es del 15 al 31 de julio."}]',
        '  {"respuesta" : "Del 15 al 31 de julio", "fuentes": []}  ',
    ],
)
def test_a_json_fragment_is_not_prose(answer: str) -> None:
    assert reason(CLEAN[0], answer) == "json_fragment"
    assert check_pair(pair(chosen=answer)) == "json_fragment"


@pytest.mark.parametrize(
    ("question", "answer"),
    [  # SmolLM2-135M behind llama-server, kept before this check (issue 12 item 7)
        ("La día de este curso debe estar a la hora.", "La día de este curso debe estar a la hora."),
        ("¿Cuándo es el plazo de matrícula?", "cuando es el plazo de matricula"),
    ],
)
def test_an_answer_that_repeats_the_student_is_an_echo(question: str, answer: str) -> None:
    found = check(question, answer)
    assert found is not None and found.reason == "echo" and "messages[2] (assistant)" in found.detail
    assert reason(CLEAN[0], ANSWER, question, answer) == "echo"  # in any turn, not only the first
    assert reason(question, answer + " En la sede electrónica.") != "echo"  # an answer that adds to it


def test_prose_with_braces_or_quotes_is_kept() -> None:
    assert reason(CLEAN[0], 'El plazo (del 15 al 31 de julio) está en la web: "Matrícula" {ver}.') is None


def test_length_bounds_per_turn() -> None:
    assert reason(CLEAN[0], "Sí" * 2001) == "length"
    assert reason(CLEAN[0], "?") == "length"
    found = check(CLEAN[0], ANSWER, config=QualityConfig(max_turn_chars=100))
    assert found == Rejection(
        "length", f"messages[2] (assistant) has {len(ANSWER)} characters, outside 2..100"
    )


def test_language_rejects_an_english_turn_but_never_a_short_one() -> None:
    english = "Continuing students enrol online from 28 July to 12 September, after their appointment."
    found = check(CLEAN[0], english)
    assert found is not None and found.reason == "language" and "'en'" in found.detail
    assert reason(CLEAN[0], english, config=QualityConfig(check_language=False)) is None
    # Even with no confidence required at all, a short turn is never judged.
    assert check(*CLEAN, config=QualityConfig(language_confidence=0.0)) is None
    assert reason("Vale, gracias.", "De nada.", config=QualityConfig(language_confidence=0.0)) is None


def test_role_flip_in_either_direction() -> None:
    flipped_user = "Estimado estudiante, ¿en qué puedo ayudarte hoy?"
    assert reason(CLEAN[0], ANSWER, flipped_user, "Quería saber la fecha de la matrícula.") == "role_flip"
    flipped_assistant = "Tengo una duda: soy estudiante de Física y no sé cuándo me toca matricularme."
    found = check(CLEAN[0], flipped_assistant)
    assert found is not None and found.reason == "role_flip" and "tengo una duda" in found.detail


def test_ai_disclaimer() -> None:
    disclaimer = "Como modelo de lenguaje no veo tu expediente, pero la matrícula va del 28 de julio al 12."
    assert reason(CLEAN[0], disclaimer) == "ai_disclaimer"
    assert reason(CLEAN[0], "Soy una IA; la automatrícula abre el 28 de julio.") == "ai_disclaimer"


@pytest.mark.parametrize(
    "opening",
    [
        "Según la información proporcionada",
        "segun la informacion proporcionada",
        "SEGÚN EL CONTEXTO",
        "En los datos que me has dado",
    ],
)
def test_hidden_context_is_matched_case_and_accent_insensitively(opening: str) -> None:
    found = check(CLEAN[0], f"{opening}, la matrícula va del 28 de julio al 12 de septiembre.")
    assert found is not None and found.reason == "hidden_context"


def test_hidden_context_is_an_assistant_check_only() -> None:
    student = "Según el contexto de mi carta de admisión, ¿cuándo es el plazo de matrícula?"
    assert reason(student, ANSWER) is None


def test_answer_leak_by_shared_ngram() -> None:
    leak = "¿Es verdad que os matriculáis por automatrícula en la sede electrónica del 28 de julio al 12?"
    found = check(leak, ANSWER)
    assert found is not None and found.reason == "answer_leak" and "matricula-plazo" in found.detail


def test_answer_leak_by_content_words() -> None:
    leak = (
        "¿Es cierto que la automatrícula en sede electrónica va desde julio (28) hasta septiembre (12), "
        "y que la cita, asignada por créditos superados y nota media, se puede consultar el 21?"
    )
    found = check(leak, ANSWER)
    assert found is not None and found.reason == "answer_leak" and "content words" in found.detail


def test_no_leak_when_the_student_asks_the_seed_question_or_echoes_the_assistant() -> None:
    echo = "O sea, que se matriculan por automatrícula en la sede electrónica del 28 de julio, ¿no?"
    assert check(QUESTION, ANSWER, echo, "Exacto, ese es el plazo.") is None
    # This answer restates its question at length: asking the question is not knowing the answer.
    tfg = SEEDS["tfg-deposito"]
    assert check(tfg.question, tfg.answer, seed="tfg-deposito") is None
    leak = "¿Lo deposito en la secretaría del departamento, diez días hábiles antes de la defensa?"
    assert reason(leak, tfg.answer, seed="tfg-deposito") == "answer_leak"


def test_missing_referral_on_an_uncovered_question() -> None:
    uncovered = "¿Cuánto cuesta aparcar la moto en el campus?"
    found = check(CLEAN[0], ANSWER, uncovered, "Aparcar la moto en el campus cuesta veinte euros al mes.")
    assert found is not None and found.reason == "missing_referral" and "messages[3]" in found.detail
    referral = "No tengo información sobre el aparcamiento; te recomiendo consultar en la Conserjería."
    assert check(CLEAN[0], ANSWER, uncovered, referral) is None
    assert (
        reason(
            CLEAN[0],
            ANSWER,
            uncovered,
            "Cuesta veinte euros al mes.",
            config=QualityConfig(require_referral=False),
        )
        is None
    )


def test_covered_question_needs_no_referral() -> None:
    covered = "¿Puedo consultar mi cita de matrícula antes del 28 de julio?"
    assert check(CLEAN[0], ANSWER, covered, "Sí, desde el 21 de julio ya ves tu cita en la sede.") is None


def test_custom_patterns_with_a_trailing_wildcard() -> None:
    config = QualityConfig(referral_patterns=["conserjer*"])
    uncovered = "¿Cuánto cuesta aparcar la moto en el campus?"
    assert check(CLEAN[0], ANSWER, uncovered, "Pregunta en Conserjería, por favor.", config=config) is None
    found = check(CLEAN[0], ANSWER, uncovered, "Te recomiendo consultar la web del campus.", config=config)
    assert found is not None and found.reason == "missing_referral"


# -- preference pairs -----------------------------------------------------------------------------------


def pair(chosen: str = ANSWER, rejected: str = "No lo sé, pregunta a otro.", **extra: Any) -> dict[str, Any]:
    return {
        "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "score_chosen": 9.0,
        "score_rejected": 2.0,
        "seed_ids": ["matricula-plazo"],
        **extra,
    }


def check_pair(row: dict[str, Any], config: QualityConfig = CONFIG) -> str | None:
    found = check_preference(row, seeds=SEEDS, language="es", config=config)
    return found.reason if found else None


def test_clean_preference_pair_passes() -> None:
    assert check_pair(pair()) is None
    assert check_pair(pair(), QualityConfig(min_judge_score=8)) is None


@pytest.mark.parametrize(
    "row",
    [
        pair(chosen=ANSWER, rejected=ANSWER.upper()),
        pair(prompt=[{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}]),
        {**pair(), "chosen": [{"role": "assistant", "content": ANSWER}] * 2},
        {**pair(), "rejected": [{"role": "user", "content": "No lo sé."}]},
        pair(prompt="¿Cuándo es la matrícula?"),
    ],
)
def test_preference_bad_structure(row: dict[str, Any]) -> None:
    assert check_pair(row) == "bad_structure"


def test_preference_filters() -> None:
    assert check_pair(pair(chosen="x" * 5000)) == "length"
    assert (
        check_pair(pair(chosen="Continuing students enrol online from 28 July to 12 September."))
        == "language"
    )
    assert check_pair(pair(chosen="Como inteligencia artificial, creo que es en julio.")) == "ai_disclaimer"
    assert check_pair(
        pair(chosen="Según los hechos, la matrícula es del 28 de julio al 12 de septiembre.")
    ) == ("hidden_context")
    assert check_pair(pair(score_chosen=5.0), QualityConfig(min_judge_score=7)) == "low_judge_score"
    assert check_pair(pair(score_chosen=None), QualityConfig(min_judge_score=7)) == "bad_structure"
    assert check_pair(pair(score_chosen=5.0)) is None  # no minimum configured


# -- duplicates -----------------------------------------------------------------------------------------

WORDS = tokenize(
    "Los estudiantes de continuación se matriculan por automatrícula en la sede electrónica desde finales "
    "de julio hasta mediados de septiembre y pueden consultar su cita, asignada según créditos y nota."
)


def test_exact_duplicate_ignores_case_punctuation_and_spacing() -> None:
    seen = NearDuplicates()
    assert seen.add("a", "¿Cuándo es la matrícula?") is None
    assert seen.add("b", "cuándo   es la MATRÍCULA") == "a"
    assert seen.check("c", "¡Cuándo es la matrícula!") == Rejection(
        "duplicate", "duplicate of a (Jaccard 1.00)"
    )


def test_planted_near_duplicate_is_found_and_a_different_text_is_not() -> None:
    assert len(WORDS) == 30
    seen = NearDuplicates()
    assert seen.add("original", " ".join(WORDS)) is None
    assert (
        seen.add("other", "¿Dónde se deposita el trabajo de fin de grado y cuántos días antes de la defensa?")
        is None
    )
    planted = [*WORDS[:-1], "puntuación"]  # one word changed: Jaccard 27/29 on 3-shingles
    found = seen.check("planted", " ".join(planted))
    assert found is not None and found.reason == "near_duplicate" and "original" in found.detail
    different = "el TFG se deposita en la secretaría del departamento diez días antes de la defensa oral " * 2
    assert seen.add("different", different) is None


@pytest.mark.parametrize(
    ("position", "threshold", "found"), [(15, 0.8, True), (15, 0.85, False), (0, 0.85, True)]
)
def test_near_duplicate_threshold_is_exact_jaccard_on_3_shingles(
    position: int, threshold: float, found: bool
) -> None:
    """A word changed mid-text alters 3 shingles (Jaccard 25/31 = 0.81), at an end only 1 (27/29 = 0.93)."""
    seen = NearDuplicates(threshold)
    seen.add("original", " ".join(WORDS))
    changed = [*WORDS[:position], "cambiada", *WORDS[position + 1 :]]
    assert (seen.add("changed", " ".join(changed)) == "original") is found


def test_near_duplicates_are_deterministic_and_keys_unique() -> None:
    texts = [" ".join([*WORDS[:i], "x", *WORDS[i + 1 :]]) for i in range(0, 30, 3)]
    runs = []
    for _ in range(2):
        seen = NearDuplicates(0.7)
        runs.append([seen.add(f"k{i}", text) for i, text in enumerate(texts)])
    assert runs[0] == runs[1] and runs[0][0] is None and any(runs[0][1:])
    with pytest.raises(ValueError, match="already added"):
        seen.add("k0", "otro texto distinto")


def test_dedup_text_uses_user_turns_and_prompt_plus_chosen() -> None:
    assert OUTPUT_KINDS["sft"].dedup_text(dialogue(*CLEAN)) == "\n".join(CLEAN[::2])
    assert OUTPUT_KINDS["prefs"].dedup_text(pair()) == f"{QUESTION}\n{ANSWER}"


# What a 135M teacher produced: turns too short for language id, about nothing, passing every filter.
JUNK = ("satisfied", "satisficado", "Satisfiesto.", "suppitato")


@pytest.mark.parametrize("junk", JUNK)
def test_a_short_turn_that_is_no_word_of_the_language_is_not_words(junk: str) -> None:
    found = check(CLEAN[0], ANSWER, "¿Y dónde puedo ver mi cita de matrícula?", junk)
    assert found is not None and found.reason == "not_words" and "messages[4]" in found.detail
    assert reason(CLEAN[0], ANSWER, junk, "De nada.") == "not_words"  # a student's junk turn too


def test_a_dialogue_of_junk_turns_is_rejected() -> None:
    assert reason(*JUNK) == "not_words"
    assert reason("Suppitato satisfied", "Satisfiesto.") == "not_words"
    assert reason("satisficado satisfied suppitato", "Satisfiesto suppitato.") == "language"  # long enough


@pytest.mark.parametrize(
    "short", ["Vale, gracias.", "¿Y dónde lo entrego?", "¿Matrícula?", "De acuerdo.", "Ok", "¿Y el plazo?"]
)
def test_good_short_spanish_turns_pass(short: str) -> None:
    assert check(CLEAN[0], ANSWER, short, "Tu cita de matrícula aparece en la sede electrónica.") is None


def test_good_short_english_turns_pass() -> None:
    library = SEEDS["library-hours"]
    for short in ("Thanks!", "And on Sundays?", "Got it, thanks."):
        opening = "Hi, quick question: when is the faculty library open?"
        reply = "The library is closed on Sundays; please ask at the office."
        assert check(opening, library.answer, short, reply, language="en", seed="library-hours") is None
    assert reason("When is it open?", "Suppitato.", language="en", seed="library-hours") == "not_words"


def test_an_opening_that_shares_no_word_with_the_seed_is_off_topic() -> None:
    found = check("¿Cuánto cuesta aparcar la moto en el campus universitario?", "No tengo esa información.")
    assert found is not None and found.reason == "off_topic" and "messages[1]" in found.detail
    assert (
        reason("¿Qué tal la cafetería?", "No tengo esa información.", config=QualityConfig(check_topic=False))
        is None
    )


def test_an_answer_that_neither_uses_the_facts_nor_refers_on_is_off_topic() -> None:
    found = check(CLEAN[0], "Satisfecho estoy con todo, siempre contento y feliz.")
    assert found is not None and found.reason == "off_topic" and "messages[2]" in found.detail
    assert check(CLEAN[0], "No dispongo de ese dato; consulta con la Secretaría.") is None
