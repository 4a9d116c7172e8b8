"""PersistedState, the public class: a dict-like state mapped onto one YAML file, and load().

``PersistedState`` is what a program holds: the dict API at the top (that of the top
container of its data, a ``proxies.LiveDict``) and attribute access. Its data, lock, file,
journal and transactions live in a ``core.Core``, which its containers share; this module only
maps the public API onto the core's contract.
"""

from __future__ import annotations

import contextlib
from collections.abc import ItemsView, Iterator, KeysView, Mapping, MutableMapping, ValuesView

from . import core, journal, storage, values
from .errors import PersistedStateError
from .proxies import LiveDict

TYPE_CHECKING = False  # (typing's, without importing typing: docs/design.md, Memory)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, SupportsIndex

    from .proxies import ReentrantLock
    from .schema import Schema

_SCALAR_TEXT = values.SCALAR_TEXT


class PersistedState(MutableMapping["Any", "Any"]):
    """A dict whose every change is written to a YAML file before the call returns.

    ``PersistedState(path, **defaults)`` opens the file (creating it if needed) and sets each
    default that is not there yet. Keys that are identifiers are also attributes.
    """

    _core: core.Core  # the data, the lock and the file, shared with the containers
    _raw: LiveDict  # the top of the data (the core's): the dict API below is its
    _thread_lock: ReentrantLock  # (the core's lock; here for programs that use it, as with 26.1)
    # Every attribute name of the class: a key of that name is reached with item syntax only.
    _attribute_names: frozenset[str] = frozenset()
    # What a typed subclass declares (its keys' types and defaults), else None.
    _schema: Schema | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # (a class's __annotations__ are its own, on Python 3.10 and later)
        declared = [name for name in cls.__annotations__ if name[:1] != "_"]
        if declared or cls._schema is not None:
            from .schema import Schema  # (only for a typed state: see schema.py)

            cls._schema = Schema.of(cls, cls._schema, PersistedState._attribute_names)
        cls._attribute_names = frozenset(dir(cls))

    def __init__(self, path: storage.PathArg, /, **defaults: Any) -> None:
        options = [name for name in defaults if name in _OPTIONS]
        if options:
            raise TypeError(_options_are_not_defaults(options))
        self._setup(path, defaults)

    @classmethod
    def open(
        cls,
        path: storage.PathArg,
        defaults: Mapping[Any, Any] | None = None,
        *,
        fsync: bool = False,
        lock_timeout: float = 0.0,
        shared: bool = False,
        compact_min_bytes: float = core.COMPACT_MIN_BYTES,
        compact_ratio: float = core.COMPACT_RATIO,
    ) -> PersistedState:
        """Open or create a state; ``defaults`` (a mapping) are set where the key is absent.

        ``fsync=True`` puts every change on stable storage before the call returns (it then
        survives a power cut, not only a crash). ``lock_timeout`` is how long to wait for
        another program to close the file before raising StateLockedError. ``shared=True``
        lets any number of processes open the state at once, each in shared mode (see the
        README, "Several processes, one state"); a program in the default mode holds the file
        alone. The file is compacted when its journal is larger than both
        ``compact_min_bytes`` and ``compact_ratio`` times the snapshot (numbers >= 0;
        ``math.inf``: only on ``compact()``, ``close()`` and at exit).
        """
        if defaults is not None and not isinstance(defaults, Mapping):
            raise TypeError(
                f"defaults must be a mapping of keys to values (a dict), not "
                f"{type(defaults).__name__}"
            )
        _check_compaction_option("compact_min_bytes", compact_min_bytes)
        _check_compaction_option("compact_ratio", compact_ratio)
        state = cls.__new__(cls)
        state._setup(
            path,
            defaults or {},
            fsync=fsync,
            lock_timeout=lock_timeout,
            mode="shared" if shared else "program",
            compact_min_bytes=compact_min_bytes,
            compact_ratio=compact_ratio,
        )
        return state

    def _setup(
        self,
        path: storage.PathArg,
        defaults: Mapping[Any, Any],
        *,
        fsync: bool = False,
        lock_timeout: float = 0.0,
        mode: str = "program",
        compact_min_bytes: float = core.COMPACT_MIN_BYTES,
        compact_ratio: float = core.COMPACT_RATIO,
    ) -> None:
        name = storage.path_text(path)  # (a bad path is refused before anything changes)
        schema = type(self)._schema
        if schema is not None:  # (checked, and the class's defaults added)
            defaults = schema.defaults_with(defaults)
        previous = self.__dict__.get("_core")
        if previous is not None:  # __init__ again: let go of the earlier file and its values
            if previous.tx is not None:
                raise PersistedStateError("cannot run __init__ again inside a transaction")
            previous.detach_mirror()
            previous.close(compact=False)
            previous.let_go()
        initial = values.new_dict()  # (bad defaults are refused before the file is touched)
        for key, value in defaults.items():
            try:
                initial[values.key_text(key)[0]] = values.prepare(value)[0]
            except values.UnsupportedValue as error:
                raise error.to_builtin([key]) from None
        state_core: core.Core
        # (a new file's first snapshot holds the defaults)
        options: dict[str, Any] = {}
        if schema is not None:  # a core that checks each change, and the data at open
            options = {"schema": schema, "defaults": defaults}
        file: storage.StateFile
        if mode == "shared":
            file = storage.SharedStateFile(name, fsync=fsync, lock_timeout=lock_timeout)
            make: Callable[..., core.Core] = (
                core.SharedCore if schema is None else schema.shared_core
            )
        else:
            kind = storage.CommandStateFile if mode == "command" else storage.StateFile
            file = kind(name, fsync=fsync, lock_timeout=lock_timeout)
            make = core.Core if schema is None else schema.core
        state_core = make(
            file,
            name,
            initial=initial,
            compact_min_bytes=compact_min_bytes,
            compact_ratio=compact_ratio,
            **options,
        )
        self._core = state_core
        self._raw = state_core.data
        self._thread_lock = state_core.lock
        names = type(self)._attribute_names
        state_core.attach_mirror(
            self.__dict__, lambda key: key.isidentifier() and key[:1] != "_" and key not in names
        )
        try:
            with state_core.lock:  # (one operation: in shared mode, another process may set
                missing = {k: v for k, v in defaults.items() if k not in self._raw}  # them)
                if schema is not None:  # (and an upgrade of older data)
                    schema.settle(self, missing)
                elif missing:
                    self.update(missing)
        except BaseException:
            state_core.close(compact=False)
            raise

    def __del__(self) -> None:
        # The core refers to this object's __dict__ (the mirror), and to the data, which
        # refers to the core: let go of both, so that the core, and with it the lock, goes as
        # soon as nothing else refers to it or to its containers.
        state_core = self.__dict__.get("_core")
        if state_core is not None:
            state_core.detach_mirror()
            state_core.let_go()

    # -- the dict API: the top container's ---------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        return self._raw[key]

    def get(self, key: Any, default: Any = None) -> Any:
        return self._raw.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __iter__(self) -> Iterator[Any]:
        return iter(self._raw)

    def __reversed__(self) -> Iterator[Any]:
        return reversed(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def keys(self) -> KeysView[Any]:
        return self._raw.keys()

    def values(self) -> ValuesView[Any]:
        return self._raw.values()

    def items(self) -> ItemsView[Any, Any]:
        return self._raw.items()

    def __eq__(self, other: object) -> bool:
        return self._raw == other

    __hash__ = None  # type: ignore[assignment]

    def __setitem__(self, key: Any, value: Any) -> None:
        LiveDict.__setitem__(self._raw, key, value)  # (the top's own writes no record)

    def __delitem__(self, key: Any) -> None:
        LiveDict.__delitem__(self._raw, key)

    def pop(self, key: Any, *default: Any) -> Any:
        """Remove ``key`` and return its value as plain data."""
        return self._raw.pop(key, *default)

    def popitem(self) -> tuple[Any, Any]:
        """Remove the last inserted item and return it as plain data."""
        return self._raw.popitem()

    def update(self, other: Any = (), /, **extra: Any) -> None:
        """Set several keys as one change: all of them are written, or none."""
        self._raw.update(other, **extra)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return self._raw.setdefault(key, default)

    def clear(self) -> None:
        self._raw.clear()

    def __ior__(self, other: Any) -> PersistedState:
        self._raw.update(other)
        return self

    def __or__(self, other: Any) -> Any:
        return self._raw | other

    def __ror__(self, other: Any) -> Any:
        return other | self._raw

    def copy(self) -> dict[Any, Any]:
        """A plain, independent deep copy of the data, taken at once (under the lock)."""
        result: dict[Any, Any] = self._raw.copy()
        return result

    def __copy__(self) -> dict[Any, Any]:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[Any, Any]:
        return self.copy()

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        """Pickled as the plain data it holds (unpickled as a plain dict)."""
        return self._raw.__reduce_ex__(protocol)

    # -- attribute access ----------------------------------------------------------------

    # The current value of each top-level key that is an identifier is also kept in the
    # instance __dict__, which Python reads before calling __getattr__: see core.Core,
    # "the attribute mirror".

    def __getattr__(self, name: str) -> Any:
        if name[:1] in ("_", ""):
            raise AttributeError(name)
        try:
            return self._core.attribute(name)
        except KeyError:
            raise AttributeError(f"the state has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name[:1] in ("_", ""):
            object.__setattr__(self, name, value)
        elif name not in self._attribute_names:
            encode = _SCALAR_TEXT.get(type(value))
            if encode is not None and type(name) is str:  # (setattr passes a str subclass on)
                self._core.set_scalar(self._raw, name, value, encode)
            else:
                LiveDict.__setitem__(self._raw, name, value)
        elif hasattr(getattr(type(self), name), "__set__"):  # a subclass's property
            object.__setattr__(self, name, value)
        else:
            raise AttributeError(
                f"{name!r} is a method or attribute of {type(self).__name__}; "
                f"set the key with state[{name!r}] = ..."
            )

    def __delattr__(self, name: str) -> None:
        if name[:1] in ("_", "") or name in self._attribute_names:
            object.__delattr__(self, name)
            return
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"the state has no key {name!r}") from None

    def __dir__(self) -> list[str]:
        keys = [key for key in self._raw if isinstance(key, str) and key.isidentifier()]
        return sorted({*super().__dir__(), *keys})

    # -- transactions, compaction, closing -------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PersistedState]:
        """All changes in the block reach the file together, or (on an exception) not at all.

        Holds the state's lock, so other threads see none of it until it ends. Nested
        transactions roll back only their own part when an exception leaves them.
        """
        with self._core.transaction():
            yield self

    def compact(self) -> None:
        """Rewrite the file now as one clean YAML document (the journal folded in)."""
        self._core.compact()

    def close(self, *, compact: bool = True) -> None:
        """Compact the file and release it. Closing twice is fine.

        ``compact=False`` releases the file without writing anything: the journal stays, and
        the next open replays it (what a crash would leave).
        """
        self._core.close(compact=compact)

    def __enter__(self) -> PersistedState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state_core = self.__dict__.get("_core")
        if state_core is None:  # (a failed __init__)
            return "PersistedState(None, {})"
        with state_core.lock:  # (not halfway through another thread's transaction)
            return f"PersistedState({state_core.path!r}, {state_core.data!r})"


PersistedState._attribute_names = frozenset(dir(PersistedState))
# The options of open(): given to the constructor, they would be stored as keys.
_OPTIONS = frozenset(PersistedState.open.__kwdefaults__ or ())


def _options_are_not_defaults(options: list[str]) -> str:
    names = " and ".join(options)
    plural = len(options) > 1
    given = ", ".join(f"{name}=..." for name in options)
    keys = ", ".join(f"{name!r}: ..." for name in options)
    return (
        f"{names} {'are options' if plural else 'is an option'} of PersistedState.open(), "
        f"not {'defaults' if plural else 'a default'}: open the state with "
        f"PersistedState.open(path, defaults, {given}). To store {'keys' if plural else 'a key'} "
        f"named {' and '.join(map(repr, options))}, give {'them' if plural else 'it'} in "
        f"open()'s defaults, "
        f"PersistedState.open(path, {{{keys}}}), or set state[{options[0]!r}] after opening"
    )


def _check_compaction_option(name: str, value: object) -> None:
    """Refuse a compaction option that is not a number >= 0 (``inf``: never automatically)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not value >= 0:  # (nan too)
        raise ValueError(f"{name} must be 0 or more (inf: no automatic compaction), not {value}")


COMMAND_WAIT = 10.0  # seconds a command waits for the file by default


def command(
    path: storage.PathArg, *, wait: float = COMMAND_WAIT, fsync: bool = True
) -> PersistedState:
    """Open a state to change it as the ``persistedstate`` command does, even while a program
    has it open: a default-mode program hands the file over within a moment (see the README,
    "Changing a running program's state"). The object holds the file's write lock until it is
    closed, so programs wait meanwhile: change, then ``close()`` at once. ``close()`` compacts
    the file unless a program has it open (that program will); ``compact()`` always does.

    Waits up to ``wait`` seconds for the file (a program inside a transaction keeps it), then
    raises ``StateLockedError``. A missing file is created.
    """
    state = PersistedState.__new__(PersistedState)
    state._setup(path, {}, fsync=fsync, lock_timeout=wait, mode="command")
    return state


def schema_of(cls: type[PersistedState]) -> Schema | None:
    """What a typed state class declares (``schema.Schema``); None for an untyped class."""
    return cls._schema


def load(path: storage.PathArg) -> dict[Any, Any]:
    """The state in a file as plain dicts and lists: takes no lock, changes nothing."""
    name = storage.path_text(path)
    raw = storage.read_file(name)
    if raw is None:
        raise FileNotFoundError(f"no state file at {name}")
    return journal.read_state(name, raw).data
