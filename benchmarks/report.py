"""Turn the runs in results.json into medians, ratios and the Markdown report.

Standard library only: ``chart.py`` imports it from the peers' environment too.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

LABELS = {
    "ours": "this",
    "shared": "this, shared",
    "v26": "26.1",
    "diskcache": "DiskCache",
    "sqlitedict": "SqliteDict",
    "lmdbm": "lmdbm",
    "shelve": "shelve",
    "floor": "floor",
}
STORES = ("ours", "v26", "diskcache", "sqlitedict", "lmdbm", "shelve")
PER_OP_ROWS = ("counter", "counter_big", "nested", "append")
READ_ROWS = ("read_settings", "read_nested")
MB = 1_000_000
# The default mode's counter, as a share of 26.1's in the same run: 2.35 ÷ 5.25 µs before
# shared mode came (README, 2026-11-29), and 10% more allowed.
DEFAULT_MODE_BUDGET = round(2.35 / 5.25 * 1.1, 2)

# The rows ``run.py --rows`` (``make bench ROWS=...``) may name: groups of cases (or single
# cases by key).
ROWS = {
    "changes": (
        *("floor", "counter", "counter_big", "nested", "append"),
        *("counter_long", "counter_long_big"),
    ),
    "fsync": ("fsync_floor", "fsync_counter"),
    "files": ("open_v26_file", "open_sample", "compact_sample", "rss_sample"),
    "import": ("import",),
    "memory": ("seed_memory",),
    "read": ("read_settings", "read_nested"),
    "sharing": ("counter_shared", "processes_transaction", "processes_incr", "outside_change"),
}


def row_names(keys: list[str]) -> list[str]:
    """Case keys as the names of the rows they make up (a group only when all of it is there)."""
    names, left = [], list(keys)
    for name, group in ROWS.items():
        if all(key in left for key in group):
            names.append(name)
            left = [key for key in left if key not in group]
    return names + left


Reply = dict[str, Any]


# -- medians -------------------------------------------------------------------------------


def _median(replies: list[Reply] | None, measure: Callable[[Reply], float]) -> float | None:
    good = [measure(reply) for reply in replies or [] if reply.get("ok")]
    return statistics.median(good) if good and len(good) == len(replies or []) else None


def op_us(reply: Reply) -> float:
    """Microseconds per operation, operations only."""
    return float(reply["seconds"]) / reply["ops"] * 1e6


def op_close_us(reply: Reply) -> float:
    """Microseconds per operation with close() (and so the final compaction) included."""
    return (float(reply["seconds"]) + reply["close_seconds"]) / reply["ops"] * 1e6


def once_ms(reply: Reply) -> float:
    return float(reply["seconds"]) * 1e3


def peak_mb(reply: Reply) -> float:
    return float(reply["info"]["peak_bytes"]) / MB


def import_cpu_ms(reply: Reply) -> float:
    return float(reply["info"]["cpu_seconds"]) * 1e3


def growth_mb(reply: Reply) -> float:
    return float(reply["info"]["peak_bytes"] - reply["info"]["baseline_bytes"]) / MB


MEASURES = {"per_op": op_us, "once": once_ms, "rss": peak_mb}


def figure(
    document: dict[str, Any],
    case: str,
    engine: str,
    measure: Callable[[Reply], float] | None = None,
) -> float | None:
    """The median of one case for one engine (None when it did not run or failed)."""
    kinds = {c["key"]: c["kind"] for c in document["cases"]}
    if case not in kinds:
        return None
    replies = document["results"].get(case, {}).get(engine)
    return _median(replies, measure or MEASURES[kinds[case]])


def figures(document: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Every case's median per engine, in its own unit (µs/op, ms or MB)."""
    table: dict[str, dict[str, float]] = {}
    for case in document["cases"]:
        for engine in document["results"].get(case["key"], {}):
            value = figure(document, case["key"], engine)
            if value is not None:
                table.setdefault(case["key"], {})[engine] = value
    return table


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


# -- a run of some rows, merged into an earlier run of the others --------------------------


def merge_problem(earlier: dict[str, Any], later: dict[str, Any]) -> str:
    """Why ``later`` (a run of some rows) cannot be merged into ``earlier`` ("" if it can)."""
    if earlier.get("quick") != later["quick"]:
        return "one of the two runs is --quick and the other is not"
    if (earlier.get("runs"), earlier.get("cheap_runs")) != (later["runs"], later["cheap_runs"]):
        return (
            f"its figures are medians of {runs_text(earlier)}, these of {runs_text(later)} "
            "(pass the same --runs, or run every row)"
        )
    sizes = earlier.get("size", {})
    differ = [key for key, value in later["size"].items() if sizes.get(key, value) != value]
    if differ:
        return f"its sizes differ ({', '.join(differ)})"
    return ""


