"""Compaction of a snapshot that holds comments: ruamel.yaml's round trip keeps them.

The only module that imports ruamel.yaml, and it is itself imported only to compact a file
whose snapshot holds comments (``snapshot.has_comments``): a program whose file has none never
loads ruamel.yaml.

The previous snapshot is loaded with its comments, brought up to date in place (keys follow the
state's order, keeping their comments; new keys go at the end of their mapping) and written
back. The result is read back with the snapshot's own reader and compared with the state; if it
does not match exactly, the plain snapshot is written instead, with a warning.
"""

from __future__ import annotations

import copy
import io
import logging
import re
import warnings
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarfloat import ScalarFloat
from ruamel.yaml.scalarstring import LiteralScalarString
from ruamel.yaml.tag import Tag
from ruamel.yaml.tokens import CommentToken

from . import snapshot, values

log = logging.getLogger("persistedstate")


def dump_snapshot(data: dict[Any, Any], previous: bytes, path: str) -> bytes:
    """The snapshot of ``data``, keeping the comments of ``previous`` (the one it replaces).

    When they cannot be kept, the plain snapshot, and a warning naming the file ``path``.
    """
    kept, why = _dump_keeping_comments(data, previous, path)
    if kept is not None:
        return kept
    plain = snapshot.dump_snapshot(data)  # (first: it raises when no writer can write them)
    log.warning(
        "%s: could not keep the comments of the state file: ruamel.yaml, the library that "
        "keeps them, %s. The file is written without its comments; every value is kept.",
        path,
        why,
    )
    return plain


def _dump_keeping_comments(
    data: dict[Any, Any], previous: bytes, path: str
) -> tuple[bytes | None, str]:
    """The commented snapshot, or None and why it could not be made (for a person)."""
    round_trip = YAML()
    round_trip.Resolver = _PyYAMLTags
    round_trip.version = (1, 1)  # read numbers as YAML 1.1 does (017 octal, 1_000, 1:20)
    round_trip.width = 4096
    round_trip.preserve_quotes = True
    round_trip.representer.add_representer(type(None), _represent_null)
    round_trip.representer.add_representer(float, _represent_float)
    round_trip.representer.add_representer(str, _represent_str)
    prologue, body, epilogue = _around_the_document(previous.decode("utf-8"))
    plain = values.plain_copy(dict.copy(data))  # (the state's own dicts and lists, as plain)
    # Why the comments could not be kept, for a person, as far as the round trip got.
    why = "could not read the file"
    try:
        with warnings.catch_warnings():  # ruamel.yaml lectures about YAML 1.1 floats
            warnings.simplefilter("ignore")
            document = round_trip.load(body)
        why = "could not write this state"
        if document is None:  # comment lines only: the entries go after them
            text = _ending_a_line(body) + snapshot.dump_snapshot(data).decode("utf-8")
        else:
            _update(_unshare(document, set()), plain)
            output = io.StringIO()
            round_trip.dump(document, output)
            text = _VERSION_DIRECTIVE.sub("", output.getvalue(), count=1)
        result = _ending_a_line(prologue + _ending_a_line(text) + epilogue).encode("utf-8")
        why = "wrote text that would not read back as the same state"
        if values.exactly_equal(snapshot.load_snapshot(path, result), plain):
            return result, ""
    except Exception:  # ruamel is a guest here: any failure falls back to PyYAML
        log.debug("%s: the comment-keeping round trip failed", path, exc_info=True)
    return None, why


# What ruamel.yaml writes first, having been told the version: "%YAML 1.1" and "---", followed
# by a line break, or a blank and the document itself when it fits on the line ("--- {}").
_VERSION_DIRECTIVE = re.compile(r"\A%YAML 1\.1\n---[ \n]")

# What ruamel.yaml drops around a document: the lines before its "---" start marker (comments,
# %directives and the comments between them), and its "..." end marker and what follows. The
# marker's own line goes with them, unless the document starts on it ("--- {a: 1}").
_PROLOGUE = re.compile(r"(?:[ \t\r]*(?:#.*)?\n|%.*\n)*---(?:[ \t\r]*(?:#.*)?(?:\n|\Z)|[ \t]+)")
_DOCUMENT_END = re.compile(r"^\.\.\.(?=[ \t\r\n]|\Z)", re.MULTILINE)


def _around_the_document(text: str) -> tuple[str, str, str]:
    """``text`` as (prologue, body, epilogue): the parts ruamel.yaml would drop, kept apart.

    Without a "---" there is no prologue: ruamel.yaml keeps comments above the first entry.
    (A "---" or "..." at the start of a line is always a marker, never inside a value.)
    """
    prologue = _PROLOGUE.match(text)
    body_start = prologue.end() if prologue else 0
    end = _DOCUMENT_END.search(text, body_start)
    body_end = end.start() if end else len(text)
    return text[:body_start], text[body_start:body_end], text[body_end:]


