"""Ctrl-C that the program survives: real signals at random moments, thousands of times; and
an interrupt at every point of each kind of change where Python runs a signal handler.

A program that catches ``KeyboardInterrupt`` (a notebook, a REPL, a loop that handles Ctrl-C)
and carries on must find memory and file agreeing, however the interrupt fell: between a
record's write and its change in memory, inside a transaction or its roll-back, around a
compaction's rename. Each child process (``_workers.py interrupted``) makes random changes to
a state for a few seconds (lists, dicts, the scalar short path, nested and failing
transactions, compactions every few hundred bytes of journal), while a one-shot timer,
re-armed at a random delay each time, delivers SIGALRM, whose handler raises
``KeyboardInterrupt`` exactly as Python's Ctrl-C handler does. The child catches it and goes
on. After every change an interrupt reached, the child compares its memory with ``load()``
of the file, the attribute kept in ``__dict__`` with the value, and checks that no
transaction is half applied. At the end it reports its memory, closes without compacting,
and this process checks:

- the file opens (``load()`` and ``PersistedState.open``) and holds exactly that memory;
- no conflict copy was written (nobody else touched the file);
- enough interrupts were delivered for the run to mean something.

Half the children run on the test's temporary directory, the others on a tmpfs when there
is one (``/dev/shm``): there compaction's fsyncs cost nothing, so compactions finish often
and the interrupts land in every part of them, not mostly in a disk sync.

``PERSISTEDSTATE_INTERRUPT_SECONDS`` sets each child's time (default 4; four children).

The second test is exhaustive where the first is random. CPython runs a pending signal
handler, and so raises its exception, at three kinds of point only: as a function starts,
after a call returns, at a loop's jump back (3.10 and later; in 3.10 at a taken conditional
jump too). With opcode tracing, each kind of change (every record type, the scalar short path
at the top and nested, transactions, a failing nested block, compaction) is made again and
again, the n-th time with KeyboardInterrupt raised at the n-th such point in the library's
code, until a run has no n-th point; after each run memory must equal the file. (A point in
``contextlib``'s ``__exit__`` of a transaction is not among them: see docs/design.md.)
"""

from __future__ import annotations

import dis
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import _workers as workers  # tests/ is on sys.path under pytest
import pytest
from conftest import first_difference, tmpfs_directory

import persistedstate
from persistedstate import PersistedState, journal, load, storage

pytestmark = [
    pytest.mark.skipif(
        sys.platform == "win32", reason="SIGALRM and setitimer are POSIX (Windows has neither)"
    ),
    pytest.mark.usefixtures("quiet_recovery_warnings"),
]

SECONDS = float(os.environ.get("PERSISTEDSTATE_INTERRUPT_SECONDS", "4"))
CHILDREN = 4
MIN_INTERRUPTS = 150  # per child (about 700 is usual): fewer proves little (a starved machine)
TOTALS = (
    "raised",
    "interrupted_changes",
    "multiply_interrupted",
    "changes",
    "checks",
    "replacements",
)


def _directories(tmp_path: Path) -> list[Path]:
    """Where each child keeps its state: alternately tmp_path and a tmpfs, if there is one."""
    fast = tmpfs_directory("persistedstate-interrupts-")
    places = [tmp_path] if fast is None else [tmp_path, fast]
    return [places[number % len(places)] / f"child-{number}" for number in range(CHILDREN)]


