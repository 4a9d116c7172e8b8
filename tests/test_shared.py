"""Shared mode: several processes, one state (README, "Several processes, one state";
docs/design.md, "Shared mode").

Every process here is a real one (``_workers.py``), driven over pipes one request at a time,
so "an operation that began after another completed" is exact; nothing is timed.
"""

from __future__ import annotations

import ast
import copy
import itertools
import json
import os
import pickle
import pprint
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _workers as workers  # tests/ is on sys.path under pytest
import pytest
import yaml
from conftest import Worker, name_of_bytes

from persistedstate import PersistedState, PersistedStateError, StateLockedError, load, storage

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="processes, signals and /proc: Linux"),
    pytest.mark.usefixtures("quiet_recovery_warnings"),
]

SRC = Path(__file__).resolve().parents[1] / "src"


class Driven(Worker):
    """``_workers.py drive``: a process with the state open, evaluating what it is sent."""

    def __init__(self, path: Path, *, shared: bool = True) -> None:
        super().__init__("drive", str(path), "1" if shared else "0")
        assert self.said() == "ready"

    def __call__(self, expression: str) -> Any:
        """Evaluate ``expression`` there; its value (a literal), or the error's text."""
        self.tell(expression)
        said = self.said()
        if said.startswith("error "):
            return said
        return ast.literal_eval(said)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "shared.state"


