"""Live views of the dicts and lists inside a state: every change becomes a journal record.

The state holds plain dicts and lists (the *raw* tree). Reading a container out of it gives a
proxy: a small object holding the raw container, its parent (a proxy, or the state's core at
the top) and its key there. A change through a proxy finds the container's current path from
the top of the state (the path found last time is tried first; else each step is checked by
identity, climbing the parents), encodes one record and hands it to the state's core, which
writes it and only then applies it to the raw tree.

Because each raw container sits in exactly one place (values are copied in), identity tells
where a proxy's container is now: a list element that moved (insert, sort, reverse, slice
assignment) is found again, and a container that was replaced or deleted is *detached*.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, MutableSequence

from . import journal, values
from .errors import PersistedStateError
from .journal import Change, Clear, Delete, Insert, Reorder, Set, Splice

_MISSING: Any = object()


TYPE_CHECKING = False  # (typing's, without importing typing: docs/design.md, Memory)
if TYPE_CHECKING:
    from typing import Any, NoReturn, Protocol, SupportsIndex

    class ReentrantLock(Protocol):
        """A re-entrant lock: ``threading.RLock``, or a core's own (``core.OperationLock``)."""

        def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

        def release(self) -> None: ...

        def __enter__(self) -> bool: ...

        def __exit__(self, kind: Any, value: Any, traceback: Any, /) -> None: ...

    class StateCore(Protocol):
        """What proxies use of the core of their state (``core.Core``; documented there)."""

        @property
        def lock(self) -> ReentrantLock: ...

        @property
        def tx(self) -> object | None: ...

        def read(self, container: Any, key: Any) -> Any: ...

        def ensure_open(self) -> None: ...

        def path_for_change(self, node: Node, raw: Any) -> str: ...

        def set_scalar(
            self, node: Node, raw: Any, key: str, value: Any, encode: Callable[[Any], str]
        ) -> None: ...

        def commit(self, records: list[str], changes: list[Change]) -> None: ...


class DetachedError(PersistedStateError):
    """A proxy's container is no longer in the state (it was replaced or deleted)."""


def unwrap(value: Any) -> Any:
    """The raw data behind a proxy (or the state), else the value itself."""
    return value._raw if isinstance(value, Node) else value


class Node:
    """Something that stands for a raw container of a state: the state, its core or a proxy."""

    __slots__ = ()

    _raw: Any  # the raw dict or list
    _core: StateCore  # the machinery of the state it belongs to

    @property
    def _depth(self) -> int:
        """How many containers up to the top of the state."""
        raise NotImplementedError

    def _locate(self) -> list[Any]:
        """The keys and indexes from the top of the state; raises DetachedError."""
        raise NotImplementedError

    def _room(self) -> int:
        """How many levels of containers a value stored in this container may have."""
        return values.MAX_DEPTH - 1 - self._depth

    def _view(self, key: Any, item: Any) -> Any:
        kind = type(item)
        if kind is dict:
            return DictProxy(self, key, item)
        if kind is list:
            return ListProxy(self, key, item)
        return item

    def _prepared(self, value: Any, key: Any) -> tuple[Any, str]:
        """``values.prepare`` for a value going under ``key`` here; errors name the place."""
        try:
            return values.prepare(value, self._room())
        except values.UnsupportedValue as error:
            try:
                where = self._locate()
            except DetachedError:
                where = []
            raise error.to_builtin([*where, key]) from None

    def __len__(self) -> int:
        with self._core.lock:  # not while another thread's transaction is open
            return len(self._raw)

    def clear(self) -> None:
        core = self._core
        with core.lock:
            path = core.path_for_change(self, self._raw)
            if self._raw:
                core.commit([journal.clear_record(path)], [Clear((self._raw,))])

    def copy(self) -> Any:
        """A plain, independent deep copy of the data (dicts and lists)."""
        with self._core.lock:
            return values.plain_copy(self._raw)

    def __copy__(self) -> Any:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self.copy()

    def __eq__(self, other: object) -> bool:
        with self._core.lock:
            return bool(self._raw == unwrap(other))

    __hash__ = None  # type: ignore[assignment]

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        kind = type(self).__name__
        raise TypeError(f"cannot pickle a live {kind}; pickle its .copy(), which is plain data")

    def __repr__(self) -> str:
        with self._core.lock:
            return repr(self._raw)


def locate(node: Node) -> list[Any]:
    """The keys and indexes from the top of the state to ``node``; raises DetachedError."""
    return node._locate()


def _key_text(key: Any) -> str:
    return values.key_text(key)[1]


def path_text(keys: list[Any]) -> str:
    """The journal form of a path of keys and list indexes."""
    return journal.path_text([_key_text(key) for key in keys])