def _run_child(directory: Path, seed: int, mode: str) -> tuple[dict[str, int], list[str]]:
    """One child; its statistics, and what went wrong (with the seed, to run it again)."""
    directory.mkdir()
    path = directory / "interrupted.state"
    report = directory / "report.json"
    command = [
        sys.executable,
        str(workers.SCRIPT),
        "interrupted",
        str(path),
        str(seed),
        str(SECONDS),
        str(report),
        mode,
    ]
    where = f"{mode} child with seed {seed} in {directory}"
    done = subprocess.run(command, capture_output=True, text=True, timeout=SECONDS + 120)
    if done.returncode != 0 or not report.exists():
        return {}, [f"{where} failed ({done.returncode}): {done.stderr[-3000:]}"]
    result = json.loads(report.read_text())
    problems = [f"{where}: {problem}" for problem in result["problems"]]
    memory = result["memory"]
    try:
        data = load(path)
    except Exception as error:
        return result["stats"], [*problems, f"{where}: load() raised {error!r}"]
    difference = first_difference(data, memory)
    if difference is not None:
        problems.append(f"{where}: the file is not the child's memory: {difference}")
    with PersistedState.open(path) as state:  # (the child has closed it)
        if state.copy() != memory:
            problems.append(f"{where}: open() gives {state.copy()!r}, not the child's memory")
    conflicts = sorted(entry.name for entry in directory.glob("*.conflict-*"))
    if conflicts:
        problems.append(f"{where}: conflict copies nobody caused: {conflicts}")
    if result["stats"]["raised"] < MIN_INTERRUPTS:
        problems.append(f"{where}: only {result['stats']['raised']} interrupts were delivered")
    return result["stats"], problems


@pytest.mark.parametrize("mode", ["default", "shared"])
def test_changes_interrupted_at_random_moments_keep_memory_and_file_together(
    tmp_path: Path, record_property: pytest.RecordProperty, mode: str
) -> None:
    totals = dict.fromkeys(TOTALS, 0)
    problems: list[str] = []
    directories = _directories(tmp_path)
    try:
        for directory in directories:
            stats, found = _run_child(directory, random.randrange(1 << 30), mode)
            problems.extend(found)
            for name in TOTALS:
                totals[name] += stats.get(name, 0)
    finally:
        for directory in directories:
            if not directory.is_relative_to(tmp_path):
                shutil.rmtree(directory.parent, ignore_errors=True)
    line = (
        f"interrupts: {totals['raised']} KeyboardInterrupts raised by SIGALRM's handler in "
        f"{totals['changes']} changes ({totals['interrupted_changes']} interrupted, "
        f"{totals['multiply_interrupted']} of them more than once; "
        f"{totals['replacements']} compactions completed), {totals['checks']} checks"
    )
    print("\n" + line)
    for name, value in totals.items():
        record_property(f"interrupts_{name}", value)
    assert not problems, f"{len(problems)} broken promises:\n" + "\n".join(problems[:8])


# -- every point where Python runs a signal handler ---------------------------------------

_LIBRARY = os.path.dirname(os.path.abspath(persistedstate.__file__))
_MAX_POINTS = 3000  # per kind of change (a few hundred is usual)
_CALLS = frozenset({"CALL", "CALL_FUNCTION_EX", "CALL_KW"})
_OPNAMES: dict[CodeType, dict[int, str]] = {}


def _opnames(code: CodeType) -> dict[int, str]:
    names = _OPNAMES.get(code)
    if names is None:
        names = _OPNAMES[code] = {i.offset: i.opname for i in dis.get_instructions(code)}
    return names