def _command(*args: str | Path) -> None:
    """Run ``persistedstate ARGS`` in a process of its own; it must succeed."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "persistedstate", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


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


def _reads_of_data(
    state: PersistedState, settings: Any, retry: Any, queue: Any
) -> dict[str, Callable[[dict[str, Any]], bool]]:
    """Every way of reading that other code uses, each given the plain data it must see;
    each is the first read after the other process's change, so it must catch up itself."""

    def s(d: dict[str, Any]) -> Any:
        return d["settings"]

    def q(d: dict[str, Any]) -> Any:
        return d["settings"]["queue"]

    return {
        # a nested dict (which holds the changed dict and list)
        "dict ==": lambda d: settings == s(d),
        "dict !=": lambda d: (settings != s(d)) is False,
        "dict repr": lambda d: repr(settings) == repr(s(d)),
        "dict str": lambda d: str(settings) == str(s(d)),
        "dict f-string": lambda d: f"{settings}" == f"{s(d)}",
        "dict yaml.safe_dump": lambda d: yaml.safe_dump(settings) == yaml.safe_dump(s(d)),
        "dict yaml.dump": lambda d: yaml.dump(settings) == yaml.dump(s(d)),
        "dict json.dumps": lambda d: json.dumps(settings) == json.dumps(s(d)),
        "dict json indent": lambda d: json.dumps(settings, indent=1) == json.dumps(s(d), indent=1),
        "dict pprint": lambda d: pprint.pformat(settings) == pprint.pformat(s(d)),
        "dict pprint narrow": lambda d: (
            pprint.pformat(settings, width=20) == pprint.pformat(s(d), width=20)
        ),
        "dict pickle": lambda d: pickle.loads(pickle.dumps(settings)) == s(d),
        "dict copy": lambda d: settings.copy() == s(d),
        "dict deepcopy": lambda d: copy.deepcopy(settings) == s(d),
        "dict | other": lambda d: (settings | {}) == s(d),
        "other | dict": lambda d: ({} | settings) == s(d),
        "dict in": lambda d: (f"k{d['top']}" in settings) is True,  # (the key added last)
        "dict len": lambda d: len(settings) == len(s(d)),
        "dict iteration": lambda d: list(settings) == list(s(d)),
        "dict reversed": lambda d: list(reversed(settings)) == list(reversed(s(d))),
        "dict items": lambda d: list(settings.items()) == list(s(d).items()),
        "dict values": lambda d: list(settings.values()) == list(s(d).values()),
        "dict keys": lambda d: list(settings.keys()) == list(s(d).keys()),
        "dict ** unpacking": lambda d: {**settings} == s(d),
        "dict(dict)": lambda d: dict(settings) == s(d),
        "nested dict ==": lambda d: retry == s(d)["retry"],
        "nested dict repr": lambda d: repr(retry) == repr(s(d)["retry"]),
        # a nested list
        "list ==": lambda d: queue == q(d),
        "list !=": lambda d: (queue != q(d)) is False,
        "list <": lambda d: not (queue < q(d)),  # (the old list, a prefix, is smaller)
        "list <=": lambda d: not (queue <= q(d)[:-1]),
        "list >": lambda d: queue > q(d)[:-1],
        "list >=": lambda d: queue >= q(d),
        "list repr": lambda d: repr(queue) == repr(q(d)),
        "list str": lambda d: str(queue) == str(q(d)),
        "list f-string": lambda d: f"{queue}" == f"{q(d)}",
        "list yaml.safe_dump": lambda d: yaml.safe_dump(queue) == yaml.safe_dump(q(d)),
        "list json.dumps": lambda d: json.dumps(queue) == json.dumps(q(d)),
        "list pprint": lambda d: pprint.pformat(queue) == pprint.pformat(q(d)),
        "list pprint narrow": lambda d: (
            pprint.pformat(queue, width=5) == pprint.pformat(q(d), width=5)
        ),
        "list pickle": lambda d: pickle.loads(pickle.dumps(queue)) == q(d),
        "list copy": lambda d: queue.copy() == q(d),
        "list + other": lambda d: queue + [] == q(d),  # noqa: RUF005 (the operator)
        "other + list": lambda d: [] + queue == q(d),  # noqa: RUF005
        "list * 2": lambda d: queue * 2 == q(d) * 2,
        "2 * list": lambda d: 2 * queue == 2 * q(d),
        "list in": lambda d: (q(d)[-1] in queue) is True,
        "list len": lambda d: len(queue) == len(q(d)),
        "list iteration": lambda d: list(queue) == q(d),
        "list reversed": lambda d: list(reversed(queue)) == q(d)[::-1],
        "list count": lambda d: queue.count(q(d)[-1]) == 1,
        "list index": lambda d: queue.index(q(d)[-1]) == len(q(d)) - 1,
        "list slice": lambda d: queue[1:] == q(d)[1:],
        "list negative index": lambda d: queue[-1] == q(d)[-1],
        "list join": lambda d: ",".join(map(str, queue)) == ",".join(map(str, q(d))),
        "sorted(list)": lambda d: sorted(queue) == sorted(q(d)),
        # the state itself
        "state ==": lambda d: state == d,
        "state !=": lambda d: (state != d) is False,
        "state repr": lambda d: repr(d) in repr(state),
        "state str": lambda d: repr(d) in str(state),
        "state f-string": lambda d: repr(d) in f"{state}",
        "state pickle": lambda d: pickle.loads(pickle.dumps(state)) == d,
        "state copy": lambda d: state.copy() == d,
        "state | other": lambda d: (state | {}) == d,
        "other | state": lambda d: ({} | state) == d,
        "state in": lambda d: (f"top{d['top']}" in state) is True,
        "state len": lambda d: len(state) == len(d),
        "state iteration": lambda d: list(state) == list(d),
        "state items": lambda d: dict(state.items()) == d,
        "json.dumps(state.copy())": lambda d: json.dumps(state.copy()) == json.dumps(d),
        "yaml.safe_dump(state.copy())": lambda d: yaml.safe_dump(state.copy()) == yaml.safe_dump(d),
    }


