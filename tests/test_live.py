"""Changing a running program's state from the command line (README, "Changing a running
program's state"; docs/design.md, "Handing the file over").

A real program (``_workers.py loop``) holds the state in the default mode; the test drives it
one step at a time over a pipe, so "the next operation after the command finished" is exact:
no timing is asserted. The commands are real ``persistedstate`` processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Worker

from persistedstate import CorruptStateError, PersistedState, editing, load, state

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals"),
    pytest.mark.usefixtures("quiet_recovery_warnings"),
]

SRC = Path(__file__).resolve().parents[1] / "src"


def env(**extra: str) -> dict[str, str]:
    variables = {k: v for k, v in os.environ.items() if k not in ("VISUAL", "EDITOR")}
    variables["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(SRC), os.environ.get("PYTHONPATH")])
    )
    variables.update(extra)
    return variables


def command(*args: Any, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persistedstate", *map(str, args)],
        capture_output=True,
        text=True,
        env=env(**extra),
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


class Program(Worker):
    """``_workers.py loop``: a job that reads a setting and counts, one step per request."""

    def __init__(self, path: Path) -> None:
        super().__init__("loop", str(path), env=env())
        assert self.said() == "ready"

    def step(self) -> dict[str, Any]:
        self.tell("step")
        seen: dict[str, Any] = json.loads(self.said())
        return seen


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "job.state"


@pytest.fixture
def program(path: Path) -> Iterator[Program]:
    running = Program(path)
    yield running
    running.kill()


def test_the_next_step_after_a_set_sees_it_without_a_restart(path: Path, program: Program) -> None:
    """The program waits between steps (idle): the command still gets the file, and the very
    next step, a read then a read-modify-write, sees the new values."""
    assert program.step() == {"batch": 100, "counter": 1}
    done = command("set", path, "settings.batch", "20")
    assert done.returncode == 0, done.stderr
    assert program.step() == {"batch": 20, "counter": 2}
    assert command("set", path, "counter", "1000").returncode == 0
    assert program.step() == {"batch": 20, "counter": 1001}  # not 3: it read the new value
    assert command("set", path, "settings", "{batch: 5, mode: fast}").returncode == 0
    assert program.step() == {"batch": 5, "counter": 1002}  # a replaced dict, read again
    assert command("set", path, "note", "hello").returncode == 0
    assert command("del", path, "note").returncode == 0
    assert command("set", path, "note2", "kept").returncode == 0
    assert program.step() == {"batch": 5, "counter": 1003}
    program.close()
    assert load(path) == {
        "settings": {"batch": 5, "mode": "fast"},
        "counter": 1003,
        "note2": "kept",
    }
    assert not Path(f"{path}.lock").exists()


def test_a_busy_program_loses_nothing_to_commands(path: Path, tmp_path: Path) -> None:
    """A program counting as fast as it can until a command tells it to stop, and commands
    changing another key meanwhile: no change of either is lost, each command's change is in
    the file when it returns, and the program sees them all."""
    script = tmp_path / "busy.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from persistedstate import PersistedState
            state = PersistedState(sys.argv[1], counter=0)
            print("ready", flush=True)
            while "stop" not in state:
                state.counter += 1
            print(state.counter, state["extra"], flush=True)
            state.close()
            """
        )
    )
    busy = subprocess.Popen(
        [sys.executable, str(script), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert busy.stdout is not None
        assert busy.stdout.readline() == "ready\n"
        assert command("set", path, "extra", "[]").returncode == 0
        for number in range(4):
            done = command("set", path, f"extra.{number}", str(number))
            assert done.returncode == 0, done.stderr
            assert load(path)["extra"] == list(range(number + 1))  # (in the file at once)
        assert command("set", path, "stop", "true").returncode == 0
        out, err = busy.communicate(timeout=300)
        assert busy.returncode == 0, err
    finally:
        busy.kill()
        busy.wait()
    count, extra = out.split(" ", 1)
    assert extra.strip() == "[0, 1, 2, 3]"  # the program saw every change
    assert int(count) > 0
    assert load(path) == {"counter": int(count), "extra": [0, 1, 2, 3], "stop": True}


def write_editor(tmp_path: Path, body: str) -> str:
    script = tmp_path / "editor.py"
    script.write_text(
        "import pathlib, sys, time\npath = pathlib.Path(sys.argv[-1])\n" + textwrap.dedent(body),
        encoding="utf-8",
    )
    return shlex.join([sys.executable, str(script)])


def wait_for(flag: Path) -> None:
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert time.monotonic() < deadline, f"{flag} never appeared"
        time.sleep(0.01)


def test_edit_while_the_program_runs_merges_and_keeps_the_comments(
    path: Path, program: Program, tmp_path: Path
) -> None:
    """The person changes the setting (and writes comments) while the program counts: the
    person's key takes the person's value, the program's key keeps the program's, the
    comments survive, and the program reads the setting at its next step."""
    program.step()
    started, go = tmp_path / "started", tmp_path / "go"
    editor = write_editor(
        tmp_path,
        f"""
        text = path.read_text()
        pathlib.Path({str(started)!r}).touch()
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.01)
        text = "# tuned by hand\\n" + text.replace("batch: 100", "batch: 7  # smaller")
        path.write_text(text)
        """,
    )
    edit = subprocess.Popen(
        [sys.executable, "-m", "persistedstate", "edit", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(EDITOR=editor, TMPDIR=str(tmp_path)),
        stdin=subprocess.DEVNULL,
    )
    wait_for(started)
    assert program.step() == {"batch": 100, "counter": 2}  # meanwhile, the program counts
    assert program.step() == {"batch": 100, "counter": 3}
    go.touch()
    out, err = edit.communicate(timeout=120)
    assert edit.returncode == 0, err
    assert "saved" in out
    assert program.step() == {"batch": 7, "counter": 4}
    text = path.read_text()
    assert text.startswith("# tuned by hand\n")
    assert "batch: 7  # smaller" in text
    program.close()
    text = path.read_text()  # the program's own compaction kept the person's comments
    assert text.startswith("# tuned by hand\n")
    assert "batch: 7  # smaller" in text
    assert load(path) == {"settings": {"batch": 7}, "counter": 4}


def test_the_order_of_keys_an_edit_gives_survives_the_program_s_compaction(
    path: Path, program: Program, tmp_path: Path
) -> None:
    """The person puts the keys in another order and adds one at the top, at every level,
    in a file without comments, while the program runs: the program, which takes the edit in
    and then compacts the file, keeps that order (it used to write its own order back)."""
    program.step()
    editor = write_editor(
        tmp_path,
        """
        import yaml
        data = yaml.safe_load(path.read_text())
        path.write_text(
            f"added: 1\\ncounter: {data['counter']}\\n"
            "settings:\\n  mode: fast\\n  batch: 100\\n"
        )
        """,
    )
    done = command("edit", path, EDITOR=editor, TMPDIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert program.step() == {"batch": 100, "counter": 2}
    program.close()
    assert path.read_text() == "added: 1\ncounter: 2\nsettings:\n  mode: fast\n  batch: 100\n"


def test_a_key_both_changed_reopens_the_editor_naming_it(
    path: Path, program: Program, tmp_path: Path
) -> None:
    """The person and the program both change ``counter`` during the edit: nothing is saved,
    the editor opens again with a message naming the key; saving again keeps the person's
    value. The key only the person changed is saved too, and the program sees both."""
    program.step()
    started, go, rounds = tmp_path / "started", tmp_path / "go", tmp_path / "rounds"
    editor = write_editor(
        tmp_path,
        f"""
        rounds = pathlib.Path({str(rounds)!r})
        rounds.write_text(rounds.read_text() + path.read_text() + "\\n=====\\n"
                          if rounds.exists() else path.read_text() + "\\n=====\\n")
        pathlib.Path({str(started)!r}).touch()
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.01)
        text = path.read_text()
        text = text.replace("counter: 1", "counter: 500").replace("batch: 100", "batch: 3")
        path.write_text(text)
        """,
    )
    edit = subprocess.Popen(
        [sys.executable, "-m", "persistedstate", "edit", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(EDITOR=editor, TMPDIR=str(tmp_path)),
        stdin=subprocess.DEVNULL,
    )
    wait_for(started)
    assert program.step() == {"batch": 100, "counter": 2}  # the program changes counter too
    go.touch()
    _, err = edit.communicate(timeout=120)
    assert edit.returncode == 0, err
    assert "counter: you made it 500, and a running program made it 2 meanwhile" in err
    first, second = rounds.read_text().split("\n=====\n")[:2]
    assert "counter: 1\n" in first
    assert second.startswith("# persistedstate edit: ")  # the editor opened again, saying why
    assert "counter: you made it 500" in second
    assert "counter: 500" in second  # on the person's own text
    assert program.step() == {"batch": 3, "counter": 501}
    program.close()
    assert load(path) == {"settings": {"batch": 3}, "counter": 501}
    assert "persistedstate edit" not in path.read_text()  # the message lines were taken out


# -- a program that keeps changing a key the person changed (the editor reopened) ------------

# The editor's n-th run keeps the text it was given (given-n), says it started (started-n) and
# waits for go-n: the test makes the program's changes in between, so each round is exact.
LOCKSTEP = """
import os
rounds = pathlib.Path(os.environ["ROUNDS"])
n = len(list(rounds.glob("given-*"))) + 1
(rounds / f"given-{n}").write_text(path.read_text())
(rounds / f"started-{n}").touch()
while not (rounds / f"go-{n}").exists():
    time.sleep(0.01)
"""


class Edit:
    """``persistedstate edit`` with no terminal and a lockstep editor (``LOCKSTEP``, then
    ``body``, which sees the run number ``n``); ``run`` calls ``during(n)`` while the editor's
    n-th run waits, and fails the test at a run past ``most`` (the editor of the looping code
    opened forever)."""

    def __init__(self, path: Path, tmp_path: Path, body: str, *options: str) -> None:
        self.rounds = tmp_path / "rounds"
        self.rounds.mkdir()
        self.temp = tmp_path / "tmp"
        self.temp.mkdir()
        editor = write_editor(tmp_path, LOCKSTEP + textwrap.dedent(body))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "persistedstate", "edit", *options, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(EDITOR=editor, TMPDIR=str(self.temp), ROUNDS=str(self.rounds)),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.runs = 0

    def run(self, during: Callable[[int], object], most: int) -> tuple[int, str, str]:
        try:
            while self._next_run():
                self.runs += 1
                assert self.runs <= most, f"the editor opened a {self.runs}th time"
                during(self.runs)
                (self.rounds / f"go-{self.runs}").touch()
            out, err = self.process.communicate(timeout=120)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):  # the edit and its editor (which
                os.killpg(self.process.pid, signal.SIGKILL)  # holds its pipes) alike
            self.process.communicate()
            raise
        return self.process.returncode, out, err

    def _next_run(self) -> bool:
        """Wait for the editor's next run (True) or the end of the edit (False)."""
        started = self.rounds / f"started-{self.runs + 1}"
        deadline = time.monotonic() + 60
        while True:
            ended = self.process.poll() is not None  # (first: the editor ran before it ended)
            if started.exists():
                return True
            if ended:
                return False
            assert time.monotonic() < deadline, "neither the editor nor the edit went on"
            time.sleep(0.01)

    def given(self, run: int) -> str:
        return (self.rounds / f"given-{run}").read_text()


FIRST_EDIT = """
if n == 1:
    text = path.read_text().replace("counter: 1", "counter: 500")
    path.write_text(text.replace("batch: 100", "batch: 3"))
"""


@pytest.mark.parametrize(
    "reopened", ["path.write_text(path.read_text())", "pass"], ids=["saved", "untouched"]
)
def test_saving_the_reopened_edit_as_it_is_keeps_your_value_while_the_program_changes_it(
    path: Path, program: Program, tmp_path: Path, reopened: str
) -> None:
    """README, edit, step 4: "Save it as it is to keep your values", while the program changes
    the key again with the editor open the second time (saved unchanged, or closed without
    saving): the edit ends and the person's value is in the file (the editor reopened forever)."""
    program.step()
    edit = Edit(path, tmp_path, FIRST_EDIT + f"else:\n    {reopened}\n")
    status, out, err = edit.run(lambda run: program.step(), most=3)  # it counts meanwhile
    assert (status, out) == (0, f"{path}: saved\n"), err
    assert edit.runs == 2
    assert "counter: you made it 500, and a running program made it 2 meanwhile" in edit.given(2)
    assert load(path) == {"settings": {"batch": 3}, "counter": 500}  # not the program's 3
    assert program.step() == {"batch": 3, "counter": 501}
    assert list(edit.temp.iterdir()) == []


def test_a_key_you_were_told_about_takes_the_value_you_give_it_next(
    path: Path, program: Program, tmp_path: Path
) -> None:
    """The person changes the counter at every run of the editor, and the program counts at
    every run too: the key named once is not asked about again, the person's last value wins."""
    program.step()
    edit = Edit(
        path,
        tmp_path,
        """
        import re
        path.write_text(re.sub("counter: [0-9]+", f"counter: {100 * n}", path.read_text()))
        """,
    )
    status, out, err = edit.run(lambda run: program.step(), most=3)
    assert (status, out) == (0, f"{path}: saved\n"), err
    assert edit.runs == 2
    assert load(path) == {"settings": {"batch": 100}, "counter": 200}
    assert program.step() == {"batch": 100, "counter": 201}


def test_an_edit_that_conflicts_anew_at_every_save_ends_keeping_your_text(
    path: Path, tmp_path: Path
) -> None:
    """At every run of the editor the person and the program both change a key not named
    before (and both change ``done_count``, which the program counts): after the reopens the
    README allows, the edit fails (exit status 1) leaving the file as the program has it,
    every change it acknowledged in it, and the person's last text kept where it says."""
    path.write_text("done_count: 0\n" + "".join(f"k{key}: 0\n" for key in range(1, 7)))
    program = Worker("drive", str(path), "0", env=env())
    try:
        assert program.said() == "ready"

        def during(run: int) -> None:
            for change in (
                f"state.__setitem__('k{run}', 'program {run}')",
                "state.__setitem__('done_count', state['done_count'] + 1)",
            ):
                program.tell(change)
                assert program.said() == "None"  # made

        edit = Edit(
            path,
            tmp_path,
            """
            import re
            text = re.sub("done_count: .*", f"done_count: {100 * n}", path.read_text())
            path.write_text(re.sub(f"k{n}: .*", f"k{n}: yours {n}", text))
            """,
        )
        status, out, err = edit.run(during, most=4)  # 3 reopens
        assert (status, out) == (1, ""), err
        assert edit.runs == 4
        assert "k4: you made it yours 4, and a running program made it program 4" in err
        assert err.count("done_count: you made it") == 1  # named once, never again
        assert f"{path}: the edit was not saved" in err
        assert f"{path} is as the program has it" in err
        found = re.search("Your edit is kept in (.+?): ", err)
        assert found, err
        kept = Path(found[1])
        assert list(edit.temp.iterdir()) == [kept]
        assert yaml.safe_load(kept.read_text()) == {
            "done_count": 400,
            **{f"k{key}": f"yours {key}" for key in range(1, 5)},
            "k5": 0,
            "k6": 0,
        }
        theirs = {"done_count": 4, **{f"k{key}": f"program {key}" for key in range(1, 5)}}
        assert load(path) == {**theirs, "k5": 0, "k6": 0}
        program.close()
        assert load(path) == {**theirs, "k5": 0, "k6": 0}
    finally:
        program.kill()


def test_an_edit_the_program_keeps_the_file_from_at_save_time_is_kept(
    path: Path, tmp_path: Path
) -> None:
    """README "edit": the program enters a transaction while the person edits and keeps the
    file past --wait when the edit is saved: the edit fails (exit status 1), the file is as
    the program has it, and the person's text is kept where the message says."""
    path.write_text("a: 1\nb: 1\n")
    program = Worker("drive", str(path), "0", env=env())
    try:
        assert program.said() == "ready"

        def during(run: int) -> None:
            held = "vars(__import__('__main__')).setdefault('held', state.transaction())"
            program.tell(f"{held}.__enter__()")  # (kept there, it stays open)
            assert program.said().startswith("PersistedState(")  # (what __enter__ gives)

        edit = Edit(path, tmp_path, "path.write_text('a: 2\\nb: 1\\n')", "--wait", "1")
        status, out, err = edit.run(during, most=1)
        assert (status, out) == (1, ""), err
        assert f"{path} is busy" in err and "The edit was not saved" in err
        found = re.search("it is kept in (.+?): ", err)
        assert found, err
        assert Path(found[1]).read_text() == "a: 2\nb: 1\n"
        assert list(edit.temp.iterdir()) == [Path(found[1])]
        assert load(path) == {"a": 1, "b": 1}
    finally:
        program.kill()


def test_an_editor_failing_after_a_reopen_saves_nothing(
    path: Path, program: Program, tmp_path: Path
) -> None:
    program.step()
    edit = Edit(path, tmp_path, FIRST_EDIT + "else:\n    raise SystemExit(1)\n")
    status, out, err = edit.run(lambda run: program.step(), most=2)
    assert (status, out) == (1, ""), err
    assert "the editor exited with status 1; the edit was not saved" in err
    assert load(path) == {"settings": {"batch": 100}, "counter": 3}
    assert list(edit.temp.iterdir()) == []


def test_a_session_keeps_your_value_of_a_key_it_told_you_about(path: Path) -> None:
    """After a conflict, the program changes both keys again: the person's value saved as it
    was wins; the program's value typed back keeps the program's, as it is now."""
    with PersistedState(path, a=1, b=1):
        pass
    session = editing.EditSession(str(path), wait=10)
    session.start()
    with state.command(path) as other:
        other.a = other.b = 2
    assert [conflict.keys for conflict in session.save(b"a: 5\nb: 5\n")] == [("a",), ("b",)]
    with state.command(path) as other:
        other.a = other.b = 3
    assert session.save(b"a: 5\nb: 2\n") == []
    assert load(path) == {"a": 5, "b": 3}


def test_a_command_killed_holding_the_file_blocks_nobody(path: Path, program: Program) -> None:
    """A script changing the state as a command does is killed while it holds the write lock:
    the program goes on, and a torn record it may have left is cut off."""
    program.step()
    holding = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from persistedstate import state; "
            "s = state.command(sys.argv[1]); s['note'] = 'from the script'; "
            "print('holding', flush=True); time.sleep(600)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert holding.stdout is not None
        assert holding.stdout.readline() == "holding\n"
        with open(path, "ab") as file:  # what a write cut short by the kill would leave
            file.write(b'--- ["set", [], "torn", ')
        holding.send_signal(signal.SIGKILL)
        holding.wait(timeout=30)
    finally:
        holding.kill()
        holding.wait()
    assert program.step() == {"batch": 100, "counter": 2}
    program.close()
    assert load(path) == {"settings": {"batch": 100}, "counter": 2, "note": "from the script"}


def test_a_command_in_the_process_holding_the_file_is_refused_plainly(path: Path) -> None:
    with PersistedState(path, n=1) as held:
        with pytest.raises(Exception, match="open in this very process"):
            state.command(path)
        assert held.n == 1


def test_a_command_leaves_the_compaction_to_the_program_that_has_the_file_open(
    path: Path, program: Program
) -> None:
    """README "Changing a running program's state": the command appends its change and
    returns; the program compacts the file (here when it closes), so it waits only for the
    change itself, not for a rewrite of the file."""
    program.step()
    before = path.read_text()
    assert command("set", path, "settings.batch", "20").returncode == 0
    after = path.read_text()
    assert after.startswith(before) and len(after) > len(before)  # appended, not rewritten
    assert load(path)["settings"] == {"batch": 20}
    assert program.step() == {"batch": 20, "counter": 2}
    program.close()
    assert path.read_text() == "settings:\n  batch: 20\ncounter: 2\n"  # compacted by it


HEADING = "# The lines below are changes made after the document above was written"


def _hand_edit_is_refused(path: Path, old: str, new: str) -> None:
    """The heading heads the records, so a person's later edit of the document (no program
    running) is refused, not undone by the records without a word."""
    text = path.read_text()
    assert HEADING in text.split("\n--- ", 1)[0], text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(CorruptStateError, match="persistedstate compact"):
        load(path)


def test_records_a_program_writes_after_a_command_come_under_the_heading(
    path: Path, program: Program
) -> None:
    """`persistedstate compact` leaves the file compacted; the program's next record is the
    first one after the document, and brings the heading (it came without one)."""
    program.step()
    assert command("set", path, "settings.batch", "20").returncode == 0
    assert command("compact", path).returncode == 0
    assert path.read_text().count("\n") == 3  # (one document: settings, batch, counter)
    assert program.step() == {"batch": 20, "counter": 2}
    program.kill()  # (the records stay)
    _hand_edit_is_refused(path, "batch: 20", "batch: 30")


def test_records_an_edit_writes_after_the_person_s_text_come_under_the_heading(
    path: Path,
) -> None:
    with PersistedState(path, a=1, b=1):
        pass
    session = editing.EditSession(str(path), wait=10)
    session.start()
    with state.command(path) as other:  # a program changes b meanwhile
        other.b = 2
    assert session.save(b"a: 5\nb: 1\n") == []
    assert load(path) == {"a": 5, "b": 2}
    _hand_edit_is_refused(path, "a: 5", "a: 6")


def test_a_damaged_file_changed_during_its_repair_is_reported_once(path: Path) -> None:
    path.write_text("a: [1\n")
    session = editing.EditSession(str(path), wait=10)
    assert session.start() == b"a: [1\n"
    path.write_text("a: [1, 2\n")  # someone else changes it meanwhile
    assert [conflict.keys for conflict in session.save(b"a: [1]\n")] == [()]
    path.write_text("a: [1, 2, 3\n")  # and again: the person was told, and saves as it is
    assert session.save(b"a: [1]\n") == []
    assert path.read_text() == "a: [1]\n"
