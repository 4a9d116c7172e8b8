"""Fault injection: ENOSPC and EIO at every write and sync of a workload.

``persistedstate.storage.os`` is replaced by :class:`FaultyOs`, which forwards to the real
``os`` but makes the N-th *faultable* call fail. Faultable calls are the ones that write or
sync: ``os.write``, ``os.fsync`` (files and the directory), ``os.ftruncate``, ``os.replace``
and ``os.open`` with ``O_CREAT``. A clean run counts them; then the workload runs once for
every N, in three modes:

- ``once``: only call N fails (a transient error);
- ``burst``: calls N, N+1 and N+2 fail (the disk stays full for a moment: the cut-back after
  a failed write and the retry fail too);
- ``short``: write N writes half its bytes and returns, the next call fails with ENOSPC
  (what a filling disk really does), the bytes stay in the file.

Successful ``fsync`` calls are counted but not passed on (nothing here simulates a power cut,
and the real calls would dominate the run time). The workload opens a new state, applies the
steps of ``_workers.apply_step`` (compaction forced every few records, an explicit
``compact()`` in the middle; a multi-key ``update()`` outside a transaction among them) and
closes it. After every call:

- a call that raises raises an OSError with the injected errno, and its change is not applied
  in memory (the state equals the state before the call);
- a call that returns applied its change exactly;
- the file is readable and ``load()`` equals the state in memory (consistent);
- a failed step is retried until it works once the fault is over: later changes work;
- one exception: when the cut-back of a failed append fails too (``burst``), the record may
  still be in the file until the next change cuts it back, so the file may then hold the
  failed change (nothing else);
- at the end no temporary file is left behind (looked for before the file is opened again,
  which would delete one), and the file reopens with everything.
"""

from __future__ import annotations

import copy
import errno
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _workers as workers  # tests/ is on sys.path under pytest
import pytest

import persistedstate.storage
from persistedstate import PersistedState, load

pytestmark = [
    pytest.mark.skipif(
        sys.platform != "linux", reason="fault injection follows the Linux I/O calls (os.fsync)"
    ),
    pytest.mark.usefixtures("quiet_recovery_warnings"),
]


STEPS = 24


class InjectedFault(OSError):
    pass


