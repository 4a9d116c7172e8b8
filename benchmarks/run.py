"""Benchmark persistedstate against the write-syscall floor, persistedstate 26.1 and its peers.

Usage (``make bench`` creates the peers' environments first, then runs this and readme.py)::

    .venv/bin/python benchmarks/run.py [--quick] [--runs N] [--rows a,b] [--engines a,b]
                                       [--out DIR]

``--rows`` (``make bench ROWS=import,memory``) runs some rows only: the names of report.ROWS
(changes, fsync, files, import, memory, read) or of single cases. Their figures replace those
rows' figures in an existing results.json, which keeps every other row, and the report says
when each row was measured. A row's engines always run together, in the same rounds.

Each engine runs in its own worker subprocess (``worker.py``): this project with the
interpreter running this script (the dev venv, editable install), persistedstate 26.1 from
``benchmarks/.peers/v26``, DiskCache, SqliteDict and lmdbm from ``benchmarks/.peers/others``
(or from this interpreter when they are importable here), shelve and the floor loop from this
interpreter. An engine that is nowhere to be found is left out and the report says so.

Method: ``--runs`` rounds (5 by default) each run every case for every engine in turn, so a
slow spell of the machine spreads over all engines; a cell whose run takes under a second runs
three times per round. Every figure is the median of its runs, and each run uses a fresh
directory under ``--tmp-dir`` (on the disk of the checkout by default, not a RAM-backed /tmp).
Results go to ``--out`` (``benchmarks/results``):
``results.json`` (every run), ``results.md`` (the tables) and ``results.png`` (the chart, when
matplotlib is available in the peers' environment or here). Interpreters are recorded relative
to the repository (``.venv/bin/python``), as are the other paths; ``readme.py`` then writes
README.md's figures from results.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER = HERE / "worker.py"
CHART = HERE / "chart.py"
DEFAULT_PEERS = HERE / ".peers"
DEFAULT_OUT = HERE / "results"
DEFAULT_TMP = HERE / ".scratch"

STORES = ("ours", "v26", "diskcache", "sqlitedict", "lmdbm", "shelve")
ALL_ENGINES = (*STORES, "shared", "floor")
KV_PEERS = ("diskcache", "sqlitedict", "lmdbm")
CHEAP_SECONDS = 1.0  # a cell whose run takes less than this ...
EXTRA_RUNS = 3  # ... runs this many times per round (see run_all; not with --quick)

# Sizes of a full run and of --quick (the smoke test): same code, smaller numbers.
FULL = {
    "n": 10_000,
    "other_keys": 10_000,
    "long_n": 100_000,
    "fsync_n": 1_000,
    "sample_bytes": 1_000_000,
    "entries": 1_000,
    "changes": 2_000,
    "reads": 100_000,
    "import_pairs": 10,
    "seed_n": 100_000,
    "processes": 4,
    "process_n": 10_000,
    "outside_trials": 10,
}
QUICK = {
    "n": 200,
    "other_keys": 200,
    "long_n": 1_000,
    "fsync_n": 20,
    "sample_bytes": 20_000,
    "entries": 50,
    "changes": 100,
    "reads": 1_000,
    "import_pairs": 2,
    "seed_n": 1_000,
    "processes": 2,
    "process_n": 100,
    "outside_trials": 2,
}

ROWS = report.ROWS  # what ``--rows`` (``make bench ROWS=...``) may name, besides case keys


@dataclass(frozen=True)
class Case:
    """One row of the report: a workload with its parameters, run for some engines."""

    key: str
    title: str
    workload: str
    engines: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    kind: str = "per_op"  # per_op: µs per operation; once: ms; rss: MB in a fresh process
    source: str = ""  # "v26_file" or "sample": a prepared file passed as params["source"]
    fewer: dict[str, int] = field(default_factory=dict)  # engine -> fewer operations ("n")

    def params_for(self, engine: str) -> dict[str, Any]:
        params = dict(self.params)
        if engine in self.fewer:
            params["n"] = self.fewer[engine]
        return params


def plan(size: dict[str, int]) -> list[Case]:
    n, keys, long_n, fsync_n = size["n"], size["other_keys"], size["long_n"], size["fsync_n"]
    kilobytes = size["sample_bytes"] // 1000
    sample = f"{kilobytes // 1000:,} MB" if kilobytes >= 1000 else f"{kilobytes:,} kB"
    return [
        Case("floor", f"write floor: {n:,} x os.write(40 bytes)", "floor", ("floor",), {"n": n}),
        Case("counter", f"counter: {n:,} x state.counter += 1", "counter", STORES, {"n": n}),
        Case(
            "counter_big",
            f"counter, {keys:,} other keys in the state",
            "counter",
            STORES,
            {"n": n, "other_keys": keys},
            # each shelve sync() rewrites the index of every key: milliseconds per operation
            fewer={"shelve": n // 10},
        ),
        Case(
            "nested",
            f'nested: {n:,} x state.a["b"]["c"]["d"]["e"]["count"] += 1',
            "nested",
            STORES,
            {"n": n},
        ),
        Case("append", f"append: {n:,} x state.processed.append(i)", "append", STORES, {"n": n}),
        Case(
            "counter_long",
            f"counter, {long_n:,} increments, empty state (close() included)",
            "counter",
            ("ours",),
            {"n": long_n},
        ),
        Case(
            "counter_long_big",
            f"counter, {long_n:,} increments, {keys:,} other keys (close() included)",
            "counter",
            ("ours",),
            {"n": long_n, "other_keys": keys},
        ),
        Case(
            "fsync_floor",
            f"fsync floor: {fsync_n:,} x os.write + os.fsync",
            "floor",
            ("floor",),
            {"n": fsync_n, "fsync": True},
        ),
        Case(
            "fsync_counter",
            f"counter with fsync: {fsync_n:,} x state.counter += 1",
            "counter",
            ("ours", "diskcache", "sqlitedict", "lmdbm"),
            {"n": fsync_n, "fsync": True},
        ),
        Case(
            "open_v26_file",
            f"open a 26.1 file: {size['entries']:,} entries + {size['changes']:,} records",
            "open_file",
            ("ours", "v26"),
            kind="once",
            source="v26_file",
        ),
        Case(
            "open_sample",
            f"open a {sample} state (written by the same library)",
            "open_file",
            ("ours", "v26"),
            kind="once",
            source="sample",
        ),
        Case(
            "compact_sample",
            f"compaction of a {sample} state (26.1: close(), its only vacuum)",
            "compact_file",
            ("ours", "v26"),
            kind="once",
            source="sample",
        ),
        Case(
            "rss_sample",
            f"peak RSS after opening a {sample} state (fresh process)",
            "peak_rss",
            ("ours", "v26"),
            kind="rss",
            source="sample",
        ),
        Case(
            "read_settings",
            f'read: {size["reads"]:,} x state.settings["batch"]',
            "read",
            ("ours", "v26", "floor"),
            {"n": size["reads"], "what": "settings"},
        ),
        Case(
            "read_nested",
            f'read: {size["reads"]:,} x state.a["b"]["c"]',
            "read",
            ("ours", "v26", "floor"),
            {"n": size["reads"], "what": "nested"},
        ),
        Case(
            "import",
            'python -c "import persistedstate" less python -c "pass" '
            f"(median of {size['import_pairs']} pairs a run)",
            "import_time",
            ("ours", "v26"),
            {"pairs": size["import_pairs"]},
            kind="once",
        ),
        Case(
            "counter_shared",
            f"counter, no other process: {n:,} x state.counter += 1",
            "counter",
            ("ours", "shared", "v26"),
            {"n": n},
        ),
        Case(
            "processes_transaction",
            f"{size['processes']} processes, each {size['process_n']:,} x counter += 1 "
            "in a transaction (µs per increment, all processes together)",
            "processes_counter",
            ("shared", "diskcache", "sqlitedict"),
            {"processes": size["processes"], "n": size["process_n"], "how": "transaction"},
        ),
        Case(
            "processes_incr",
            f"{size['processes']} processes, each {size['process_n']:,} x cache.incr",
            "processes_counter",
            ("diskcache",),
            {"processes": size["processes"], "n": size["process_n"], "how": "incr"},
        ),
        Case(
            "outside_change",
            "another process changes a value: until a program reading it in a loop sees it "
            f"(ms, median of {size['outside_trials']} a run)",
            "outside_change",
            ("ours", "shared", "diskcache", "sqlitedict"),
            {"trials": size["outside_trials"]},
            kind="once",
        ),
        Case(
            "seed_memory",
            f"peak RSS of the seed example: {size['seed_n']:,} x STATE.last_id = i, no close()",
            "seed_memory",
            ("ours", "v26"),
            {"n": size["seed_n"]},
            kind="rss",
        ),
    ]


def select(cases: list[Case], rows: list[str]) -> list[Case]:
    """The cases ``--rows`` names (group names or case keys), in the plan's order."""
    keys = {key for row in rows for key in ROWS.get(row, (row,))}
    return [case for case in cases if case.key in keys]


