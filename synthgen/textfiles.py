"""Hand-written input files read safely: text and YAML, with errors at the line and column to fix.

Recipes, eval recipes, seeds and personas are typed by people or exported by spreadsheets, so reading
them must fail clearly and cheaply:

- a byte that is not UTF-8, or a NUL character (a binary or UTF-16 file), is named by line and column,
  never by byte offset alone;
- a YAML syntax error points at the line the user must fix: where an unclosed quote or bracket was
  opened, or where a key lost its colon, not the line after it where the parser gave up;
- a YAML alias bomb ("billion laughs": a few hundred bytes of nested anchors that expand to billions of
  values) is refused while composing, before anything walks the expanded tree. Each alias is counted
  as the number of values it stands for (memoised per anchor), so normal use (a few ``<<: *defaults``
  merges) costs nothing and a bomb is stopped at the alias that crosses :data:`MAX_ALIAS_VALUES`.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.reader import ReaderError

from synthgen.errors import SynthgenError

__all__ = ["MAX_ALIAS_VALUES", "BoundedLoader", "load_yaml", "position", "read_text"]

# Values that aliases may add to a document. A recipe or seeds file that shares a block through anchors
# adds hundreds; the smallest bombs add billions. 100k expanded values validate in well under a second.
MAX_ALIAS_VALUES = 100_000

_ENCODINGS = {"cp1252": "Windows-1252 (cp1252)"}
_NOT_TEXT = "it may be binary or UTF-16: save it as UTF-8 text"


def position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, column) of ``text[index]``: what an editor shows, unlike an offset."""
    start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - start + 1