class _Interrupter:
    """A trace function that raises KeyboardInterrupt at the ``target``-th point of the
    library's code where CPython would run a pending signal handler: as a function starts
    (its ``call`` event, for RESUME), after a call returns (the next opcode of the frame), at a
    loop's jump back. Raising from a trace function turns tracing off: one per run."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.points = 0
        self.previous: dict[FrameType, str] = {}

    def _point(self) -> None:
        self.points += 1
        if self.points == self.target:
            raise KeyboardInterrupt

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event != "call" or not frame.f_code.co_filename.startswith(_LIBRARY):
            return None
        frame.f_trace_opcodes = True
        if frame.f_lasti <= 0:  # (a call, not a generator resumed at its yield)
            self._point()
        return self._opcode

    def _opcode(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            name = _opnames(frame.f_code).get(frame.f_lasti, "")
            previous = self.previous.get(frame, "")
            self.previous[frame] = name
            if previous in _CALLS or (previous == "PRECALL" and name != "CALL"):
                self._point()  # (a PRECALL specialized for a builtin makes the call itself)
            elif name == "JUMP_BACKWARD":
                self._point()
        return self._opcode


def _interrupted_at(target: int, change: Callable[[], None]) -> int:
    """Make ``change`` with KeyboardInterrupt at its ``target``-th point: 0 if it was, else
    how many points it had (fewer than ``target``)."""
    interrupter = _Interrupter(target)
    sys.settrace(interrupter)
    try:
        change()
    except KeyboardInterrupt:
        return 0
    finally:
        sys.settrace(None)
    return interrupter.points


def _changes(state: Any, items: Any, table: Any) -> dict[str, Callable[[int], None]]:
    """Each kind of change, made the n-th time by ``changes[name](n)``."""

    def transaction(n: int) -> None:
        with state.transaction():
            state.a -= 1
            items.append(n)
            table["tx"] = {"n": n}
            state.b += 1

    def failing_nested_block(n: int) -> None:
        with state.transaction():
            state.a += 1
            try:
                with state.transaction():
                    state.b -= 1
                    items.insert(0, n)
                    items.reverse()
                    raise ValueError("undo the nested block")
            except ValueError:
                pass
            state.b -= 1

    def several_deletes(n: int) -> None:
        items.extend([n, n + 1, n + 2, n + 3])
        del items[1::2]

    return {
        "scalar at the top": lambda n: setattr(state, "counter", n),
        "scalar nested": lambda n: table.__setitem__(f"k{n % 5}", n),
        "append": items.append,
        "insert": lambda n: items.insert(0, -n),
        "delete": lambda n: items.__delitem__(0) if len(items) > 3 else items.append(n),
        "several deletes": several_deletes,
        "splice": lambda n: items.__setitem__(slice(1, 3), [n, n]),
        "several sets": lambda n: items.__setitem__(slice(None, None, 2), [n] * len(items[::2])),
        "reverse": lambda n: items.reverse(),
        "sort": lambda n: items.sort(key=str),
        "update": lambda n: table.update({"u": n, f"v{n % 3}": [n], "w": {"n": n}}),
        "pop": lambda n: table.pop(next(iter(table))) if len(table) > 1 else table.update(p=n),
        "clear": lambda n: table.clear() if n % 2 else table.update(x=n, y=n),
        "container at the top": lambda n: state.__setitem__("blob", {"at": n, "l": [n]}),
        "transaction": transaction,
        "failing nested block": failing_nested_block,
        "compaction": lambda n: state.compact(),
    }


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="models the points of CPython 3.11 and later (RESUME)"
)
def test_an_interrupt_at_every_point_where_python_runs_a_handler(tmp_path: Path) -> None:
    directory = tmpfs_directory("persistedstate-points-") or tmp_path  # (fsyncs cost nothing)
    path = directory / "points.state"
    problems: list[str] = []
    runs = interrupted = 0
    points: dict[str, int] = {}
    kinds: dict[str, Callable[[int], None]] = {}
    try:
        state = PersistedState.open(path, compact_min_bytes=600, compact_ratio=0.5)
        state.update(items=[3, 1, 2], table={"k0": 0}, a=workers.TOTAL, b=0, counter=0)
        items, table = state["items"], state["table"]  # (kept: they must keep working)
        n = 0
        kinds = _changes(state, items, table)
        for name, change in kinds.items():
            n += 1
            change(n)  # (once untraced: the caches it fills would make the first runs differ)
            for target in range(1, _MAX_POINTS):
                n += 1
                runs += 1
                if len(items) > 8:  # (the same size each time: the same points)
                    del items[4:]
                if _interrupted_at(target, lambda: change(n)):  # noqa: B023 (called now)
                    break  # (it had fewer points than target: all of them were tried)
                interrupted += 1
                points[name] = target
                where = f"{name}, interrupted at point {target}"
                memory = state.copy()
                difference = first_difference(load(path), memory)
                if difference is not None:
                    problems.append(f"{where}: the file is not memory: {difference}")
                if state.counter != memory["counter"] or memory["a"] + memory["b"] != 1000:
                    problems.append(f"{where}: {state.counter!r} kept; {memory!r}")
                if len(problems) > 8:
                    break
            else:
                problems.append(f"{name}: more than {_MAX_POINTS} points: is it looping?")
        state.close(compact=False)
        with PersistedState.open(path) as reopened:
            difference = first_difference(reopened.copy(), memory)
            if difference is not None:
                problems.append(f"at the end, a reopen is not memory: {difference}")
        conflicts = sorted(entry.name for entry in directory.glob("*.conflict-*"))
        if conflicts:
            problems.append(f"conflict copies nobody caused: {conflicts}")
    finally:
        if directory != tmp_path:
            shutil.rmtree(directory, ignore_errors=True)
    print(f"\npoints: {runs} changes, {interrupted} interrupted, each at another point")
    print(", ".join(f"{name}: {count}" for name, count in points.items()))
    assert not problems, f"{len(problems)} broken promises:\n" + "\n".join(problems[:8])
    assert interrupted > 500, "too few points: is the library's code being traced?"
    assert len(points) == len(kinds), f"a kind of change was never interrupted: {points}"


@pytest.mark.parametrize("mode", ["default", "shared"])
def test_a_read_after_an_interrupted_settling_sees_the_whole_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A second interrupt lands while the first one's change is being settled (the change's
    record is in the file, half of it in memory): the next read sees all of it, and in shared
    mode another process's change made meanwhile after it. (A shared-mode read went around
    the settling lock and saw half of it; the operation, before it let go of the file, now
    settles again.)"""
    path = tmp_path / "settling.state"
    state = PersistedState.open(path, {"items": [0] * 6}, shared=mode == "shared")
    items = state["items"]
    apply = journal.Set.apply
    calls = 0

    def interrupted(change: journal.Set, undo: list[journal.Change] | None) -> None:
        nonlocal calls
        apply(change, undo)
        calls += 1
        if calls <= 2:  # after the change's first part, then while it is being settled
            raise KeyboardInterrupt

    monkeypatch.setattr(journal.Set, "apply", interrupted)
    with pytest.raises(KeyboardInterrupt):
        items[::2] = [7, 7, 7]  # three parts, one record
    monkeypatch.undo()
    assert calls == (3 if mode == "shared" else 2)  # (shared: settled before letting go)
    if mode == "shared":  # another process changes the list meanwhile, after our record
        _in_another_process(path, "s['items'].insert(0, 9); s.close()")
    expected = [9, 7, 0, 7, 0, 7, 0] if mode == "shared" else [7, 0, 7, 0, 7, 0]
    assert items[-2] == 7  # a read: the whole change, and whatever came after it
    assert load(path)["items"] == expected
    assert state.copy() == {"items": expected}
    items.append(1)
    state.close(compact=False)
    assert load(path) == {"items": [*expected, 1]}