# -- workers -------------------------------------------------------------------------------


class WorkerError(Exception):
    """A worker died or answered with something that is not a reply."""


class Worker:
    """A worker subprocess for one engine, spoken to in JSON lines."""

    def __init__(self, engine: str, python: str, oneshot: bool = False) -> None:
        self.engine = engine
        self.python = python
        command = [python, str(WORKER), engine, *(["--oneshot"] if oneshot else [])]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            cwd=HERE,
        )

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise WorkerError(f"the {self.engine} worker ({self.python}) has exited") from None
        line = self.process.stdout.readline()
        if not line:
            raise WorkerError(f"the {self.engine} worker ({self.python}) exited without a reply")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def oneshot(engine: str, python: str, request: dict[str, Any]) -> dict[str, Any]:
    """Ask one question of a fresh worker process that then exits."""
    worker = Worker(engine, python, oneshot=True)
    try:
        return worker.ask(request)
    finally:
        worker.stop()


def repo_relative(path: str) -> str:
    """``path`` relative to the repository when it lies inside it (``.venv/bin/python``), so
    results.json names no directory of the machine it ran on; other paths as they are."""
    absolute = Path(os.path.abspath(path))  # not resolve(): a venv's python is a symlink
    try:
        return absolute.relative_to(REPO).as_posix()
    except ValueError:
        return str(absolute)


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def candidate_pythons(engine: str, peers_dir: Path) -> list[str]:
    """Where an engine may be importable, in order of preference."""
    if engine == "v26":  # never this interpreter: here "persistedstate" is this project
        return [str(venv_python(peers_dir / "v26"))]
    if engine in KV_PEERS:
        return [str(venv_python(peers_dir / "others")), sys.executable]
    return [sys.executable]