def read_text(path: Path, error: type[SynthgenError], *, fallback: str | None = None) -> str:
    """UTF-8 (BOM optional), else ``fallback`` (spreadsheets on Windows save cp1252); refuse NUL characters.

    Errors are ``error(path, line)`` with the column in the message, so the user can jump to the byte.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot be read: {exc.strerror}", path=path) from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise error("is UTF-16 text", path=path, line=1, hint="save the file as UTF-8")
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    body = data[skip:]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad, message, decoded = exc.start, "is not UTF-8", None
        if fallback is not None:
            try:
                decoded = body.decode(fallback)
            except UnicodeDecodeError as other:  # report where the encoding that got further stopped
                bad = max(bad, other.start)
                message = f"is neither UTF-8 nor {_ENCODINGS.get(fallback, fallback)}"
        if decoded is None:
            line_start = body.rfind(b"\n", 0, bad) + 1
            line = body.count(b"\n", 0, bad) + 1
            column = len(body[line_start:bad].decode("utf-8", errors="replace")) + 1
            message += f": byte 0x{body[bad]:02x} at column {column} (byte offset {skip + bad})"
            raise error(message, path=path, line=line, hint="save the file as UTF-8") from None
        text = decoded
    nul = text.find("\x00")
    if nul >= 0:
        line, column = position(text, nul)
        message = f"holds a NUL character (U+0000) at column {column}"
        raise error(message, path=path, line=line, hint=_NOT_TEXT)
    return text


class _AliasBomb(ComposerError):
    """Aliases expand past :data:`MAX_ALIAS_VALUES`, or an alias contains itself."""


class BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that counts what each alias stands for while composing and refuses a bomb."""

    max_alias_values = MAX_ALIAS_VALUES

    def compose_document(self) -> yaml.Node | None:
        self._alias_values = 0
        self._sizes: dict[int, int] = {}
        return super().compose_document()

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is PyYAML's own error, raised below
                self._alias_values += self._expanded(target, event.anchor, event.start_mark)
                if self._alias_values > self.max_alias_values:
                    limit = f"{self.max_alias_values:,}"
                    problem = f"aliases expand to more than {limit} values (at *{event.anchor})"
                    raise _AliasBomb(None, None, problem, event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Also refuse a key written twice, which PyYAML would silently resolve to the last one
        (a merged ``<<`` key may still be overridden: that is what merging is for)."""
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            if key in first:
                problem = f"found duplicate key {key!r} (first at line {first[key]})"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def _expanded(self, node: yaml.Node, anchor: str, mark: yaml.error.Mark) -> int:
        """How many values ``node`` stands for with every alias inside it expanded; memoised per node."""
        sizes = self._sizes
        stack: list[tuple[yaml.Node, bool]] = [(node, False)]
        while stack:
            current, children_done = stack.pop()
            if id(current) in sizes:
                continue
            if current.end_mark is None:  # still being composed: the alias sits inside its own anchor
                problem = f"the alias *{anchor} refers to a value that contains it"
                raise _AliasBomb(None, None, problem, mark)
            children = _children(current)
            if children_done:
                sizes[id(current)] = 1 + sum(sizes[id(child)] for child in children)
            else:
                stack.append((current, True))
                stack.extend((child, False) for child in children if id(child) not in sizes)
        return sizes[id(node)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_yaml(
    text: str, path: Path, error: type[SynthgenError], loader: type[BoundedLoader] = BoundedLoader
) -> tuple[Any, yaml.Node | None]:
    """One YAML document as Python data and as its node tree (for line numbers); ``error`` on any problem."""
    try:
        instance = loader(text)  # the reader refuses control characters here, before parsing
        try:
            node = instance.get_single_node()
            return (instance.construct_document(node) if node is not None else None), node
        finally:
            instance.dispose()
    except yaml.YAMLError as exc:
        message, line, hint = _describe(exc, text)
        raise error(f"not valid YAML{message}", path=path, line=line, hint=hint) from None
    except RecursionError:
        hint = "YAML this deep is not a recipe or seeds file; write nested values as a flat list"
        raise error("not valid YAML: nested too deeply", path=path, line=1, hint=hint) from None


_GENERIC = "check indentation (spaces, not tabs), colons and quotes"
# Parser contexts whose error surfaces after the line to fix: the context mark is where it was opened.
_OPENED = {
    "while scanning a quoted scalar": (
        "the quote opened here is never closed",
        "close it on the value's last line; inside '...' write a quote as '', inside \"...\" as \\\"",
    ),
    "while scanning a simple key": (
        "this line has no 'key: value' colon",
        "add ': ' after the key, or indent the line under the key whose value it continues",
    ),
    "while parsing a flow mapping": (
        "the '{' opened here is not closed",
        "close it with '}', or write the entries as an indented block, one 'key: value' a line",
    ),
    "while parsing a flow sequence": (
        "the '[' opened here is not closed",
        "close it with ']', or write the items as an indented block, one '- item' a line",
    ),
}


def _describe(exc: yaml.YAMLError, text: str) -> tuple[str, int | None, str]:
    """(``", column C: what is wrong"``, line, hint) for a YAML error, at the line the user must fix."""
    if isinstance(exc, ReaderError):  # a control character; its position is an index into ``text``
        line, column = position(text, exc.position)
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return f", column {column}: control character U+{char:04X}", line, f"remove it; {_NOT_TEXT}"
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f": {exc}", None, _GENERIC
    problem, mark = exc.problem or str(exc), exc.problem_mark
    context, opened = exc.context or "", exc.context_mark
    if isinstance(exc, _AliasBomb):
        hint = (
            "write the repeated values out; keep anchors for small shared blocks such as `<<: *defaults`: "
            "nested aliases multiply, as in a 'billion laughs' file"
        )
        return f": {problem}", mark.line + 1, hint
    if context in _OPENED and opened is not None and opened.line != mark.line:
        message, hint = _OPENED[context]
        return (
            f", column {opened.column + 1}: {message} ({problem} at line {mark.line + 1})",
            opened.line + 1,
            hint,
        )
    where = f", column {mark.column + 1}: "
    if "'\\t'" in problem:
        return where + "a tab character", mark.line + 1, "indent with spaces: YAML does not allow tabs"
    lines = text.split("\n")
    source = lines[mark.line] if mark.line < len(lines) else ""
    if problem.startswith("expected <block end>") and mark.column > len(source) - len(source.lstrip()):
        hint = "quote the whole value, or remove what follows its closing quote or bracket"
        return where + f"unexpected text after the value ({problem})", mark.line + 1, hint
    if problem.startswith("expected <block end>"):
        hint = "indent this line exactly like the keys (or '- ' items) it belongs with, using spaces"
        return (
            where + f"this line's indentation does not match the lines above ({problem})",
            mark.line + 1,
            hint,
        )
    if problem == "mapping values are not allowed here":
        hint = "quote a value that contains ': ' (\"...\"), or fix this line's indentation"
        return where + "unexpected ':' in a value", mark.line + 1, hint
    if "duplicate key" in problem:
        return where + problem, mark.line + 1, "keep one of them"
    if problem == "but found another document":
        hint = "a file holds one document: remove this '---' line (and merge what follows), or split the file"
        return where + "a second YAML document starts here", mark.line + 1, hint
    if "escape character" in problem:
        hint = r"inside double quotes a backslash starts an escape: write \\ or use single quotes"
        return where + problem, mark.line + 1, hint
    if "undefined alias" in problem:
        return where + problem, mark.line + 1, "define the anchor (&name) before the alias (*name) uses it"
    if opened is not None and context and opened.line != mark.line:
        problem += f" ({context} that started at line {opened.line + 1})"
    return where + problem, mark.line + 1, _GENERIC
