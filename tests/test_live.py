"""Changing a running program's state from the command line (README, "Changing a running
program's state"; docs/design.md, "Handing the file over").

A real program (``_workers.py loop``) holds the state in the default mode; the test drives it
one step at a time over a pipe, so "the next operation after the command finished" is exact:
no timing is asserted. The commands are real ``persistedstate`` processes.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
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
