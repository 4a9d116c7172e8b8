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
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

from peers import Engine, plain
from seed_example import peak_rss_bytes

STATE_FILE = "state.yaml"
SEED_EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed_example.py")
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

    Run it in a one-shot worker: a peak only grows, so it is meaningful once per process.
    """
    _copy_in(params["source"], directory)
    importlib.import_module(engine.module)  # the baseline includes the library
    baseline = peak_rss_bytes()
    store = engine.open(directory)
    peak = peak_rss_bytes()
    engine.close(store)
    return {"info": {"baseline_bytes": baseline, "peak_bytes": peak}}


# -- reading, importing, the seed example's memory ----------------------------------------


@workload
def read(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """``n`` reads of ``state.settings["batch"]`` (params["what"] == "settings") or of
    ``state.a["b"]["c"]`` ("nested"); the floor engine reads the same expression from plain
    dicts held as attributes of a plain object."""
    n, what = params["n"], params["what"]
    data: dict[str, Any] = {"settings": {"batch": 100}, "a": {"b": {"c": 1}}}
    expected = 100 if what == "settings" else 1
    if engine.family == "floor":
        store: Any = types.SimpleNamespace(**data)
    else:
        store = engine.open(directory)
        for key, value in data.items():
            store[key] = value
        engine.close(store)
        store = engine.open(directory)
    seen: list[Any] = []

    def read_settings() -> None:
        value = None
        for _ in range(n):
            value = store.settings["batch"]
        seen.append(value)

    def read_nested() -> None:
        value = None
        for _ in range(n):
            value = store.a["b"]["c"]
        seen.append(value)

    seconds = _timed(read_settings if what == "settings" else read_nested)
    close_seconds = 0.0 if engine.family == "floor" else _close_timed(engine, store)
    _check(f"read {what}", seen, [expected])
    return {"ops": n, "seconds": seconds, "close_seconds": close_seconds, "info": {}}


def _fresh_process_env() -> dict[str, str]:
    """The environment of a timed ``python`` process: bytecode caching allowed, as it is for
    any installed package (pip compiles it at install), even where PYTHONDONTWRITEBYTECODE is
    set, which would make an editable install compile its modules at every import."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def _cache_bytecode(module: str, directory: str) -> None:
    """Import ``module`` once, untimed, so its .pyc files exist before anything is timed."""
    subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=directory,
        env=_fresh_process_env(),
        check=True,
        capture_output=True,
    )


def _run_quietly(command: list[str], directory: str) -> tuple[float, float]:
    """Wall time of one process, from the parent (start, run, exit), and its CPU time."""
    import resource  # POSIX only, like the measurement

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        command,
        cwd=directory,
        env=_fresh_process_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


