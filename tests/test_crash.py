"""Kill tests: a child process changing a state is SIGKILLed at random moments, many times.

Each chain of trials uses one state file. A child (``_workers.py steps``) opens it and applies
the deterministic workload of ``_workers.apply_step`` (counters, list edits, nested dicts,
transactions moving value between ``a`` and ``b``), with compaction forced every few records
and an explicit ``compact()`` now and then. After each call returns, the child writes the number
of steps done to its stdout (a regular file, so writing never blocks). The parent kills it at a
random moment (sometimes while it is still starting up or recovering the file), then checks:

- the file opens (``load()`` and ``PersistedState.open``), ``load()`` leaves it untouched;
- every acknowledged change is there: the state is exactly ``S_a`` or ``S_a+1``, where ``a``
  is the last acknowledged step count and ``S_n`` is recomputed in this process;
- no transaction is half-applied (``a + b`` is constant, and the exact comparison above);
- no conflict file appeared;
- when the parent opens the file, the temporary files of killed compactions are gone.

The next child resumes from the state found, on the file as the kill left it (torn tail
included), or, every third trial, after the parent opened and closed it.

``PERSISTEDSTATE_KILL_TRIALS`` sets the number of trials (default 200).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _workers as workers  # tests/ is on sys.path under pytest
import pytest

from persistedstate import PersistedState, load

pytestmark = [
    pytest.mark.skipif(
        sys.platform != "linux", reason="SIGKILL-based crash tests are exercised on Linux only"
    ),
    pytest.mark.usefixtures("quiet_recovery_warnings"),
]


TRIALS = int(os.environ.get("PERSISTEDSTATE_KILL_TRIALS", "200"))
CHAINS = 2
COMPACT_MIN_BYTES = 256


@dataclass
class ChainStats:
    trials: int = 0
    steps_acknowledged: int = 0
    early_kills: int = 0  # killed before the child reported "ready"
    torn_tails: int = 0  # the kill left an incomplete last record
    reopened_by_parent: int = 0
    temp_files_left: int = 0
    failures: list[str] = field(default_factory=list)


def _temp_files(path: Path) -> list[str]:
    """The temporary files of compactions of ``path`` (``.<name>.<pid>.tmp``, docs/design.md)."""
    prefix = f".{path.name}."
    return sorted(
        entry.name
        for entry in path.parent.iterdir()
        if entry.name.startswith(prefix)
        and entry.name.endswith(".tmp")
        and entry.name[len(prefix) : -len(".tmp")].isdigit()
    )


def _complete_lines(path: Path) -> list[str]:
    text = path.read_bytes().decode("ascii", "replace")
    return text.split("\n")[:-1]  # a line without its newline was not acknowledged


def _wait_ready(ack: Path, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ack.exists() and ack.read_bytes().startswith(b"ready\n"):
            return
        if proc.poll() is not None:
            return  # died on its own; reported by the caller
        time.sleep(0.001)
    raise AssertionError("the child did not open the state in time")


def _run_chain(directory: Path, trials: int, fsync: bool, seed: int) -> ChainStats:
    rng = random.Random(seed)
    stats = ChainStats()
    path = directory / "kill.state"
    sim = workers.Simulator()
    start = 0
    for trial in range(trials):
        ack = directory / f"ack-{trial}.txt"
        err = directory / f"stderr-{trial}.txt"
        with open(ack, "wb") as out, open(err, "wb") as errout:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(workers.SCRIPT),
                    "steps",
                    str(path),
                    str(start),
                    "1" if fsync else "0",
                    str(COMPACT_MIN_BYTES),
                ],
                stdout=out,
                stderr=errout,
            )
            try:
                if rng.random() < 0.15:
                    stats.early_kills += 1
                    time.sleep(rng.uniform(0.0, 0.15))
                else:
                    _wait_ready(ack, proc)
                    time.sleep(rng.uniform(0.0, 0.08))
                proc.send_signal(signal.SIGKILL)
            finally:
                proc.kill()
                proc.wait()
        if proc.returncode != -signal.SIGKILL:
            stats.failures.append(
                f"trial {trial}: the child exited by itself ({proc.returncode}): "
                + err.read_text(errors="replace")[-2000:]
            )
            return stats
        stats.trials += 1
        lines = _complete_lines(ack)
        acked = [int(line) for line in lines if line.isdigit()]
        if acked != list(range(start + 1, start + 1 + len(acked))):
            stats.failures.append(f"trial {trial}: acknowledgements out of order: {acked[:5]}")
            return stats
        stats.steps_acknowledged += len(acked)
        stats.temp_files_left += len(_temp_files(path))
        last = acked[-1] if acked else start
        problem = _check_after_kill(path, sim, start, last, trial, stats)
        if isinstance(problem, str):
            stats.failures.append(problem)
            return stats
        start = problem
        ack.unlink()
        err.unlink()
    return stats


def _check_after_kill(
    path: Path, sim: Any, start: int, last: int, trial: int, stats: ChainStats
) -> int | str:
    """Check the file after a kill; the step count to resume from, or a failure message."""
    where = f"trial {trial} (resumed at {start}, last acknowledged {last})"
    conflicts = list(path.parent.glob("kill.state.conflict-*"))
    if conflicts:
        return f"{where}: conflict files appeared: {conflicts}"
    if not path.exists():
        if last == 0:
            return 0  # killed while creating the file: nothing was acknowledged
        return f"{where}: the state file is gone"
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        stats.torn_tails += 1
    try:
        data = load(path)
    except Exception as error:
        return f"{where}: load() raised {error!r}"
    if path.read_bytes() != raw:
        return f"{where}: load() changed the file"
    expected_last = sim.state(last)
    found = None
    if workers.same(data, expected_last):
        found = last
    elif workers.same(data, sim.peek(last + 1)):
        found = last + 1
    if found is None:
        return (
            f"{where}: the file holds neither S_{last} nor S_{last + 1}\n"
            f"file: {data!r}\nS_{last}: {expected_last!r}\nS_{last + 1}: {sim.peek(last + 1)!r}"
        )
    try:
        workers.check_invariant(data)
    except AssertionError as error:
        return f"{where}: {error}"
    if trial % 3 == 2:
        stats.reopened_by_parent += 1
        try:
            state = PersistedState.open(path)
        except Exception as error:
            return f"{where}: PersistedState.open raised {error!r}"
        try:
            if not workers.same(state.copy(), data):
                return f"{where}: open() and load() disagree: {state.copy()!r} vs {data!r}"
            left = _temp_files(path)
            if left:
                return f"{where}: opening left the temporary files of a killed compaction: {left}"
        finally:
            state.close()
        after = load(path)
        if not workers.same(after, data):
            return f"{where}: after close() the file holds {after!r}, not {data!r}"
        if b"\n--- " in path.read_bytes():
            return f"{where}: after close() the file still has journal records"
    sim.state(found)
    return found


def test_sigkill_at_random_moments_loses_nothing_acknowledged(
    tmp_path: Path, record_property: Any
) -> None:
    per_chain = [TRIALS // CHAINS + (1 if i < TRIALS % CHAINS else 0) for i in range(CHAINS)]
    results: list[ChainStats | None] = [None] * CHAINS
    errors: list[BaseException] = []

    def run(index: int) -> None:
        directory = tmp_path / f"chain{index}"
        directory.mkdir()
        try:
            results[index] = _run_chain(
                directory, per_chain[index], fsync=index % 2 == 1, seed=1000 + index
            )
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(CHAINS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if errors:
        raise errors[0]
    stats = [result for result in results if result is not None]
    assert len(stats) == CHAINS
    failures = [failure for result in stats for failure in result.failures]
    total = sum(result.trials for result in stats)
    summary = (
        f"kill tests: {total} SIGKILL trials in {elapsed:.1f} s, "
        f"{sum(r.steps_acknowledged for r in stats)} acknowledged steps, "
        f"{sum(r.early_kills for r in stats)} kills during start-up/recovery, "
        f"{sum(r.torn_tails for r in stats)} torn tails recovered, "
        f"{sum(r.reopened_by_parent for r in stats)} reopen+close checks, "
        f"{sum(r.temp_files_left for r in stats)} stale temp files left by killed compactions"
    )
    print("\n" + summary)
    record_property("kill_trials", total)
    record_property("kill_summary", summary)
    assert not failures, "\n\n".join(failures)
    assert total == TRIALS
    assert sum(r.steps_acknowledged for r in stats) > TRIALS  # the kills hit running workloads


KILLED_AT_THE_FIRST_WRITE = """
import os, signal, sys
from persistedstate import PersistedState
state = PersistedState.open(sys.argv[1], {"a": 0, "b": 0, "l": [0, 0, 0, 0]})
real_write = os.write

