"""PersistedState, the public class: a dict-like state mapped onto one YAML file, and load().

Two classes: ``PersistedState`` is what a program holds (the dict API at the top, attribute
access); ``_Core`` is what it and all its proxies share (the data, the lock, the file,
transactions, compaction). The core refers back to the state only through a weak reference,
so no reference cycle forms.

Every change follows one path, in this order, under the state's lock:

1. the proxy (or the state) checks the value and encodes one journal record;
2. ``_commit`` writes the record (or keeps it, inside a transaction);
3. only then is the change applied in memory, so a failed write changes nothing.

Inside a transaction the records are written together at the end as one ``tx`` record, and
each in-memory change leaves an undo entry so an exception puts memory back as it was.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import logging
import operator
import os
import threading
import weakref
from collections.abc import Iterator, MutableMapping
from typing import Any

from . import journal, storage, values
from .errors import PersistedStateError
from .proxies import (
    CLEAR,
    DELETE,
    INSERT,
    REORDER,
    SET,
    SPLICE,
    Change,
    DictOps,
    Node,
    Top,
    path_text,
)
from .snapshot import SnapshotEntries, dump_snapshot, has_comments

log = logging.getLogger("persistedstate")


class PersistedState(DictOps, Top, MutableMapping[Any, Any]):
    """A dict whose every change is written to a YAML file before the call returns.

    ``PersistedState(path, **defaults)`` opens the file (creating it if needed) and sets each
    default that is not there yet. Keys that are identifiers are also attributes.
    """

    # Compaction runs when the journal exceeds both this many bytes and
    # _compact_ratio times the snapshot (like Redis rewriting its append-only file).
    _compact_min_bytes = 1 << 20
    _compact_ratio = 2.0

    _state: _Core  # the data, the lock and the file; it refers back to this object weakly
    _raw: dict[Any, Any]  # (the same dict as _state._raw, for the methods of DictOps)
    _thread_lock: threading.RLock  # (the core's lock; here for programs that use it, as with 26.1)

    def __init__(self, path: str | os.PathLike[str], /, **defaults: Any) -> None:
        self._setup(path, defaults, fsync=False, lock_timeout=0.0)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        defaults: dict[str, Any] | None = None,
        *,
        fsync: bool = False,
        lock_timeout: float = 0.0,
    ) -> PersistedState:
        """Open or create a state.

        ``fsync=True`` puts every change on stable storage before the call returns (it then
        survives a power cut, not only a crash). ``lock_timeout`` is how long to wait for
        another writer to close the file before raising StateLockedError.
        """
        state = cls.__new__(cls)
        state._setup(path, defaults or {}, fsync=fsync, lock_timeout=lock_timeout)
        return state

    def _setup(
        self,
        path: str | os.PathLike[str],
        defaults: dict[str, Any],
        *,
        fsync: bool,
        lock_timeout: float,
    ) -> None:
        previous = self.__dict__.get("_state")
        if previous is not None and previous._tx is not None:
            raise PersistedStateError("cannot run __init__ again inside a transaction")
        self._release()  # (if __init__ runs again: let go of the earlier file and its values)
        _forget_attributes(self, None)
        for key, value in defaults.items():  # refuse bad defaults before touching the file
            try:
                values.key_text(key)
                values.prepare(value)
            except values.UnsupportedValue as error:
                raise error.to_builtin([key]) from None
        core = _Core(self, os.fspath(path), fsync=fsync, lock_timeout=lock_timeout)
        self._state = core
        self._raw = core._raw
        self._thread_lock = core._thread_lock
        try:
            missing = {key: value for key, value in defaults.items() if key not in self._raw}
            if missing:
                self.update(missing)
        except BaseException:
            core._release()
            raise

    # -- attribute access ----------------------------------------------------------------

    # The current value of each top-level key that is an identifier is also kept in the
    # instance __dict__ (a proxy, for a dict or list), so ``state.counter`` is a plain
    # attribute read: Python looks there before calling __getattr__. Invariant: a name that
    # ``_may_mirror`` allows, in __dict__, holds the current value of that key. A top-level
    # change takes its keys out first (``_forget_attributes``), or, on the short path for
    # scalars, replaces the value; a read puts the value back if it gets the lock at once, and
    # never while a transaction is open, so other threads cannot see a value that may be
    # rolled back. (Proxies refer to _state, not to this object: no reference cycle, so a
    # state nobody closed still frees its lock as soon as it is dropped.)

    def __getattr__(self, name: str) -> Any:
        if name[:1] in ("_", ""):
            raise AttributeError(name)
        core = self._state
        try:
            value = core._read(core._raw, name)
        except KeyError:
            raise AttributeError(f"the state has no key {name!r}") from None
        kind = type(value)
        result = core._view(name, value) if kind is dict or kind is list else value
        # Kept for the next read, unless the lock is busy (a read never waits for it).
        if self._may_mirror(name) and core._thread_lock.acquire(blocking=False):
            try:
                if core._tx is None and core._raw.get(name, core) is value:  # (still current)
                    self.__dict__[name] = result
            finally:
                core._thread_lock.release()
        return result

    def _may_mirror(self, key: str) -> bool:
        """Whether ``key`` may be kept in __dict__: a public name that hides nothing."""
        return key.isidentifier() and key[:1] != "_" and not hasattr(type(self), key)

    def __getitem__(self, key: Any) -> Any:
        core = self._state
        return core._view(key, core._read(core._raw, key))

    def _view(self, key: Any, item: Any) -> Any:
        return self._state._view(key, item)  # (a proxy's parent is _state, never this object)

    def __setattr__(self, name: str, value: Any) -> None:
        if name[:1] in ("_", ""):
            object.__setattr__(self, name, value)
            return
        cached = self._state._set_prefixes.get(name)  # (a key set before that hides nothing)
        if (cached is not None and cached[1]) or not hasattr(type(self), name):
            self[name] = value
        elif hasattr(getattr(type(self), name), "__set__"):  # a subclass's property
            object.__setattr__(self, name, value)
        else:
            raise AttributeError(
                f"{name!r} is a method or attribute of {type(self).__name__}; "
                f"set the key with state[{name!r}] = ..."
            )

    def __setitem__(self, key: Any, value: Any) -> None:
        # The hot path: a scalar set at the top outside a transaction, from cached bytes.
        core = self._state
        encode = values.SCALAR_TEXT.get(type(value))
        cached = core._set_prefixes.get(key) if type(key) is str else None
        if encode is None or cached is None or core._tx is not None:
            DictOps.__setitem__(self, key, value)
            if cached is None and type(key) is str:
                if len(core._set_prefixes) >= _PREFIX_CACHE_SIZE:
                    core._set_prefixes.clear()
                start = '--- ["set", [], ' + values.key_text(key)[1] + ", "
                core._set_prefixes[key] = (start.encode(), self._may_mirror(key))
            return
        prefix, is_attribute = cached
        with core._thread_lock:
            file = core._storage
            if file is None:
                core._path_for_change(core)  # raises: closed
                return
            # _Core._store_scalar, inlined: a call costs 7% of this path.
            try:
                file.append(prefix + encode(value).encode() + b"]\n")
            except values.UnsupportedValue as error:  # (a str UTF-8 cannot encode)
                raise error.to_builtin([key]) from None
            except storage.FileChangedError as error:
                core._keep_both_versions(error)
            core._raw[key] = value
            if is_attribute:
                self.__dict__[key] = value
            if file.size > core._compact_at:
                core._compact_automatically()

    def __delattr__(self, name: str) -> None:
        if name[:1] in ("_", "") or hasattr(type(self), name):
            object.__delattr__(self, name)
            return
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"the state has no key {name!r}") from None

    def __dir__(self) -> list[str]:
        keys = [key for key in self._raw if isinstance(key, str) and key.isidentifier()]
        return sorted({*super().__dir__(), *keys})

    # -- transactions, compaction, closing -------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PersistedState]:
        """All changes in the block reach the file together, or (on an exception) not at all.

        Holds the state's lock, so other threads see none of it until it ends. Nested
        transactions roll back only their own part when an exception leaves them.
        """
        with self._state.transaction():
            yield self

    def compact(self) -> None:
        """Rewrite the file now as one clean YAML document (the journal folded in)."""
        self._state.compact()

    def close(self) -> None:
        """Compact the file and release it. Closing twice is fine."""
        self._state.close()

    def __enter__(self) -> PersistedState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _release(self) -> None:
        """Let go of the file and its lock without writing anything."""
        core = self.__dict__.get("_state")
        if core is not None:
            core._release()

    def __repr__(self) -> str:
        core = self.__dict__.get("_state")
        if core is None:  # (a failed __init__)
            return "PersistedState(None, {})"
        with core._thread_lock:  # (not halfway through another thread's transaction)
            return f"PersistedState({core._path!r}, {core._raw!r})"


def _forget_attributes(state: PersistedState, change: Change | None) -> None:
    """Take the top-level keys ``change`` touches (None: all) out of the state's __dict__.

    See PersistedState.__getattr__. Only kept values go: other attributes (a subclass's
    cached properties, say) stay.
    """
    attributes = state.__dict__
    if change is not None and change[0] in (SET, DELETE):
        names = [change[2]] if isinstance(change[2], str) else []  # (a str subclass too)
    else:  # the whole dict changes
        names = list(attributes)
    for name in names:
        if name in attributes and state._may_mirror(name):
            del attributes[name]


class _Core(Top):
    """The machinery behind a PersistedState: its data, lock, file, journal and transactions.

    The top of the tree for proxies: they refer to this object, which refers back to the
    state only weakly (to keep its attributes current), so a state can keep proxies in its
    __dict__ without a reference cycle.
    """

    def __init__(
        self, owner: PersistedState, path: str, *, fsync: bool, lock_timeout: float
    ) -> None:
        self._storage: storage.StateFile | None = None  # first, so __del__ always finds it
        self._owner = weakref.ref(owner)
        self._owner_class = type(owner)  # (its compaction settings, once it is gone)
        self._set_prefixes: dict[str, tuple[bytes, bool]] = {}  # key -> (record start, attribute?)
        self._path_texts: dict[int, tuple[Any, list[Any], str]] = {}  # id(container) -> path
        self._commented_snapshot: bytes | None = None  # kept to carry comments over
        self._snapshot_entries = SnapshotEntries()
        self._changed_top_keys: set[Any] = set()  # nested changes since the last snapshot
        self._path = path
        self._thread_lock = threading.RLock()
        self._tx: _Transaction | None = None
        self._epoch = 0
        self._compact_at = 0
        file = storage.StateFile(self._path, fsync=fsync, lock_timeout=lock_timeout)
        try:
            raw = file.read()
            if raw is None:
                self._raw: dict[Any, Any] = {}
                snapshot = dump_snapshot(self._raw)
                file.replace(snapshot)
                snapshot_size = len(snapshot)
            else:
                result = journal.read_state(self._path, raw)
                self._raw = result.data
                snapshot_size = result.snapshot_size
                if has_comments(raw[:snapshot_size]):
                    self._commented_snapshot = raw[:snapshot_size]
                else:
                    self._snapshot_entries.adopt(raw[:snapshot_size], result.snapshot_top)
                    self._changed_top_keys = result.touched
                file.keep_only(raw[: result.good_size], newline_owed=result.needs_newline)
                log.debug("%s: opened, %d journal records replayed", self._path, result.records)
        except BaseException:
            file.close()
            raise
        self._storage = file
        self._plan_compaction(snapshot_size)

    # -- the top of the tree, for proxies ------------------------------------------------

    @property
    def _state(self) -> _Core:  # type: ignore[override]  # (an attribute would be a cycle)
        return self

    def _read(self, container: Any, key: Any) -> Any:
        """``container[key]``, never half of a transaction, usually without taking the lock.

        Checked like a seqlock: ``_epoch`` is odd while a transaction or a multi-part change
        is being applied, and moves on when it ends. A read that overlapped one is done again
        under the lock.
        """
        epoch = self._epoch
        if not epoch & 1:
            try:
                value = container[key]
            except LookupError:
                if self._epoch == epoch:
                    raise
            else:
                if self._epoch == epoch:
                    return value
        with self._thread_lock:
            return container[key]

    def _path_for_change(self, node: Node) -> str:
        """The path text of ``node`` for a record, after checking that changes may be made now.

        Also notes which top-level entry of the snapshot the change will make stale.
        """
        if self._storage is None:
            raise PersistedStateError(f"{self._path}: the state is closed; reopen it to change it")
        raw = node._raw
        if raw is self._raw:
            return "[]"
        # Each container sits in one place only (values are copied in), so if the path that
        # led to it last time still leads to it, that is where it is (list indexes may shift).
        cached = self._path_texts.get(id(raw))
        if cached is not None and cached[0] is raw:
            keys = cached[1]
            try:
                found = functools.reduce(operator.getitem, keys, self._raw)
            except (LookupError, TypeError):
                found = None
            if found is raw:
                self._changed_top_keys.add(keys[0])  # its snapshot entry must be written anew
                return cached[2]
        keys = node._locate()  # (raises DetachedError)
        self._changed_top_keys.add(keys[0])
        text = path_text(keys)
        if len(self._path_texts) >= _PATH_CACHE_SIZE:
            self._path_texts.clear()
        self._path_texts[id(raw)] = (raw, keys, text)
        return text

    def _store_scalar(self, data: bytes, container: Any, key: Any, value: Any) -> None:
        """The short path of ``container[key] = value`` for a scalar in a nested dict.

        Outside a transaction only; ``data`` is its record. The caller holds the lock and has
        checked that the state is open. A scalar needs no copy and no undo, so this is
        ``_commit`` without either. (PersistedState.__setitem__ inlines it for top-level keys.)
        """
        file = self._storage
        assert file is not None
        try:
            file.append(data)
        except storage.FileChangedError as error:
            self._keep_both_versions(error)
        container[key] = value
        if file.size > self._compact_at:
            self._compact_automatically()

    def _commit(self, records: list[str], changes: list[Change]) -> None:
        """Write the records (or keep them for the transaction), then apply the changes."""
        tx = self._tx
        raw = self._raw
        for change in changes:
            if change[1] is raw:
                owner = self._owner()
                if owner is not None:
                    _forget_attributes(owner, change)
        if tx is not None:
            tx.records.extend(records)
            for change in changes:
                _apply(change, tx.undo)
            return
        file = self._storage
        assert file is not None
        record = records[0] if len(records) == 1 else journal.tx_record(records)
        try:
            file.append(journal.line(record))
        except storage.FileChangedError as error:
            self._keep_both_versions(error)
        if len(changes) == 1:
            _apply(changes[0], None)
        else:
            self._epoch += 1  # odd: readers wait until every part is applied
            try:
                for change in changes:
                    _apply(change, None)
            finally:
                self._epoch += 1
        if file.size > self._compact_at:
            self._compact_automatically()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The work of PersistedState.transaction (which documents it)."""
        with self._thread_lock:
            self._path_for_change(self)
            outer = self._tx
            tx = outer if outer is not None else _Transaction()
            mark = tx.mark()
            if outer is None:
                self._tx = tx
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
                    self._tx = None
                    self._epoch += 1
            if conflict is not None:
                self._keep_both_versions(conflict)
            file = self._storage
            if outer is None and file is not None and file.size > self._compact_at:
                self._compact_automatically()

    # -- compaction and closing ----------------------------------------------------------

    def compact(self) -> None:
        """The work of PersistedState.compact."""
        with self._thread_lock:
            self._path_for_change(self)
            if self._tx is not None:
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
        self._path_texts.clear()  # let go of containers replaced since
        try:
            self._storage.replace(snapshot)
        except storage.FileChangedError as error:
            self._keep_both_versions(error)
        if self._commented_snapshot is not None:
            self._commented_snapshot = snapshot if has_comments(snapshot) else None
        self._plan_compaction(len(snapshot))
        log.debug("%s: compacted to %d bytes", self._path, len(snapshot))

    def _plan_compaction(self, snapshot_size: int) -> None:
        settings = self._settings()
        minimum, ratio = settings._compact_min_bytes, settings._compact_ratio
        journal_allowance = max(minimum, int(ratio * snapshot_size))
        self._compact_at = snapshot_size + journal_allowance

    def _settings(self) -> Any:
        """Where the compaction settings are read: the state (an instance or a subclass may
        change them), or its class once it is gone."""
        owner = self._owner()
        return owner if owner is not None else self._owner_class

    def _compact_automatically(self) -> None:
        try:
            self._write_snapshot()
        except OSError as error:
            # The change itself is safely in the journal; try again after as much growth.
            assert self._storage is not None
            log.warning("%s: compaction failed, will retry later: %s", self._path, error)
            self._compact_at = self._storage.size + self._settings()._compact_min_bytes

    def _keep_both_versions(self, error: storage.FileChangedError) -> None:
        """Someone else's file is at our path: keep it, save ours beside it, stop writing."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        ours = f"{self._path}.conflict-{stamp}-{os.getpid()}"
        storage.write_new_file(ours, dump_snapshot(self._raw))
        assert self._storage is not None
        self._storage.close()
        self._storage = None
        log.warning("%s: %s; our version was saved as %s", self._path, error, ours)
        raise PersistedStateError(
            f"{error}. Their version was left at {self._path}; this process's version was "
            f"saved as {ours}. The state is now closed."
        ) from None

    def close(self) -> None:
        """The work of PersistedState.close."""
        with self._thread_lock:
            if self._storage is None:
                return
            if self._tx is not None:
                raise PersistedStateError("cannot close inside a transaction")
            try:
                self._write_snapshot()
            finally:
                if self._storage is not None:
                    self._storage.close()
                    self._storage = None

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


_PREFIX_CACHE_SIZE = 4096
_PATH_CACHE_SIZE = 1024


class _Transaction:
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
            _apply(self.undo.pop(), None)


_RESTORE = "restore"  # undo only: put back a dict's items or a list's items as they were


def _apply(change: Change, undo: list[Change] | None) -> None:
    """Apply one change to the raw tree; with ``undo``, first record how to take it back."""
    op, container, first, second = change
    if op == SET:
        if undo is not None:
            if type(container) is dict and first not in container:
                undo.append((DELETE, container, first, None))
            else:
                undo.append((SET, container, first, container[first]))
        container[first] = second
    elif op == INSERT:
        if undo is not None:
            undo.append((DELETE, container, first, None))
        container.insert(first, second)
    elif op == DELETE:
        if undo is not None:
            undo.append(_undo_delete(container, first))
        del container[first]
    elif op == SPLICE:
        start, stop = first
        if undo is not None:
            undo.append((SPLICE, container, (start, start + len(second)), container[start:stop]))
        container[start:stop] = second
    elif op in (CLEAR, REORDER, _RESTORE):
        if undo is not None:
            undo.append((_RESTORE, container, _contents(container), None))
        if op == CLEAR:
            container.clear()
        elif op == REORDER:
            container[:] = [container[i] for i in first]
        elif type(container) is dict:
            container.clear()
            container.update(first)
        else:
            container[:] = first


def _undo_delete(container: Any, key: Any) -> Change:
    if type(container) is list:
        return (INSERT, container, key, container[key])
    last = next(reversed(container))
    if last == key:  # the last key: setting it again restores the order (and the key object:
        return (SET, container, last, container[key])  # del d[True] may remove the key 1)
    return (_RESTORE, container, _contents(container), None)


def _contents(container: Any) -> Any:
    return list(container.items()) if type(container) is dict else list(container)


def load(path: str | os.PathLike[str]) -> dict[Any, Any]:
    """The state in a file as plain dicts and lists: takes no lock, changes nothing."""
    name = os.fspath(path)
    raw = storage.read_file(name)
    if raw is None:
        raise FileNotFoundError(f"no state file at {name}")
    return journal.read_state(name, raw).data
