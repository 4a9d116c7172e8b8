"""Others' changes to a typed state while it is open (README, "Typed states"; docs/design.md,
"Others' changes to a typed state").

A typed program (``_workers.py drive-typed``, holding ``_typed_job.Job``) runs in a real
process, in the default mode or in shared mode; real ``persistedstate`` commands, or an untyped
shared-mode process (``_workers.py drive``), change the file. Each request to the program is
one operation, so "the next operation" is exact; nothing is timed.
"""

from __future__ import annotations

import ast
import gc
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _typed_job import Job
from conftest import Worker
from test_interrupts import _Interrupter
from test_live import command, env, write_editor
from test_shared import Driven

from persistedstate import CorruptStateError, load

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="processes and their locks: Linux"),
    pytest.mark.usefixtures("quiet_recovery_warnings"),
]


class Typed(Worker):
    """The typed program: each call is one operation, its value or its error's fields."""

    def __init__(self, path: Path, *, shared: bool) -> None:
        super().__init__("drive-typed", str(path), "1" if shared else "0", env=env())
        assert self.said() == "ready"

    def __call__(self, expression: str) -> dict[str, Any]:
        self.tell(expression)
        said: dict[str, Any] = json.loads(self.said())
        return said

    def value(self, expression: str) -> Any:
        said = self(expression)
        assert "value" in said, said
        return ast.literal_eval(said["value"])

    def memory(self) -> Any:
        return self.value("state.copy()")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "job.state"


@pytest.fixture
def job(path: Path) -> Iterator[Typed]:
    running = Typed(path, shared=False)
    yield running
    running.kill()


@pytest.fixture
def shared(path: Path) -> Iterator[tuple[Typed, Driven]]:
    typed = Typed(path, shared=True)
    untyped = Driven(path)  # (an untyped program knows no types: it writes what it is given)
    yield typed, untyped
    typed.kill()
    untyped.kill()


def run(*args: Any) -> None:
    done = command(*args)
    assert done.returncode == 0, done.stderr


def refused(said: dict[str, Any], path: Path, key: str, problem: str) -> None:
    """``said`` is the CorruptStateError of a change to ``key`` made outside the program."""
    assert said.get("error") == "CorruptStateError", said
    assert said["path"] == str(path)
    assert said["problem"].startswith(f"key {key}: {problem}"), said["problem"]
    assert "from a change made outside this program" in said["problem"] or (
        "from the change on this line, made outside this program" in said["problem"]
    )
    assert "persistedstate " in said["hint"] and str(path) in said["hint"]
    assert "This program has taken the change in" in said["message"]


def at_record(said: dict[str, Any], path: Path, record: str) -> None:
    """``said`` points at the line of the file that holds ``record``, the change that set it."""
    assert said["line"] is not None, said
    assert said["source_line"] == path.read_text().splitlines()[said["line"] - 1]
    assert said["source_line"] == f"--- {record}"


def test_a_set_command_s_value_that_does_not_fit_raises_at_the_next_operation(
    path: Path, job: Typed
) -> None:
    """``persistedstate set job.state last_id abc`` while the job runs: the job's next
    operation (here a read of another key) raises, naming the file, the line of the record
    that set the value, the key, the type and the fix; memory is the file (``load``, which a
    reopen gives), and later operations go on. A value that fits, set the same way, is taken
    in without a word."""
    assert job.value("state.last_id") == 0
    run("set", path, "last_id", "abc")
    said = job("state.done")
    refused(said, path, "last_id", "expected int, found str 'abc' (the type Job declares)")
    at_record(said, path, '["set", [], "last_id", "abc"]')
    assert f"persistedstate set {path} last_id VALUE" in said["hint"]
    assert job.memory() == load(path)
    assert job.value("state.last_id") == "abc"  # raised once; the program goes on
    run("set", path, "last_id", "7")
    assert job.value("state.last_id") == 7
    assert job.value("state.done.append('x')") is None
    assert (
        job.memory()
        == load(path)
        == {
            "last_id": 7,
            "done": ["x"],
            "settings": {"batch": 100, "label": "nightly"},
            "ratio": None,
        }
    )
    # Until the job's next operation, each command handing the file back checks again what
    # is owed: still so after a change elsewhere, not once a person fixed it.
    run("set", path, "last_id", "oops")
    run("set", path, "settings.label", "weekly")  # (a change inside: the data are read)
    said = job("state.ratio")
    refused(said, path, "last_id", "expected int, found str 'oops'")
    at_record(said, path, '["set", [], "last_id", "oops"]')
    assert job.value("state.settings['label']") == "weekly"
    run("set", path, "last_id", "oops")
    run("set", path, "last_id", "8")
    assert job.value("state.last_id") == 8


