"""Where an offset into a file's text is, as a person counts: line and column.

Every line and column the library computes from an offset (damage found at open, a torn last
record, the line ``check`` names) comes from :func:`line_and_column`, so they all count alike.
"""

from __future__ import annotations


def line_and_column(text: str | bytes, offset: int) -> tuple[int, int]:
    """The 1-based line and column of ``text[offset]`` (in bytes for bytes, characters for str)."""
    before = text[:offset]
    if isinstance(before, bytes):
        before = before.decode("latin-1")  # one character per byte: the offsets stay the same
    return before.count("\n") + 1, offset - before.rfind("\n")
