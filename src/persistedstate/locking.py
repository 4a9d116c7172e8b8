"""The lock file beside a state file: three locks, and a header of counters shared in memory.

``<name>.lock`` holds three locks (docs/design.md, "Several processes"):

- ``HOLDER``: a program holds it from open to close, exclusive in the default mode and shared
  in shared mode; a second default-mode program is refused by it;
- ``WRITER``: whoever appends to or replaces the state file holds it;
- ``QUEUE``: a command holds it while it waits for, and uses, the write lock.

and, in its first ``HEADER_SIZE`` bytes, sixteen unsigned 64-bit fields (``header``) that
every process with the state open maps into memory: reading one is a memory read.

Platform differences are small subclasses of :class:`LockFile`, one chosen at import
(``LockFile`` is then that class): Linux (record locks per open file description, and a
``flock`` for the write lock, the one taken per operation), other POSIX systems (record locks
of the process) and Windows (``msvcrt.locking``, exclusive only: a shared lock is one of 64
bytes, an exclusive one all of them).
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import sys
import time
from collections.abc import Callable

HOLDER, WRITER, QUEUE = 0, 1, 2
NAMES = ("holder", "write", "queue")

# The header: native unsigned 64-bit fields at the start of the lock file (docs/design.md).
HEADER_SIZE = 128
(
    MAGIC,
    CHANGES,
    REQUESTS,
    REPLACEMENTS,
    DEVICE,
    INODE,
    CONSISTENT_SIZE,
    SNAPSHOT_SIZE,
    NEXT_DEVICE,
    NEXT_INODE,
    NEXT_CONSISTENT_SIZE,
    NEXT_SNAPSHOT_SIZE,
    WRITER_PID,
    HOLDER_PID,
) = range(14)
MAGIC_VALUE = int.from_bytes(b"PSLOCK01", "little")
_FIELD_MASK = (1 << 64) - 1

# The locked bytes lie past the header: Windows' locks are mandatory, and nobody reads there.
_OFFSET = {HOLDER: 1024, WRITER: 1026, QUEUE: 1025}
_SLOTS = 64  # Windows: a shared holder lock is one byte of these, an exclusive one all

POLL_SECONDS = 0.05  # waiting with a timeout: attempts at most this far apart (as filelock)


class LockFile:
    """An open lock file: its locks, and its header mapped into memory.

    ``acquire`` and ``release`` take and let go of one of the three locks; ``header`` is a
    ``memoryview`` of the header's fields (index it with the field names above). Closing lets
    go of every lock still held. Subclasses supply ``_try``, ``_wait`` and ``_unlock``.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_BINARY, 0o666)
        try:
            status = os.fstat(fd)
            if status.st_size < HEADER_SIZE:
                os.ftruncate(fd, HEADER_SIZE)  # (a new file, or one filelock left)
            self._map = mmap.mmap(fd, HEADER_SIZE)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.identity = (status.st_dev, status.st_ino)
        self.header = memoryview(self._map).cast("Q")
        self.held: dict[int, bool] = {}  # lock -> shared?
        # The write lock without the bookkeeping of ``held``: for a caller that keeps its own
        # (a shared-mode operation), as cheap as the platform allows.
        self.take_writer: Callable[[], object] = self.write_lock
        self.drop_writer: Callable[[], object] = self.write_unlock

    # -- locks -------------------------------------------------------------------------

    def acquire(self, lock: int, *, shared: bool = False, timeout: float | None = None) -> bool:
        """Take ``lock``; with ``timeout`` None wait as long as it takes, else try for that many
        seconds (0: once). Returns whether it was taken."""
        if timeout is None:
            self._wait(lock, shared)
        else:
            deadline = time.monotonic() + timeout
            pause = 0.001  # (a lock handed over is taken within a few ms, a busy one 50 apart)
            while not self._try(lock, shared):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(pause, left))
                pause = min(pause * 2, POLL_SECONDS)
        self.held[lock] = shared
        return True

    def release(self, lock: int) -> None:
        if self.held.pop(lock, None) is not None:
            self._unlock(lock)

    def share(self, lock: int) -> None:
        """Turn an exclusive hold of ``lock`` into a shared one (atomically where the
        platform can)."""
        if not self._try(lock, True):
            raise OSError(f"cannot share the {NAMES[lock]} lock of {self.path}")
        self.held[lock] = True

    def alone(self, lock: int) -> bool:
        """Whether no other open of the file holds ``lock`` (this one may, even shared)."""
        shared = self.held.get(lock)
        if shared is False:
            return True
        if not self._try(lock, False):
            return False
        if shared is None:
            self._unlock(lock)
        else:
            self._try(lock, True)  # back to shared (record locks convert atomically)
        return True

    def freeze(self) -> None:
        """In a forked child: the write lock becomes a no-op, the header a private copy, and
        the child's descriptor is closed, without unlocking. The child shares the parent's
        locks (one open file description, for ``flock``): taking and letting go of one would
        let go of it for the parent, and keeping the descriptor would keep the parent's locks
        after the parent is killed. The child may only read what it inherited (docs/design.md,
        "A forked child"). A grandchild finds it frozen already."""
        if self.fd < 0:
            return
        frozen = memoryview(bytearray(self.header)).cast("Q")
        self.close(unlock=False)
        self.header = frozen
        self.take_writer = self.drop_writer = _nothing

    def write_lock(self) -> None:
        """Take the write lock, waiting as long as it takes (the per-operation path)."""
        self.acquire(WRITER)

    def write_unlock(self) -> None:
        self.release(WRITER)

    def holder_pid(self) -> int | None:
        """The process holding the holder lock, as far as the platform and header say."""
        pid = self._holder_pid_from_system()
        if pid is None:
            pid = self.header[HOLDER_PID] or None
        return pid

    def _holder_pid_from_system(self) -> int | None:
        return None

    # -- the file ------------------------------------------------------------------------

    def is_current(self) -> bool:
        """Whether the path still names this file (nobody deleted it to make a new one)."""
        try:
            status = os.stat(self.path)
        except OSError:
            return False
        return (status.st_dev, status.st_ino) == self.identity

    def give_to(self, uid: int, gid: int) -> None:
        """Give the file this owner and group, as far as allowed (root opening a user's state)."""

    def remove(self) -> None:
        """Delete the file if the path still names it. The caller holds the holder lock
        exclusively and the write lock: nobody else uses it (see docs/design.md)."""
        if self.is_current():
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def close(self, *, unlock: bool = True) -> None:
        """Let go of the locks (unless ``unlock`` is false: a forked child's are its
        parent's), then of the mapping and the file. Safe to call twice."""
        if self.fd < 0:
            return
        if unlock:
            for lock in list(self.held):
                with contextlib.suppress(OSError):
                    self.release(lock)
        self.held.clear()
        self.header.release()
        self._map.close()
        fd, self.fd = self.fd, -1
        os.close(fd)

    # -- platform hooks ------------------------------------------------------------------

    def _try(self, lock: int, shared: bool) -> bool:
        raise NotImplementedError

    def _wait(self, lock: int, shared: bool) -> None:
        while not self._try(lock, shared):
            time.sleep(POLL_SECONDS)

    def _unlock(self, lock: int) -> None:
        raise NotImplementedError