def test_the_operation_that_takes_a_misfit_in_does_nothing_of_its_own(
    path: Path, job: Typed
) -> None:
    assert job.value("setattr(state, '_kept', state.done)") is None  # (a list kept from before)
    run("set", path, "ratio", "fast")
    refused(job("len(state._kept)"), path, "ratio", "expected float | None, found str")
    run("set", path, "ratio", "faster")
    refused(job("state.done.append('x')"), path, "ratio", "expected float | None, found str")
    assert job.value("state.done") == []  # (not appended)
    assert load(path)["done"] == []
    job.value("setattr(state, 'ratio', 0.5)")  # assigning a value that fits fixes it
    assert load(path)["ratio"] == 0.5


def test_nested_values_that_do_not_fit_are_named_where_they_are(path: Path, job: Typed) -> None:
    run("set", path, "done", "[a, b, c, d]")
    assert job.value("len(state.done)") == 4  # (fits: taken in)
    run("set", path, "done.3", "5")
    said = job("state.last_id")
    refused(said, path, "done[3]", "expected str, found int 5")
    assert f"persistedstate set {path} done.3 VALUE" in said["hint"]
    assert job.memory() == load(path)
    run("set", path, "settings.batch", "many")
    said = job("state.last_id")
    refused(said, path, "settings['batch']", "expected int, found str 'many'")
    assert f"persistedstate set {path} settings.batch VALUE" in said["hint"]
    assert job.memory() == load(path)


def test_a_deleted_declared_key_raises_at_the_next_operation(path: Path, job: Typed) -> None:
    run("del", path, "last_id")
    said = job("state.ratio")
    refused(said, path, "last_id", "missing: Job requires it")
    assert said["hint"].startswith(f"give it a value: persistedstate set {path} last_id VALUE")
    run("del", path, "settings.label")
    refused(job("state.ratio"), path, "settings['label']", "missing: Settings requires it")
    assert job.memory() == load(path)
    assert "last_id" not in load(path)


def test_a_key_the_class_does_not_declare_set_from_outside(path: Path, job: Typed) -> None:
    run("set", path, "last_idd", "5")
    said = job("state.ratio")
    refused(said, path, "last_idd", "not a key of Job")
    assert said["hint"].startswith(f"delete it: persistedstate del {path} last_idd")


