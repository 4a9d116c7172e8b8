"""The snapshot, the file's first document, read and written with PyYAML.

Owns how the snapshot is read (:func:`load_snapshot`, with the fast builder
:func:`load_document` and the errors that say where a file is damaged), how it is written
(:func:`dump_snapshot`, and :class:`SnapshotEntries`, which reuses the text of entries that did
not change), and the YAML-only journal records (:func:`load_flow`).

Uses PyYAML's libyaml bindings (CSafeLoader, CSafeDumper) when PyYAML was built with them and
the pure-Python SafeLoader/SafeDumper otherwise; both read and write the same YAML. Only safe
tags are used, so any YAML reader can load the snapshot. A snapshot that holds comments
(:func:`has_comments`) is written by the ``comments`` module instead, which keeps them.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import operator
import os
import re
from collections.abc import Iterator
from itertools import compress

import yaml
from yaml.constructor import SafeConstructor

from . import values
from .errors import CorruptStateError
from .textpos import line_and_column

TYPE_CHECKING = False  # (typing's, without importing typing: docs/design.md, Memory)
if TYPE_CHECKING:
    from typing import Any, ClassVar

try:
    from yaml import CSafeDumper as _BaseDumper
    from yaml import CSafeLoader as Loader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeDumper as _BaseDumper  # type: ignore[assignment]
    from yaml import SafeLoader as Loader  # type: ignore[assignment]

# A "#" at the start of a line or after a blank may start a comment (or sit in a string:
# a false alarm only costs the slower round-trip compaction).
_COMMENT = re.compile(rb"(?:^|[ \t])#", re.MULTILINE)

_ESCAPED_ASTRAL = re.compile(r"\\U[0-9A-Fa-f]{8}")
# YAML's line breaks besides "\n" and "\r" (NEL, LS, PS): the emitters (PyYAML's Python one,
# ruamel.yaml's) fold them in every style but double quotes.
YAML_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")

# A YAML parser or constructor may raise almost anything on bad input: ValueError for
# "2026-13-45", AttributeError for `!!timestamp "2026"`, KeyError for `!!bool maybe`,
# RecursionError for absurd nesting. All of them mean the input is bad.
LOAD_ERRORS = (Exception,)


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
    def __init__(self, problem: str, column: int | None, *, parsed: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.column = column
        self.parsed = parsed  # the text is whole YAML, which a cut-short write never is


class _SnapshotDumper(_BaseDumper):
    """SafeDumper with the choices that make the snapshot exact and pleasant to read."""

    def ignore_aliases(self, data: Any) -> bool:
        # No anchors and aliases: a state holds no shared containers, and a datetime used in
        # two places must not tie two entries together (each entry is written on its own).
        return True


def _represent_str(dumper: Any, value: str) -> yaml.Node:
    # Multi-line text as a literal block; the emitter falls back to quotes when it must.
    if YAML_LINE_BREAKS.search(value):
        style: str | None = '"'
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


def _represent_mapping(dumper: Any, value: dict[Any, Any]) -> yaml.Node:
    # (A state's dicts are a subclass of dict: their own items() is for other code.)
    node: yaml.Node = dumper.represent_mapping("tag:yaml.org,2002:map", dict.items(value))
    return node


def _represent_sequence(dumper: Any, value: list[Any]) -> yaml.Node:
    node: yaml.Node = dumper.represent_sequence("tag:yaml.org,2002:seq", list.copy(value))
    return node


for _dumper in (_SnapshotDumper, _PureSnapshotDumper):
    _dumper.add_representer(str, _represent_str)
    _dumper.add_representer(int, _represent_int)
    _dumper.add_multi_representer(dict, _represent_mapping)  # the dicts and lists of a state
    _dumper.add_multi_representer(list, _represent_sequence)


def has_comments(snapshot: bytes) -> bool:
    return b"#" in snapshot and _COMMENT.search(snapshot) is not None  # (the first test: memchr)


def dump_snapshot(data: dict[Any, Any]) -> bytes:
    """The snapshot document: a block mapping in insertion order, Unicode as is."""
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
        keys, values = list(dict.keys(data)), list(dict.values(data))
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
            for index, (key, value) in enumerate(dict.items(data)):
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


def load_snapshot(
    path: str | os.PathLike[str], raw: bytes, *, stored: bool = False
) -> dict[Any, Any]:
    """Parse the snapshot document; raises CorruptStateError saying where it is wrong.

    With ``stored``, the data comes in a state's own dicts and lists (``values.new_dict``).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = line_and_column(raw, error.start)
        raise CorruptStateError(
            path, "the file is not valid UTF-8", line, column, text=raw
        ) from None
    try:
        with _collector_paused():
            data = load_document(text, refuse_duplicate_keys=True)
    except LOAD_ERRORS as error:
        raise _corrupt(path, text, error) from None
    if data is None:
        return values.new_dict() if stored else {}
    if type(data) is not dict:
        raise CorruptStateError(
            path,
            f"the state must be a YAML mapping (key: value lines), found a {type(data).__name__}",
            1,
            1,
            text=text,
        )
    try:
        with _collector_paused():  # (it makes the state's own dicts and lists: as many)
            checked: dict[Any, Any] = values.check_loaded(data, stored=stored)
    except values.UnsupportedValue as error:
        where = position_of(text, error.key_path)
        problem = f"{error.message} at key path {error.key_path}"
        raise CorruptStateError(path, problem, *(where or (None, None)), text=text) from None
    return checked


