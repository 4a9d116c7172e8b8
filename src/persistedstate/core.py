"""The core of a state: its data, lock, file, transactions and compaction.

Every change follows one path, in this order, under the core's lock:

1. a container (or the state) checks the value and encodes one journal record;
2. :meth:`Core.commit` writes the record (or keeps it, inside a transaction);
3. only then is the change applied in memory, so a failed write changes nothing.

Steps 2 and 3 are a critical section that an exception from a signal handler (Ctrl-C) may
interrupt: its ``except`` clause describes what it interrupted (``_unsettled``) and
:meth:`Core._settle` settles it before the exception goes on, or before the next operation;
memory decides whether the change happened (see docs/design.md, "Writing a change").

Inside a transaction the records are written together at the end as one ``tx`` record, and
each in-memory change leaves an undo entry so that an exception puts memory back as it was.

The public object (``state.PersistedState``) and the containers of the data (``proxies``) use
the core only through the methods that ``proxies.StateCore`` lists. The core does not refer to
the public object, only to its attribute dict (the *mirror*, see :meth:`Core.attach_mirror`);
the containers refer to the core, and the core lets go of them when the public object goes
(:meth:`Core.let_go`), so no reference cycle keeps an unclosed state alive.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator

from . import journal, proxies, storage, values
from .errors import CorruptStateError, PersistedStateError
from .journal import Change, Clear, Delete, Set
from .log import log
from .proxies import LiveDict, Node, locate
from .snapshot import SnapshotEntries, dump_snapshot, has_comments

# Compaction runs when the journal exceeds both this many bytes and COMPACT_RATIO times the
# snapshot (as Redis rewrites its append-only file): see docs/design.md, "Compaction".
COMPACT_MIN_BYTES = 1 << 20
COMPACT_RATIO = 2.0


TYPE_CHECKING = False  # (typing's, without importing typing: docs/design.md, Memory)
if TYPE_CHECKING:
    from typing import Any, NoReturn, Protocol, TypeVar

    Result = TypeVar("Result")  # (of SharedCore.read_whole)

    from .proxies import ReentrantLock

    class Storage(Protocol):
        """What the core needs of its file (``storage.StateFile``; a test may give another)."""

        @property
        def size(self) -> int: ...

        @property
        def path(self) -> str:
            """The file's path, resolved at open: a later ``os.chdir()`` changes nothing."""

        def read(self) -> bytes | None: ...

        def keep_only(self, kept: bytes, *, newline_owed: bool) -> None: ...

        def append(self, data: bytes) -> None: ...

        def prefix_next_append(self, make: Callable[[int], bytes] | None) -> None: ...

        def landed(self, data: bytes) -> bool: ...

        def take_back(self, data: bytes) -> None: ...

        def replace(self, data: bytes) -> None: ...

        def compacts_at_close(self) -> bool: ...

        def close(self) -> None: ...

        def save_conflict_copy(self, data: bytes) -> str: ...

        # Other processes (docs/design.md, "Several processes"):

        def set_owner(
            self, on_handover: Callable[[], object], on_taken_over: Callable[[str], object]
        ) -> None: ...

        def hand_over(self) -> None: ...

        def catch_up(self) -> storage.CatchUp | None: ...

        def adopt(self, good_size: int, *, newline_owed: bool, raw: bytes) -> None: ...

    class SharedStorage(Storage, Protocol):
        """What a core in shared mode needs besides (``storage.SharedStateFile``)."""

        def begin_operation(self) -> bool: ...

        def end_operation(self) -> None: ...

        def unchanged(self) -> bool: ...

    class Intake(Protocol):
        """What checks the changes a catch-up takes in from others (``schema.Intake``)."""

        def records_at(self, offset: int | None) -> Callable[[list[Any], int], None]:
            """What to call with each record applied from bytes at ``offset`` of the file
            (None: of a file since replaced), and the offset of its line in those bytes."""
            ...

        def replaced(self, *, parsed: bool) -> None:
            """Another process replaced the file (compacted it); ``parsed``: the whole state
            was read anew from it, not record by record."""

        def report(self, snapshot_size: int) -> CorruptStateError | None:
            """What does not fit now, if anything (the file's document ends at
            ``snapshot_size``); kept as ``made``."""
            ...

        @property
        def made(self) -> CorruptStateError:
            """The report ``report`` made (an intake is kept only once it made one)."""


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
        initial: dict[Any, Any] | None = None,
        compact_min_bytes: float = COMPACT_MIN_BYTES,
        compact_ratio: float = COMPACT_RATIO,
        check: Callable[[dict[Any, Any], bytes | None], None] | None = None,
    ) -> None:
        """Read ``file`` (an open, locked state file; created if it does not exist).

        ``path`` names the file in messages. A file that does not exist is created with
        ``initial`` (checked and copied values) as its first snapshot. ``check(data,
        document)`` may refuse the data read (``document``: the file's first document, None
        for a new file) before anything is written. On any error the file is closed.
        """
        self._storage: Storage | None = None  # first, so __del__ always finds it
        self._path = path
        self._compact_min_bytes = compact_min_bytes
        self._compact_ratio = compact_ratio
        self.lock: ReentrantLock  # (while a settle is owed, the settling lock stands in)
        self._use_lock(threading.RLock())
        self.tx: Transaction | None = None
        # _epoch is odd while a transaction or a change of several parts is being applied.
        self._epoch = 0
        self._compact_at: float = 0  # (inf when an option is: never automatically)
        self._mirror: dict[str, Any] | None = None
        self._mirrorable: Callable[[str], bool] = _never
        self._top_lines: dict[str, tuple[bytes, bool]] = {}  # key -> (set line start, mirrored?)
        self._commented_snapshot: bytes | None = None  # kept to carry comments over
        self._closed_because: str | None = None  # why the state was closed under its owner
        self._unreported: str | None = None  # a conflict the handover thread found
        # The catch-up of the handover thread that took in others' change that does not fit
        # a typed state: the program's next operation raises its report (``made``); the lock
        # is the settling lock meanwhile.
        self._owed: Intake | None = None
        self._snapshot_entries = SnapshotEntries()
        self._changed_top_keys: set[Any] = set()  # nested changes since the last snapshot
        # A critical section an exception interrupted, until it is settled (see _settle): a
        # tuple whose first item says which. _applied counts the changes of a _COMMIT known to
        # be in memory (0 but while _apply_all runs); _undoing is the undo entry being applied
        # by _roll_back, with its container's length before it.
        self._unsettled: tuple[Any, ...] | None = None
        self._applied = 0
        self._undoing: tuple[Change, int] | None = None
        try:
            raw = file.read()
            if raw is None:
                self._raw: LiveDict = initial if initial is not None else values.new_dict()  # type: ignore[assignment]
                if check is not None:
                    check(self._raw, None)
                snapshot = self._snapshot_entries.render(self._raw, set())
                file.replace(snapshot)
                file.prefix_next_append(journal.header_line)
                snapshot_size = len(snapshot)
            else:
                result = journal.read_state(path, raw, stored=True)
                self._raw = result.data  # type: ignore[assignment]
                snapshot_size = result.snapshot_size
                if check is not None:
                    check(self._raw, result.document)
                if has_comments(result.document):
                    self._commented_snapshot = result.document
                else:
                    self._snapshot_entries.adopt(result.document, result.snapshot_top)
                    self._changed_top_keys = result.touched
                file.keep_only(raw[: result.good_size], newline_owed=result.needs_newline)
                if not result.records:  # (after records, a header has its place already)
                    file.prefix_next_append(journal.header_line)
                log.debug("%s: opened, %d journal records replayed", path, result.records)
        except BaseException:
            file.close()
            raise
        self._storage = file
        self._plan_compaction(snapshot_size)
        proxies.attach_top(self._raw, self)
        _OPEN[id(self)] = self
        file.set_owner(_weak_call(self._hand_over), _weak_call(self._taken_over))

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
    def file_path(self) -> str:
        """The file's path resolved at open (a later ``os.chdir()`` changes nothing); once
        closed, the path as named."""
        file = self._storage
        return self._path if file is None else file.path

    @property
    def closed(self) -> bool:
        return self._storage is None

    def read(self, get: Callable[[Any, Any], Any], container: Any, key: Any) -> Any:
        """``get(container, key)`` (a base class's ``__getitem__``), never half of a
        transaction, usually without taking the lock.

        Checked like a seqlock: ``_epoch`` is odd while a transaction or a multi-part change
        is being applied, and moves on when it ends. A read that overlapped one is done again
        under the lock, also one that raised (a KeyError, or list.index's ValueError, may come
        from half a transaction).
        """
        epoch = self._epoch
        if not epoch & 1:
            try:
                value = get(container, key)
            except Exception:
                if self._epoch == epoch:
                    raise
            else:
                if self._epoch == epoch:
                    return value
        with self.lock:
            if self._owed is not None:  # (it waited for the plain lock before a handover
                self._raise_report()  # swapped it, and that handover took a misfit in)
            return get(container, key)

    # ``read_whole(get, container, argument)``: a base class's method that reads a whole
    # container, and perhaps the containers in it (``==``, ``repr``, ``count``), never half of
    # a transaction: as ``read`` here (a shared core's differs).
    read_whole = read

    def ensure_open(self) -> None:
        """Raise PersistedStateError if the state is closed."""
        if self._storage is None:
            if self._closed_because is not None:
                raise PersistedStateError(self._closed_because)
            raise PersistedStateError(f"{self._path}: the state is closed; reopen it to change it")

    def path_for_change(self, container: Node) -> str:
        """The path text of ``container`` for a record, after checking that changes may be
        made now.

        Raises PersistedStateError (closed) or proxies.DetachedError. Also notes which
        top-level entry of the snapshot the change will make stale.
        """
        if self._storage is None:
            self.ensure_open()
        if self._unsettled is not None:  # (a thread that had the lock before it was swapped)
            self._settle()
        if container is self._raw:
            return "[]"
        keys, text = proxies.path_of(container, self._raw)
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
                    if self._unsettled is not None:  # (as path_for_change does)
                        self._settle()
                    cached = self._top_lines.get(key)
                    if cached is None:
                        cached = self._top_line_start(key)
                    start, mirrored = cached
                else:
                    path = self.path_for_change(container)
                    start = journal.set_line_start(path, values.str_text(key))
                    mirrored = False
                line = start + encode(value).encode() + _LINE_END
            except values.UnsupportedValue as error:  # (a str UTF-8 cannot encode)
                raise error.to_builtin([*locate(container), key]) from None
            try:  # the critical section: write, then store (see _settle)
                file.append(line)
                if container is self._raw:
                    container[key] = value  # (the top's item assignment is dict's: TopDict)
                else:
                    _dict_setitem(container, key, value)
                if mirrored and self._mirror is not None:
                    self._mirror[key] = value
            except storage.FileChangedError as error:  # (refused before writing a byte)
                self._keep_both_versions(error)
            except BaseException:
                self._unsettled = (_SCALAR, container, key, value, line, mirrored)
                self.lock = self._settling_lock  # (plain stores first: see _settle)
                self.read = self._settling_read  # type: ignore[method-assign]
                self._epoch |= 1
                self._settle_interrupted()
                raise
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
        # Every change of one commit is to one container (the caller's): its length before
        # them tells _settle which of them an interrupted commit applied.
        length = journal.base_len(changes[0][0])
        if tx is not None:
            undo = tx.undo
            records_before, undo_before = len(tx.records), len(undo)
            try:  # the critical section: keep the records, apply (see _settle)
                tx.records.extend(records)
                for change in changes:
                    change.apply(undo)
            except BaseException:
                self._unsettled = (
                    _TX_CHANGE, changes, length, tx, records, records_before, undo_before
                )  # fmt: skip
                self.lock = self._settling_lock  # (plain stores first: see _settle)
                self.read = self._settling_read  # type: ignore[method-assign]
                self._settle_interrupted()
                raise
            return
        file = self._storage
        assert file is not None
        line = journal.line(records[0] if len(records) == 1 else journal.tx_record(records))
        try:  # the critical section: write, then apply (see _settle)
            file.append(line)
            if len(changes) == 1:
                changes[0].apply(None)
            else:
                self._apply_all(changes)  # (interrupted as it returns: _applied says all)
                self._applied = 0
        except storage.FileChangedError as error:  # (refused before writing a byte)
            self._keep_both_versions(error)
        except BaseException:
            self._unsettled = (_COMMIT, changes, length, line)
            self.lock = self._settling_lock  # (plain stores first: see _settle)
            self.read = self._settling_read  # type: ignore[method-assign]
            self._epoch |= 1
            self._settle_interrupted()
            raise
        if file.size > self._compact_at:
            self._compact_automatically()

    def _apply_all(self, changes: list[Change]) -> None:
        """Apply the changes of a _COMMIT after the first ``_applied``, counting them there
        (an interrupted one is finished from that count; the caller sets it back to 0)."""
        self._epoch += 1  # odd: readers wait until every part is applied
        try:
            for change in changes[self._applied :]:
                change.apply(None)
                self._applied += 1
        finally:
            self._epoch += 1

    # -- a critical section an exception interrupted ---------------------------------------

    # An exception raised by a signal handler (Ctrl-C, or any handler that raises) arrives
    # wherever the main thread runs Python code and CPython runs pending handlers: after a
    # call returns, at a loop's jump back, as a function starts. So also between writing a
    # record and applying its change, or in the middle of applying several. A program that
    # catches it and carries on must find memory and file agreeing.
    #
    # Each critical section (write and apply; apply inside a transaction; write the
    # transaction's record; undo a failed block) is a ``try`` whose ``except BaseException``
    # clause first describes, by plain stores, what it interrupted (``_unsettled``, a tuple
    # built there: on the way that succeeds, nothing is built and the ``try`` costs nothing),
    # makes ``lock`` the settling lock and the epoch odd. Those stores hold no call, so no
    # signal handler runs before them. Then _settle() settles it, before the exception goes
    # on and the lock is released; if a second exception interrupts that (a signal within
    # microseconds of the first), whoever takes the lock next settles first, before reading
    # anything (every operation but the lock-free reads takes the lock, and those take it
    # while the epoch is odd; a thread that was already waiting for the plain lock checks
    # ``_unsettled`` before its change). _settle() puts the plain lock back. Settling is
    # idempotent: it may itself be interrupted, and run again.
    #
    # Memory decides: a change that reached memory (all of it, or part of a change of several
    # parts) happened, and the rest of it is applied; one that did not reach memory did not
    # happen, and its record is taken back out of the file if it got there. So the program
    # never sees a change appear or vanish later. (A transaction's record is the exception:
    # memory has the block's changes already, so the record is kept if it is in the file,
    # and the block is rolled back if not.)

    def _use_lock(self, lock: ReentrantLock) -> None:
        """Make ``lock`` the state's lock, and the one a settling lock stands in for."""
        self._plain_lock = lock
        settling = _SettlingLock(lock, weakref.ref(self))
        self._settling_lock = settling
        # While a settle is owed, reads go through the settling lock too: a shared core's
        # lock-free read does not look at the epoch (see SharedCore).
        self._settling_read = settling.read
        self.lock = lock
        self._plain_reads()

    def _plain_reads(self) -> None:
        """Read as when nothing is owed: ``read`` above."""
        _forget_read(self)

    def _settle_interrupted(self) -> None:
        """Settle now, in an ``except`` clause: a failure leaves it to the next operation."""
        with contextlib.suppress(OSError, PersistedStateError):  # (the first one goes on)
            self._settle()

    def _settle(self) -> None:
        """Settle the critical section that ``_unsettled`` describes, then clear it."""
        marker = self._unsettled
        if marker is None:
            pass
        elif marker[0] is _ROLL_BACK:
            # Roll-backs owed, each wrapping the marker that was set when its block failed
            # (nested blocks; a block whose exit Python interrupted before any of our code
            # ran is rolled back when its generator is closed, perhaps later). What the first
            # exception interrupted is settled first, once only (the roll-backs change what
            # it reads), then every roll-back, each as far as its mark.
            owed = []
            first: tuple[Any, ...] | None = marker
            chain: tuple[Any, ...] | None
            while first is not None and first[0] is _ROLL_BACK:
                owed.append(first[1:3])
                first = first[3]
            if first is not None:
                self._settle_marker(first)
                chain = None
                for tx, mark in reversed(owed):
                    chain = (_ROLL_BACK, tx, mark, chain)
                self._unsettled = chain
            for tx, mark in owed:
                if not tx.written:
                    self._roll_back(tx, mark)
        else:
            self._settle_marker(marker)
        self._unsettled = None
        if self._owed is None:  # (else the next operation must still take the settling lock)
            self._plain_again()

    def _raise_report(self) -> None:
        """Raise the report owed to the program's operation, once (see ``_hand_over``)."""
        owed = self._owed
        if owed is None:
            return
        report = owed.made
        try:
            self._owe(None)
        except BaseException:  # (an interrupt: the report stays owed, to the next operation;
            self._owed = owed  # plain stores, as in a critical section's except clause)
            self.lock = self._settling_lock
            self.read = self._settling_read  # type: ignore[method-assign]
            self._epoch |= 1
            raise
        raise report

    def _owe(self, taken: Intake | None) -> None:
        """Others' change that does not fit was taken in by the catch-up ``taken``, and no
        operation of the program: its next one raises its report (None: nothing to raise, or
        no longer)."""
        self._owed = taken
        if taken is not None:  # (the epoch odd: lock-free reads, read_whole's too, take it)
            self.lock = self._settling_lock
            self.read = self._settling_read  # type: ignore[method-assign]
            self._epoch |= 1
        elif self._unsettled is None:
            self._plain_again()

    def _plain_again(self) -> None:
        """Nothing is owed any more: plain reads, the plain lock, an even epoch."""
        self._plain_reads()
        self.lock = self._plain_lock
        if self._epoch & 1 and self.tx is None:
            self._epoch += 1

    def _log_owed(self) -> None:
        """The state is going (dropped, or at exit) before an operation raised what is owed:
        say it the one way left."""
        if self._owed is not None:
            _log_unraised(self._owed.made)
            self._owe(None)

    def _acquire_quietly(self, timeout: float = -1) -> bool:
        """Take the lock for the library's own work (handing over, letting go, compacting at
        exit): settle what is owed, but leave a report to the program's next operation."""
        lock = self._plain_lock
        try:
            acquired = lock.acquire(timeout=timeout)
        except CorruptStateError as report:  # (a shared core's catch-up: the state is going,
            _log_unraised(report)  # closed or dropped, and this is the one place to say it)
            acquired = lock.acquire(timeout=timeout)
        if not acquired:
            return False
        try:
            if self._unsettled is not None:
                self._settle()
        except BaseException:
            self._plain_lock.release()
            raise
        return True

    def _settle_marker(self, marker: tuple[Any, ...]) -> None:
        kind = marker[0]
        file = self._storage
        if kind is _SCALAR:
            _, raw, key, value, line, mirrored = marker
            if dict.get(raw, key, _ABSENT) is value:  # memory has it: so has the file (stays)
                if mirrored and self._mirror is not None:
                    self._mirror[key] = value
            elif file is not None:
                file.take_back(line)
        elif kind is _COMMIT:
            _, changes, length, line = marker
            done = self._applied  # (changes[done] may be applied too: its apply returned)
            if done < len(changes) and journal.is_applied(
                changes[done], _length_before(changes, done, length)
            ):
                done += 1
            if done == 0:
                if file is not None:
                    file.take_back(line)
            elif done < len(changes):
                self._applied = done
                self._apply_all(changes)
            self._applied = 0
        elif kind is _TX_CHANGE:
            _, changes, length, tx, records, records_before, undo_before = marker
            undo = tx.undo
            # Each apply pushes its undo entry first: changes[: done - 1] are applied, and
            # changes[done - 1] is unless its apply was interrupted before the change itself.
            done = len(undo) - undo_before
            last = done - 1
            if done and not journal.is_applied(
                changes[last], _length_before(changes, last, length)
            ):
                done = last
                del undo[undo_before + done :]
            del tx.records[records_before:]
            if done:
                tx.records.extend(records)
                for change in changes[done:]:
                    change.apply(undo)
        else:  # _TX_END
            _, tx, line = marker
            if file is not None and file.landed(line):
                tx.written = True  # memory has all of it, and so has the file
            else:
                if file is not None:
                    file.take_back(line)
                self._roll_back(tx, (0, 0))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The work of PersistedState.transaction (which documents it)."""
        with self.lock:
            if self._unsettled is not None:  # (a thread that had the lock before the swap)
                self._settle()
            self.ensure_open()
            outer = self.tx
            tx = outer if outer is not None else Transaction()
            mark = tx.mark()
            if outer is None:
                self.tx = tx
                self._epoch += 1  # odd: lock-free readers take the lock until the end
            conflict = None
            ending: tuple[Any, ...] | None = None  # (_TX_END marker, once its record is made)
            try:
                yield
                if outer is None and tx.records:
                    if self._unsettled is not None:  # (the records must be settled first)
                        self._settle()
                    file = self._storage
                    assert file is not None
                    line = journal.line(journal.tx_record(tx.records))
                    ending = (_TX_END, tx, line)
                    file.append(line)  # the critical section: write, note it (see _settle)
                    tx.written = True
            except storage.FileChangedError as error:  # (refused before writing a byte)
                self._unsettled = (_ROLL_BACK, tx, mark, None)  # (before our copy is saved)
                self._settle()
                conflict = error
            except BaseException:
                # An exception from the block, or one that interrupted its end. First, by
                # plain stores (see _settle): the block must be undone, once what the
                # exception interrupted is settled (a change in the block; or the record,
                # which is kept if it is in the file, and then nothing is undone).
                self._unsettled = (_ROLL_BACK, tx, mark, ending or self._unsettled)
                self.lock = self._settling_lock
                self.read = self._settling_read  # type: ignore[method-assign]
                self._settle_interrupted()
                raise
            finally:
                if outer is None and self.tx is tx:  # (a block whose exit was interrupted
                    self.tx = None  # ends when its generator is closed: perhaps later)
                    self._epoch += 1
                    if self._unsettled is not None:  # (odd until it is settled)
                        self._epoch += 1
            if conflict is not None:
                self._keep_both_versions(conflict)
            file = self._storage
            if outer is None and file is not None and file.size > self._compact_at:
                self._compact_automatically()

    def _roll_back(self, tx: Transaction, mark: tuple[int, int]) -> None:
        """Undo ``tx``'s changes after ``mark``; the caller's _ROLL_BACK marker has it
        finished by _settle if an exception interrupts it (each entry is applied before it is
        removed, and ``_undoing`` says which one may be half done)."""
        records, undo_mark = mark
        del tx.records[records:]
        undo = tx.undo
        undoing = self._undoing
        if undoing is not None:  # an entry whose apply was interrupted, if still there
            entry, length = undoing
            if undo and undo[-1] is entry:
                if not journal.is_applied(entry, length):
                    entry.apply(None)
                del undo[-1]
            self._undoing = None
        while len(undo) > undo_mark:
            entry = undo[-1]
            self._undoing = (entry, journal.base_len(entry[0]))
            entry.apply(None)
            del undo[-1]
            self._undoing = None

    # -- the attribute mirror ------------------------------------------------------------

    # The public object keeps the current value of each top-level key that is an identifier
    # in its instance __dict__ (the container, for a dict or list), so ``state.counter`` is a
    # plain attribute read. Invariant: a mirrorable name in the mirror holds the current value of
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
        _OPEN.pop(id(self), None)  # (nor at exit: the data is not here to write)
        if self._closed_because is not None:  # (taken over: its lock refuses, nothing writes)
            self._raw = values.new_dict()  # type: ignore[assignment]
            return
        self._acquire_quietly()
        try:
            self._log_owed()
            if self._storage is not None:
                proxies.freeze_paths(self._raw)
            self._raw = values.new_dict()  # type: ignore[assignment]
            self._snapshot_entries = SnapshotEntries()
            self._compact_at = sys.maxsize
        finally:
            self._plain_lock.release()

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
        if self._unsettled is not None:  # (memory must be settled before it is the file)
            self._settle()
        try:
            if self._commented_snapshot is not None:
                from . import comments  # (ruamel.yaml: only for a file that holds comments)

                snapshot = comments.dump_snapshot(self._raw, self._commented_snapshot, self._path)
            else:
                snapshot = self._snapshot_entries.render(self._raw, self._changed_top_keys)
        except Exception:
            self._refuse_unwritable_memory()
            raise  # (the data is valid: another failure)
        self._changed_top_keys = set()
        try:
            self._storage.replace(snapshot)
        except storage.FileChangedError as error:
            self._keep_both_versions(error)
        self._storage.prefix_next_append(journal.header_line)
        if self._commented_snapshot is not None:
            self._commented_snapshot = snapshot if has_comments(snapshot) else None
        self._plan_compaction(len(snapshot))
        log.debug("%s: compacted to %d bytes", self._path, len(snapshot))

    def _refuse_unwritable_memory(self) -> None:
        """Raise UnwritableMemoryError if memory holds a value no change could have stored
        (the dumper failed on it): one that code put there without the containers' methods,
        so no record has it either."""
        try:
            values.prepare(self._raw)
        except values.UnsupportedValue as error:
            where = error.key_path
            raise UnwritableMemoryError(
                f"{self._path}: the state in memory cannot be written: {error.message} "
                f"(at key path {where}). No change of the state put it there: code changed a "
                "dict or list of the state without its methods, so nothing was written. "
                "exec() and eval() add '__builtins__' to the dict they are given as globals, "
                "and heapq's functions change a list in place: give them a copy "
                "(dict(state.ns), list(state.queue)) and assign the result back. The file "
                "keeps the last version written; take the value out of memory as it came in, "
                "without a record (dict.pop(d, key)), not with del (the file never had it)"
            ) from None

    def compact_at_exit(self) -> None:
        """Fold the journal in at interpreter exit, if it holds records; log, never raise.

        The state stays open: a change made later (a daemon thread, a later exit handler)
        still goes to the journal, and is not refused.
        """
        if not self._acquire_quietly(_EXIT_LOCK_WAIT):
            log.warning(
                "%s: not compacted at exit: another thread held the state for %g s; the "
                "journal keeps every change, and the next open replays it",
                self._path,
                _EXIT_LOCK_WAIT,
            )
            return
        try:
            self._log_owed()
            if self._storage is not None and self._storage.size != self._snapshot_size:
                self.compact()
        except Exception as error:  # (no one can catch it at exit: say it instead)
            log.warning(
                "%s: not compacted at exit: %s; the journal keeps every change, and the next "
                "open replays it",
                self._path,
                error,
            )
        finally:
            self._plain_lock.release()

    def _plan_compaction(self, snapshot_size: int) -> None:
        self._snapshot_size = snapshot_size  # (the file's size until the next change)
        journal_allowance = max(self._compact_min_bytes, self._compact_ratio * snapshot_size)
        self._compact_at = snapshot_size + journal.HEADER_SIZE + journal_allowance

    def _compact_automatically(self) -> None:
        try:
            self._write_snapshot()
        except (OSError, UnwritableMemoryError) as error:
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
        self._closed_because = (
            f"{error}. Their version was left at {error.theirs or self._path}; this process's "
            f"version was saved as {ours}. The state is now closed."
        )
        raise PersistedStateError(self._closed_because) from None

    def close(self, *, compact: bool = True) -> None:
        """The work of PersistedState.close (which documents it)."""
        if self._storage is None:  # (closed already: also a state taken over)
            unreported, self._unreported = self._unreported, None
            if unreported is not None:  # (found by the handover thread: say it once)
                raise PersistedStateError(unreported)
            return
        with self.lock:
            if self._storage is None:
                return
            if self.tx is not None:
                raise PersistedStateError("cannot close inside a transaction")
            try:
                if compact and self._storage.compacts_at_close():
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
        # No state and no container refers to this any more: a state nobody closed. Free the
        # lock; never write from here.
        self._release()

    # -- other processes (docs/design.md, "Several processes") ---------------------------

    def _hand_over(self) -> None:
        """The handover thread's call: a command waits for the file. Between operations
        (holding the lock), let it have the write lock, take it back, and take its change
        in; no read may return a value from before the command meanwhile."""
        if not self._acquire_quietly(storage.HANDOVER_SECONDS):
            return  # (a transaction in progress: the next round)
        try:
            file = self._storage
            if file is None:
                return
            owed = taken = self._owed  # (still owed if the catch-up fails)
            # Meanwhile the lock is the settling lock: an operation that waits for this one
            # waits inside it, and raises what this catch-up finds before doing anything of
            # its own (the plain lock would let it go ahead). This thread's own acquisitions
            # (it holds the lock) do nothing else meanwhile (``handing_over``: not a
            # core's attribute, which would slow every change of a typed state by 3%).
            self._settling_lock.handing_over = True
            self._owed = None
            self.lock = self._settling_lock
            self.read = self._settling_read  # type: ignore[method-assign]
            self._epoch |= 1  # odd: lock-free reads take the lock, and wait for the end
            self._forget_all_mirrored()
            try:
                file.hand_over()
                taken = self._catch_up(owed)  # (None: nothing owed, or it was fixed since)
            finally:
                self._settling_lock.handing_over = False
                self._owe(taken)  # (owed: the epoch stays odd until it is raised)
        except PersistedStateError as error:  # (the state closed itself, saying why)
            self._unreported = str(error)
        finally:
            self._plain_lock.release()

    def intake(self, owed: Intake | None) -> Intake | None:
        """What checks others' changes as a catch-up applies them: a typed core's
        (``schema.CheckedCore``), which first checks again what ``owed`` (an earlier
        catch-up whose report is not raised yet) reported; an untyped core takes them as
        they are."""
        return None

    def _catch_up(self, owed: Intake | None = None) -> Intake | None:
        """Apply what other processes wrote since this one last looked (the caller holds
        the lock and the file's write lock). Returns the intake of a typed state if it found
        what does not fit (the caller raises its report, or has the next operation raise it);
        ``owed``: see ``intake``."""
        file = self._storage
        assert file is not None
        try:
            news = file.catch_up()
        except storage.FileChangedError as error:
            self._keep_both_versions(error)
        if news is None:
            return None
        self._forget_all_mirrored()
        intake = self.intake(owed)
        try:
            at = None if intake is None else intake.records_at(None)
            touched = journal.apply_records(self._path, self._raw, news.old_records, at)
            if news.replaced is not None:
                snapshot_size = news.snapshot_size
                document = news.replaced[:snapshot_size]
                if news.consistent < 0:  # (several compactions passed: parse it whole)
                    result = journal.read_state(self._path, news.replaced, stored=True)
                    _reconcile(self._raw, result.data)
                    touched.update(dict.keys(self._raw))
                    snapshot_size, document = result.snapshot_size, result.document
                    file.adopt(
                        result.good_size, newline_owed=result.needs_newline, raw=news.replaced
                    )
                if intake is not None:
                    intake.replaced(parsed=news.consistent < 0)
                self._adopt_snapshot(document, snapshot_size)
            at = None if intake is None else intake.records_at(file.size - len(news.records))
            touched |= journal.apply_records(self._path, self._raw, news.records, at)
        except CorruptStateError as error:
            self._keep_both_versions(
                storage.FileChangedError(
                    f"{self._path} holds what this process cannot apply ({error.problem}): it "
                    "was changed by someone who does not take the file's write lock"
                )
            )
        self._changed_top_keys |= touched
        # The heading goes with the first record after the document, whoever writes it: owed
        # while none follows it (another process compacted), never once one does.
        no_records = file.size == self._snapshot_size
        file.prefix_next_append(journal.header_line if no_records else None)
        if intake is None or intake.report(self._snapshot_size) is None:
            return None
        return intake

    def _adopt_snapshot(self, snapshot: bytes, size: int) -> None:
        """Another process compacted: its snapshot (``size`` bytes of the file, a byte-order
        mark included) is ours now (the template of our next compaction when it holds
        comments)."""
        self._snapshot_entries = SnapshotEntries()
        self._commented_snapshot = snapshot if has_comments(snapshot) else None
        self._plan_compaction(size)

    def _taken_over(self, reason: str) -> None:
        """This process opened the same file again: this state is closed, without writing
        (its changes are in the file), and every later use of it raises, saying why."""
        _OPEN.pop(id(self), None)  # (nothing of its own to compact at exit)
        lock = self._plain_lock
        self._acquire_quietly()
        try:
            self._closed_because = reason
            self._forget_all_mirrored()
            self._mirror = None
            self._release()
            self._epoch |= 1  # (lock-free reads take the lock, which refuses)
            self._use_lock(_RefusingLock(reason))
        finally:
            lock.release()


class UnwritableMemoryError(PersistedStateError):
    """Compaction found a value in memory that the file cannot hold (``_write_snapshot``)."""


class OperationLock:
    """A shared-mode core's lock: re-entrant, and a thread's first acquisition also begins an
    operation (the file's write lock, and catching up with others' changes); its last release
    ends it."""

    __slots__ = ("_begin", "_core", "_depth", "_end", "_lock", "_reading", "_unchanged")

    def __init__(self, core: SharedCore, file: SharedStorage) -> None:
        self._lock = threading.RLock()
        self._begin = file.begin_operation
        self._end = file.end_operation
        self._unchanged = file.unchanged
        self._core = weakref.ref(core)  # (no cycle: a dropped state lets go of its file)
        self._depth = 0  # (changed only by the thread holding the lock)
        self._reading = False  # a read_whole without the write lock is under way (its thread)

    def read(self, get: Callable[[Any, Any], Any], container: Any, key: Any) -> Any:
        """``get(container, key)`` as an operation: without the file's write lock when no
        other process has begun a write since this one last looked (docs/design.md, "Shared
        mode": such a read sees every change that completed before it began)."""
        with self._lock:  # (other threads of this process: never half a transaction)
            if self._depth or self._unchanged():
                return get(container, key)
        with self:
            return get(container, key)

    def read_whole(
        self, get: Callable[[Any, Any], Result], container: Any, argument: Any
    ) -> Result:
        """``get(container, argument)`` as an operation (``Core.read_whole``), as ``read``
        does. The reads it makes of the containers inside take in no change of another
        process meanwhile: they see what it sees (the base class's method would go on with
        containers changed under it)."""
        with self._lock:
            if self._depth or self._reading:
                return get(container, argument)
            if self._unchanged():
                try:
                    self._reading = True
                    return get(container, argument)
                finally:
                    self._reading = False
        with self:
            return get(container, argument)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._lock.acquire(blocking, timeout):
            return False
        self._depth += 1
        if self._depth == 1:
            try:
                if self._begin():  # (others wrote since this process last looked)
                    core = self._core()
                    if core is not None:
                        core._catch_up_shared()
            except BaseException:
                self._depth = 0
                self._end()
                self._lock.release()
                raise
        return True

    __enter__ = acquire

    def release(self) -> None:
        depth = self._depth - 1
        if depth:
            self._depth = depth
            self._lock.release()
            return
        try:
            self._end()
        finally:
            self._depth = 0
            self._lock.release()

    def __exit__(self, kind: Any, value: Any, traceback: Any, /) -> None:
        depth = self._depth - 1  # (release, written out: a call less per operation)
        if depth:
            self._depth = depth
            self._lock.release()
            return
        interrupted = None if kind is None else self._settle_before_letting_go()
        try:
            self._end()
        finally:
            self._depth = 0
            self._lock.release()
        if interrupted is not None:
            raise interrupted

    def _settle_before_letting_go(self) -> BaseException | None:
        """Settle what an exception interrupted while this process still holds the write
        lock: once it is let go, others append after the interrupted change's record, and
        taking that record back would cut theirs off with it. An exception that interrupts
        settling (another Ctrl-C) is settled again, and returned to be raised after."""
        core = self._core()
        interrupted = None
        while core is not None and core._unsettled is not None:
            try:
                core._settle()
            except (OSError, PersistedStateError):  # (a cut that failed stays owed to the
                break  # next write, which makes it first, still holding the lock)
            except BaseException as error:
                interrupted = error
        return interrupted


class SharedCore(Core):
    """The core of a state opened with ``shared=True`` (docs/design.md, "Shared mode"): every
    operation holds the file's write lock and first takes in other processes' changes; there
    is no attribute mirror (a read must go through the lock)."""

    def __init__(self, file: SharedStorage, path: str, **options: Any) -> None:
        try:
            super().__init__(file, path, **options)
        finally:
            file.end_operation()  # (the open held the write lock)
        self._use_lock(OperationLock(self, file))

    def read(self, get: Callable[[Any, Any], Any], container: Any, key: Any) -> Any:
        lock = self.lock
        if type(lock) is OperationLock:
            return lock.read(get, container, key)
        with lock:  # (a state taken over: it raises)
            return get(container, key)

    def read_whole(
        self, get: Callable[[Any, Any], Result], container: Any, argument: Any
    ) -> Result:
        lock = self.lock
        if type(lock) is OperationLock:
            return lock.read_whole(get, container, argument)
        with lock:  # (a settle owed, or a state taken over: it raises)
            return get(container, argument)

    def attach_mirror(self, mirror: dict[str, Any], mirrorable: Callable[[str], bool]) -> None:
        pass  # (no mirror: every read must look at the file's counter)

    def _plain_reads(self) -> None:
        lock = self._plain_lock
        if type(lock) is OperationLock:
            self.read = lock.read  # type: ignore[method-assign]  # (a call less per read)
        else:  # (a state taken over: reads go through the refusing lock)
            _forget_read(self)

    def _catch_up_shared(self) -> None:
        if self._storage is not None:
            taken = self._catch_up()
            if taken is not None:  # (the operation that took it in does nothing else)
                raise taken.made


class _RefusingLock:
    """The lock of a state taken over by a later open: every use raises, saying why."""

    __slots__ = ("_reason",)

    def __init__(self, reason: str) -> None:
        self._reason = reason

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        raise PersistedStateError(self._reason)

    __enter__ = acquire

    def release(self) -> None:
        pass

    def __exit__(self, kind: Any, value: Any, traceback: Any, /) -> None:
        pass


def _log_unraised(report: CorruptStateError) -> None:
    """Log the report of others' change that does not fit a typed state, which no operation
    raised and none will (the state is going): its own closing sentence speaks of one."""
    log.warning("%s\n%s", report.describe(), _UNRAISED)


_UNRAISED = (
    "This program has taken the change in, as the file holds it; no operation of the program "
    "raised it, and none will: the state is going (dropped, closed, or the program exits). "
    "The next open refuses the file while the value does not fit (docs/design.md, \"Others' "
    'changes to a typed state").'
)


def _weak_call(method: Callable[..., object]) -> Callable[..., None]:
    """Call ``method`` (a bound method) while its object lives, without keeping it alive."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> None:
        bound = ref()
        if bound is not None:
            bound(*args)

    return call


def _reconcile(old: dict[Any, Any], new: dict[Any, Any]) -> None:
    """Make ``old`` equal ``new`` in place, keeping each dict and list that still has a place
    (one a program holds stays in the state). Keys and their order are ``new``'s. (Both are
    a state's own containers: the base classes' methods change them without a record.)"""
    items = [(key, _reconciled(dict.get(old, key), value)) for key, value in dict.items(new)]
    dict.clear(old)
    dict.update(old, items)


def _reconciled(current: Any, value: Any) -> Any:
    if isinstance(current, dict) and isinstance(value, dict):
        _reconcile(current, value)
        return current
    if isinstance(current, list) and isinstance(value, list):
        old, new = list.copy(current), list.copy(value)
        common = min(len(old), len(new))
        reconciled = [*(_reconciled(old[i], new[i]) for i in range(common)), *new[common:]]
        list.__setitem__(current, slice(None), reconciled)
        return current
    return value


def _forget_read(core: Core) -> None:
    """Take back a ``read`` set on the instance (the class's applies again). Not with
    ``vars()``: that would give the core a dict of its own, and every ``self.x`` of the
    per-change path would then take CPython's slow attribute lookup (17% of
    ``state.counter += 1``, counted in instructions)."""
    with contextlib.suppress(AttributeError):
        del core.read


def _never(key: str) -> bool:
    return False


class _SettlingLock:
    """The state's lock (``Core.lock``) while an interrupted critical section waits to be
    settled: taking it settles it first (see Core._settle). Refers to its core weakly, so
    that the core is in no reference cycle (a state dropped unclosed frees its lock at once).
    """

    __slots__ = ("_core", "_lock", "handing_over")

    def __init__(self, lock: ReentrantLock, core: weakref.ref[Core]) -> None:
        self._lock = lock
        self._core = core
        self.handing_over = False  # the handover thread holds the lock and catches up

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._lock.acquire(blocking, timeout):
            return False
        try:
            core = self._core()
            if core is not None and core.lock is not core._plain_lock and not self.handing_over:
                core._settle()
                core._raise_report()
        except BaseException:
            self._lock.release()
            raise
        return True

    def release(self) -> None:
        self._lock.release()

    def read(self, get: Callable[[Any, Any], Any], container: Any, key: Any) -> Any:
        """``get(container, key)``, once what is owed is settled (``Core.read`` meanwhile)."""
        with self:
            return get(container, key)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, kind: Any, value: Any, traceback: Any, /) -> None:
        self._lock.__exit__(kind, value, traceback)  # (a shared core's settles before it lets go)


# The kinds of critical section (the first item of Core._unsettled), and what follows it:
_SCALAR = 0  # (raw, key, value, line, mirrored?): set_scalar's short path
_COMMIT = 1  # (changes, length before them, line): Core.commit, outside a transaction
_TX_CHANGE = 2  # (changes, length, tx, records, len(tx.records), len(tx.undo)): inside one
_TX_END = 3  # (tx, line): a transaction's record
_ROLL_BACK = 4  # (tx, mark, marker to settle first or None): Core._roll_back

_ABSENT: Any = object()


def _length_before(changes: list[Change], index: int, length: int) -> int:
    """The length of the container of ``changes`` before ``changes[index]``, from ``length``,
    its length before them all."""
    for change in changes[:index]:
        length += journal.length_change(change)
    return length


# Every core that opened its file, weakly: a state dropped unclosed is not kept alive for
# exit. At a normal interpreter exit (the end of the program, sys.exit(), an unhandled
# exception; not a kill, nor os._exit()) each one still open is compacted. A child made by
# fork starts with none: the states it inherited are its parent's.
_OPEN: weakref.WeakValueDictionary[int, Core] = weakref.WeakValueDictionary()  # (unhashable)
_EXIT_LOCK_WAIT = 1.0  # seconds to wait for another thread's change to finish, at exit


def _compact_open_states_at_exit() -> None:
    for state_core in list(_OPEN.values()):
        state_core.compact_at_exit()


atexit.register(_compact_open_states_at_exit)
if hasattr(os, "register_at_fork"):  # (not on Windows, which has no fork)
    os.register_at_fork(after_in_child=_OPEN.clear)


_LINE_END = journal.LINE_END
_TOP_LINE_CACHE_SIZE = 4096
_dict_setitem = dict.__setitem__


class Transaction:
    """The records and undo entries of an open transaction."""

    def __init__(self) -> None:
        self.records: list[str] = []
        self.undo: list[Change] = []
        self.written = False  # its record is in the file

    def mark(self) -> tuple[int, int]:
        return len(self.records), len(self.undo)