def test_a_shared_process_settles_before_it_lets_go_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second interrupt lands while a change whose record is in the file, but not in
    memory, is being taken back (settled): the process must settle before it lets go of the
    write lock. It let go first, another process appended a change after that record, and the
    later take-back cut the other process's acknowledged change off the file."""
    path = tmp_path / "settling.state"
    state = PersistedState.open(path, {"items": [0]}, shared=True)
    apply, take_back = journal.Set.apply, storage.StateFile.take_back
    calls = {"apply": 0, "take_back": 0}

    def interrupted_apply(change: journal.Set, undo: list[journal.Change] | None) -> None:
        calls["apply"] += 1
        if calls["apply"] == 1:  # the record is written, the change not yet in memory
            raise KeyboardInterrupt
        apply(change, undo)

    def interrupted_take_back(file: storage.StateFile, data: bytes) -> None:
        calls["take_back"] += 1
        if calls["take_back"] == 1:  # the second interrupt, as settling begins
            raise KeyboardInterrupt
        take_back(file, data)

    monkeypatch.setattr(journal.Set, "apply", interrupted_apply)
    monkeypatch.setattr(storage.StateFile, "take_back", interrupted_take_back)
    with pytest.raises(KeyboardInterrupt):
        state["items"] = [1, 2]
    _in_another_process(path, "s['other'] = 1; s.close(compact=False)")
    assert state.copy() == {"items": [0], "other": 1}
    monkeypatch.undo()
    state.close(compact=False)
    assert load(path) == {"items": [0], "other": 1}  # the other process's change is kept


def _in_another_process(path: Path, code: str) -> None:
    """Run ``code`` in another process, with the state open in shared mode as ``s``."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from persistedstate import PersistedState; "
            f"s = PersistedState.open(sys.argv[1], shared=True, lock_timeout=60); {code}",
            str(path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(persistedstate.__file__).parents[1])},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
