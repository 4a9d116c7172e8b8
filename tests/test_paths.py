"""The path of a state: what it may name.

README "API": a state lives in a regular file (or a symbolic link to one); anything else is
refused at once, before anything is created.

The tests that could hang (a FIFO) run in a forked child with a timeout.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from conftest import needs_fork, run_in_fork

from persistedstate import PersistedState, PersistedStateError, load

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")


def _refusals(path: Path) -> str:
    """Every way to open or read ``path``, each with what it raised (in a child: may hang)."""

    def attempt() -> str:
        outcomes = []
        for name, call in [
            ("PersistedState", lambda: PersistedState(path)),
            ("PersistedState.open", lambda: PersistedState.open(path, lock_timeout=1)),
            ("load", lambda: load(path)),
        ]:
            try:
                call()
                outcomes.append(f"{name}: opened")
            except PersistedStateError as error:
                outcomes.append(f"{name}: PersistedStateError: {error}")
            except Exception as error:
                outcomes.append(f"{name}: {type(error).__name__}: {error}")
        return "\n".join(outcomes)

    return run_in_fork(attempt, timeout=20)


# -- only regular files ----------------------------------------------------------------------


@posix_only
@needs_fork
def test_a_fifo_is_refused_at_once_and_left_as_it_is(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.state"
    os.mkfifo(fifo)
    outcomes = _refusals(fifo).splitlines()
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert "PersistedStateError" in outcome, outcome
        assert f"{fifo} is a named pipe (FIFO), not a regular file" in outcome
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["pipe.state"]  # no lock file beside it


@posix_only
@needs_fork
def test_a_link_to_a_fifo_is_refused_too(tmp_path: Path) -> None:
    fifo, link = tmp_path / "pipe", tmp_path / "link.state"
    os.mkfifo(fifo)
    link.symlink_to(fifo)
    for outcome in _refusals(link).splitlines():
        assert "is a named pipe (FIFO), not a regular file" in outcome, outcome


def test_a_directory_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    directory = tmp_path / "adir"
    directory.mkdir()
    for attempt in (lambda: PersistedState(directory), lambda: load(directory)):
        with pytest.raises(PersistedStateError, match="is a directory, not a regular file"):
            attempt()
    assert os.listdir(tmp_path) == ["adir"]
    assert os.listdir(directory) == []


@posix_only
def test_dev_null_is_refused_and_stays_a_device() -> None:
    """(As root, a state closed on /dev/null would replace the device with a regular file.)"""
    lock = Path(os.devnull + ".lock")
    lock_existed = lock.exists()
    with pytest.raises(PersistedStateError, match="is a character device, not a regular file"):
        PersistedState(os.devnull)
    with pytest.raises(PersistedStateError, match="is a character device"):
        load(os.devnull)
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert lock.exists() == lock_existed  # nothing was created beside it


@posix_only
@needs_fork
def test_a_file_replaced_by_a_fifo_while_open_is_a_conflict_not_a_hang(tmp_path: Path) -> None:
    """README "Someone else's edit": the close notices, keeps ours beside it, never waits."""
    path = tmp_path / "s.state"

    def open_replace_close() -> str:
        state = PersistedState(path, a=1)
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        os.replace(fifo, path)
        try:
            state.close()
        except PersistedStateError as error:
            return str(error)
        return "closed without an error"

    message = run_in_fork(open_replace_close, timeout=20)
    assert "replaced by a named pipe (FIFO)" in message, message
    assert stat.S_ISFIFO(os.lstat(path).st_mode)  # theirs is left as it is
    [ours] = tmp_path.glob("s.state.conflict-*")
    assert load(ours) == {"a": 1}
