"""Where an offset into a file's text is, as a person counts: line and column.

Every line and column the library computes from an offset (damage found at open, a torn last
record, the line ``check`` names) comes from :func:`line_and_column`, so they all count alike.
"""

from __future__ import annotations

# The UTF-8 byte-order mark, which some Windows editors put at the start of a file. A reader
# skips it there (docs/design.md, "The file"); it is no character a person sees or counts.
BOM = b"\xef\xbb\xbf"


def bom_length(text: str | bytes) -> int:
    """The length of the byte-order mark ``text`` starts with (0 if none)."""
    if isinstance(text, bytes):
        return len(BOM) if text.startswith(BOM) else 0
    return 1 if text.startswith("\ufeff") else 0


def line_and_column(text: str | bytes, offset: int) -> tuple[int, int]:
    """The 1-based line and column of ``text[offset]`` (in bytes for bytes, characters for str).
    A byte-order mark at the start is not counted."""
    before = text[:offset]
    if isinstance(before, bytes):
        before = before.decode("latin-1")  # one character per byte: the offsets stay the same
    start = before.rfind("\n")
    if start < 0:
        start += min(bom_length(text), offset)
    return before.count("\n") + 1, offset - start
