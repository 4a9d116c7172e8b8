"""A typed job: its keys, their types and defaults declared once, checked at every change.

Run it, kill it, run it again: it carries on where it stopped. A value of the wrong type is
refused before anything is written; a file a person got wrong (``next_item: three``) is
refused at open with its line and column; a file written by version 1 of the job (which kept
only ``next_item``) is upgraded when it opens.

    python examples/typed_job.py job.state 5
    persistedstate check job.state --schema typed_job:Job   # (from examples/)
"""

from __future__ import annotations

import sys
from typing import ClassVar, TypedDict

from persistedstate import PersistedState


class Settings(TypedDict):
    batch: int
    label: str


class Job(PersistedState):
    version: ClassVar[int] = 2  # version 2 added done

    next_item: int = 1
    done: list[str] = []  # noqa: RUF012 (each state gets a fresh copy)
    settings: Settings = {"batch": 10, "label": "nightly"}  # noqa: RUF012 (the same)

    def upgrade(self, from_version: int) -> None:
        """Bring a version-1 file (which had no done list) up to version 2."""
        self.done = [f"item-{item}" for item in range(1, self.next_item)]


def main(path: str, last_item: int) -> None:
    job = Job(path)
    while job.next_item <= last_item:
        item = job.next_item
        with job.transaction():  # the item and the resume point land together
            job.done.append(f"item-{item}")
            job.next_item = item + 1
        print(f"processed item {item}", flush=True)
    try:
        job.next_item = "the end"  # type: ignore[assignment]  # (mypy refuses it too)
    except TypeError as error:
        print(f"refused: {error}")
    job.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