def _ending_a_line(text: str) -> str:
    """``text`` with a final newline (ruamel.yaml writes none after a last comment)."""
    return text if not text or text.endswith("\n") else text + "\n"


class _PyYAMLTags(VersionedResolver):
    """ruamel.yaml's resolver, made to read a plain scalar as PyYAML, the reader of record, does.

    ruamel.yaml's YAML 1.1 differs in places: it reads ``y`` and ``n`` as booleans, so a key
    ``y`` seemed deleted and added again, losing its comments. Its writer asks the same
    resolver whether a string needs quotes.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode and implicit[0]:
            tag = snapshot.SAFE_TAGS.resolve(yaml.ScalarNode, value, implicit)  # type: ignore[no-untyped-call]
            return Tag(suffix=tag)
        return super().resolve(kind, value, implicit)


def _represent_null(representer: Any, value: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _represent_str(representer: Any, value: str) -> Any:
    # ruamel.yaml folds NEL, LS and PS in every style but double quotes; other strings keep
    # its own choice (a literal block, as the plain snapshot writes, gets tabs and CRs wrong).
    style = '"' if snapshot.YAML_LINE_BREAKS.search(value) else None
    return representer.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_float(representer: Any, value: float) -> Any:
    # ruamel.yaml's own float text loses the last digit of some floats (5.019273308782307e-108).
    return representer.represent_scalar("tag:yaml.org,2002:float", values.float_text(value))


def _update(node: Any, data: Any) -> Any:
    """Bring a ruamel round-trip node up to date with ``data``, keeping what still fits."""
    if isinstance(node, CommentedMap) and type(data) is dict:
        # The comment lines after the last entry stay after whichever entry comes last now.
        tail = _take_tail_lines(node, _last_key(node)) if node else ""
        for key in [key for key in node if key not in data]:
            _hand_over_comment_lines(node, key)
            del node[key]
        _follow_order(node, list(data))
        for key, value in data.items():
            if key in node:
                _update_entry(node, key, value)
            else:
                node[key] = _update(None, value)
        _close_up(node, tail)
        return node
    if isinstance(node, CommentedSeq) and type(data) is list:
        tail = _take_tail_lines(node, _last_key(node)) if node else ""
        del node[len(data) :]
        for index, value in enumerate(data):
            if index < len(node):
                _update_entry(node, index, value)
            else:
                node.append(_update(None, value))
        _close_up(node, tail)
        return node
    if type(data) is dict:
        return _update(CommentedMap(), data)
    if type(data) is list:
        return _update(CommentedSeq(), data)
    if node is not None and _same_scalar(node, data):
        return node  # keeps the way the person wrote it (quotes, hex, ...)
    if type(data) is str and "\n" in data.rstrip("\n") and _fits_literal_block(data):
        return LiteralScalarString(data)
    return data


def _update_entry(node: Any, key: Any, value: Any) -> None:
    """``node[key] = _update(node[key], value)``, keeping the comment lines after the entry.

    A mapping or list that becomes empty is written ``{}`` or ``[]`` on its key's line, so the
    comment lines above its first entry go after it too.
    """
    lines = _take_tail_lines(node, key)
    old = node[key]
    had_entries = isinstance(old, (CommentedMap, CommentedSeq)) and len(old) > 0
    new = _update(old, value)
    if had_entries and isinstance(new, (CommentedMap, CommentedSeq)) and not new:
        above = new.ca.comment[1] if new.ca.comment else None
        tokens = [*(above or []), *(node.ca.items.get(key, [None] * 4)[3] or [])]
        unique = list({id(token): token for token in tokens}.values())  # (ruamel files them twice)
        lines = "".join(" " * token.column + token.value for token in unique) + lines
        if above:
            new.ca.comment[1] = []
        if key in node.ca.items:
            node.ca.items[key][3] = None
    node[key] = new
    _give_tail_lines(node, key, lines)


def _close_up(node: Any, tail: str) -> None:
    """Put back the lines that followed the last entry; an empty mapping or list is ``{}``/``[]``.

    (Left in block style, ruamel.yaml would write its comments between the key and the ``{}``.)
    """
    if not node:
        node.fa.set_flow_style()
    elif tail:
        _give_tail_lines(node, _last_key(node), tail)


def _last_key(node: Any) -> Any:
    """The key of the last entry of a non-empty ruamel mapping, or index of a sequence."""
    return next(reversed(node)) if isinstance(node, dict) else len(node) - 1


def _unshare(node: Any, seen: set[int]) -> Any:
    """Replace anchors, aliases and merge keys by independent copies, as the state sees them."""
    if not isinstance(node, (CommentedMap, CommentedSeq)):
        return node
    if id(node) in seen:
        node = copy.deepcopy(node)
    seen.add(id(node))
    if isinstance(node, CommentedMap) and getattr(node, "merge", None):
        flat = CommentedMap(node.items())  # merged keys become the map's own
        flat.ca.items.update(node.ca.items)  # keep the comments of its own keys
        flat.ca.comment = node.ca.comment
        node = flat
        seen.add(id(node))
    if node.anchor.value is not None:
        node.anchor.value = None
    keys = node.keys() if isinstance(node, CommentedMap) else range(len(node))
    for key in list(keys):
        node[key] = _unshare(node[key], seen)
    return node


def _follow_order(node: Any, keys: list[Any]) -> None:
    """Move keys of ``node`` to the end until they come in the order of ``keys``.

    In memory a key deleted and set again moves to the end (a replaced dict may have any
    order); the file must read back in the same order. The keys that are still in order keep
    their place; from the first one out of order on, each key moves to the end, taking its
    own end-of-line comment with it (a new key gets its place there, its value comes later).
    """
    position = {key: index for index, key in enumerate(node)}
    last, out_of_order = -1, len(keys)
    for count, key in enumerate(keys):
        index = position.get(key, -1)
        if index <= last:
            out_of_order = count
            break
        last = index
    for key in keys[out_of_order:]:
        if key in position:
            _hand_over_comment_lines(node, key)
            node.move_to_end(key)
        else:
            node[key] = None


# ruamel.yaml files the comment lines written between two entries under the entry before them
# (under its value's last entry, if that is a mapping or sequence). They belong with what comes
# after them: when an entry is deleted or moved, they stay where they were in the text.


def _hand_over_comment_lines(node: Any, key: Any) -> None:
    """Leave the comment lines after entry ``key`` in place, before it goes or moves."""
    lines = _take_tail_lines(node, key)
    if not lines.strip():
        return
    keys = list(node)
    index = keys.index(key)
    if index > 0:
        _give_tail_lines(node, keys[index - 1], lines)
    elif index + 1 < len(keys):  # the first entry: before the next one
        comments = [line.strip()[1:].strip() for line in lines.split("\n") if line.strip()]
        column = next(len(line) - len(line.lstrip()) for line in lines.split("\n") if line.strip())
        node.yaml_set_comment_before_after_key(keys[1], before="\n".join(comments), indent=column)


def _comment_slot_after(node: Any, key: Any, make: bool = False) -> tuple[list[Any], int]:
    """The comment entry of the last line of entry ``key`` and the slot its token uses.

    A missing entry is made only if ``make`` (ruamel.yaml writes some lines differently when
    there is one): else a blank one, not stored, is returned.
    """
    value = node[key]  # (a flow-style collection is one piece of text: its comments follow it)
    while isinstance(value, (CommentedMap, CommentedSeq)) and value and not value.fa.flow_style():
        node, key = value, _last_key(value)
        value = node[key]
    slot = 2 if isinstance(node, CommentedMap) else 0
    blank = [None, None, None, None]
    entry: list[Any] = (
        node.ca.items.setdefault(key, blank) if make else node.ca.items.get(key, blank)
    )
    return entry, slot


def _take_tail_lines(node: Any, key: Any) -> str:
    """Cut the lines after entry ``key`` out of its comment; its end-of-line comment stays."""
    entry, slot = _comment_slot_after(node, key)
    token = entry[slot]
    if token is None:
        return ""
    own, _, lines = token.value.partition("\n")
    if not lines:  # (nothing after it; ruamel.yaml may need the token as it is)
        return ""
    if own.strip():
        token.value = own + "\n"
    else:
        entry[slot] = None
    return str(lines)


def _give_tail_lines(node: Any, key: Any, lines: str) -> None:
    """Put ``lines`` (from _take_tail_lines) after entry ``key``."""
    if not lines:
        return
    entry, slot = _comment_slot_after(node, key, make=True)
    token = entry[slot]
    if token is None:
        entry[slot] = CommentToken("\n" + lines, CommentMark(0))
    else:
        token.value += lines


def _same_scalar(node: Any, value: Any) -> bool:
    node_is_bool = isinstance(node, (bool, ScalarBoolean))
    if node_is_bool != (type(value) is bool):
        return False
    if not (isinstance(node, type(value)) and bool(node == value)):
        return False
    if type(value) is not float:
        return True
    exact = values.exactly_equal(float(node), value)  # (-0.0 == 0.0, but not exactly)
    return exact and (not isinstance(node, ScalarFloat) or _float_text_is_exact(node))


def _float_text_is_exact(node: Any) -> bool:
    """Whether ruamel.yaml writes this float, as the person wrote it, so it reads back the same.

    It rebuilds the text from the value and the original layout; with a long mantissa and an
    exponent that drops a digit (5.019273308782307e-108 comes out as ...306e-108).
    """
    text = RoundTripRepresenter().represent_scalar_float(node).value
    try:
        return bool(float(text) == node)
    except ValueError:  # (.inf, .nan: written as they were, exactly)
        return True


def _fits_literal_block(text: str) -> bool:
    return all(line == line.rstrip() and line.isprintable() for line in text.split("\n"))
