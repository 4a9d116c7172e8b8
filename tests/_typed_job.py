"""The typed state the live and shared tests' typed program (``_workers.py drive-typed``) holds,
and the tests open to compare with it."""

from __future__ import annotations

from typing import TypedDict

from persistedstate import PersistedState


class Settings(TypedDict):
    batch: int
    label: str


class Job(PersistedState):
    last_id: int = 0
    done: list[str] = []  # noqa: RUF012 (each state gets a copy)
    settings: Settings = {"batch": 100, "label": "nightly"}  # noqa: RUF012
    ratio: float | None = None
