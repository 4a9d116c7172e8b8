"""The library's logger, ``logging.getLogger("persistedstate")``, imported when first used.

``logging`` (with the ``traceback``, ``linecache``, ``tokenize``, ``textwrap`` and ``string``
it imports) would add about 4 ms to ``import persistedstate``; the library logs only when
something unusual happens (a torn record, a failed compaction) or at debug level, so that cost
waits for the first message. A debug message while nothing has imported ``logging`` is dropped
without importing it (docs/design.md, "Memory").
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # (typing's, without importing typing: docs/design.md, Memory)
if TYPE_CHECKING:
    from typing import Any


class _Logger:
    """Stands for the "persistedstate" logger: ``log.warning(...)`` and the like."""

    __slots__ = ()

    def debug(self, *args: Any, **kwargs: Any) -> None:
        # Until something imports logging nothing can have configured it, and its default
        # level (WARNING) drops a debug message: importing it then (every compaction logs
        # one) would only add its 0.6 MiB to the process.
        if "logging" in sys.modules:
            self.__getattr__("debug")(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        import logging

        return getattr(logging.getLogger("persistedstate"), name)


log: Any = _Logger()
