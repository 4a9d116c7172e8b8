"""The exceptions persistedstate raises, all rooted at PersistedStateError."""

from __future__ import annotations

import os

from .textpos import bom_length


class PersistedStateError(Exception):
    """Base class: misuse of a state (closed, a detached dict or list) or a problem with its
    file."""


class CorruptStateError(PersistedStateError):
    """The state file cannot be read; it has been left exactly as it was.

    ``path``, ``line`` and ``column`` (1-based, ``None`` when unknown) say where, ``problem``
    says what, ``hint`` (``None`` when there is none) how a person would likely fix it, and
    ``source_line`` is that line of the file (``None`` when unknown). The message shows them all,
    the line with a caret under the column: :meth:`describe`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        problem: str,
        line: int | None = None,
        column: int | None = None,
        *,
        text: str | bytes | None = None,
        hint: str | None = None,
        then: str | None = None,
    ) -> None:
        """``text`` is the file's text (or its start, up to the line), for the line shown;
        ``then`` ends the message in place of what to do with a file that cannot be read."""
        self.path = os.fspath(path)
        self.problem = problem
        self.line = line
        self.column = column
        self.hint = hint
        self.source_line = _line_of(text, line) if text is not None and line is not None else None
        if then is None:
            then = (
                f"The file was not changed; fix it by hand (`persistedstate check {self.path}` "
                "re-checks it) or restore a backup."
            )
        super().__init__(f"{self.describe()}\n{then}")

    def describe(self, label: str | None = None) -> str:
        """Where and what, the line with a caret under the column, and the hint, if any.

        ``label`` names the file in place of its path (the command line's "FILE (your edit)").
        """
        where = label or self.path
        if self.line is not None:
            where += f", line {self.line}"
            if self.column is not None:
                where += f", column {self.column}"
        text = f"{where}: {self.problem}"
        line = self.source_line
        if line is not None and line.strip():
            column = min(max((self.column or 1) - 1, 0), len(line))
            start = max(0, column - 60)  # (a long line: the part around the column)
            shown = line[start : start + 120]
            # The caret lines up under the column as the terminal lays out the line's tabs.
            marker = "".join("\t" if char == "\t" else " " for char in shown[: column - start])
            text += f"\n    {shown}\n    {marker}^"
        if self.hint is not None:
            text += f"\nhint: {self.hint}"
        return text


def _line_of(text: str | bytes, line: int) -> str | None:
    """Line ``line`` (1-based) of ``text``, without its line break; None past the end."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")  # (a file that is not UTF-8: shown as it can be)
    lines = text.split("\n", line)
    lines[0] = lines[0][bom_length(lines[0]) :]  # (no character a person sees)
    return lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else None


class StateLockedError(PersistedStateError):
    """Another writer (process or open state object) holds the state file."""

    def __init__(
        self, path: str | os.PathLike[str], holder_pid: int | None = None, mode: str = ""
    ) -> None:
        """``mode`` says in which mode the holder has the file, when the refusal is one of a
        mode by the other: "shared" (processes in shared mode refuse a default-mode open) or
        "default" (a default-mode program refuses a shared-mode open)."""
        self.path = os.fspath(path)
        self.holder_pid = holder_pid
        holder = f"process {holder_pid}" if holder_pid is not None else "another writer"
        if mode == "shared":
            message = (
                f"{self.path} is open in shared mode ({holder} among others), and a program in "
                "the default mode holds the file alone: open it with shared=True to share it, "
                "or wait until they close it (lock_timeout)"
            )
        elif mode == "default":
            message = (
                f"{self.path} is held by {holder}, a program in the default mode, which holds "
                "the file alone: to share it, open it with shared=True there too; or wait "
                "until it closes (lock_timeout)"
            )
        else:
            message = f"{self.path} is locked by {holder}; one writer at a time may open it"
        super().__init__(message)
