"""Processes: one writer at a time, lock timeouts, load() beside a writer, files replaced under
an open state.

The child processes run ``_workers.py`` (``hold``, ``try-open``, ``steps``, ``cycle``); the
locks are real (in ``<name>.lock``, see ``locking``), so these tests exercise what two programs
sharing a state file see.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _workers as workers  # tests/ is on sys.path under pytest
import pytest
from conftest import Worker, needs_fork, run_in_fork

from persistedstate import (
    PersistedState,
    PersistedStateError,
    StateLockedError,
    load,
)

pytestmark = [
    pytest.mark.skipif(
        sys.platform != "linux", reason="the lock holder's pid comes from /proc/locks (Linux only)"
    ),
    pytest.mark.usefixtures("quiet_recovery_warnings"),
]


class Child(Worker):
    """A child process running a _workers.py mode, talking line by line."""

    def expect(self, line: str, timeout: float = 20.0) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        got = self.proc.stdout.readline()
        if not got.startswith(line):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"child said {got!r}, expected {line!r}; stderr: {err}")
        assert time.monotonic() <= deadline
        return got.strip()

    def finish(self, timeout: float = 20.0) -> tuple[str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err
        return out, err


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "shared.state"


@pytest.fixture
def holder(path: Path) -> Iterator[Child]:
    """A child process holding the state open (it set ``holder`` to its pid)."""
    child = Child("hold", str(path))
    child.expect("locked")
    yield child
    child.kill()


# -- one writer at a time --------------------------------------------------------------------


def test_a_second_process_gets_state_locked_error_naming_file_and_holder(
    path: Path, holder: Child
) -> None:
    started = time.monotonic()
    with pytest.raises(StateLockedError) as caught:
        PersistedState.open(path)
    assert time.monotonic() - started < 1.0  # lock_timeout=0: no waiting
    assert caught.value.path == str(path)
    assert caught.value.holder_pid == holder.pid
    assert str(path) in str(caught.value)
    assert str(holder.pid) in str(caught.value)
    with pytest.raises(StateLockedError):
        PersistedState(path, x=1)  # the plain constructor too
    assert load(path) == {"holder": holder.pid}  # load() needs no lock
    assert load(path) == {"holder": holder.pid}


def test_the_child_is_refused_while_this_process_holds_the_state(path: Path) -> None:
    state = PersistedState.open(path, {"n": 1})
    try:
        child = Child("try-open", str(path), "0")
        out, _ = child.finish()
        assert out.split() == ["locked", str(os.getpid()), str(path)]
    finally:
        state.close()
    child = Child("try-open", str(path), "0")
    out, _ = child.finish()
    assert out.strip() == "opened"


def test_opening_the_same_file_again_in_this_process_takes_it_over(path: Path) -> None:
    """A notebook cell run twice: the second open works at once; the first object (still
    referenced, with a list taken from it) is closed, every change it made is in the file, and
    any later use of it, or of its list, raises saying why. Its close() is quiet."""
    first = PersistedState.open(path, {"n": 1, "items": [1]})
    items = first["items"]
    first.n = 2
    items.append(2)
    second = PersistedState.open(path)  # (before: StateLockedError, this process holds it)
    try:
        assert second.copy() == {"n": 2, "items": [1, 2]}
        for use in (
            lambda: first.n,
            lambda: setattr(first, "n", 3),
            lambda: first["items"],
            lambda: len(first),
            lambda: items.append(3),
            lambda: items[0],
            lambda: first.copy(),
            lambda: first.transaction().__enter__(),
        ):
            with pytest.raises(PersistedStateError, match="opened again in this process"):
                use()
        first.close()  # quiet, as closing twice is
        second.n = 4
        other = Child("try-open", str(path), "0")  # the new object holds the file
        out, _ = other.finish()
        assert out.split() == ["locked", str(os.getpid()), str(path)]
    finally:
        second.close()
    assert load(path) == {"n": 4, "items": [1, 2]}


def test_a_state_nobody_closed_frees_its_lock_as_soon_as_it_is_dropped(path: Path) -> None:
    def read_setting() -> int:
        state = PersistedState(path, config={"retries": 3}, runs=0)
        state.runs += 1
        proxy = state.config  # proxies, attributes, a transaction: nothing may keep it alive
        with state.transaction():
            proxy["retries"] += state.runs
        retries: int = state.config["retries"]
        return retries

    collecting = gc.isenabled()
    gc.disable()  # only reference counting: the lock must not wait for the cycle collector
    try:
        assert read_setting() == 4
        assert b'\n--- ["set"' in path.read_bytes()  # not compacted: no close() was called
        # Another process asks (this one would take the file over from a state still held).
        out, _ = Child("try-open", str(path), "0").finish()
        assert out.split() == ["opened"], f"the dropped state still holds the file: {out}"
        with PersistedState.open(path) as again:
            assert again.copy() == {"config": {"retries": 4}, "runs": 1}
    finally:
        if collecting:
            gc.enable()


def test_a_proxy_that_outlives_its_state_still_writes_and_then_frees_the_lock(path: Path) -> None:
    collecting = gc.isenabled()
    gc.disable()
    try:
        PersistedState(path, queue=[])
        queue = PersistedState(path).queue  # the state itself is gone at once
        queue.append("job")  # it still writes, and still holds the lock
        other = Child("try-open", str(path), "0")
        out, _ = other.finish()
        assert out.split()[0] == "locked"
        assert load(path) == {"queue": ["job"]}
        del queue
        with PersistedState.open(path) as again:
            assert again.queue == ["job"]
    finally:
        if collecting:
            gc.enable()


def test_no_lock_file_is_left_and_deleting_it_races_with_nobody(path: Path) -> None:
    """The last process to let go of the state deletes ``<name>.lock``. Four processes open,
    change and close the state 40 times each, waiting for one another: each deletion races
    with processes waiting in the file being deleted, and none of them may hold the state at
    the same time as another (a lost count would show it)."""
    with PersistedState(path, count=0):
        assert Path(f"{path}.lock").exists()
    assert not Path(f"{path}.lock").exists()
    children = [Child("cycle", str(path), "40") for _ in range(4)]
    for child in children:
        out, _ = child.finish(timeout=300)
        assert out == "done\n"
    assert load(path) == {"count": 160}
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_lock_timeout_waits_then_gives_up(path: Path, holder: Child) -> None:
    started = time.monotonic()
    with pytest.raises(StateLockedError) as caught:
        PersistedState.open(path, lock_timeout=0.6)
    waited = time.monotonic() - started
    assert 0.55 <= waited < 5.0, waited
    assert caught.value.holder_pid == holder.pid
    assert load(path) == {"holder": holder.pid}  # the holder's file is untouched


def test_lock_timeout_gets_the_state_when_the_holder_closes(path: Path, holder: Child) -> None:
    started = time.monotonic()
    holder.tell("close")  # the child sets "released" and closes
    state = PersistedState.open(path, lock_timeout=20)
    try:
        assert time.monotonic() - started < 15
        assert state.copy() == {"holder": holder.pid, "released": True}
    finally:
        state.close()
    holder.expect("closed")


def test_a_waiting_open_gets_the_state_when_the_holder_closes_later(path: Path) -> None:
    """The holder closes while this process is already waiting."""
    child = Child("hold", str(path))
    child.expect("locked")
    try:
        timer = threading.Timer(0.5, child.tell, args=("close",))
        timer.start()
        started = time.monotonic()
        state = PersistedState.open(path, lock_timeout=20)
        waited = time.monotonic() - started
        timer.join()
        try:
            assert 0.3 <= waited < 15, waited
            assert state.copy() == {"holder": child.pid, "released": True}
        finally:
            state.close()
    finally:
        child.kill()


def test_the_lock_is_released_when_the_holder_is_killed(path: Path, holder: Child) -> None:
    holder.kill()
    state = PersistedState.open(path, lock_timeout=5)
    try:
        assert state.copy() == {"holder": holder.pid}
        state.after_kill = True
    finally:
        state.close()
    assert load(path) == {"holder": holder.pid, "after_kill": True}


# -- load() beside a writer ------------------------------------------------------------------


def test_load_always_sees_a_consistent_state_while_a_writer_appends_and_compacts(
    path: Path, record_property: Any
) -> None:
    """A writer process changes the state as fast as it can, compacting every few records;
    every load() gives exactly one of the states the workload passes through, never going
    back, and never raises."""
    child = Child("steps", str(path), "0", "0", "300")
    try:
        child.expect("ready")
        sim = workers.Simulator()
        seen = 0
        loads = 0
        distinct = set()
        compactions_seen = 0
        last_size = 0
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            data = load(path)
            loads += 1
            size = path.stat().st_size
            if size < last_size:
                compactions_seen += 1
            last_size = size
            workers.check_invariant(data)
            # The state is S_j for some j >= the last one seen: search forward.
            sim.state(seen)
            while not workers.same(data, sim.current):
                if sim.index > seen + 100_000:
                    pytest.fail(f"load() gave a state the workload never passes through: {data}")
                sim.state(sim.index + 1)
            seen = sim.index
            distinct.add(seen)
    finally:
        child.kill()
    line = (
        f"load() beside a writer: {loads} loads, {len(distinct)} distinct states, "
        f"up to step {seen}, {compactions_seen} compactions observed"
    )
    print("\n" + line)
    record_property("concurrent_loads", loads)
    assert loads > 50
    assert len(distinct) > 10
    assert compactions_seen > 0


# -- a file replaced under an open state -----------------------------------------------------


def _conflicts(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".conflict-*"))


@pytest.fixture
def open_state(path: Path) -> Iterator[PersistedState]:
    state = PersistedState.open(path, {"retries": 3, "items": [1, 2]})
    state.compact()
    yield state
    state.close()


def _editor_saves_by_rename(path: Path, text: bytes) -> None:
    """What most editors do: write a new file beside, rename it over."""
    temp = path.with_name(path.name + ".editor~")
    temp.write_bytes(text)
    os.replace(temp, path)


def _editor_saves_in_place(path: Path, text: bytes) -> None:
    """What some editors do (nano, vim with backupcopy=yes): truncate and rewrite."""
    with open(path, "r+b") as file:
        file.truncate(0)
        file.write(text)


@pytest.mark.parametrize("save", [_editor_saves_by_rename, _editor_saves_in_place])
@pytest.mark.parametrize("when", ["close", "compact"])
def test_a_file_replaced_under_an_open_state_is_detected_and_both_versions_kept(
    path: Path, open_state: PersistedState, save: Any, when: str
) -> None:
    theirs = b"retries: 10\nowner: an editor\n"  # not the size of ours
    save(path, theirs)
    with pytest.raises(PersistedStateError) as caught:
        if when == "close":
            open_state.close()
        else:
            open_state.compact()
    assert str(path) in str(caught.value)
    assert path.read_bytes() == theirs  # theirs is left where it was
    conflicts = _conflicts(path)
    assert len(conflicts) == 1, conflicts
    assert str(conflicts[0]) in str(caught.value)
    assert load(conflicts[0]) == {"retries": 3, "items": [1, 2]}  # ours is beside it
    assert conflicts[0].name.endswith(f"-{os.getpid()}")
    open_state.close()  # closing again is fine
    with PersistedState.open(path) as state:  # the lock was released
        assert state.copy() == {"retries": 10, "owner": "an editor"}


def test_changes_after_the_file_was_replaced_end_up_in_our_version_not_in_theirs(
    path: Path, open_state: PersistedState
) -> None:
    theirs = b"retries: 10\nowner: an editor\n"  # not the size of ours
    _editor_saves_by_rename(path, theirs)
    open_state["items"].append(3)  # goes to our (now unlinked) file, not to theirs
    open_state.retries = 4
    with pytest.raises(PersistedStateError):
        open_state.close()
    assert path.read_bytes() == theirs
    assert load(path) == {"retries": 10, "owner": "an editor"}
    conflicts = _conflicts(path)
    assert len(conflicts) == 1, conflicts
    assert load(conflicts[0]) == {"retries": 4, "items": [1, 2, 3]}


def test_the_first_change_after_an_in_place_rewrite_is_refused_and_theirs_untouched(
    path: Path, open_state: PersistedState
) -> None:
    theirs = b"retries: 10\nowner: an editor\n"  # not the size of ours
    _editor_saves_in_place(path, theirs)
    with pytest.raises(PersistedStateError, match="rewritten"):
        open_state["items"].append(3)  # appending would land in their file
    assert path.read_bytes() == theirs
    conflicts = _conflicts(path)
    assert len(conflicts) == 1, conflicts
    assert load(conflicts[0]) == {"retries": 3, "items": [1, 2]}
    assert open_state == {"retries": 3, "items": [1, 2]}  # the refused change is not applied
    with pytest.raises(PersistedStateError, match="closed"):
        open_state.retries = 4
    open_state.close()  # already closed: nothing more happens


def test_an_in_place_edit_of_the_same_size_is_detected(
    path: Path, open_state: PersistedState
) -> None:
    """An editor changes one digit and saves in place: same inode, same size."""
    ours = path.read_bytes()
    theirs = ours.replace(b"retries: 3", b"retries: 7")
    assert len(theirs) == len(ours) and theirs != ours
    time.sleep(0.01)  # a later modification time, as a person's edit would have
    _editor_saves_in_place(path, theirs)
    with pytest.raises(PersistedStateError):
        open_state.close()
    assert path.read_bytes() == theirs
    conflicts = _conflicts(path)
    assert len(conflicts) == 1, conflicts
    assert load(conflicts[0]) == {"retries": 3, "items": [1, 2]}


def test_a_file_deleted_under_an_open_state_is_detected_and_ours_kept(
    path: Path, open_state: PersistedState
) -> None:
    path.unlink()
    with pytest.raises(PersistedStateError):
        open_state.close()
    conflicts = _conflicts(path)
    assert len(conflicts) == 1, conflicts
    assert load(conflicts[0]) == {"retries": 3, "items": [1, 2]}


def test_a_replaced_file_is_detected_by_automatic_compaction(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = PersistedState.open(path, {"n": 0}, compact_min_bytes=100, compact_ratio=0.0)
    state.compact()
    theirs = b"n: 1000\n"
    _editor_saves_by_rename(path, theirs)
    with pytest.raises(PersistedStateError):
        for i in range(1, 100):
            state.n = i  # compaction comes after about 100 bytes of journal
    assert path.read_bytes() == theirs
    conflicts = _conflicts(path)
    assert len(conflicts) == 1, conflicts
    ours = load(conflicts[0])
    assert ours == {"n": state.n}
    assert 1 <= ours["n"] < 99
    state.close()


def _conflict_by_rename(path: Path, ours: dict[str, Any]) -> Path:
    """Open the state, make it ``ours``, let an editor replace the file, close: the conflict
    copy."""
    before = set(_conflicts(path))
    state = PersistedState.open(path)
    state.clear()
    state.update(ours)
    state.compact()
    _editor_saves_by_rename(path, b"theirs: true\n")
    with pytest.raises(PersistedStateError) as caught:
        state.close()
    [copy] = set(_conflicts(path)) - before
    assert str(copy) in str(caught.value)
    return copy


def test_two_conflicts_in_the_same_second_keep_both_versions(path: Path) -> None:
    """A conflict copy never fails to be written because of its name (README: a second one
    in the same second gets -2 added)."""
    for _ in range(5):  # until both fall in one second (they take milliseconds)
        for leftover in _conflicts(path):
            leftover.unlink()
        time.sleep(1.001 - time.time() % 1)  # (the start of a second)
        first = _conflict_by_rename(path, {"version": 1})
        second = _conflict_by_rename(path, {"version": 2})
        if first.name.split("-")[1:3] == second.name.split("-")[1:3]:  # (date, time)
            break
    else:
        pytest.fail("no two conflicts fell in the same second")
    assert first.name.endswith(f"-{os.getpid()}")
    assert second.name == f"{first.name}-2"
    assert load(first) == {"version": 1}
    assert load(second) == {"version": 2}
    assert load(path) == {"theirs": True}


def test_a_relative_path_names_the_same_files_after_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path is resolved once, at open: changes, compaction and a conflict copy all go
    beside the file that was opened, whatever the working directory is by then."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    relative = os.path.join("sub", "s.state")
    state = PersistedState(relative, a=1)
    monkeypatch.chdir(tmp_path / "elsewhere")  # (which has no "sub")
    state.b = 2
    state.compact()
    state.close()
    assert load(tmp_path / relative) == {"a": 1, "b": 2}

    monkeypatch.chdir(tmp_path)
    state = PersistedState(relative)
    state.c = 3
    _editor_saves_by_rename(tmp_path / relative, b"theirs: true\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(PersistedStateError) as caught:
        state.close()
    [ours] = (tmp_path / "sub").glob("s.state.conflict-*")
    assert str(ours) in str(caught.value)
    assert load(ours) == {"a": 1, "b": 2, "c": 3}
    assert load(tmp_path / relative) == {"theirs": True}
    assert os.listdir(tmp_path / "elsewhere") == []


# -- a forked child --------------------------------------------------------------------------


@needs_fork
def test_a_forked_child_may_read_the_state_it_inherited_but_not_write_it(path: Path) -> None:
    """README "One writer": a child made by fork reads the parent's open state; its changes,
    compact() and close() raise PersistedStateError and write nothing; the parent keeps its
    lock and goes on writing, with no conflict."""
    state = PersistedState.open(path, {"n": 1, "items": [1]})
    items = state["items"]
    before = path.read_bytes()

    def child() -> str:
        outcomes = [repr(state.copy())]

        def transaction() -> None:
            with state.transaction():
                state.n = 5

        for name, change in [
            ("set", lambda: setattr(state, "n", 2)),
            ("nested", lambda: items.append(2)),
            ("update", lambda: state.update(m=1)),
            ("transaction", transaction),
            ("compact", state.compact),
            ("close", state.close),
        ]:
            try:
                change()
                outcomes.append(f"{name}: done")
            except PersistedStateError as error:
                outcomes.append(f"{name}: refused: {error}")
        outcomes.append(repr(state.copy()))
        return "\n".join(outcomes)

    report = run_in_fork(child).splitlines()
    assert report[0] == report[-1] == repr({"n": 1, "items": [1]})  # memory unchanged
    for outcome in report[1:-1]:
        assert "refused" in outcome, outcome
        assert "forked from" in outcome and "open it in this process" in outcome, outcome
    assert path.read_bytes() == before  # the child wrote nothing
    other = Child("try-open", str(path), "0")  # the parent still holds the lock
    out, _ = other.finish()
    assert out.split() == ["locked", str(os.getpid()), str(path)]
    state.n = 3  # and goes on writing
    items.append(3)
    state.close()
    assert load(path) == {"n": 3, "items": [1, 3]}
    assert _conflicts(path) == []


@needs_fork
@pytest.mark.parametrize("shared", [False, True], ids=["default", "shared"])
def test_a_killed_program_s_forked_child_does_not_keep_its_file_locked(
    path: Path, shared: bool
) -> None:
    """README "One writer": a program that forked a helper (one that never uses the state) and
    is then killed can be run again at once: the child does not hold the lock it inherited."""
    program = Worker("drive", str(path), "1" if shared else "0")
    assert program.said() == "ready"
    fork_and_sleep = "(lambda pid: pid or __import__('time').sleep(120))(__import__('os').fork())"
    program.tell(fork_and_sleep)
    helper = int(program.said())
    try:
        program.proc.kill()  # (not Worker.kill: the helper keeps its output pipes open)
        program.proc.wait(30)
        again = Child("try-open", str(path), "0")
        out, err = again.finish()
        assert out.strip() == "opened", err
    finally:
        os.kill(helper, 9)
