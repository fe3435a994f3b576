"""A YAML config file validated into a pydantic model, with ``file:line: field: message (hint)`` errors.

Recipes and eval recipes are hand-written YAML, so a mistake must point at its line, not at a
pydantic location tuple. :func:`load_yaml_model` parses the file, validates it into a model, and
turns every validation error into a :class:`RecipeError` that names the line (from the YAML node
tree), the dotted field and a hint ("did you mean ...?", the allowed keys). It returns the
field-path -> line map too, so the loader's own later checks (missing files, unknown profiles)
can point at the line with :func:`line_for`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from synthgen.errors import RecipeError
from synthgen.textfiles import load_yaml, read_text

__all__ = ["Lines", "dotted", "line_for", "load_yaml_model", "raise_validation", "undotted"]

ModelT = TypeVar("ModelT", bound=BaseModel)
Lines = dict[tuple[str | int, ...], int]

_PATTERN_HINTS = {
    "name": "use lowercase letters, digits, - and _, starting with a letter or digit",
    "language": "use a two-letter ISO 639-1 code such as 'es' or 'en'",
    "api_key_env": "write the NAME of the environment variable holding the key, e.g. OPENAI_API_KEY",
    "repo_id": "write it as org/name",
}
_LICENSES = "use a license id the Hub knows, e.g. cc-by-4.0, cc0-1.0, apache-2.0, or 'other'"
_FIELD_HINTS = {  # (field, kind of error) -> the fix, where the field says it better than the kind
    ("max_concurrency", "less_than_equal"): "requests in flight per endpoint, 1 to 1024; pace a provider "
    "with requests_per_minute or tokens_per_minute instead",
    ("license", "value_error"): _LICENSES,
    ("candidates", "value_error"): "give each candidate its own name: it labels its answers in the summary",
}
_KIND_HINTS = {  # the fix for a kind of error, whatever the field
    "int_parsing": "write a whole number, without quotes",
    "int_type": "write a whole number, without quotes",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number such as 0.5",
    "float_type": "write a number such as 0.5",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write text; put it in quotes if YAML reads it as something else",
    "string_too_short": "write some text",
    "list_type": "write a list: one '- item' per line, or [a, b]",
    "tuple_type": "write a list: one '- item' per line, or [a, b]",
    "dict_type": "write a mapping: 'key: value' lines indented under it",
    "model_type": "write a mapping: 'key: value' lines indented under it",
    "model_attributes_type": "write a mapping: 'key: value' lines indented under it",
    "path_type": "write a path, relative to this file",
}
_FINITE = "write a number; to set no limit, leave the key out (or write null)"
_FIELD_PATH = re.compile(r"^[A-Za-z_]\w*(?:\.\w+|\[\d+\])*$")
_LOADER_FIELDS = ("path", "loaded_seeds", "loaded_personas")  # set by loaders, never written in YAML


def load_yaml_model(path: Path, model: type[ModelT], *, what: str, keys: str) -> tuple[ModelT, Lines]:
    """Read a YAML mapping into ``model``; errors read ``file:line: field: message (hint)``.

    Shared by recipes and eval recipes; returns the field-path -> line map for later checks
    (paths that do not exist, unknown profiles) so they can point at the line too.
    """
    if not path.is_file():
        article = "an" if what[:1] in ("a", "e", "i", "o", "u") else "a"
        raise RecipeError(
            f"{what} file not found", path=path, hint=f"pass the path to {article} {what} YAML file"
        )
    data, root = load_yaml(read_text(path, RecipeError), path, RecipeError)
    if not isinstance(data, dict):
        example = _EXPECTED.get(what, ("", ""))[1]
        empty = "is empty: " if data is None else ""
        raise RecipeError(
            f"{empty}a {what} is a YAML mapping ({keys}, ...)",
            path=path,
            line=root.start_mark.line + 1 if root is not None else 1,
            hint=f"start from {example}" if example else None,
        )
    lines = _line_map(root)
    _refuse_other_kind(data, what, path, lines)
    _refuse_non_finite(data, path, lines)
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        raise_validation(exc, path, lines, model)
        raise  # pragma: no cover


# The files synthgen reads, each told by one key, so a file passed to the wrong command gets one message
# naming what it is and what to do, instead of a schema error per key: (kind, key, what to do with it).
_KINDS = (
    ("a generation recipe", "steps", "run this one with `synthgen run {path}`"),
    ("an eval recipe", "candidates", "evaluate this one with `synthgen evaluate {path}`"),
    ("a seeds file", "seeds", "pass the recipe that names it under `seeds:`"),
    ("a personas file", "personas", "pass the recipe that names it under `personas:`"),
)
_EXPECTED = {  # what= of load_yaml_model -> (kind, an example that ships)
    "recipe": ("a generation recipe", "recipes/offline-demo/recipe.yaml"),
    "eval recipe": ("an eval recipe", "recipes/offline-demo/eval.yaml"),
}


def _refuse_other_kind(data: dict[Any, Any], what: str, path: Path, lines: Lines) -> None:
    """Refuse, in one message, a file that is another kind than ``what`` (lacking its key, having theirs)."""
    expected, example = _EXPECTED.get(what, ("", ""))
    kinds = {kind: (key, todo) for kind, key, todo in _KINDS}
    if not expected or kinds[expected][0] in data:
        return
    for kind, (key, todo) in kinds.items():
        value = data.get(key)
        # a recipe's seeds/personas are paths; a seeds or personas file lists mappings
        listed = isinstance(value, list) and bool(value) and isinstance(value[0], dict)
        if kind != expected and key in data and (listed or key in ("steps", "candidates")):
            raise RecipeError(
                f"this is {kind}, not {expected}",
                path=path,
                line=line_for(lines, (key,)),
                field=key,
                hint=f"pass {expected}, e.g. {example}; {todo.format(path=path)}",
            )


def _refuse_non_finite(value: Any, path: Path, lines: Lines, loc: tuple[str | int, ...] = ()) -> None:
    """Refuse ``.inf``, ``.nan`` and overflowing numbers (``1e400``) anywhere in the file.

    YAML reads them as floats and no number in a recipe means them; ``budget.max_usd: .inf`` used to
    reach run.json as ``Infinity``, which is not JSON. Checked here, before any model, so a generator's
    own config and the quality section are covered too.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise RecipeError(
            "is not a finite number",
            path=path,
            line=line_for(lines, loc),
            field=dotted(loc),
            hint=_FINITE,
        )
    if isinstance(value, dict):
        for key, child in value.items():
            _refuse_non_finite(child, path, lines, (*loc, str(key)))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            _refuse_non_finite(child, path, lines, (*loc, i))