def start_workers(engines: list[str], peers_dir: Path) -> tuple[dict[str, Worker], dict[str, Any]]:
    """A worker per available engine, and what each said about itself (or why it is missing)."""
    workers: dict[str, Worker] = {}
    about: dict[str, Any] = {}
    for engine in engines:
        about[engine] = {"available": False, "why": "not importable by any interpreter tried"}
        for python in candidate_pythons(engine, peers_dir):
            if not Path(python).exists():
                continue
            worker = Worker(engine, python)
            try:
                reply = worker.ask({"task": "hello"})
            except WorkerError as error:
                reply = {"ok": False, "error": str(error)}
            if reply.get("ok") and reply.get("available"):
                workers[engine] = worker
                about[engine] = {**reply, "executable": repo_relative(reply["executable"])}
                break
            worker.stop()
    return workers, about


# -- running -------------------------------------------------------------------------------


def prepare_sources(
    cases: list[Case],
    workers: dict[str, Worker],
    size: dict[str, int],
    tmp_root: Path,
    log: list[str],
) -> dict[str, dict[str, Any]]:
    """Make the files the open/compact/memory cases read.

    Returns, per source name, ``paths`` (engine -> file) and ``info`` (what the report shows).
    """
    needed = {case.source for case in cases if case.source}
    files = tmp_root / "sources"
    files.mkdir(parents=True, exist_ok=True)
    sources: dict[str, dict[str, Any]] = {name: {"paths": {}, "info": {}} for name in needed}
    if "v26_file" in needed and "v26" in workers:
        path = str(files / "v26-written.yaml")
        params = {"path": path, "entries": size["entries"], "changes": size["changes"]}
        reply = oneshot(
            "v26",
            workers["v26"].python,
            {
                "task": "run",
                "workload": "make_v26_file",
                "params": params,
                "tmp_root": str(tmp_root),
                "then_exit": True,
            },
        )
        if reply.get("ok"):
            sources["v26_file"] = {"paths": {"ours": path, "v26": path}, "info": reply["info"]}
        else:
            log.append(f"making the 26.1 file failed: {reply.get('error')}")
    if "sample" in needed:
        engines = {engine for case in cases if case.source == "sample" for engine in case.engines}
        for engine in sorted(engines & set(workers)):
            path = str(files / f"sample-{engine}.yaml")
            reply = workers[engine].ask(
                {
                    "task": "run",
                    "workload": "write_sample",
                    "params": {"path": path, "bytes": size["sample_bytes"]},
                    "tmp_root": str(tmp_root),
                }
            )
            if reply.get("ok"):
                sources["sample"]["paths"][engine] = path
                sources["sample"]["info"][f"{engine}_bytes"] = reply["info"]["bytes"]
            else:
                log.append(f"{engine}: writing the sample state failed: {reply.get('error')}")
    return sources


