"""The state file on disk: who may write it when, reading, appending records, replacement.

This module knows bytes, not YAML. It keeps these promises:

- ``append`` hands a record to the operating system with one ``write`` before it returns (and,
  with ``fsync=True``, to stable storage); if the write fails the file is cut back to where it
  was, so a failed change leaves no trace.
- ``replace`` (compaction, creation) never rewrites the file in place: it writes a new file
  beside it, syncs it, renames it over the old one and syncs the directory.
- An exception that a signal handler raises (Ctrl-C) wherever Python runs one in ``append``
  or ``replace`` (after a call returns, at a loop's jump back, as a function starts) leaves
  nothing for anyone else to notice: an append either returned (its record is in the file
  and counted) or raised (its record is cut off, now or before the next write); after a
  replace, the next write goes to whichever file the rename left at the path, with that
  file's length and checksum. ``landed`` and ``take_back`` let the caller settle a change
  whose critical section was interrupted (see core.Core._settle).
- Every append and replacement happens under the write lock of the lock file beside the state
  file (``<name>.lock``, see ``locking``), by every kind of process: a default-mode program
  (:class:`StateFile`), which keeps the write lock and hands it over to a command that asks;
  programs in shared mode (:class:`SharedStateFile`), which take it per operation; a command
  (:class:`CommandStateFile`), which holds it for its short work. docs/design.md, "Several
  processes", is the protocol; ``catch_up`` is how a process learns what others wrote.
- Someone else's file is never overwritten: before each append the file must still have the
  length we left it with, and before a replacement the same identity, length and checksum.
- Only regular files (or links to one) are read or written: a FIFO, a device or a directory
  is refused before anything is created, without waiting on it.
- Every rewrite keeps the file's owner, group and permission bits, as far as the platform
  allows this process to set them.

A process forked while a state file is open inherits it: the child may not write it (its
appends would interleave with the parent's), and must not release the parent's locks.

Platform differences live in ``locking`` and in the small functions at the bottom.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import threading
import time
import weakref
import zlib
from collections.abc import Callable

from . import locking
from .errors import PersistedStateError, StateLockedError
from .locking import (
    CHANGES,
    CONSISTENT_SIZE,
    DEVICE,
    HOLDER,
    HOLDER_PID,
    INODE,
    MAGIC,
    MAGIC_VALUE,
    NEXT_CONSISTENT_SIZE,
    NEXT_DEVICE,
    NEXT_INODE,
    NEXT_SNAPSHOT_SIZE,
    QUEUE,
    REPLACEMENTS,
    REQUESTS,
    SNAPSHOT_SIZE,
    WRITER,
    WRITER_PID,
    add,
)
from .log import log

TYPE_CHECKING = False  # (typing's, without importing typing: docs/design.md, Memory)
if TYPE_CHECKING:
    from typing import TypeAlias

_IS_WINDOWS = sys.platform == "win32"
_MASK = (1 << 64) - 1  # header fields are unsigned 64-bit

# A default-mode program looks this often for a command waiting for the file (docs/design.md).
HANDOVER_SECONDS = 0.05
# A consistent size no file has: the new file holds the state in an order of its own (a
# person's edit), so the others parse it whole and put their dicts in that order.
PARSE_WHOLE = _MASK
# A shared-mode open waits at least this long for the holder lock: another shared-mode process
# may hold it alone for a moment while it opens.
SHARED_OPEN_GRACE = 0.5

# What a program may give as the path of a state file.
PathArg: TypeAlias = "str | bytes | os.PathLike[str] | os.PathLike[bytes]"


def path_text(path: PathArg) -> str:
    """``path`` as text (a bytes path decoded as the OS does); refuses the empty path."""
    name = os.fsdecode(path)
    if not name:
        raise ValueError("the path of the state file is empty: give the name of a file")
    return name


def read_file(path: str) -> bytes | None:
    """The whole file, or None when it does not exist. Takes no lock.

    Raises PersistedStateError, at once, if the path names something other than a regular
    file (a FIFO would otherwise wait for a writer forever).
    """
    try:
        fd = _open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read_all(fd)
    finally:
        os.close(fd)


class FileChangedError(PersistedStateError):
    """Someone else replaced or rewrote the state file while we held it open; their version
    is at ``theirs`` (the path, or the link the program named it by)."""

    def __init__(self, message: str, theirs: str | None = None) -> None:
        super().__init__(message)
        self.theirs = theirs


class StateBusyError(StateLockedError):
    """A command waited for the write lock in vain (a program kept it, in a transaction)."""


class CatchUp:
    """What other processes wrote since this one last looked (see ``StateFile.catch_up``).

    Apply ``old_records`` (complete record lines the file we had open gained before it was
    replaced), then, if ``replaced`` holds the new file's bytes: with ``consistent`` >= 0 its
    first ``consistent`` bytes hold the state we then have (its snapshot ends at
    ``snapshot_size``), so apply ``records`` (the record lines after them); with ``consistent``
    -1 parse ``replaced`` whole and call ``adopt``. Without a replacement apply ``records``.
    (A plain class, not a NamedTuple: cheaper to define at import.)
    """

    __slots__ = ("consistent", "old_records", "records", "replaced", "snapshot_size")

    def __init__(
        self,
        old_records: bytes,
        replaced: bytes | None,
        consistent: int,
        snapshot_size: int,
        records: bytes,
    ) -> None:
        self.old_records = old_records
        self.replaced = replaced
        self.consistent = consistent
        self.snapshot_size = snapshot_size
        self.records = records


class StateFile:
    """An open state file that this process may write: a default-mode program's.

    It holds the holder lock exclusively and keeps the write lock, which it hands over to a
    command that asks (``hand_over``, called from the handover thread through the callback
    ``on_handover``; the owner then calls ``catch_up``).
    """

    def __init__(self, path: str, *, fsync: bool, lock_timeout: float) -> None:
        shown = path_text(path)
        _refuse_unless_regular(shown)  # (before the lock file is created beside it)
        # Work on the file a symbolic link points to, so that a rename replaces the file
        # and not the link, and two links to one file share one lock. The path is absolute
        # from here on: a later os.chdir() changes nothing.
        self.path = os.path.realpath(shown)
        self.shown_path = shown
        self._named = os.path.abspath(shown)  # (a link's own path: is it still one to ours?)
        self.fsync = fsync
        self.size = 0  # bytes of the file that hold good records
        self._checksum = 0  # CRC-32 of those bytes, to notice edits that keep the length
        # The bytes of the last append that returned, while they are the end of the file
        # (kept alive here, so no other bytes object can have their identity).
        self._last_data: bytes | None = None
        # The last append that wrote the heading line in front of its record: (the bytes
        # written, the record, the heading's maker), so that its record can be taken back.
        self._last_prefixed: tuple[bytes, bytes, Callable[[int], bytes]] | None = None
        # A replace() between its temporary file and its last bookkeeping: (temporary path,
        # the new file's length and checksum). _repair() finishes it, or undoes it, from
        # what is on disk.
        self._switch: tuple[str, int, int] | None = None
        self._fd = -1
        self._identity: tuple[int, int] | None = None
        self._status: os.stat_result | None = None  # the file's, when last opened
        # Work owed before the next write: cut bytes after self.size (a torn tail found at
        # open, a failed append), add the final newline a 26.1 file lacks, reopen the file,
        # refuse to write a file inherited across fork, put a prefix in front of the next
        # append's data. append() checks this flag first.
        self._repair_needed = False
        self._cut_owed = False
        # An append that raised has not tried to cut its record off yet (an exception
        # interrupted its except clause): take_back() tries.
        self._cut_untried = False
        self._newline_owed = False
        self._inherited = False  # this process is a fork of the one that opened the file
        self._prefix: Callable[[int], bytes] | None = None  # see prefix_next_append
        self._closed_because: str | None = None  # why a file of ours was closed under us
        self._directory_unsynced = False  # a rename whose directory sync failed
        self._seen_changes = 0  # header counters as of our last look at others' writes
        self._seen_replacements = 0
        self._served = -1  # the handover requests served (-1: hand over at the first round)
        self.on_handover: Callable[[], object] | None = None  # (a weak method of the owner)
        self.on_taken_over: Callable[[str], object] | None = None
        self._lock: locking.LockFile | None = None
        self._before_locking()
        self._lock = self._take_locks(lock_timeout)
        _OPEN_FILES.add(self)
        try:
            self._lock.header[WRITER_PID] = os.getpid()
            self._give_lock_file_to_state_owner()
            _remove_stale_temp_files(self.path)
        except BaseException:
            self.close()
            raise
        self._after_locking()

    # -- locks ---------------------------------------------------------------------------

    def _before_locking(self) -> None:
        _take_over_in_this_process(self.path)

    def _after_locking(self) -> None:
        _OWNERS[self.path] = weakref.ref(self)
        _HANDOVER.watch(self)

    def _take_locks(self, timeout: float) -> locking.LockFile:
        """The lock file, holding the holder lock exclusively and the write lock."""
        lock = self._open_holding(HOLDER, shared=False, timeout=timeout, grace=0.0)
        try:
            lock.write_lock()  # (only a command has it, briefly)
            _reset_header(lock.header)  # nobody else has the file open
            lock.header[HOLDER_PID] = os.getpid()
            if lock.alone(QUEUE):  # (else a command waits: hand over at the first round)
                self._served = lock.header[REQUESTS]
        except BaseException:
            lock.close()
            raise
        return lock

    def _open_holding(
        self, which: int, *, shared: bool, timeout: float, grace: float
    ) -> locking.LockFile:
        """Open the lock file and take ``which``, waiting up to ``timeout`` seconds (at least
        ``grace``); a lock file deleted meanwhile by its last user is left for the new one."""
        deadline = time.monotonic() + max(timeout, grace, 0.0)
        while True:
            lock = locking.LockFile(lock_path(self.path))
            try:
                if not lock.acquire(which, shared=shared, timeout=_left(deadline)):
                    raise StateLockedError(
                        self.shown_path, lock.holder_pid(), _holding_mode(lock, shared)
                    )
                if lock.is_current():
                    return lock
            except BaseException:
                lock.close()
                raise
            lock.close()

    def _give_lock_file_to_state_owner(self) -> None:
        """root creating the lock file (``sudo persistedstate set``) would otherwise leave the
        state's owner unable to lock their own state."""
        assert self._lock is not None
        try:
            state = os.stat(self.path)
            lock = os.fstat(self._lock.fd)
        except OSError:
            return
        if (lock.st_uid, lock.st_gid) != (state.st_uid, state.st_gid):
            self._lock.give_to(state.st_uid, state.st_gid)

    # -- opening -------------------------------------------------------------------------

    def read(self) -> bytes | None:
        """Open the file for appending and return its bytes (None if it does not exist)."""
        try:
            self._fd = _open_regular(self.path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            self._note_counters()
            return None
        raw = _read_all(self._fd)
        self.size = len(raw)
        self._checksum = zlib.crc32(raw)
        self._remember_identity(os.fstat(self._fd))
        self._check_identity_at_open()
        self._note_counters()
        return raw

    def _check_identity_at_open(self) -> None:
        """Make the header name the file we opened, or refuse a file that was replaced outside
        the protocol while other processes hold the one they know (docs/design.md)."""
        assert self._lock is not None and self._identity is not None
        header = self._lock.header
        _finish_replacement(header, self.path)
        known = (header[DEVICE], header[INODE])
        if known == _masked(self._identity):
            return  # (the sizes there are for processes yet to adopt it: leave them)
        if known == (0, 0):
            _set_identity(header, self._identity, self.size, self.size)
            return
        if self._others_hold_the_file():
            raise PersistedStateError(
                f"{self.shown_path} was replaced by another program (an editor?) while "
                "another process has the state open: that process will keep both versions "
                "at its next compaction. Open it again once it has closed the state"
            )
        _set_identity(header, self._identity, self.size, self.size)

    def _others_hold_the_file(self) -> bool:
        return False  # a default-mode program holds the file alone

    def _note_counters(self) -> None:
        assert self._lock is not None
        self._seen_changes = self._lock.header[CHANGES]
        self._seen_replacements = self._lock.header[REPLACEMENTS]

    def keep_only(self, kept: bytes, *, newline_owed: bool) -> None:
        """Take ``kept`` (the start of what read() gave) as the good part of the file.

        Opening writes nothing: a torn tail after it is cut off, and a missing final newline
        added, just before the next write.
        """
        self._cut_owed = len(kept) < self.size
        if self._cut_owed or newline_owed:
            self._repair_needed = True
        self._newline_owed = newline_owed
        self.size = len(kept)
        self._checksum = zlib.crc32(kept)

    # -- appending -----------------------------------------------------------------------

    def prefix_next_append(self, make: Callable[[int], bytes] | None) -> None:
        """Write ``make(checksum)`` in front of the next append's data, in the same write
        (None: nothing, after all).

        ``checksum`` is the CRC-32 of the file as it is then (after any repair).
        """
        self._prefix = make
        self._repair_needed = True  # (the flag append() tests first: no cost until then)

    def append(self, data: bytes) -> None:
        """Write ``data`` at the end of the file before returning; all or nothing.

        If it returns, the record is in the file and counted. If it raises (a failed write,
        or an exception from a signal handler), the record is not in the file: it is cut off
        at once, or, if that fails or is interrupted, before the next write (``take_back``
        cuts it at once).
        """
        if self._repair_needed:
            self._repair()
            if self._prefix is not None:
                self._append_prefixed(data)
                return
        if os.lseek(self._fd, 0, os.SEEK_END) != self.size:
            raise FileChangedError(f"{self.path} was rewritten by someone else while open")
        # The bookkeeping after the record is worked out before the write, so that only
        # plain stores follow it (no call: no signal handler can run between them).
        length = len(data)
        checksum = zlib.crc32(data, self._checksum)
        try:
            written = os.write(self._fd, data)  # (not _write_all: this is the hot path)
            if written < length:
                _write_all(self._fd, data[written:])
            if self.fsync:
                _sync_file(self._fd)
                if self._directory_unsynced:
                    self._sync_directory()
        except BaseException:  # an OSError, or Ctrl-C during or after the write: take it back
            # (plain stores first: the cut is owed, and not yet tried)
            self._repair_needed = self._cut_owed = self._cut_untried = True
            with contextlib.suppress(OSError):  # (if it fails, the next write retries it)
                self._repair()
            self._cut_untried = False
            raise
        self.size += length
        self._checksum = checksum
        self._last_data = data

    def landed(self, data: bytes) -> bool:
        """Whether ``append(data)`` returned (its record is in the file): for a caller an
        exception interrupted around it. Nothing was appended since."""
        return self._last_written(data) is not None

    def _last_written(self, data: bytes) -> bytes | None:
        """The bytes the last append that returned wrote, if that append was ``append(data)``
        (``data`` itself, or the heading line and ``data``)."""
        last = self._last_data
        if last is data:
            return last
        prefixed = self._last_prefixed
        if prefixed is not None and prefixed[0] is last and prefixed[1] is data:
            return last
        return None

    def take_back(self, data: bytes) -> None:
        """Cut off ``data``, the record of the last append, wherever an exception left it:
        counted (the append returned), or taken back by the append but not cut yet.

        For a caller whose change an exception interrupted before it reached memory: the file
        must not keep it. Calling it again is harmless, so an interrupted call is finished by
        the next (the caller settles before it appends again). If the cut fails (OSError), it
        is owed to the next write, like other repairs owed (a torn tail found at open), which
        wait for that write.
        """
        written = self._last_written(data)
        if written is not None:  # it returned: its record is the last one counted
            start = self.size - len(written)
            checksum = zlib.crc32(_read_at(self._fd, start, 0))  # (the checksum before it)
            self._repair_needed = True  # (plain stores first: the cut is owed from here)
            self._cut_owed = True
            self.size = start
            self._checksum = checksum
            self._last_data = None
            if written is not data:  # (the heading line went with it: owed again)
                assert self._last_prefixed is not None
                self._prefix = self._last_prefixed[2]
        elif not self._cut_untried:
            return  # it wrote nothing, or tried to cut its record off itself
        self._cut_untried = False
        try:
            os.ftruncate(self._fd, self.size)
        except OSError:
            return  # (owed to the next write, which cuts first)
        self._cut_owed = False

    def _append_prefixed(self, data: bytes) -> None:
        make = self._prefix
        assert make is not None
        try:
            whole = make(self._checksum) + data
            self._last_prefixed = (whole, data, make)
            self._prefix = None
            self.append(whole)
        except BaseException:  # (plain stores: the write was taken back, the heading owed)
            self._prefix = make
            self._repair_needed = True
            raise

    def _repair(self) -> None:
        if self._inherited:
            raise PersistedStateError(
                f"{self.path} was opened by another process, which this one was forked from: "
                "a child may read the state it inherited, but not change, compact or close "
                "it (the parent holds the file). Change it in the parent, or open it in this "
                "process once the parent has closed it"
            )
        if self._closed_because is not None:
            raise PersistedStateError(self._closed_because)
        if self._switch is not None:
            self._finish_switch()
        if self._fd < 0:
            self._reopen()
        if self._cut_owed:  # (only then: never cut what someone else appended)
            os.ftruncate(self._fd, self.size)
            self._cut_owed = False
        if self._newline_owed:
            # (the checksum before the write, and the cut owed until the newline is counted,
            # so that an interrupted repair cuts the newline off and writes it again, never
            # twice)
            checksum = zlib.crc32(b"\n", self._checksum)
            self._cut_owed = True
            _write_all(self._fd, b"\n")
            self.size += 1
            self._checksum = checksum
            self._newline_owed = self._cut_owed = False
        self._repair_needed = self._prefix is not None

    # -- replacing -----------------------------------------------------------------------

    def replace(
        self, data: bytes, *, consistent_size: int | None = None, snapshot_size: int | None = None
    ) -> None:
        """Atomically make ``data`` the whole file (synced), then append after it.

        ``consistent_size`` (all of ``data`` by default) is how many of its bytes hold exactly
        the state the file held at its end, and ``snapshot_size`` where its snapshot ends: the
        header tells other processes, which adopt the new file without parsing it (unless it
        is ``PARSE_WHOLE``).

        Raises FileChangedError, writing nothing, when the file on disk is no longer the
        one this object has been appending to.
        """
        if self._repair_needed:
            self._repair()
        assert self._lock is not None
        header = self._lock.header
        current = self.check_unchanged()  # (None: we are creating the file)
        temp_path = _temp_path(self.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)  # (left by a failed compaction of ours: we hold the lock)
        _write_new(temp_path, data, like=current)  # (removes the file if it fails)
        # From here until the descriptor is on the new file, _switch describes the switch, so
        # that _repair() finishes it, or undoes it, from what is on disk, whichever bytecode an
        # exception (Ctrl-C) interrupts: the next write then goes to the file at the path,
        # never to the replaced one, and the new file's length and checksum are ours.
        self._switch = (temp_path, len(data), zlib.crc32(data))
        self._repair_needed = True
        try:
            new = os.stat(temp_path)
            # Say what is coming before the rename: killed after it, the next writer finds
            # the new file named here and completes the header (docs/design.md).
            header[NEXT_CONSISTENT_SIZE] = len(data) if consistent_size is None else consistent_size
            header[NEXT_SNAPSHOT_SIZE] = len(data) if snapshot_size is None else snapshot_size
            header[NEXT_DEVICE], header[NEXT_INODE] = _masked((new.st_dev, new.st_ino))
            add(header, CHANGES)
            if _IS_WINDOWS:  # Windows cannot rename over an open file
                self._close_descriptor()
            _replace(temp_path, self.path)
        except BaseException:  # failed (nothing renamed), or interrupted before or after it
            with contextlib.suppress(OSError):  # (if it fails, the next write retries it)
                self._repair()
            raise
        self._repair()  # the header completed, the descriptor on the new file
        self._sync_directory()

    def _finish_switch(self) -> None:
        """Settle an interrupted replace(): take the new file if the rename happened (the
        temporary file is gone: only the rename removes it while _switch is set), else keep
        the old file and remove the temporary one. Either way the header says which."""
        assert self._switch is not None and self._lock is not None
        temp_path, size, checksum = self._switch
        header = self._lock.header
        try:
            os.lstat(temp_path)
        except FileNotFoundError:  # renamed: the file at the path is the new one
            _finish_replacement(header, self.path)  # (idempotent: it clears NEXT_*)
            add(header, CHANGES)
            self._seen_changes = header[CHANGES]
            self._seen_replacements = header[REPLACEMENTS]
            self._close_descriptor()  # (the replaced file's; _repair() opens the new one)
            self.size = size
            self._checksum = checksum
            self._last_data = None
            self._newline_owed = self._cut_owed = False
            self._directory_unsynced = True
            self._switch = None
        else:
            header[NEXT_INODE] = header[NEXT_DEVICE] = 0
            self._switch = None  # (first: if the unlink is interrupted, a leftover is harmless)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path)

    def _sync_directory(self) -> None:
        _sync_directory(self.path)
        self._directory_unsynced = False

    def _reopen(self) -> None:
        fd = _open_regular(self.path, os.O_RDWR | os.O_APPEND)
        status = os.fstat(fd)
        # The descriptor is stored last: whenever _fd is set, so is the identity of its file.
        # (An exception before it leaks the descriptor; the next _repair() opens another.)
        self._remember_identity(status)
        self._fd = fd

    def _remember_identity(self, status: os.stat_result) -> None:
        self._identity = (status.st_dev, status.st_ino)
        self._status = status

    def check_unchanged(self) -> os.stat_result | None:
        """Raise FileChangedError if the path no longer holds exactly what we wrote.

        Returns the file's status (owner, mode), or None before the file was first written.
        """
        if self._identity is None:
            return None
        try:
            fd = _open_regular(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise FileChangedError(f"{self.path} was deleted while the state was open") from None
        except NotRegularFileError as error:
            raise FileChangedError(
                f"{self.path} was replaced by {error.kind} while the state was open"
            ) from None
        try:
            status = os.fstat(fd)
            size, checksum = _size_and_checksum(fd)
        finally:
            os.close(fd)
        if (status.st_dev, status.st_ino) != self._identity and not _IS_WINDOWS:
            raise FileChangedError(f"{self.path} was replaced by another file while open")
        if size != self.size or checksum != self._checksum:
            raise FileChangedError(f"{self.path} was rewritten by someone else while open")
        if self._named != self.path and not _IS_WINDOWS:
            self._check_the_named_path()
        return status

    def _check_the_named_path(self) -> None:
        """The path the program named (through a link) must still lead to the file: an editor
        that saves by replacing (``sed -i``) puts a file of its own in the link's place."""
        try:
            status = os.stat(self._named)
            leads_here = (status.st_dev, status.st_ino) == self._identity
        except OSError:
            leads_here = False
        if not leads_here:
            raise FileChangedError(
                f"{self._named}, by which this state was opened, no longer leads to "
                f"{self.path} (an editor replaced the link with a file of its own?)",
                theirs=self._named,
            )

    # -- others' writes --------------------------------------------------------------------

    def catch_up(self) -> CatchUp | None:
        """What other processes wrote since this one last looked (None: nothing), taken in:
        the caller holds the write lock and applies the result (see ``CatchUp``).

        A torn last line (a writer killed while appending) is cut off; a file replaced
        outside the protocol raises FileChangedError.
        """
        assert self._lock is not None
        header = self._lock.header
        _finish_replacement(header, self.path)
        old_records = b""
        replaced = None
        consistent = snapshot_size = 0
        if (header[DEVICE], header[INODE]) != _masked(self._identity or (0, 0)):
            count = (header[REPLACEMENTS] - self._seen_replacements) & _MASK
            old_records = self._complete_records(cut=False)
            replaced = self._adopt_new_file(header)
            if count == 1 and header[CONSISTENT_SIZE] <= len(replaced):
                consistent = header[CONSISTENT_SIZE]
                snapshot_size = min(header[SNAPSHOT_SIZE], consistent)
            else:
                consistent = -1
            self.size = max(consistent, 0)
            self._checksum = zlib.crc32(replaced[: self.size])
        records = b"" if consistent < 0 else self._complete_records(cut=True)
        self._note_counters()
        if not old_records and replaced is None and not records:
            return None
        return CatchUp(old_records, replaced, consistent, snapshot_size, records)

    def _complete_records(self, *, cut: bool) -> bytes:
        """The complete lines past ``size``, taken as ours; with ``cut``, a torn last line is
        cut off the file (we hold the write lock: nobody is writing it)."""
        end = os.lseek(self._fd, 0, os.SEEK_END)
        if end == self.size:
            return b""
        if end < self.size:
            raise FileChangedError(f"{self.path} was rewritten by someone else while open")
        data = _read_at(self._fd, end - self.size, self.size)
        complete = data[: data.rfind(b"\n") + 1]
        if cut and len(complete) < len(data):
            os.ftruncate(self._fd, self.size + len(complete))
        self._cut_owed = False  # (a cut we owed: the bytes past size are others' or gone)
        if complete:  # (our last record is no longer the file's end: never take it back)
            self._last_data = self._last_prefixed = None
        self._newline_owed = self._newline_owed and not complete
        self._repair_needed = self._inherited or self._newline_owed
        self.size += len(complete)
        self._checksum = zlib.crc32(complete, self._checksum)
        return complete

    def _adopt_new_file(self, header: memoryview) -> bytes:
        """Open the file another process put at the path; its bytes."""
        fd = _open_regular(self.path, os.O_RDWR | os.O_APPEND)
        try:
            status = os.fstat(fd)
            if _masked((status.st_dev, status.st_ino)) != (header[DEVICE], header[INODE]):
                raise FileChangedError(f"{self.path} was replaced by another file while open")
            raw = _read_all(fd)
        except BaseException:
            os.close(fd)
            raise
        self._close_descriptor()
        self._fd = fd
        self._identity, self._status = (status.st_dev, status.st_ino), status
        self._newline_owed = False
        self._last_data = self._last_prefixed = None  # (ours are in the file it replaced)
        return raw

    def adopt(self, good_size: int, *, newline_owed: bool, raw: bytes) -> None:
        """After ``catch_up`` gave a file to parse whole (``consistent`` -1): its good part is
        ``raw[:good_size]``; a torn tail is cut off now (we hold the write lock)."""
        if good_size < len(raw):
            os.ftruncate(self._fd, good_size)
        self.size = good_size
        self._checksum = zlib.crc32(raw[:good_size])
        self._newline_owed = newline_owed
        self._repair_needed = self._inherited or newline_owed

    def hand_over(self) -> None:
        """Let a waiting command have the write lock, and take it back once it is done (the
        caller holds the state's lock, then calls ``catch_up``)."""
        lock = self._lock
        if lock is None or self._inherited or self._closed_because is not None:
            return
        served = lock.header[REQUESTS]
        lock.write_unlock()
        try:
            lock.acquire(QUEUE)  # the command holds it until it is done (or dead)
        finally:
            try:
                lock.write_lock()
            finally:
                lock.release(QUEUE)
        lock.header[WRITER_PID] = os.getpid()
        self._served = served

    def handover_wanted(self) -> bool:
        lock = self._lock
        return lock is not None and lock.header[REQUESTS] != self._served

    # -- keeping our version beside someone else's -----------------------------------------

    def save_conflict_copy(self, data: bytes) -> str:
        """Save ``data`` beside the file as a new file, synced; return its path.

        The name is ``<name>.conflict-<time>-<pid>``, with ``-2``, ``-3``, ... added when
        that name is taken: a copy never fails for its name. It gets the state file's owner,
        group and mode (it holds the same data).
        """
        like = self._status
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                like = os.fstat(self._fd)
        directory, name = os.path.split(self.path)
        first = f".conflict-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        added, number = first, 1
        while True:
            copy = os.path.join(directory, derived_name(directory, name, len(added)) + added)
            try:
                _write_new(copy, data, like=like)
            except FileExistsError:  # (a second conflict in the same second, say)
                number += 1
                added = f"{first}-{number}"
                continue
            _sync_directory(copy)
            return copy

    # -- closing -------------------------------------------------------------------------

    def _close_descriptor(self) -> None:
        fd = self._fd
        if fd >= 0:
            # Forgotten before it is closed, with no call in between: an exception there
            # could only leak it, where the other order could close it twice (the second time,
            # perhaps, another file opened since under the same number).
            with contextlib.suppress(OSError):
                self._fd = -1
                os.close(fd)

    def compacts_at_close(self) -> bool:
        """Whether closing the state folds the journal in (a program's file: yes)."""
        return True

    def close(self) -> None:
        """Close the file and release the locks; safe to call twice. The last process to
        let go deletes the lock file (where the platform allows).

        In a forked child only the child's descriptors are closed: the locks are shared with
        the parent across fork, and unlocking them here would unlock them for the parent.
        """
        _OPEN_FILES.discard(self)
        _HANDOVER.unwatch(self)
        if _OWNERS.get(self.path, _dead)() is self:
            del _OWNERS[self.path]
        self._close_descriptor()
        lock, self._lock = self._lock, None
        if lock is None:
            return
        if self._inherited:
            lock.close(unlock=False)
            return
        try:
            if _alone_with_the_write_lock(lock):
                lock.remove()
        finally:
            lock.close()

    def set_owner(
        self, on_handover: Callable[[], object], on_taken_over: Callable[[str], object]
    ) -> None:
        """Who to call when a command waits for the file, and when this process opens the
        file again (weak references, so that a dropped state lets go of its file)."""
        self.on_handover = on_handover
        self.on_taken_over = on_taken_over

    def take_over(self, reason: str) -> None:
        """This process opened the same file again: close this one (see docs/design.md)."""
        callback = self.on_taken_over
        if callback is not None:
            callback(reason)  # the owner closes itself, and this file with it
        self._closed_because = reason
        self._repair_needed = True
        self.close()


class SharedStateFile(StateFile):
    """A state file held in shared mode: the holder lock shared, the write lock per operation
    (``begin_operation`` and ``end_operation``), and every write announced in the header."""

    def _before_locking(self) -> None:
        kind = network_file_system(self.path)
        if kind is not None:
            raise PersistedStateError(
                f"{self.shown_path} is on a network file system ({kind}): shared mode needs "
                "the locks and the lock file's counters of one machine, which a network file "
                "system does not share between machines. Keep the state on a local disk"
            )
        super()._before_locking()

    def _after_locking(self) -> None:
        _OWNERS[self.path] = weakref.ref(self)  # (no handover: the write lock is not kept)

    def _take_locks(self, timeout: float) -> locking.LockFile:
        """The lock file, holding the holder lock shared and (for the open) the write lock."""
        try:
            lock = self._open_holding(HOLDER, shared=False, timeout=0.0, grace=0.0)
            alone = True
        except StateLockedError:
            lock = self._open_holding(HOLDER, shared=True, timeout=timeout, grace=SHARED_OPEN_GRACE)
            alone = False
        try:
            lock.take_writer()  # (the open is an operation: SharedCore ends it)
            self._in_operation = True
            if alone:
                _reset_header(lock.header)
                lock.header[HOLDER_PID] = os.getpid()
                lock.share(HOLDER)
            elif lock.header[MAGIC] != MAGIC_VALUE:
                _reset_header(lock.header)
        except BaseException:
            lock.held[WRITER] = False
            self._in_operation = False
            lock.close()
            raise
        return lock

    def _others_hold_the_file(self) -> bool:
        assert self._lock is not None
        return not self._lock.alone(HOLDER)

    _in_operation = False

    def begin_operation(self) -> bool:
        """Take the write lock; whether others wrote since we last looked (``catch_up``)."""
        lock = self._lock
        if lock is None:
            return False
        lock.take_writer()
        self._in_operation = True
        return lock.header[CHANGES] != self._seen_changes

    def end_operation(self) -> None:
        if self._in_operation:
            self._in_operation = False
            if self._lock is not None:
                self._lock.drop_writer()

    def close(self) -> None:
        if self._in_operation and self._lock is not None:
            self._lock.held[WRITER] = False  # (taken without bookkeeping: let close see it)
        self._in_operation = False
        super().close()

    def unchanged(self) -> bool:
        """Whether no other process has begun a write since we last looked (one memory read:
        a read that finds this may go on without the write lock, see docs/design.md)."""
        lock = self._lock
        return lock is None or lock.header[CHANGES] == self._seen_changes

    def append(self, data: bytes) -> None:
        assert self._lock is not None
        header = self._lock.header
        header[CHANGES] = (header[CHANGES] + 1) & _MASK  # (before: a writer killed half-way
        try:  # has moved it too)
            StateFile.append(self, data)
        finally:
            header[CHANGES] = self._seen_changes = (header[CHANGES] + 1) & _MASK


class CommandStateFile(SharedStateFile):
    """A state file changed by a command (``persistedstate set``): it never holds the file as
    a program does; it asks for the write lock (a default-mode program hands it over) and
    holds it until it is closed."""

    def _before_locking(self) -> None:
        owner = _OWNERS.get(self.path, _dead)()
        if owner is not None and not owner._inherited:
            raise PersistedStateError(
                f"{self.shown_path} is open in this very process: change it through that "
                "state object (a command cannot take the file from its own process)"
            )

    def _after_locking(self) -> None:
        pass

    def _take_locks(self, timeout: float) -> locking.LockFile:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            lock = locking.LockFile(lock_path(self.path))
            try:
                if not lock.acquire(QUEUE, timeout=_left(deadline)):
                    raise StateBusyError(self.shown_path, lock.holder_pid())
                add(lock.header, REQUESTS)  # (only commands write it, one at a time: QUEUE)
                if not lock.acquire(WRITER, timeout=_left(deadline)):
                    raise StateBusyError(self.shown_path, lock.holder_pid())
                if lock.is_current():
                    if lock.header[MAGIC] != MAGIC_VALUE:
                        _reset_header(lock.header)
                    return lock
            except BaseException:
                lock.close()
                raise
            lock.close()

    def _others_hold_the_file(self) -> bool:
        assert self._lock is not None
        return not self._lock.alone(HOLDER)

    def compacts_at_close(self) -> bool:
        """Not while a program has the file open: that program compacts it in its time (or
        when it closes), and the command's compaction would stall it meanwhile (docs/design.md,
        "Handing the file over")."""
        return not self._others_hold_the_file()

    def begin_operation(self) -> bool:
        return False  # (the write lock is held from open to close)

    def unchanged(self) -> bool:
        return True

    def end_operation(self) -> None:
        pass


# Where Linux lists the mounted file systems, and the types that are network file systems.
MOUNTINFO = "/proc/self/mountinfo"
NETWORK_FILE_SYSTEMS = frozenset(
    [
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "ceph",
        "glusterfs",
        "afs",
        "lustre",
        "gpfs",
        "beegfs",
    ]
)


def network_file_system(path: str) -> str | None:
    """The type of the network file system holding ``path`` (nfs, cifs, sshfs, ...), or None
    when it is local or the platform does not say (only Linux does: ``MOUNTINFO``)."""
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as mounts:
            entries = mounts.read().splitlines()
    except OSError:
        return None
    directory = os.path.dirname(os.path.realpath(path))
    best, kind = "", ""
    for entry in entries:
        # "36 35 98:0 /root /mnt/point rw,noatime master:1 - nfs4 server:/export rw,..."
        fields = entry.split(" ")
        if "-" not in fields[6:] or len(fields) < 5:
            continue
        point = _unescape_mount(fields[4])
        inside = directory == point or directory.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[fields.index("-", 6) + 1]
    base = kind.split(".", 1)[1] if kind.startswith("fuse.") else kind
    if kind in NETWORK_FILE_SYSTEMS or base in NETWORK_FILE_SYSTEMS or base in _NETWORK_FUSE:
        return kind
    return None


_NETWORK_FUSE = frozenset(["sshfs", "s3fs", "rclone", "gcsfuse", "glusterfs", "cephfs"])


def _unescape_mount(text: str) -> str:
    """A mount point as mountinfo writes it: a space is ``\\040``."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), text)


def _holding_mode(lock: locking.LockFile, shared: bool) -> str:
    """How the others hold the holder lock we were refused: "default" (one program, alone),
    "shared", or "" (the same mode as ours: a second run of a default-mode job)."""
    if shared:
        return "default"
    if lock.acquire(HOLDER, shared=True, timeout=0):
        lock.release(HOLDER)
        return "shared"
    return ""


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _masked(identity: tuple[int, int]) -> tuple[int, int]:
    return identity[0] & _MASK, identity[1] & _MASK


def _reset_header(header: memoryview) -> None:
    """A header nobody else uses (a new lock file, or one a crash left): all zeros, and ours."""
    for field in range(len(header)):
        header[field] = 0
    header[MAGIC] = MAGIC_VALUE


def _set_identity(
    header: memoryview, identity: tuple[int, int], consistent: int, snapshot: int
) -> None:
    header[DEVICE], header[INODE] = _masked(identity)
    header[CONSISTENT_SIZE], header[SNAPSHOT_SIZE] = consistent, snapshot


def _finish_replacement(header: memoryview, path: str) -> None:
    """Complete the header after a rename, ours or a killed compactor's (``NEXT_*`` set): if
    the path names the new file, it is the current one; else the rename never happened."""
    if not header[NEXT_INODE]:
        return
    try:
        status = os.stat(path)
        renamed = _masked((status.st_dev, status.st_ino)) == (
            header[NEXT_DEVICE],
            header[NEXT_INODE],
        )
    except OSError:
        renamed = False
    if renamed:
        header[DEVICE], header[INODE] = header[NEXT_DEVICE], header[NEXT_INODE]
        header[CONSISTENT_SIZE] = header[NEXT_CONSISTENT_SIZE]
        header[SNAPSHOT_SIZE] = header[NEXT_SNAPSHOT_SIZE]
        add(header, REPLACEMENTS)
    else:
        _remove_stale_temp_files(path)
    for field in (NEXT_DEVICE, NEXT_INODE, NEXT_CONSISTENT_SIZE, NEXT_SNAPSHOT_SIZE):
        header[field] = 0


def _alone_with_the_write_lock(lock: locking.LockFile) -> bool:
    """Whether no other process has the file open and we hold the write lock (taking the
    holder lock exclusively and the write lock, without waiting, where needed)."""
    if lock.held.get(HOLDER) is not False and not lock.acquire(HOLDER, timeout=0):
        return False
    return WRITER in lock.held or lock.acquire(WRITER, timeout=0)


def _dead() -> None:
    return None


# Every open StateFile, so that a forked child can mark them inherited.
_OPEN_FILES: weakref.WeakSet[StateFile] = weakref.WeakSet()
# The program (default or shared mode) of this process holding each path, to take it over.
_OWNERS: dict[str, Callable[[], StateFile | None]] = {}


def _take_over_in_this_process(path: str) -> None:
    """Close the state that this process already has open on ``path`` (see take_over)."""
    owner = _OWNERS.get(path, _dead)()
    if owner is None or owner._inherited:
        return
    owner.take_over(
        f"{owner.shown_path}: this state was closed because the same file was opened again "
        "in this process; use the newer state object"
    )


def _mark_inherited() -> None:
    """In a forked child: every open state file is the parent's (see StateFile._repair)."""
    for file in list(_OPEN_FILES):
        file._inherited = True
        file._repair_needed = True  # (the flag append() checks first: no cost until a write)
        if file._lock is not None:
            file._lock.freeze()
        if isinstance(file, SharedStateFile):
            file._note_counters()  # (so no operation of the child catches up)


class _Handover:
    """The handover thread: while this process has default-mode states open, it looks every
    HANDOVER_SECONDS for a command waiting for one of them, and calls the state's
    ``on_handover`` (docs/design.md, "Handing the file over")."""

    def __init__(self) -> None:
        self.files: weakref.WeakSet[StateFile] = weakref.WeakSet()
        self.guard = threading.Lock()
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def watch(self, file: StateFile) -> None:
        with self.guard:
            self.files.add(file)
            self._start()

    def unwatch(self, file: StateFile) -> None:
        self.files.discard(file)

    def _start(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.stopping.clear()
            self.thread = threading.Thread(
                target=self._run, name="persistedstate-handover", daemon=True
            )
            self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(HANDOVER_SECONDS):
            files = list(self.files)
            if not files:
                with self.guard:
                    if not self.files:
                        self.thread = None
                        return
            for file in files:
                if file.handover_wanted() and file.on_handover is not None:
                    try:
                        file.on_handover()
                    except Exception:  # (the owner logged and closed itself)
                        log.debug("handover of %s failed", file.path, exc_info=True)
            del files

    def stop(self) -> None:
        """Before fork: no thread may hold a lock in the child, and the child is not a fork
        of a multi-threaded process. (The thread may take ``guard`` on its way out: it is
        taken only once the thread has ended.)"""
        thread = self.thread
        if thread is not None:
            self.stopping.set()
            thread.join()
        self.guard.acquire()
        self.thread = None

    def resume(self) -> None:
        try:
            if self.files:
                self._start()
        finally:
            self.guard.release()

    def forget(self) -> None:
        """In a forked child: the parent hands its files over, not the child."""
        self.files = weakref.WeakSet()
        self.thread = None
        self.guard = threading.Lock()


_HANDOVER = _Handover()


def _after_fork_in_child() -> None:
    _HANDOVER.forget()
    _mark_inherited()


if hasattr(os, "register_at_fork"):  # (not on Windows, which has no fork)
    os.register_at_fork(
        before=_HANDOVER.stop,
        after_in_parent=_HANDOVER.resume,
        after_in_child=_after_fork_in_child,
    )


# -- regular files only ------------------------------------------------------------------


class NotRegularFileError(PersistedStateError):
    """The path names a directory, a FIFO, a device or a socket, not a regular file."""

    def __init__(self, path: str, kind: str) -> None:
        self.path = path
        self.kind = kind
        super().__init__(
            f"{path} is {kind}, not a regular file: a state is kept in a regular file (or a "
            "symbolic link to one). Give the path of a state file; nothing was changed"
        )


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((kind for test, kind in _KINDS if test(mode)), "a special file")


def _refuse_unless_regular(path: str) -> None:
    """Raise NotRegularFileError if ``path`` exists and is not a regular file (or a link to one)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(path, _kind(mode))


def _open_regular(path: str, flags: int) -> int:
    """Open an existing regular file (or a link to one); raise NotRegularFileError otherwise.

    The check is made on the open descriptor, so nothing can swap the file between the check
    and the open; the open itself does not wait (a FIFO's open would wait for a writer).
    """
    try:
        fd = os.open(path, flags | _O_NO_WAIT | _O_BINARY)
    except FileNotFoundError:
        raise
    except OSError:  # (a directory, a socket: say what it is, if that is what failed)
        _refuse_unless_regular(path)
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, _kind(mode))
        _wait_again(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _size_and_checksum(fd: int) -> tuple[int, int]:
    """The length and CRC-32 of the file, read in pieces: compaction checks a journal of a
    MiB or more, and holding it whole would raise the process's peak memory by that much
    (the README's example: a quarter of its peak, for nothing kept)."""
    size = checksum = 0
    while chunk := os.read(fd, 64 << 10):  # (under glibc's mmap threshold: reused, not mapped)
        size += len(chunk)
        checksum = zlib.crc32(chunk, checksum)
    return size, checksum


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


# -- platform-specific pieces ------------------------------------------------------------

_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation

# (Tested as sys.platform itself, not _IS_WINDOWS: `mypy --platform win32`, run by
# `make types`, checks each platform's branch only then.)
if sys.platform == "win32":  # no FIFOs to wait on, no owners to keep (a new file takes the
    _O_NO_WAIT = 0  # folder's ACL), no os.pread

    def _wait_again(fd: int) -> None:
        pass

    def _read_at(fd: int, size: int, offset: int) -> bytes:
        """``size`` bytes from ``offset`` (moving the descriptor's offset: ours only)."""
        os.lseek(fd, offset, os.SEEK_SET)
        chunks, done = [], 0
        while done < size and (chunk := os.read(fd, size - done)):
            chunks.append(chunk)
            done += len(chunk)
        return b"".join(chunks)

    def _keep_owner_and_mode(fd: int, like: os.stat_result) -> None:
        pass


else:
    _O_NO_WAIT = os.O_NONBLOCK  # opening a FIFO does not wait for the other end

    def _wait_again(fd: int) -> None:
        os.set_blocking(fd, True)

    _read_at = os.pread

    def _keep_owner_and_mode(fd: int, like: os.stat_result) -> None:
        """Give the new file ``like``'s permission bits, owner and group, as far as allowed.

        Only root may give a file to another owner; a member of the group may set the group.
        What is not allowed is left as it is, without failing.
        """
        with contextlib.suppress(OSError):
            os.fchmod(fd, stat.S_IMODE(like.st_mode) & 0o777)
        try:
            os.fchown(fd, like.st_uid, like.st_gid)
        except OSError:
            with contextlib.suppress(OSError):
                os.fchown(fd, -1, like.st_gid)


# Room a shortened name leaves for what is added to it: the longest is a conflict copy's
# ".conflict-YYYYmmdd-HHMMSS-<pid>-<number>", under 64 bytes for any pid and number we reach.
_DERIVED_ROOM = 64
_DIGEST_BYTES = 8  # 16 hex digits: two long names that differ collide once in 2**64


def name_max(directory: str) -> int:
    """The longest file name, in bytes, that ``directory``'s file system takes (255 where the
    platform does not say)."""
    if sys.platform == "win32":  # (no pathconf; NTFS takes 255 UTF-16 units, and a name has
        return 255  # no more of them than UTF-8 bytes)
    try:
        longest = os.pathconf(directory or ".", "PC_NAME_MAX")
    except (OSError, ValueError):  # (a file system that does not say)
        return 255
    return longest if longest > 0 else 255  # (-1: no limit it will name)


def derived_name(directory: str, name: str, added: int) -> str:
    """What to put in place of ``name`` in a file name of ``directory`` made of ``name`` and
    ``added`` more bytes (the lock file, a conflict copy, a temporary file; docs/design.md,
    "Names of the files beside the state"): ``name`` itself when the whole fits, else its
    shortened form, which depends on ``name`` and the file system alone, so every process
    derives the same."""
    longest = name_max(directory)
    if len(os.fsencode(name)) + added <= longest:
        return name
    return _shortened(name, longest)


def _shortened(name: str, longest: int) -> str:
    """``name`` cut to leave ``_DERIVED_ROOM`` bytes of a name ``longest`` bytes long, with a
    digest of the whole name, so that names with the same beginning stay apart."""
    import hashlib  # (only for names this long: it adds milliseconds to an import)

    encoded = os.fsencode(name)
    digest = hashlib.blake2b(encoded, digest_size=_DIGEST_BYTES).hexdigest()
    room = longest - _DERIVED_ROOM - len(digest) - 1
    while name and len(os.fsencode(name)) > room:  # (whole characters: the name stays text)
        name = name[:-1]
    return f"{name}~{digest}"


def lock_path(path: str) -> str:
    """The lock file of the state file ``path`` (absolute)."""
    directory, name = os.path.split(path)
    return os.path.join(directory, derived_name(directory, name, len(".lock")) + ".lock")


def _temp_path(path: str) -> str:
    directory, name = os.path.split(path)
    pid = os.getpid()
    stem = derived_name(directory, name, len(f"..{pid}.tmp"))
    return os.path.join(directory, f".{stem}.{pid}.tmp")


def _remove_stale_temp_files(path: str) -> None:
    """Delete temporary files of compactions that a crash interrupted (we hold the lock)."""
    directory, name = os.path.split(path)
    # (whether a leftover's name was shortened may depend on the width of its process's pid)
    prefixes = {f".{derived_name(directory, name, len(f'..{pid}.tmp'))}." for pid in (0, 1 << 64)}
    try:
        leftovers = [
            entry
            for entry in os.listdir(directory or ".")
            for prefix in prefixes
            if entry.startswith(prefix)
            and entry.endswith(".tmp")
            and entry[len(prefix) : -len(".tmp")].isdigit()
        ]
    except OSError:
        return
    for entry in leftovers:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, entry))
            log.debug("%s: removed %s, left by an interrupted compaction", path, entry)


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):  # rare for regular files, but allowed by POSIX
        written += os.write(fd, data[written:])


def _write_new(path: str, data: bytes, *, like: os.stat_result | None) -> None:
    """Create ``path`` (it must not exist) holding ``data``, synced to stable storage.

    Never opens an existing file (a FIFO left at a temporary name would make the open wait).
    With ``like``, the new file gets that file's owner, group and mode (as far as allowed);
    without, the mode of any new file (0o666 less the umask). A failed write leaves no file.
    """
    mode = 0o666 if like is None else 0o600  # (private until it has the mode of ``like``)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, mode)
    try:
        try:
            _write_all(fd, data)
            if like is not None:
                _keep_owner_and_mode(fd, like)
            _sync_file(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _sync_file(fd: int) -> None:
    if sys.platform == "darwin":  # fsync on macOS does not reach the platter
        import fcntl

        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
    else:
        os.fsync(fd)


def _replace(source: str, target: str) -> None:
    os.replace(source, target)


def _sync_directory(path: str) -> None:
    """Make a rename durable: POSIX needs the directory synced; Windows cannot open one."""
    if _IS_WINDOWS:
        return
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)  # (F_FULLFSYNC after the file's own sync already flushed the drive)
    finally:
        os.close(fd)
