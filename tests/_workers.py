"""A deterministic workload shared by the crash, power-cut, fault and lock tests, and the child
process that runs it.

``apply_step(state, k)`` makes change number ``k``: exactly one mutating call (or one
transaction), so each step is one acknowledged change. It works the same on a
``PersistedState`` and on a plain dict, so the expected state after any number of steps can be
recomputed in the test process (:class:`Simulator`). The steps cover counters
(read-modify-write), list appends/inserts/deletes/slice assignment/reverse, nested dicts,
unicode text, bytes, datetimes, and transactions and multi-key ``update()`` calls that move value
between ``a`` and ``b`` (their sum is always :data:`TOTAL`).

Run as a script (``python _workers.py MODE ...``), it is the child process of the tests:

``steps PATH START FSYNC COMPACT_MIN``
    open PATH, print ``ready``, then apply steps START, START+1, ... forever, printing the
    number of steps done (the state is then ``S_<n>``) after each call has returned.
``hold PATH``
    open PATH, set ``holder`` to its pid, print ``locked``; on a line ``close`` from stdin
    set ``released`` and close, print ``closed``.
``try-open PATH LOCK_TIMEOUT``
    try to open PATH; print ``opened`` or ``locked <holder_pid>``.
``loop PATH``
    open PATH (default mode) with ``settings: {batch: 100}`` and ``counter: 0``, print
    ``ready``; then per line from stdin: ``step`` reads ``state.settings["batch"]``, adds one
    to ``state.counter`` and prints both as JSON; ``close`` closes and prints ``closed``.
``hold-transaction PATH``
    open PATH, open a transaction that sets ``in_transaction``, print ``in transaction``; on a
    line from stdin end it and print ``committed``; on another, close and print ``closed``.
``count PATH TIMES``
    open PATH in shared mode, then TIMES times ``with state.transaction(): state.counter += 1``;
    close, print ``done``.
``drive PATH SHARED``
    open PATH (in shared mode if SHARED is 1), print ``ready``; then evaluate each line from
    stdin as a Python expression with ``state`` bound, and print the ``repr`` of its value
    (``error <name>: <message>`` if it raised). ``close`` closes and exits.
``drive-typed PATH SHARED``
    as ``drive``, with a typed state (``_typed_job.Job``), and one JSON line per
    request: ``{"value": repr}``, or for an error its type, message and, for a
    ``CorruptStateError``, its fields.
``chaos PATH NAME SEED OUT``
    open PATH in shared mode (compacting often) and make random operations forever: a counter
    incremented in a transaction (its new value read back), the counter read, a unique item
    ``[NAME, n]`` appended to the list ``items``, the list read. After each returns, one JSON
    line goes to OUT: ``[op, start_ns, end_ns, result]`` (``time.monotonic_ns``, the same
    clock in every process); a list read gives its length and a digest of its items.
``cycle PATH TIMES``
    TIMES times: open PATH (waiting for it), add one to ``count``, close; print ``done``.
``compact-and-hang PATH``
    open PATH, set ``compacting`` to true, compact, and stop for good at the rename that would
    put the new file in place, printing ``renaming <temporary file>`` (killed there, it leaves
    what a compaction interrupted at its last step leaves).
``interrupted PATH SEED SECONDS REPORT MODE``
    open PATH (in shared mode if MODE is ``shared``) and make random changes for SECONDS while
    a timer delivers SIGALRM at random moments, its handler raising KeyboardInterrupt (what
    Ctrl-C does); catch it and carry on;
    then write REPORT (JSON: the statistics, what went wrong, the state in memory) and close
    the state without compacting. See :func:`_run_interrupted`.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__)  # run as ``python SCRIPT <worker> ...`` by the tests
TOTAL = 1000

INITIAL: dict[str, Any] = {
    "count": 0,
    "last": None,
    "a": TOTAL,
    "b": 0,
    "items": [],
    "nested": {"g0": {"v": 0, "hist": []}},
    "text": "",
    "log": {},
}


def _null_transaction() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def apply_step(state: Any, k: int, transaction: Callable[[], Any] | None = None) -> None:
    """Change number ``k``: one mutating call or one transaction on ``state``."""
    tx = transaction or _null_transaction
    if k == 0:
        with tx():
            state.update(copy.deepcopy(INITIAL))
        return
    kind = k % 10
    if kind == 0:
        state["count"] += 1
    elif kind == 1:
        state["items"].append(k)
    elif kind == 2:
        amount = k % 7 + 1
        if k % 20 == 12:  # the same as one multi-key call, outside any transaction
            state.update({"a": state["a"] - amount, "b": state["b"] + amount, "last_tx": k})
            return
        with tx():
            state["a"] -= amount
            state["b"] += amount
            state["last_tx"] = k
    elif kind == 3:
        state["nested"][f"g{k % 4}"] = {"v": k, "hist": [k, str(k)]}
    elif kind == 4:
        hist = state["nested"]["g0"]["hist"]
        hist[:] = [*list(hist)[-4:], k]
    elif kind == 5:
        items = state["items"]
        if len(items) > 6:
            del items[0]
        else:
            items.insert(0, -k)
    elif kind == 6:
        with tx():
            amount = min(state["b"], k % 5 + 1)
            state["b"] -= amount
            state["a"] += amount
            state["log"][str(k)] = {"moved": amount, "at": k}
            if len(state["log"]) > 3:
                del state["log"][next(iter(state["log"]))]
    elif kind == 7:
        variant = k % 3
        if variant == 0:
            state["text"] = f'step {k}: ünïcødé ✓ "quoted" \\ tab\there\nsecond line'
        elif variant == 1:
            state["blob"] = bytes([k % 256, 0, 255]) * 2
        else:
            state["when"] = datetime.datetime(2026, 1, 1) + datetime.timedelta(seconds=k)
    elif kind == 8:
        state["items"].reverse()
    elif k % 20 == 19 and "last" in state:
        del state["last"]
    else:
        state["last"] = k / 4


def check_invariant(data: dict[Any, Any]) -> None:
    """No transaction is half-applied: value only moves between a and b."""
    if "a" in data or "b" in data:
        assert data["a"] + data["b"] == TOTAL, f"a + b != {TOTAL}: {data['a']} + {data['b']}"


class Simulator:
    """The expected states S_0, S_1, ... of the workload, computed on plain dicts."""

    def __init__(self, initial: dict[Any, Any] | None = None) -> None:
        self.index = 0
        self.current: dict[Any, Any] = copy.deepcopy(initial or {})

    def state(self, n: int) -> dict[Any, Any]:
        """S_n (n >= the current index); advances the simulator to n."""
        assert n >= self.index, (n, self.index)
        while self.index < n:
            apply_step(self.current, self.index)
            self.index += 1
        return self.current

    def peek(self, n: int) -> dict[Any, Any]:
        """S_n without advancing (n >= the current index)."""
        data = copy.deepcopy(self.current)
        for k in range(self.index, n):
            apply_step(data, k)
        return data


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types (bool is not int), NaN equal to NaN, order ignored.

    Iterative, so that deeply nested data compares without recursion.
    """
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if type(x) is dict:
            if len(x) != len(y):
                return False
            y_keys = {_key_id(key): key for key in y}
            for key, value in x.items():
                other = y_keys.get(_key_id(key), _MISSING)
                if other is _MISSING:
                    return False
                stack.append((value, y[other]))
        elif type(x) is list:
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif type(x) is float and math.isnan(x):
            if not math.isnan(y):
                return False
        elif isinstance(x, datetime.datetime):
            if x != y or x.utcoffset() != y.utcoffset():
                return False
        elif x != y:
            return False
    return True


