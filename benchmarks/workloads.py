"""The measured workloads. Each runs in a worker subprocess for one engine, in a fresh directory.

A workload sets its store up (not timed), times the operations with ``time.perf_counter``,
times ``close()`` separately, then reopens the store and checks the result, so a fast but
wrong store cannot win. It returns a dict: ``ops``, ``seconds`` (the timed operations),
``close_seconds`` and ``info`` (sizes, digests, anything the report may show).

The operations are written out plainly, the way a user of each family writes them:

- state stores: ``state.counter += 1``, ``state.a["b"]["c"]["d"]["e"]["count"] += 1``,
  ``state.processed.append(i)``;
- key-value stores: ``store["counter"] += 1``; a nested change or an append reads the
  top-level value, changes it and writes it back (their values are not live).
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from peers import Engine, plain

STATE_FILE = "state.yaml"
RECORD = b'--- ["set", [], "counter", 1234567]\n'.ljust(39) + b"\n"  # 40 bytes, like a record
assert len(RECORD) == 40

# Open states that must outlive the request (see make_v26_file): never closed, never collected.
KEEP_OPEN: list[Any] = []

Workload = Callable[[Engine, str, dict[str, Any]], dict[str, Any]]
WORKLOADS: dict[str, Workload] = {}


def workload(function: Workload) -> Workload:
    WORKLOADS[function.__name__] = function
    return function


class CheckFailed(Exception):
    """A store gave back something other than what was written."""


def _timed(loop: Callable[[], None]) -> float:
    gc.collect()
    start = time.perf_counter()
    loop()
    return time.perf_counter() - start


def _close_timed(engine: Engine, store: Any) -> float:
    start = time.perf_counter()
    engine.close(store)
    return time.perf_counter() - start


def _reopened(engine: Engine, directory: str, read: Callable[[Any], Any]) -> Any:
    store = engine.open(directory)
    try:
        return read(store)
    finally:
        engine.close(store)


def _check(what: str, actual: Any, expected: Any) -> None:
    if actual != expected:
        raise CheckFailed(f"{what}: read back {actual!r}, expected {expected!r}")


def _other_keys(count: int) -> Iterator[tuple[str, int]]:
    return ((f"key_{index:05d}", index) for index in range(count))


# -- per-operation workloads ---------------------------------------------------------------


@workload
def floor(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """One os.write() of a 40-byte record per operation (and os.fsync() with fsync=True)."""
    n, fsync = params["n"], params.get("fsync", False)
    fd = os.open(os.path.join(directory, "floor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    write, sync, record = os.write, os.fsync, RECORD

    def loop() -> None:
        for _ in range(n):
            write(fd, record)

    def synced_loop() -> None:
        for _ in range(n):
            write(fd, record)
            sync(fd)

    seconds = _timed(synced_loop if fsync else loop)
    start = time.perf_counter()
    os.close(fd)
    close_seconds = time.perf_counter() - start
    _check("floor file size", os.path.getsize(os.path.join(directory, "floor.log")), 40 * n)
    return {"ops": n, "seconds": seconds, "close_seconds": close_seconds, "info": {}}


@workload
def counter(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """``n`` increments of one counter, in a state that may hold ``other_keys`` more keys."""
    n, fsync = params["n"], params.get("fsync", False)
    store = engine.open(directory, fsync=fsync)
    engine.fill(store, _other_keys(params.get("other_keys", 0)))
    store["counter"] = 0
    engine.close(store)
    store = engine.open(directory, fsync=fsync)  # time a freshly opened state

    if engine.family == "state":

        def loop() -> None:
            for _ in range(n):
                store.counter += 1
    else:

        def loop() -> None:
            for _ in range(n):
                store["counter"] += 1

    seconds = _timed(loop)
    close_seconds = _close_timed(engine, store)
    _check("counter", _reopened(engine, directory, lambda s: s["counter"]), n)
    return {"ops": n, "seconds": seconds, "close_seconds": close_seconds, "info": {}}


@workload
def nested(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """``n`` increments of a number five dicts deep: a["b"]["c"]["d"]["e"]["count"]."""
    n = params["n"]
    store = engine.open(directory)
    store["a"] = {"b": {"c": {"d": {"e": {"count": 0}}}}}
    engine.close(store)
    store = engine.open(directory)

    if engine.family == "state":

        def loop() -> None:
            for _ in range(n):
                store.a["b"]["c"]["d"]["e"]["count"] += 1
    else:

        def loop() -> None:
            for _ in range(n):
                top = store["a"]
                top["b"]["c"]["d"]["e"]["count"] += 1
                store["a"] = top

    seconds = _timed(loop)
    close_seconds = _close_timed(engine, store)
    count = _reopened(engine, directory, lambda s: s["a"]["b"]["c"]["d"]["e"]["count"])
    _check("nested count", count, n)
    return {"ops": n, "seconds": seconds, "close_seconds": close_seconds, "info": {}}


@workload
def append(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """``n`` appends to a list that starts empty."""
    n = params["n"]
    store = engine.open(directory)
    store["processed"] = []
    engine.close(store)
    store = engine.open(directory)

    if engine.family == "state":

        def loop() -> None:
            for index in range(n):
                store.processed.append(index)
    else:

        def loop() -> None:
            for index in range(n):
                processed = store["processed"]
                processed.append(index)
                store["processed"] = processed

    seconds = _timed(loop)
    close_seconds = _close_timed(engine, store)
    processed = _reopened(engine, directory, lambda s: plain(s["processed"]))
    _check("the list", processed == list(range(n)), True)
    return {"ops": n, "seconds": seconds, "close_seconds": close_seconds, "info": {}}


# -- files: open, compaction, memory -------------------------------------------------------


def sample_items(target_bytes: int) -> Iterator[tuple[str, Any]]:
    """Entries of a realistic state, about ``target_bytes`` once written as block YAML."""
    colours = ["red", "green", "blue"]
    for index in range(max(1, target_bytes // 89)):  # each entry is about 89 bytes
        yield (
            f"item_{index:05d}",
            {
                "name": f"Item number {index}",
                "done": index % 3 == 0,
                "score": round(index * 0.37, 2),
                "tags": colours[: index % 4],
            },
        )


def digest(data: Any) -> str:
    """A short fingerprint of the data, the same for equal data whatever its key order."""
    text = json.dumps(plain(data), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _copy_in(source: str, directory: str) -> None:
    shutil.copyfile(source, os.path.join(directory, STATE_FILE))


@workload
def write_sample(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """Write the sample state with the engine itself, closed (compacted), to params["path"]."""
    store = engine.open(directory)
    engine.fill(store, sample_items(params["bytes"]))
    engine.close(store)
    shutil.copyfile(os.path.join(directory, STATE_FILE), params["path"])
    return {"info": {"bytes": os.path.getsize(params["path"])}}


@workload
def make_v26_file(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """A file as 26.1 leaves it when killed: ``entries`` in its snapshot, then ``changes``.

    Run it with 26.1, in a worker that exits right after replying (``then_exit``): the state
    stays open, so 26.1 never vacuums the journal away.
    """
    entries, changes = params["entries"], params["changes"]
    store = engine.open(directory)
    engine.fill(
        store,
        (
            (f"entry_{index:04d}", {"id": index, "name": f"entry {index}", "visits": 0})
            for index in range(entries)
        ),
    )
    store["counter"] = 0
    engine.close(store)  # 26.1 vacuums here: the entries become its snapshot
    store = engine.open(directory)
    for change in range(changes):
        if change % 2:
            store[f"entry_{change % entries:04d}"]["visits"] += 1
        else:
            store.counter = change
    KEEP_OPEN.append(store)
    shutil.copyfile(os.path.join(directory, STATE_FILE), params["path"])
    with open(params["path"], "rb") as file:
        raw = file.read()
    return {"info": {"bytes": len(raw), "markers": raw.count(b"\n---\n"), "digest": digest(store)}}


@workload
def open_file(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """Open a copy of params["source"]; the digest lets the report compare what was read."""
    _copy_in(params["source"], directory)
    gc.collect()
    start = time.perf_counter()
    store = engine.open(directory)
    seconds = time.perf_counter() - start
    info = {"digest": digest(store), "keys": len(store)}
    engine.close(store)
    return {"ops": 1, "seconds": seconds, "close_seconds": 0.0, "info": info}


@workload
def compact_file(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """Time one compaction of a copy of params["source"] (26.1 has none: its close())."""
    _copy_in(params["source"], directory)
    store = engine.open(directory)
    store["counter"] = 1  # one change, so there is a journal to fold in
    gc.collect()
    start = time.perf_counter()
    if hasattr(store, "compact"):
        store.compact()
        seconds = time.perf_counter() - start
        engine.close(store)
    else:
        engine.close(store)
        seconds = time.perf_counter() - start
    size = os.path.getsize(os.path.join(directory, STATE_FILE))
    return {"ops": 1, "seconds": seconds, "close_seconds": 0.0, "info": {"bytes": size}}


@workload
def peak_rss(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """Peak resident memory of this (fresh) process after opening params["source"].

    Run it in a one-shot worker: ru_maxrss only grows, so it is meaningful once per process.
    """
    _copy_in(params["source"], directory)
    importlib.import_module(engine.module)  # the baseline includes the library
    baseline = _max_rss_bytes()
    store = engine.open(directory)
    peak = _max_rss_bytes()
    engine.close(store)
    return {"info": {"baseline_bytes": baseline, "peak_bytes": peak}}


def _max_rss_bytes() -> int:
    import resource  # POSIX only, like the measurement

    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage if sys.platform == "darwin" else usage * 1024  # Linux reports KiB
