"""Journal records: their grammar, how a state file splits into snapshot and records, and replay.

A state file is a YAML stream. The first document is the snapshot (a block mapping); each later
document is one journal record on one line, ``--- [op, path, ...]``, where ``path`` is the list
of keys and list indexes from the top of the state to the container the change applies to::

    ["set", path, key, value]          container[key] = value (dict key or list index)
    ["delete", path, key]              del container[key]
    ["insert", path, index, value]     container.insert(index, value)   (append: index = len)
    ["splice", path, start, stop, values]   container[start:stop] = values
    ["clear", path]                    container.clear()
    ["reorder", path, order]           container[:] = [container[i] for i in order]
    ["tx", [record, ...]]              several records applied together, or none of them

Files written by persistedstate 26.1 use the same first three operations, written as
``---`` on its own line followed by the record on the next line; both layouts are read.
See docs/design.md for the recovery rules implemented by :func:`read_state`.
"""

from __future__ import annotations

import json
import operator
import re
import zlib
from collections.abc import Callable, Iterator

from . import snapshot, values
from .errors import CorruptStateError
from .log import log
from .textpos import BOM, bom_length, line_and_column

TYPE_CHECKING = False  # (typing's, without importing typing: docs/design.md, Memory)
if TYPE_CHECKING:
    from typing import Any

# A document marker: "---" at the start of a line (the file's first, or one after a newline,
# which a fast literal scan finds), followed by a blank or the line's end.
_MARKER_AT_START = re.compile(rb"---(?=[ \t\r\n]|\Z)")
_MARKER_AFTER_NEWLINE = re.compile(rb"\n---(?=[ \t\r\n]|\Z)")
# -- the operations ------------------------------------------------------------------------
#
# Each operation is defined once, here: its record (name, fields, how to build its text), the
# in-memory change it stands for (a tuple type of its own, with the fields its docstring names,
# whose ``apply`` changes the raw tree, first noting how to take it back when given an undo
# list), and how replay checks a decoded record before applying that same change. (Changes are
# built from a tuple, ``Insert((items, 0, value))``: a NamedTuple's constructor, a Python
# function, cost 4% of an ``append``.) Record texts are built from already encoded parts: ``path``
# is a flow list (``path_text``), keys and values are flow text from ``values``. ("Any" is
# quoted in a base class, which runs at import: typing is imported for the type checker only.)
#
# The containers of a state's data are dict and list subclasses whose own methods write
# records (proxies.LiveDict, LiveList): a change is applied with the base class's methods.


class Set(tuple["Any", "Any", "Any"]):
    """(container, key, value): ``container[key] = value``, a dict key or an existing index."""

    __slots__ = ()

    def apply(self, undo: list[Change] | None) -> None:
        container, key, value = self
        base = dict if isinstance(container, dict) else list
        if undo is not None:
            if base is dict and not dict.__contains__(container, key):
                undo.append(Delete((container, key)))
            else:
                undo.append(Set((container, key, base.__getitem__(container, key))))
        base.__setitem__(container, key, value)


class Delete(tuple["Any", "Any"]):
    """(container, key): ``del container[key]``."""

    __slots__ = ()

    def apply(self, undo: list[Change] | None) -> None:
        container, key = self
        base = dict if isinstance(container, dict) else list
        if undo is not None:
            if base is list:
                undo.append(Insert((container, key, list.__getitem__(container, key))))
            elif (last := next(dict.__reversed__(container))) == key:
                # The last key: setting it again restores the order (and the key object:
                # del d[True] may remove the key 1).
                undo.append(Set((container, last, dict.__getitem__(container, key))))
            else:  # putting a key back in the middle means rebuilding the dict
                undo.append(Restore.of(container))
        base.__delitem__(container, key)


class Insert(tuple[list["Any"], int, "Any"]):
    """(container, index, value): ``container.insert(index, value)``; append inserts at len."""

    __slots__ = ()

    def apply(self, undo: list[Change] | None) -> None:
        container, index, value = self
        if undo is not None:
            undo.append(Delete((container, index)))
        list.insert(container, index, value)


