"""The file a person opens tells the truth: clean at rest, the records explained, edits never
silently undone.

- A new file's first document holds its defaults (not ``{}`` followed by records).
- A state still open at a normal interpreter exit is compacted then (a real child interpreter
  runs each case); a kill leaves the journal, which is what it is for.
- The first record after each compaction is preceded by a comment line that says what the lines
  below are, and records the checksum of the document above it.
- An edit of that document while records follow it is refused, saying why and what to do
  (README.md, "Editing the state by hand").
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
import yaml
from conftest import file_bytes

from persistedstate import CorruptStateError, PersistedState, load

HEADING = "# The lines below are changes made after the document above was written"

needs_signals = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")


def run_program(
    program: str, *args: object, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``program`` in a fresh interpreter (this one's), ``sys.argv[1:]`` being ``args``."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(program), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def documents(path: Path) -> list[object]:
    return list(yaml.safe_load_all(path.read_text("utf-8")))


def lines(path: Path) -> list[str]:
    return path.read_text("utf-8").splitlines()


# -- the first snapshot ------------------------------------------------------------------------


@needs_signals
@pytest.mark.parametrize("how", ["constructor", "open"])
def test_a_new_state_killed_before_its_first_compaction_shows_its_defaults(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "job.state"
    opening = {
        "constructor": "PersistedState(sys.argv[1], last_id=0, done=[])",
        "open": 'PersistedState.open(sys.argv[1], {"last_id": 0, "done": []})',
    }[how]
    done = run_program(
        f"""
        import os, signal, sys
        from persistedstate import PersistedState
        STATE = {opening}
        STATE.last_id = 1
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        path,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert lines(path)[:2] == ["last_id: 0", "done: []"]
    assert documents(path)[0] == {"last_id": 0, "done": []}  # not {}: it does not look empty
    assert load(path) == {"last_id": 1, "done": []}


# -- at interpreter exit -------------------------------------------------------------------------

SEED_EXAMPLE = """
    import sys
    from persistedstate import PersistedState

    STATE = PersistedState(sys.argv[1], last_id=0)
    for current_id in range(STATE.last_id + 1, 1001):
        STATE.last_id = current_id
"""


@pytest.mark.parametrize(
    ("ending", "status"),
    [("", 0), ("sys.exit(3)", 3), ("raise RuntimeError('the program failed')", 1)],
    ids=["end-of-program", "sys-exit", "unhandled-exception"],
)
def test_a_state_left_open_is_compacted_at_a_normal_exit(
    tmp_path: Path, ending: str, status: int
) -> None:
    path = tmp_path / "example.state"
    done = run_program(SEED_EXAMPLE + "    " + ending + "\n", path)
    assert done.returncode == status, done.stderr
    assert path.read_text("utf-8") == "last_id: 1000\n"  # the README's example, clean at rest
    assert "persistedstate" not in done.stderr.replace(str(path), "")  # no warning, no traceback


