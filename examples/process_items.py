"""A job that works through items 1..N and can be killed at any moment.

Run it, kill it (Ctrl-C, kill -9, a power cut with fsync=True), run it again: it carries on
from the first item it had not finished, and no item is done twice or skipped.

    python examples/process_items.py job.state 40
"""

from __future__ import annotations

import sys
import time

from persistedstate import PersistedState


def process(item: int) -> int:
    time.sleep(0.05)  # stands for real work
    return item * item


def main(path: str, last_item: int) -> None:
    state = PersistedState(path, next_item=1, results={})
    while state.next_item <= last_item:
        item = state.next_item
        result = process(item)
        with state.transaction():  # the result and the resume point land together
            state.results[item] = result
            state.next_item = item + 1
        print(f"processed item {item}", flush=True)
    state.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