class Splice(tuple[list["Any"], int, int, list["Any"]]):
    """(container, start, stop, items): ``container[start:stop] = items``."""

    __slots__ = ()

    def apply(self, undo: list[Change] | None) -> None:
        container, start, stop, items = self
        if undo is not None:
            removed = list.__getitem__(container, slice(start, stop))
            undo.append(Splice((container, start, start + len(items), removed)))
        list.__setitem__(container, slice(start, stop), items)


class Clear(tuple["Any"]):
    """(container,): ``container.clear()``."""

    __slots__ = ()

    def apply(self, undo: list[Change] | None) -> None:
        (container,) = self
        if undo is not None:
            undo.append(Restore.of(container))
        (dict if isinstance(container, dict) else list).clear(container)


class Reorder(tuple[list["Any"], list[int], list["Any"]]):
    """(container, order, items): ``container[:] = items`` (sort, reverse), where ``items`` is
    ``[container[i] for i in order]``, taken when the change is made: ``Reorder((container,
    order))``.

    The same objects move, so kept proxies follow them; and applying it twice gives the list
    applying it once does, so a change an exception interrupted can be finished without
    knowing whether it was applied (``is_applied`` tells, by the items' identity).
    """

    __slots__ = ()

    def __new__(cls, fields: tuple[list[Any], list[int]]) -> Reorder:
        container, order = fields
        items = list.copy(container)
        if len(order) != len(items):  # (an order computed before the list changed)
            raise ValueError("a reorder needs a permutation of all the list's indexes")
        return super().__new__(cls, (container, order, [items[i] for i in order]))

    def apply(self, undo: list[Change] | None) -> None:
        container, _, items = self
        if undo is not None:
            undo.append(Restore.of(container))
        list.__setitem__(container, slice(None), items)


class Restore(tuple["Any", list["Any"]]):
    """(container, contents): undo only (no record), put back a dict's or a list's items."""

    __slots__ = ()

    @staticmethod
    def of(container: Any) -> Restore:
        if isinstance(container, dict):
            return Restore((container, list(dict.items(container))))
        return Restore((container, list.copy(container)))

    def apply(self, undo: list[Change] | None) -> None:
        container, contents = self
        if undo is not None:
            undo.append(Restore.of(container))
        if isinstance(container, dict):
            dict.clear(container)
            dict.update(container, contents)
        else:
            list.__setitem__(container, slice(None), contents)


# A change to the raw tree, applied in memory after its record is written.
Change = Set | Delete | Insert | Splice | Clear | Reorder | Restore

_ABSENT: Any = object()


def is_applied(change: Change, length: int) -> bool:
    """Whether memory has ``change``, one whose ``apply`` an exception may have interrupted;
    ``length`` is the length its container had before it.

    Nothing else may have changed the container since. A Set, an equal-length Splice, a Clear
    or a Reorder is seen in the container itself (the very objects it puts there: when they
    were there already, applying it changes nothing); an Insert, a list's Delete or another
    Splice by the container's length; a dict's Delete by its key. A Restore (undo only) says
    no: applying it again changes nothing.
    """
    container = change[0]  # (a state's own: read with the base class's methods)
    if isinstance(change, Set):
        if isinstance(container, dict):
            return dict.get(container, change[1], _ABSENT) is change[2]
        return list.__getitem__(container, change[1]) is change[2]
    if isinstance(change, Delete) and isinstance(container, dict):
        return not dict.__contains__(container, change[1])
    grows = length_change(change)
    if grows:
        return base_len(container) == length + grows
    if isinstance(change, Splice):
        _, start, _, items = change
        placed = list.__getitem__(container, slice(start, start + len(items)))
        return all(map(operator.is_, placed, items))
    if isinstance(change, Clear):
        return not base_len(container)
    if isinstance(change, Reorder):
        return all(map(operator.is_, list.copy(container), change[2]))
    return False


