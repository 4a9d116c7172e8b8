"""YAML in and out: the snapshot document and the YAML-only journal records.

Uses PyYAML's libyaml bindings (CSafeLoader, CSafeDumper) when PyYAML was built with them and
the pure-Python SafeLoader/SafeDumper otherwise; both read and write the same YAML. Only safe
tags are used, so any YAML reader can load the snapshot.

When the previous snapshot holds comments (a person edited the file), compaction goes through
ruamel.yaml's round-trip mode instead: the old document is loaded with its comments, brought up
to date in place (keys follow the state's order, keeping their comments; new keys go at the end
of their mapping) and written back. The result is read back and compared with the state; if it
does not match exactly, the plain PyYAML snapshot is written instead. Files without comments
never pay for this.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import io
import logging
import operator
import os
import re
import warnings
from collections.abc import Iterator
from itertools import compress
from typing import Any, ClassVar

import yaml
from yaml.constructor import SafeConstructor

from . import values
from .errors import CorruptStateError

try:
    from yaml import CSafeDumper as _BaseDumper
    from yaml import CSafeLoader as Loader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeDumper as _BaseDumper  # type: ignore[assignment]
    from yaml import SafeLoader as Loader  # type: ignore[assignment]

log = logging.getLogger("persistedstate")

# A "#" at the start of a line or after a blank may start a comment (or sit in a string:
# a false alarm only costs the slower round-trip compaction).
_COMMENT = re.compile(rb"(?:^|[ \t])#", re.MULTILINE)

_ESCAPED_ASTRAL = re.compile(r"\\U[0-9A-Fa-f]{8}")
_YAML_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")

# A YAML parser or constructor may raise almost anything on bad input: ValueError for
# "2026-13-45", AttributeError for `!!timestamp "2026"`, KeyError for `!!bool maybe`,
# RecursionError for absurd nesting. All of them mean the input is bad.
_LOAD_ERRORS = (Exception,)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a document is built or written.

    Loading or dumping a large state creates tens of thousands of containers, and each batch
    of them triggers a collection that walks every object of the process: two thirds of the
    time of loading a 1 MB state went there. Nothing built here forms reference cycles.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


class FlowError(Exception):
    def __init__(self, problem: str, column: int | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.column = column


class _SnapshotDumper(_BaseDumper):
    """SafeDumper with the choices that make the snapshot exact and pleasant to read."""

    def ignore_aliases(self, data: Any) -> bool:
        # No anchors and aliases: a state holds no shared containers, and a datetime used in
        # two places must not tie two entries together (each entry is written on its own).
        return True


def _represent_str(dumper: Any, value: str) -> yaml.Node:
    # Multi-line text as a literal block; the emitter falls back to quotes when it must.
    if _YAML_LINE_BREAKS.search(value):
        style: str | None = '"'  # PyYAML's Python emitter folds these in other styles
    else:
        style = "|" if "\n" in value.rstrip("\n") else None
    node: yaml.Node = dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)
    return node


def _represent_int(dumper: Any, value: int) -> yaml.Node:
    node: yaml.Node = dumper.represent_scalar("tag:yaml.org,2002:int", values.int_text(value))
    return node


class _PureSnapshotDumper(yaml.SafeDumper):
    """The same choices with PyYAML's Python emitter."""

    ignore_aliases = _SnapshotDumper.ignore_aliases


for _dumper in (_SnapshotDumper, _PureSnapshotDumper):
    _dumper.add_representer(str, _represent_str)
    _dumper.add_representer(int, _represent_int)


def has_comments(snapshot: bytes) -> bool:
    return b"#" in snapshot and _COMMENT.search(snapshot) is not None  # (the first test: memchr)


def dump_snapshot(data: dict[Any, Any], previous: bytes | None = None) -> bytes:
    """The snapshot document: a block mapping in insertion order, Unicode as is.

    With ``previous`` (the snapshot this one replaces) holding comments, they are kept.
    """
    if previous is not None and has_comments(previous):
        kept = _dump_keeping_comments(data, previous)
        if kept is not None:
            return kept
    if not data:
        return b"{}\n"
    return _dump(data).encode("utf-8")


