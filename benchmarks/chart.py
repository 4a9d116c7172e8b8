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


def grouped_bars(
    axes: Any, groups: list[tuple[str, list[tuple[str, float | None]]]], unit: str
) -> None:
    """One cluster of bars per group; a missing value leaves a gap."""
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
    axes.set_yscale("log")
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

    figure, (left, right) = plt.subplots(
        1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [3, 1.3]}
    )
    grouped_bars(left, per_op, "µs per operation (log scale, lower is better)")
    left.set_title("Cost of one durable change", fontsize=10)
    left.legend(fontsize=7, ncols=4, loc="upper left")
    grouped_bars(right, files, "ms (log scale, lower is better)")
    right.set_title("Opening and compaction", fontsize=10)
    right.legend(fontsize=7, loc="upper left")
    machine = document["machine"]
    figure.suptitle(
        f"persistedstate benchmark: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['python']}, {machine['filesystem']}; median of {report.runs_text(document)}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(target, dpi=120)


if __name__ == "__main__":
    main()
