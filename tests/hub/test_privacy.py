"""The privacy gate's detector: the variants people really write, and the look-alikes it must let pass.

``PROBE`` is the probe of issue 11 (item 13): 25 common ways personal data appears in student
e-mails; docs/privacy.md reports which of them the gate caught before and after. ``MORE`` adds
variants around the same kinds, ``NEGATIVES`` what the shipped data is full of.
"""

from __future__ import annotations

import json
import re

import pytest

from synthgen.hub.privacy import Hit, find_personal_data, scan_files

STUDENT_CODE = r"\b(?:UCM|ALU)\d{6}\b"
CONTACT = "secretaria@ciencias.ucm.es"  # the office's public address, written into the system prompt


def _dni(n: int) -> str:
    return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"


# (id, text, kind, caught before issue 11): no student-code pattern configured
PROBE = [
    ("email-plain", "escribe a ana.garcia@ucm.es mañana", "email", True),
    ("email-subdomain", "soy Lucia.Martinez@estudiante.ucm.es", "email", True),
    ("email-plus", "mándalo a ana+tfg@gmail.com", "email", True),
    ("email-brackets", "mi correo: ana[at]ucm.es", "email", False),
    ("email-at-dot-words", "ana (at) ucm (dot) es", "email", False),
    ("email-arroba-punto", "escríbeme a ana arroba ucm punto es", "email", False),
    ("email-fullwidth-at", "correo ana＠ucm.es gracias", "email", False),
    ("email-spaced-at", "mi correo es ana @ ucm.es", "email", False),
    ("email-idn", "josé@universidad.españa", "email", False),
    ("phone-intl-es", "llámame al +34 612 345 678.", "phone", True),
    ("phone-mobile-compact", "mi móvil: 612345678", "phone", True),
    ("phone-landline", "fijo 91 394 40 00", "phone", True),
    ("phone-00-prefix", "desde fuera: 0034 612 34 56 78", "phone", True),
    ("phone-mobile-pairs", "móvil 6 12 34 56 78", "phone", True),
    ("phone-uk", "UK: +44 20 7946 0958", "phone", True),
    ("dni-letter", f"DNI {_dni(48123456)}", "dni", True),
    ("dni-dotted-letter", "DNI 12.345.678-Z", "dni", True),
    ("nie-letter", "NIE X1234567L", "nie", True),
    ("dni-no-letter", "mi DNI es el 12345678", "dni", False),
    ("nie-no-letter", "NIE X1234567", "nie", False),
    ("iban-spaced", "cuenta ES91 2100 0418 4502 0005 1332 para la beca", "iban", False),
    ("iban-compact", "IBAN: ES9121000418450200051332", "iban", False),
    ("passport-es", "pasaporte PAA123456", "passport", False),
    ("student-expediente", "mi expediente es UCM123456", "student_code", False),
    ("student-codigo", "código de estudiante ALU004321", "student_code", False),
]
MORE = [
    ("email-curly", "ana{at}ucm{dot}es", "email"),
    ("email-bracket-arroba", "ana [arroba] ciencias [punto] ucm [punto] es", "email"),
    ("email-upper-fullwidth-dot", "ANA＠UCM．ES", "email"),
    ("email-spaced-idn", "marta.núñez @ correo.españa", "email"),
    ("email-upper-words", "pepe (AT) ucm (DOT) es", "email"),
    ("dni-lowercase-letter", f"dni {_dni(30123456).lower()}", "dni"),
    ("dni-no-letter-dotted", "D.N.I.: 12.345.678", "dni"),
    ("dni-no-letter-documento", "documento de identidad 1234567", "dni"),
    ("dni-no-letter-nif", "NIF nº 87654321, gracias", "dni"),
    ("nie-no-letter-dash", "nie y-1234567", "nie"),
    ("nie-lower-dashes", "nie y-1234567-x", "nie"),
    ("iban-gb", "IBAN GB82 WEST 1234 5698 7654 32", "iban"),
    ("iban-de-lower", "de89370400440532013000", "iban"),
    ("iban-then-words", "ES91 2100 0418 4502 0005 1332 Y más", "iban"),
    ("passport-en", "passport no. XDA987654", "passport"),
    ("passport-numero", "número de pasaporte: AB1234567", "passport"),
    ("student-niu", "NIU 5123456", "student_code"),
    ("student-id-en", "student ID: 20231234", "student_code"),
    ("student-expediente-year", "nº de expediente: 2019-04512", "student_code"),
    ("student-numero-alumno", "número de alumno 004321", "student_code"),
]
NEGATIVES = [
    ("date", "el plazo acaba el 12/09/2024 a las 14:00"),
    ("course-and-hours", "curso 2024-2025, de 9:00-14:00 h"),
    ("ects", "60 ECTS en primero y 240 ECTS en total"),
    ("euros", "la tasa es de 1.144,82 € (o 612.345.678 € en total, 712345678 euros)"),
    ("article-and-decree", "según el Art. 12.3 del Real Decreto 1393/2007 y la Orden 612/2023"),
    ("phone-like-thousands", "prompt tokens: 712,345,678"),
    ("phone-like-references", "BOE-A-2021-13468, Real Decreto 822/2021 y resolución 612/987654"),
    ("isbn-13", "ISBN 978-84-376-0494-7"),
    ("isbn-compact", "ISBN 9788437604947"),
    ("sha256", "sha256 1e351f8c1c4bfbef27d0c85347420e41d4daf1d66c370faf5a1285e9a2c456a2"),
    ("hex-id", "dialogue_id be12d0a16c4f2e07"),
    ("example-domain", "soporte@example.com es un ejemplo"),
    ("example-subdomain", "alumno (at) mail.example (dot) org"),
    ("test-tld", "usa nombre@universidad.test"),
    ("invalid-tld", "nombre arroba facultad punto invalid"),
    ("allowed-contact", f"Oficina: {CONTACT}"),
    ("allowed-contact-obfuscated", "Oficina: secretaria [at] ciencias.ucm.es"),
    ("dni-wrong-letter", "12345678A no es un DNI válido (letra incorrecta)"),
    ("eight-digits-no-context", "el 12345678 a las 9"),
    ("dni-mentioned", "el DNI tiene 8 dígitos y una letra"),
    ("iban-bad-checksum", "IBAN ES00 1234 5678 9012 3456 7890"),
    ("iban-wrong-length", "ES91 2100 0418 4502 0005 13"),
    ("passport-mentioned", "trae el pasaporte o el DNI en vigor hasta 2030"),
    ("expediente-reference", "ISBN 978-84-376-0494-7 y expediente 2023/612345"),
    ("expediente-fee", "la gestión de expediente, de 6,20 €, y el seguro escolar"),
    ("expediente-dates", "traslado de expediente del 1 de junio al 15 de julio"),
    ("expediente-course", "tu expediente en el curso 2024-2025"),
    ("student-code-word", "el NIU es un número de 7 cifras"),
    ("at-time", "reunión @ 10:00 en el aula 12.3"),
    ("bibtex", "```bibtex\n@misc{synthgen2026,\n  title = {offline-demo},"),
    ("code-like-no-context", "la asignatura UCM123456 y el grupo ALU004321"),
]


