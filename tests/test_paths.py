"""The path of a state: what it may name, how it may be given, and the file's owner and mode.

README "API" and "The file": a state lives in a regular file (or a symbolic link to one);
anything else is refused at once, before anything is created. Every rewrite keeps the file's
owner, group and permission bits as far as the platform allows. Paths may be str, bytes or
os.PathLike; the empty path is refused.

The tests that could hang (a FIFO) run in a forked child with a timeout, and the tests about
other users run a forked child as that user (root only).
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import name_of_bytes, needs_fork, needs_root, run_in_fork

from persistedstate import PersistedState, PersistedStateError, load
from persistedstate.cli import main as cli_main

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types and modes")

USER = (12345, 12345)  # an account that does not exist: only its numbers matter


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _owner(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_uid, status.st_gid


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
def test_a_socket_is_refused_saying_so(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        for attempt in (lambda: PersistedState(path), lambda: load(path)):
            with pytest.raises(PersistedStateError, match="is a socket, not a regular file"):
                attempt()
    assert os.listdir(tmp_path) == ["s.sock"]


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


# -- how the path may be given ---------------------------------------------------------------


def test_a_bytes_path_names_the_same_file_as_its_text(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    with PersistedState(os.fsencode(path), a=1) as state:
        state.b = 2
    assert load(os.fsencode(path)) == {"a": 1, "b": 2}
    assert load(path) == {"a": 1, "b": 2}
    with PersistedState.open(os.fsencode(path)) as state:
        assert state == {"a": 1, "b": 2}
    assert sorted(os.listdir(tmp_path)) == ["s.state"]  # (the lock file goes with the last user)


@pytest.mark.parametrize("empty", ["", b""], ids=["str", "bytes"])
def test_an_empty_path_is_refused_before_anything_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty: str | bytes
) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    for attempt in (
        lambda: PersistedState(empty),
        lambda: PersistedState.open(empty),
        lambda: load(empty),
    ):
        with pytest.raises(ValueError, match="the path of the state file is empty"):
            attempt()
    assert os.listdir(tmp_path) == ["cwd"]  # (no "cwd.lock" beside the working directory)
    assert os.listdir(tmp_path / "cwd") == []


def test_open_with_defaults_that_are_not_a_mapping_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    with pytest.raises(TypeError, match=r"defaults must be a mapping.*not list"):
        PersistedState.open(path, [("a", 1)])  # type: ignore[arg-type]
    assert not path.exists()
    with PersistedState.open(path, {"a": 1}) as state:  # (a dict, as documented)
        assert state == {"a": 1}


# -- owner, group and mode ---------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o660, 0o666], ids=oct)
def test_a_compaction_keeps_the_permission_bits_whatever_the_umask(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "s.state"
    with PersistedState(path, n=0):
        pass
    os.chmod(path, mode)
    previous = os.umask(0o077)
    try:
        with PersistedState(path) as state:
            state.n = 1
            state.compact()
            assert _mode(path) == mode
            state.n = 2
    finally:
        os.umask(previous)
    assert _mode(path) == mode
    assert load(path) == {"n": 2}


@posix_only
def test_a_conflict_copy_is_as_private_as_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    state = PersistedState(path, secret="s3cr3t")
    os.chmod(path, 0o600)
    (tmp_path / "theirs").write_text("secret: edited\n", encoding="utf-8")
    os.replace(tmp_path / "theirs", path)
    with pytest.raises(PersistedStateError):
        state.close()
    [ours] = tmp_path.glob("s.state.conflict-*")
    assert _mode(ours) == 0o600
    assert load(ours) == {"secret": "s3cr3t"}


@pytest.fixture
def users_directory() -> Iterator[Path]:
    """A directory USER owns, which that user can reach (unlike pytest's, under /tmp/...-root)."""
    directory = Path(tempfile.mkdtemp(prefix="persistedstate-user-"))
    os.chown(directory, *USER)
    try:
        yield directory
    finally:
        for entry in directory.iterdir():
            entry.unlink()
        directory.rmdir()


@needs_root
def test_roots_compaction_keeps_the_users_owner_group_and_mode(users_directory: Path) -> None:
    path = users_directory / "s.state"
    with PersistedState(path, n=0):
        pass
    os.chown(path, *USER)
    os.chmod(path, 0o660)
    with PersistedState(path) as state:
        state.n = 1
        state.compact()
        assert (_owner(path), _mode(path)) == (USER, 0o660)
        state.n = 2
    assert (_owner(path), _mode(path)) == (USER, 0o660)
    assert load(path) == {"n": 2}


@needs_root
@needs_fork
def test_after_root_ran_persistedstate_set_the_users_program_still_opens_its_state(
    users_directory: Path,
) -> None:
    """A cron job or sudo running ``persistedstate set`` on a user's state (a file the user
    wrote by hand: no lock file yet) leaves the file to the user, and no lock file."""
    path = users_directory / "job.state"
    path.write_text("last_id: 40\n", encoding="utf-8")
    os.chown(path, *USER)
    os.chmod(path, 0o640)
    assert cli_main(["set", str(path), "last_id", "41"]) == 0  # (as root)
    assert (_owner(path), _mode(path)) == (USER, 0o640)
    assert not Path(f"{path}.lock").exists()

    def users_program() -> object:
        with PersistedState(path) as state:
            state.last_id += 1
            return state.last_id

    assert run_in_fork(users_program, user=USER) == "42"
    assert load(path) == {"last_id": 42}
    assert (_owner(path), _mode(path)) == (USER, 0o640)


@needs_root
@needs_fork
def test_a_user_who_may_not_keep_the_group_still_compacts(users_directory: Path) -> None:
    """Only root may give a file away, and only a member may set its group: what may not be
    kept is left, without failing."""
    path = users_directory / "s.state"
    with PersistedState(path, n=0):
        pass
    os.chown(path, USER[0], 0)  # the group is root's, which USER is not a member of
    os.chmod(path, 0o640)

    def users_program() -> object:
        with PersistedState(path) as state:
            state.n = 1
        return "closed"

    assert run_in_fork(users_program, user=USER) == "closed"
    assert load(path) == {"n": 1}
    assert (_owner(path), _mode(path)) == (USER, 0o640)  # (the group is the user's own now)


# -- names near the file system's limit ------------------------------------------------------
# The lock file, a compaction's temporary file and a conflict copy are named after the state
# file; a name near NAME_MAX (255 bytes on ext4 and tmpfs) left no room for what they add.


@posix_only
@pytest.mark.parametrize("short_by", [0, 3])
def test_a_name_near_the_longest_the_file_system_takes_opens_compacts_and_closes(
    tmp_path: Path, short_by: int
) -> None:
    path = name_of_bytes(tmp_path, short_by)
    state = PersistedState.open(path, {"n": 0}, compact_min_bytes=100, compact_ratio=0.0)
    for n in range(1, 50):  # (automatic compactions on the way)
        state.n = n
    state.compact()
    state.n += 1
    state.close()
    assert path.read_text(encoding="utf-8") == "n: 50\n"
    assert sorted(tmp_path.iterdir()) == [path]  # no lock file, no temporary file left
    with PersistedState(path) as state:
        assert state.n == 50


@posix_only
@pytest.mark.parametrize("short_by", [0, 3])
def test_a_conflict_copy_of_a_name_near_the_limit_is_written_and_named_after_it(
    tmp_path: Path, short_by: int
) -> None:
    path = name_of_bytes(tmp_path, short_by)
    state = PersistedState(path, version="ours")
    (tmp_path / "theirs").write_text("version: theirs\n", encoding="utf-8")
    os.replace(tmp_path / "theirs", path)
    with pytest.raises(PersistedStateError) as caught:
        state.close()
    [ours] = set(tmp_path.iterdir()) - {path}
    assert str(ours) in str(caught.value)
    assert load(ours) == {"version": "ours"}
    assert load(path) == {"version": "theirs"}
    stem, conflict = ours.name.split(".conflict-")
    assert path.name.startswith(stem.split("~")[0])  # its beginning, cut between characters
    assert conflict.endswith(f"-{os.getpid()}")


@posix_only
def test_a_killed_compaction_s_temporary_file_of_a_long_name_is_removed_at_the_next_open(
    tmp_path: Path,
) -> None:
    """Its name is the shortened one (the lock file shows it): it is looked for under it."""
    path = name_of_bytes(tmp_path, 0)
    with PersistedState(path, n=1):
        [lock] = set(tmp_path.iterdir()) - {path}
    stem = lock.name.removesuffix(".lock")
    assert "~" in stem and len(os.fsencode(lock.name)) <= len(os.fsencode(path.name))
    leftover = tmp_path / f".{stem}.4194304.tmp"  # (what a compaction killed halfway leaves)
    leftover.write_bytes(b"n: 0\n")
    with PersistedState(path) as state:
        assert not leftover.exists()
        assert state.n == 1


@posix_only
def test_two_long_names_with_the_same_beginning_have_their_own_lock_files(
    tmp_path: Path,
) -> None:
    first = name_of_bytes(tmp_path, 0, start="a")
    second = name_of_bytes(tmp_path, 0, start="b")
    second = second.with_name(first.name[:-7] + "y.state")  # (differs only near the end)
    with PersistedState(first, which=1), PersistedState(second, which=2):
        pass  # (one lock file for both would refuse the second)
    assert (load(first), load(second)) == ({"which": 1}, {"which": 2})


@posix_only
def test_other_processes_opening_a_long_name_find_the_same_lock_file(tmp_path: Path) -> None:
    """The lock file's name is a function of the state's name: the command line and a second
    program, in other processes, find the lock this one holds."""
    path = name_of_bytes(tmp_path, 0)
    with PersistedState(path, batch=100) as state:
        command = _python(
            f"from persistedstate.cli import main; main(['set', {str(path)!r}, 'batch', '20'])"
        )
        assert command.returncode == 0, command.stderr
        assert state.batch == 20  # (handed over through the lock file)
        second = _python(f"import persistedstate; persistedstate.PersistedState({str(path)!r})")
        assert "StateLockedError" in second.stderr
    assert load(path) == {"batch": 20}


def _python(code: str) -> subprocess.CompletedProcess[str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