def _nothing() -> None:
    pass


def add(header: memoryview, field: int, amount: int = 1) -> None:
    """Move a counter of the header (the caller holds the write lock)."""
    header[field] = (header[field] + amount) & _FIELD_MASK


if sys.platform == "win32":
    import msvcrt

    _O_BINARY = os.O_BINARY

    class _WindowsLockFile(LockFile):
        """``msvcrt.locking``: exclusive byte-range locks of a file handle. A shared holder
        lock is one free byte of 64; an exclusive one is all 64 at once."""

        def __init__(self, path: str) -> None:
            super().__init__(path)
            self._slot = -1

        def _lock_bytes(self, offset: int, count: int) -> bool:
            os.lseek(self.fd, offset, os.SEEK_SET)
            try:
                msvcrt.locking(self.fd, msvcrt.LK_NBLCK, count)
            except OSError:
                return False
            return True

        def _try(self, lock: int, shared: bool) -> bool:
            offset = _OFFSET[lock]
            if lock != HOLDER:
                return self._lock_bytes(offset, 1)
            if not shared:
                return self._lock_bytes(offset + 1, _SLOTS)
            for slot in range(_SLOTS):
                if self._lock_bytes(offset + 1 + slot, 1):
                    self._slot = slot
                    return True
            return False

        def _unlock(self, lock: int) -> None:
            offset, count = _OFFSET[lock], 1
            if lock == HOLDER:
                shared = self._slot >= 0
                offset, count = offset + 1 + max(self._slot, 0), 1 if shared else _SLOTS
                self._slot = -1
            os.lseek(self.fd, offset, os.SEEK_SET)
            msvcrt.locking(self.fd, msvcrt.LK_UNLCK, count)

        def share(self, lock: int) -> None:
            self._unlock(lock)  # (no conversion of byte-range locks on Windows)
            self.held.pop(lock, None)
            if not self.acquire(lock, shared=True, timeout=POLL_SECONDS * 4):
                raise OSError(f"cannot share the {NAMES[lock]} lock of {self.path}")

        def alone(self, lock: int) -> bool:
            if self.held.get(lock) is None:
                return super().alone(lock)
            return self.held[lock] is False  # (shared: cannot tell; say no)

        def remove(self) -> None:
            pass  # Windows cannot delete a file that another process has open

    LockFile = _WindowsLockFile  # type: ignore[misc]