class Top(Node):
    """The top of a state's tree (the state, or its core): no containers above, an empty path."""

    __slots__ = ()

    @property
    def _depth(self) -> int:
        return 0

    def _locate(self) -> list[Any]:
        return []


class Proxy(Node):
    """A container inside the state, found again by identity each time it changes."""

    __slots__ = ("_core", "_key", "_parent", "_raw")

    def __init__(self, parent: Node, key: Any, raw: Any) -> None:
        self._parent = parent
        self._key = key
        self._raw = raw
        self._core = parent._core

    @property
    def _depth(self) -> int:  # (only a container being stored needs it: not kept)
        return self._parent._depth + 1

    def _locate(self) -> list[Any]:
        keys = self._parent._locate()
        container = self._parent._raw
        key = self._key
        if type(container) is dict:
            if container.get(key, _MISSING) is not self._raw:
                raise self._detached()
        elif not (0 <= key < len(container) and container[key] is self._raw):
            key = _index_by_identity(container, self._raw)
            if key < 0:
                raise self._detached()
            self._key = key
        keys.append(key)
        return keys

    def _detached(self) -> DetachedError:
        kind = "dict" if type(self._raw) is dict else "list"
        return DetachedError(
            f"this {kind} is no longer part of the state: the container that held it was "
            "replaced or deleted, so a change here would be lost. Read it again from the state."
        )


def _already_there(value: Any, current: Any) -> bool:
    """Whether ``value`` is a proxy for the very container it would replace.

    ``state.l += [4]`` extends the list in place, then Python assigns the result back to
    ``state.l``: that assignment must change nothing (no copy, no record, no detached proxies).
    """
    return isinstance(value, Proxy) and value._raw is current


def _index_by_identity(container: list[Any], item: Any) -> int:
    try:
        return list(map(id, container)).index(id(item))
    except ValueError:
        return -1


class DictOps(Node):
    """The dict API over a raw dict; shared by the state (the top) and nested dict proxies."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        return self._view(key, self._core.read(self._raw, key))

    def get(self, key: Any, default: Any = None) -> Any:
        with self._core.lock:
            raw = self._raw
            return self._view(key, raw[key]) if key in raw else default

    def __contains__(self, key: object) -> bool:
        with self._core.lock:
            return key in self._raw

    def __iter__(self) -> Iterator[Any]:
        with self._core.lock:
            keys = list(self._raw)
        return iter(keys)

    def __reversed__(self) -> Iterator[Any]:
        with self._core.lock:
            keys = list(reversed(self._raw))
        return iter(keys)

    def __setitem__(self, key: Any, value: Any) -> None:
        encode = values.SCALAR_TEXT.get(type(value))
        if encode is not None and type(key) is str:  # a scalar under a str key: the short path
            self._core.set_scalar(self, self._raw, key, value, encode)
            return
        core = self._core
        with core.lock:
            if _already_there(value, self._raw.get(key, _MISSING)):
                return
            path = core.path_for_change(self, self._raw)
            record, change = self._set_change(path, key, value)
            core.commit([record], [change])

    def _set_change(self, path: str, key: Any, value: Any) -> tuple[str, Change]:
        """The record and the in-memory change of ``self[key] = value``."""
        try:
            stored_key, key_text = values.key_text(key)
        except values.UnsupportedValue as error:
            raise error.to_builtin([*self._locate(), key]) from None
        copy, text = self._prepared(value, key)
        return journal.set_record(path, key_text, text), Set((self._raw, stored_key, copy))

    def __delitem__(self, key: Any) -> None:
        core = self._core
        with core.lock:
            path = core.path_for_change(self, self._raw)
            if key not in self._raw:
                raise KeyError(key)
            core.commit([journal.delete_record(path, _key_text(key))], [Delete((self._raw, key))])

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value as plain data."""
        with self._core.lock:
            if key not in self._raw:
                if default is _MISSING:
                    raise KeyError(key)
                return default
            value = values.plain_copy(self._raw[key])
            del self[key]
            return value

    def popitem(self) -> tuple[Any, Any]:
        """Remove the last inserted item and return it as plain data."""
        with self._core.lock:
            if not self._raw:
                raise KeyError("popitem(): dictionary is empty")
            key = next(reversed(self._raw))
            return key, self.pop(key)

    def update(self, other: Any = (), /, **extra: Any) -> None:
        """Set several keys as one change: all of them are written, or none."""
        core = self._core
        with core.lock:
            path = core.path_for_change(self, self._raw)
            if isinstance(other, Mapping) or hasattr(other, "keys"):
                pairs = [(key, other[key]) for key in other.keys()]  # noqa: SIM118 (any .keys() object)
            else:
                pairs = [tuple(pair) for pair in other]
                for pair in pairs:
                    if len(pair) != 2:
                        raise ValueError("update() needs (key, value) pairs")
            pairs.extend(extra.items())
            made = [self._set_change(path, key, value) for key, value in pairs]
            if made:
                core.commit([record for record, _ in made], [change for _, change in made])

    def setdefault(self, key: Any, default: Any = None) -> Any:
        with self._core.lock:
            if key not in self._raw:
                self[key] = default
            return self[key]

    def __ior__(self, other: Any) -> Any:
        self.update(other)
        return self

    def __or__(self, other: Any) -> Any:
        if not isinstance(other, Mapping):
            return NotImplemented
        result = self.copy()
        result.update(values.plain_copy(unwrap(other)))
        return result

    def __ror__(self, other: Any) -> Any:
        if not isinstance(other, Mapping):
            return NotImplemented
        result = values.plain_copy(dict(unwrap(other)))
        result.update(self.copy())
        return result