def merged(earlier: dict[str, Any], later: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """``earlier`` with the rows ``later`` ran replaced by ``later``'s; cases in ``order``."""
    rerun = {case["key"] for case in later["cases"]}
    document = {**earlier, **{key: later[key] for key in ("machine", "seconds", "load")}}
    document["size"] = {**earlier.get("size", {}), **later["size"]}
    document["engines"] = {**earlier.get("engines", {}), **later["engines"]}
    old_measured = earlier.get("measured") or {
        case["key"]: {
            "date": earlier["machine"]["date"],
            "commit": earlier["machine"]["commit"],
            "python": earlier["machine"]["python"],
            "load": earlier.get("load", {}),
            "seconds": earlier.get("seconds"),
            "rows": ["all"],
        }
        for case in earlier["cases"]
    }
    document["measured"] = {**old_measured, **later["measured"]}
    cases = {case["key"]: case for case in earlier["cases"]}
    cases.update({case["key"]: case for case in later["cases"]})
    document["cases"] = [cases[key] for key in order if key in cases]
    results = {key: value for key, value in earlier["results"].items() if key not in rerun}
    results.update(later["results"])
    document["results"] = {key: results[key] for key in order if key in results}
    document["sources"] = {**earlier.get("sources", {}), **later["sources"]}
    old_log = [entry for entry in earlier.get("log", []) if entry.split(" / ")[0] not in rerun]
    document["log"] = old_log + later["log"]
    return document


# -- formatting ----------------------------------------------------------------------------


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def describe(kind: str, reply: Reply) -> str:
    """One line of progress for a reply."""
    if not reply.get("ok"):
        return f"failed: {reply.get('error')}"
    if kind == "per_op":
        return f"{op_us(reply):9.2f} µs/op, close {reply['close_seconds'] * 1e3:.1f} ms"
    if kind == "once":
        return f"{once_ms(reply):9.2f} ms"
    return f"{peak_mb(reply):9.1f} MB peak RSS"


def _table(header: list[str], rows: list[list[str]], numbers: int | None = None) -> list[str]:
    """A Markdown table; the first column and any after ``numbers`` columns are text."""
    last = len(header) if numbers is None else numbers + 1
    align = [" ---: " if 0 < i < last else " --- " for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _title(document: dict[str, Any], case: str) -> str:
    return next(c["title"] for c in document["cases"] if c["key"] == case)


def _available(document: dict[str, Any], engines: tuple[str, ...]) -> list[str]:
    return [engine for engine in engines if document["engines"].get(engine, {}).get("available")]


# -- the report ----------------------------------------------------------------------------


def markdown(document: dict[str, Any]) -> str:
    lines = ["# persistedstate benchmark", ""]
    lines += _machine(document)
    lines += _targets(document)
    lines += _per_operation(document)
    lines += _fsync(document)
    lines += _files(document)
    lines += _reads_import_memory(document)
    lines += _sharing(document)
    lines += _durability(document)
    lines += _method(document)
    if document["log"]:
        lines += ["## Problems during the run", ""]
        lines += [f"- {entry}" for entry in document["log"]] + [""]
    return "\n".join(lines)


def runs_text(document: dict[str, Any]) -> str:
    """How many runs each figure is the median of."""
    runs, cheap = document["runs"], document.get("cheap_runs", document["runs"])
    if cheap == runs:
        return f"{runs} runs"
    seconds = document["cheap_seconds"]
    return f"{runs} runs ({cheap} when a run takes under {seconds:g} s: {cheap // runs} a round)"


def _machine(document: dict[str, Any]) -> list[str]:
    machine = document["machine"]
    memory = f", {machine['memory_gib']} GiB" if machine.get("memory_gib") else ""
    mode = "quick (smoke-test sizes)" if document["quick"] else "full"
    lines = [
        f"- Machine: {machine['cpu']}, {machine['cores']} cores{memory}; {machine['os']}",
        f"- Python: {machine['python']}; scratch files on {machine['filesystem']}",
    ]
    pieces = sessions(document)
    if len(pieces) == 1:
        lines.append(
            f"- Run: {machine['date']}, commit {machine['commit']}; {mode}, "
            f"median of {runs_text(document)} per figure, {document['seconds']:.0f} s in all"
        )
        load = document.get("load", {})
        if load.get("before") is not None:
            lines.append(
                f"- Load average (1 min) when the run started: {load['before']}, when it "
                f"ended: {load.get('after')} (other work on the machine adds noise)"
            )
    else:
        lines.append(
            f"- {mode.capitalize()}, median of {runs_text(document)} per figure; the rows were "
            "measured in separate runs (`make bench ROWS=...`), each row's engines together:"
        )
        for about, keys in pieces:
            load = about.get("load", {})
            noise = ""
            if load.get("before") is not None:
                noise = (
                    f", load average {load['before']} at the start, {load.get('after')} at the end"
                )
            lines.append(
                f"  - {about['date']}, commit {about['commit']}, {about['python']}{noise}: "
                + ", ".join(row_names(keys))
            )
    if document.get("chart"):
        lines.append("- Chart: [results.png](results.png) (log scale)")
    else:
        lines.append(f"- Chart: not drawn: {document.get('chart_missing')}")
    return [*lines, ""]


def sessions(document: dict[str, Any]) -> list[tuple[dict[str, Any], list[str]]]:
    """The runs that measured the rows: (what the run recorded, its case keys), oldest first."""
    measured = document.get("measured")
    if not measured:
        return [
            ({**document["machine"], "load": document.get("load", {})}, list(document["results"]))
        ]
    groups: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {}
    for case in document["cases"]:
        about = measured.get(case["key"])
        if about is None or case["key"] not in document["results"]:
            continue
        groups.setdefault((about["date"], about["commit"]), (about, []))[1].append(case["key"])
    return [groups[key] for key in sorted(groups)]


def _targets(document: dict[str, Any]) -> list[str]:
    """The issue's targets, each with what this run measured."""

    def get(case: str, engine: str, measure: Callable[[Reply], float] | None = None) -> Any:
        return figure(document, case, engine, measure)

    at_least, at_most = "≥", "≤"
    checks = [
        (
            "counter: 26.1 ÷ this",
            ratio(get("counter", "v26"), get("counter", "ours")),
            at_least,
            10.0,
        ),
        (
            "counter: this ÷ write floor",
            ratio(get("counter", "ours"), get("floor", "floor")),
            at_most,
            2.0,
        ),
        (
            "counter, big state ÷ empty state (operations only)",
            ratio(get("counter_big", "ours"), get("counter", "ours")),
            at_most,
            1.1,
        ),
        (
            "counter, big state ÷ empty state (close() included)",
            ratio(get("counter_big", "ours", op_close_us), get("counter", "ours", op_close_us)),
            at_most,
            1.1,
        ),
        (
            "long counter, big ÷ empty (automatic compactions and close() included)",
            ratio(
                get("counter_long_big", "ours", op_close_us),
                get("counter_long", "ours", op_close_us),
            ),
            at_most,
            1.1,
        ),
        (
            "open the 26.1-written file: 26.1 ÷ this",
            ratio(get("open_v26_file", "v26"), get("open_v26_file", "ours")),
            at_least,
            30.0,
        ),
        (
            "counter, default mode, ÷ 26.1's in the same run (0.45 before shared mode: 2.35 "
            "÷ 5.25 µs; +10%)",
            ratio(get("counter_shared", "ours"), get("counter_shared", "v26")),
            at_most,
            DEFAULT_MODE_BUDGET,
        ),
        (
            "counter, shared mode, no other process ÷ 26.1's in the same run",
            ratio(get("counter_shared", "shared"), get("counter_shared", "v26")),
            at_most,
            1.0,
        ),
    ]
    if all(value is None for _, value, _, _ in checks):
        return []
    rows = []
    for name, value, sense, limit in checks:
        verdict = "-"
        if value is not None:
            met = value >= limit if sense == at_least else value <= limit
            verdict = "met" if met else "**not met**"
        rows.append([name, times(value), f"{sense} {limit:g}x", verdict])
    notes = []
    old, floor = get("counter", "v26"), get("floor", "floor")
    if old is not None and floor is not None:
        notes.append(
            f"26.1 took {number(old)} µs per increment here; 10x faster is "
            f"{number(old / 10)} µs, against a write floor of {number(floor)} µs on this machine."
        )
    return ["## Targets", "", *_table(["check", "measured", "target", ""], rows), "", *notes, ""]


def _per_operation(document: dict[str, Any]) -> list[str]:
    engines = _available(document, (*STORES, "floor"))
    rows = []
    for case in ("floor", *PER_OP_ROWS, "counter_long", "counter_long_big"):
        if case not in document["results"]:
            continue
        variants = [("", op_us)]
        if case in ("counter", "counter_big"):
            variants.append((" + close()", op_close_us))
        if case.startswith("counter_long"):
            variants = [("", op_close_us)]
        for suffix, measure in variants:
            values = {engine: figure(document, case, engine, measure) for engine in engines}
            floor = figure(document, "floor", "floor")
            row = [_title(document, case) + suffix]
            row += [number(values[engine]) + _fewer(document, case, engine) for engine in engines]
            row += [times(ratio(values.get("v26"), values.get("ours")))]
            row += [times(ratio(values.get("ours"), floor))]
            rows.append(row)
    if not rows:
        return []
    header = ["µs per operation", *(LABELS[e] for e in engines), "26.1 ÷ this", "this ÷ floor"]
    return [
        "## Per operation (µs, median)",
        "",
        *_table(header, rows),
        "",
        "Operations only, unless the row says close() is included (close() writes the final "
        "compacted file, so it carries the compaction cost). Key-value stores have no live "
        "nested values: a nested change or an append reads the top-level value, changes it and "
        "writes it back. A cell marked (N ops) was measured over fewer operations, because each "
        "one takes milliseconds (shelve's sync() rewrites the index of every key); its cost per "
        "operation does not depend on the count.",
        "",
    ]


def _fewer(document: dict[str, Any], case: str, engine: str) -> str:
    """A mark for a cell measured over fewer operations than its row's title says."""
    n = next(c for c in document["cases"] if c["key"] == case)["params"].get("n")
    replies = document["results"].get(case, {}).get(engine) or []
    ops = {reply.get("ops") for reply in replies if reply.get("ok")}
    return f" ({min(ops):,} ops)" if n and ops and min(ops) != n else ""


def _fsync(document: dict[str, Any]) -> list[str]:
    if "fsync_counter" not in document["results"]:
        return []
    engines = _available(document, ("floor", "ours", "diskcache", "sqlitedict", "lmdbm"))
    floor = figure(document, "fsync_floor", "floor")
    rows = []
    for engine in engines:
        value = floor if engine == "floor" else figure(document, "fsync_counter", engine)
        about = document["engines"].get(engine, {}).get("durable_fsync", "")
        rows.append([LABELS[engine], number(value), times(ratio(value, floor)), about])
    without = figure(document, "counter", "sqlitedict")
    if without is not None:
        name = "SqliteDict, autocommit only"
        note = "for reference (no fsync): the counter row above"
        rows.append([name, number(without), times(ratio(without, floor)), note])
    return [
        f"## With fsync: {_title(document, 'fsync_counter')}",
        "",
        *_table(["store", "µs per operation", "÷ fsync floor", "how"], rows, numbers=2),
        "",
    ]


def _files(document: dict[str, Any]) -> list[str]:
    engines = _available(document, ("ours", "v26"))
    if not engines:
        return []
    rows = []
    for case, unit in (
        ("open_v26_file", "ms"),
        ("open_sample", "ms"),
        ("compact_sample", "ms"),
        ("rss_sample", "MB"),
    ):
        if case not in document["results"]:
            continue
        values = {engine: figure(document, case, engine) for engine in engines}
        row = [f"{_title(document, case)} ({unit})", *(number(values[e]) for e in engines)]
        rows.append([*row, times(ratio(values.get("v26"), values.get("ours")))])
        if case == "rss_sample":
            growth = {engine: figure(document, case, engine, growth_mb) for engine in engines}
            row = ["  of which opening the state (MB)", *(number(growth[e]) for e in engines)]
            rows.append([*row, times(ratio(growth.get("v26"), growth.get("ours")))])
    if not rows:
        return []
    notes = []
    made = document["sources"].get("v26_file", {})
    if made:
        notes.append(
            f"The 26.1 file was written by 26.1 itself and left unclosed ({made['bytes']:,} "
            f"bytes, {made['markers']:,} journal records)."
        )
        opened = document["results"].get("open_v26_file", {})
        for engine in engines:
            seen = {r["info"]["digest"] for r in opened.get(engine, []) if r.get("ok")}
            if seen and seen != {made["digest"]}:
                notes.append(
                    f"**{LABELS[engine]} read the 26.1 file differently from what 26.1 held "
                    "in memory** (digests differ)."
                )
    sample = document["sources"].get("sample", {})
    sizes = ", ".join(f"{LABELS[k[:-6]]} {v:,} bytes" for k, v in sample.items())
    if sizes:
        notes.append(f"Sample state files as each library wrote them: {sizes}.")
    header = ["", *(LABELS[e] for e in engines), "26.1 ÷ this"]
    return ["## Open, compaction, memory", "", *_table(header, rows), "", *notes, ""]


def import_packages(document: dict[str, Any], engine: str) -> list[tuple[str, float]]:
    """Where ``import persistedstate`` spends its time (-X importtime): per top-level package,
    the median over the runs of its modules' own microseconds, largest first."""
    runs = [
        reply["info"]["packages"]
        for reply in document["results"].get("import", {}).get(engine, [])
        if reply.get("ok")
    ]
    names = {name for packages in runs for name in packages}
    medians = {name: statistics.median(run.get(name, 0) for run in runs) for name in names}
    return sorted(medians.items(), key=lambda item: (-item[1], item[0]))


def import_total_us(document: dict[str, Any], engine: str) -> float | None:
    return figure(document, "import", engine, lambda reply: reply["info"]["importtime_total_us"])


def _reads_import_memory(document: dict[str, Any]) -> list[str]:
    present = [c for c in (*READ_ROWS, "import", "seed_memory") if c in document["results"]]
    if not present:
        return []
    engines = _available(document, ("ours", "v26"))
    rows = []
    for case in present:
        unit = {"import": "ms", "seed_memory": "MB"}.get(case, "µs per read")
        values = {engine: figure(document, case, engine) for engine in engines}
        floor = figure(document, case, "floor") if case in READ_ROWS else None
        row = [f"{_title(document, case)} ({unit})", *(number(values[e]) for e in engines)]
        row += [number(floor), times(ratio(values.get("v26"), values.get("ours")))]
        rows.append([*row, times(ratio(values.get("ours"), floor))])
        if case == "import":
            cpu = {engine: figure(document, case, engine, import_cpu_ms) for engine in engines}
            row = ["  the same in CPU time, user + system (ms)", *(number(cpu[e]) for e in engines)]
            rows.append([*row, "-", times(ratio(cpu.get("v26"), cpu.get("ours"))), "-"])
        if case == "seed_memory":
            growth = {engine: figure(document, case, engine, growth_mb) for engine in engines}
            row = [
                "  above the peak before the state was opened (MB)",
                *(number(growth[e]) for e in engines),
            ]
            rows.append([*row, "-", times(ratio(growth.get("v26"), growth.get("ours"))), "-"])
    header = ["", *(LABELS[e] for e in engines), "plain dicts", "26.1 ÷ this", "this ÷ plain"]
    lines = ["## Reading, importing, the seed example's memory", "", *_table(header, rows), ""]
    lines += [
        "Reads: the same expression on plain dicts that are attributes of a plain object "
        "(types.SimpleNamespace) is the floor; the loop's own cost is in every column. "
        'Import: the wall time of a whole `python -c "import persistedstate"` process less '
        'that of `python -c "pass"`, each started fresh from the benchmark and timed to its '
        "exit, alternating; each run takes the median of its pairs. Both import with their "
        "bytecode cached (.pyc), as an installed package does: one untimed import comes first, "
        "and PYTHONDONTWRITEBYTECODE is not passed on. Seed example: the README's "
        "first program (`STATE = PersistedState(path, last_id=0)`, then `STATE.last_id = i` for "
        "every i, no close()) as a fresh process (benchmarks/seed_example.py), its peak "
        "resident memory (VmHWM) as it ends, after the compaction at exit; the line below is "
        "how far that peak rose above the peak the process had reached before it opened the "
        "state (Python, the library and json imported): 0 when it never did.",
        "",
    ]
    if "import" in document["results"]:
        lines += _import_profile(document, engines)
    return lines


def _import_profile(document: dict[str, Any], engines: list[str]) -> list[str]:
    """The packages ``import persistedstate`` spends most time in, for each engine."""
    top = 8
    lines = [
        "### Where the import spends its time (`python -X importtime`)",
        "",
        "Microseconds of each top-level package's own modules, imported by `import "
        "persistedstate` (not by Python's start-up), median over the runs of one `-X "
        "importtime` process each. They count the import only, not the process's start and "
        "exit, and `-X importtime` adds its own overhead: compare the shares, not the sums "
        "with the rows above.",
        "",
    ]
    for engine in engines:
        packages = import_packages(document, engine)
        total = import_total_us(document, engine)
        if not packages or not total:
            continue
        rows = [[name, f"{value:,.0f}", f"{value / total:.0%}"] for name, value in packages[:top]]
        rest = sum(value for _, value in packages[top:])
        rows.append([f"{len(packages) - top} others", f"{rest:,.0f}", f"{rest / total:.0%}"])
        lines += [
            f"{LABELS[engine]}: {total / 1000:.1f} ms in all",
            "",
            *_table(["package", "µs", "share"], rows),
            "",
        ]
    return lines


def _sharing(document: dict[str, Any]) -> list[str]:
    """The rows of several processes: shared mode, and a change made by another process."""
    results = document["results"]
    engines = _available(document, ("ours", "shared", "v26", "diskcache", "sqlitedict"))
    rows = []
    for case, unit in (
        ("counter_shared", "µs"),
        ("processes_transaction", "µs"),
        ("processes_incr", "µs"),
        ("outside_change", "ms"),
    ):
        if case not in results:
            continue
        values = {engine: figure(document, case, engine) for engine in engines}
        rows.append([f"{_title(document, case)} ({unit})", *(number(values[e]) for e in engines)])
        if case.startswith("processes"):
            per_second = [number(1e6 / v) if v else "-" for v in values.values()]
            rows.append(["  the same in increments per second", *per_second])
    if not rows:
        return []
    notes = []
    lost = [
        reply["info"]["lost"]
        for reply in results.get("processes_transaction", {}).get("sqlitedict", [])
        if reply.get("ok")
    ]
    if lost:
        notes.append(
            f"SqliteDict has no transaction: `d['counter'] += 1` is a read and then a write, "
            f"so processes overwrite one another's increments: {min(lost):,} to "
            f"{max(lost):,} of them were lost in a run."
        )
    after = [
        value
        for reply in results.get("outside_change", {}).get("ours", [])
        if reply.get("ok")
        for value in reply["info"]["after_return"]
    ]
    if after:
        later = statistics.median(after) * 1e3
        notes.append(
            "This project, default mode: the change is made by a command "
            "(`persistedstate.state.command`, what `persistedstate set` uses), which the "
            "program hands the file over to (its handover thread looks every 50 ms); once "
            f"the command has returned, the program sees the change {later:.2f} ms "
            "later (median): its reads wait for it during the handover."
        )
    header = ["", *(LABELS[e] for e in engines)]
    return ["## Several processes", "", *_table(header, rows), "", *notes, ""]


def _durability(document: dict[str, Any]) -> list[str]:
    rows = []
    for engine in (*STORES, "shared", "floor"):
        about = document["engines"].get(engine, {})
        if not about.get("available"):
            rows.append([LABELS[engine], "not run: " + about.get("why", "not asked for"), "", ""])
            continue
        version = about.get("version") or "-"
        kill, fsync = about.get("durable", ""), about.get("durable_fsync", "") or "-"
        rows.append([LABELS[engine], version, kill, fsync])
    return [
        "## The stores and how each is made durable",
        "",
        *_table(["store", "version", "survives a killed process", "fsync rows"], rows, numbers=0),
        "",
    ]


def _method(document: dict[str, Any]) -> list[str]:
    return [
        "## Method",
        "",
        f"- Every figure is the median of {runs_text(document)}. Each round runs every "
        "case for every store in turn (a cheap cell several times), so a slow spell of the "
        "machine weighs on all stores alike; each run uses a fresh directory. results.json "
        "holds every run.",
        "- Each store runs in its own worker process (this project from the dev venv; 26.1 and "
        "the other peers from their own venvs under benchmarks/.peers), same Python version.",
        "- A run sets the store up, closes it and opens it again, then times the operations "
        "with time.perf_counter (garbage collection on, collected first); close() is timed "
        "apart. Afterwards the store is reopened and the result checked.",
        "- The floor is a Python loop doing one os.write of a 40-byte record per iteration to "
        "an O_APPEND file (with fsync: os.write then os.fsync).",
        "- Peak RSS is the peak resident memory (Linux: VmHWM; elsewhere ru_maxrss, which "
        "Linux carries over from the parent process across exec) of a fresh process that "
        "imported the library and opened the state; the line below it is the growth over the "
        "process after the import.",
        "- `make bench ROWS=import,memory` runs some rows only (changes, fsync, files, import, "
        "memory, read, or single cases); the other rows are kept from the earlier run, and the "
        "top of this report says when each was measured.",
        "",
    ]
