"""The common mistakes of YAML written by hand, told as a person can act on them.

:func:`explain` turns a YAML parser's error into the place of the mistake itself where it
can be found (a key's missing colon on the key's line, where the parser only notices it on the
next one; an unclosed quote where it opens), plain words, and a one-line hint.

:func:`read_otherwise` finds the plain values YAML 1.1 reads as something else than the text
they look like: ``yes`` and ``off`` (booleans), ``1:30`` (a number of seconds), ``010`` (octal
8), and ``1e16`` (text, where a number was likely meant).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import yaml
from yaml.constructor import SafeConstructor

from . import textpos, values


class Explanation(NamedTuple):
    """A YAML error, for a person: what is wrong, where (1-based), and how to fix it."""

    problem: str
    line: int
    column: int
    hint: str | None


_CLOSING = {"[": "]", "{": "}"}
_OPENING = {"]": "[", "}": "{"}


def explain(text: str, error: yaml.MarkedYAMLError) -> Explanation:
    """What the parser's ``error`` in ``text`` most likely means; it must have a problem mark."""
    error.problem_mark = _recounted(error.problem_mark, text)
    error.context_mark = _recounted(error.context_mark, text)
    mark, start = error.problem_mark, error.context_mark
    assert mark is not None
    context, problem = error.context or "", error.problem or ""
    char = text[mark.index : mark.index + 1]
    opener = text[start.index : start.index + 1] if start is not None else ""
    if char == "\t":
        return Explanation(
            "invalid YAML: a tab, where YAML allows only spaces",
            mark.line + 1,
            mark.column + 1,
            "replace the tab with spaces (YAML indents with spaces, never tabs)",
        )
    if start is not None and context.startswith("while scanning a simple key"):
        return Explanation(
            "invalid YAML: this key has no ':' after it",
            start.line + 1,
            start.column + 1,
            "put ':' and a space after the key, as in 'key: value'",
        )
    if start is not None and opener in _CLOSING and context.startswith("while parsing a flow"):
        # The missing bracket belongs somewhere between where it opens and where the parser
        # noticed: the place stays where it was noticed, the words say where it opens.
        if _never_closed(text, start.index):
            return Explanation(
                f"invalid YAML: the '{opener}' at line {start.line + 1}, column "
                f"{start.column + 1} is never closed",
                mark.line + 1,
                mark.column + 1,
                f"the '{opener}' needs a '{_CLOSING[opener]}' after its last item",
            )
        comma = f"separate the items between '{opener}' and '{_CLOSING[opener]}' with commas"
        return _as_reported(error, comma if "','" in problem else None)
    unclosed = "end of stream" in problem or "document separator" in problem
    if start is not None and context.startswith("while scanning a quoted scalar") and unclosed:
        return Explanation(
            f"invalid YAML: the quote ({opener}) here is never closed",
            start.line + 1,
            start.column + 1,
            f"end the text with the same quote it starts with ({opener})",
        )
    if char in _OPENING and context.startswith("while parsing a block"):
        return Explanation(
            f"invalid YAML: a '{char}' that closes nothing",
            mark.line + 1,
            mark.column + 1,
            f"remove it, or add the '{_OPENING[char]}' it should close",
        )
    line = _line(text, mark.line)
    first_column = len(line) - len(line.lstrip(" "))
    if context.startswith("while parsing a block") and mark.column == first_column:
        return Explanation(
            "invalid YAML: this line is not indented like the entries it goes with",
            mark.line + 1,
            mark.column + 1,
            "indent it with spaces as far as the entries of its mapping or list",
        )
    if problem.startswith("mapping values are not allowed"):
        above = _line_above(text, mark.line)
        above_indent = len(above) - len(above.lstrip(" "))
        if first_column > above_indent and not above.rstrip().endswith(":"):
            return Explanation(
                "invalid YAML: this line is indented under a key that already has a value",
                mark.line + 1,
                first_column + 1,
                "indent it as far as the key above it, or quote a value that goes on",
            )
        return _as_reported(error, "a value that holds ': ' must be quoted: key: 'a: b'")
    return _as_reported(error, None)