_MISSING: Any = object()


def _key_id(key: Any) -> Any:
    if type(key) is float and math.isnan(key):
        return ("nan",)
    return (type(key).__name__, key)


# -- the child process ---------------------------------------------------------------------


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _run_steps(path: str, start: int, fsync: bool, compact_min: int) -> None:
    from persistedstate import PersistedState

    state = PersistedState.open(
        path, fsync=fsync, compact_min_bytes=compact_min, compact_ratio=0.25
    )
    _say("ready")
    k = start
    while True:
        apply_step(state, k, state.transaction)
        if k % 53 == 52:
            state.compact()
        k += 1
        _say(str(k))


def _hold(path: str) -> None:
    import os

    from persistedstate import PersistedState

    state = PersistedState.open(path)
    state["holder"] = os.getpid()
    _say("locked")
    for line in sys.stdin:
        if line.strip() == "close":
            state["released"] = True
            state.close()
            _say("closed")
            return


def _try_open(path: str, lock_timeout: float) -> None:
    from persistedstate import PersistedState, StateLockedError

    try:
        state = PersistedState.open(path, lock_timeout=lock_timeout)
    except StateLockedError as error:
        _say(f"locked {error.holder_pid} {error.path}")
        return
    state.close()
    _say("opened")


def _loop(path: str) -> None:
    import json

    from persistedstate import PersistedState

    state = PersistedState(path, settings={"batch": 100}, counter=0)
    _say("ready")
    for line in sys.stdin:
        if line.strip() == "step":
            batch = state.settings["batch"]
            state.counter += 1
            _say(json.dumps({"batch": batch, "counter": state.counter}))
        elif line.strip() == "close":
            state.close()
            _say("closed")
            return