@workload
def import_time(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """What ``import MODULE`` adds to a whole process of this interpreter.

    ``pairs`` times each, alternating which goes first: ``python -c "pass"`` and ``python -c
    "import MODULE"``, each a fresh process timed from here, from start to exit. ``seconds``
    is the median of the second less the median of the first (``info`` has the same for the
    processes' CPU time, user + system, which a busy machine inflates less). Then one
    ``-X importtime`` run
    says which packages the import spends its time in (``info["packages"]``: package ->
    microseconds of the import's own modules, summed per top-level package).
    """
    pairs, module = params["pairs"], engine.module
    bare = [sys.executable, "-c", "pass"]
    importing = [sys.executable, "-c", f"import {module}"]
    _cache_bytecode(module, directory)
    runs: dict[str, list[tuple[float, float]]] = {"bare": [], "import": []}
    for pair in range(pairs):
        for command in (bare, importing) if pair % 2 == 0 else (importing, bare):
            runs["bare" if command is bare else "import"].append(_run_quietly(command, directory))
    bare_median = statistics.median(wall for wall, _ in runs["bare"])
    import_median = statistics.median(wall for wall, _ in runs["import"])
    bare_cpu = statistics.median(cpu for _, cpu in runs["bare"])
    import_cpu = statistics.median(cpu for _, cpu in runs["import"])
    profile = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=directory,
        env=_fresh_process_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    packages, total_us = importtime_packages(profile, module)
    info = {
        "bare_seconds": bare_median,
        "import_seconds": import_median,
        "cpu_seconds": import_cpu - bare_cpu,
        "pairs": pairs,
        "importtime_total_us": total_us,
        "packages": packages,
    }
    return {"ops": 1, "seconds": import_median - bare_median, "close_seconds": 0.0, "info": info}


def importtime_packages(profile: str, module: str) -> tuple[dict[str, int], int]:
    """From ``-X importtime`` output: the microseconds of the imports ``import MODULE`` made
    (its own module and everything imported under it, not the interpreter's start-up), summed
    per top-level package, and their total."""
    entries = []  # (depth, name, self_us, cumulative_us), in the order printed
    for line in profile.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|", 2)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        entries.append((depth, name.strip(), int(self_us), int(cumulative_us)))
    # A module is printed after everything it imported, so MODULE's subtree is the run of
    # entries that ends with it at depth 0 and starts after the previous depth-0 entry.
    end = max(i for i, entry in enumerate(entries) if entry[0] == 0 and entry[1] == module)
    start = end
    while start > 0 and entries[start - 1][0] > 0:
        start -= 1
    packages: dict[str, int] = {}
    for _, name, self_us, _ in entries[start : end + 1]:
        top = name.split(".")[0]
        packages[top] = packages.get(top, 0) + self_us
    return packages, entries[end][3]


@workload
def seed_memory(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """Peak resident memory of a process that runs the README's first example (seed_example.py):
    ``n`` changes of ``STATE.last_id``, no close(), measured as the process ends (after the
    compaction at exit). The program is a fresh process of this interpreter; its state is then
    reopened here and checked."""
    n = params["n"]
    path = os.path.join(directory, STATE_FILE)
    _cache_bytecode(engine.module, directory)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, SEED_EXAMPLE, path, str(n)],
        cwd=directory,
        env=_fresh_process_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    said = json.loads(done.stdout.strip().splitlines()[-1])
    _check("last_id", _reopened(engine, directory, lambda s: s["last_id"]), n)
    info = {"baseline_bytes": said["baseline"], "peak_bytes": said["peak"]}
    return {"ops": n, "seconds": seconds, "close_seconds": 0.0, "info": info}


# -- several processes ---------------------------------------------------------------------


def _count_in_process(name: str, directory: str, n: int, how: str, barrier: Any, ends: Any) -> None:
    """A forked child of ``processes_counter``: open, wait for the others, count, say when it
    began and ended (``perf_counter`` is the system's monotonic clock: the same in every
    process)."""
    from peers import ENGINES

    engine = ENGINES[name]
    store = engine.open(directory)
    barrier.wait(timeout=300)
    start = time.perf_counter()
    if how == "incr":
        for _ in range(n):
            store.incr("counter")
    elif engine.name == "shared":
        for _ in range(n):
            with store.transaction():
                store.counter += 1
    elif engine.name == "diskcache":
        for _ in range(n):
            with store.transact():
                store["counter"] += 1
    else:  # SqliteDict has no transaction: a read, then a write that commits at once
        for _ in range(n):
            store["counter"] += 1
    ends.put((start, time.perf_counter()))
    engine.close(store)


@workload
def processes_counter(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """``processes`` processes (forked from this worker) each make ``n`` increments of one
    counter, all at once: in a transaction (``how`` "transaction": this project's shared
    mode, DiskCache's ``transact()``; SqliteDict has none, so there it is a read and then a
    write that commits at once), or with DiskCache's atomic ``incr`` (``how`` "incr"). Timed
    from the moment every process has opened the store to the end of the last one's loop
    (``time.perf_counter`` is the system's monotonic clock, the same in every process). The
    count is checked; SqliteDict's lost updates are counted (``info["lost"]``), not failed."""
    import multiprocessing

    processes, n, how = params["processes"], params["n"], params["how"]
    store = engine.open(directory)
    store["counter"] = 0
    engine.close(store)
    context = multiprocessing.get_context("fork")
    barrier, ends = context.Barrier(processes + 1), context.Queue()
    children = [
        context.Process(
            target=_count_in_process, args=(engine.name, directory, n, how, barrier, ends)
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    barrier.wait(timeout=300)
    # (from the first child's start: the parent may be scheduled after a quick run has ended)
    spans = [ends.get(timeout=600) for _ in children]
    for child in children:
        child.join(timeout=600)
        if child.exitcode != 0:
            raise CheckFailed(f"a counting process exited with status {child.exitcode}")
    count = _reopened(engine, directory, lambda s: s["counter"])
    total = processes * n
    if not (engine.name == "sqlitedict" and how == "transaction"):
        _check("counter", count, total)
    info = {"count": count, "lost": total - count, "processes": processes}
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    return {"ops": total, "seconds": seconds, "close_seconds": 0.0, "info": info}


CHANGER = """\
import json, os, sys, time
from peers import ENGINES

name, directory = sys.argv[1], sys.argv[2]
engine = ENGINES[name]
if name == "ours":  # another program holds the state: change it as `persistedstate set` does
    from persistedstate import state as commands
print("ready", flush=True)
for line in sys.stdin:
    value = int(line)
    start = time.monotonic()
    if name == "ours":
        store = commands.command(os.path.join(directory, "state.yaml"))
        store["batch"] = value
        store.close()
    else:
        store = engine.open(directory)
        store["batch"] = value
        engine.close(store)
    print(json.dumps([start, time.monotonic()]), flush=True)
"""


@workload
def outside_change(engine: Engine, directory: str, params: dict[str, Any]) -> dict[str, Any]:
    """How long until a program sees a change another process made. The program (this
    worker) has the store open and reads ``store["batch"]`` in a loop; another process,
    started and imported beforehand, opens the store, sets a new value and closes it (this
    project in the default mode: a command, ``persistedstate.state.command``, which the
    program hands the file over to; in shared mode: another shared-mode process). Measured
    from the moment that process begins (before it opens the store) to the program's first
    read of the new value (``time.monotonic``, one clock for all processes); the median of
    ``trials``, with each trial's time in ``info``."""
    trials = params["trials"]
    store = engine.open(directory)
    store["batch"] = 0
    changer = subprocess.Popen(
        [sys.executable, "-c", CHANGER, engine.name, directory],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert changer.stdin is not None and changer.stdout is not None
    latencies, after_return = [], []
    try:
        if changer.stdout.readline() != "ready\n":
            raise CheckFailed("the changing process did not start")
        for value in range(1, trials + 1):
            changer.stdin.write(f"{value}\n")
            changer.stdin.flush()
            deadline = time.monotonic() + 60
            reads = 0
            while store["batch"] != value:
                reads += 1
                if reads % 1000 == 0 and time.monotonic() > deadline:
                    raise CheckFailed(f"the program never saw batch = {value}")
            seen = time.monotonic()
            began, returned = json.loads(changer.stdout.readline())
            latencies.append(seen - began)
            after_return.append(seen - returned)
    finally:
        changer.stdin.close()
        changer.wait(timeout=60)
    start = time.perf_counter()
    engine.close(store)
    close_seconds = time.perf_counter() - start
    info = {"latencies": latencies, "after_return": after_return}
    return {
        "ops": trials,
        "seconds": statistics.median(latencies),
        "close_seconds": close_seconds,
        "info": info,
    }