def dump_value(value: Any) -> str:
    """Any state value as a YAML document in the snapshot's style (for showing it)."""
    text = _dump(value) if value != {} else "{}\n"
    return text[: -len("...\n")] if text.endswith("\n...\n") else text


def _dump(data: Any) -> str:
    text = _dump_with(data, _SnapshotDumper)
    if _ESCAPED_ASTRAL.search(text):
        # libyaml escapes characters beyond the BMP (emoji); the Python emitter does not.
        text = _dump_with(data, _PureSnapshotDumper)
    return text


def _dump_with(data: Any, dumper: Any) -> str:
    with _collector_paused():
        text: str = yaml.dump(
            data,
            Dumper=dumper,
            default_flow_style=False,
            sort_keys=False,
            allow_unicode=True,
            width=120,
        )
    return text


class SnapshotEntries:
    """Renders snapshots, reusing the text of top-level entries that did not change.

    A block mapping is a run of independent entries, so the snapshot is the concatenation of
    one text per top-level key. An entry is reused while the same key object holds the same
    value object and no change went inside it (the caller names those keys); the others are
    dumped together in one call. This keeps compaction of a large state whose changes touch a
    few keys cheap. (Identity, not equality: ``1`` and ``True`` are equal keys written apart.)
    """

    def __init__(self) -> None:
        # The last snapshot's keys and values (the objects) and the text of each entry.
        self._keys: list[Any] = []
        self._values: list[Any] = []
        self._pieces: list[bytes] = []

    def adopt(self, snapshot: bytes, top: dict[Any, Any]) -> None:
        """Take the entries of a snapshot just loaded as ``top``, if it is laid out as ours are.

        Only a plain block mapping qualifies: one piece per key, each piece starting with
        its own key written plainly (``key: ...``), and no anchors or aliases tying pieces
        together. Anything else (JSON, flow style, merge keys, quoted keys) is left alone and
        written anew at the first compaction. (Done at open, not at the first compaction: the
        split costs about as much as a compaction that reuses every entry.)
        """
        if not snapshot.endswith(b"\n") or b"&" in snapshot or b"*" in snapshot:
            return
        pieces = _split_entries(snapshot)
        if not top or len(pieces) != len(top):
            return
        for key, piece in zip(top, pieces, strict=True):
            if type(key) is not str or not _starts_entry_of(piece, key):
                return
        self._keys, self._values, self._pieces = list(top), list(top.values()), pieces

    def render(self, data: dict[Any, Any], changed_keys: set[Any]) -> bytes:
        keys, values = list(data), list(data.values())
        known = len(self._keys)
        if len(keys) >= known and all(map(operator.is_, keys, self._keys)):
            # The usual case, found at C speed: the same keys in the same order, maybe more.
            stale = set(compress(range(known), map(operator.is_not, values, self._values)))
            stale.update(range(known, len(keys)))
            pieces = self._pieces + [b""] * (len(keys) - known)
            if changed_keys:
                position = dict(zip(keys, range(len(keys)), strict=True))
                stale.update(position[key] for key in changed_keys if key in position)
        else:  # keys were deleted or moved: match entries by key
            known_entries = zip(self._keys, self._values, self._pieces, strict=True)
            entries = {entry[0]: entry for entry in known_entries}
            stale, pieces = set(), []
            for index, (key, value) in enumerate(data.items()):
                entry = entries.get(key)
                if entry is None or entry[0] is not key or entry[1] is not value:
                    stale.add(index)
                    pieces.append(b"")
                else:
                    pieces.append(entry[2])
                    if key in changed_keys:
                        stale.add(index)
        if stale:
            order = sorted(stale)
            fresh = _split_entries(dump_snapshot({keys[i]: values[i] for i in order}))
            if len(fresh) != len(order):  # a layout the splitter does not know: no reuse
                self._keys, self._values, self._pieces = [], [], []
                return dump_snapshot(data)
            for index, piece in zip(order, fresh, strict=True):
                pieces[index] = piece
        self._keys, self._values, self._pieces = keys, values, pieces
        return b"".join(pieces) if pieces else b"{}\n"


# Where a top-level entry of a block mapping starts: a line at column 0 that does not continue
# the previous entry (a "- " sequence item, a ": " value of a "? " key, a comment).
_ENTRY_START = re.compile(rb"^(?![\s#]|[-:](?:[ \n]|$))", re.MULTILINE)