class DictProxy(DictOps, Proxy, MutableMapping["Any", "Any"]):
    """A live dict inside the state."""

    __slots__ = ()


class ListProxy(Proxy, MutableSequence["Any"]):
    """A live list inside the state, with the whole list API."""

    __slots__ = ()

    _raw: list[Any]

    # -- reading -------------------------------------------------------------------------

    def __getitem__(self, index: Any) -> Any:
        raw = self._raw
        if isinstance(index, slice):
            with self._core.lock:
                return [self._view(i, raw[i]) for i in range(*index.indices(len(raw)))]
        position = operator.index(index)
        if position < 0:  # where the end is depends on the length: read both under the lock
            with self._core.lock:
                position = _position(position, len(raw), "list index out of range")
                return self._view(position, raw[position])
        return self._view(position, self._core.read(raw, position))

    def __iter__(self) -> Iterator[Any]:
        position = 0
        while True:
            with self._core.lock:
                if position >= len(self._raw):
                    return
                item = self._view(position, self._raw[position])
            yield item
            position += 1

    def __reversed__(self) -> Iterator[Any]:
        return iter(list(self)[::-1])

    def __contains__(self, value: object) -> bool:
        with self._core.lock:
            return unwrap(value) in self._raw

    def index(self, value: Any, start: SupportsIndex = 0, stop: SupportsIndex = sys.maxsize) -> int:
        with self._core.lock:
            return self._raw.index(unwrap(value), start, stop)

    def count(self, value: Any) -> int:
        with self._core.lock:
            return self._raw.count(unwrap(value))

    def __lt__(self, other: Any) -> bool:
        return bool(self._raw < _as_list(other))

    def __le__(self, other: Any) -> bool:
        return bool(self._raw <= _as_list(other))

    def __gt__(self, other: Any) -> bool:
        return bool(self._raw > _as_list(other))

    def __ge__(self, other: Any) -> bool:
        return bool(self._raw >= _as_list(other))

    def __add__(self, other: Any) -> list[Any]:
        if not isinstance(other, (list, ListProxy)):
            return NotImplemented
        return [*self.copy(), *values.plain_copy(unwrap(other))]

    def __radd__(self, other: Any) -> list[Any]:
        if not isinstance(other, list):
            return NotImplemented
        return [*values.plain_copy(other), *self.copy()]

    def __mul__(self, times: SupportsIndex) -> list[Any]:
        return [values.plain_copy(item) for _ in range(times.__index__()) for item in self._raw]

    __rmul__ = __mul__

    # -- changing ------------------------------------------------------------------------

    def _prepare_all(self, items: Iterable[Any], first_index: int) -> tuple[list[Any], list[str]]:
        made = [self._prepared(item, first_index + offset) for offset, item in enumerate(items)]
        return [copy for copy, _ in made], [text for _, text in made]

    def __setitem__(self, index: Any, value: Any) -> None:
        core = self._core
        with core.lock:
            path = core.path_for_change(self, self._raw)
            raw = self._raw
            if isinstance(index, slice):
                self._assign_slice(core, path, index, value)
                return
            position = _position(index, len(raw), "list assignment index out of range")
            if _already_there(value, raw[position]):
                return
            copy, text = self._prepared(value, position)
            core.commit(
                [journal.set_record(path, str(position), text)], [Set((raw, position, copy))]
            )

    def _assign_slice(self, core: StateCore, path: str, index: slice, value: Any) -> None:
        raw = self._raw
        start, stop, step = index.indices(len(raw))
        items = list(value)
        if step == 1:
            stop = max(start, stop)
            copies, texts = self._prepare_all(items, start)
            if stop > start or copies:
                core.commit(
                    [journal.splice_record(path, start, stop, texts)],
                    [Splice((raw, start, stop, copies))],
                )
            return
        positions = range(start, stop, step)
        if len(items) != len(positions):
            raise ValueError(
                f"attempt to assign sequence of size {len(items)} to extended slice of size "
                f"{len(positions)}"
            )
        copies, texts = self._prepare_all(items, start)
        if positions:
            core.commit(
                [
                    journal.set_record(path, str(p), t)
                    for p, t in zip(positions, texts, strict=True)
                ],
                [Set((raw, p, c)) for p, c in zip(positions, copies, strict=True)],
            )

    def __delitem__(self, index: Any) -> None:
        core = self._core
        with core.lock:
            path = core.path_for_change(self, self._raw)
            raw = self._raw
            if not isinstance(index, slice):
                position = _position(index, len(raw), "list assignment index out of range")
                core.commit([journal.delete_record(path, str(position))], [Delete((raw, position))])
                return
            start, stop, step = index.indices(len(raw))
            if step == 1:
                if stop > start:
                    core.commit(
                        [journal.splice_record(path, start, stop, [])],
                        [Splice((raw, start, stop, []))],
                    )
                return
            positions = sorted(range(start, stop, step), reverse=True)  # last first: no shifts
            if positions:
                core.commit(
                    [journal.delete_record(path, str(p)) for p in positions],
                    [Delete((raw, p)) for p in positions],
                )

    def insert(self, index: SupportsIndex, value: Any) -> None:
        core = self._core
        with core.lock:
            path = core.path_for_change(self, self._raw)
            size = len(self._raw)
            position = operator.index(index)
            if position < 0:
                position = max(0, position + size)
            position = min(position, size)
            copy, text = self._prepared(value, position)
            core.commit(
                [journal.insert_record(path, position, text)], [Insert((self._raw, position, copy))]
            )

    def append(self, value: Any) -> None:
        with self._core.lock:  # the end must not move before the insert
            self.insert(len(self._raw), value)

    def extend(self, items: Iterable[Any]) -> None:
        """Append all items as one change."""
        with self._core.lock:
            end = len(self._raw)
            self[end:end] = list(items)

    def __iadd__(self, items: Iterable[Any]) -> ListProxy:  # type: ignore[misc]
        self.extend(items)
        return self

    def __imul__(self, times: SupportsIndex) -> ListProxy:
        with self._core.lock:
            count = times.__index__()
            if count <= 0:
                self.clear()
            elif count > 1:
                self.extend(list(self._raw) * (count - 1))
        return self

    def pop(self, index: SupportsIndex = -1) -> Any:
        """Remove the item at ``index`` and return it as plain data."""
        with self._core.lock:
            if not self._raw:
                raise IndexError("pop from empty list")
            position = _position(index, len(self._raw), "pop index out of range")
            value = values.plain_copy(self._raw[position])
            del self[position]
            return value

    def remove(self, value: Any) -> None:
        with self._core.lock:
            try:
                position = self._raw.index(unwrap(value))
            except ValueError:
                raise ValueError("list.remove(x): x not in list") from None
            del self[position]

    def reverse(self) -> None:
        with self._core.lock:
            self._reorder(list(range(len(self._raw) - 1, -1, -1)))

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        """Sort in place. A key (or a comparison) that changes the list itself raises
        ValueError, as with a plain list: the list then holds its own items, sorted, and the
        changes the key made inside them."""
        with self._core.lock:
            items = list(self._raw)
            if key is None:
                order = sorted(range(len(items)), key=items.__getitem__, reverse=reverse)
            else:
                order = sorted(
                    range(len(items)), key=lambda i: key(self._view(i, items[i])), reverse=reverse
                )
            if len(items) == len(self._raw) and all(map(operator.is_, items, self._raw)):
                self._reorder(order)
                return
            self._put_back([items[i] for i in order])
            raise ValueError("list modified during sort")

    def _put_back(self, items: list[Any]) -> None:
        """Make the list hold ``items``, the very objects (some of them taken out of it)."""
        core = self._core
        path = core.path_for_change(self, self._raw)
        texts = [self._prepared(item, index)[1] for index, item in enumerate(items)]
        end = len(self._raw)
        core.commit(
            [journal.splice_record(path, 0, end, texts)], [Splice((self._raw, 0, end, items))]
        )

    def _reorder(self, order: list[int]) -> None:
        """Move the existing items (the same objects: kept proxies follow them)."""
        core = self._core
        with core.lock:
            path = core.path_for_change(self, self._raw)
            if order != list(range(len(order))):
                core.commit([journal.reorder_record(path, order)], [Reorder((self._raw, order))])


values.register_views(Node, unwrap)


def _position(index: Any, size: int, message: str) -> int:
    position = operator.index(index)
    if position < 0:
        position += size
    if not 0 <= position < size:
        raise IndexError(message)
    return position


def _as_list(other: Any) -> Any:
    raw = unwrap(other)
    if not isinstance(raw, list):
        raise TypeError(f"cannot compare a list with {type(other).__name__}")
    return raw