def base_len(container: Any) -> int:
    """The length of ``container``, a dict or list, by its base class (no lock taken)."""
    return dict.__len__(container) if isinstance(container, dict) else list.__len__(container)


def length_change(change: Change) -> int:
    """How many items ``change`` adds to its list (negative: removes); 0 for the others."""
    if isinstance(change, Insert):
        return 1
    if isinstance(change, Delete):
        return -1
    if isinstance(change, Splice):
        _, start, stop, items = change
        return len(items) - (stop - start)
    return 0


def path_text(key_texts: list[str]) -> str:
    """The flow text of a path, from the flow texts of its keys and indexes."""
    return "[" + ", ".join(key_texts) + "]"


def set_record(path: str, key: str, value: str) -> str:
    return f'["set", {path}, {key}, {value}]'


def delete_record(path: str, key: str) -> str:
    return f'["delete", {path}, {key}]'


def insert_record(path: str, index: int, value: str) -> str:
    return f'["insert", {path}, {index}, {value}]'


def splice_record(path: str, start: int, stop: int, items: list[str]) -> str:
    return f'["splice", {path}, {start}, {stop}, [{", ".join(items)}]]'


def clear_record(path: str) -> str:
    return f'["clear", {path}]'


def reorder_record(path: str, order: list[int]) -> str:
    return f'["reorder", {path}, [{", ".join(map(str, order))}]]'


def tx_record(records: list[str]) -> str:
    return '["tx", [' + ", ".join(records) + "]]"


def line(record: str) -> bytes:
    """The bytes appended to the file for one record."""
    return ("--- " + record + "\n").encode("utf-8")


def set_line_start(path: str, key: str) -> bytes:
    """The bytes of a ``set`` record's line up to its value: ``line(set_record(path, key, v))``
    is ``set_line_start(path, key) + v.encode() + LINE_END`` (the scalar fast path's form)."""
    return f'--- ["set", {path}, {key}, '.encode()


LINE_END = b"]\n"

# The line written before the first record after each compaction, once per cycle (with that
# record, in the same write). It tells a person what the lines below are, and holds the CRC-32
# of the document above it, so that an edit of the document made while records follow it is
# noticed (read_state). A YAML comment: the file stays a YAML stream, and 26.1 files (which
# have no such line) read as they always did.
_HEADER_START = (
    b"# The lines below are changes made after the document above was written; they apply on "
    b"top of it, in order. To edit the document, first run: persistedstate compact FILE "
    b"(document crc32 "
)
_HEADER = re.compile(re.escape(_HEADER_START) + rb"([0-9a-f]{8})\)\r?\n")


def header_line(checksum: int) -> bytes:
    """The line that heads the records, for a document whose CRC-32 is ``checksum``."""
    return _HEADER_START + b"%08x)\n" % checksum


_ANY_HEADER = header_line(0)  # (a template: the digits of a torn header's checksum vary)
HEADER_SIZE = len(_ANY_HEADER)


def _is_torn_header(tail: bytes) -> bool:
    """Whether ``tail``, a last line without its newline, is the start of a header line (then
    perhaps zero bytes: a file system that extended the file but never wrote all the data)."""
    start = tail.rstrip(b"\0")
    return _HEADER.fullmatch(start + _ANY_HEADER[len(start) :]) is not None


def _replay_set(container: Any, record: list[Any]) -> None:
    key = record[2]
    if type(key) is not str or not isinstance(container, dict):  # (a str key in a dict: fine)
        _check_key(container, key, allow_end=False)
    value = record[3]
    if type(value) is dict or type(value) is list:
        value = values.stored_like(container, value)
    Set((container, key, value)).apply(None)


def _replay_delete(container: Any, record: list[Any]) -> None:
    _check_key(container, record[2], allow_end=False)
    Delete((container, record[2])).apply(None)


