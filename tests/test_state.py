"""The state object: attribute names, defaults, odd values, links, conflicts, interrupts."""

from __future__ import annotations

import functools
import inspect
import os
import pickle
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest

import persistedstate.storage
from persistedstate import PersistedState, PersistedStateError, load


def test_attribute_helpers_work_for_any_name(tmp_path: Path) -> None:
    state = PersistedState(tmp_path / "s.yaml", present=1)
    assert getattr(state, "", "default") == "default"
    assert getattr(state, "missing", None) is None
    assert hasattr(state, "present") and not hasattr(state, "absent")
    setattr(state, "", 5)  # not an identifier: a plain Python attribute, not a key
    assert "" not in state
    delattr(state, "")
    state.close()
    assert load(tmp_path / "s.yaml") == {"present": 1}


def test_attributes_follow_deletes_made_with_a_str_subclass_key(tmp_path: Path) -> None:
    class Name(str):
        pass

    with PersistedState(tmp_path / "s.yaml", a=1, b=2, c={"x": 1}) as state:
        assert (state.a, state.b, state.c["x"]) == (1, 2, 1)  # read once: kept for reading
        del state[Name("a")]
        assert state.pop(Name("b")) == 2
        state.pop(Name("c"))
        for name in "abc":
            assert not hasattr(state, name)


def test_keys_never_hide_the_methods_of_a_subclass(tmp_path: Path) -> None:
    class AppState(PersistedState):
        def summary(self) -> str:
            return f"{len(self)} keys"

    with AppState(tmp_path / "s.yaml") as state:
        state["summary"] = "first"
        state["summary"] = "second"  # (the second set of a key takes the short path)
        assert state.summary() == "1 keys"
        assert state["summary"] == "second"


def test_names_a_subclass_defines_are_its_own_not_keys(tmp_path: Path) -> None:
    class AppState(PersistedState):
        limit = 10  # a class attribute
        _scale = 1

        @property
        def scale(self) -> int:
            return self._scale

        @scale.setter
        def scale(self, value: int) -> None:
            self._scale = value

    path = tmp_path / "s.yaml"
    with AppState(path) as state:
        before = path.read_bytes()
        with pytest.raises(AttributeError, match="'limit' is a method or attribute of AppState"):
            state.limit = 5
        state.scale = 3  # the property's setter runs; no key is stored
        assert path.read_bytes() == before
        assert (state.limit, state.scale, len(state)) == (10, 3, 0)
        state["limit"] = 5  # item syntax reaches the key
        assert state.limit == 10
    assert load(path) == {"limit": 5}


def test_only_identifiers_are_attributes(tmp_path: Path) -> None:
    with PersistedState(tmp_path / "s.yaml") as state:
        for key in ("", "a b", "x.y"):
            state[key] = 1
            state[key] = 2
            with pytest.raises(AttributeError):
                object.__getattribute__(state, key)  # not even in the instance __dict__
            assert key not in dir(state)


def test_reading_an_attribute_never_waits_for_the_lock(tmp_path: Path) -> None:
    state = PersistedState(tmp_path / "s.yaml", x=0)
    state.update(x=1)  # (a change the short path does not make: the next read looks it up)
    held, done = threading.Event(), threading.Event()

    def hold_the_lock() -> None:  # as a long compaction or sort in another thread does
        with state._thread_lock:
            held.set()
            done.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    held.wait(10)
    reads: list[int] = []
    reader = threading.Thread(target=lambda: reads.extend([state.x, state.x]))
    reader.start()
    reader.join(5)
    finished = not reader.is_alive()
    done.set()
    holder.join()
    reader.join()
    state.close()
    assert finished, "state.x waited for another thread's lock"
    assert reads == [1, 1]


def test_other_attributes_survive_changes_to_keys_of_the_same_name(tmp_path: Path) -> None:
    class AppState(PersistedState):
        @functools.cached_property
        def label(self) -> str:
            return "computed once"

    state = AppState(tmp_path / "s.yaml", label="a key")
    setattr(state, "", "a plain attribute")  # not an identifier: never a key
    assert state.label == "computed once"
    state[""] = 5
    state.clear()
    state["label"] = "another key"
    assert getattr(state, "") == "a plain attribute"
    assert state.label == "computed once"
    assert state["label"] == "another key"
    state.close()