class FaultyOs:
    """The ``os`` module as persistedstate.storage sees it; faultable call N fails."""

    def __init__(self, fail_at: int | None, code: int, mode: str) -> None:
        self.fail_at = fail_at
        self.code = code
        self.mode = mode
        self.calls = 0
        self.injected: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _fault(self, what: str, data: Any = None, fd: int = -1) -> int | None:
        """Count a faultable call; raise if it must fail, or return a short write's count."""
        self.calls += 1
        if self.fail_at is None:
            return None
        offset = self.calls - self.fail_at
        if self.mode == "short":
            if offset == 0 and what == "write" and data is not None and len(data) > 1:
                self.injected.append(f"{what}#{self.calls} short")
                return os.write(fd, bytes(data[: len(data) // 2]))
            failing = offset == 1 and bool(self.injected)
        elif self.mode == "burst":
            failing = 0 <= offset < 3
        else:
            failing = offset == 0
        if failing:
            self.injected.append(f"{what}#{self.calls}")
            code = errno.ENOSPC if self.mode == "short" else self.code
            raise InjectedFault(code, f"injected {errno.errorcode[code]} in {what}")
        return None

    def open(self, path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            self._fault("open")
        return os.open(path, flags, *args, **kwargs)

    def write(self, fd: int, data: Any) -> int:
        short = self._fault("write", data, fd)
        if short is not None:
            return short
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        self._fault("dirsync" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync")
        # The real fsync is skipped: it makes nothing more durable that this test looks at
        # (no power cut here), and hundreds of workloads would spend most of their time in it.

    def fdatasync(self, fd: int) -> None:
        self._fault("fsync")

    def ftruncate(self, fd: int, size: int) -> None:
        self._fault("ftruncate")
        os.ftruncate(fd, size)

    def replace(self, source: Any, target: Any) -> None:
        self._fault("replace")
        os.replace(source, target)

    rename = replace


@dataclass
class RunResult:
    calls: int = 0
    failed_calls: int = 0
    problems: list[str] = field(default_factory=list)


def _run_workload(
    directory: Path, faulty: FaultyOs, fsync: bool, monkeypatch: pytest.MonkeyPatch
) -> RunResult:
    """Run the workload under ``faulty``; check every promise after every call."""
    result = RunResult()
    path = directory / "state.yaml"
    code = faulty.code if faulty.mode != "short" else errno.ENOSPC

    def problem(text: str) -> None:
        result.problems.append(f"[{', '.join(faulty.injected)}] {text}")

    def check_error(error: OSError, what: str) -> bool:
        result.failed_calls += 1
        if error.errno != code:
            problem(f"{what} raised {error!r}, not the injected errno {code}")
            return False
        return True

    def check_file(state: Any, what: str, or_else: Any = None) -> bool:
        try:
            on_disk = load(path)
        except Exception as error:
            problem(f"after {what}: the file is unreadable: {error!r}")
            return False
        if or_else is not None and workers.same(on_disk, or_else):
            return True
        if not workers.same(on_disk, state.copy()):
            problem(f"after {what}: the file holds {on_disk!r}, memory holds {state.copy()!r}")
            return False
        return True

    with monkeypatch.context() as patch:
        patch.setattr(persistedstate.storage, "os", faulty)
        state = None
        for _attempt in range(5):
            try:
                state = PersistedState.open(
                    path, fsync=fsync, compact_min_bytes=200, compact_ratio=0.25
                )
                break
            except OSError as error:
                if not check_error(error, "open"):
                    return result
                if path.exists():
                    try:
                        load(path)
                    except Exception as load_error:
                        problem(f"a failed open left an unreadable file: {load_error!r}")
                        return result
        if state is None:
            problem("open never succeeded")
            return result
        expected: dict[Any, Any] = {}
        for k in range(STEPS):
            before = state.copy()
            if not workers.same(before, expected):
                problem(f"before step {k}: memory holds {before!r}, expected {expected!r}")
                return result
            after = copy.deepcopy(expected)
            workers.apply_step(after, k)
            for attempt in range(5):
                faults_before = len(faulty.injected)
                try:
                    workers.apply_step(state, k, state.transaction)
                except OSError as error:
                    if not check_error(error, f"step {k} (attempt {attempt + 1})"):
                        return result
                    if not workers.same(state.copy(), before):
                        problem(f"step {k} failed but changed memory: {state.copy()!r}")
                        return result
                    # When the cut-back of a record whose write went through (its fsync failed)
                    # fails as well, the record cannot be taken out of the file: the file may
                    # then hold the failed change until the next change cuts it back.
                    cut_back_failed = any(
                        fault.startswith("ftruncate") for fault in faulty.injected[faults_before:]
                    )
                    if not check_file(
                        state, f"failed step {k}", or_else=after if cut_back_failed else None
                    ):
                        return result
                    continue
                if not workers.same(state.copy(), after):
                    problem(f"step {k} returned, memory holds {state.copy()!r}, not {after!r}")
                    return result
                if not check_file(state, f"step {k}"):
                    return result
                break
            else:
                problem(f"step {k} kept failing after the fault was over")
                return result
            expected = after
            if k == STEPS // 2:
                try:
                    state.compact()
                except OSError as error:
                    if not check_error(error, "compact()"):
                        return result
                if not workers.same(state.copy(), expected) or not check_file(state, "compact()"):
                    problem("compact() changed the state")
                    return result
        try:
            state.close()
        except OSError as error:
            if not check_error(error, "close()"):
                return result
            if not check_file(state, "failed close()"):
                return result
    result.calls = faulty.calls
    # (before the reopen, which would delete a temporary file left behind)
    left = sorted(entry.name for entry in directory.iterdir() if entry.name != "state.yaml.lock")
    if left != ["state.yaml"]:
        problem(f"files left in the directory after close(): {left}")
    try:
        reopened = PersistedState.open(path)
    except Exception as error:
        problem(f"the file does not reopen: {error!r}")
        return result
    try:
        if not workers.same(reopened.copy(), expected):
            problem(f"reopened: {reopened.copy()!r}, expected {expected!r}")
    finally:
        reopened.close()
    return result


def _count_faultable_calls(tmp_path: Path, fsync: bool, monkeypatch: pytest.MonkeyPatch) -> int:
    directory = tmp_path / "clean"
    directory.mkdir()
    faulty = FaultyOs(None, errno.EIO, "once")
    result = _run_workload(directory, faulty, fsync, monkeypatch)
    assert not result.problems, result.problems
    return result.calls


MODES = [
    pytest.param(errno.ENOSPC, "once", id="ENOSPC-once"),
    pytest.param(errno.EIO, "once", id="EIO-once"),
    pytest.param(errno.ENOSPC, "burst", id="ENOSPC-burst"),
    pytest.param(errno.EIO, "burst", id="EIO-burst"),
    pytest.param(errno.ENOSPC, "short", id="ENOSPC-short-write"),
]


@pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "default"])
@pytest.mark.parametrize(("code", "mode"), MODES)
def test_a_fault_at_every_write_and_sync(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Any,
    code: int,
    mode: str,
    fsync: bool,
) -> None:
    total = _count_faultable_calls(tmp_path, fsync, monkeypatch)
    assert total > 3 * STEPS // 2  # writes, syncs, compactions
    problems: list[str] = []
    runs = failed = 0
    for fail_at in range(1, total + 1):
        directory = tmp_path / f"run{fail_at}"
        directory.mkdir()
        faulty = FaultyOs(fail_at, code, mode)
        result = _run_workload(directory, faulty, fsync, monkeypatch)
        if not faulty.injected:
            continue  # "short" mode at a call that is not a write
        runs += 1
        failed += result.failed_calls
        problems.extend(f"fault at call {fail_at}: {text}" for text in result.problems)
    line = (
        f"faults [{errno.errorcode[code]} {mode}, fsync={fsync}]: {runs} workloads with an "
        f"injected fault ({total} faultable calls), {failed} calls raised OSError"
    )
    print("\n" + line)
    record_property("faults_injected", runs)
    assert runs > 0
    assert not problems, f"{len(problems)} broken promises:\n" + "\n".join(problems[:8])


def test_a_torn_tail_that_cannot_be_cut_fails_the_first_change_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening writes nothing: the torn tail is cut before the first write. If that cut fails
    (EIO), the change raises OSError, is not applied, the file is as it was, and a later
    change recovers."""
    path = tmp_path / "state.yaml"
    raw = b'n: 1\n--- ["set", [], "n", 2]\n--- ["set", [], "n", 3'
    path.write_bytes(raw)
    for mode_fsync in (False, True):
        faulty = FaultyOs(1, errno.EIO, "once")
        with monkeypatch.context() as patch:
            patch.setattr(persistedstate.storage, "os", faulty)
            state = PersistedState.open(path, fsync=mode_fsync)
            assert path.read_bytes() == raw  # opening changed nothing
            with pytest.raises(OSError) as caught:
                state["n"] = 10
            assert state.copy() == {"n": 2}
        assert caught.value.errno == errno.EIO
        assert faulty.injected == ["ftruncate#1"]
        assert path.read_bytes() == raw
        assert load(path) == {"n": 2}
        state.close(compact=False)
    with PersistedState.open(path) as state:
        assert state.copy() == {"n": 2}
        state["n"] = 4
    assert load(path) == {"n": 4}


def test_failed_append_then_failed_cut_back_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short write leaves half a record; the cut-back fails too; the next change cuts it off."""
    path = tmp_path / "state.yaml"
    state = PersistedState.open(path, {"n": 0})
    size = path.stat().st_size
    faulty = FaultyOs(1, errno.ENOSPC, "short")
    with monkeypatch.context() as patch:
        patch.setattr(persistedstate.storage, "os", faulty)
        with pytest.raises(OSError) as caught:
            state["n"] = 123456789
        assert caught.value.errno == errno.ENOSPC
        # write#1 wrote half the record, write#2 failed: the cut-back (call 3) works
        assert faulty.injected == ["write#1 short", "write#2"]
    assert state.copy() == {"n": 0}
    assert path.stat().st_size == size
    assert load(path) == {"n": 0}
    faulty = FaultyOs(1, errno.ENOSPC, "burst")
    with monkeypatch.context() as patch:
        patch.setattr(persistedstate.storage, "os", faulty)
        with pytest.raises(OSError):
            state["n"] = 5  # write fails, cut-back fails
        with pytest.raises(OSError):
            state["n"] = 5  # the cut-back before the write fails
        state["n"] = 6  # space is back
    assert faulty.injected == ["write#1", "ftruncate#2", "ftruncate#3"]
    assert state.copy() == {"n": 6}
    assert load(path) == {"n": 6}
    state.close()
    assert load(path) == {"n": 6}
