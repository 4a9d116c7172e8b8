"""The state file on disk: the writer lock, reading, appending records, atomic replacement.

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
- One writer at a time: a lock file beside the state file (``<name>.lock``) is held for the
  life of an open state. Renames of the state file do not touch it.
- Someone else's file is never overwritten: before each append the file must still have the
  length we left it with, and before a replacement the same identity, length and checksum.
- Only regular files (or links to one) are read or written: a FIFO, a device or a directory
  is refused before anything is created, without waiting on it.
- Every rewrite keeps the file's owner, group and permission bits, as far as the platform
  allows this process to set them.

A process forked while a state file is open inherits it: the child may not write it (its
appends would interleave with the parent's), and must not release the parent's lock.

Platform differences live in the small functions at the bottom.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
import time
import weakref
import zlib
from typing import TypeAlias

import filelock

from .errors import PersistedStateError, StateLockedError

log = logging.getLogger("persistedstate")

_IS_WINDOWS = sys.platform == "win32"

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
    """Someone else replaced or rewrote the state file while we held it open."""


class StateFile:
    """An open state file that this process may write."""

    def __init__(self, path: str, *, fsync: bool, lock_timeout: float) -> None:
        path = path_text(path)
        _refuse_unless_regular(path)  # (before the lock file is created beside it)
        # Work on the file a symbolic link points to, so that a rename replaces the file
        # and not the link, and two links to one file share one lock. The path is absolute
        # from here on: a later os.chdir() changes nothing.
        self.path = os.path.realpath(path)
        self.fsync = fsync
        self.size = 0  # bytes of the file that hold good records
        self._checksum = 0  # CRC-32 of those bytes, to notice edits that keep the length
        # The bytes of the last append that returned, while they are the end of the file
        # (kept alive here, so no other bytes object can have their identity).
        self._last_data: bytes | None = None
        # An append that raised took its record back, and has not tried to cut it off yet
        # (an exception interrupted its except clause): take_back() cuts it.
        self._cut_owed = False
        # A replace() between its temporary file and its last bookkeeping: (temporary path,
        # the new file's length and checksum). _repair() finishes it, or undoes it, from
        # what is on disk.
        self._switch: tuple[str, int, int] | None = None
        self._fd = -1
        self._identity: tuple[int, int] | None = None
        self._status: os.stat_result | None = None  # the file's, when last opened
        # Work owed before the next write: cut bytes after self.size (a torn tail found at
        # open, a failed append), add the final newline a 26.1 file lacks, reopen the file,
        # refuse to write a file inherited across fork. append() checks this flag first.
        self._repair_needed = False
        self._newline_owed = False
        self._inherited = False  # this process is a fork of the one that opened the file
        self._directory_unsynced = False  # a rename whose directory sync failed
        self._lock = filelock.FileLock(self.path + ".lock", thread_local=False)
        try:
            self._lock.acquire(timeout=max(lock_timeout, 0.0))
        except filelock.Timeout:
            raise StateLockedError(path, _lock_holder_pid(self.path + ".lock")) from None
        _OPEN_FILES.add(self)
        _give_lock_file_to_state_owner(self.path)
        _remove_stale_temp_files(self.path)

    # -- opening -------------------------------------------------------------------------

    def read(self) -> bytes | None:
        """Open the file for appending and return its bytes (None if it does not exist)."""
        try:
            self._fd = _open_regular(self.path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return None
        raw = _read_all(self._fd)
        self.size = len(raw)
        self._checksum = zlib.crc32(raw)
        self._remember_identity(os.fstat(self._fd))
        return raw

    def keep_only(self, kept: bytes, *, newline_owed: bool) -> None:
        """Take ``kept`` (the start of what read() gave) as the good part of the file.

        Opening writes nothing: a torn tail after it is cut off, and a missing final newline
        added, just before the next write.
        """
        if len(kept) < self.size or newline_owed:
            self._repair_needed = True
        self._newline_owed = newline_owed
        self.size = len(kept)
        self._checksum = zlib.crc32(kept)

    # -- appending -----------------------------------------------------------------------

    def append(self, data: bytes) -> None:
        """Write ``data`` at the end of the file before returning; all or nothing.

        If it returns, the record is in the file and counted. If it raises (a failed write,
        or an exception from a signal handler), the record is not in the file: it is cut off
        at once, or, if that fails or is interrupted, before the next write (``take_back``
        cuts it at once).
        """
        if self._repair_needed:
            self._repair()
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
            self._repair_needed = True  # (plain stores first: the cut is owed)
            self._cut_owed = True
            with contextlib.suppress(OSError):  # (if it fails, the next write retries it)
                self._repair()
            self._cut_owed = False
            raise
        self.size += length
        self._checksum = checksum
        self._last_data = data

    def landed(self, data: bytes) -> bool:
        """Whether ``append(data)`` returned (its record is in the file): for a caller an
        exception interrupted around it. Nothing was appended since."""
        return self._last_data is data

    def take_back(self, data: bytes) -> None:
        """Cut off ``data``, the record of the last append, wherever an exception left it:
        counted (the append returned), or taken back by the append but not cut yet.

        For a caller whose change an exception interrupted before it reached memory: the file
        must not keep it. Calling it again is harmless, so an interrupted call is finished by
        the next (the caller settles before it appends again). If the cut fails (OSError), it
        is owed to the next write, like other repairs owed (a torn tail found at open), which
        wait for that write.
        """
        if self._last_data is data:  # it returned: its record is the last one counted
            start = self.size - len(data)
            checksum = zlib.crc32(_read_prefix(self._fd, start))  # (the checksum before it)
            self._repair_needed = True  # (plain stores first: the cut is owed from here)
            self._cut_owed = True
            self.size = start
            self._checksum = checksum
            self._last_data = None
        elif not self._cut_owed:
            return  # it wrote nothing, or cut its record off itself (or tried: then it is owed)
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self.size)
        self._cut_owed = False

    def _repair(self) -> None:
        if self._inherited:
            raise PersistedStateError(
                f"{self.path} was opened by another process, which this one was forked from: "
                "a child may read the state it inherited, but not change, compact or close "
                "it (the parent holds the file). Change it in the parent, or open it in this "
                "process once the parent has closed it"
            )
        if self._switch is not None:
            self._finish_switch()
        if self._fd < 0:
            self._reopen()
        os.ftruncate(self._fd, self.size)
        if self._newline_owed:
            # (the checksum before the write, so that an interrupted repair cuts the newline
            # off and writes it again, never twice)
            checksum = zlib.crc32(b"\n", self._checksum)
            _write_all(self._fd, b"\n")
            self.size += 1
            self._checksum = checksum
            self._newline_owed = False
        self._repair_needed = False

    # -- replacing -----------------------------------------------------------------------

    def replace(self, data: bytes) -> None:
        """Atomically make ``data`` the whole file (synced), then append after it.

        Raises FileChangedError, writing nothing, when the file on disk is no longer the
        one this object has been appending to.
        """
        if self._repair_needed:
            self._repair()
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
            if _IS_WINDOWS:  # Windows cannot rename over an open file
                self._close_descriptor()
            _replace(temp_path, self.path)
        except BaseException:  # failed (nothing renamed), or interrupted before or after it
            with contextlib.suppress(OSError):  # (if it fails, the next write retries it)
                self._repair()
            raise
        self._repair()  # the descriptor goes to the new file
        self._sync_directory()

    def _finish_switch(self) -> None:
        """Settle an interrupted replace(): take the new file if the rename happened (the
        temporary file is gone: only the rename removes it while _switch is set), else keep
        the old file and remove the temporary one."""
        assert self._switch is not None
        temp_path, size, checksum = self._switch
        try:
            os.lstat(temp_path)
        except FileNotFoundError:  # renamed: the file at the path is the new one
            self._close_descriptor()  # (the replaced file's; _repair() opens the new one)
            self.size = size
            self._checksum = checksum
            self._last_data = None
            self._newline_owed = False
            self._directory_unsynced = True
            self._switch = None
        else:
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
            current = _read_all(fd)
        finally:
            os.close(fd)
        if (status.st_dev, status.st_ino) != self._identity and not _IS_WINDOWS:
            raise FileChangedError(f"{self.path} was replaced by another file while open")
        if len(current) != self.size or zlib.crc32(current) != self._checksum:
            raise FileChangedError(f"{self.path} was rewritten by someone else while open")
        return status

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
        base = f"{self.path}.conflict-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        name, number = base, 1
        while True:
            try:
                _write_new(name, data, like=like)
            except FileExistsError:  # (a second conflict in the same second, say)
                number += 1
                name = f"{base}-{number}"
                continue
            _sync_directory(name)
            return name

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

    def close(self) -> None:
        """Close the file and release the lock; safe to call twice.

        In a forked child only the child's descriptor is closed: an flock is shared with the
        parent across fork, and unlocking it here would unlock it for the parent.
        """
        _OPEN_FILES.discard(self)
        self._close_descriptor()
        if not self._inherited and self._lock.is_locked:
            self._lock.release(force=True)


# Every open StateFile, so that a forked child can mark them inherited.
_OPEN_FILES: weakref.WeakSet[StateFile] = weakref.WeakSet()


def _mark_inherited() -> None:
    """In a forked child: every open state file is the parent's (see StateFile._repair)."""
    for file in list(_OPEN_FILES):
        file._inherited = True
        file._repair_needed = True  # (the flag append() checks first: no cost until a write)


