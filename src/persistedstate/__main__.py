"""``python -m persistedstate``: the same command line as ``persistedstate``."""

from persistedstate.cli import main

raise SystemExit(main())
