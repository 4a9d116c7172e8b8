"""Write README.md's benchmark figures from benchmarks/results/results.json.

Usage (``make bench`` runs it after run.py)::

    python benchmarks/readme.py [--check] [--results FILE] [--readme FILE]

It replaces what lies between the two marker comments in README.md (BEGIN and END below) with
the table, the chart and the figures rendered from results.json, so no figure in that block is
typed by hand. ``--check`` changes nothing: it exits with status 1 and shows the difference
when the block is not what results.json renders (the test suite runs that check).

Standard library only (and report.py beside it).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import report

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "results.json"
README = HERE.parent / "README.md"
BEGIN = (
    "<!-- benchmark figures: written by benchmarks/readme.py from "
    "benchmarks/results/results.json; edit neither by hand -->"
)
END = "<!-- end of benchmark figures -->"

# README columns, with the cases each row takes its figures from.
COLUMNS = ("ours", "v26", "diskcache", "sqlitedict", "lmdbm", "shelve")


class MarkersMissing(Exception):
    """README.md lacks the two marker comments, or has them out of order."""


def figure(document: dict[str, Any], case: str, engine: str, measure: Any = None) -> float | None:
    return report.figure(document, case, engine, measure)


def cell(document: dict[str, Any], case: str, engine: str, measure: Any = None) -> str:
    """A table cell: blank when the row does not measure that engine, "-" when it failed."""
    engines = next((c["engines"] for c in document["cases"] if c["key"] == case), ())
    if engine not in engines:
        return ""
    return report.number(figure(document, case, engine, measure))


def duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{report.number(ms)} ms"


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def size_text(document: dict[str, Any]) -> str:
    kilobytes = document["size"]["sample_bytes"] // 1000
    return f"{kilobytes // 1000:,} MB" if kilobytes >= 1000 else f"{kilobytes:,} kB"


def _when(document: dict[str, Any]) -> str:
    """The run(s) behind the figures: the date, the rows a later run measured, busy machines."""
    cores = document["machine"].get("cores") or 1
    pieces = report.sessions(document)
    main = max(pieces, key=lambda piece: len(piece[1]))
    parts = []
    for about, keys in [main, *(piece for piece in pieces if piece is not main)]:
        text = about["date"][:10]
        if about is not main[0]:
            rows = report.row_names(keys)
            text = f"the {_and(rows)} row{'s' if len(rows) > 1 else ''}: {text}"
        load = about.get("load") or {}
        worst = max(
            (v for v in (load.get("before"), load.get("after")) if v is not None), default=0
        )
        if worst >= cores:
            text += f" (a busy machine, load average {worst:g} on {cores} cores: noisy)"
        parts.append(text)
    return "; ".join(parts)


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def render(document: dict[str, Any]) -> str:
    """The block between the markers (without them), from a results.json document."""
    machine = document["machine"]
    size = document["size"]
    system = machine["os"].split("-")[0]
    lines = [
        *wrap(
            f"Medians of {report.runs_text(document)}, {machine['cpu']}, {machine['cores']} "
            f"cores, {system}, {machine['filesystem']}, {machine['python']}, "
            f"{_when(document)}:"
        ),
        "",
    ]
    if document.get("chart"):
        lines += ["![benchmark chart](benchmarks/results/results.png)", ""]

    labels = [report.LABELS[engine] for engine in COLUMNS]
    header = ["µs per change (median)", *labels]
    rows = [
        ("`state.counter += 1`", "counter", None),
        (f"the same with {size['other_keys']:,} other keys", "counter_big", None),
        (
            f"the same, {size['long_n']:,} changes, compactions and `close()` included",
            "counter_long_big",
            report.op_close_us,
        ),
        ("a change 5 levels deep", "nested", None),
        ("`state.processed.append(i)`", "append", None),
        ("with `fsync` (each store's power-safe mode)", "fsync_counter", None),
    ]
    table = []
    for title, case, measure in rows:
        if case in document["results"]:
            table.append([title, *(cell(document, case, e, measure) for e in COLUMNS)])
    if table:
        lines += [*_table(header, table), ""]

    second = []
    for title, case, engines in (
        ('reading `state.settings["batch"]` (µs)', "read_settings", ("ours", "v26", "floor")),
        ('reading `state.a["b"]["c"]` (µs)', "read_nested", ("ours", "v26", "floor")),
        ("`import persistedstate`: ms added to a process", "import", ("ours", "v26")),
        (
            f"the example at the top, {size.get('seed_n', 0):,} changes: peak memory (MB)",
            "seed_memory",
            ("ours", "v26"),
        ),
    ):
        if case in document["results"]:
            second.append([title, *(cell(document, case, e) for e in engines)])
            second[-1] += [""] * (4 - len(second[-1]))
    if second:
        lines += [*_table(["", "this", "26.1", "plain dicts"], second), ""]

    engines = ("ours", "shared", "v26", "diskcache", "sqlitedict")
    processes, each = size.get("processes", 4), size.get("process_n", 0)
    third = []
    for title, case in (
        ("`state.counter += 1`, no other process (µs)", "counter_shared"),
        (
            f"{processes} processes, each {each:,} increments in a transaction "
            "(µs per increment, all together)",
            "processes_transaction",
        ),
        ("the same with DiskCache's atomic `incr`", "processes_incr"),
        ("until a program sees another process's change (ms)", "outside_change"),
    ):
        if case in document["results"]:
            third.append([title, *(cell(document, case, e) for e in engines)])
    if third:
        header = ["several processes", *(report.LABELS[e] for e in engines)]
        lines += [*_table(header, third), ""]

    for bullet in bullets(document):
        lines += wrap(bullet, first="- ", rest="  ")
    return "\n".join(lines)


def wrap(text: str, first: str = "", rest: str = "") -> list[str]:
    """Lines of at most 100 characters, as the rest of README.md."""
    return textwrap.wrap(
        text,
        width=100,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---" if i == 0 else "---:" for i in range(len(header))]
    return ["| " + " | ".join(row) + " |" for row in (header, align, *rows)]


def bullets(document: dict[str, Any]) -> list[str]:
    """The figures in words; each sentence only when its figures were measured."""
    size = document["size"]

    def get(case: str, engine: str, measure: Any = None) -> float | None:
        return figure(document, case, engine, measure)

    found = []
    floor, fsync_floor = get("floor", "floor"), get("fsync_floor", "floor")
    counter = get("counter", "ours")
    if floor is not None and counter is not None:
        with_fsync = f" (with `fsync`, {report.number(fsync_floor)} µs)" if fsync_floor else ""
        found.append(
            f"The floor, one `os.write` of a 40-byte record in a Python loop, is "
            f"{report.number(floor)} µs here{with_fsync}: a change costs "
            f"{counter / floor:.1f} times the bare system call. The rest is the Python work of "
            "any mapped object (the attribute hook, the lock, encoding the value) plus one "
            "`lseek` that makes sure nobody rewrote the file under us."
        )
    settings, nested_read = get("read_settings", "ours"), get("read_nested", "ours")
    if settings is not None and nested_read is not None:
        plain, plain_nested = get("read_settings", "floor"), get("read_nested", "floor")
        found.append(
            f'Reading `state.settings["batch"]` costs {report.number(settings)} µs (26.1: '
            f"{report.number(get('read_settings', 'v26'))} µs; the same expression on plain "
            f'dicts, {report.number(plain)} µs) and `state.a["b"]["c"]` '
            f"{report.number(nested_read)} µs (26.1: "
            f"{report.number(get('read_nested', 'v26'))} µs; plain dicts, "
            f"{report.number(plain_nested)} µs): `state.settings` is read like any attribute, "
            "and each `[...]` below it is a call into the state's own dict, which returns the "
            "very dict or list it holds."
        )
    growth = [
        report.ratio(get("counter_big", "ours"), counter),
        report.ratio(
            get("counter_big", "ours", report.op_close_us),
            get("counter", "ours", report.op_close_us),
        ),
        report.ratio(
            get("counter_long_big", "ours", report.op_close_us),
            get("counter_long", "ours", report.op_close_us),
        ),
    ]
    if all(value is not None for value in growth):
        grows = "does not grow" if max(v for v in growth if v is not None) <= 1.1 else "grows"
        found.append(
            f"The cost of a change {grows} with the state: {size['other_keys']:,} other keys "
            f"cost {times(growth[0])} (operations only), {times(growth[1])} with the final "
            f"`close()`, and {times(growth[2])} over {size['long_n']:,} changes with every "
            "compaction included."
        )
    opened = get("open_v26_file", "ours")
    if opened is not None:
        sample = size_text(document)
        found.append(
            f"Opening: a 26.1-written file of {size['entries']:,} entries and "
            f"{size['changes']:,} journal records, {duration(opened)} (26.1: "
            f"{duration(get('open_v26_file', 'v26'))}); a {sample} state, "
            f"{duration(get('open_sample', 'ours'))} (26.1: "
            f"{duration(get('open_sample', 'v26'))}). Compacting a {sample} state after a "
            f"change, {duration(get('compact_sample', 'ours'))} (unchanged entries are "
            f"reused). Peak memory after opening a {sample} state: "
            f"{report.number(get('rss_sample', 'ours'))} MB (26.1: "
            f"{report.number(get('rss_sample', 'v26'))} MB). Most of an open is libyaml "
            "parsing and PyYAML building its node objects."
        )
    imported = get("import", "ours")
    if imported is not None:
        cpu = report.import_cpu_ms
        found.append(
            f"`import persistedstate` adds {duration(imported)} to a process, from start to "
            f"exit (26.1: {duration(get('import', 'v26'))}); in CPU time "
            f"{duration(get('import', 'ours', cpu))} (26.1: "
            f"{duration(get('import', 'v26', cpu))}). "
            "[results.md](benchmarks/results/results.md) lists the packages the import spends "
            "its time in."
        )
    seed = get("seed_memory", "ours")
    if seed is not None:
        found.append(
            f"The example at the top of this page, run for {size['seed_n']:,} changes "
            f"without `close()`, peaks at {report.number(seed)} MB of memory (26.1: "
            f"{report.number(get('seed_memory', 'v26'))} MB): "
            f"{report.number(get('seed_memory', 'ours', report.growth_mb))} MB above the peak "
            "it had reached before it opened the state (26.1: "
            f"{report.number(get('seed_memory', 'v26', report.growth_mb))} MB)."
        )
    alone, shared, old = (get("counter_shared", e) for e in ("ours", "shared", "v26"))
    if alone is not None and shared is not None and old is not None:
        found.append(
            f"In shared mode a change takes the file's write lock and lets go of it: "
            f"`state.counter += 1` costs {report.number(shared)} µs with no other process, "
            f"against {report.number(alone)} µs in the default mode and 26.1's "
            f"{report.number(old)} µs in the same run ({shared / old:.2f}x 26.1's; the default "
            f"mode {alone / old:.2f}x, 0.45x before shared mode existed)."
        )
    together = get("processes_transaction", "shared")
    if together is not None:
        rivals = [
            (name, get(case, engine))
            for name, case, engine in (
                ("DiskCache's `transact()`", "processes_transaction", "diskcache"),
                ("DiskCache's `incr`", "processes_incr", "diskcache"),
                (
                    "SqliteDict with autocommit (which loses updates)",
                    "processes_transaction",
                    "sqlitedict",
                ),
            )
        ]
        compared = ", ".join(
            f"{name} {report.number(1e6 / value)}" for name, value in rivals if value
        )
        found.append(
            f"{size.get('processes', 4)} processes incrementing one counter in transactions "
            f"make {report.number(1e6 / together)} increments per second together "
            f"({compared})."
        )
    seen = get("outside_change", "ours")
    if seen is not None:
        found.append(
            f"A program sees a change made by `persistedstate set` {report.number(seen)} ms "
            "after the command began (the program's handover thread looks every 50 ms; "
            f"a shared-mode process's change, {report.number(get('outside_change', 'shared'))}"
            " ms)."
        )
    nested, old_nested = get("nested", "ours"), get("nested", "v26")
    if nested is not None and old_nested is not None:
        found.append(
            "A change five levels deep checks each level by identity, so a dict or list you keep "
            "never writes to the wrong place, as 26.1's can; the path found last time is tried "
            "first, "
            "and top-level dicts and lists are kept as attributes: it costs "
            f"{report.number(nested)} µs, against 26.1's {report.number(old_nested)} µs."
        )
    return found


def rewritten(readme: str, block: str) -> str:
    """README text with the block between the markers replaced by ``block``."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise MarkersMissing(f"README.md needs the lines {BEGIN!r} and then {END!r}")
    return readme[: start + len(BEGIN)] + "\n" + block + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    document = json.loads(args.results.read_text(encoding="utf-8"))
    before = args.readme.read_text(encoding="utf-8")
    try:
        after = rewritten(before, render(document))
    except MarkersMissing as error:
        print(f"{args.readme}: {error}", file=sys.stderr)
        return 2
    if after == before:
        print(f"{args.readme}: benchmark figures are current", file=sys.stderr)
        return 0
    if args.check:
        diff = difflib.unified_diff(
            before.splitlines(), after.splitlines(), "README.md", "rendered", lineterm=""
        )
        print("\n".join(diff))
        print(
            f"{args.readme}: the benchmark figures differ from what {args.results.name} "
            "renders; run `python benchmarks/readme.py` (make bench does)",
            file=sys.stderr,
        )
        return 1
    args.readme.write_text(after, encoding="utf-8")
    print(f"{args.readme}: benchmark figures rewritten from {args.results.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