else:
    import fcntl
    import stat

    _O_BINARY = 0

    class _PosixLockFile(LockFile):
        """POSIX record locks (``lockf``). They belong to the process: a process never
        conflicts with itself, and closing any descriptor of the file lets go of all of them,
        so a process opens a lock file once per state and closes it last (see storage)."""

        def _try(self, lock: int, shared: bool) -> bool:
            kind = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            try:
                fcntl.lockf(self.fd, kind | fcntl.LOCK_NB, 1, _OFFSET[lock])
            except OSError:
                return False
            return True

        def _wait(self, lock: int, shared: bool) -> None:
            fcntl.lockf(self.fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, 1, _OFFSET[lock])

        def _unlock(self, lock: int) -> None:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, _OFFSET[lock])

        def give_to(self, uid: int, gid: int) -> None:
            """Only a plain file with one link is changed, through its own descriptor."""
            try:
                status = os.fstat(self.fd)
                if stat.S_ISREG(status.st_mode) and status.st_nlink == 1:
                    os.fchown(self.fd, uid, gid)
            except OSError:
                pass

    LockFile = _PosixLockFile  # type: ignore[misc]

    if sys.platform == "linux" and hasattr(fcntl, "F_OFD_SETLK"):
        import struct

        def _record(kind: int, lock: int) -> bytes:
            # struct flock {short l_type, l_whence; off_t l_start, l_len; pid_t l_pid}, padded
            return struct.pack("hhqqi0q", kind, os.SEEK_SET, _OFFSET[lock], 1, 0)

        _REQUESTS = {
            (lock, shared): _record(fcntl.F_RDLCK if shared else fcntl.F_WRLCK, lock)
            for lock in (HOLDER, QUEUE)
            for shared in (False, True)
        }
        _RELEASES = {lock: _record(fcntl.F_UNLCK, lock) for lock in (HOLDER, QUEUE)}

        class _LinuxLockFile(_PosixLockFile):
            """Record locks of the open file description (``F_OFD_SETLK``: they conflict
            between two opens in one process and survive closing other descriptors), and a
            ``flock`` for the write lock, the cheapest lock to take and let go per operation
            (its holder is listed with its process id in /proc/locks)."""

            def __init__(self, path: str) -> None:
                super().__init__(path)
                self.take_writer = functools.partial(fcntl.flock, self.fd, fcntl.LOCK_EX)
                self.drop_writer = functools.partial(fcntl.flock, self.fd, fcntl.LOCK_UN)

            def _try(self, lock: int, shared: bool) -> bool:
                try:
                    if lock == WRITER:
                        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    else:
                        fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _REQUESTS[lock, shared])
                except OSError:
                    return False
                return True

            def _wait(self, lock: int, shared: bool) -> None:
                if lock == WRITER:
                    fcntl.flock(self.fd, fcntl.LOCK_EX)
                else:
                    fcntl.fcntl(self.fd, fcntl.F_OFD_SETLKW, _REQUESTS[lock, shared])

            def _unlock(self, lock: int) -> None:
                if lock == WRITER:
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
                else:
                    fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _RELEASES[lock])

            def write_lock(self) -> None:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
                self.held[WRITER] = False

            def write_unlock(self) -> None:
                if self.held.pop(WRITER, None) is not None:
                    fcntl.flock(self.fd, fcntl.LOCK_UN)

            def _holder_pid_from_system(self) -> int | None:
                """The process with the write lock's ``flock``, from /proc/locks: a
                default-mode program keeps it, so this names the holder."""
                inode = str(self.identity[1])
                try:
                    with open("/proc/locks", encoding="ascii", errors="replace") as locks:
                        for entry in locks:
                            # "1: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF"
                            fields = entry.split()
                            if (
                                len(fields) > 5
                                and fields[1] == "FLOCK"
                                and fields[5].rsplit(":", 1)[-1] == inode
                            ):
                                return int(fields[4])
                except (OSError, ValueError):
                    pass
                return None

        LockFile = _LinuxLockFile  # type: ignore[misc]