def _hold_transaction(path: str) -> None:
    from persistedstate import PersistedState

    state = PersistedState.open(path)
    with state.transaction():
        state["in_transaction"] = True
        _say("in transaction")
        sys.stdin.readline()
    _say("committed")
    sys.stdin.readline()
    state.close()
    _say("closed")


def _count(path: str, times: int) -> None:
    from persistedstate import PersistedState

    state = PersistedState.open(path, {"counter": 0}, shared=True, lock_timeout=60)
    for _ in range(times):
        with state.transaction():
            state.counter += 1
    state.close()
    _say("done")


def _drive(path: str, shared: bool, typed: bool = False) -> None:
    from persistedstate import PersistedState

    if typed:
        from _typed_job import Job

    state = (Job if typed else PersistedState).open(path, shared=shared, lock_timeout=60)
    _say("ready")
    for line in sys.stdin:
        if line.strip() == "close":
            state.close()
            _say("closed")
            return
        _say((_answer_in_json if typed else _answer)(line, state))


def _answer(line: str, state: Any) -> str:
    try:
        return repr(eval(line, {"state": state}))
    except Exception as error:
        return f"error {type(error).__name__}: {error}"


def _answer_in_json(line: str, state: Any) -> str:
    import json

    from persistedstate import CorruptStateError

    try:
        said: dict[str, Any] = {"value": repr(eval(line, {"state": state}))}
    except Exception as error:
        said = {"error": type(error).__name__, "message": str(error)}
        if isinstance(error, CorruptStateError):
            said.update(path=error.path, problem=error.problem, line=error.line)
            said.update(hint=error.hint, source_line=error.source_line)
    return json.dumps(said)


