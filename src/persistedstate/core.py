"""The core of a state: its data, lock, file, transactions and compaction.

Every change follows one path, in this order, under the core's lock:

1. a proxy (or the state) checks the value and encodes one journal record;
2. :meth:`Core.commit` writes the record (or keeps it, inside a transaction);
3. only then is the change applied in memory, so a failed write changes nothing.

Inside a transaction the records are written together at the end as one ``tx`` record, and
each in-memory change leaves an undo entry so that an exception puts memory back as it was.

The public object (``state.PersistedState``) and the containers of the data (``proxies``) use
the core only through the methods that ``proxies.StateCore`` lists. The core does not refer to
the public object, only to its attribute dict (the *mirror*, see :meth:`Core.attach_mirror`);
the containers refer to the core, and the core lets go of them when the public object goes
(:meth:`Core.let_go`), so no reference cycle keeps an unclosed state alive.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, Protocol

from . import journal, storage, values
from .errors import PersistedStateError
from .journal import Change, Clear, Delete, Set
from . import proxies
from .proxies import LiveDict, Node, locate
from .snapshot import SnapshotEntries, dump_snapshot, has_comments

log = logging.getLogger("persistedstate")

# Compaction runs when the journal exceeds both this many bytes and COMPACT_RATIO times the
# snapshot (as Redis rewrites its append-only file): see docs/design.md, "Compaction".
COMPACT_MIN_BYTES = 1 << 20
COMPACT_RATIO = 2.0


class Storage(Protocol):
    """What the core needs of its file (``storage.StateFile``; a test may give another)."""

    @property
    def size(self) -> int: ...

    def read(self) -> bytes | None: ...

    def keep_only(self, kept: bytes, *, newline_owed: bool) -> None: ...

    def append(self, data: bytes) -> None: ...

    def replace(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def save_conflict_copy(self, data: bytes) -> str: ...


class Core:
    """The machinery behind a state: its data, lock, file, journal and transactions.

    Public to the state, its proxies and the command line (``proxies.StateCore`` lists what
    proxies use). ``lock`` is the state's re-entrant lock: every change and every read that
    must not see half a transaction holds it. ``tx`` is the open transaction, or None.
    """

    def __init__(
        self,
        file: Storage,
        path: str,
        *,
        compact_min_bytes: int = COMPACT_MIN_BYTES,
        compact_ratio: float = COMPACT_RATIO,
    ) -> None:
        """Read ``file`` (an open, locked state file; created if it does not exist).

        ``path`` names the file in messages. On any error the file is closed.
        """
        self._storage: Storage | None = None  # first, so __del__ always finds it
        self._path = path
        self._compact_min_bytes = compact_min_bytes
        self._compact_ratio = compact_ratio
        self.lock = threading.RLock()
        self.tx: Transaction | None = None
        # _epoch is odd while a transaction or a change of several parts is being applied.
        self._epoch = 0
        self._compact_at = 0
        self._mirror: dict[str, Any] | None = None
        self._mirrorable: Callable[[str], bool] = _never
        self._top_lines: dict[str, tuple[bytes, bool]] = {}  # key -> (set line start, mirrored?)
        self._commented_snapshot: bytes | None = None  # kept to carry comments over
        self._snapshot_entries = SnapshotEntries()
        self._changed_top_keys: set[Any] = set()  # nested changes since the last snapshot
        try:
            raw = file.read()
            if raw is None:
                self._raw: LiveDict = values.new_dict()  # type: ignore[assignment]
                snapshot = dump_snapshot(self._raw)
                file.replace(snapshot)
                snapshot_size = len(snapshot)
            else:
                result = journal.read_state(path, raw, stored=True)
                self._raw = result.data  # type: ignore[assignment]
                snapshot_size = result.snapshot_size
                if has_comments(raw[:snapshot_size]):
                    self._commented_snapshot = raw[:snapshot_size]
                else:
                    self._snapshot_entries.adopt(raw[:snapshot_size], result.snapshot_top)
                    self._changed_top_keys = result.touched
                file.keep_only(raw[: result.good_size], newline_owed=result.needs_newline)
                log.debug("%s: opened, %d journal records replayed", path, result.records)
        except BaseException:
            file.close()
            raise
        self._storage = file
        self._plan_compaction(snapshot_size)
        proxies.attach_top(self._raw, self)

    # -- what proxies and the state use ----------------------------------------------------

    @property
    def data(self) -> LiveDict:
        """The top-level dict of the state, the top of its tree of live dicts and lists."""
        return self._raw

    @property
    def path(self) -> str:
        """The file's path as the program named it."""
        return self._path

    @property
    def closed(self) -> bool:
        return self._storage is None

    def read(self, get: Callable[[Any, Any], Any], container: Any, key: Any) -> Any:
        """``get(container, key)`` (a base class's ``__getitem__``), never half of a
        transaction, usually without taking the lock.

        Checked like a seqlock: ``_epoch`` is odd while a transaction or a multi-part change
        is being applied, and moves on when it ends. A read that overlapped one is done again
        under the lock.
        """
        epoch = self._epoch
        if not epoch & 1:
            try:
                value = get(container, key)
            except LookupError:
                if self._epoch == epoch:
                    raise
            else:
                if self._epoch == epoch:
                    return value
        with self.lock:
            return get(container, key)

    def ensure_open(self) -> None:
        """Raise PersistedStateError if the state is closed."""
        if self._storage is None:
            raise PersistedStateError(f"{self._path}: the state is closed; reopen it to change it")

    def path_for_change(self, container: Node) -> str:
        """The path text of ``container`` for a record, after checking that changes may be
        made now.

        Raises PersistedStateError (closed) or proxies.DetachedError. Also notes which
        top-level entry of the snapshot the change will make stale.
        """
        if self._storage is None:
            self.ensure_open()
        if container is self._raw:
            return "[]"
        keys, text = proxies.path_of(container)
        self._changed_top_keys.add(keys[0])  # its snapshot entry must be written anew
        return text

    def set_scalar(
        self, container: LiveDict, key: str, value: Any, encode: Callable[[Any], str]
    ) -> None:
        """``container[key] = value`` for a str key and a scalar value; ``encode`` gives the
        value's flow text.

        The one scalar-set path, for the top and for nested dicts. Fast path (outside a
        transaction): a scalar needs no copy and no undo entry, so the record is written and
        the value stored without the general machinery; at the top the line's bytes up to the
        value are cached per key. Slow path (inside a transaction): ``commit``.
        """
        with self.lock:
            file = self._storage
            try:
                if file is None or self.tx is not None:  # slow path: closed, or undo needed
                    path = self.path_for_change(container)
                    record = journal.set_record(path, values.str_text(key), encode(value))
                    self.commit([record], [Set((container, key, value))])
                    return
                if container is self._raw:
                    cached = self._top_lines.get(key)
                    if cached is None:
                        cached = self._top_line_start(key)
                    start, mirrored = cached
                else:
                    path = self.path_for_change(container)
                    start = journal.set_line_start(path, values.str_text(key))
                    mirrored = False
                file.append(start + encode(value).encode() + _LINE_END)
            except values.UnsupportedValue as error:  # (a str UTF-8 cannot encode)
                raise error.to_builtin([*locate(container), key]) from None
            except storage.FileChangedError as error:
                self._keep_both_versions(error)
            if container is self._raw:
                container[key] = value  # (the top's item assignment is dict's: TopDict)
            else:
                _dict_setitem(container, key, value)
            if mirrored and self._mirror is not None:
                self._mirror[key] = value
            if file.size > self._compact_at:
                self._compact_automatically()

    def _top_line_start(self, key: str) -> tuple[bytes, bool]:
        if len(self._top_lines) >= _TOP_LINE_CACHE_SIZE:
            self._top_lines.clear()
        start = journal.set_line_start("[]", values.str_text(key))  # (raises UnsupportedValue)
        entry = (start, self._mirrorable(key))
        self._top_lines[key] = entry
        return entry

    def commit(self, records: list[str], changes: list[Change]) -> None:
        """Write the records (or keep them for the transaction), then apply the changes.

        The caller holds the lock and has made ``records`` with ``path_for_change``.
        """
        tx = self.tx
        if self._mirror is not None:
            for change in changes:
                if change[0] is self._raw:
                    self._forget_mirrored(change)
        if tx is not None:
            tx.records.extend(records)
            for change in changes:
                change.apply(tx.undo)
            return
        file = self._storage
        assert file is not None
        record = records[0] if len(records) == 1 else journal.tx_record(records)
        try:
            file.append(journal.line(record))
        except storage.FileChangedError as error:
            self._keep_both_versions(error)
        if len(changes) == 1:
            changes[0].apply(None)
        else:
            self._epoch += 1  # odd: readers wait until every part is applied
            try:
                for change in changes:
                    change.apply(None)
            finally:
                self._epoch += 1
        if file.size > self._compact_at:
            self._compact_automatically()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The work of PersistedState.transaction (which documents it)."""
        with self.lock:
            self.ensure_open()
            outer = self.tx
            tx = outer if outer is not None else Transaction()
            mark = tx.mark()
            if outer is None:
                self.tx = tx
                self._epoch += 1  # odd: lock-free readers take the lock until the end
            conflict = None
            try:
                yield
                if outer is None and tx.records:
                    assert self._storage is not None
                    self._storage.append(journal.line(journal.tx_record(tx.records)))
            except storage.FileChangedError as error:
                tx.roll_back(mark)  # before our version is saved beside theirs
                conflict = error
            except BaseException:
                tx.roll_back(mark)
                raise
            finally:
                if outer is None:
                    self.tx = None
                    self._epoch += 1
            if conflict is not None:
                self._keep_both_versions(conflict)
            file = self._storage
            if outer is None and file is not None and file.size > self._compact_at:
                self._compact_automatically()

    # -- the attribute mirror ------------------------------------------------------------

    # The public object keeps the current value of each top-level key that is an identifier
    # in its instance __dict__ (a proxy, for a dict or list), so ``state.counter`` is a plain
    # attribute read. Invariant: a mirrorable name in the mirror holds the current value of
    # that key. A top-level change takes its keys out of the mirror first, or (the scalar
    # fast path) replaces the value; ``attribute`` puts a value back if it gets the lock at
    # once and no transaction is open, so other threads never see a value that may yet be
    # rolled back, and a read never waits.

    def attach_mirror(self, mirror: dict[str, Any], mirrorable: Callable[[str], bool]) -> None:
        """Keep ``mirror`` (the public object's __dict__) current for keys ``mirrorable`` allows.

        The owner must call ``detach_mirror`` when it goes (a reference cycle otherwise).
        """
        self._mirror = mirror
        self._mirrorable = mirrorable
        self._top_lines.clear()

    def detach_mirror(self) -> None:
        """Take the mirrored values out of the mirror and stop keeping it current."""
        self._forget_all_mirrored()
        self._mirror = None
        self._mirrorable = _never
        self._top_lines.clear()

    def attribute(self, name: str) -> Any:
        """The value of top-level key ``name``; KeyError if none.

        Puts it in the mirror for the next read, unless the lock is busy.
        """
        value = self._raw[name]
        mirror = self._mirror
        if mirror is not None and self._mirrorable(name) and self.lock.acquire(blocking=False):
            try:
                if self.tx is None and dict.get(self._raw, name, self) is value:  # (current)
                    mirror[name] = value
            finally:
                self.lock.release()
        return value

    def let_go(self) -> None:
        """The public object is gone: let go of the data, which refers to this core.

        Containers the program still holds go on writing (by the paths noted by
        ``proxies.freeze_paths``) as long as it holds them, and keep the file and its lock
        until then; the file is no longer compacted, since the data is gone.
        """
        with self.lock:
            if self._storage is not None:
                proxies.freeze_paths(self._raw)
            self._raw = values.new_dict()  # type: ignore[assignment]
            self._snapshot_entries = SnapshotEntries()
            self._compact_at = sys.maxsize

    def _forget_mirrored(self, change: Change) -> None:
        """Take the top-level keys ``change`` touches out of the mirror (all, if it may touch
        any). Only mirrored values go: other attributes (cached properties, say) stay."""
        assert self._mirror is not None
        if type(change) is Set or type(change) is Delete:
            key = change[1]
            names = [key] if isinstance(key, str) else []  # (a str subclass too)
        else:
            names = list(self._mirror)
        for name in names:
            if name in self._mirror and self._mirrorable(name):
                del self._mirror[name]

    def _forget_all_mirrored(self) -> None:
        if self._mirror is not None:
            self._forget_mirrored(Clear((self._raw,)))

    # -- compaction and closing ----------------------------------------------------------

    def compact(self) -> None:
        """The work of PersistedState.compact."""
        with self.lock:
            self.ensure_open()
            if self.tx is not None:
                raise PersistedStateError("cannot compact inside a transaction")
            self._write_snapshot()

    def _write_snapshot(self) -> None:
        assert self._storage is not None
        if self._commented_snapshot is not None:
            from . import comments  # (ruamel.yaml: only for a file that holds comments)

            snapshot = comments.dump_snapshot(self._raw, self._commented_snapshot, self._path)
        else:
            snapshot = self._snapshot_entries.render(self._raw, self._changed_top_keys)
        self._changed_top_keys = set()
        try:
            self._storage.replace(snapshot)
        except storage.FileChangedError as error:
            self._keep_both_versions(error)
        if self._commented_snapshot is not None:
            self._commented_snapshot = snapshot if has_comments(snapshot) else None
        self._plan_compaction(len(snapshot))
        log.debug("%s: compacted to %d bytes", self._path, len(snapshot))

    def _plan_compaction(self, snapshot_size: int) -> None:
        journal_allowance = max(self._compact_min_bytes, int(self._compact_ratio * snapshot_size))
        self._compact_at = snapshot_size + journal_allowance

    def _compact_automatically(self) -> None:
        try:
            self._write_snapshot()
        except OSError as error:
            # The change itself is safely in the journal; try again after as much growth.
            assert self._storage is not None
            log.warning("%s: compaction failed, will retry later: %s", self._path, error)
            self._compact_at = self._storage.size + self._compact_min_bytes

    def _keep_both_versions(self, error: storage.FileChangedError) -> NoReturn:
        """Someone else's file is at our path: keep it, save ours beside it, stop writing."""
        assert self._storage is not None
        ours = self._storage.save_conflict_copy(dump_snapshot(self._raw))
        self._storage.close()
        self._storage = None
        log.warning("%s: %s; our version was saved as %s", self._path, error, ours)
        raise PersistedStateError(
            f"{error}. Their version was left at {self._path}; this process's version was "
            f"saved as {ours}. The state is now closed."
        ) from None

    def close(self, *, compact: bool = True) -> None:
        """The work of PersistedState.close (which documents it)."""
        with self.lock:
            if self._storage is None:
                return
            if self.tx is not None:
                raise PersistedStateError("cannot close inside a transaction")
            try:
                if compact:
                    self._write_snapshot()
            finally:
                self._release()

    def _release(self) -> None:
        """Let go of the file and its lock without writing anything."""
        file = self._storage
        if file is not None:
            self._storage = None
            file.close()

    def __del__(self) -> None:
        # No state and no proxy refers to this any more: a state nobody closed. Free the
        # lock; never write from here.
        self._release()


def _never(key: str) -> bool:
    return False


_LINE_END = journal.LINE_END
_TOP_LINE_CACHE_SIZE = 4096
_dict_setitem = dict.__setitem__


class Transaction:
    """The records and undo entries of an open transaction."""

    def __init__(self) -> None:
        self.records: list[str] = []
        self.undo: list[Change] = []

    def mark(self) -> tuple[int, int]:
        return len(self.records), len(self.undo)

    def roll_back(self, mark: tuple[int, int]) -> None:
        records, undo = mark
        del self.records[records:]
        while len(self.undo) > undo:
            self.undo.pop().apply(None)