def _starts_entry_of(piece: bytes, key: str) -> bool:
    head = key.encode("utf-8") + b":"
    return piece.startswith(head) and piece[len(head) : len(head) + 1] in (b" ", b"\n")


def _split_entries(snapshot: bytes) -> list[bytes]:
    starts = [match.start() for match in _ENTRY_START.finditer(snapshot)]
    starts = [start for start in starts if start < len(snapshot)]
    ends = [*starts[1:], len(snapshot)] if starts else []
    return [snapshot[start:end] for start, end in zip(starts, ends, strict=True)]


def _dump_keeping_comments(data: dict[Any, Any], previous: bytes) -> bytes | None:
    from ruamel.yaml import YAML  # imported only for files that hold comments

    round_trip = YAML()
    round_trip.Resolver = _pyyaml_resolver()
    round_trip.version = (1, 1)  # read numbers as YAML 1.1 does (017 octal, 1_000, 1:20)
    round_trip.width = 4096
    round_trip.preserve_quotes = True
    round_trip.representer.add_representer(type(None), _represent_null)
    round_trip.representer.add_representer(float, _represent_float)
    try:
        with warnings.catch_warnings():  # ruamel.yaml lectures about YAML 1.1 floats
            warnings.simplefilter("ignore")
            document = round_trip.load(previous.decode("utf-8"))
        if not isinstance(document, dict):
            return None
        _update(_unshare(document, set()), data)
        output = io.StringIO()
        round_trip.dump(document, output)
        text = output.getvalue().replace("%YAML 1.1\n---\n", "", 1)
        if not text.endswith("\n"):  # (as when the last thing written was a comment)
            text += "\n"
        result = text.encode("utf-8")
        if values.exactly_equal(load_snapshot("<compaction>", result), data):
            return result
        problem = "the round trip changed a value"
    except Exception as error:  # ruamel is a guest here: any failure falls back to PyYAML
        problem = repr(error)
    log.warning("could not keep the comments of the state file (%s); writing it without", problem)
    return None


@functools.cache
def _pyyaml_resolver() -> type:
    """ruamel.yaml's resolver, made to read a plain scalar as PyYAML, the reader of record, does.

    ruamel.yaml's YAML 1.1 differs in places: it reads ``y`` and ``n`` as booleans, so a key
    ``y`` seemed deleted and added again, losing its comments. Its writer asks the same
    resolver whether a string needs quotes.
    """
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.resolver import VersionedResolver
    from ruamel.yaml.tag import Tag

    class PyYAMLTags(VersionedResolver):
        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is ScalarNode and implicit[0]:
                tag = _SAFE_TAGS.resolve(yaml.ScalarNode, value, implicit)  # type: ignore[no-untyped-call]
                return Tag(suffix=tag)
            return super().resolve(kind, value, implicit)

    return PyYAMLTags


