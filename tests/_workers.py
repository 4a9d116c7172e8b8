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


def _drive(path: str, shared: bool) -> None:
    from persistedstate import PersistedState

    state = PersistedState.open(path, shared=shared, lock_timeout=60)
    _say("ready")
    for line in sys.stdin:
        if line.strip() == "close":
            state.close()
            _say("closed")
            return
        try:
            _say(repr(eval(line, {"state": state})))
        except Exception as error:
            _say(f"error {type(error).__name__}: {error}")


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
    elif mode == "chaos":
        _chaos(path, rest[0], int(rest[1]), rest[2])
    elif mode == "cycle":
        _cycle(path, int(rest[0]))
    elif mode == "compact-and-hang":
        _compact_and_hang(path)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
