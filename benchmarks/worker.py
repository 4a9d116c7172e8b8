"""A worker process: runs workloads for one engine and answers in JSON lines.

``python worker.py ENGINE [--oneshot]`` reads one JSON request per line on stdin and writes one
JSON reply per line on stdout; ``--oneshot`` answers a single request and exits. Each engine
runs in its own interpreter (this project from the dev venv, 26.1 and the other peers from
their own venvs), so import names never collide.

Requests::

    {"task": "hello"}
        -> {"ok": true, "engine": ..., "version": ..., "python": ..., ...}
    {"task": "run", "workload": NAME, "params": {...}, "tmp_root": DIR, "then_exit": false}
        -> {"ok": true, "ops": ..., "seconds": ..., "close_seconds": ..., "info": {...}}

Every run gets a fresh directory under ``tmp_root``, removed afterwards. A failure is a reply
``{"ok": false, "error": ..., "traceback": ...}``, never a dead worker. With ``then_exit`` the
worker leaves with ``os._exit(0)`` right after replying, without closing anything (this is
how a 26.1 file with its journal still in it is made).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import traceback
from typing import Any, TextIO

from peers import ENGINES, Engine
from workloads import WORKLOADS


def hello(engine: Engine) -> dict[str, Any]:
    return {
        "engine": engine.name,
        "available": engine.available(),
        "version": engine.version() if engine.available() else "",
        "durable": engine.durable,
        "durable_fsync": engine.durable_fsync,
        "python": platform.python_version(),
        "executable": sys.executable,
    }


def run(engine: Engine, request: dict[str, Any]) -> dict[str, Any]:
    function = WORKLOADS[request["workload"]]
    directory = tempfile.mkdtemp(prefix=f"{engine.name}-", dir=request.get("tmp_root"))
    try:
        return function(engine, directory, request.get("params", {}))
    finally:
        if not request.get("then_exit"):
            shutil.rmtree(directory, ignore_errors=True)


def answer(engine: Engine, request: dict[str, Any]) -> dict[str, Any]:
    try:
        if request["task"] == "hello":
            return {"ok": True, **hello(engine)}
        if request["task"] == "run":
            return {"ok": True, **run(engine, request)}
        raise ValueError(f"unknown task {request['task']!r}")
    except Exception as error:
        return {
            "ok": False,
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
        }


def serve(engine: Engine, replies: TextIO, oneshot: bool) -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        replies.write(json.dumps(answer(engine, request)) + "\n")
        replies.flush()
        if request.get("then_exit"):
            os._exit(0)
        if oneshot:
            return


def main() -> None:
    engine = ENGINES[sys.argv[1]]
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(engine, replies, oneshot="--oneshot" in sys.argv[2:])


if __name__ == "__main__":
    main()