def run_cell(
    case: Case,
    engine: str,
    worker: Worker,
    source: str | None,
    tmp_root: Path,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    params = dict(params or case.params_for(engine))
    if source is not None:
        params["source"] = source
    request = {"task": "run", "workload": case.workload, "params": params}
    request["tmp_root"] = str(tmp_root)
    try:
        if case.kind == "rss":
            return oneshot(engine, worker.python, request)
        return worker.ask(request)
    except WorkerError as error:
        return {"ok": False, "error": str(error)}


def warm_up(cases: list[Case], workers: dict[str, Worker], tmp_root: Path) -> None:
    """Run each per-operation case once at quick sizes, untimed, so run 1 is not a cold start."""
    quick = {case.key: case for case in plan(QUICK)}
    for case in cases:
        if case.kind != "per_op":
            continue
        for engine in case.engines:
            if engine in workers:
                params = quick[case.key].params_for(engine)
                run_cell(case, engine, workers[engine], None, tmp_root, params)


def run_all(
    cases: list[Case],
    workers: dict[str, Worker],
    sources: dict[str, dict[str, Any]],
    runs: int,
    extra: int,
    tmp_root: Path,
    log: list[str],
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every run of every case for every available engine: case -> engine -> replies.

    ``runs`` rounds go through every case and engine in turn. A cell whose first run took
    under CHEAP_SECONDS runs ``extra`` times per round: its median steadies at little cost,
    and its runs still span the same rounds as everybody else's, so a slow spell of the
    machine weighs on every engine alike.
    """
    results: dict[str, dict[str, list[dict[str, Any]]]] = {case.key: {} for case in cases}
    failed: set[tuple[str, str]] = set()
    cheap: set[tuple[str, str]] = set()
    warm_up(cases, workers, tmp_root)
    for run in range(1, runs + 1):
        for case in cases:
            for engine in case.engines:
                cell = (case.key, engine)
                if engine not in workers or cell in failed:
                    continue
                source = None
                if case.source:
                    source = sources.get(case.source, {}).get("paths", {}).get(engine)
                    if source is None:
                        continue
                repeat = 0
                while repeat < (extra if cell in cheap else 1):
                    repeat += 1
                    started = time.perf_counter()
                    reply = run_cell(case, engine, workers[engine], source, tmp_root)
                    took = time.perf_counter() - started
                    results[case.key].setdefault(engine, []).append(reply)
                    if not reply.get("ok"):
                        failed.add(cell)
                        log.append(f"{case.key} / {engine}: {reply.get('error')}")
                        print(
                            f"  {case.key} / {engine}: FAILED {reply.get('error')}", file=sys.stderr
                        )
                        break
                    if run == 1 and repeat == 1 and took < CHEAP_SECONDS:
                        cheap.add(cell)
                    print(
                        f"[round {run}/{runs}] {case.key:<16} {engine:<11} "
                        f"{report.describe(case.kind, reply)}  ({took:.1f} s)",
                        file=sys.stderr,
                    )
    return results


# -- the machine ---------------------------------------------------------------------------


def machine(tmp_root: Path) -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "filesystem": _filesystem(tmp_root),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
    }


def _load_average() -> float | None:
    """The one-minute load average: other work on the machine skews the figures."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _filesystem(path: Path) -> str:
    """The type of the file system holding ``path`` (Linux: from /proc/mounts)."""
    target = str(path.resolve())
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[1]
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) > len(best):
                    best, kind = point, fields[2]
    except OSError:
        pass
    return kind


def _git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "../src"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" with uncommitted changes in src/" if dirty else "")


# -- the chart -----------------------------------------------------------------------------


