"""Text as the filters and the evaluation compare it: tokens, accent-folded forms, content words, language.

Text is compared in two forms: :func:`tokenize` (casefolded, NFC, accents kept: "matrícula" is one
token) and a folded form with accents stripped, so that phrase patterns and word overlaps survive a
student typing "matricula" or "segun".
"""

from __future__ import annotations

import copy
import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from py3langid.langid import LanguageIdentifier


__all__ = ["LANGUAGES", "detect_language", "tokenize"]


LANGUAGES = ("es", "en", "ca", "gl", "eu", "pt", "fr", "it", "de")


MIN_DETECT_CHARS = 20  # below this, identifiers guess; such turns ("Vale, gracias.") are never rejected


# Function words and courtesy fillers (accents folded): what a question is *about* is the rest.
_STOP = {
    "es": """
    a al algo alguien algun alguna algunas alguno algunos ante antes aqui asi aun bien buenas bueno
    buenos cada casi como con contra cual cuales cualquier cuando cuanto cuanta cuantos cuantas de
    del desde donde dos el ella ellas ellos en entonces entre era eres es esa esas ese eso esos esta
    estan estar estas este esto estos estoy fue ha hace hacer hacerlo han has hasta hay he hola la
    las le les lo los mas me mi mis mucho muchas muchos muy nada ni no nos nosotros o os otra otro
    para pero poco por porque pregunta preguntar puede pueden puedo pues que quiero quien quisiera
    se sea ser si sido sin sobre soy su sus tal tambien tan tanto te tendria tener tengo ti tiene
    tienen toda todas todo todos tu tus un una unas uno unos usted vosotros y ya yo consulta
    duda gracias perfecto genial vale ok okay entendido saber necesito queria ayuda informacion
    util servido claro acuerdo favor porfa
    """,
    "en": """
    about an and any are as at be been but by can could did do does for from had has have hello
    hi how i if in is it its just me my no not of on or please so thank thanks that the their them
    then there these they this to was we what when where which who why will with would you your
    question great know need want help information
    """,
}
STOPWORDS = frozenset(word for words in _STOP.values() for word in words.split())


# Everyday words beyond the function words: a short turn of the recipe's language has one of them (or
# a word of its seed), while a weak model's junk ("satisficado", "suppitato") has none.
_COMMON = {
    "es": """
    ah oh eh uf vaya anda mil muchisimas muchisimo estupendo excelente fenomenal buena claro exacto
    correcto cierto listo okey vale dale guay adios luego chao nos vemos hoy manana ayer ahora
    despues luego tampoco aqui alli ahi alla dia dias semana mes ano plazo fecha hora cual cuales
    entrego entregar presento presentar pago pagar hago voy va vas van sirve vale valdria seria
    creo veo entiendo comprendo sabes sabe mejor peor igual vez veces otro otra solo tambien
    asi pues bien mal nunca siempre ya todavia aun seguro segura verdad primero primera siguiente
    gracias perdon disculpa disculpe hola buenos buenas tardes noches senor senora profe profesor
    """,
    "en": """
    yes yeah yep ok okay sure fine cool great perfect nice good awesome right got understood
    thank thanks bye goodbye see later today tomorrow now then also too only still again more
    less much many one two first next last deadline date time day week where when who which why
    how what can could should would do does did submit hand pay apply go get make take sorry
    """,
}


def known_words(language: str) -> frozenset[str] | None:
    """Common words of ``language`` (accents folded), or None for a language without a list."""
    if language not in _STOP:
        return None
    return _known(language)


@functools.lru_cache(maxsize=4)
def _known(language: str) -> frozenset[str]:
    return frozenset(_STOP[language].split()) | frozenset(_COMMON[language].split())


_TOKEN = re.compile(r"[^\W_]+")


_NON_WORD = re.compile(r"[\W_]+")


def tokenize(text: str) -> list[str]:
    """Word tokens that keep accented letters, ñ and ü (ASCII tokenisers cut "matrícula" in two)."""
    # NFC first so decomposed accents join their letter; again after casefold, which may decompose.
    text = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
    return _TOKEN.findall(text)


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fold(text: str) -> str:
    """Casefolded, accents stripped, punctuation as single spaces: the form patterns are matched on."""
    return " ".join(_NON_WORD.sub(" ", strip_accents(text).casefold()).split())


def folded_tokens(text: str) -> list[str]:
    return [strip_accents(t) for t in tokenize(text)]


def content_words(tokens: Iterable[str]) -> set[str]:
    return {t for t in tokens if t not in STOPWORDS and (len(t) > 1 or t.isdigit())}


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@functools.lru_cache(maxsize=1)
def language_model() -> LanguageIdentifier:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier  # ~0.7 s: load on first use only

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@functools.lru_cache(maxsize=16)
def _identifier(languages: tuple[str, ...]) -> LanguageIdentifier:
    identifier = copy.copy(language_model())  # set_languages rebinds arrays: the copy leaves the base intact
    identifier.set_languages([lang for lang in languages if lang in language_model().labels])
    return identifier


def detect_language(text: str, languages: Iterable[str] = LANGUAGES) -> tuple[str, float]:
    """(ISO 639-1 code, probability); ``("und", 0.0)`` for texts too short to tell."""
    if len(text.strip()) < MIN_DETECT_CHARS:
        return "und", 0.0
    language, probability = _identifier(tuple(sorted(set(languages)))).classify(text)
    return str(language), float(probability)