def _represent_null(representer: Any, value: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _represent_float(representer: Any, value: float) -> Any:
    # ruamel.yaml's own float text loses the last digit of some floats (5.019273308782307e-108).
    return representer.represent_scalar("tag:yaml.org,2002:float", values.float_text(value))


def _update(node: Any, data: Any) -> Any:
    """Bring a ruamel round-trip node up to date with ``data``, keeping what still fits."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import LiteralScalarString

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
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

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
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

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
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

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
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    entry, slot = _comment_slot_after(node, key, make=True)
    token = entry[slot]
    if token is None:
        entry[slot] = CommentToken("\n" + lines, CommentMark(0))
    else:
        token.value += lines


def _same_scalar(node: Any, value: Any) -> bool:
    node_is_bool = isinstance(node, bool) or type(node).__name__ == "ScalarBoolean"
    if node_is_bool != (type(value) is bool):
        return False
    if not (isinstance(node, type(value)) and bool(node == value)):
        return False
    if type(value) is not float:
        return True
    exact = values.exactly_equal(float(node), value)  # (-0.0 == 0.0, but not exactly)
    return exact and (type(node).__name__ != "ScalarFloat" or _float_text_is_exact(node))


def _float_text_is_exact(node: Any) -> bool:
    """Whether ruamel.yaml writes this float, as the person wrote it, so it reads back the same.

    It rebuilds the text from the value and the original layout; with a long mantissa and an
    exponent that drops a digit (5.019273308782307e-108 comes out as ...306e-108).
    """
    from ruamel.yaml.representer import RoundTripRepresenter

    text = RoundTripRepresenter().represent_scalar_float(node).value
    try:
        return bool(float(text) == node)
    except ValueError:  # (.inf, .nan: written as they were, exactly)
        return True


def _fits_literal_block(text: str) -> bool:
    return all(line == line.rstrip() and line.isprintable() for line in text.split("\n"))


def load_snapshot(path: str | os.PathLike[str], raw: bytes) -> dict[Any, Any]:
    """Parse the snapshot document; raises CorruptStateError saying where it is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - raw.rfind(b"\n", 0, error.start)
        raise CorruptStateError(path, "the file is not valid UTF-8", line, column) from None
    try:
        with _collector_paused():
            data = load_document(text)
    except _LOAD_ERRORS as error:
        raise _corrupt(path, text, error) from None
    if data is None:
        return {}
    if type(data) is not dict:
        raise CorruptStateError(
            path,
            f"the state must be a YAML mapping (key: value lines), found a {type(data).__name__}",
            1,
            1,
        )
    try:
        checked: dict[Any, Any] = values.check_loaded(data)
    except values.UnsupportedValue as error:
        where = _position_of(text, error.key_path)
        problem = f"{error.message} at key path {error.key_path}"
        raise CorruptStateError(path, problem, *(where or (None, None))) from None
    return checked


def load_document(text: str | bytes) -> Any:
    """``yaml.load(text)``, the same result, built faster for the usual documents.

    PyYAML's constructor spends most of a load on bookkeeping for cases a state file rarely
    has. Plain mappings, sequences, strings and decimal ints are built here directly from the
    parsed nodes; other scalars go to PyYAML's own function for their tag. Anything else
    (merge keys, other tags, a recursive alias, any error) goes through PyYAML's constructor,
    which gives the result or the error yaml.load would.
    """
    loader = _SnapshotLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return _build(loader, node)
        except Exception:  # an unusual node, or bad input: PyYAML says what it makes of it
            return loader.construct_document(node)
    finally:
        loader.dispose()


class _SafeTags(yaml.resolver.Resolver):
    """PyYAML's safe tag resolution, from tables a program cannot have added to."""

    # (PyYAML keeps these tables on the class and declares them as instance variables.)
    yaml_implicit_resolvers = {  # noqa: RUF012
        first: list(resolvers)
        for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    }
    yaml_path_resolvers: dict[Any, Any] = {}  # noqa: RUF012


_SAFE_TAGS = _SafeTags()  # stateless without path resolvers: one serves every document


class _SnapshotLoader(Loader):
    """The safe loader with the safe tables only, resolving each distinct scalar once.

    Constructors and resolvers a program registers on PyYAML's loaders (before or after
    importing this module) do not change how state files read.
    """

    yaml_constructors: ClassVar[dict[Any, Any]] = dict(SafeConstructor.yaml_constructors)
    yaml_multi_constructors: ClassVar[dict[Any, Any]] = dict(
        SafeConstructor.yaml_multi_constructors
    )
    yaml_implicit_resolvers = _SafeTags.yaml_implicit_resolvers
    yaml_path_resolvers = _SafeTags.yaml_path_resolvers

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        # Most scalars repeat (keys, small numbers): a C-level cache answers the repeats.
        # (It refers to _SAFE_TAGS, not to this loader: no reference cycle to wait for.)
        self.resolve = functools.lru_cache(maxsize=None)(_SAFE_TAGS.resolve)  # type: ignore[method-assign]


_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_SCALAR_CONSTRUCTORS = {
    tag: SafeConstructor.yaml_constructors[tag]
    for tag in (
        _INT_TAG,
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:null",
        "tag:yaml.org,2002:timestamp",
        "tag:yaml.org,2002:binary",
    )
}


class _Unusual(Exception):
    """A node _build leaves to PyYAML's constructor."""


def _build(loader: Any, node: Any) -> Any:
    # An alias is built again where it is used: the copy check_loaded would make anyway.
    tag = node.tag
    kind = type(node)
    if kind is yaml.ScalarNode:
        if tag == _STR_TAG:
            return node.value
        text = node.value
        decimal = text.isascii() and text.isdigit() and (text[0] != "0" or text == "0")
        if tag == _INT_TAG and decimal:  # (a leading 0 is octal in YAML 1.1)
            return int(text)
        return _SCALAR_CONSTRUCTORS[tag](loader, node)  # KeyError for other tags (merge, ...)
    if kind is yaml.MappingNode and tag == _MAP_TAG:
        return {_build(loader, key): _build(loader, value) for key, value in node.value}
    if kind is yaml.SequenceNode and tag == _SEQ_TAG:
        return [_build(loader, child) for child in node.value]
    raise _Unusual


def _corrupt(path: str | os.PathLike[str], text: str, error: BaseException) -> CorruptStateError:
    mark = getattr(error, "problem_mark", None)
    if isinstance(error, yaml.MarkedYAMLError) and mark is not None:
        start = error.context_mark
        problem = f"invalid YAML: {error.problem}"
        if error.context and start is not None:  # e.g. where an unclosed "[" opened
            problem += f" ({error.context} that starts at line {start.line + 1}, "
            problem += f"column {start.column + 1})"
        elif error.context:
            problem += f" ({error.context})"
        return CorruptStateError(path, problem, mark.line + 1, mark.column + 1)
    if isinstance(error, yaml.reader.ReaderError):  # a character YAML does not allow
        line = text.count("\n", 0, error.position) + 1
        column = error.position - text.rfind("\n", 0, error.position)
        code = error.character if isinstance(error.character, int) else ord(error.character)
        problem = f"invalid YAML: character {code:#x} is not allowed"
        return CorruptStateError(path, problem, line, column)
    where = _position_of(text, None)
    return CorruptStateError(path, f"invalid value: {error!r}", *(where or (None, None)))


def _position_of(text: str, key_path: list[Any] | None) -> tuple[int, int] | None:
    """Where the node at ``key_path`` (or else the first value that cannot be built) starts.

    Errors found after parsing (a bad timestamp, a date used as a key) carry no position; the
    document is parsed again, without building values, to find one.
    """
    try:
        node = yaml.compose(text, Loader=_SnapshotLoader)
    except _LOAD_ERRORS:
        return None
    builder = SafeConstructor()
    pending: list[Any] = [node]
    while pending:
        node = pending.pop()
        if key_path is not None:
            if not key_path:
                return node.start_mark.line + 1, node.start_mark.column + 1
            key, key_path = key_path[0], key_path[1:]
            pending = [_child(builder, node, key)]
            if pending[0] is None:
                return None
            if not key_path and isinstance(node, yaml.MappingNode):  # point at the key itself
                pending = [_key_node(builder, node, key) or pending[0]]
            continue
        try:
            builder.construct_object(node, deep=True)
        except _LOAD_ERRORS:
            if isinstance(node, yaml.ScalarNode):
                return node.start_mark.line + 1, node.start_mark.column + 1
            children = node.value if isinstance(node, yaml.SequenceNode) else []
            if isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            pending.extend(reversed(children))
    return None


def _child(builder: Any, node: Any, key: Any) -> Any:
    if isinstance(node, yaml.SequenceNode) and type(key) is int and key < len(node.value):
        return node.value[key]
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if _built(builder, key_node) == key:
                return value_node
    return None


def _key_node(builder: Any, node: Any, key: Any) -> Any:
    for key_node, _ in node.value:
        if _built(builder, key_node) == key:
            return key_node
    return None


def _built(builder: Any, node: Any) -> Any:
    try:
        return builder.construct_object(node, deep=True)
    except _LOAD_ERRORS:
        return None


def load_flow(content: bytes) -> Any:
    """Parse one YAML-only journal record (raises FlowError)."""
    try:
        return yaml.load(content, Loader=_SnapshotLoader)
    except _LOAD_ERRORS as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        if isinstance(error, yaml.reader.ReaderError):
            raise FlowError("a character YAML does not allow", error.position + 1) from None
        raise FlowError(problem, mark.column + 1 if mark is not None else None) from None