def load_document(text: str | bytes, *, refuse_duplicate_keys: bool = False) -> Any:
    """``yaml.load(text)``, the same result, built faster for the usual documents.

    PyYAML's constructor spends most of a load on bookkeeping for cases a state file rarely
    has. Plain mappings, sequences, strings and decimal ints are built here directly from the
    parsed nodes; other scalars go to PyYAML's own function for their tag. Anything else
    (merge keys, other tags, a recursive alias, a key given twice, any error) goes through
    PyYAML's constructor, which gives the result or the error yaml.load would; except that
    with ``refuse_duplicate_keys`` a mapping holding a key twice raises DuplicateKey
    (yaml.load keeps the last value).
    """
    loader = _SnapshotLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return _build(loader, node)
        except Exception:  # an unusual node, or bad input: PyYAML says what it makes of it
            if refuse_duplicate_keys:
                _refuse_duplicate_keys(node)
            return loader.construct_document(node)
    finally:
        loader.dispose()


class DuplicateKey(Exception):
    """A mapping holds ``key`` twice; ``line`` and ``column`` say where the second one is."""

    def __init__(self, problem: str, key: Any, line: int, column: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.key = key
        self.line = line
        self.column = column


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _refuse_duplicate_keys(root: Any) -> None:
    """Raise DuplicateKey for the key given twice that comes first in the text, if any.

    Keys equal in Python are one dict key (``1``, ``1.0`` and ``true``). A key a merge key
    (``<<``) brings in may be given again: that is what merging is for.
    """
    builder = SafeConstructor()
    found: list[DuplicateKey] = []
    pending, seen = [root], set()
    while pending:
        node = pending.pop()
        if id(node) in seen:  # (an alias: its node was looked at where it was anchored)
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            first: dict[Any, tuple[int, Any, Any]] = {}  # key -> (index, key, key node)
            for index, (key_node, value_node) in enumerate(node.value):
                pending.append(value_node)
                if key_node.tag == _MERGE_TAG:
                    continue
                try:
                    key = builder.construct_object(key_node, deep=True)
                    earlier, earlier_key, earlier_node = first.setdefault(
                        key, (index, key, key_node)
                    )
                except Exception:  # (a key that cannot be one: the constructor will say so)
                    continue
                if earlier != index:
                    found.append(_duplicate(earlier_key, earlier_node, key, key_node))
    if found:
        raise min(found, key=lambda duplicate: (duplicate.line, duplicate.column))


def _duplicate(first_key: Any, first_node: Any, key: Any, node: Any) -> DuplicateKey:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    first = "first" if repr(first_key) == repr(key) else f"the same key as {first_key!r}"
    problem = (
        f"duplicate key {key!r} at line {line} ({first} at line {first_node.start_mark.line + 1})"
    )
    return DuplicateKey(problem, key, line, column)


def compose(text: str) -> Any:
    """The node tree of a snapshot, its tags resolved as the state reads them (None if empty)."""
    return yaml.compose(text, Loader=_SnapshotLoader)


class _SafeTags(yaml.resolver.Resolver):
    """PyYAML's safe tag resolution, from tables a program cannot have added to."""

    # (PyYAML keeps these tables on the class and declares them as instance variables.)
    yaml_implicit_resolvers = {  # noqa: RUF012
        first: list(resolvers)
        for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    }
    yaml_path_resolvers: dict[Any, Any] = {}  # noqa: RUF012


SAFE_TAGS = _SafeTags()  # stateless without path resolvers: one serves every document


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
        # (It refers to SAFE_TAGS, not to this loader: no reference cycle to wait for.)
        self.resolve = functools.lru_cache(maxsize=None)(SAFE_TAGS.resolve)  # type: ignore[method-assign]


_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
# PyYAML's own function for the tag of each scalar type a state holds.
_SCALAR_CONSTRUCTORS = {
    row.yaml_tag: SafeConstructor.yaml_constructors[row.yaml_tag]
    for row in values.VALUE_TYPES
    if not row.mutable
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
        mapping = {_build(loader, key): _build(loader, value) for key, value in node.value}
        if len(mapping) != len(node.value):
            raise _Unusual  # a key given twice: yaml.load keeps the last value, or it is refused
        return mapping
    if kind is yaml.SequenceNode and tag == _SEQ_TAG:
        return [_build(loader, child) for child in node.value]
    raise _Unusual


def _corrupt(path: str | os.PathLike[str], text: str, error: BaseException) -> CorruptStateError:
    if isinstance(error, DuplicateKey):
        return CorruptStateError(path, error.problem, error.line, error.column, text=text)
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        from . import mistakes  # (only for a damaged file: an open need not pay for it)

        problem, line, column, hint = mistakes.explain(text, error)
        return CorruptStateError(path, problem, line, column, text=text, hint=hint)
    if isinstance(error, yaml.reader.ReaderError):  # a character YAML does not allow
        code = error.character if isinstance(error.character, int) else ord(error.character)
        problem = f"invalid YAML: character {code:#x} is not allowed"
        line, column = line_and_column(text, error.position)
        return CorruptStateError(path, problem, line, column, text=text)
    where = position_of(text, None)
    return CorruptStateError(path, f"invalid value: {error!r}", *(where or (None, None)), text=text)


def position_of(
    text: str, key_path: list[Any] | None, *, at_value: bool = False
) -> tuple[int, int] | None:
    """Where the node at ``key_path`` (or else the first value that cannot be built) starts:
    for a mapping's entry, its key, or with ``at_value`` its value.

    Errors found after parsing (a bad timestamp, a date used as a key) carry no position; the
    document is parsed again, without building values, to find one.
    """
    try:
        node = compose(text)
    except LOAD_ERRORS:
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
            if not key_path and isinstance(node, yaml.MappingNode) and not at_value:  # the key
                pending = [_key_node(builder, node, key) or pending[0]]
            continue
        try:
            builder.construct_object(node, deep=True)
        except LOAD_ERRORS:
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
            if _is_key(_built(builder, key_node), key):
                return value_node
    return None


def _key_node(builder: Any, node: Any, key: Any) -> Any:
    for key_node, _ in node.value:
        if _is_key(_built(builder, key_node), key):
            return key_node
    return None


def _is_key(built: Any, key: Any) -> bool:
    """Whether a key built from the document is ``key`` of a key path: equal, or both NaN
    (refused as a key, and to be pointed at)."""
    return bool(built == key) or (built != built and key != key)


def _built(builder: Any, node: Any) -> Any:
    try:
        return builder.construct_object(node, deep=True)
    except LOAD_ERRORS:
        return None


def load_flow(content: bytes) -> Any:
    """Parse one YAML-only journal record (raises FlowError; a key given twice in a mapping
    too, as in the snapshot)."""
    try:
        return load_document(content, refuse_duplicate_keys=True)
    except DuplicateKey as error:
        problem = f"the key {error.key!r} twice in one mapping (it may be given once)"
        raise FlowError(problem, error.column, parsed=True) from None
    except LOAD_ERRORS as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        if isinstance(error, yaml.reader.ReaderError):
            raise FlowError("a character YAML does not allow", error.position + 1) from None
        raise FlowError(problem, mark.column + 1 if mark is not None else None) from None
