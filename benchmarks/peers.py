"""The stores the benchmark compares, each opened the way its documentation recommends.

Every engine here is used inside a worker subprocess (see ``worker.py``), so a peer's import
name never meets another one: persistedstate 26.1 and this project share the name
``persistedstate`` and each lives in its own virtual environment.

Two families of stores are measured:

- *state* stores (this project and 26.1) have live nested values: ``state.counter += 1`` and
  ``state.items.append(x)`` each write one small journal record;
- *key-value* stores (DiskCache, SqliteDict, lmdbm, shelve) keep whole values under keys: a
  nested change reads the top-level value, changes it and writes it back, as their users do.

``durability`` says in words what survives once a write returns: a killed process (the
guarantee of ``PersistedState`` with ``fsync=False``) or a power cut too (``fsync=True``).
Each engine is measured in the mode that matches the guarantee asked for, and says how.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any


class Unsupported(Exception):
    """The engine has no mode that gives what a workload asks for (e.g. fsync=True)."""


class Engine:
    """One store under test. Subclasses open it; the workloads drive it."""

    name = ""  # identifier on the command line and in results.json
    label = ""  # column title in the report
    family = "kv"  # "state", "kv" or "floor"
    module = ""  # the import name, checked by available()
    distribution = ""  # the installed distribution whose version is reported
    durable = ""  # how it is made durable with fsync=False (survives a killed process)
    durable_fsync = ""  # how it is made durable with fsync=True ("" when it cannot be)

    def available(self) -> bool:
        return not self.module or importlib.util.find_spec(self.module) is not None

    def version(self) -> str:
        if not self.distribution:
            return ""
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return "unknown"

    def open(self, directory: str, *, fsync: bool = False) -> Any:
        raise NotImplementedError

    def close(self, store: Any) -> None:
        store.close()

    def fill(self, store: Any, items: Iterable[tuple[str, Any]]) -> None:
        """Set many keys (setup only, not timed); stores with a bulk call use it."""
        for key, value in items:
            store[key] = value

    def _check_fsync(self, fsync: bool) -> None:
        if fsync and not self.durable_fsync:
            raise Unsupported(f"{self.label} has no mode that syncs every write")


# -- state stores --------------------------------------------------------------------------


class Ours(Engine):
    name = "ours"
    label = "persistedstate (this)"
    family = "state"
    module = "persistedstate"
    distribution = "persistedstate"
    durable = "PersistedState(path): every change is one write() before the call returns"
    durable_fsync = "PersistedState.open(path, fsync=True): fsync after every change"

    def open(self, directory: str, *, fsync: bool = False) -> Any:
        from persistedstate import PersistedState

        path = os.path.join(directory, "state.yaml")
        return PersistedState.open(path, fsync=True) if fsync else PersistedState(path)

    def fill(self, store: Any, items: Iterable[tuple[str, Any]]) -> None:
        store.update(dict(items))


class Shared(Ours):
    """This project in shared mode: any number of processes may open the state."""

    name = "shared"
    label = "persistedstate (this), shared mode"
    durable = "PersistedState.open(path, shared=True): one write() per change, as the default"
    durable_fsync = "PersistedState.open(path, shared=True, fsync=True)"

    def open(self, directory: str, *, fsync: bool = False) -> Any:
        from persistedstate import PersistedState

        path = os.path.join(directory, "state.yaml")
        return PersistedState.open(path, shared=True, fsync=fsync, lock_timeout=60)


class Version26(Engine):
    name = "v26"
    label = "persistedstate 26.1"
    family = "state"
    module = "persistedstate"
    distribution = "persistedstate"
    durable = "PersistedState(path) (the only mode): every change is written and flushed"

    def open(self, directory: str, *, fsync: bool = False) -> Any:
        self._check_fsync(fsync)
        from persistedstate import PersistedState

        return PersistedState(os.path.join(directory, "state.yaml"))


# -- key-value stores ----------------------------------------------------------------------


class DiskCache(Engine):
    name = "diskcache"
    label = "DiskCache"
    module = "diskcache"
    distribution = "diskcache"
    durable = "Cache(directory) with default settings (SQLite WAL, synchronous=NORMAL)"
    durable_fsync = "Cache(directory, sqlite_synchronous=2): SQLite WAL, synchronous=FULL"

    def open(self, directory: str, *, fsync: bool = False) -> Any:
        import diskcache

        path = os.path.join(directory, "cache")
        if fsync:
            return diskcache.Cache(path, sqlite_synchronous=2)
        return diskcache.Cache(path)

    def fill(self, store: Any, items: Iterable[tuple[str, Any]]) -> None:
        with store.transact():
            for key, value in items:
                store[key] = value


class SqliteDict(Engine):
    name = "sqlitedict"
    label = "SqliteDict"
    module = "sqlitedict"
    distribution = "sqlitedict"
    durable = (
        "SqliteDict(path, autocommit=True): a commit per write; SqliteDict sets "
        "synchronous=OFF, so no fsync"
    )
    durable_fsync = (
        "SqliteDict(path, autocommit=True), then PRAGMA synchronous=FULL on its connection"
    )

    def open(self, directory: str, *, fsync: bool = False) -> Any:
        from sqlitedict import SqliteDict as Dict

        store = Dict(os.path.join(directory, "state.sqlite"), autocommit=True)
        if fsync:
            store.conn.execute("PRAGMA synchronous=FULL")
        return store

    def fill(self, store: Any, items: Iterable[tuple[str, Any]]) -> None:
        store.update(dict(items))


class Lmdbm(Engine):
    name = "lmdbm"
    label = "lmdbm"
    module = "lmdbm"
    distribution = "lmdbm"
    durable = (
        "Lmdb.open(path, 'c', sync=False) with JSON values (lmdbm's README subclass): "
        "a write transaction per write, no fsync"
    )
    durable_fsync = "Lmdb.open(path, 'c') defaults (LMDB sync=True: fsync per transaction)"

    def open(self, directory: str, *, fsync: bool = False) -> Any:
        from lmdbm import Lmdb

        class JsonLmdb(Lmdb):  # type: ignore[misc,valid-type]
            """Values as JSON, keys as UTF-8 text: the subclass lmdbm's README shows."""

            def _pre_key(self, key: str) -> bytes:
                return key.encode("utf-8")

            def _post_key(self, key: bytes) -> str:
                return key.decode("utf-8")

            def _pre_value(self, value: Any) -> bytes:
                return json.dumps(value).encode("utf-8")

            def _post_value(self, value: bytes) -> Any:
                return json.loads(value.decode("utf-8"))

        path = os.path.join(directory, "state.lmdb")
        if fsync:
            return JsonLmdb.open(path, "c")
        return JsonLmdb.open(path, "c", sync=False)

    def fill(self, store: Any, items: Iterable[tuple[str, Any]]) -> None:
        store.update(dict(items))


