"""Shared fixtures, helpers and hypothesis strategies for the persistedstate tests.

The helpers here only use the public API (and plain Python), so the tests check what README.md
and docs/design.md promise, not how the library does it. Test modules import them with
``from conftest import``.
"""

from __future__ import annotations

import copy
import datetime
import logging
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import strategies as st

import persistedstate

# -- deep equality ---------------------------------------------------------------------------


WORKERS_SCRIPT = Path(__file__).with_name("_workers.py")


def tmpfs_directory(prefix: str) -> Path | None:
    """A new directory on a tmpfs (``/dev/shm``, Linux's), where fsync costs nothing, or None
    where there is none: a test then stays in its own temporary directory."""
    shm = Path(os.sep, "dev", "shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=shm))


class Worker:
    """A child process running a ``_workers.py`` mode, spoken to line by line: ``tell`` it a
    line, read the next line it prints with ``said``."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKERS_SCRIPT), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def said(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"the child process exited: {err}")
        return line.strip()

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        """For the modes that close the state when told ``close``, and say ``closed``."""
        self.tell("close")
        assert self.said() == "closed"
        self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=30)


def show(value: Any, limit: int = 200) -> str:
    """A short repr, also for ints too big for repr() (more than 4300 digits)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__} holding an int too big to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_difference(actual: Any, expected: Any, where: str = "") -> str | None:
    """Where ``actual`` and ``expected`` differ (None when they are the same).

    Stricter than ``==``: types must match exactly at every level (``True`` is not ``1``, a
    tuple is not a list, a proxy is not a dict), ``nan`` equals ``nan``, ``-0.0`` is not
    ``0.0``, datetimes must have the same UTC offset, timezone (``==``, and its name) and
    ``fold``, and dict keys must be the same keys (same types) in the same order.
    """
    here = where or "<top>"
    if type(actual) is not type(expected):
        kinds = f"{type(actual).__name__} != {type(expected).__name__}"
        return f"{here}: type {kinds} ({show(actual)} vs {show(expected)})"
    if isinstance(expected, float):
        if math.isnan(expected) and math.isnan(actual):
            return None
        if actual != expected or math.copysign(1, actual) != math.copysign(1, expected):
            return f"{here}: {actual!r} != {expected!r}"
        return None
    if isinstance(expected, datetime.datetime):
        if (
            actual != expected
            or (actual.tzinfo is None) != (expected.tzinfo is None)
            or actual.utcoffset() != expected.utcoffset()
            or actual.tzinfo != expected.tzinfo  # (a zoneinfo zone is not a fixed offset)
            or actual.tzname() != expected.tzname()
            or actual.fold != expected.fold
        ):
            return f"{here}: {actual!r} != {expected!r}"
        return None
    if isinstance(expected, dict):
        actual_keys, expected_keys = list(actual), list(expected)
        keys = f"(keys {show(actual_keys, 300)} vs {show(expected_keys, 300)})"
        if len(actual_keys) != len(expected_keys):
            return f"{here}: different keys {keys}"
        for actual_key, expected_key in zip(actual_keys, expected_keys, strict=True):
            problem = first_difference(actual_key, expected_key, f"{where}<key>")
            if problem is not None:
                return f"{problem} {keys}"
        for actual_key, expected_key in zip(actual_keys, expected_keys, strict=True):
            problem = first_difference(
                actual[actual_key], expected[expected_key], f"{where}[{show(expected_key, 60)}]"
            )
            if problem is not None:
                return problem
        return None
    if isinstance(expected, (list, tuple)):
        if len(actual) != len(expected):
            lengths = f"length {len(actual)} != {len(expected)}"
            return f"{here}: {lengths}: {show(actual, 300)} vs {show(expected, 300)}"
        for index, (actual_item, expected_item) in enumerate(zip(actual, expected, strict=True)):
            problem = first_difference(actual_item, expected_item, f"{where}[{index}]")
            if problem is not None:
                return problem
        return None
    if isinstance(expected, (str, bytes, int, bool, datetime.date)) or expected is None:
        if actual != expected:
            return f"{here}: {show(actual, 300)} != {show(expected, 300)}"
        return None
    raise AssertionError(f"{here}: unexpected type in test data: {type(expected).__name__}")


def deep_equal(actual: Any, expected: Any) -> bool:
    return first_difference(actual, expected) is None


def assert_same(actual: Any, expected: Any) -> None:
    problem = first_difference(actual, expected)
    assert problem is None, problem


