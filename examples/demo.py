"""`make demo`: a job is killed partway (SIGKILL), started again, and carries on.

It runs examples/process_items.py in a child process, kills it without warning once a few
items are done, shows the state file the kill left behind (a snapshot plus journal records),
then starts the job again and checks that it resumed at the first unprocessed item.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from persistedstate import load

JOB = Path(__file__).with_name("process_items.py")
ITEMS = 20


def show(title: str, path: Path) -> None:
    print(f"\n--- {title}: {path.name} ---")
    print(path.read_text(encoding="utf-8").rstrip())
    print("--- end of file ---\n")


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "job.state"
        print(f"Starting the job on {ITEMS} items; it will be killed partway.")
        child = subprocess.Popen([sys.executable, str(JOB), str(path), str(ITEMS)])
        while not path.exists() or load(path).get("next_item", 1) <= 8:
            time.sleep(0.01)
        child.kill()  # SIGKILL: no cleanup, no close(), no chance to flush anything
        child.wait()
        done = load(path)["next_item"] - 1
        print(f"\nKilled the job (exit status {child.returncode}) after {done} items.")
        show("the file as the kill left it", path)

        print(f"Starting the job again: it should resume at item {done + 1}.")
        output = subprocess.run(
            [sys.executable, str(JOB), str(path), str(ITEMS)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        first = output.splitlines()[0]
        print(f"The second run began with: {first!r}")
        show("the file after the second run closed it", path)

        state = load(path)
        expected = {item: item * item for item in range(1, ITEMS + 1)}
        assert first == f"processed item {done + 1}", "did not resume at the right item"
        assert state["results"] == expected, "an item was lost or done twice"
        print(f"All {ITEMS} items done exactly once; nothing was lost by the kill.")


if __name__ == "__main__":
    main()