def write_then_die(fd, data):
    written = real_write(fd, data)
    os.kill(os.getpid(), signal.SIGKILL)
    return written

os.write = write_then_die
exec(sys.argv[2])
"""


@pytest.mark.parametrize(
    "change",
    [
        'state.update({"a": 1, "b": 2})',
        'state |= {"a": 1, "b": 2}',
        "state.l.extend([1, 2])",
        "state.l[::2] = [7, 7]",
        "with state.transaction():\n    state.a = 1\n    state.b = 2",
    ],
)
def test_a_change_of_several_values_killed_at_its_first_write_is_whole_or_absent(
    tmp_path: Path, change: str
) -> None:
    """README "Crash safety": a change of several values is one record, so a SIGKILL right
    after its first write leaves all of it or none (never the first key of an update)."""
    path = tmp_path / "job.state"
    before = {"a": 0, "b": 0, "l": [0, 0, 0, 0]}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AT_THE_FIRST_WRITE, str(path), change],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with PersistedState.open(tmp_path / "whole.state", before) as state:
        exec(change, {"state": state})  # (what the change makes of the state as it was)
        whole = state.copy()
    assert load(path) in (before, whole), f"the kill left part of {change!r}: {load(path)}"


def test_the_temporary_file_of_a_killed_compaction_is_removed_by_the_next_writer(
    tmp_path: Path,
) -> None:
    """A child is SIGKILLed inside compact(), its new file written but not yet renamed into
    place. The state file is the old one, journal included; ``load()`` (no lock: a writer may
    be compacting) leaves the temporary file alone, the next writer to open the state deletes
    it, and files of other names (another state's compaction among them) stay as they were."""
    path = tmp_path / "kill.state"
    with PersistedState(path) as state:
        state["n"] = 1
    others = {
        ".other.state.4242.tmp": b"another state's compaction, perhaps running now\n",
        "kill.state.4242.tmp": b"no leading dot\n",
        ".kill.state.backup.tmp": b"not a pid\n",
        ".kill.state.42a.tmp": b"not a pid either\n",
        ".kill.state.4242.tmp.keep": b"another suffix\n",
    }
    for name, content in others.items():
        (tmp_path / name).write_bytes(content)
    ack, err = tmp_path / "ack.txt", tmp_path / "stderr.txt"
    with open(ack, "wb") as out, open(err, "wb") as errout:
        proc = subprocess.Popen(
            [sys.executable, str(workers.SCRIPT), "compact-and-hang", str(path)],
            stdout=out,
            stderr=errout,
        )
        try:
            deadline = time.monotonic() + 20
            while not ack.read_bytes().endswith(b"\n") and proc.poll() is None:
                assert time.monotonic() < deadline, "the child did not reach the rename in time"
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err.read_text(errors="replace")
    said = ack.read_text()
    assert said.startswith("renaming "), said
    leftover = Path(said.split(" ", 1)[1].strip())
    assert leftover.parent == tmp_path
    assert _temp_files(path) == [leftover.name] == [f".kill.state.{proc.pid}.tmp"]

    expected = {"n": 1, "compacting": True}  # the old file and its journal: nothing lost
    assert load(path) == expected
    assert leftover.exists()  # load() takes no lock, so it never deletes a temporary file
    with PersistedState(path) as state:
        assert not leftover.exists()  # gone at open
        assert state == expected
    assert load(path) == expected
    for name, content in others.items():
        assert (tmp_path / name).read_bytes() == content, name
    left = {entry.name for entry in tmp_path.iterdir()}
    assert left == {"kill.state", "ack.txt", "stderr.txt", *others}  # (no lock file left)