@pytest.mark.parametrize(("text", "kind"), [pytest.param(t, k, id=i) for i, t, k, _ in PROBE])
def test_probe_variant_is_caught(text: str, kind: str) -> None:
    assert [h.kind for h in find_personal_data(text)] == [kind]


@pytest.mark.parametrize(("text", "kind"), [pytest.param(t, k, id=i) for i, t, k in MORE])
def test_more_variants_are_caught(text: str, kind: str) -> None:
    assert [h.kind for h in find_personal_data(text)] == [kind]


@pytest.mark.parametrize("text", [pytest.param(t, id=i) for i, t in NEGATIVES])
def test_look_alikes_are_not_flagged(text: str) -> None:
    assert find_personal_data(text, allowed=frozenset({CONTACT})) == []


def test_the_probe_keeps_its_shape() -> None:
    """docs/privacy.md cites these figures: 25 variants, 12 caught before."""
    assert len(PROBE) == 25 and len({i for i, *_ in PROBE}) == 25
    assert sum(before for *_, before in PROBE) == 12


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("mi correo: ana [at] ucm (dot) es, gracias", "ana [at] ucm (dot) es"),
        ("cuenta ES91 2100 0418 4502 0005 1332 Y más", "ES91 2100 0418 4502 0005 1332"),
        ("DNI: 12.345.678.", "12.345.678"),
        ("pasaporte número PAA123456", "PAA123456"),
        ("mi expediente es UCM123456", "UCM123456"),
    ],
)
def test_a_hit_spans_the_value_not_its_context_word(text: str, value: str) -> None:
    [hit] = find_personal_data(text)
    assert text[hit.start : hit.end] == hit.value == value