def test_a_value_that_does_not_fit_typed_in_edit_is_found_too(
    path: Path, job: Typed, tmp_path: Path
) -> None:
    """``persistedstate edit`` replaces the file with the person's text, which the program
    reads whole: what it holds is checked."""
    editor = write_editor(
        tmp_path, 'path.write_text(path.read_text().replace("last_id: 0", "last_id: abc"))\n'
    )
    done = command("edit", path, EDITOR=editor, TMPDIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    said = job("state.ratio")
    refused(said, path, "last_id", "expected int, found str 'abc'")
    assert said["source_line"] == "last_id: abc"
    assert job.memory() == load(path)


def test_a_shared_untyped_writer_s_misfit_raises_in_the_typed_process(
    path: Path, shared: tuple[Typed, Driven]
) -> None:
    """Shared mode: an untyped process sets a value the typed one's class does not allow; the
    typed process's next operation raises, at the line of the record, does nothing of its own,
    and later operations go on; a value that fits is taken in without a word."""
    typed, untyped = shared
    assert typed.value("state.last_id") == 0
    assert untyped("state.__setitem__('last_id', 'abc')") is None
    said = typed("state.__setitem__('ratio', 0.5)")
    refused(said, path, "last_id", "expected int, found str 'abc'")
    at_record(said, path, '["set", [], "last_id", "abc"]')
    assert typed.memory() == load(path)
    assert load(path)["ratio"] is None  # the refused operation did nothing
    assert typed.value("state.ratio") is None  # later operations go on
    assert untyped("state.__setitem__('last_id', 3)") is None
    assert typed.value("state.last_id") == 3
    assert untyped("state['done'].append('fine')") is None
    assert typed.value("list(state.done)") == ["fine"]
    assert untyped("state['done'].append(5)") is None
    said = typed("state.ratio")
    refused(said, path, "done[1]", "expected str, found int 5")
    assert f"persistedstate set {path} done.1 VALUE" in said["hint"]
    assert untyped("state['settings'].update(batch='x')") is None
    refused(typed("state.ratio"), path, "settings['batch']", "expected int, found str 'x'")
    assert untyped("state['settings'].pop('label')") == "nightly"
    refused(typed("state.ratio"), path, "settings['label']", "missing: Settings requires it")
    assert typed.memory() == load(path)
    # A misfit that a later change fixed before the typed process looked is not reported.
    assert untyped("state.__setitem__('last_id', 'abc')") is None
    assert untyped("state.__setitem__('last_id', 4)") is None
    assert typed.value("state.last_id") == 4


def test_close_is_an_operation_too_and_the_next_open_refuses_what_is_left(
    path: Path, job: Typed
) -> None:
    """A misfit taken in just before ``close()``: close raises it and closes nothing; the
    next close closes (memory is the file: nothing to lose); the next open refuses the file,
    as it refuses any file that does not fit."""
    run("set", path, "ratio", "fast")
    refused(job("state.close()"), path, "ratio", "expected float | None, found str 'fast'")
    assert job.value("state.ratio") == "fast"  # still open
    job.close()
    assert load(path)["ratio"] == "fast"
    with pytest.raises(CorruptStateError, match=r"key ratio: expected float \| None"):
        Job(path)


def test_a_report_no_operation_raised_is_logged_at_exit(path: Path, job: Typed) -> None:
    run("set", path, "last_id", "abc")
    _, err = job.proc.communicate(timeout=60)  # (its input ends: it exits, no operation run)
    assert job.proc.returncode == 0, err
    assert f"{path}, line " in err
    assert "key last_id: expected int, found str 'abc'" in err
    assert load(path)["last_id"] == "abc"


# A program that keeps a typed dict and reads it in a tight loop, with no pause between
# reads, while real ``set`` commands change it: a handover meanwhile must never let a read
# return the value that does not fit before the report (each round: a misfit, then a fix).
_READER = """
import json, subprocess, sys, time
from persistedstate import PersistedState, CorruptStateError

class Job(PersistedState):
    d: dict[str, int] = {"x": 0}

job = Job(sys.argv[1])
d = job.d
seen = []

def command(value):
    return subprocess.Popen(
        [sys.executable, "-m", "persistedstate", "set", sys.argv[1], "d.x", value]
    )

for round in range(1, int(sys.argv[2]) + 1):
    setting = command("abc")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            value = d["x"]
        except CorruptStateError:
            seen.append("report")
            break
        if value != round - 1:
            seen.append(repr(value))
            break
    else:
        seen.append("nothing")
    setting.wait()
    setting = command(str(round))
    while True:  # (the fix is taken in without a report; a late report is seen above)
        try:
            if d["x"] == round:
                break
        except CorruptStateError:
            seen.append("late report")
    setting.wait()
print(json.dumps(seen))
"""


def test_a_read_waiting_for_a_handover_raises_the_misfit_it_took_in(tmp_path: Path) -> None:
    """The read that waited while the handover took the misfit in is the operation that took
    it in: it raises the report, never returns the value (it did before the fix, most
    rounds: the read waited for the plain lock and went ahead when it was let go)."""
    rounds = 6
    done = subprocess.run(
        [sys.executable, "-c", _READER, str(tmp_path / "job.state"), str(rounds)],
        capture_output=True,
        text=True,
        env=env(),
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["report"] * rounds


def test_a_report_names_the_right_line_after_the_program_changes_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report reads the file it opened, not the path as named from the new directory
    (before the fix: a same-named file there, garbage, made the report, or its error escaped)."""
    monkeypatch.chdir(tmp_path)
    state = Job("job.state")
    try:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "job.state").write_bytes(b"{[: not yaml\n" * 3)
        monkeypatch.chdir(elsewhere)
        run("set", tmp_path / "job.state", "last_id", "abc")
        with pytest.raises(CorruptStateError) as raised:
            _ = state.last_id
        report = raised.value
        assert report.path == "job.state"
        assert report.problem.startswith("key last_id: expected int, found str 'abc'")
        lines = (tmp_path / "job.state").read_text().splitlines()
        assert report.line is not None
        assert lines[report.line - 1] == report.source_line
        assert '"last_id", "abc"' in lines[report.line - 1]
    finally:
        state.close()


def test_a_report_no_operation_raised_is_logged_when_the_state_is_dropped(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """README: "A report no operation raised is logged when the state is dropped"; it does
    not say that an operation did nothing and later ones go on: none will."""
    caplog.set_level(logging.WARNING, logger="persistedstate")
    state = Job(path)
    run("set", path, "last_id", "abc")  # (taken in by the handover, before it returns)
    del state
    gc.collect()
    logged = [record.getMessage() for record in caplog.records]
    assert len(logged) == 1, logged
    assert "key last_id: expected int, found str 'abc'" in logged[0]
    assert "later ones go on" not in logged[0]
    assert "no operation of the program raised it, and none will" in logged[0]
    assert load(path)["last_id"] == "abc"


class _InRaisingTheReport(_Interrupter):
    """The points of ``Core._raise_report`` and what it calls."""

    def _point(self) -> None:
        frame = sys._getframe(2)  # (the traced frame: _point's caller's caller)
        if frame.f_code.co_name in _RAISING_THE_REPORT:
            super()._point()


_RAISING_THE_REPORT = frozenset({"_raise_report", "_owe", "_plain_reads", "_forget_read"})


def test_an_interrupt_as_the_report_is_raised_never_loses_it(path: Path) -> None:
    """KeyboardInterrupt at each point where Python runs a signal handler in raising the
    report (``Core._raise_report`` and what it calls): the report is raised, or shown with
    the interrupt (its context), or still owed to the next operation; never lost (before the
    fix: an interrupt after the report was no longer owed, before its raise)."""
    state = Job(path)
    try:
        target = 1
        while True:
            run("set", path, "last_id", "abc")
            interrupter = _InRaisingTheReport(target)
            sys.settrace(interrupter)
            try:
                _ = state.last_id
            except CorruptStateError:
                interrupted = None
            except KeyboardInterrupt as error:
                interrupted = error
            finally:
                sys.settrace(None)
            if interrupted is not None and not isinstance(
                interrupted.__context__, CorruptStateError
            ):
                with pytest.raises(CorruptStateError, match="key last_id"):
                    _ = state.last_id  # (still owed)
            run("set", path, "last_id", "1")
            assert state.last_id == 1
            if interrupted is None:
                assert target > 3  # (the loop reached the library's code)
                break
            target += 1
    finally:
        state.close()
