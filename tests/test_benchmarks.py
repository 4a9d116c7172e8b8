"""Smoke runs of the benchmark (benchmarks/run.py --quick), so it never rots.

They check that a run produces well-formed results, never how fast anything is, with what this
interpreter can import (this project, shelve, the floor loop); the peers' environments are
exercised by `make bench` itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PER_OP = ("counter", "counter_big", "nested", "append")


def run_quick(tmp_path: Path, peers_dir: Path, engines: str) -> dict[str, Any]:
    out = tmp_path / "results"
    command = [
        sys.executable,
        str(BENCHMARKS / "run.py"),
        "--quick",
        "--runs",
        "1",
        "--engines",
        engines,
        "--out",
        str(out),
        "--peers-dir",
        str(peers_dir),
        "--tmp-dir",
        str(tmp_path / "scratch"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert markdown.startswith("# persistedstate benchmark")
    for section in ("## Targets", "## Per operation", "## Method"):
        assert section in markdown
    if document["chart"]:
        assert (out / "results.png").read_bytes().startswith(b"\x89PNG")
    return document


def assert_well_formed(document: dict[str, Any], engine: str, cases: tuple[str, ...]) -> None:
    for case in cases:
        replies = document["results"][case][engine]
        assert replies, f"{case} / {engine}: no runs"
        for reply in replies:
            assert reply["ok"], f"{case} / {engine}: {reply.get('error')}"
            assert reply["ops"] >= 1
            assert reply["seconds"] > 0
            assert reply["close_seconds"] >= 0


def test_quick_run_with_what_is_importable_here(tmp_path: Path) -> None:
    document = run_quick(tmp_path, tmp_path / "no-peers", "ours,shelve,floor,v26,sqlitedict")
    assert document["engines"]["ours"]["available"]
    assert not document["engines"]["v26"]["available"]  # never this project under 26.1's name
    assert_well_formed(document, "floor", ("floor", "fsync_floor"))
    assert_well_formed(document, "ours", (*PER_OP, "counter_long", "fsync_counter"))
    assert_well_formed(document, "shelve", PER_OP)
    assert_well_formed(document, "ours", ("open_sample", "compact_sample"))
    rss = document["results"]["rss_sample"]["ours"][0]
    assert rss["ok"] and rss["info"]["peak_bytes"] >= rss["info"]["baseline_bytes"] > 0
    assert not document["log"], document["log"]
