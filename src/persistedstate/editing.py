"""Editing a state file by hand, even while a program has it open (``persistedstate edit``).

An :class:`EditSession` holds the file's write lock twice, briefly: ``start`` gives the text to
edit (the file compacted first if it has a journal, comments kept; a damaged file as it is),
and ``save`` merges the person's edit with what programs changed meanwhile and writes it:
docs/design.md, "Editing by hand while a program runs". The person edits with no lock held.

The merge goes key by key, down through mappings that are mappings in all three versions: a
key the person changed takes the person's value, a key only a program changed keeps the
program's, a key both changed to different values is a :class:`Conflict`. A key named in a
conflict once is not one again in the same session: the person has seen it and chosen.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any, NamedTuple

from . import journal, snapshot, storage, values
from .errors import CorruptStateError
from .textpos import bom_length
from .values import key_path

# Lines of a message written at the top of the text to edit, taken out again when it is saved.
NOTICE = b"# persistedstate edit: "

_MISSING: Any = object()


class Conflict(NamedTuple):
    """A key both the person and a program changed: ``keys`` from the top (empty: the whole
    file, when a damaged file changed meanwhile), the person's value, the program's now
    (``MISSING`` when deleted)."""

    keys: tuple[Any, ...]
    yours: Any
    theirs: Any

    def describe(self) -> str:
        if not self.keys:
            return "the file was changed by a program while you edited it"
        return (
            f"{key_path(self.keys)}: you made it {_shown(self.yours)}, and a running program "
            f"made it {_shown(self.theirs)} meanwhile"
        )


MISSING = _MISSING


class EditSession:
    """One ``persistedstate edit`` of the file at ``path``; ``wait`` is how long to wait for
    the write lock each time (a program inside a transaction keeps it)."""

    def __init__(self, path: str, *, wait: float) -> None:
        self.path = path
        self.wait = wait
        self.damage: CorruptStateError | None = None  # what is wrong with a damaged file
        self._text = b""  # what was handed out (damaged: to compare with the file at save)
        self._base: dict[Any, Any] | None = None  # the state the person started from
        # Keys named in a conflict: the person chose, so the program changing them again does
        # not ask again (a counter it keeps changing would reopen the editor forever).
        self._told: set[tuple[Any, ...]] = set()

    def start(self) -> bytes:
        """The text to edit. Raises FileNotFoundError if there is no file."""
        file = self._open()
        try:
            raw = file.read()
            if raw is None:
                raise FileNotFoundError(self.path)
            try:
                result = journal.read_state(file.path, raw)
            except CorruptStateError as error:
                self.damage = error
                self._text = raw
                return raw
            text = raw
            if result.records or result.good_size < len(raw):
                previous = result.document
                if snapshot.has_comments(previous):
                    from . import comments  # (ruamel.yaml: only for a file that holds comments)

                    text = comments.dump_snapshot(result.data, previous, file.path)
                else:
                    text = snapshot.dump_snapshot(result.data)
                file.replace(text)
        finally:
            file.close()
        self._text = text
        self._base = result.data
        return text

    def save(self, edited: bytes) -> list[Conflict]:
        """Merge ``edited`` (a valid state: check it first) with the file as it is now and
        write it; returns the conflicts instead, writing nothing. After a conflict the base
        of those keys is the program's value, and the keys (and all under them) conflict no
        more: saving the same edit again keeps the person's value even if a program changed
        it again meanwhile, and writing the program's value back keeps the program's.
        """
        edited = edited[bom_length(edited) :]  # (we write none: docs/design.md, "The file")
        if edited and not edited.endswith(b"\n"):
            edited += b"\n"
        yours = journal.read_state(self.path, edited).data
        file = self._open()
        try:
            raw = file.read()
            if raw is None:
                raise FileNotFoundError(self.path)
            if self._base is None:  # a repair of a damaged file
                if raw != self._text and () not in self._told:
                    self._told.add(())
                    return [Conflict((), _MISSING, _MISSING)]
                file.replace(edited)
                return []
            result = journal.read_state(file.path, raw)
            file.keep_only(raw[: result.good_size], newline_owed=result.needs_newline)
            merge = _Merge(self._told)
            merge.dicts(self._base, yours, result.data, ())
            if merge.conflicts:
                for conflict in merge.conflicts:
                    _put(self._base, conflict.keys, conflict.theirs)
                    self._told.add(conflict.keys)
                return merge.conflicts
            if merge.yours:  # programs holding the file take the edit in as records
                file.append(journal.line(_tx(merge.yours)))
            tail = b""
            if merge.theirs:  # (under the heading, as every record after a document)
                tail = journal.header_line(zlib.crc32(edited)) + journal.line(_tx(merge.theirs))
            # (programs parse it: records gave them the values, not the person's key order)
            file.replace(
                edited + tail, consistent_size=storage.PARSE_WHOLE, snapshot_size=len(edited)
            )
        finally:
            file.close()
        self._base = yours
        return []

    def _open(self) -> storage.CommandStateFile:
        return storage.CommandStateFile(self.path, fsync=True, lock_timeout=self.wait)


def with_notice(text: bytes, conflicts: list[Conflict]) -> bytes:
    """``text`` with comment lines at the top saying what conflicts and what to do."""
    lines = [
        "Both you and a running program changed these while you edited:",
        *(f"  {conflict.describe()}" for conflict in conflicts),
        "Save as it is to keep your values, even if the program changes them again; write",
        "the program's value back to keep the program's. These are not asked about again.",
        "(These lines are taken out when you save.)",
    ]
    notice = b"".join(NOTICE + line.encode("utf-8") + b"\n" for line in lines)
    return notice + without_notice(text)


def without_notice(text: bytes) -> bytes:
    """``text`` without the notice lines ``with_notice`` put at its top."""
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and lines[start].startswith(NOTICE):
        start += 1
    return b"".join(lines[start:])


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "deleted"
    return snapshot.dump_value(value).strip().replace("\n", " ")


class _Merge:
    """The three-way merge: the changes that turn the program's version into the merged one
    (``yours``, the person's), those that turn the person's into it (``theirs``), and the
    conflicts, but for keys under one in ``told``: the person's value. A change is (keys of
    the mapping, key, value or MISSING)."""

    def __init__(self, told: set[tuple[Any, ...]]) -> None:
        self.told = told
        self.yours: list[tuple[tuple[Any, ...], Any, Any]] = []
        self.theirs: list[tuple[tuple[Any, ...], Any, Any]] = []
        self.conflicts: list[Conflict] = []

    def dicts(
        self,
        base: dict[Any, Any],
        yours: dict[Any, Any],
        theirs: dict[Any, Any],
        where: tuple[Any, ...],
    ) -> None:
        for key in _keys(yours, theirs):
            old = base.get(key, _MISSING)
            mine, other = yours.get(key, _MISSING), theirs.get(key, _MISSING)
            if _same(mine, other):
                continue
            if _same(mine, old):  # only the program changed it: keep the program's
                self.theirs.append((where, key, other))
            elif _same(other, old):  # only the person changed it: take the person's
                self.yours.append((where, key, mine))
            elif type(old) is type(mine) is type(other) is dict:
                self.dicts(old, mine, other, (*where, key))
            elif self._was_told((*where, key)):
                self.yours.append((where, key, mine))
            else:
                self.conflicts.append(Conflict((*where, key), mine, other))

    def _was_told(self, keys: tuple[Any, ...]) -> bool:
        return any(keys[:size] in self.told for size in range(len(keys) + 1))


def _keys(first: dict[Any, Any], second: dict[Any, Any]) -> Iterator[Any]:
    yield from first
    yield from (key for key in second if key not in first)


def _same(left: Any, right: Any) -> bool:
    if left is _MISSING or right is _MISSING:
        return left is right
    return values.exactly_equal(left, right)


def _tx(changes: list[tuple[tuple[Any, ...], Any, Any]]) -> str:
    """One record making all ``changes`` (all or none)."""
    records = []
    for where, key, value in changes:
        path = journal.path_text([values.key_text(step)[1] for step in where])
        key_text = values.key_text(key)[1]
        if value is _MISSING:
            records.append(journal.delete_record(path, key_text))
        else:
            records.append(journal.set_record(path, key_text, values.prepare(value)[1]))
    return journal.tx_record(records)


def _put(data: dict[Any, Any], keys: tuple[Any, ...], value: Any) -> None:
    """Set (or, with MISSING, delete) the value at ``keys`` in plain data."""
    container = data
    for key in keys[:-1]:
        container = container[key]
    if value is _MISSING:
        container.pop(keys[-1], None)
    else:
        container[keys[-1]] = value