def draw_chart(results_json: Path, png: Path, peers_dir: Path, log: list[str]) -> str:
    """Draw the PNG with whichever interpreter has matplotlib (peers' venv first).

    Returns "" when drawn, else why not; a chart that fails to draw is also a logged problem.
    """
    for python in (str(venv_python(peers_dir / "others")), sys.executable):
        if not Path(python).exists():
            continue
        probe = subprocess.run([python, "-c", "import matplotlib"], capture_output=True)
        if probe.returncode != 0:
            continue
        done = subprocess.run(
            [python, str(CHART), str(results_json), str(png)], capture_output=True, text=True
        )
        if done.returncode == 0:
            return ""
        log.append(f"drawing the chart failed: {done.stderr.strip()[-500:]}")
        return "drawing it failed"
    return "no interpreter with matplotlib was found (make bench installs it)"


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument("--runs", type=int, help="least runs per figure (5; 2 with --quick)")
    parser.add_argument(
        "--engines",
        default=",".join(ALL_ENGINES),
        help=f"comma-separated subset of {','.join(ALL_ENGINES)}",
    )
    parser.add_argument(
        "--rows",
        default="",
        help=f"run these rows only ({', '.join(ROWS)}, or case keys); the others are kept "
        "from the existing results.json",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    parser.add_argument("--peers-dir", type=Path, default=DEFAULT_PEERS, help="peers' venvs")
    parser.add_argument("--tmp-dir", type=Path, default=DEFAULT_TMP, help="scratch directory")
    args = parser.parse_args(argv)
    args.engine_list = [name.strip() for name in args.engines.split(",") if name.strip()]
    unknown = set(args.engine_list) - set(ALL_ENGINES)
    if unknown:
        parser.error(f"unknown engines: {', '.join(sorted(unknown))}")
    if args.runs is None:
        args.runs = 2 if args.quick else 5
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    # Workers run in benchmarks/: a relative path given here must not change meaning there.
    args.out, args.peers_dir, args.tmp_dir = (
        path.absolute() for path in (args.out, args.peers_dir, args.tmp_dir)
    )
    args.row_list = [name.strip() for name in args.rows.split(",") if name.strip()]
    known = set(ROWS) | {case.key for case in plan(QUICK)}
    unknown = set(args.row_list) - known
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))} (rows: {', '.join(ROWS)})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = QUICK if args.quick else FULL
    every_case = plan(size)
    cases = select(every_case, args.row_list) if args.row_list else every_case
    # Start only the engines the chosen rows use.
    needed = {engine for case in cases for engine in case.engines}
    engines = [engine for engine in args.engine_list if engine in needed]
    extra = 1 if args.quick else EXTRA_RUNS
    results_json = args.out / "results.json"
    earlier = None
    if args.row_list and results_json.exists():  # keep the other rows: can they stand together?
        earlier = json.loads(results_json.read_text(encoding="utf-8"))
        shape = {"quick": args.quick, "runs": args.runs, "cheap_runs": args.runs * extra}
        shape["cheap_seconds"] = CHEAP_SECONDS
        problem = report.merge_problem(earlier, {**shape, "size": size})
        if problem:
            print(f"cannot keep the other rows of {results_json}: {problem}", file=sys.stderr)
            return 2
    args.tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix="bench-", dir=args.tmp_dir))
    log: list[str] = []
    started = time.perf_counter()
    load_before = _load_average()
    workers, about = start_workers(engines, args.peers_dir)
    for engine, said in about.items():
        where = said.get("executable", said.get("why"))
        print(f"{engine:<11} {said.get('version', '') or '-':<28} {where}", file=sys.stderr)
    try:
        sources = prepare_sources(cases, workers, size, tmp_root, log)
        results = run_all(cases, workers, sources, args.runs, extra, tmp_root, log)
    finally:
        for worker in workers.values():
            worker.stop()
        shutil.rmtree(tmp_root, ignore_errors=True)
    seconds = round(time.perf_counter() - started, 1)
    load = {"before": load_before, "after": _load_average()}
    about_machine = machine(args.tmp_dir)
    measured = {
        "date": about_machine["date"],
        "commit": about_machine["commit"],
        "python": about_machine["python"],
        "load": load,
        "seconds": seconds,
        "rows": args.row_list or ["all"],
    }
    document = {
        "machine": about_machine,
        "quick": args.quick,
        "runs": args.runs,
        "cheap_runs": args.runs * extra,
        "cheap_seconds": CHEAP_SECONDS,
        "size": size,
        "engines": about,
        "cases": [case.__dict__ for case in cases],
        "measured": {case.key: measured for case in cases},
        "sources": {name: source["info"] for name, source in sources.items()},
        "results": results,
        "log": log,
        "seconds": seconds,
        "load": load,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    if earlier is not None:
        document = report.merged(earlier, document, [case.key for case in every_case])
    results_json.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
    not_drawn = draw_chart(results_json, args.out / "results.png", args.peers_dir, log)
    document["chart"] = not not_drawn
    document["chart_missing"] = not_drawn
    (args.out / "results.md").write_text(report.markdown(document), encoding="utf-8")
    results_json.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"results in {args.out} ({seconds} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