def test_every_read_sees_a_change_another_process_completed_before_it(path: Path) -> None:
    """README, "Several processes": every operation sees every change completed before it
    began; also the reads that other code makes in C (==, repr, yaml, json, pprint, pickle,
    operators), on nested dicts and lists kept by the program and on the state itself."""
    start = {"settings": {"retry": {"times": 0}, "queue": [0]}, "top": 0}
    ours = PersistedState.open(path, start, shared=True)
    other = Driven(path)
    try:
        settings = ours.settings
        retry, queue = settings["retry"], settings["queue"]
        reads = _reads_of_data(ours, settings, retry, queue)
        expected = copy.deepcopy(start)
        stale = []
        for n, (name, read) in enumerate(reads.items(), 1):
            # The other process changes a nested dict, a nested list and the top, and returns.
            assert other(f"state['settings']['retry'].update(times={n})") is None
            assert other(f"state['settings']['queue'].append({n})") is None
            assert other(f"state['settings'].update(k{n}={n})") is None  # (a key added)
            assert other(f"state.update(top={n}, top{n}=None)") is None
            expected["settings"]["retry"]["times"] = n
            expected["settings"]["queue"].append(n)
            expected["settings"][f"k{n}"] = n
            expected.update({"top": n, f"top{n}": None})
            if not read(copy.deepcopy(expected)):
                stale.append(name)
            assert ours.copy() == expected  # (caught up now in any case)
        assert stale == [], f"these reads missed the other process's change: {stale}"
        other.close()
    finally:
        other.kill()
        ours.close()


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


def test_the_first_record_after_another_process_s_compaction_brings_the_heading(
    path: Path, two: tuple[Driven, Driven]
) -> None:
    """Whichever process writes the first record after a compaction writes the heading with
    it (only the compactor did, and another's record came first without one), so a person's
    edit of the document, once every process is gone, is refused and not undone."""
    first, second = two
    assert first("state.update(n=1, m=1)") is None
    assert second("state.update(m=2)") is None  # (second has the file open already)
    assert first("state.compact()") is None
    assert second("state.update(m=3)") is None  # the first record after the compaction
    assert first("state.update(n=2)") is None
    first.kill()
    second.kill()
    text = path.read_text()
    assert text.count("# The lines below are changes") == 1, text
    assert text.split("\n--- ", 1)[0].rsplit("\n", 1)[-1].startswith("# The lines below"), text
    path.write_text(text.replace("n: 1", "n: 5", 1))
    with pytest.raises(PersistedStateError, match="persistedstate compact"):
        load(path)


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
    _command("set", path, "batch", "20")
    assert first("state['batch']") == 20
    assert second("state['batch']") == 20


def test_shared_programs_and_a_command_agree_on_the_lock_file_of_a_long_name(
    tmp_path: Path,
) -> None:
    """A name as long as the file system takes: the lock file's name is shortened, the same way
    in every process, and the compaction's temporary file fits too."""
    path = name_of_bytes(tmp_path, 0)
    first, second = Driven(path), Driven(path)
    try:
        assert first("state.update(batch=100)") is None
        assert second("state.compact()") is None
        assert first("state['batch']") == 100
        _command("set", path, "batch", "20")
        assert first("state['batch']") == 20
        assert second("[state.__setitem__('n', state.get('n', 0) + 1) for _ in range(3)]")
        assert first("state['n']") == 3
        with pytest.raises(StateLockedError):
            PersistedState(path)  # (the default mode finds the shared holders' lock)
    finally:
        first.kill()
        second.kill()
    assert load(path) == {"batch": 20, "n": 3}


def test_default_and_shared_mode_refuse_each_other(path: Path) -> None:
    """Each refusal says which mode holds the file and what to do (it said "one writer at a
    time", which sent a shared-mode user looking for a second run)."""
    shared = Driven(path)
    try:
        with pytest.raises(StateLockedError, match=r"open in shared mode .*shared=True") as caught:
            PersistedState.open(path)
        assert caught.value.holder_pid == shared.proc.pid
    finally:
        shared.close()
    alone = Driven(path, shared=False)
    try:
        with pytest.raises(StateLockedError, match=r"in the default mode.*shared=True") as caught:
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


