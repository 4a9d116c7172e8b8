"""Typed states (README "Typed states"): a subclass declares its keys with annotations and
defaults; a value that does not fit raises before anything is written, a file whose value does
not fit is refused at open with where and what, and older data are upgraded in one transaction.
"""

# ruff: noqa: RUF012 (a declared key's mutable default is copied into each state, never shared)

from __future__ import annotations

import datetime
import gc
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, TypedDict

import pytest

from persistedstate import CorruptStateError, PersistedState, PersistedStateError, load


class Settings(TypedDict):
    batch: int
    name: str


class Job(PersistedState):
    last_id: int = 0
    done: list[str] = []
    settings: Settings = {"batch": 100, "name": "daily"}
    ratio: float = 0.5
    note: str | None = None
    mode: Literal["fast", "slow"] = "fast"
    counts: dict[str, int] = {}
    since: Optional[datetime.date] = None  # noqa: UP045 (the older spelling works too)


# -- declared keys ---------------------------------------------------------------------------


def test_declared_keys_have_their_defaults_and_keep_their_values(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    with Job(path) as job:
        assert (
            job.last_id == 0 and job.done == [] and job.settings == {"batch": 100, "name": "daily"}
        )
        job.last_id += 1
        job.done.append("a")
        job.settings["batch"] = 5
        job.since = datetime.date(2026, 12, 2)
    with Job(path) as job:
        assert (job.last_id, job.done, job.settings["batch"]) == (1, ["a"], 5)
        assert job.since == datetime.date(2026, 12, 2)
    assert load(path)["last_id"] == 1


def test_a_mutable_default_is_a_fresh_copy_for_each_state(tmp_path: Path) -> None:
    first, second = Job(tmp_path / "a.state"), Job(tmp_path / "b.state")
    first.done.append("only in a")
    first.settings["batch"] = 1
    assert second.done == [] and second.settings["batch"] == 100
    third = Job(tmp_path / "c.state")
    assert third.done == [] and third.settings == {"batch": 100, "name": "daily"}


def test_defaults_given_to_the_constructor_override_the_class_ones(tmp_path: Path) -> None:
    job = Job(tmp_path / "job.state", last_id=7)
    assert job.last_id == 7 and job.done == []


def test_a_value_is_checked_as_it_is_stored_a_tuple_as_a_list(tmp_path: Path) -> None:
    job = Job(tmp_path / "job.state", done=("a",))
    job.done = ("b", "c")
    job.done += ("d",)
    assert job.copy()["done"] == ["b", "c", "d"]
    with pytest.raises(TypeError, match=r"Job key done\[0\]: expected str"):
        Job(tmp_path / "other.state", done=(1,))


def test_an_int_goes_into_a_float_key_and_comes_back_as_stored(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    with Job(path) as job:
        job.ratio = 2
    assert type(Job(path).ratio) is int


# -- a value that does not fit: TypeError, nothing written -----------------------------------


REFUSED = [
    ("job.last_id = 'x'", "last_id", "expected int, found str 'x'"),
    ("job['last_id'] = 1.5", "last_id", "expected int, found float 1.5"),
    ("job.last_id = True", "last_id", "expected int, found bool True"),
    ("job.ratio = 'high'", "ratio", "expected float"),
    ("job.note = 5", "note", "expected str | None"),
    ("job.mode = 'medium'", "mode", "expected Literal['fast', 'slow']"),
    ("job.done = ['a', 1]", "done[1]", "expected str, found int 1"),
    ("job.done.append(5)", "done[0]", "expected str, found int 5"),
    ("job.done.extend(['b', 3])", "done[1]", "expected str"),
    ("job.done += [None]", "done[0]", "expected str, found NoneType"),
    ("job.done.insert(0, b'x')", "done[0]", "expected str, found bytes"),
    ("job.settings['batch'] = 'big'", "settings['batch']", "expected int, found str 'big'"),
    ("job.settings.update(batch=1, name=2)", "settings['name']", "expected str, found int 2"),
    ("job.settings['extra'] = 1", "settings['extra']", "not a key of Settings"),
    ("job.settings = {'batch': 1}", "settings['name']", "missing: Settings requires it"),
    ("del job.settings['name']", "settings['name']", "cannot be deleted"),
    ("job.settings.clear()", "settings[", "cannot be deleted"),
    ("job.counts[1] = 1", "counts[1]", "a key of type str"),
    ("job.counts['a'] = 'one'", "counts['a']", "expected int"),
    ("job.since = datetime.datetime(2026, 1, 1)", "since", "expected date | None"),
    ("job.other = 1", "other", "not a key of Job (its keys: last_id, done,"),
    ("job['other'] = [1]", "other", "not a key of Job"),
    ("job.update(last_id=3, other=1)", "other", "not a key of Job"),
    ("job.setdefault('other', 1)", "other", "not a key of Job"),
    ("del job.last_id", "last_id", "cannot be deleted"),
    ("job.pop('done')", "done", "cannot be deleted"),
    ("job.clear()", "last_id", "cannot be deleted"),
]


@pytest.mark.parametrize(("change", "where", "problem"), REFUSED, ids=[c for c, _, _ in REFUSED])
def test_a_value_that_does_not_fit_raises_type_error_and_changes_nothing(
    tmp_path: Path, change: str, where: str, problem: str
) -> None:
    path = tmp_path / "job.state"
    job = Job(path)
    job.close(compact=False)
    job = Job(path)
    before, memory = path.read_bytes(), job.copy()
    with pytest.raises(TypeError) as raised:
        exec(change, {"job": job, "datetime": datetime})
    assert f"Job key {where}" in str(raised.value)
    assert problem in str(raised.value)
    assert path.read_bytes() == before
    assert job.copy() == memory
    job.close(compact=False)
    assert Job(path).copy() == memory


class Batches(PersistedState):
    batches: list[Settings] = []
    grid: list[list[int]] = []


def test_a_change_deep_inside_names_where_it_is_now(tmp_path: Path) -> None:
    state = Batches(tmp_path / "b.state")
    state.batches.append({"batch": 1, "name": "a"})
    kept = state.batches[0]
    kept["batch"] = 2
    state.batches.insert(0, {"batch": 0, "name": "z"})  # (kept is now at index 1)
    with pytest.raises(TypeError, match=r"Batches key batches\[1\]\['batch'\]: expected int"):
        kept["batch"] = "two"
    with pytest.raises(TypeError, match=r"Batches key batches\[1\]\['extra'\]: not a key"):
        kept.update(extra=1)
    state.grid = [[1], [2, 3]]
    with pytest.raises(TypeError, match=r"Batches key grid\[1\]\[2\]: expected int"):
        state.grid[1].append("x")
    state.grid[1].append(4)
    assert state.copy()["grid"] == [[1], [2, 3, 4]]
    assert state.batches[1] == {"batch": 2, "name": "a"}


def test_a_typed_state_nobody_closed_frees_its_file_as_soon_as_it_is_dropped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.state"

    def work() -> None:
        job = Job(path)
        job.done.append("a")  # (a typed core keeps the kinds of containers, not proxies)
        job.settings["batch"] = 5
        with pytest.raises(TypeError):
            job.done.append(1)

    collecting = gc.isenabled()
    gc.disable()  # only reference counting: the lock must not wait for the cycle collector
    try:
        work()
        assert b'\n--- ["insert"' in path.read_bytes()  # not compacted: no close() was called
        code = "import sys; from persistedstate import PersistedState as S; S(sys.argv[1])"
        other = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True)
        assert other.returncode == 0, other.stderr  # (StateLockedError if still held)
        assert load(path)["done"] == ["a"] and load(path)["settings"]["batch"] == 5
    finally:
        if collecting:
            gc.enable()


def test_a_refused_change_in_a_transaction_rolls_back_the_whole_block(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    job = Job(path)
    with pytest.raises(TypeError, match="done"), job.transaction():
        job.last_id = 9
        job.done.append(1)
    assert job.last_id == 0
    job.close(compact=False)
    assert load(path)["last_id"] == 0


def test_a_typed_state_in_shared_mode_checks_changes_too(tmp_path: Path) -> None:
    job = Job.open(tmp_path / "job.state", shared=True)
    with pytest.raises(TypeError, match="last_id"):
        job.last_id = "x"
    job.done.append("a")
    job.close()
    assert load(tmp_path / "job.state")["done"] == ["a"]


# -- opening a file whose data do not fit ----------------------------------------------------


def written(path: Path, text: str) -> bytes:
    path.write_text(textwrap.dedent(text))
    return path.read_bytes()


def test_a_value_a_person_typed_wrong_is_refused_with_file_line_column_key_and_type(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.state"
    before = written(path, "last_id: abc\ndone: []\n")
    with pytest.raises(CorruptStateError) as raised:
        Job(path)
    error = raised.value
    assert (error.path, error.line, error.column) == (str(path), 1, 10)
    assert "key last_id: expected int, found str 'abc'" in error.problem
    assert "(the type Job declares)" in error.problem
    assert error.hint == "correct the value, or the type Job declares"
    assert path.read_bytes() == before


def test_a_wrong_item_deep_inside_is_found_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    before = written(
        path,
        """\
        done:
        - a
        - 5
        settings:
          batch: 1
          name: [x]
        """,
    )
    with pytest.raises(CorruptStateError) as raised:
        Job(path)
    assert (raised.value.line, raised.value.column) == (3, 3)
    assert "key done[1]: expected str, found int 5" in str(raised.value)
    assert path.read_bytes() == before
    path.write_text("settings:\n  batch: 1\n  name: [x]\n")
    with pytest.raises(CorruptStateError) as raised:
        Job(path)
    assert (raised.value.line, raised.value.column) == (3, 9)
    assert "settings['name']: expected str, found list" in str(raised.value)
    path.write_text("last_id: 1\nsettings:\n  batch: 1\n")
    with pytest.raises(CorruptStateError) as raised:
        Job(path)
    assert (raised.value.line, raised.value.column) == (2, 1)
    assert "key settings['name']: missing: Settings requires it" in str(raised.value)
    assert raised.value.hint == "add the key, with a value of its type"
    assert path.read_bytes() == b"last_id: 1\nsettings:\n  batch: 1\n"


def test_a_wrong_value_set_by_a_journal_record_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    untyped = PersistedState(path, last_id=0)
    untyped.last_id = "abc"  # (a program that does not declare the type)
    untyped.close(compact=False)
    before = path.read_bytes()
    with pytest.raises(CorruptStateError, match="key last_id: expected int") as raised:
        Job(path)
    assert raised.value.hint is not None and "a change after the document" in raised.value.hint
    assert path.read_bytes() == before


def test_a_key_the_class_does_not_declare_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    before = written(path, "last_id: 1\nlast_idd: 2\n")
    with pytest.raises(CorruptStateError) as raised:
        Job(path)
    assert raised.value.line == 2
    assert "key last_idd: not a key of Job" in str(raised.value)
    assert raised.value.hint == "delete the key, or declare it in Job"
    assert path.read_bytes() == before


class Needs(PersistedState):
    settings: Settings
    count: int = 0


def test_a_declared_key_with_no_default_must_be_given(tmp_path: Path) -> None:
    path = tmp_path / "needs.state"
    with pytest.raises(TypeError, match=r"Needs\(path, settings=\.\.\.\)"):
        Needs(path)
    assert not path.exists()
    with pytest.raises(TypeError, match="settings"):
        Needs(path, settings={"batch": 1})
    assert not path.exists()
    Needs(path, settings={"batch": 1, "name": "n"}).close()
    assert Needs(path).settings == {"batch": 1, "name": "n"}
    before = written(path, "count: 1\n")
    with pytest.raises(CorruptStateError, match="'settings' is missing"):
        Needs(path)
    assert path.read_bytes() == before


# -- changing the class ----------------------------------------------------------------------


def test_a_key_added_to_the_class_later_gets_its_default_in_old_files(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    written(path, "last_id: 41\n")
    with Job(path) as job:
        assert job.last_id == 41 and job.done == [] and job.mode == "fast"
    assert load(path)["done"] == []


class JobV2(PersistedState):
    version: ClassVar[int] = 2
    last_ids: list[int] = []

    def upgrade(self, from_version: int) -> None:
        assert from_version == 1
        self.last_ids = [self.pop("last_id")]


def test_upgrade_brings_older_data_up_to_the_version_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    written(path, "last_id: 41\n")
    with JobV2(path) as job:
        assert job.last_ids == [41] and "last_id" not in job
        assert job["_version"] == 2
    assert load(path) == {"last_ids": [41], "_version": 2}
    with JobV2(path) as job:  # (an upgraded file is not upgraded again)
        assert job.last_ids == [41]


def test_a_new_file_of_a_versioned_class_holds_its_version(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    JobV2(path).close()
    assert load(path) == {"last_ids": [], "_version": 2}


class BadUpgrade(PersistedState):
    version: ClassVar[int] = 2
    last_ids: list[int] = []

    def upgrade(self, from_version: int) -> None:
        self.last_ids = [1]  # (forgets the old key: it is not declared any more)


def test_an_upgrade_that_leaves_data_that_do_not_fit_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    before = written(path, "last_id: 41\n")
    with pytest.raises(TypeError, match=r"after BadUpgrade.upgrade\(1\), key last_id: not a key"):
        BadUpgrade(path)
    assert path.read_bytes() == before
    assert JobV2(path).last_ids == [41]  # (and the file is free again)


def test_data_of_a_newer_version_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    before = written(path, "last_ids: []\n_version: 3\n")
    with pytest.raises(PersistedStateError, match=r"version 3, newer than JobV2\.version"):
        JobV2(path)
    assert path.read_bytes() == before


# -- what a class may declare ----------------------------------------------------------------


@dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (tuple[int, int], "declare list"),
        (Point, "declare a TypedDict"),
        (set[int], "cannot check values of type"),
        (list[int] | list[str], "two members of one container type"),
    ],
)
def test_a_type_the_state_cannot_honour_is_refused_when_the_class_is_defined(
    annotation: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        type("Bad", (PersistedState,), {"__annotations__": {"value": annotation}})


def test_a_default_that_does_not_fit_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match=r"Bad.count: the default expected int, found str"):
        type("Bad", (PersistedState,), {"__annotations__": {"count": int}, "count": "0"})


def test_a_declared_key_named_like_a_method_is_refused() -> None:
    with pytest.raises(TypeError, match="'items' is a method or attribute"):
        type("Bad", (PersistedState,), {"__annotations__": {"items": list[str]}})


def test_a_version_past_1_needs_an_upgrade_method() -> None:
    with pytest.raises(TypeError, match="define upgrade"):
        type(
            "Bad", (PersistedState,), {"__annotations__": {"version": ClassVar[int]}, "version": 2}
        )


class Child(Job):
    extra: bool = False


def test_a_subclass_of_a_typed_state_declares_keys_on_top_of_its_base(tmp_path: Path) -> None:
    child = Child(tmp_path / "c.state")
    assert child.extra is False and child.last_id == 0
    with pytest.raises(TypeError, match="Child key extra: expected bool"):
        child.extra = 1
    with pytest.raises(TypeError, match="Child key last_id"):
        child.last_id = "x"


# -- mypy sees the declared types ------------------------------------------------------------

SNIPPET = """\
from persistedstate import PersistedState

class Job(PersistedState):
    last_id: int = 0
    done: list[str] = []

job = Job("job.state")
last: int = job.last_id
job.last_id = last + 1
job.done.append("item")
"""


def mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "snippet.py").write_text(code)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "snippet.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "MYPY_CACHE_DIR": str(tmp_path / ".mypy_cache")},
    )


def test_mypy_accepts_a_typed_state_used_as_declared(tmp_path: Path) -> None:
    result = mypy(tmp_path, SNIPPET)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("wrong", "error"),
    [
        ('job.last_id = "x"', "Incompatible types in assignment"),
        ("job.done.append(5)", 'Argument 1 to "append" of "list" has incompatible type "int"'),
        ("name: str = job.last_id", "Incompatible types in assignment"),
    ],
)
def test_mypy_refuses_a_typed_state_used_against_its_types(
    tmp_path: Path, wrong: str, error: str
) -> None:
    result = mypy(tmp_path, SNIPPET + wrong + "\n")
    assert result.returncode == 1
    assert f"snippet.py:11: error: {error}" in result.stdout


