"""Draw results.png from results.json: grouped bars on a log scale.

``python chart.py results.json results.png``; needs matplotlib, so ``run.py`` starts it with
the peers' interpreter (benchmarks/.peers/others), which has it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import report

COLOURS = {
    "ours": "#1b7837",
    "v26": "#c51b7d",
    "diskcache": "#4575b4",
    "sqlitedict": "#91bfdb",
    "lmdbm": "#fdae61",
    "shelve": "#a6a6a6",
    "floor": "#333333",
}

# (case, label under the group, case giving the floor bar of the group)
PER_OP_GROUPS = [
    ("counter", "counter\n(empty state)", "floor"),
    ("counter_big", "counter\n({keys:,} other keys)", "floor"),
    ("nested", "nested change\n(depth 5)", "floor"),
    ("append", "list append", "floor"),
    ("fsync_counter", "counter\nwith fsync", "fsync_floor"),
]
FILE_GROUPS = [
    ("open_v26_file", "open the\n26.1-written file"),
    ("open_sample", "open a\n{size} state"),
    ("compact_sample", "compact a\n{size} state"),
]
READ_GROUPS = [
    ("read_settings", 'state.settings["batch"]'),
    ("read_nested", 'state.a["b"]["c"]'),
]
MEMORY_GROUPS = [
    ("rss_sample", "after opening\na {size} state"),
    ("seed_memory", "seed example,\n{seed_n:,} changes"),
]


def grouped_bars(
    axes: Any, groups: list[tuple[str, list[tuple[str, float | None]]]], unit: str, log: bool = True
) -> None:
    """One cluster of bars per group; a missing value leaves a gap. Without ``log`` the scale
    is linear from zero (for figures of the same order, where a log scale would mislead)."""
    engines = [
        engine for engine in COLOURS if any(e == engine for _, bars in groups for e, _ in bars)
    ]
    width = 0.8 / max(len(engines), 1)
    for slot, engine in enumerate(engines):
        xs, heights = [], []
        for position, (_, bars) in enumerate(groups):
            value = dict(bars).get(engine)
            if value is not None:
                xs.append(position - 0.4 + width * (slot + 0.5))
                heights.append(value)
        drawn = axes.bar(xs, heights, width, label=report.LABELS[engine], color=COLOURS[engine])
        axes.bar_label(
            drawn, labels=[report.number(h) for h in heights], fontsize=6, rotation=90, padding=2
        )
    axes.set_xticks(range(len(groups)), [label for label, _ in groups], fontsize=8)
    if log:
        axes.set_yscale("log")
    else:  # room above the tallest bar for its label and the legend
        tallest = max((v for _, bars in groups for _, v in bars if v is not None), default=1.0)
        axes.set_ylim(0, tallest * 1.5)
    axes.set_ylabel(unit)
    axes.grid(axis="y", which="major", alpha=0.3)
    axes.margins(y=0.25)


def main() -> None:
    matplotlib.use("Agg")  # draw to a file, no display needed
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    document = json.loads(source.read_text(encoding="utf-8"))
    table = report.figures(document)

    per_op = []
    for case, label, floor_case in PER_OP_GROUPS:
        if case not in table:
            continue
        bars = [(engine, table[case].get(engine)) for engine in report.STORES]
        bars.append(("floor", table.get(floor_case, {}).get("floor")))
        per_op.append((label.format(keys=document["size"]["other_keys"]), bars))
    kilobytes = document["size"]["sample_bytes"] // 1000
    size = f"{kilobytes // 1000:,} MB" if kilobytes >= 1000 else f"{kilobytes:,} kB"
    files = [
        (label.format(size=size), [(engine, table[case].get(engine)) for engine in ("ours", "v26")])
        for case, label in FILE_GROUPS
        if case in table
    ]

    ours_v26 = ("ours", "v26")
    reads = [
        (label, [*((e, table[case].get(e)) for e in ours_v26), ("floor", table[case].get("floor"))])
        for case, label in READ_GROUPS
        if case in table
    ]
    imports = [("import persistedstate", [(e, table["import"].get(e)) for e in ours_v26])]
    imports = imports if "import" in table else []
    memory = [
        (
            label.format(size=size, seed_n=document["size"].get("seed_n", 0)),
            [(e, table[case].get(e)) for e in ours_v26],
        )
        for case, label in MEMORY_GROUPS
        if case in table
    ]
    lower = [
        (reads, "µs per read (log scale)", "Reading (floor: plain dicts)", True),
        (imports, "ms added to a process", "Import", False),
        (memory, "MB peak RSS", "Memory", False),
    ]
    lower = [panel for panel in lower if panel[0]]

    figure = plt.figure(figsize=(13, 10.5 if lower else 5.5))
    grid = figure.add_gridspec(2 if lower else 1, 6, height_ratios=[1, 0.9] if lower else [1])
    left = figure.add_subplot(grid[0, :4])
    right = figure.add_subplot(grid[0, 4:])
    grouped_bars(left, per_op, "µs per operation (log scale, lower is better)")
    left.set_title("Cost of one durable change", fontsize=10)
    left.legend(fontsize=7, ncols=4, loc="upper left")
    grouped_bars(right, files, "ms (log scale, lower is better)")
    right.set_title("Opening and compaction", fontsize=10)
    right.legend(fontsize=7, loc="upper left")
    widths = {"Reading (floor: plain dicts)": 3, "Import": 1, "Memory": 2}
    column = 0
    for groups, unit, title, log in lower:
        span = widths[title] if len(lower) == 3 else 6 // len(lower)
        axes = figure.add_subplot(grid[1, column : column + span])
        column += span
        grouped_bars(axes, groups, unit, log)
        axes.set_title(title, fontsize=10)
        axes.legend(fontsize=7, loc="upper left")
    machine = document["machine"]
    title = (
        f"persistedstate benchmark: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['python']}, {machine['filesystem']}; median of {report.runs_text(document)}"
    )
    pieces = report.sessions(document)
    if len(pieces) > 1:  # rows measured in separate runs: say which, and when
        title += "\n" + "; ".join(
            f"{', '.join(report.row_names(keys))}: {about['date'][:10]}"
            + (
                f" (load average {about['load']['after']})"
                if about.get("load", {}).get("after")
                else ""
            )
            for about, keys in pieces
        )
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(target, dpi=120)


if __name__ == "__main__":
    main()