class Shelve(Engine):
    name = "shelve"
    label = "shelve"
    module = "shelve"
    durable = "shelve.open(path, writeback=False), sync() after every write"

    def open(self, directory: str, *, fsync: bool = False) -> Any:
        self._check_fsync(fsync)
        import shelve

        class SyncedShelf(shelve.DbfilenameShelf):
            """A shelf that calls sync() after every write, so a write survives a kill."""

            def __setitem__(self, key: str, value: Any) -> None:
                super().__setitem__(key, value)
                self.sync()

            def __delitem__(self, key: str) -> None:
                super().__delitem__(key)
                self.sync()

        return SyncedShelf(os.path.join(directory, "state.shelf"), writeback=False)

    def fill(self, store: Any, items: Iterable[tuple[str, Any]]) -> None:
        import shelve

        for key, value in items:
            shelve.Shelf.__setitem__(store, key, value)  # without the sync per key
        store.sync()

    def version(self) -> str:
        """The dbm module behind the shelf: it decides what sync() costs and guarantees."""
        import dbm
        import tempfile

        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "probe")
            with dbm.open(path, "c"):
                pass
            return f"stdlib, backend {dbm.whichdb(path)}"


class Floor(Engine):
    """Not a store: the cost of one os.write() of a record, what any durable store pays."""

    name = "floor"
    label = "write floor"
    family = "floor"
    durable = "os.write() of a 40-byte record per operation to an O_APPEND file"
    durable_fsync = "os.write() then os.fsync() per operation"


ENGINES: dict[str, Engine] = {
    engine.name: engine
    for engine in (
        *(Ours(), Shared(), Version26(), DiskCache(), SqliteDict(), Lmdbm(), Shelve()),
        Floor(),
    )
}


def plain(value: Any) -> Any:
    """Plain dicts and lists from any store's values (live proxies included)."""
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [plain(item) for item in value]
    return value