# -- the command line: --schema MODULE:CLASS -------------------------------------------------

JOB_MODULE = """\
from typing import ClassVar

from persistedstate import PersistedState

class Job(PersistedState):
    last_id: int = 0
    done: list[str] = []

class JobV2(PersistedState):
    version: ClassVar[int] = 2
    last_ids: list[int] = []

    def upgrade(self, from_version: int) -> None:
        self.last_ids = [self.pop("last_id")]
"""


def command(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m persistedstate ARGS`` in ``cwd``, where the module jobdefs.py is."""
    (cwd / "jobdefs.py").write_text(JOB_MODULE)
    return subprocess.run(
        [sys.executable, "-m", "persistedstate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_check_with_a_schema_reports_a_value_that_does_not_fit(tmp_path: Path) -> None:
    before = written(tmp_path / "job.state", "done: []\nlast_id: abc\n")
    result = command(tmp_path, "check", "job.state", "--schema", "jobdefs:Job")
    assert result.returncode == 1
    assert "job.state, line 2, column 10: key last_id: expected int, found str 'abc'" in (
        result.stderr
    )
    assert "job.state does not fit Job; it was not changed" in result.stderr
    assert (tmp_path / "job.state").read_bytes() == before
    plain = command(tmp_path, "check", "job.state")
    assert plain.returncode == 0, plain.stderr  # (without the schema, it is a valid state)


def test_check_with_a_schema_says_that_a_good_file_fits(tmp_path: Path) -> None:
    written(tmp_path / "job.state", "last_id: 3\n")
    result = command(tmp_path, "check", "job.state", "--schema", "jobdefs:Job")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "job.state: OK, 1 key, 0 journal records, fits Job\n"


def test_check_with_a_schema_leaves_older_data_to_the_upgrade_and_refuses_newer(
    tmp_path: Path,
) -> None:
    written(tmp_path / "job.state", "last_id: abc\n")
    result = command(tmp_path, "check", "job.state", "--schema", "jobdefs:JobV2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "job.state: OK, 1 key, 0 journal records, version 1: JobV2.upgrade() brings it to "
        "version 2 when a program opens it (its types are checked then)\n"
    )
    written(tmp_path / "job.state", "last_ids: []\n_version: 3\n")
    result = command(tmp_path, "check", "job.state", "--schema", "jobdefs:JobV2")
    assert result.returncode == 1
    assert "version 3, newer than JobV2.version (2)" in result.stderr


def test_set_with_a_schema_refuses_a_value_that_does_not_fit(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    before = written(path, "last_id: 3\ndone: []\n")
    refused = [
        ("set", "job.state", "last_id", "abc"),
        ("set", "job.state", "done.0", "5"),
        ("set", "job.state", "other", "1"),
        ("del", "job.state", "last_id"),
    ]
    for args in refused:
        result = command(tmp_path, *args, "--schema", "jobdefs:Job")
        assert result.returncode == 2, (args, result.stderr)
        assert "refused by --schema: Job key" in result.stderr
        assert path.read_bytes() == before
    result = command(tmp_path, "set", "job.state", "last_id", "4", "--schema", "jobdefs:Job")
    assert result.returncode == 0, result.stderr
    assert load(path)["last_id"] == 4


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("jobdefs", "give MODULE:CLASS"),
        ("nosuchmodule:Job", "cannot import nosuchmodule"),
        ("jobdefs:PersistedState", "not a subclass of PersistedState that declares keys"),
        ("jobdefs:Nope", "not a subclass of PersistedState that declares keys"),
    ],
)
def test_a_schema_that_cannot_be_found_is_a_usage_error(
    tmp_path: Path, schema: str, message: str
) -> None:
    written(tmp_path / "job.state", "last_id: 3\n")
    result = command(tmp_path, "check", "job.state", "--schema", schema)
    assert result.returncode == 2
    assert message in result.stderr