def test_exit_compacts_the_states_still_open_with_changes_and_only_those(tmp_path: Path) -> None:
    """A state dropped unclosed is not kept alive for exit (it freed its lock and is not
    compacted: its journal waits for the next open); one only read is not rewritten."""
    dropped, kept, read = tmp_path / "dropped.state", tmp_path / "kept.state", tmp_path / "r.state"
    read.write_text("a: 1\n", encoding="utf-8")
    before = os.stat(read)
    done = run_program(
        """
        import gc, subprocess, sys
        from persistedstate import PersistedState

        state = PersistedState(sys.argv[1], n=0)
        state.n += 1
        del state
        gc.collect()
        other = "import sys; from persistedstate import PersistedState as P; " \
            "P(sys.argv[1]).close(compact=False)"
        opened = subprocess.run([sys.executable, "-c", other, sys.argv[1]], check=False)
        print("dropped state unlocked:", opened.returncode == 0)
        KEPT = PersistedState(sys.argv[2], n=0)
        KEPT.n += 1
        READ = PersistedState(sys.argv[3])
        print("read:", READ.a)
        """,
        dropped,
        kept,
        read,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "dropped state unlocked: True\nread: 1\n"
    assert kept.read_text("utf-8") == "n: 1\n"
    assert len(lines(dropped)) == 3  # document, heading, the record: as it was dropped
    assert load(dropped) == {"n": 1}
    after = os.stat(read)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert done.stderr == ""


def test_a_list_kept_after_its_state_was_dropped_is_written_and_exit_leaves_the_file_whole(
    tmp_path: Path,
) -> None:
    """A program that keeps only a nested list goes on changing the file through it; at exit
    that state is not compacted (its data went with the state object), so the file keeps
    every value, not an empty document."""
    path = tmp_path / "kept-list.state"
    done = run_program(
        """
        import gc, sys
        from persistedstate import PersistedState

        state = PersistedState(sys.argv[1], done=[], last_id=7)
        done = state.done
        del state
        gc.collect()
        done.append("a")
        done.append("b")
        """,
        path,
    )
    assert done.returncode == 0, done.stderr
    assert load(path) == {"done": ["a", "b"], "last_id": 7}
    assert done.stderr == ""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_that_exits_normally_leaves_its_parent_s_state_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.state"
    done = run_program(
        """
        import os, sys
        from persistedstate import PersistedState

        STATE = PersistedState(sys.argv[1], n=0)
        STATE.n += 1
        before = open(sys.argv[1], "rb").read()
        if os.fork() == 0:
            sys.exit(0)  # a normal exit of the child: its exit handlers run
        os.wait()
        print("untouched by the child:", open(sys.argv[1], "rb").read() == before)
        STATE.n += 1  # and the parent still holds it
        """,
        path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "untouched by the child: True\n"
    # The child did not try, and fail, to compact its parent's state; and the parent was not
    # multi-threaded when it forked (the handover thread stops around fork), so Python 3.12
    # did not warn that fork() may deadlock. 3.13.0 warns anyway: it counts the threads after
    # the hook that starts the thread again (CPython gh-137109, fixed since).
    problems = done.stderr.splitlines()
    if sys.version_info >= (3, 13):
        problems = [
            line
            for line in problems
            if "use of fork() may lead to deadlocks" not in line and "os.fork()" not in line
        ]
    assert problems == []
    assert path.read_text("utf-8") == "n: 2\n"  # the parent's exit compacted it


def test_a_failure_at_exit_is_a_logged_warning_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    done = run_program(
        """
        import os, sys
        from persistedstate import PersistedState

        STATE = PersistedState(sys.argv[1], n=0)
        STATE.n += 1
        with open(sys.argv[1] + ".new", "w") as theirs:
            theirs.write("theirs: true\\n")
        os.replace(sys.argv[1] + ".new", sys.argv[1])  # replaced behind the state's back
        """,
        path,
    )
    assert done.returncode == 0, done.stderr
    assert "not compacted at exit" in done.stderr
    assert "replaced by another file" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Exception ignored" not in done.stderr
    assert load(path) == {"theirs": True}  # their file is kept, ours saved beside it
    [ours] = tmp_path.glob("job.state.conflict-*")
    assert load(ours) == {"n": 1}


def test_a_state_taken_over_in_this_process_does_not_stop_the_others_compacting_at_exit(
    tmp_path: Path,
) -> None:
    """The earlier object of a file opened twice (README, API: it is closed) is still
    referenced at exit: the exit compacts every state still open, without a traceback."""
    done = run_program(
        """
        import sys
        from persistedstate import PersistedState

        first = PersistedState(sys.argv[1], batch=1)
        second = PersistedState(sys.argv[1])  # takes the file over from first
        second.batch = 2
        second.close()
        other = PersistedState(sys.argv[2], n=0)
        other.n = 1
        """,
        tmp_path / "job.state",
        tmp_path / "other.state",
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "Exception ignored" not in done.stderr
    assert (tmp_path / "other.state").read_text("utf-8") == "n: 1\n"  # compacted
    assert load(tmp_path / "job.state") == {"batch": 2}


def test_exit_does_not_wait_long_for_a_thread_that_holds_the_state(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    done = run_program(
        """
        import sys, threading
        from persistedstate import PersistedState

        STATE = PersistedState(sys.argv[1], n=0)
        STATE.n += 1
        inside = threading.Event()

        def stuck() -> None:
            with STATE.transaction():
                STATE.n += 1
                inside.set()
                threading.Event().wait()  # forever: a daemon thread dies with the process

        threading.Thread(target=stuck, daemon=True).start()
        inside.wait()
        """,
        path,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "not compacted at exit: another thread held the state" in done.stderr
    assert load(path) == {"n": 1}  # the journal, as it was: the transaction never ended


# -- the line that heads the records ----------------------------------------------------------


def test_a_line_before_the_first_record_says_what_the_lines_below_are(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    state = PersistedState(path, last_id=0)
    assert lines(path) == ["last_id: 0"]  # nothing below the document: no heading
    state.last_id = 1
    state.last_id = 2
    text = lines(path)
    assert text[0] == "last_id: 0"
    assert text[1].startswith(HEADING)
    assert "persistedstate compact FILE" in text[1]
    assert text[2:] == ['--- ["set", [], "last_id", 1]', '--- ["set", [], "last_id", 2]']
    assert documents(path) == [{"last_id": 0}, ["set", [], "last_id", 1], ["set", [], "last_id", 2]]
    state.compact()
    assert lines(path) == ["last_id: 2"]
    state.last_id = 3
    assert [line.startswith(HEADING) for line in lines(path)] == [False, True, False]
    state.close()
    assert lines(path) == ["last_id: 3"]


def _cut_short(path: Path, good: bytes, torn: bytes) -> None:
    path.write_bytes(good + torn)


def test_a_write_torn_anywhere_in_the_heading_or_its_record_is_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The heading and the first record are one write; a power cut may keep any prefix of
    it. Each one opens as the document (plus the record, if whole), and the next writer
    leaves a file with one heading, read back exactly."""
    path = tmp_path / "job.state"
    with PersistedState(path, done=["a"]) as state:
        pass
    document = file_bytes(path)
    state = PersistedState(path)
    state.done.append("b")
    state.close(compact=False)
    written = file_bytes(path)[len(document) :]
    assert written.startswith(HEADING.encode()) and written.count(b"\n") == 2
    caplog.set_level(logging.WARNING, logger="persistedstate")
    for cut in range(len(written) + 1):
        _cut_short(path, document, written[:cut])
        expected = {"done": ["a", "b"]} if cut >= len(written) - 1 else {"done": ["a"]}
        caplog.clear()
        assert load(path) == expected, cut
        if 0 < cut < len(written) - 1:  # (the whole record lacking only its newline is kept)
            assert "incomplete last journal record" in caplog.text, cut
        with PersistedState(path) as state:
            assert state == expected, cut
            state.done.append("c")
            state.close(compact=False)
        heading = [line for line in lines(path) if line.startswith("#")]
        assert len(heading) == 1 and heading[0].startswith(HEADING), (cut, lines(path))
        assert load(path) == {"done": [*expected["done"], "c"]}, cut


def test_the_heading_is_never_kept_as_a_person_s_comment(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    path.write_text("# my job\nlast_id: 0  # where to resume\n", encoding="utf-8")
    state = PersistedState(path)
    state.last_id = 5
    state.close(compact=False)  # what a kill leaves: the heading and a record
    assert sum(line.startswith(HEADING) for line in lines(path)) == 1
    with PersistedState(path) as state:  # reopened with its heading; compacted on close
        state.last_id = 6
    assert path.read_text("utf-8") == "# my job\nlast_id: 6  # where to resume\n"


# -- a person's edit -------------------------------------------------------------------------


def _killed_mid_run(path: Path) -> bytes:
    """A file as a killed program leaves it: document, heading, records; returns its bytes."""
    state = PersistedState(path, last_id=0, note="nightly")
    for current_id in range(1, 101):
        state.last_id = current_id
    state.close(compact=False)
    return file_bytes(path)


def _edited(path: Path, old: str, new: str) -> bytes:
    text = path.read_text("utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")
    return file_bytes(path)


def _assert_refused(path: Path) -> CorruptStateError:
    before = file_bytes(path)
    with pytest.raises(CorruptStateError) as caught:
        PersistedState(path)
    with pytest.raises(CorruptStateError):
        load(path)
    assert file_bytes(path) == before  # untouched
    error = caught.value
    assert error.line == 3  # the heading, just below the document
    assert "was edited after the 100 changes below it were made" in error.problem
    assert "could undo the edit without a word" in error.problem
    assert f"persistedstate compact {path}" in error.problem
    assert "delete line 3" in error.problem
    assert error.hint is not None
    return error


def test_an_edit_of_a_value_the_records_change_is_refused_not_undone(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    original = _killed_mid_run(path)
    _edited(path, "last_id: 0\n", "last_id: 0  # restart\n")
    error = _assert_refused(path)
    assert "(they change 'last_id')" in error.problem
    check = subprocess.run(
        [sys.executable, "-m", "persistedstate", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 1 and "was edited after" in check.stderr
    # What the message says, to keep both: undo the edit, compact, edit again.
    path.write_bytes(original)
    compact = subprocess.run(
        [sys.executable, "-m", "persistedstate", "compact", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert compact.returncode == 0, compact.stderr
    _edited(path, "last_id: 100\n", "last_id: 0  # restart\n")
    with PersistedState(path) as state:
        assert state.last_id == 0


def test_an_edit_of_a_value_no_record_changes_is_refused_too(tmp_path: Path) -> None:
    """The library cannot tell which values a person changed (it keeps a checksum of the
    document, not the document), so every edit is refused alike; the message names what the
    changes below touch, so the person can tell that applying them keeps their edit."""
    path = tmp_path / "job.state"
    _killed_mid_run(path)
    edited = _edited(path, "note: nightly\n", "note: weekly\n")
    error = _assert_refused(path)
    assert "(they change 'last_id')" in error.problem  # not 'note'
    # Delete the heading: the changes apply on top of the edit.
    path.write_bytes(b"\n".join(line for line in edited.split(b"\n") if b"# The lines" not in line))
    assert load(path) == {"last_id": 100, "note": "weekly"}
    # Or delete the heading and every line below it: the document as edited.
    path.write_bytes(edited[: edited.index(HEADING.encode())])
    assert load(path) == {"last_id": 0, "note": "weekly"}
    # (Deleting the records alone does that too: nothing is left below that could undo it.)
    path.write_bytes(edited[: edited.index(b"\n---") + 1])
    with PersistedState(path) as state:
        assert state == {"last_id": 0, "note": "weekly"}
        state.last_id = 1
    assert path.read_text("utf-8") == "last_id: 1\nnote: weekly\n"


def test_the_heading_records_the_checksum_of_the_document_above_it(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    raw = _killed_mid_run(path)
    document = raw[: raw.index(HEADING.encode())]
    assert f"(document crc32 {zlib.crc32(document):08x})".encode() in raw