def list_digest(items: list[Any]) -> str:
    """What ``chaos`` writes for a list it read (the checker compares it with the file's)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def _chaos(path: str, name: str, seed: int, out: str) -> None:
    import json
    import os
    import random
    import time

    from persistedstate import PersistedState

    rng = random.Random(seed)
    clock = time.monotonic_ns
    with open(out, "w", encoding="utf-8") as log:

        def done(op: str, start: int, result: Any) -> None:
            log.write(json.dumps([op, start, clock(), result]) + "\n")
            log.flush()  # (one write: in the file when the process is killed afterwards)

        start = clock()
        state = PersistedState.open(
            path,
            {"counter": 0, "items": []},
            shared=True,
            lock_timeout=60,
            compact_min_bytes=1024,
            compact_ratio=0.5,
        )
        done("open", start, os.getpid())
        number = 0
        while True:
            choice = rng.random()
            start = clock()
            if choice < 0.3:
                with state.transaction():
                    state.counter += 1
                    value = state.counter
                done("increment", start, value)
            elif choice < 0.5:
                done("read", start, state.counter)
            elif choice < 0.8:
                state["items"].append([name, number])
                done("append", start, [name, number])
                number += 1
            elif choice < 0.95:
                items = state["items"].copy()
                done("read_list", start, [len(items), list_digest(items)])
            else:
                state.compact()
                done("compact", start, None)


def _cycle(path: str, times: int) -> None:
    from persistedstate import PersistedState

    for _ in range(times):
        with PersistedState.open(path, lock_timeout=60) as state:
            state["count"] = state.get("count", 0) + 1
    _say("done")


def _compact_and_hang(path: str) -> None:
    import os
    import time

    from persistedstate import PersistedState

    state = PersistedState.open(path)
    state["compacting"] = True

    def hang(source: str, target: str) -> None:
        _say(f"renaming {source}")
        while True:
            time.sleep(60)

    os.replace = os.rename = hang  # (the only renames left in this process are compaction's)
    state.compact()


def _interrupted_step(state: Any, kept: dict[str, Any], rng: Any, k: int) -> None:
    """One random change (one call, or one transaction) of the ``interrupted`` child.

    The changes go through proxies kept since the start (``kept``: a kept proxy must keep
    working whatever an interrupt did), through the scalar short path (top level and nested),
    and through every kind of record: set, delete, insert, splice, clear, reorder, tx.
    """
    items, table = kept["items"], kept["table"]
    kind = rng.randrange(24)
    if len(items) > 24:
        del items[: len(items) // 2]  # a splice that keeps the list short
    elif kind == 0:
        items.append(k)
    elif kind == 1:
        items.insert(rng.randrange(len(items) + 1), -k)
    elif kind == 2 and items:
        del items[rng.randrange(len(items))]
    elif kind == 3 and len(items) > 4:
        del items[1::3]  # several deletes, one record
    elif kind == 4:
        start = rng.randrange(len(items) + 1)
        items[start : start + rng.randrange(3)] = [k, k + 1, k + 2][: rng.randrange(4)]
    elif kind == 5:
        items.reverse()
    elif kind == 6:
        items.sort(reverse=k % 2 == 1)
    elif kind == 7:
        items.extend([k, -k])
    elif kind == 8 and items:
        items.pop(rng.randrange(len(items)))
    elif kind == 9 and len(items) > 2:
        items[::2] = [k + i for i in range(len(items[::2]))]  # several sets, one record
    elif kind == 10:
        table[f"k{k % 9}"] = k  # the short path, nested
    elif kind == 11:
        table.update({f"k{(k + i) % 9}": [k, i] for i in range(3)})
    elif kind == 12 and table:
        del table[next(iter(table))]
    elif kind == 13:
        table.pop(f"k{k % 9}", None)
    elif kind == 14 and k % 7 == 0:
        table.clear()
    elif kind == 15:
        state.counter = k  # the short path at the top (the attribute is kept in __dict__)
    elif kind == 16:
        state["blob"] = {"at": k, "list": [k, [k]]}
    elif kind == 17:
        with state.transaction():  # value moves between a and b: a + b is constant
            amount = k % 5 + 1
            state.a -= amount
            items.append(k)
            table[f"t{k % 3}"] = {"moved": amount}
            state.b += amount
    elif kind == 18:
        with state.transaction():
            state.a += 1
            try:
                with state.transaction():  # a nested block that fails: only it is undone
                    state.b -= 1
                    items.insert(0, k)
                    del table[f"k{k % 9}"]  # (a KeyError, now and then)
                    items.reverse()
                    raise ValueError("undo the nested block")
            except (ValueError, KeyError):
                pass
            state.b -= 1
    elif kind == 19 and k % 5 == 0:
        state.compact()
    elif kind == 20:
        state.setdefault("nested", {}).setdefault("deep", []).append(k)
    elif kind == 21:
        deep = state.get("nested", {}).get("deep")
        if deep:
            deep[-1] = {"replaced": k}
    elif kind == 22:
        state.counter += 1
    else:
        items.remove(items[0]) if items else items.append(k)


def _run_interrupted(path: str, seed: int, seconds: float, report: str, shared: bool) -> None:
    """The ``interrupted`` child: random changes while SIGALRM's handler raises, at random
    moments, the KeyboardInterrupt that Ctrl-C raises; the program catches it and carries on.

    The handler raises only while a change runs (``armed``): an exception in the loop's own
    bookkeeping would end the child, not test the library. The timer is a one-shot, set again
    by the handler to a random delay: mostly short (tens of microseconds, to land anywhere in
    a change, and often a second time while the first is being handled), sometimes long
    enough for a compaction to finish. After each change an interrupt reached, memory
    (``copy()``) is compared with the file (``load``), the attribute kept in ``__dict__``
    with the value, and ``a + b`` with its constant.
    """
    import json
    import os
    import random
    import signal
    import time

    from persistedstate import PersistedState, load

    rng = random.Random(seed)
    delays = random.Random(seed + 1)
    stats = {
        "raised": 0,
        "interrupted_changes": 0,
        "multiply_interrupted": 0,
        "changes": 0,
        "checks": 0,
        "replacements": 0,
        "completed": 0,
    }
    problems: list[str] = []
    armed = [False]
    running = [True]
    raised_now = [0]

    def delay() -> float:
        if delays.random() < 0.8:
            return delays.uniform(0.000_010, 0.000_400)
        return delays.uniform(0.000_400, 0.004)

    # Python 3.10 runs handlers at a taken conditional jump too, and the exception match of
    # this loop's own ``except KeyboardInterrupt`` is one: a second interrupt there would end
    # the child, not test the library. So on 3.10 the handler disarms itself as it raises (one
    # interrupt per change); from 3.11 on, the interrupts go on while the library settles the
    # first, until this loop disarms them.
    disarm_as_it_raises = sys.version_info < (3, 11)

    def handler(signum: int, frame: Any) -> None:
        if running[0]:
            signal.setitimer(signal.ITIMER_REAL, delay())
        if armed[0]:
            stats["raised"] += 1
            raised_now[0] += 1
            if disarm_as_it_raises:
                armed[0] = False
            raise KeyboardInterrupt

    # The first import of a module is importlib's Python code, whose clean-up an interrupt can
    # itself interrupt (on 3.10, leaving the module half made): the library imports logging
    # at its first warning, so it is imported here, before the interrupts (docs/design.md).
    import logging  # noqa: F401

    state = PersistedState.open(path, compact_min_bytes=1024, compact_ratio=0.25, shared=shared)
    if "items" not in state:
        state.update({"items": [], "table": {}, "a": TOTAL, "b": 0, "counter": 0})
    kept = {"items": state["items"], "table": state["table"]}
    inode = os.stat(path).st_ino
    signal.signal(signal.SIGALRM, handler)  # (kept: a signal may still be on its way)
    signal.setitimer(signal.ITIMER_REAL, delay())
    deadline = time.monotonic() + seconds
    k = 0
    try:
        while time.monotonic() < deadline and len(problems) < 5:
            k += 1
            raised_now[0] = 0
            try:
                armed[0] = True
                _interrupted_step(state, kept, rng, k)
                armed[0] = False
                stats["completed"] += 1
            except KeyboardInterrupt:
                armed[0] = False
            except Exception as error:
                armed[0] = False
                problems.append(f"change {k} raised {error!r}")
            stats["changes"] += 1
            now = os.stat(path).st_ino
            stats["replacements"] += now != inode
            inode = now
            if raised_now[0] == 0:
                continue
            stats["interrupted_changes"] += 1
            stats["multiply_interrupted"] += raised_now[0] > 1
            stats["checks"] += 1
            memory = state.copy()  # (takes the lock: settles first what is not settled yet)
            try:
                disk = load(path)
            except Exception as error:
                problems.append(f"after change {k}: load() raised {error!r}")
                continue
            if disk != memory:
                problems.append(f"after change {k}: memory {memory!r} but file {disk!r}")
            if state.counter != memory["counter"]:
                problems.append(f"after change {k}: state.counter is {state.counter!r}")
            if memory["a"] + memory["b"] != TOTAL:
                problems.append(f"after change {k}: half a transaction: {memory!r}")
    finally:
        running[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
    memory = state.copy()
    with open(report, "w", encoding="utf-8") as out:
        json.dump({"stats": stats, "problems": problems, "memory": memory}, out)
    state.close(compact=False)


def main(argv: list[str]) -> None:
    mode, path, *rest = argv
    if mode == "steps":
        _run_steps(path, int(rest[0]), rest[1] == "1", int(rest[2]))
    elif mode == "hold":
        _hold(path)
    elif mode == "try-open":
        _try_open(path, float(rest[0]))
    elif mode == "loop":
        _loop(path)
    elif mode == "hold-transaction":
        _hold_transaction(path)
    elif mode == "count":
        _count(path, int(rest[0]))
    elif mode == "drive":
        _drive(path, rest[0] == "1")
    elif mode == "drive-typed":
        _drive(path, rest[0] == "1", typed=True)
    elif mode == "chaos":
        _chaos(path, rest[0], int(rest[1]), rest[2])
    elif mode == "cycle":
        _cycle(path, int(rest[0]))
    elif mode == "compact-and-hang":
        _compact_and_hang(path)
    elif mode == "interrupted":
        _run_interrupted(path, int(rest[0]), float(rest[1]), rest[2], rest[3] == "shared")
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