def test_a_forked_child_reading_a_shared_state_leaves_its_parent_s_lock_alone(
    path: Path, two: tuple[Driven, Driven]
) -> None:
    """A child made by fork shares its parent's write lock (one open file description): a
    read in the child that took and let go of it let go of it for the parent too, in the
    middle of the parent's transaction, and another process's increment was lost. The child
    reads what it inherited, and touches neither the lock nor the file."""
    other, _ = two
    state = PersistedState.open(path, {"counter": 0}, shared=True)
    go_read, go_write = os.pipe()
    said_read, said_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.read(go_read, 1)
            os.write(said_write, repr(state.copy()).encode())
        finally:
            os._exit(0)
    assert other("state.update(x=1)") is None  # (this process has yet to take it in)
    try:
        with state.transaction():
            counter = state["counter"]
            os.write(go_write, b"x")
            assert os.read(said_read, 1000) == repr({"counter": 0}).encode()  # inherited
            os.waitpid(pid, 0)
            pid = 0
            incrementing = subprocess.Popen(
                [sys.executable, str(workers.SCRIPT), "count", str(path), "1"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            with pytest.raises(subprocess.TimeoutExpired):
                incrementing.wait(timeout=2)  # it waits for the transaction to end
            state["counter"] = counter + 1
        out, err = incrementing.communicate(timeout=120)
        assert out == "done\n", err
        assert state.copy() == {"counter": 2, "x": 1}
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        state.close()
    assert load(path) == {"counter": 2, "x": 1}


def test_opening_the_same_file_again_in_shared_mode_takes_it_over(path: Path) -> None:
    first = PersistedState.open(path, {"x": 1, "items": []}, shared=True)
    items = first["items"]
    second = PersistedState.open(path, shared=True)
    try:
        for use in (lambda: first.x, lambda: first["x"], lambda: items[0:1], first.copy):
            with pytest.raises(PersistedStateError, match="opened again in this process"):
                use()
        second["items"].append(1)
    finally:
        first.close()
        second.close()
    assert load(path) == {"x": 1, "items": [1]}


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


@pytest.mark.parametrize(
    ("mounted", "kind"),
    [
        ("{here} - fuse.sshfs user@host:/srv", "fuse.sshfs"),
        ("{here} - cifs //server/share", "cifs"),
        ("{here} - tmpfs tmpfs", None),  # local, though a network mount's name starts alike
    ],
)
def test_the_file_system_type_comes_from_the_longest_mount_point_holding_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mounted: str, kind: str | None
) -> None:
    here = str(tmp_path).replace(" ", "\\040")
    mounts = tmp_path / "mountinfo"
    mounts.write_text(
        "27 1 254:0 / / rw,relatime - nfs4 server:/ rw\n"
        f"41 27 0:51 / {here}-other rw,relatime - nfs server:/other rw\n"
        f"40 27 0:50 / {mounted.format(here=here).replace(' - ', ' rw shared:1 - ')} rw\n"
    )
    monkeypatch.setattr(storage, "MOUNTINFO", str(mounts))
    assert storage.network_file_system(str(tmp_path / "x.state")) == kind


# -- kills -------------------------------------------------------------------------------------

KILLS = int(os.environ.get("PERSISTEDSTATE_SHARED_KILLS", "40"))
WRITERS = 4


@dataclass
class Chaos:
    """What ``_workers.py chaos`` processes did while they were being SIGKILLed at random."""

    final: dict[str, Any]  # the file's state at the end
    logs: dict[str, list[list[Any]]]  # process name -> acknowledged operations, in order
    kills: int


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Chaos:
    """WRITERS processes make random operations on one shared state (compacting often) while
    one of them, chosen at random, is SIGKILLed every 0.1 to 0.6 s and replaced, KILLS times:
    killed while opening, appending, in a transaction, holding the write lock, compacting."""
    directory = tmp_path_factory.mktemp("chaos")
    path = directory / "chaos.state"
    rng = random.Random(20261202)
    running: dict[str, subprocess.Popen[bytes]] = {}
    names = (f"w{number}" for number in itertools.count())

    def start() -> None:
        name = next(names)
        seed, out = str(rng.randrange(1 << 30)), str(directory / f"{name}.jsonl")
        with open(directory / f"{name}.err", "wb") as errors:
            running[name] = subprocess.Popen(
                [sys.executable, str(workers.SCRIPT), "chaos", str(path), name, seed, out],
                stderr=errors,
            )

    def kill(name: str) -> None:
        process = running.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL, (directory / f"{name}.err").read_text()

    for _ in range(WRITERS):
        start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.6))
            kill(rng.choice(sorted(running)))
            start()
        time.sleep(1.0)
    finally:
        kills = KILLS + len(running)
        for name in list(running):
            kill(name)
    final = load(path)
    with PersistedState.open(path, shared=True) as state:  # the file opens, as load() says
        assert state.copy() == final
    logs = {}
    for log in sorted(directory.glob("*.jsonl")):
        lines = log.read_text().split("\n")[:-1]  # (a line cut short was never written whole)
        logs[log.stem] = [json.loads(line) for line in lines]
    return Chaos(final, logs, kills)