def test_running_init_again_reads_the_file_again(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    state = PersistedState(path, n=1)
    assert state.n == 1
    state.close()
    with PersistedState(path) as other:
        other.n = 2
    state.__init__(path)  # type: ignore[misc]
    assert (state.n, state["n"]) == (2, 2)
    state.__init__(path)  # type: ignore[misc]  # (while it holds the file: lets go first)
    assert (state.n, state["n"]) == (2, 2)
    state.close()


def test_undoing_a_delete_puts_back_the_key_that_was_stored(tmp_path: Path) -> None:
    # 1 == True == 1.0: ``del state[True]`` removes the key 1, and a rollback must put back 1.
    with PersistedState(tmp_path / "s.yaml") as state:
        state[1] = "one"
        state[2.0] = "two"
        for key in (True, 2):
            with pytest.raises(RuntimeError), state.transaction():
                del state[key]
                raise RuntimeError("roll back")
        assert [type(key) for key in state] == [int, float]
    assert [type(key) for key in load(tmp_path / "s.yaml")] == [int, float]


def test_deleting_a_method_name_or_a_missing_key_raises_attribute_error(tmp_path: Path) -> None:
    with PersistedState(tmp_path / "s.yaml") as state:
        state["items"] = 1
        with pytest.raises(AttributeError):
            del state.items  # a method: never the key
        with pytest.raises(AttributeError, match="no key 'nothing'"):
            del state.nothing
        assert state["items"] == 1


def test_a_bad_default_is_refused_before_the_file_is_created_or_locked(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    with pytest.raises(TypeError) as caught:
        PersistedState(path, fine=1, bad=object())
    assert "bad" in str(caught.value)
    assert not path.exists()
    kept = caught.value  # a live traceback must not keep the file locked
    with PersistedState(path) as state:
        assert state == {}
    del kept


def test_an_option_of_open_given_to_the_constructor_is_refused_not_stored(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    options = [
        name
        for name, parameter in inspect.signature(PersistedState.open).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    assert {"fsync", "lock_timeout"} <= set(options)
    for option in options:
        with pytest.raises(TypeError, match=rf"^{option} is an option of PersistedState\.open\(\)"):
            PersistedState(path, **{option: 1})
    with pytest.raises(TypeError, match="fsync and lock_timeout are options") as caught:
        PersistedState(path, a=1, fsync=True, lock_timeout=5)
    assert "PersistedState.open(path, {'fsync': ..., 'lock_timeout': ...})" in str(caught.value)
    assert not path.exists()
    # What the message says: a key of such a name goes in open()'s defaults, or is set after.
    with PersistedState.open(path, {"fsync": True}) as state:
        state["lock_timeout"] = 5
    assert load(path) == {"fsync": True, "lock_timeout": 5}


def test_an_object_that_invents_attributes_is_refused_with_type_error(tmp_path: Path) -> None:
    from unittest import mock

    with PersistedState(tmp_path / "s.yaml") as state, pytest.raises(TypeError):
        state.x = mock.Mock()


def test_a_symbolic_link_stays_a_link_and_its_target_gets_the_state(tmp_path: Path) -> None:
    target, link = tmp_path / "target.yaml", tmp_path / "link.yaml"
    target.write_text("a: 1\n", encoding="utf-8")
    link.symlink_to(target)
    with PersistedState(link) as state:
        state["a"] = 2
    assert link.is_symlink()
    assert load(target) == {"a": 2}


@pytest.mark.parametrize("how", ["file-in-its-place", "deleted"])
def test_a_link_replaced_while_open_is_a_conflict_naming_both_files(
    tmp_path: Path, how: str
) -> None:
    """README "Editing the state by hand": saved behind a running program's back (here by an
    editor that replaces the link it was given, as `sed -i` does), the person's file is kept
    and the program's version saved, and the program says where each is."""
    (tmp_path / "data").mkdir()
    target, link = tmp_path / "data" / "job.state", tmp_path / "job.state"
    target.write_text("batch: 100\nlast_id: 0\n", encoding="utf-8")
    link.symlink_to(target)
    state = PersistedState(link)
    state.last_id = 1
    link.unlink()
    if how == "file-in-its-place":
        link.write_text("batch: 5\nlast_id: 0\n", encoding="utf-8")
    state.last_id = 2
    with pytest.raises(PersistedStateError) as raised:
        state.close()
    message = str(raised.value)
    assert f"{link}, by which this state was opened, no longer leads to {target}" in message
    [ours] = (tmp_path / "data").glob("job.state.conflict-*")
    assert f"Their version was left at {link}" in message and str(ours) in message
    assert load(ours) == {"batch": 100, "last_id": 2}
    if how == "file-in-its-place":
        assert link.read_text(encoding="utf-8") == "batch: 5\nlast_id: 0\n"  # theirs, as is


def test_a_transaction_that_meets_someone_elses_file_is_not_in_our_saved_version(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.yaml"
    state = PersistedState(path, a=1)
    with path.open("ab") as file:
        file.write(b"# an edit made while the state was open\n")
    with pytest.raises(PersistedStateError, match="rewritten"), state.transaction():
        state.a = 999
    assert state == {"a": 1}  # rolled back
    [ours] = tmp_path.glob("s.yaml.conflict-*")
    assert load(ours) == {"a": 1}


def test_an_interrupt_right_after_the_write_takes_the_record_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C between the write and its bookkeeping: the change is neither in memory nor on
    disk, and the next change works."""
    path = tmp_path / "s.yaml"
    state = PersistedState(path, a=0)
    before = path.read_bytes()
    real_write = os.write

    def write_then_interrupt(fd: int, data: bytes) -> int:
        real_write(fd, data)
        raise KeyboardInterrupt

    monkeypatch.setattr(persistedstate.storage.os, "write", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        state.a = 1
    monkeypatch.undo()
    assert state == {"a": 0}
    assert path.read_bytes() == before
    state.a = 2
    state.close(compact=False)
    assert load(path) == {"a": 2}


def test_negative_indexes_read_safely_while_another_thread_shifts_the_list(
    tmp_path: Path,
) -> None:
    with PersistedState(tmp_path / "s.yaml", items=["a", "b", "last"]) as state:
        items = state["items"]
        stop = threading.Event()

        def shift() -> None:
            while not stop.is_set():
                with state.transaction():
                    items.insert(0, "x")
                    del items[0]

        worker = threading.Thread(target=shift)
        worker.start()
        try:
            for _ in range(20_000):
                assert items[-1] == "last"
        finally:
            stop.set()
            worker.join()


def test_a_failed_automatic_compaction_is_logged_and_retried_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The change that triggered it is safe in the journal; compaction is tried again after
    another compact_min_bytes of journal."""
    path = tmp_path / "s.yaml"
    state = PersistedState.open(path, {"n": 0}, compact_min_bytes=200, compact_ratio=0.0)
    real_replace = persistedstate.storage.StateFile.replace
    attempts: list[int] = []

    def full_disk_once(file: persistedstate.storage.StateFile, data: bytes) -> None:
        attempts.append(file.size)
        if len(attempts) == 1:
            raise OSError(28, "No space left on device")
        real_replace(file, data)

    monkeypatch.setattr(persistedstate.storage.StateFile, "replace", full_disk_once)
    with caplog.at_level("WARNING", logger="persistedstate"):
        while len(attempts) < 2:
            state.n += 1  # never raises: the failed compaction only delays the next one
    assert "compaction failed, will retry later" in caplog.text
    assert attempts[1] >= attempts[0] + 200  # retried after another 200 bytes of journal
    assert load(path) == {"n": state.n}
    assert path.stat().st_size < 200  # the retry compacted the file
    state.close()


def test_the_compaction_options_of_open_take_effect(tmp_path: Path) -> None:
    """README, "The file": the journal is folded in once it grows past both limits."""
    path = tmp_path / "s.yaml"
    state = PersistedState.open(path, {"x": 0}, compact_min_bytes=200, compact_ratio=0.0)
    for value in range(100):
        state.x = value
    assert len(path.read_bytes()) < 300  # compacted on the way (100 records are ~2,500 bytes)
    state.close()
    assert load(path) == {"x": 99}


def test_an_infinite_compaction_option_turns_automatic_compaction_off(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    for options in ({"compact_ratio": float("inf")}, {"compact_min_bytes": float("inf")}):
        state = PersistedState.open(path, {"x": 0}, **options)
        for value in range(100):
            state.x = value
        assert path.read_bytes().count(b"\n") >= 100  # every record still there
        state.close()
        assert load(path) == {"x": 99} and path.read_bytes() == b"x: 99\n"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"compact_ratio": float("nan")}, ValueError),
        ({"compact_min_bytes": float("nan")}, ValueError),
        ({"compact_ratio": -1.0}, ValueError),
        ({"compact_min_bytes": -1}, ValueError),
        ({"compact_min_bytes": "1"}, TypeError),
        ({"compact_ratio": None}, TypeError),
    ],
)
def test_a_bad_compaction_option_is_refused_before_the_file_is_created(
    tmp_path: Path, options: dict[str, object], error: type[Exception]
) -> None:
    path = tmp_path / "s.yaml"
    with pytest.raises(error, match="compact_"):
        PersistedState.open(path, {"x": 0}, **options)  # type: ignore[arg-type]
    assert sorted(os.listdir(tmp_path)) == []


def test_init_again_inside_a_transaction_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    with PersistedState(path, x=0) as state:
        with (
            pytest.raises(PersistedStateError, match="inside a transaction"),
            state.transaction(),
        ):
            state.x = 1
            state.__init__(path)  # type: ignore[misc]
        assert state.x == 0  # rolled back, and the state still works
        state.x = 2
    assert load(path) == {"x": 2}


@pytest.mark.parametrize("part", ["state", "dict", "list"])
def test_a_live_state_or_container_pickles_as_its_plain_data(tmp_path: Path, part: str) -> None:
    with PersistedState(tmp_path / "s.yaml", d={"l": [1]}) as state:
        live = {"state": state, "dict": state.d, "list": state.d["l"]}[part]
        unpickled = pickle.loads(pickle.dumps(live))
        assert unpickled == live
        assert type(unpickled) is type(live.copy())  # plain dicts and lists


def test_a_program_changing_and_compacting_a_state_loads_neither_typing_nor_logging(
    tmp_path: Path,
) -> None:
    """typing (0.7 MiB) is for the type checker only, and a debug message, which nothing can
    have asked for while logging is not imported, does not import it (0.5 MiB)."""
    probe = (
        "import sys\n"
        "from persistedstate import PersistedState\n"
        "STATE = PersistedState(sys.argv[1], last_id=0)\n"
        "for i in range(1, 101):\n"
        "    STATE.last_id = i\n"
        "STATE.compact()\n"
        "print(sorted({'typing', 'logging'} & set(sys.modules)))\n"
    )
    command = [sys.executable, "-c", probe, str(tmp_path / "s.yaml")]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_compaction_does_not_hold_the_journal_in_memory(tmp_path: Path) -> None:
    """It checks that the file is still ours in pieces: holding 2 MiB of journal whole would
    raise the process's peak memory by as much, for nothing kept."""
    with PersistedState.open(tmp_path / "s.yaml", {"n": 0}, compact_ratio=float("inf")) as state:
        while os.path.getsize(tmp_path / "s.yaml") < 2 << 20:
            for _ in range(1000):
                state.n += 1
        tracemalloc.start()
        try:
            state.compact()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 512 << 10


def test_importing_the_package_loads_no_heavy_modules() -> None:
    """``import persistedstate`` costs no more than 26.1's import did: its lock is its own
    small module, not the filelock package with what that imports (urllib, ipaddress,
    decimal, inspect, hashlib), and logging waits for the first message."""
    heavy = ["filelock", "urllib", "ipaddress", "decimal", "inspect", "hashlib", "ruamel"]
    heavy += ["logging", "traceback", "tokenize"]
    probe = f"import sys, persistedstate; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
