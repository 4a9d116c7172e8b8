"""The exceptions persistedstate raises, all rooted at PersistedStateError."""

from __future__ import annotations

import os


class PersistedStateError(Exception):
    """Base class: misuse of a state (closed, detached proxy) or a problem with its file."""


class CorruptStateError(PersistedStateError):
    """The state file cannot be read; it has been left exactly as it was.

    ``path``, ``line`` and ``column`` (1-based, ``None`` when unknown) say where, ``problem``
    says what.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        problem: str,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        self.line = line
        self.column = column
        where = self.path
        if line is not None:
            where += f", line {line}"
            if column is not None:
                where += f", column {column}"
        super().__init__(
            f"{where}: {problem}. The file was not changed; fix it by hand "
            f"(`persistedstate check {self.path}` re-checks it) or restore a backup."
        )


class StateLockedError(PersistedStateError):
    """Another writer (process or open state object) holds the state file."""

    def __init__(self, path: str | os.PathLike[str], holder_pid: int | None = None) -> None:
        self.path = os.fspath(path)
        self.holder_pid = holder_pid
        holder = f"process {holder_pid}" if holder_pid is not None else "another writer"
        super().__init__(f"{self.path} is locked by {holder}; one writer at a time may open it")