def test_every_acknowledged_change_of_processes_killed_at_random_is_kept_in_order(
    chaos: Chaos,
) -> None:
    """Every append a process saw return is in the file once, the appends of each process in
    its own order; the only others are appends a kill interrupted (one per process at most)."""
    items = [tuple(item) for item in chaos.final["items"]]
    position = {item: index for index, item in enumerate(items)}
    assert len(position) == len(items), "an item is in the list twice"
    acknowledged = 0
    for name, log in chaos.logs.items():
        appended = [tuple(result) for op, _, _, result in log if op == "append"]
        acknowledged += len(appended)
        missing = [item for item in appended if item not in position]
        assert not missing, f"{name}: acknowledged appends lost: {missing[:5]}"
        places = [position[item] for item in appended]
        assert places == sorted(places), f"{name}: its appends are out of its order"
        unacknowledged = [item for item in items if item[0] == name][len(appended) :]
        assert unacknowledged in ([], [(name, len(appended))]), (name, unacknowledged)
    print(f"\n{chaos.kills} kills, {len(chaos.logs)} processes, {acknowledged} appends kept")
    assert chaos.kills >= KILLS
    assert acknowledged > 100


def _check_real_time_order(operations: list[tuple[int, int, int, bool]]) -> None:
    """(start, end, value, strict): for any two with a.end < b.start, a.value <= b.value, and
    a.value < b.value when b is strict (a change: it comes after a)."""
    by_end = sorted(operations, key=lambda op: op[1])
    highest, taken = -1, 0
    for start, _, value, strict in sorted(operations):
        while taken < len(by_end) and by_end[taken][1] < start:
            highest = max(highest, by_end[taken][2])
            taken += 1
        assert value > highest if strict else value >= highest, (start, value, highest)


def test_a_shared_counter_and_list_are_linearizable_under_kills(chaos: Chaos) -> None:
    """Whatever was killed, each acknowledged operation takes effect at one moment between its
    call and its return: values never go back in real time, each increment returns a number
    no other did, every list read is a prefix of the final list, and no acknowledged
    change is lost (at most one unacknowledged increment per kill)."""
    final_counter, items = chaos.final["counter"], chaos.final["items"]
    position = {tuple(item): index for index, item in enumerate(items)}
    counter_ops: list[tuple[int, int, int, bool]] = []
    list_ops: list[tuple[int, int, int, bool]] = []
    increments = []
    for log in chaos.logs.values():
        for op, start, end, result in log:
            if op == "increment":
                increments.append(result)
                counter_ops.append((start, end, result, True))
            elif op == "read":
                counter_ops.append((start, end, result, False))
            elif op == "append":
                list_ops.append((start, end, position[tuple(result)] + 1, True))
            elif op == "read_list":
                length, digest = result
                assert digest == workers.list_digest(items[:length]), "not a prefix of the list"
                list_ops.append((start, end, length, False))
    assert len(set(increments)) == len(increments), "two increments returned one value"
    assert all(0 < value <= final_counter for value in increments)
    assert all(op[2] <= final_counter for op in counter_ops)
    assert final_counter - len(increments) <= chaos.kills  # (in flight when killed)
    _check_real_time_order(counter_ops)
    _check_real_time_order(list_ops)
    print(f"\n{len(counter_ops)} counter and {len(list_ops)} list operations checked")
    assert len(increments) > 100
