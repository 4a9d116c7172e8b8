"""Every script in examples/ runs as a real process, in a temporary directory, and does what it
says: the job resumes after a SIGKILL at the first item it had not finished, and no item is lost
or done twice."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from persistedstate import load

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT = 120  # seconds; each script takes a few seconds at most


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run examples/NAME to its end; temporary files go under ``cwd``, not the system's /tmp."""
    environment = {**os.environ, "TMPDIR": str(cwd)}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def squares(last: int) -> dict[int, int]:
    return {item: item * item for item in range(1, last + 1)}


def printed_file(output: str, title: str) -> str:
    """The file text demo.py printed between ``--- TITLE: job.state ---`` and the end line."""
    match = re.search(
        rf"^--- {re.escape(title)}: job\.state ---\n(.*?)^--- end of file ---$",
        output,
        re.MULTILINE | re.DOTALL,
    )
    assert match, f"demo.py did not show {title!r}:\n{output}"
    return match.group(1)


# -- demo.py -------------------------------------------------------------------------------


def test_demo_job_is_killed_resumes_and_completes_every_item_once(tmp_path: Path) -> None:
    done = run_example("demo.py", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout
    assert list(tmp_path.iterdir()) == []  # its temporary directory is gone

    killed = re.search(r"Killed the job \(exit status (-?\d+)\) after (\d+) items\.", output)
    assert killed, output
    assert int(killed.group(1)) == -signal.SIGKILL
    items_before_kill = int(killed.group(2))
    assert 8 <= items_before_kill < 20  # killed partway, as it says

    # The kill left a snapshot and journal records: the work was in the file, not in memory.
    left = printed_file(output, "the file as the kill left it")
    assert "\n--- [" in "\n" + left, left
    (tmp_path / "left.state").write_text(left, encoding="utf-8")
    assert load(tmp_path / "left.state")["next_item"] == items_before_kill + 1

    # The second run began at the first unfinished item ...
    assert f"The second run began with: 'processed item {items_before_kill + 1}'" in output
    # ... and close() left one YAML document holding every item's result, each once.
    final = printed_file(output, "the file after the second run closed it")
    documents = list(yaml.safe_load_all(final))
    assert len(documents) == 1, final
    assert documents[0] == {"next_item": 21, "results": squares(20)}
    assert "All 20 items done exactly once" in output


# -- process_items.py ----------------------------------------------------------------------

JOB_ITEMS = 12  # items of the job that is killed (0.05 s each)


def test_process_items_runs_to_the_end_and_leaves_one_clean_document(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    done = run_example("process_items.py", str(path), "5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"processed item {item}" for item in range(1, 6)]
    assert yaml.safe_load(path.read_text("utf-8")) == {"next_item": 6, "results": squares(5)}

    # Run again on a finished job: nothing to do, nothing done twice.
    again = run_example("process_items.py", str(path), "5", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    assert load(path) == {"next_item": 6, "results": squares(5)}

    # Asked for more items, it carries on from the first new one.
    more = run_example("process_items.py", str(path), "7", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert more.stdout.splitlines() == ["processed item 6", "processed item 7"]
    assert load(path) == {"next_item": 8, "results": squares(7)}


def test_process_items_killed_with_sigkill_resumes_where_it_stopped(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    child = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "process_items.py"), str(path), str(JOB_ITEMS)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(TIMEOUT, child.kill)  # a hung child ends the readline below
    watchdog.start()
    try:
        assert child.stdout is not None
        printed = []
        while len(printed) < 3:  # it has said three items are done
            line = child.stdout.readline()
            assert line, "process_items.py ended before it had done 3 items"
            printed.append(line.strip())
        child.send_signal(signal.SIGKILL)
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert printed == ["processed item 1", "processed item 2", "processed item 3"]

    at_kill = load(path)
    done = at_kill["next_item"] - 1
    assert 3 <= done < JOB_ITEMS
    # the resume point and the results landed together (one transaction per item)
    assert at_kill["results"] == squares(done)
    assert "\n--- [" in path.read_text("utf-8")  # journal records: it never reached close()

    resumed = run_example("process_items.py", str(path), str(JOB_ITEMS), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stdout.splitlines()
    assert lines == [f"processed item {item}" for item in range(done + 1, JOB_ITEMS + 1)]
    expected = {"next_item": JOB_ITEMS + 1, "results": squares(JOB_ITEMS)}
    assert yaml.safe_load(path.read_text("utf-8")) == expected


# -- typed_job.py ----------------------------------------------------------------------------


def test_typed_job_upgrades_a_version_1_file_and_refuses_a_wrong_type(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    path.write_text("next_item: 3\n")  # (version 1 of the job kept only this)
    done = run_example("typed_job.py", str(path), "4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == ["processed item 3", "processed item 4"]
    assert "refused: Job key next_item: expected int, found str 'the end'" in done.stdout
    assert load(path) == {
        "next_item": 5,
        "done": ["item-1", "item-2", "item-3", "item-4"],
        "settings": {"batch": 10, "label": "nightly"},
        "_version": 2,
    }


def test_typed_job_refuses_a_file_a_person_got_wrong(tmp_path: Path) -> None:
    path = tmp_path / "job.state"
    path.write_text("next_item: three\n_version: 2\n")
    failed = run_example("typed_job.py", str(path), "4", cwd=tmp_path)
    assert failed.returncode == 1
    assert f"CorruptStateError: {path}, line 1, column 12: key next_item: expected int" in (
        failed.stderr
    )
    assert path.read_text() == "next_item: three\n_version: 2\n"


# -- every example has a test --------------------------------------------------------------

TESTED = {"demo.py", "process_items.py", "typed_job.py"}


def test_every_example_is_run_by_a_test_here() -> None:
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert scripts, f"no examples found in {EXAMPLES}"
    assert scripts == TESTED, "add a test above for each new script in examples/"