def normalized(value: Any) -> Any:
    """What a state stores for ``value``: tuples become lists, everything deep-copied."""
    if isinstance(value, dict):
        return {key: normalized(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalized(item) for item in value]
    return copy.deepcopy(value)


def plain(value: Any) -> Any:
    """Plain data for a value read from a state (proxies become plain deep copies)."""
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    if isinstance(value, (str, bytes, int, float, datetime.date)) or value is None:
        return value
    return copy.deepcopy(value)


def contains_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(contains_nan(key) or contains_nan(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return any(contains_nan(item) for item in value)
    return False


# -- the file --------------------------------------------------------------------------------


def file_bytes(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def crash_copy(path: str | os.PathLike[str], destination: str | os.PathLike[str]) -> Any:
    """Copy the file's bytes as they are now (what a crash would leave) and load() the copy."""
    with open(destination, "wb") as file:
        file.write(file_bytes(path))
    return persistedstate.load(destination)


def assert_single_document(path: str | os.PathLike[str], expected: Any) -> None:
    """The file is exactly one YAML document, readable by yaml.safe_load, holding ``expected``."""
    text = file_bytes(path).decode("utf-8")
    documents = list(yaml.safe_load_all(text))
    assert len(documents) == 1, f"expected one YAML document, found {len(documents)}:\n{text}"
    data = documents[0]
    if data is None:  # an empty document is an empty state
        data = {}
    assert_same(data, expected)


# -- other processes -------------------------------------------------------------------------


def run_in_fork(
    function: Callable[[], object],
    *,
    user: tuple[int, int] | None = None,
    timeout: float = 30.0,
) -> str:
    """Run ``function()`` in a child made with os.fork() and return ``str()`` of its result.

    With ``user=(uid, gid)`` the child first becomes that user (this process must be root).
    An exception in the child fails the test with the child's traceback; a child still
    running after ``timeout`` seconds (a FIFO's open waiting forever, say) is killed and fails
    the test, so a regression fails instead of hanging the suite.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            if user is not None:
                os.setgroups([])
                os.setgid(user[1])
                os.setuid(user[0])
            report = "ok\n" + str(function())
            status = 0
        except BaseException:
            report = "error\n" + traceback.format_exc()
        finally:
            try:
                os.write(write_end, report.encode("utf-8", "replace"))
            finally:
                os._exit(status)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"the child process was still running after {timeout} s")
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    kind, _, text = b"".join(chunks).decode("utf-8").partition("\n")
    if kind != "ok":
        raise AssertionError(f"in the child process: {text or 'no report (it crashed)'}")
    return text


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
needs_root = pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() != 0, reason="needs root, to act as another user"
)


# -- value strategies ------------------------------------------------------------------------

OFFSETS = st.one_of(
    st.just(datetime.timezone.utc),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
        lambda minutes: datetime.timezone(datetime.timedelta(minutes=minutes))
    ),
)

DATES = st.dates(min_value=datetime.date(2, 1, 1), max_value=datetime.date(9998, 12, 31))
# (fold=0: a naive datetime with fold=1 is refused, see test_values.py)
NAIVE_DATETIMES = st.datetimes(
    min_value=datetime.datetime(2, 1, 1), max_value=datetime.datetime(9998, 12, 31)
).map(lambda moment: moment.replace(fold=0))
AWARE_DATETIMES = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone), NAIVE_DATETIMES, OFFSETS
)

INTS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    # Ints of more than 4300 digits are tested in test_values.py: hypothesis cannot print them.
    st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**4000, 2**12001 - 1, -(2**12345) + 7]),
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e16, 5e-324, -5e-324, 1.7976931348623157e308, 0.1, 1e-7]),
)
TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8")),
    st.sampled_from(
        [
            "yes",
            "no",
            "null",
            "~",
            "012",
            "0x1F",
            "1e3",
            ".inf",
            "2026-01-01",
            "- a",
            "a: b",
            "#x",
            " leading space",
            "trailing\n\n",
            "<<",
            "=",
            "---",
            "...",
            "---\n[1]",
            "\x00\x1f\x7f\x85\u2028\u2029\ufeff",
            "line 1\nline 2\n  indented\n",
        ]
    ),
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    INTS,
    FLOATS,
    TEXT,
    st.binary(),
    DATES,
    NAIVE_DATETIMES,
    AWARE_DATETIMES,
)

# Dict keys: every key type README.md "Values" allows (float keys without nan, which is never
# equal to itself).
KEYS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["k" * 1001, "long key " * 150, 10**1200, -(2**12345)]),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)


def values(
    leaves: st.SearchStrategy[Any] = SCALARS,
    max_leaves: int = 12,
    keys: st.SearchStrategy[Any] = KEYS,
) -> Any:
    """Any value README.md "Values" says a state stores (tuples included)."""
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(keys, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


# Files written by persistedstate 26.1 (tests/fixtures/persistedstate-26.1/README.md says how).
FIXTURES_26_1 = Path(__file__).resolve().parent / "fixtures" / "persistedstate-26.1"


def fixture_26_1(name: str) -> Path:
    path = FIXTURES_26_1 / name
    assert path.is_file(), f"missing fixture {path}"
    return path


def name_of_bytes(directory: Path, short_by: int, start: str = "") -> Path:
    """A path in ``directory`` whose name is ``short_by`` bytes short of the longest name its
    file system takes (``os.pathconf``), made of ``start``, then two-byte characters (so a
    name cut to fit would fall inside one), then ``.state``."""
    longest = os.pathconf(directory, "PC_NAME_MAX")
    room = longest - short_by - len(start.encode()) - len(".state")
    name = start + "é" * (room // 2) + "x" * (room % 2) + ".state"
    assert len(name.encode()) == longest - short_by
    return directory / name


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def quiet_recovery_warnings(caplog: pytest.LogCaptureFixture) -> None:
    """Torn records and failed compactions are expected by the thousand in the crash, fault,
    fuzz, lock and power-cut tests: keep their failure reports readable."""
    caplog.set_level(logging.ERROR, logger="persistedstate")


@pytest.fixture
def state_path(tmp_path: Any) -> str:
    """A path for a state file that does not exist yet."""
    return str(tmp_path / "test.state")


@pytest.fixture
def state(state_path: str) -> Iterator[persistedstate.PersistedState]:
    """An open, empty state; closed after the test."""
    opened = persistedstate.PersistedState(state_path)
    yield opened
    opened.close()


@pytest.fixture
def same() -> Any:
    """The deep-equality assertion (types compared recursively, nan == nan)."""
    return assert_same