def _replay_insert(container: Any, record: list[Any]) -> None:
    _check_index(container, record[2], allow_end=True)
    Insert((container, record[2], values.stored_like(container, record[3]))).apply(None)


def _replay_splice(container: Any, record: list[Any]) -> None:
    _check_index(container, record[2], allow_end=True)
    _check_index(container, record[3], allow_end=True)
    if not isinstance(record[4], list):
        raise _BadRecord("a splice record needs a list of values")
    items = [values.stored_like(container, item) for item in record[4]]
    Splice((container, record[2], record[3], items)).apply(None)


def _replay_clear(container: Any, record: list[Any]) -> None:
    Clear((container,)).apply(None)


def _replay_reorder(container: Any, record: list[Any]) -> None:
    _check_index(container, 0, allow_end=True)
    order = record[2]
    if not isinstance(order, list) or sorted(order) != list(range(len(container))):
        raise _BadRecord("a reorder record needs a permutation of the list's indexes")
    Reorder((container, order)).apply(None)


class Operation:
    """One kind of journal record."""

    __slots__ = ("build", "fields", "name", "replay")

    def __init__(
        self,
        name: str,
        fields: int,  # the record's length, the name and the path included
        build: Callable[..., str],  # the record's text from its encoded parts
        replay: Callable[[Any, list[Any]], None],  # check a decoded record, then apply it
    ) -> None:
        self.name = name
        self.fields = fields
        self.build = build
        self.replay = replay


OPERATIONS = {
    operation.name: operation
    for operation in (
        Operation("set", 4, set_record, _replay_set),
        Operation("delete", 3, delete_record, _replay_delete),
        Operation("insert", 4, insert_record, _replay_insert),
        Operation("splice", 5, splice_record, _replay_splice),
        Operation("clear", 2, clear_record, _replay_clear),
        Operation("reorder", 3, reorder_record, _replay_reorder),
    )
}


def apply_record(
    root: dict[Any, Any], record: list[Any], applied: Callable[[list[Any]], None] | None = None
) -> None:
    """Apply one decoded record to the data; raises _BadRecord if it does not fit.

    ``applied`` is called with each record (each of a tx record's) just after it is applied.
    """
    name = record[0]
    if name == TX.name:
        _replay_tx(root, record, applied)
        return
    container = _resolve(root, record[1])
    try:
        OPERATIONS[name].replay(container, record)
    except (KeyError, IndexError, TypeError) as error:
        raise _BadRecord(f"{name!r} record does not fit the state: {error!r}") from None
    if applied is not None:
        applied(record)


def _replay_tx(
    root: Any, record: list[Any], applied: Callable[[list[Any]], None] | None = None
) -> None:
    if not isinstance(record[1], list):
        raise _BadRecord("a tx record must hold a list of records")
    for inner in record[1]:
        operation = _operation(inner) if isinstance(inner, list) else None
        if operation is None or operation is TX:
            raise _BadRecord("a tx record holds something that is not a record")
        _check_fields(inner)
        apply_record(root, inner, applied)


# Several records applied together, or none of them (its replay is given the top of the state).
TX = Operation("tx", 2, tx_record, _replay_tx)


class ReadResult:
    """What :func:`read_state` found in a file."""

    __slots__ = (
        "data",
        "document",
        "good_size",
        "needs_newline",
        "records",
        "snapshot_size",
        "snapshot_top",
        "touched",
    )

    def __init__(
        self,
        data: dict[Any, Any],
        records: int,  # journal records replayed
        # Bytes of the first document (without the records' heading line), from the file's
        # start; ``document`` is its text, without a byte-order mark before it.
        snapshot_size: int,
        document: bytes,
        # Bytes up to the end of the last good record: the file minus a torn tail; with no
        # good record, the document alone (a line heading no record is dropped too).
        good_size: int,
        needs_newline: bool,  # the good part has no final newline (26.1 writes none)
        snapshot_top: dict[Any, Any],  # the top-level values as the snapshot held them
        touched: set[Any],  # top-level keys that records changed inside
    ) -> None:
        self.data = data
        self.records = records
        self.snapshot_size = snapshot_size
        self.document = document
        self.good_size = good_size
        self.needs_newline = needs_newline
        self.snapshot_top = snapshot_top
        self.touched = touched