def line_for(lines: Lines, loc: tuple[str | int, ...]) -> int | None:
    """The line of ``loc`` (or of its nearest enclosing key) in a file read by :func:`load_yaml_model`."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def dotted(loc: Iterator[str | int] | tuple[str | int, ...]) -> str:
    """("steps", 1, "name") -> ``steps[1].name``: the field as the user wrote it."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def raise_validation(
    exc: ValidationError,
    path: Path,
    lines: Lines,
    model: type[BaseModel],
    prefix: tuple[str | int, ...] = (),
) -> None:
    """Raise ``exc`` as one :class:`RecipeError` (all messages, one per line) located in the file.

    ``prefix`` places a nested model validated on its own (a step's generator ``config``) in the file.
    """
    first: RecipeError | None = None
    messages = []
    for error in _without_typo_twins(exc.errors()):
        loc = (*prefix, *error["loc"])
        msg = str(error["msg"]).removeprefix("Value error, ")
        field = dotted(loc)
        head = msg.split(": ", 1)[0]
        named = _FIELD_PATH.match(head) and head != field and head.startswith(field)
        if head != msg and named and (field or re.split(r"[.\[]", head)[0] in model.model_fields):
            # a model validator names the precise field in its message (steps[1].from, models.x.temperature)
            field, msg = msg.split(": ", 1)
            loc = undotted(field)
        err = RecipeError(
            msg,
            path=path,
            line=line_for(lines, loc),
            field=field or None,
            hint=_hint(error, _fields_of(model, error["loc"])),
        )
        first = first or err
        messages.append(str(err))
    assert first is not None
    if len(messages) > 1:
        first.args = ("\n".join(messages),)
    raise first


def _without_typo_twins(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Unknown keys first, and no 'missing' error for a key whose typo is the unknown one beside it:
    ``genrator:`` is one mistake with one fix ("did you mean 'generator'?"), not two errors."""
    unknown = [e["loc"] for e in errors if e["type"] == "extra_forbidden" and e["loc"]]

    def twin(error: ErrorDetails) -> bool:
        *parent, name = error["loc"] or ("",)
        near = [str(loc[-1]) for loc in unknown if list(loc[:-1]) == parent]
        return error["type"] == "missing" and bool(difflib.get_close_matches(str(name), near, n=1))

    kept = [e for e in errors if not twin(e)]
    return sorted(kept, key=lambda e: e["type"] != "extra_forbidden")


def _line_map(root: yaml.Node | None) -> Lines:
    """Field path -> 1-based line, from the YAML node tree (pydantic locations map onto it)."""
    lines: Lines = {}

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)
                lines[child] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                walk(value, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


def undotted(field: str) -> tuple[str | int, ...]:
    """``steps[1].name`` -> ("steps", 1, "name"): the inverse of :func:`dotted`, for line lookups."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", field) if p)


def _hint(error: Mapping[str, Any], known: list[str]) -> str | None:
    """The fix for one pydantic error: a field's own hint, else one for the kind of error."""
    kind, name = error["type"], str(error["loc"][-1]) if error["loc"] else ""
    ctx = error.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        return _PATTERN_HINTS.get(name)
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(name, known, n=1)
        return (f"did you mean {close[0]!r}? " if close else "") + f"allowed: {', '.join(known)}"
    if kind == "missing":
        return "add it to the recipe"
    if kind == "finite_number":
        return _FINITE
    if (name, kind) in _FIELD_HINTS:
        return _FIELD_HINTS[name, kind]
    bounds = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}
    if kind in bounds:
        limit = ctx.get(bounds[kind])
        return {
            "ge": f"use {limit} or more",
            "gt": f"use a number above {limit}",
            "le": f"use {limit} or less",
            "lt": f"use a number below {limit}",
        }[bounds[kind]]
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length" if kind == "too_short" else "max_length", 1)
        return f"give at {'least' if kind == 'too_short' else 'most'} {n} {'entry' if n == 1 else 'entries'}"
    if kind == "literal_error":
        return f"use one of {ctx.get('expected')}"
    return _KIND_HINTS.get(kind)


def _fields_of(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Allowed keys at a location, for 'did you mean' on unknown keys."""
    current: Any = model
    in_dict = False
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        if in_dict:  # the key of a dict[str, Model] field, e.g. a profile name under models
            in_dict = False
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        in_dict = getattr(annotation, "__origin__", None) is dict
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        current = candidates[0] if candidates else None
    if current is None:
        return []
    return sorted(
        name if not f.alias else f.alias
        for name, f in current.model_fields.items()
        if name not in _LOADER_FIELDS
    )