def _as_reported(error: yaml.MarkedYAMLError, hint: str | None) -> Explanation:
    """The parser's own words and place."""
    mark, start = error.problem_mark, error.context_mark
    assert mark is not None
    problem = f"invalid YAML: {error.problem}"
    if error.context and start is not None:  # e.g. where an unclosed "[" opened
        problem += f" ({error.context} that starts at line {start.line + 1}, "
        problem += f"column {start.column + 1})"
    elif error.context:
        problem += f" ({error.context})"
    return Explanation(problem, mark.line + 1, mark.column + 1, hint)


def _never_closed(text: str, opening: int) -> bool:
    """Whether the bracket at ``opening`` has no closing one (quoted text skipped)."""
    depth = 0
    quote = ""
    for char in text[opening:]:
        if quote:
            quote = "" if char == quote else quote  # ('' and \" inside: close enough for a hint)
        elif char in "'\"":
            quote = char
        elif char in _CLOSING:
            depth += 1
        elif char in _OPENING:
            depth -= 1
            if depth == 0:
                return False
    return True


def _recounted(mark: Any, text: str) -> Any:
    """``mark`` with its line and column counted as every other position is
    (``textpos``): PyYAML also ends a line at NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR,
    which most editors show inside a line. (Its ``index`` counts characters, with either
    loader.)"""
    if mark is None or not 0 <= mark.index <= len(text):
        return mark
    line, column = textpos.line_and_column(text, mark.index)
    return yaml.error.Mark(mark.name, mark.index, line - 1, column - 1, None, 0)


def _line(text: str, number: int) -> str:
    """Line ``number`` (0-based) of ``text``, or "" past the end."""
    lines = text.split("\n", number + 1)
    return lines[number] if number < len(lines) else ""


def _line_above(text: str, number: int) -> str:
    """The nearest line above line ``number`` (0-based) that holds more than a comment."""
    for above in reversed(text.split("\n", number + 1)[:number]):
        if above.strip() and not above.lstrip().startswith("#"):
            return above
    return ""


class Surprise(NamedTuple):
    """A plain value that YAML 1.1 reads otherwise than it looks; line and column 1-based."""

    line: int
    column: int
    written: str
    reads_as: str
    advice: str


_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_STR_TAG = "tag:yaml.org,2002:str"
# A number with an exponent as other languages write it, which YAML 1.1 reads as text: its
# floats need a dot and a signed exponent (1.0e+16).
_EXPONENT_WITHOUT_YAML_11_FORM = re.compile(
    r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+"
)


def read_otherwise(text: str, root: Any) -> list[Surprise]:
    """The plain scalars of ``text`` (composed as ``root``) a person likely meant otherwise.

    ``yes``/``no``/``on``/``off`` are booleans, ``1:30`` is 90 (base 60), ``010`` is 8 (octal):
    probably meant as text. ``1e16`` is text: probably meant as a number. Values with an
    explicit tag (``!!bool yes``) say what they mean and are left alone.
    """
    builder = SafeConstructor()
    found: list[Surprise] = []
    pending, seen = [root], set()
    while pending:
        node = pending.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            pending.extend(part for pair in node.value for part in pair)
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif not node.style and not text.startswith("!", node.start_mark.index):
            surprise = _surprise(builder, node)
            if surprise is not None:
                found.append(surprise)
    return sorted(found)


def _surprise(builder: SafeConstructor, node: Any) -> Surprise | None:
    written, tag = node.value, node.tag
    quote = f"quote it, '{written}', if you meant the text"
    if tag == _BOOL_TAG and written.lower() not in ("true", "false"):
        reads_as = f"the boolean {str(builder.construct_object(node)).lower()}"
    elif tag in (_INT_TAG, _FLOAT_TAG) and ":" in written:
        number = builder.construct_object(node)
        reads_as = f"the number {number} (YAML 1.1 reads {written} as base 60, like a time)"
    elif tag == _INT_TAG and re.fullmatch(r"[-+]?0[0-7_]+", written):
        number = builder.construct_object(node)
        reads_as = f"the number {number} (a leading 0 makes it octal in YAML 1.1)"
    elif tag == _STR_TAG and _EXPONENT_WITHOUT_YAML_11_FORM.fullmatch(written):
        number = values.float_text(float(written.replace("_", "")))
        reads_as = "text, not a number (a YAML 1.1 float needs a dot and a signed exponent)"
        quote = f"write {number} for the number, or quote it, '{written}', to keep the text"
    else:
        return None
    return Surprise(node.start_mark.line + 1, node.start_mark.column + 1, written, reads_as, quote)
