"""Ctrl-C that the program survives: real signals at random moments, thousands of times.

A program that catches ``KeyboardInterrupt`` (a notebook, a REPL, a loop that handles Ctrl-C)
and carries on must find memory and file agreeing, however the interrupt fell: between a
record's write and its change in memory, inside a transaction or its roll-back, around a
compaction's rename. Each child process (``_workers.py interrupted``) makes random changes to
a state for a few seconds (lists, dicts, the scalar short path, nested and failing
transactions, compactions every few hundred bytes of journal), while a one-shot timer,
re-armed at a random delay each time, delivers SIGALRM, whose handler raises
``KeyboardInterrupt`` exactly as Python's Ctrl-C handler does. The child catches it and goes
on. After every change an interrupt reached, the child compares its memory with ``load()``
of the file, the attribute kept in ``__dict__`` with the value, and checks that no
transaction is half applied. At the end it reports its memory, closes without compacting,
and this process checks:

- the file opens (``load()`` and ``PersistedState.open``) and holds exactly that memory;
- no conflict copy was written (nobody else touched the file);
- enough interrupts were delivered for the run to mean something.

Half the children run on the test's temporary directory, the others on a tmpfs when there
is one (``/dev/shm``): there compaction's fsyncs cost nothing, so compactions finish often
and the interrupts land in every part of them, not mostly in a disk sync.

``PERSISTEDSTATE_INTERRUPT_SECONDS`` sets each child's time (default 4; four children).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import _workers as workers  # tests/ is on sys.path under pytest
import pytest
from conftest import first_difference

from persistedstate import PersistedState, load

pytestmark = [
    pytest.mark.skipif(
        sys.platform == "win32", reason="SIGALRM and setitimer are POSIX (Windows has neither)"
    ),
    pytest.mark.usefixtures("quiet_recovery_warnings"),
]

SECONDS = float(os.environ.get("PERSISTEDSTATE_INTERRUPT_SECONDS", "4"))
CHILDREN = 4
MIN_INTERRUPTS = 150  # per child (about 700 is usual): fewer proves little (a starved machine)
TOTALS = (
    "raised",
    "interrupted_changes",
    "multiply_interrupted",
    "changes",
    "checks",
    "replacements",
)


def _directories(tmp_path: Path) -> list[Path]:
    """Where each child keeps its state: alternately tmp_path and a tmpfs, if there is one."""
    fast = Path("/dev/shm")
    places = [tmp_path]
    if fast.is_dir() and os.access(fast, os.W_OK):
        places.append(Path(tempfile.mkdtemp(prefix="persistedstate-interrupts-", dir=fast)))
    return [places[number % len(places)] / f"child-{number}" for number in range(CHILDREN)]


def _run_child(directory: Path, seed: int) -> tuple[dict[str, int], list[str]]:
    """One child; its statistics, and what went wrong (with the seed, to run it again)."""
    directory.mkdir()
    path = directory / "interrupted.state"
    report = directory / "report.json"
    command = [
        sys.executable,
        str(workers.SCRIPT),
        "interrupted",
        str(path),
        str(seed),
        str(SECONDS),
        str(report),
    ]
    where = f"child with seed {seed} in {directory}"
    done = subprocess.run(command, capture_output=True, text=True, timeout=SECONDS + 120)
    if done.returncode != 0 or not report.exists():
        return {}, [f"{where} failed ({done.returncode}): {done.stderr[-3000:]}"]
    result = json.loads(report.read_text())
    problems = [f"{where}: {problem}" for problem in result["problems"]]
    memory = result["memory"]
    try:
        data = load(path)
    except Exception as error:
        return result["stats"], [*problems, f"{where}: load() raised {error!r}"]
    difference = first_difference(data, memory)
    if difference is not None:
        problems.append(f"{where}: the file is not the child's memory: {difference}")
    with PersistedState.open(path) as state:
        if state.copy() != memory:
            problems.append(f"{where}: open() gives {state.copy()!r}, not the child's memory")
    conflicts = sorted(entry.name for entry in directory.glob("*.conflict-*"))
    if conflicts:
        problems.append(f"{where}: conflict copies nobody caused: {conflicts}")
    if result["stats"]["raised"] < MIN_INTERRUPTS:
        problems.append(f"{where}: only {result['stats']['raised']} interrupts were delivered")
    return result["stats"], problems


def test_changes_interrupted_at_random_moments_keep_memory_and_file_together(
    tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    totals = dict.fromkeys(TOTALS, 0)
    problems: list[str] = []
    directories = _directories(tmp_path)
    try:
        for directory in directories:
            stats, found = _run_child(directory, random.randrange(1 << 30))
            problems.extend(found)
            for name in TOTALS:
                totals[name] += stats.get(name, 0)
    finally:
        for directory in directories:
            if not directory.is_relative_to(tmp_path):
                shutil.rmtree(directory.parent, ignore_errors=True)
    line = (
        f"interrupts: {totals['raised']} KeyboardInterrupts raised by SIGALRM's handler in "
        f"{totals['changes']} changes ({totals['interrupted_changes']} interrupted, "
        f"{totals['multiply_interrupted']} of them more than once; "
        f"{totals['replacements']} compactions completed), {totals['checks']} checks"
    )
    print("\n" + line)
    for name, value in totals.items():
        record_property(f"interrupts_{name}", value)
    assert not problems, f"{len(problems)} broken promises:\n" + "\n".join(problems[:8])