class _BadRecord(Exception):
    def __init__(self, problem: str, column: int | None = None, unreadable: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.column = column
        self.unreadable = unreadable  # it does not parse: what a cut-short write leaves


def read_state(path: str, raw: bytes, *, stored: bool = False) -> ReadResult:
    """Parse a whole state file: load the snapshot and replay the journal over it.

    With ``stored``, the data comes in a state's own dicts and lists (``values.new_dict``);
    else in plain ones.

    A torn end (what an interrupted append leaves: a last record without its final newline
    that does not parse, a partial "---" marker, or zero bytes) is dropped with a warning;
    any other damage raises CorruptStateError with line and column.
    """
    body = raw
    document_start = bom_length(raw)  # (what follows it is read as if it began the file)
    tail_start = max(raw.rfind(b"\n") + 1, document_start)
    tail = raw[tail_start:]
    if tail and (b"--- ".startswith(tail) or not tail.strip(b"\0") or _is_torn_header(tail)):
        what = "a partial record marker" if tail[:1] != b"#" else "a partial heading line"
        _warn_torn(path, line_and_column(raw, tail_start)[0], what)
        body = raw[:tail_start]
    markers = [m.start() + 1 for m in _MARKER_AFTER_NEWLINE.finditer(body, document_start)]
    if _MARKER_AT_START.match(body, document_start):
        markers.insert(0, document_start)
    snapshot_end = markers[0] if markers else len(body)
    before = body[document_start : markers[0]] if markers else b""
    if markers and _snapshot_owns_first_marker(before, body, markers[0]):
        snapshot_end = markers[1] if len(markers) > 1 else len(body)
        markers = markers[1:]
    document_end, recorded_checksum = _find_header(body, document_start, snapshot_end)
    document = body[document_start:document_end]
    data = snapshot.load_snapshot(path, document, stored=stored)
    snapshot_top = dict(dict.items(data))
    touched: set[Any] = set()

    ends = [*markers[1:], len(body)] if markers else []
    good_end = len(body)
    for number, (start, end) in enumerate(zip(markers, ends, strict=True)):
        content = body[start + 3 : end].strip()
        try:
            if not content:
                raise _BadRecord("an empty journal record", unreadable=True)
            record = decode_record(content)
        except _BadRecord as error:
            # Only a record cut short can be a torn write: one that parses is complete.
            cut_short = not content or not body.endswith(b"\n")
            if end == len(body) and error.unreadable and cut_short:
                _warn_torn(path, line_and_column(body, start)[0], error.problem)
                good_end = start
                break
            raise _corrupt_record(path, body, start, end, error) from None
        if number == 0 and recorded_checksum is not None:
            _refuse_an_edited_document(path, body, document, recorded_checksum, markers)
        try:
            apply_record(data, record)
            deep = len(content) > _HALF_MAX_DEPTH and _may_deepen(content, record)
            if deep and values.deeper_than(data, values.MAX_DEPTH):
                raise _BadRecord(f"it nests the state more than {values.MAX_DEPTH} levels deep")
        except _BadRecord as error:
            raise _corrupt_record(path, body, start, end, error) from None
        if record[0] == TX.name:
            touched.update(path[0] for path in _paths(record) if path)
        elif record[1]:
            touched.add(record[1][0])
    else:
        number = len(markers)  # (every record is good)
    if number == 0:  # the document alone: a header with no record after it was torn from it
        if recorded_checksum is not None and not markers:
            _warn_torn(path, line_and_column(body, document_end)[0], "a heading line, no record")
        good_end = document_end
    needs_newline = good_end > 0 and body[good_end - 1 : good_end] != b"\n"
    return ReadResult(
        data, number, document_end, document, good_end, needs_newline, snapshot_top, touched
    )


def _find_header(body: bytes, document_start: int, snapshot_end: int) -> tuple[int, int | None]:
    """Where the document ends, and the checksum its header line records (None if none).

    The header is the last line before the first record (or, torn from it, of the file).
    """
    start = max(body.rfind(b"\n", 0, max(snapshot_end - 1, 0)) + 1, document_start)
    header = _HEADER.fullmatch(body, start, snapshot_end)
    if header is None:
        return snapshot_end, None
    return start, int(header.group(1), 16)


def _refuse_an_edited_document(
    path: str, body: bytes, document: bytes, recorded: int, markers: list[int]
) -> None:
    """Raise CorruptStateError if the document is not the one the records were written after.

    The records were made to the document as it was; applied to an edited one, they could
    undo the edit without a word. A person chooses instead: the message says how. (A
    byte-order mark an editor added or removed is no edit: the checksum may cover one or not.)
    """
    if recorded == zlib.crc32(document) or recorded == zlib.crc32(document, _BOM_CHECKSUM):
        return  # (the second sum only when the first differs: it reads the whole document)
    line = line_and_column(document, len(document))[0]
    count = f"{len(markers)} change" + ("" if len(markers) == 1 else "s")
    keys = _top_keys_changed(body, markers)
    problem = (
        f"the document above line {line} was edited after the {count} below it were made"
        f"{f' (they change {keys})' if keys else ''}: applied to the edited document, they "
        f"could undo the edit without a word, so the file is not read. To keep both, undo "
        f"the edit, run `persistedstate compact {path}`, then edit again; to apply the "
        f"changes on top of the edit (where they change a value, theirs wins), delete line "
        f"{line}; to drop the changes and keep the document as edited, delete line {line} and "
        f"every line after it"
    )
    hint = (
        f"undo the edit and run `persistedstate compact {path}` first, or delete line {line} "
        "to apply the changes on top of it"
    )
    raise CorruptStateError(path, problem, line, 1, text=body, hint=hint)


_BOM_CHECKSUM = zlib.crc32(BOM)


def _top_keys_changed(body: bytes, markers: list[int]) -> str:
    """The top-level keys that the records change, for a person ("every key" for a clear)."""
    keys: list[Any] = []
    ends = [*markers[1:], len(body)]
    for start, end in zip(markers, ends, strict=True):
        try:
            record = decode_record(body[start + 3 : end].strip())
        except _BadRecord:
            continue
        for inner in record[1] if record[0] == TX.name else [record]:
            if not isinstance(inner, list) or len(inner) < 2 or not isinstance(inner[1], list):
                continue
            if inner[1]:
                keys.append(inner[1][0])
            elif inner[0] == "clear":
                return "every key"
            elif len(inner) > 2:
                keys.append(inner[2])
    unique = list(dict.fromkeys(map(repr, keys)))
    return ", ".join(unique[:10]) + (f" and {len(unique) - 10} more" if len(unique) > 10 else "")


def _corrupt_record(
    path: str, body: bytes, start: int, end: int, error: _BadRecord
) -> CorruptStateError:
    """The error for the record between ``start`` and ``end``, pointing at its text."""
    first = end - len(body[start + 3 : end].lstrip()) if body[start + 3 : end].strip() else start
    line, column = line_and_column(body, first)
    column += (error.column or 1) - 1
    return CorruptStateError(path, error.problem, line, column, text=body)


def _warn_torn(path: str, line_no: int, problem: str) -> None:
    log.warning(
        "%s: ignoring an incomplete last journal record at line %d, left by an interrupted "
        "write (%s); everything before it is kept",
        path,
        line_no,
        problem,
    )


def _snapshot_owns_first_marker(before: bytes, raw: bytes, marker: int) -> bool:
    """Whether the first "---" starts the snapshot itself rather than the first record.

    26.1 writes an empty state as nothing, so its files may start with a record; a person may
    start the snapshot with "---" (after comments or a %YAML directive). Records are flow
    sequences, snapshots are mappings, so the first character after the marker decides.
    """
    for text in before.splitlines():
        stripped = text.strip()
        if stripped and not stripped.startswith(b"#"):
            return stripped.startswith(b"%")  # directives belong to the document after them
    return not raw[marker + 3 :].lstrip().startswith(b"[")


def _paths(record: list[Any]) -> Iterator[list[Any]]:
    """The paths a (valid, applied) record changes."""
    if record[0] == TX.name:
        for inner in record[1]:
            yield from _paths(inner)
    else:
        yield record[1]


# A record no longer than this cannot hold more brackets, or a longer path, than this, so it
# cannot break the nesting limit (the caller skips _may_deepen for it).
_HALF_MAX_DEPTH = values.MAX_DEPTH // 2


def _may_deepen(content: bytes, record: list[Any]) -> bool:
    """Whether a longer record might break the nesting limit (a cheap test, before the walk)."""
    if content.count(b"[") + content.count(b"{") > _HALF_MAX_DEPTH:
        return True
    if record[0] != "tx":
        return len(record[1]) > _HALF_MAX_DEPTH
    return any(len(path) > _HALF_MAX_DEPTH for path in _paths(record))


def _yaml_reads_it_otherwise(name: str) -> Any:
    raise ValueError(f"{name} is a string in YAML")  # (so the record is read as YAML)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping = dict(pairs)
    if len(mapping) != len(pairs):  # (YAML then reads the record, and says where)
        raise ValueError("a key given twice")
    return mapping


# Python's json reads NaN, Infinity and -Infinity as floats; in YAML they are strings. It keeps
# the last value of a key given twice, which YAML, as the state reads it, refuses: the hook
# checks each object (it runs for objects only, so a record holding none pays nothing).
_JSON = json.JSONDecoder(parse_constant=_yaml_reads_it_otherwise, object_pairs_hook=_unique_keys)
# JSON reads "\ud800" as a lone surrogate, which YAML refuses and UTF-8 cannot encode.
_HIGH, _LOW = rb"\\u[dD][89abAB][0-9a-fA-F]{2}", rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_LONE_SURROGATE_ESCAPE = re.compile(_HIGH + rb"(?!" + _LOW + rb")|(?<!" + _HIGH + rb")" + _LOW)


def decode_record(content: bytes) -> list[Any]:
    """Parse one record: JSON when it is JSON (the common case, fast), else YAML flow."""
    try:
        text = content.decode()
        record, end = _JSON.raw_decode(text)  # (json.loads, minus two Python-level layers)
        if end != len(text):
            raise ValueError("more after the JSON value")
        if "\\u" in text:  # (str: a bytes `in` first tries its argument as an int, 6x slower)
            _refuse_lone_surrogates(content, record)
    except (ValueError, RecursionError):  # (UnicodeDecodeError too: YAML says where)
        try:
            record = snapshot.load_flow(content)
        except snapshot.FlowError as error:
            if error.parsed:
                raise _BadRecord(f"journal record holds {error.problem}", error.column) from None
            problem = f"unreadable journal record: {error.problem}"
            raise _BadRecord(problem, error.column, unreadable=True) from None
        try:
            record = values.check_loaded(record)
        except values.UnsupportedValue as error:
            raise _BadRecord(f"journal record: {error.message}") from None
    if not isinstance(record, list) or _operation(record) is None:
        raise _BadRecord("not a journal record (expected [operation, path, ...])")
    _check_fields(record)
    return record


def _operation(record: list[Any]) -> Operation | None:
    """The operation a decoded record names (None: it names none, or is empty)."""
    if not record or type(record[0]) is not str:
        return None
    return TX if record[0] == TX.name else OPERATIONS.get(record[0])


def _check_fields(record: list[Any]) -> None:
    """Raise _BadRecord unless the record has its operation's number of fields."""
    operation = _operation(record)
    assert operation is not None
    if len(record) != operation.fields:
        raise _BadRecord(
            f"a {record[0]!r} record has {len(record)} fields, expected {operation.fields}"
        )


def _refuse_lone_surrogates(content: bytes, record: list[Any]) -> None:
    escape = _LONE_SURROGATE_ESCAPE.search(content)
    if escape is None:
        return
    try:  # (the escape may be text after an escaped backslash: the decoded strings decide)
        values.check_loaded(record)
    except values.UnsupportedValue:
        column = len(content[: escape.start()].decode()) + 1  # (characters, not bytes)
        raise _BadRecord(
            "a lone surrogate escape (\\ud800-\\udfff): no UTF-8 text holds one", column
        ) from None


def _resolve(root: dict[Any, Any], path: Any) -> Any:
    if not isinstance(path, list):
        raise _BadRecord("the path of a record must be a list")
    node: Any = root
    for depth, key in enumerate(path):
        if not isinstance(node, dict) or type(key) is not str or key not in node:  # (else: fine)
            _check_key(node, key, allow_end=False, path=path[:depth])
        node = node[key]
    if not isinstance(node, (dict, list)):
        raise _BadRecord(f"path {path} leads to a {type(node).__name__}, not a dict or list")
    return node


def _check_key(node: Any, key: Any, allow_end: bool, path: list[Any] | None = None) -> None:
    if isinstance(node, dict):
        if type(key) not in values.KEY_TYPES:
            raise _BadRecord(f"a {type(key).__name__} cannot be a key")
        if key != key:
            raise _BadRecord("nan cannot be a dict key (it is not equal to itself)")
        if not allow_end and key not in node and path is not None:
            raise _BadRecord(f"path {[*path, key]} does not exist in the state")
        return
    _check_index(node, key, allow_end, path)


def _check_index(node: Any, index: Any, allow_end: bool, path: list[Any] | None = None) -> None:
    where = f" at {[*path, index]}" if path is not None else ""
    if not isinstance(node, list):
        kind = "dict" if isinstance(node, dict) else type(node).__name__
        raise _BadRecord(f"expected a list{where}, found a {kind}")
    if type(index) is not int:
        raise _BadRecord(f"a list index must be an int{where}, not {index!r}")
    limit = len(node) if allow_end else len(node) - 1
    if not -len(node) <= index <= limit:
        raise _BadRecord(f"list index {index} out of range{where}")


def apply_records(
    path: str,
    root: dict[Any, Any],
    data: bytes,
    applied: Callable[[list[Any], int], None] | None = None,
) -> set[Any]:
    """Apply record lines another process appended (complete lines, ``--- [...]``) to
    ``root``, in order, as replay does; returns the top-level keys changed inside.

    ``applied`` is called with each record (each of a tx record's) just after it is applied,
    and the offset of its line in ``data``. Raises CorruptStateError (naming ``path``) for
    anything that is not a record that fits.
    """
    touched: set[Any] = set()
    offset = 0
    for text in data.split(b"\n"):
        at, offset = offset, offset + len(text) + 1
        content = text.strip()
        if not content or _HEADER.fullmatch(text + b"\n"):
            continue  # (the final newline a 26.1 file lacked; the line that heads the records)
        try:
            if not _MARKER_AT_START.match(content):
                raise _BadRecord("a line that is not a journal record")
            record = decode_record(content[3:].strip())
            apply_record(root, record, None if applied is None else _at(applied, at))
        except _BadRecord as error:
            raise CorruptStateError(path, error.problem) from None
        touched.update(keys[0] for keys in _paths(record) if keys)
    return touched


def _at(applied: Callable[[list[Any], int], None], offset: int) -> Callable[[list[Any]], None]:
    return lambda record: applied(record, offset)
