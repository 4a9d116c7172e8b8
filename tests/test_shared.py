"""Shared mode: several processes, one state (README, "Several processes, one state";
docs/design.md, "Shared mode").

Every process here is a real one (``_workers.py``), driven over pipes one request at a time,
so "an operation that began after another completed" is exact; nothing is timed.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _workers as workers  # tests/ is on sys.path under pytest
import pytest

from persistedstate import PersistedState, PersistedStateError, StateLockedError, load, storage

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="processes, signals and /proc: Linux"),
    pytest.mark.usefixtures("quiet_recovery_warnings"),
]

SRC = Path(__file__).resolve().parents[1] / "src"


class Driven:
    """``_workers.py drive``: a process with the state open, evaluating what it is sent."""

    def __init__(self, path: Path, *, shared: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(workers.SCRIPT), "drive", str(path), "1" if shared else "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"the process exited: {err}")
        return line.strip()

    def __call__(self, expression: str) -> Any:
        """Evaluate ``expression`` there; its value (a literal), or the error's text."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(expression + "\n")
        self.proc.stdin.flush()
        said = self._line()
        if said.startswith("error "):
            return said
        return ast.literal_eval(said)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("close\n")
        self.proc.stdin.flush()
        assert self._line() == "closed"
        self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=30)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "shared.state"


@pytest.fixture
def two(path: Path) -> Iterator[tuple[Driven, Driven]]:
    first, second = Driven(path), Driven(path)
    yield first, second
    first.kill()
    second.kill()


def test_four_processes_counting_in_transactions_end_at_exactly_40000(path: Path) -> None:
    """README: ``with state.transaction(): state.counter += 1`` is atomic and isolated across
    processes."""
    children = [
        subprocess.Popen(
            [sys.executable, str(workers.SCRIPT), "count", str(path), "10000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for child in children:
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err
        assert out == "done\n"
    assert load(path) == {"counter": 40000}
    assert sorted(os.listdir(path.parent)) == [path.name]  # compacted, no lock file left


def test_every_operation_sees_every_change_completed_before_it(
    path: Path, two: tuple[Driven, Driven]
) -> None:
    first, second = two
    assert first("state.setdefault('items', [])") == []
    assert second("state.get('items')") == []
    assert first("state.update(x=1)") is None
    assert second("state['x']") == 1  # a read
    assert second("state['items'].append('b')") is None
    assert first("list(state['items'])") == ["b"]  # a read through a nested list
    assert first("state['items'].insert(0, 'a')") is None
    assert second("state['items'].append('c')") is None  # a change needing the other's
    assert first("state.copy()") == {"items": ["a", "b", "c"], "x": 1}
    assert second("len(state)") == 2
    assert first("state.pop('x')") == 1
    assert second("'x' in state") is False
    first.close()
    second.close()
    assert load(path) == {"items": ["a", "b", "c"]}


def test_a_compaction_by_one_process_is_seen_by_the_others_with_the_comments(
    path: Path,
) -> None:
    path.write_text("# settings, by hand\nbatch: 100  # per run\nitems: []\n")
    first, second, third = Driven(path), Driven(path), Driven(path)
    try:
        assert second("state['items'].append(1)") is None
        assert first("state.compact()") is None  # first: the records second wrote, folded
        assert second("state['items'].append(2)") is None  # second: on first's new file
        assert third("state.copy()") == {"batch": 100, "items": [1, 2]}  # (two files on)
        assert second("state.compact()") is None
        assert first("state.compact()") is None
        assert third("state.update(batch=5)") is None
        assert third("state.compact()") is None
        text = path.read_text()
        assert text.startswith("# settings, by hand\n")
        assert re.search(r"\nbatch: 5 +# per run\n", text), text
        assert first("state['items'].append(3)") is None
        assert second("state.copy()") == {"batch": 5, "items": [1, 2, 3]}
    finally:
        for each in (first, second, third):
            each.close()
    assert load(path) == {"batch": 5, "items": [1, 2, 3]}
    assert path.read_text().startswith("# settings, by hand\n")


def test_a_proxy_kept_across_others_compactions_stays_attached(path: Path) -> None:
    """Several compactions by another process pass between two operations of this one (it
    then parses the file and updates its dicts and lists in place)."""
    ours = PersistedState.open(path, {"job": {"done": []}}, shared=True)
    try:
        done = ours["job"]["done"]
        other = Driven(path)
        try:
            for number in range(3):
                assert other(f"state['job']['done'].append({number})") is None
                assert other("state.compact()") is None
        finally:
            other.close()
        done.append("ours")  # (raises if the list was detached)
        assert ours.copy() == {"job": {"done": [0, 1, 2, "ours"]}}
    finally:
        ours.close()
    assert load(path) == {"job": {"done": [0, 1, 2, "ours"]}}


def test_a_command_changes_the_state_of_shared_programs(
    path: Path, two: tuple[Driven, Driven]
) -> None:
    first, second = two
    assert first("state.update(batch=100)") is None
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "persistedstate", "set", str(path), "batch", "20"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert first("state['batch']") == 20
    assert second("state['batch']") == 20


def test_default_and_shared_mode_refuse_each_other(path: Path) -> None:
    shared = Driven(path)
    try:
        with pytest.raises(StateLockedError) as caught:
            PersistedState.open(path)
        assert caught.value.holder_pid == shared.proc.pid
    finally:
        shared.close()
    alone = Driven(path, shared=False)
    try:
        with pytest.raises(StateLockedError) as caught:
            PersistedState.open(path, shared=True)
        assert caught.value.holder_pid == alone.proc.pid
    finally:
        alone.close()


def test_a_process_killed_in_a_transaction_blocks_nobody_and_leaves_nothing(
    path: Path, two: tuple[Driven, Driven]
) -> None:
    first, second = two
    assert first("state.update(n=1)") is None
    # The transaction holds the write lock until the process dies inside it.
    assert first("(t := state.transaction()).__enter__() and state.update(n=2)") is None
    first.kill()
    assert second("state['n']") == 1  # the killed transaction left nothing
    assert second("state.update(n=3)") is None
    second.close()
    assert load(path) == {"n": 3}


def test_shared_mode_refuses_a_network_file_system(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounts = tmp_path / "mountinfo"
    mounts.write_text(
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        f"40 27 0:50 / {tmp_path} rw,relatime shared:1 - nfs4 server:/export rw,vers=4.2\n"
    )
    monkeypatch.setattr(storage, "MOUNTINFO", str(mounts))
    assert storage.network_file_system(str(path)) == "nfs4"
    with pytest.raises(PersistedStateError, match="network file system"):
        PersistedState.open(path, shared=True)
    assert not path.exists()
    with PersistedState.open(path, {"alone": True}) as state:  # one program: as before
        assert state.alone
