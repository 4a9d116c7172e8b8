"""Smoke runs of the benchmark (benchmarks/run.py --quick), so it never rots, and README.md's
benchmark figures, which must be what benchmarks/readme.py renders from the committed results.

The smoke runs check that a run produces well-formed results, never how fast anything is, with
what this interpreter can import (this project, shelve, the floor loop); the peers'
environments are exercised by `make bench` itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
RESULTS = BENCHMARKS / "results" / "results.json"
PER_OP = ("counter", "counter_big", "nested", "append")


def run_quick(
    tmp_path: Path, peers_dir: Path, engines: str, *more: str, returncode: int = 0
) -> dict[str, Any]:
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
        *more,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == returncode, done.stderr
    if returncode:
        return {"stderr": done.stderr}
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


@pytest.mark.skipif(sys.platform != "linux", reason="Linux's carry-over, read in /proc")
def test_the_seed_example_reports_its_own_peak_not_its_parents(tmp_path: Path) -> None:
    # Linux's ru_maxrss of a child keeps the peak of its parent across exec: a benchmark
    # worker bigger than the example made every engine's figure the worker's.
    ballast = b"x" * (256 << 20)  # (written, so resident)
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "seed_example.py"), str(tmp_path / "s.state"), "1000"],
        capture_output=True,
        text=True,
        check=True,
    )
    said = json.loads(done.stdout)
    assert 0 < said["baseline"] <= said["peak"] < len(ballast) // 2
    # The state was open at exit, so the figure includes the compaction at exit.
    assert (tmp_path / "s.state").read_text(encoding="utf-8") == "last_id: 1000\n"


def test_quick_run_with_what_is_importable_here(tmp_path: Path) -> None:
    document = run_quick(tmp_path, tmp_path / "no-peers", "ours,shared,shelve,floor,v26,sqlitedict")
    assert document["engines"]["ours"]["available"]
    assert_well_formed(document, "ours", ("counter_shared", "outside_change"))
    assert_well_formed(document, "shared", ("counter_shared", "processes_transaction"))
    assert_well_formed(document, "shared", ("outside_change",))
    assert not document["engines"]["v26"]["available"]  # never this project under 26.1's name
    assert_well_formed(document, "floor", ("floor", "fsync_floor"))
    assert_well_formed(document, "ours", (*PER_OP, "counter_long", "fsync_counter"))
    assert_well_formed(document, "shelve", PER_OP)
    assert_well_formed(document, "ours", ("open_sample", "compact_sample"))
    rss = document["results"]["rss_sample"]["ours"][0]
    assert rss["ok"] and rss["info"]["peak_bytes"] >= rss["info"]["baseline_bytes"] > 0
    assert_well_formed(document, "ours", ("read_settings", "read_nested"))
    assert_well_formed(document, "floor", ("read_settings", "read_nested"))
    imported = document["results"]["import"]["ours"][0]
    assert imported["ok"], imported.get("error")
    info = imported["info"]
    assert info["import_seconds"] > 0 and info["bare_seconds"] > 0
    assert info["importtime_total_us"] > 0 and info["packages"]["persistedstate"] > 0
    seed = document["results"]["seed_memory"]["ours"][0]
    assert seed["ok"], seed.get("error")  # the workload checked last_id after the process
    assert seed["ops"] == document["size"]["seed_n"]
    assert seed["info"]["peak_bytes"] >= seed["info"]["baseline_bytes"] > 0
    assert not document["log"], document["log"]

    # Interpreters are named relative to the repository when they are inside it.
    executable = document["engines"]["ours"]["executable"]
    inside = Path(os.path.abspath(sys.executable)).is_relative_to(REPO)
    assert Path(executable).is_absolute() != inside, executable
    if inside:
        assert (REPO / executable).exists(), executable

    # Some rows again: they replace their figures, the other rows are kept as they were.
    earlier = document
    later = run_quick(tmp_path, tmp_path / "no-peers", "ours,floor", "--rows", "read")
    assert later["results"]["read_settings"] != earlier["results"]["read_settings"]
    for case in earlier["results"]:
        if case not in ("read_settings", "read_nested"):
            assert later["results"][case] == earlier["results"][case], case
    assert [case["key"] for case in later["cases"]] == [case["key"] for case in earlier["cases"]]
    assert later["measured"]["read_nested"]["rows"] == ["read"]
    assert later["measured"]["counter"] == earlier["measured"]["counter"]
    # ... and only when the figures are alike: medians of as many runs.
    refused = run_quick(
        tmp_path, tmp_path / "no-peers", "ours", "--rows", "read", "--runs", "2", returncode=2
    )
    assert "cannot keep the other rows" in refused["stderr"]


# -- README.md's figures ---------------------------------------------------------------------


def readme_check(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(BENCHMARKS / "readme.py"), "--check", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_readme_figures_are_what_the_committed_results_render() -> None:
    done = readme_check()
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_check_fails_on_a_hand_edit_and_on_results_it_does_not_show(
    tmp_path: Path,
) -> None:
    readme, results = tmp_path / "README.md", tmp_path / "results.json"
    shutil.copyfile(REPO / "README.md", readme)
    shutil.copyfile(RESULTS, results)
    arguments = ("--readme", str(readme), "--results", str(results))
    assert readme_check(*arguments).returncode == 0

    # A figure typed by hand into the block.
    text = readme.read_text("utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `state.counter += 1` |"))
    cells = row.split(" | ")
    cells[1] = "0.01" if cells[1] != "0.01" else "0.02"
    readme.write_text(text.replace(row, " | ".join(cells)), "utf-8")
    assert readme.read_text("utf-8") != text
    assert readme_check(*arguments).returncode == 1

    # New results that the README does not show yet; rendering them puts them in.
    readme.write_text(text, "utf-8")
    document = json.loads(results.read_text("utf-8"))
    for reply in document["results"]["counter"]["ours"]:
        reply["seconds"] = 1234.0 * reply["ops"] / 1e6  # 1,234 µs per change
    results.write_text(json.dumps(document), "utf-8")
    stale = readme_check(*arguments)
    assert stale.returncode == 1
    assert "| `state.counter += 1` | 1,234 |" in stale.stdout  # the diff shows the new figure
    rewrite = [sys.executable, str(BENCHMARKS / "readme.py"), *arguments]
    subprocess.run(rewrite, check=True, capture_output=True, timeout=60)
    assert "| `state.counter += 1` | 1,234 |" in readme.read_text("utf-8")
    assert readme_check(*arguments).returncode == 0


def test_committed_results_name_interpreters_inside_the_repository() -> None:
    document = json.loads(RESULTS.read_text("utf-8"))
    for engine, about in document["engines"].items():
        if about.get("available"):
            assert not Path(about["executable"]).is_absolute(), (engine, about["executable"])