def test_key_is_the_same_datum_however_written() -> None:
    assert Hit("email", 0, 0, "Ana (at) UCM [dot] es").key == "ana@ucm.es"
    assert Hit("email", 0, 0, "ana arroba ucm punto es").key == "ana@ucm.es"
    assert Hit("email", 0, 0, "ANA＠UCM．ES").key == "ana@ucm.es"
    assert Hit("iban", 0, 0, "es91 2100-0418").key == "ES9121000418"


def test_a_configured_pattern_replaces_the_heuristic() -> None:
    pattern = re.compile(STUDENT_CODE)
    assert [h.kind for h in find_personal_data("el alumno ALU004321 pregunta", student_code=pattern)] == [
        "student_code"
    ]
    assert find_personal_data("NIU 5123456", student_code=pattern) == []  # the faculty's codes look otherwise


@pytest.mark.parametrize(("text", "kind"), [pytest.param(t, k, id=i) for i, t, k, _ in PROBE])
def test_reports_never_print_the_value(text: str, kind: str) -> None:
    report = scan_files({"run.json": json.dumps({"note": text}, ensure_ascii=False).encode()})
    [finding] = report.findings
    [hit] = find_personal_data(text)
    assert finding.kind == kind and hit.value not in report.render()
    assert "*" in finding.excerpt


# --- the scanner as it was: phones, checksummed IDs, a configured student-code pattern -------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("escribe a juan.perez@ucm.es mañana", "email"),
        ("llámame al +34 612 345 678.", "phone"),
        ("mi móvil: 612345678", "phone"),
        ("fijo 91 394 40 00", "phone"),
        ("(+34) 913944000", "phone"),
        ("UK: +44 20 7946 0958", "phone"),
        (f"DNI {_dni(12345678)}", "dni"),
        ("DNI 12.345.678-Z", "dni"),
        ("NIE X1234567L", "nie"),
        ("nie y-1234567-x", "nie"),
        ("el alumno ALU004321 pregunta", "student_code"),
    ],
)
def test_scanner_finds_personal_data(text: str, kind: str) -> None:
    hits = find_personal_data(text, student_code=re.compile(STUDENT_CODE))
    assert [h.kind for h in hits] == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "el plazo acaba el 12/09/2024 a las 14:00",
        "curso 2024-2025, de 9:00-14:00 h",
        "la tasa es de 1.144,82 € (o 612.345.678 € en total, 712345678 euros)",
        "60 ECTS en primero y 240 ECTS en total",
        "según el Art. 12.3 del Real Decreto 1393/2007 y la Orden 612/2023",
        "12345678A no es un DNI válido (letra incorrecta)",
        "sha256 1e351f8c1c4bfbef27d0c85347420e41d4daf1d66c370faf5a1285e9a2c456a2",
        "ISBN 978-84-376-0494-7 y expediente 2023/612345",
        "prompt tokens: 712,345,678",
        "soporte@example.com es un ejemplo",
        "el 12345678 a las 9",
    ],
)
def test_scanner_ignores_dates_amounts_and_references(text: str) -> None:
    assert find_personal_data(text, student_code=re.compile(STUDENT_CODE)) == []


def test_scan_files_locates_hits_and_allows_the_deployment_contact() -> None:
    files = {
        "run.json": json.dumps({"recipe": "x", "note": "contacto: ana@ucm.es"}).encode(),
        "README.md": b"# t\n\nline two\nOficina: secretaria@ciencias.ucm.es\n",
    }
    report = scan_files(files, allowed=["secretaria@ciencias.ucm.es"])
    [finding] = report.findings
    assert (finding.file, finding.column, finding.kind, finding.excerpt) == (
        "run.json",
        "note",
        "email",
        "contacto: a***@***.es",
    )
    assert not scan_files({"README.md": files["README.md"]}, allowed=["secretaria@ciencias.ucm.es"])
    [line] = scan_files({"README.md": files["README.md"]}).findings
    assert line.line == 4 and "README.md line 4" in line.where
