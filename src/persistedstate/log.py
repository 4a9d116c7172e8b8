"""The library's logger, ``logging.getLogger("persistedstate")``, imported when first used.

``logging`` (with the ``traceback``, ``linecache``, ``tokenize``, ``textwrap`` and ``string``
it imports) would add about 4 ms to ``import persistedstate``; the library logs only when
something unusual happens (a torn record, a failed compaction) or at debug level, so that cost
waits for the first message.
"""

from __future__ import annotations

from typing import Any


class _Logger:
    """Stands for the "persistedstate" logger: ``log.warning(...)`` and the like."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        import logging

        return getattr(logging.getLogger("persistedstate"), name)


log: Any = _Logger()