if hasattr(os, "register_at_fork"):  # (not on Windows, which has no fork)
    os.register_at_fork(after_in_child=_mark_inherited)


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


def _read_prefix(fd: int, size: int) -> bytes:
    """The first ``size`` bytes of the file. (It moves the offset: an O_APPEND descriptor
    writes at the end wherever that is; os.pread is not on Windows.)"""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks, done = [], 0
    while done < size and (chunk := os.read(fd, min(size - done, 1 << 20))):
        chunks.append(chunk)
        done += len(chunk)
    return b"".join(chunks)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


# -- platform-specific pieces ------------------------------------------------------------

_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation

if _IS_WINDOWS:  # no FIFOs to wait on, no owners to keep (a new file takes the folder's ACL)
    _O_NO_WAIT = 0

    def _wait_again(fd: int) -> None:
        pass

    def _keep_owner_and_mode(fd: int, like: os.stat_result) -> None:
        pass

    def _give_lock_file_to_state_owner(path: str) -> None:
        pass

else:
    _O_NO_WAIT = os.O_NONBLOCK  # opening a FIFO does not wait for the other end

    def _wait_again(fd: int) -> None:
        os.set_blocking(fd, True)

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

    def _give_lock_file_to_state_owner(path: str) -> None:
        """Give ``<path>.lock`` the state file's owner and group if it has others.

        root creating the lock file (``sudo persistedstate set``) would otherwise leave the
        state's owner unable to lock their own state. Only a plain file with one link is
        changed, through a descriptor that did not follow a link: never another file.
        """
        try:
            state, lock = os.stat(path), os.stat(path + ".lock")
        except OSError:
            return
        if (lock.st_uid, lock.st_gid) == (state.st_uid, state.st_gid):
            return
        try:
            fd = os.open(path + ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return
        try:
            lock = os.fstat(fd)
            if stat.S_ISREG(lock.st_mode) and lock.st_nlink == 1:
                os.fchown(fd, state.st_uid, state.st_gid)
        except OSError:
            pass
        finally:
            os.close(fd)


def _temp_path(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{os.getpid()}.tmp")


def _remove_stale_temp_files(path: str) -> None:
    """Delete temporary files of compactions that a crash interrupted (we hold the lock)."""
    directory, name = os.path.split(path)
    prefix = f".{name}."
    try:
        leftovers = [
            entry
            for entry in os.listdir(directory or ".")
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


def _lock_holder_pid(lock_path: str) -> int | None:
    """The process holding the lock, where the platform says (Linux: /proc/locks)."""
    try:
        inode = os.stat(lock_path).st_ino
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for entry in locks:
                fields = entry.split()
                # "1: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF"
                if len(fields) > 5 and fields[5].rsplit(":", 1)[-1] == str(inode):
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return None
