"""Live dicts and lists: the containers a state's data is made of.

A state's data is a tree of LiveDict and LiveList, subclasses of dict and list, the top
included. Reading a container out of a state gives the very container stored there, so to any
other code it is the dict or list it holds (``isinstance``, ``json.dumps``, ``yaml.safe_dump``,
``pickle``, ``pprint``), and a read costs a dict's read plus the check that no transaction is
half applied. The methods that would change a container do not change it themselves: each finds
the container's current path from the top, encodes one journal record and hands it to the
state's core (``core.Core``, through what ``StateCore`` lists), which writes the record and only
then applies the change in memory with the base class's methods (``journal``'s changes call
``dict.__setitem__``, ``list.insert``, ...).

A container is made as a StoredDict or StoredList, a plain dict or list with room for its place;
when it is first read through its parent it becomes a LiveDict or LiveList (``__class__`` is
set) and learns its place (the core, its parent, its key there): it is *linked*. (Building the
data of a large file costs what plain dicts and lists cost.) Each container sits in exactly
one place (values are copied in), so identity tells where it is now: a list element that moved
(insert, sort, slice assignment) is found again, and a container that was replaced or deleted
is *detached* and refuses changes. A container refers to its parent weakly and to its core
strongly, and the core lets go of the tree when its state is dropped (``freeze_paths``): no
reference cycle outlives the state, so an unclosed state frees its lock as soon as nothing
refers to it or to its containers.
"""

from __future__ import annotations

import functools
import operator
import sys
import weakref
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView

import yaml

from . import journal, values
from .errors import PersistedStateError
from .journal import Change, Clear, Delete, Insert, Reorder, Set, Splice

TYPE_CHECKING = False  # (typing's, without importing typing: docs/design.md, Memory)
if TYPE_CHECKING:
    from typing import Any, Protocol, SupportsIndex, TypeVar

    Result = TypeVar("Result")

    class ReentrantLock(Protocol):
        """A re-entrant lock: ``threading.RLock``, or a core's own (``core.OperationLock``)."""

        def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

        def release(self) -> None: ...

        def __enter__(self) -> bool: ...

        def __exit__(self, kind: Any, value: Any, traceback: Any, /) -> None: ...

    class StateCore(Protocol):
        """What containers use of the core of their state (``core.Core``; documented there)."""

        @property
        def lock(self) -> ReentrantLock: ...

        def read(self, get: Callable[[Any, Any], Any], container: Any, key: Any) -> Any: ...

        def read_whole(
            self, get: Callable[[Any, Any], Result], container: Any, argument: Any
        ) -> Result: ...

        def path_for_change(self, container: Node) -> str: ...

        def set_scalar(
            self, container: LiveDict, key: str, value: Any, encode: Callable[[Any], str]
        ) -> None: ...

        def commit(self, records: list[str], changes: list[Change]) -> None: ...


_MISSING: Any = object()
_SCALAR_TEXT = values.SCALAR_TEXT

# The base classes' methods: they read and change the memory of a container without a record.
_dict_contains = dict.__contains__
_dict_get = dict.get
_dict_getitem = dict.__getitem__
_dict_items = dict.items
_dict_keys = dict.keys
_dict_len = dict.__len__
_list_copy = list.copy
_list_getitem = list.__getitem__
_list_len = list.__len__


def _through_core(base: Callable[[Any, Any], Result]) -> Callable[[Any, Any], Result]:
    """``base``, a method of dict or list that reads the whole container in C (without the
    lock, and in shared mode without catching up), as a method that calls it through the core
    (``Core.read_whole``)."""

    def method(self: Node, argument: Any) -> Result:
        return self._core.read_whole(base, self, argument)

    method.__name__ = method.__qualname__ = base.__name__
    method.__doc__ = base.__doc__
    return method


def _call(container: Any, method: Callable[[Any], Result]) -> Result:
    return method(container)


def _list_index(container: list[Any], arguments: tuple[Any, Any, Any]) -> int:
    return list.index(container, *arguments)


class _ReprThroughCore:
    """The ``__repr__`` of a live container: the base class's, called through the core
    (``Core.read_whole``), as str() and format() call it too. Read from the class it is the
    base class's own, since that is how other code tells a dict or a list it may print as one
    (pprint sorts and lays out a dict only if ``type(d).__repr__ is dict.__repr__``)."""

    __slots__ = ("_base",)

    def __init__(self, base: Callable[[Any], str]) -> None:
        self._base = base

    def __get__(self, container: Any, kind: Any = None) -> Callable[..., str]:
        if container is None:
            return self._base
        return functools.partial(container._core.read_whole, _call, container, self._base)


class DetachedError(PersistedStateError):
    """A container is no longer in the state (it was replaced or deleted)."""


def _kind(container: Any) -> str:
    return "dict" if isinstance(container, dict) else "list"


# The slots of a container of a state's data, set when it is linked (_link).
_SLOTS = ("_core", "_parent", "_key", "_frozen", "_path", "__weakref__")


class StoredDict(dict["Any", "Any"]):
    """A dict of a state's data not yet read through the state: a plain dict, with room for
    its place. Reading it through its parent makes it a LiveDict."""

    __slots__ = _SLOTS


class StoredList(list["Any"]):
    """A list of a state's data not yet read through the state: a plain list, with room for
    its place. Reading it through its parent makes it a LiveList."""

    __slots__ = _SLOTS


class Node:
    """What LiveDict and LiveList share: their place in the state, and plain copies out."""

    __slots__ = ()

    _core: StateCore  # the core of its state
    _parent: weakref.ref[Any] | None  # its parent container (None: the top of the tree)
    _key: Any  # its key in the parent (in a list, its index when last seen)
    _frozen: tuple[Any, ...] | None  # its path when its state was dropped (freeze_paths)
    _path: tuple[list[Any], str, bool] | None  # its path last time: keys, text, all str keys?

    def _locate(self) -> list[Any]:
        """The keys and indexes from the top of the state; raises DetachedError.

        Climbs the parents, checking each step by identity (a list element that moved is
        found again by identity in its list).
        """
        keys: list[Any] = []
        node: Any = self
        parent_ref = node._parent
        while parent_ref is not None:
            parent = parent_ref()
            if parent is None:  # its state was dropped: where it was then is where it is
                if node._frozen is None:
                    raise self._detached()
                keys.extend(reversed(node._frozen))
                break
            key = node._key
            if type(parent) is LiveList:
                if not (0 <= key < _list_len(parent) and _list_getitem(parent, key) is node):
                    key = _index_by_identity(parent, node)
                    if key < 0:
                        raise self._detached()
                    node._key = key
            elif _dict_get(parent, key, _MISSING) is not node:
                raise self._detached()
            keys.append(key)
            node = parent
            parent_ref = node._parent
        keys.reverse()
        return keys

    def _detached(self) -> DetachedError:
        return DetachedError(
            f"this {_kind(self)} is no longer part of the state: the container that held it "
            "was replaced or deleted, so a change here would be lost. Read it again from the "
            "state."
        )

    def _prepared(self, value: Any, key: Any) -> tuple[Any, str]:
        """``values.prepare`` for a value going under ``key`` here; errors name the place."""
        try:
            encode = _SCALAR_TEXT.get(type(value))
            if encode is not None:  # (no need to know how deep this container is)
                return value, encode(value)
            return values.prepare(value, values.MAX_DEPTH - 1 - len(self._locate()))
        except values.UnsupportedValue as error:
            raise error.to_builtin([*self._locate(), key]) from None

    def clear(self) -> None:
        core = self._core
        with core.lock:
            path = core.path_for_change(self)
            if _length(self):
                core.commit([journal.clear_record(path)], [Clear((self,))])

    def copy(self) -> Any:
        """A plain, independent deep copy of the data (dicts and lists)."""
        with self._core.lock:
            return values.plain_copy(self)

    def __copy__(self) -> Any:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self.copy()

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        """Pickled as the plain data it holds (unpickled as a plain dict or list)."""
        plain = self.copy()
        return type(plain), (plain,)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(0)


def _length(container: Any) -> int:
    return _list_len(container) if type(container) is LiveList else _dict_len(container)


def _link(container: Any, kind: type, core: StateCore, parent: Node | None, key: Any) -> None:
    """Make ``container`` a ``kind`` (LiveDict, LiveList, TopDict) that knows its place: under
    ``key`` in ``parent`` (None: the top of ``core``)."""
    container.__class__ = kind
    container._core = core
    container._parent = None if parent is None else weakref.ref(parent)
    container._key = key
    container._frozen = None
    container._path = None


def _linked(core: StateCore, parent: Node, key: Any, value: Any) -> Any:
    """``value``, read from ``parent`` under ``key``: a container read for the first time
    becomes live."""
    kind = type(value)
    if kind is StoredDict:
        _link(value, LiveDict, core, parent, key)
    elif kind is StoredList:
        _link(value, LiveList, core, parent, key)
    return value


def locate(container: Node) -> list[Any]:
    """The keys and indexes from the top of the state to ``container``; raises DetachedError."""
    return container._locate()


def path_of(container: Any, top: dict[Any, Any]) -> tuple[list[Any], str]:
    """The keys and indexes from ``top`` to ``container``, and their journal text (kept in
    the container for its next change); raises DetachedError."""
    known: tuple[list[Any], str, bool] | None = container._path
    if known is not None and known[2]:
        # Fast path (speed device: a change 5 levels deep): a path of dict keys only is
        # walked down from the top in C; arriving at this very container proves that it is
        # there (each container sits in one place only).
        try:
            if functools.reduce(_dict_getitem, known[0], top) is container:
                return known[0], known[1]
        except (LookupError, TypeError):  # (gone, or a list on the way now)
            pass
    # Slow path: climb the parents, checking each step by identity.
    keys = container._locate()
    if known is None or known[0] != keys:
        text = journal.path_text([values.key_text(key)[1] for key in keys])
        dicts_only = all(type(key) is str for key in keys)
        known = container._path = (keys, text, dicts_only)
    return known[0], known[1]


def attach_top(top: LiveDict, core: StateCore) -> None:
    """Make ``top`` the top of ``core``'s tree (a TopDict): its containers are linked from
    there."""
    _link(top, TopDict, core, None, None)


def freeze_paths(top: LiveDict) -> None:
    """Note in each linked container where it is, before the tree goes.

    When a state is dropped unclosed, its core lets go of the tree (else the core and the tree
    would keep each other alive, and the lock with them). A container the program still holds
    then writes by the path noted here: its parent is gone, so nothing can move it any more.
    (A parent the program holds too is still there, and still checked.)
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(top, ())]
    while stack:
        container, path = stack.pop()
        if type(container) is LiveList:
            children: Iterable[tuple[Any, Any]] = enumerate(_list_copy(container))
        else:
            children = _dict_items(container)
        for key, child in children:
            if type(child) is LiveDict or type(child) is LiveList:  # (read through the state)
                child._frozen = (*path, key)
                stack.append((child, child._frozen))


def _index_by_identity(container: list[Any], item: Any) -> int:
    try:
        return list(map(id, container)).index(id(item))
    except ValueError:
        return -1


class LiveDict(Node, StoredDict):
    """A dict inside a state: a real dict whose every change is written to the state's file."""

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        """A dict made by other code (``type(d)(...)``, as ``dataclasses.asdict`` does) is a
        plain dict: a state makes its own (StoredDict, made live when read)."""
        return dict(*args, **kwargs)

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # (d.__init__(...) updates d)
        self.update(*args, **kwargs)

    # -- reading -------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        core = self._core
        value = core.read(_dict_getitem, self, key)
        kind = type(value)  # (_linked, written out: a speed device, docs/design.md)
        if kind is StoredDict:
            _link(value, LiveDict, core, self, key)
        elif kind is StoredList:
            _link(value, LiveList, core, self, key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        core = self._core
        with core.lock:  # (not while another thread's transaction is open)
            if not _dict_contains(self, key):
                return default
            return _linked(core, self, key, _dict_getitem(self, key))

    def __len__(self) -> int:
        return self._core.read_whole(_call, self, _dict_len)  # type: ignore[no-any-return]

    # dict's own reads in C (dict's <, <=, >, >= read nothing: they return NotImplemented)
    __contains__ = _through_core(dict.__contains__)
    __eq__ = _through_core(dict.__eq__)
    __ne__ = _through_core(dict.__ne__)
    __repr__ = _ReprThroughCore(dict.__repr__)

    def __iter__(self) -> Iterator[Any]:
        with self._core.lock:
            keys = list(_dict_keys(self))
        return iter(keys)

    def __reversed__(self) -> Iterator[Any]:
        with self._core.lock:
            keys = list(dict.__reversed__(self))
        return iter(keys)

    def keys(self) -> KeysView[Any]:  # type: ignore[override]
        return KeysView(self)

    def values(self) -> ValuesView[Any]:  # type: ignore[override]
        return ValuesView(self)

    def items(self) -> ItemsView[Any, Any]:  # type: ignore[override]
        return ItemsView(self)

    # -- changing ------------------------------------------------------------------------

    def __setitem__(self, key: Any, value: Any) -> None:
        encode = _SCALAR_TEXT.get(type(value))
        if encode is not None and type(key) is str:  # a scalar under a str key: the short path
            self._core.set_scalar(self, key, value, encode)
            return
        core = self._core
        with core.lock:
            if type(value) in _CONTAINERS and value is _dict_get(self, key):
                return  # already there: ``state.l += [4]`` sets state.l to the list it extended
            path = core.path_for_change(self)
            record, change = self._set_change(path, key, value)
            core.commit([record], [change])

    def _set_change(self, path: str, key: Any, value: Any) -> tuple[str, Change]:
        """The record and the in-memory change of ``self[key] = value``."""
        try:
            stored_key, key_text = values.key_text(key)
        except values.UnsupportedValue as error:
            raise error.to_builtin([*self._locate(), key]) from None
        copy, text = self._prepared(value, key)
        return journal.set_record(path, key_text, text), Set((self, stored_key, copy))

    def __delitem__(self, key: Any) -> None:
        core = self._core
        with core.lock:
            path = core.path_for_change(self)
            if not _dict_contains(self, key):
                raise KeyError(key)
            key_text = values.key_text(key)[1]
            core.commit([journal.delete_record(path, key_text)], [Delete((self, key))])

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value as plain data."""
        with self._core.lock:
            if not _dict_contains(self, key):
                if default is _MISSING:
                    raise KeyError(key)
                return default
            value = values.plain_copy(_dict_getitem(self, key))
            LiveDict.__delitem__(self, key)  # (the top's own is dict's: TopDict)
            return value

    def popitem(self) -> tuple[Any, Any]:
        """Remove the last inserted item and return it as plain data."""
        with self._core.lock:
            if not _dict_len(self):
                raise KeyError("popitem(): dictionary is empty")
            key = next(dict.__reversed__(self))
            return key, self.pop(key)

    def update(self, other: Any = (), /, **extra: Any) -> None:
        """Set several keys as one change: all of them are written, or none."""
        core = self._core
        with core.lock:
            path = core.path_for_change(self)
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
            if not _dict_contains(self, key):
                LiveDict.__setitem__(self, key, default)  # (the top's own is dict's: TopDict)
            return self[key]

    def __ior__(self, other: Any) -> LiveDict:
        self.update(other)
        return self

    def __or__(self, other: Any) -> Any:
        if not isinstance(other, Mapping):
            return NotImplemented
        result = self.copy()
        result.update(values.plain_copy(other))
        return result

    def __ror__(self, other: Any) -> Any:
        if not isinstance(other, Mapping):
            return NotImplemented
        result = values.plain_copy(dict(other))
        result.update(self.copy())
        return result


class LiveList(Node, StoredList):
    """A list inside a state: a real list whose every change is written to the state's file."""

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        """A list made by other code (``type(l)(...)``) is a plain list: a state makes its own
        (StoredList, made live when read)."""
        return list(*args, **kwargs)

    def __init__(self, items: Iterable[Any] = ()) -> None:  # (l.__init__(...) replaces the items)
        self[:] = list(items)

    # -- reading -------------------------------------------------------------------------

    def __getitem__(self, index: Any) -> Any:
        core = self._core
        if isinstance(index, slice):
            with core.lock:
                return [
                    _linked(core, self, i, _list_getitem(self, i))
                    for i in range(*index.indices(_list_len(self)))
                ]
        position = operator.index(index)
        if position < 0:  # where the end is depends on the length: read both under the lock
            with core.lock:
                position = _position(position, _list_len(self), "list index out of range")
                value = _list_getitem(self, position)
        else:
            value = core.read(_list_getitem, self, position)
        kind = type(value)  # (_linked, written out, as in LiveDict.__getitem__)
        if kind is StoredDict:
            _link(value, LiveDict, core, self, position)
        elif kind is StoredList:
            _link(value, LiveList, core, self, position)
        return value

    def __iter__(self) -> Iterator[Any]:
        core = self._core
        position = 0
        while True:
            with core.lock:
                if position >= _list_len(self):
                    return
                item = _linked(core, self, position, _list_getitem(self, position))
            yield item
            position += 1

    def __reversed__(self) -> Iterator[Any]:
        return iter(list(self)[::-1])

    def __len__(self) -> int:
        return self._core.read_whole(_call, self, _list_len)  # type: ignore[no-any-return]

    def index(self, value: Any, start: SupportsIndex = 0, stop: SupportsIndex = sys.maxsize) -> int:
        return self._core.read_whole(_list_index, self, (value, start, stop))

    # list's own reads in C
    __contains__ = _through_core(list.__contains__)
    count = _through_core(list.count)
    __eq__ = _through_core(list.__eq__)
    __ne__ = _through_core(list.__ne__)
    __lt__ = _through_core(list.__lt__)
    __le__ = _through_core(list.__le__)
    __gt__ = _through_core(list.__gt__)
    __ge__ = _through_core(list.__ge__)
    __repr__ = _ReprThroughCore(list.__repr__)

    def __add__(self, other: Any) -> list[Any]:
        if not isinstance(other, list):
            kind = type(other).__name__
            raise TypeError(f'can only concatenate list (not "{kind}") to list')
        return [*self.copy(), *values.plain_copy(other)]

    def __radd__(self, other: Any) -> list[Any]:
        if not isinstance(other, list):
            return NotImplemented
        return [*values.plain_copy(other), *self.copy()]

    def __mul__(self, times: SupportsIndex) -> list[Any]:
        count = _index_sized(times)  # (list's errors for a bad count)
        items = self.copy()
        return [values.plain_copy(item) for _ in range(count) for item in items]

    __rmul__ = __mul__

    # -- changing ------------------------------------------------------------------------

    def _prepare_all(self, items: Iterable[Any], first_index: int) -> tuple[list[Any], list[str]]:
        made = [self._prepared(item, first_index + offset) for offset, item in enumerate(items)]
        return [copy for copy, _ in made], [text for _, text in made]

    def __setitem__(self, index: Any, value: Any) -> None:
        core = self._core
        with core.lock:
            path = core.path_for_change(self)
            if isinstance(index, slice):
                self._assign_slice(core, path, index, value)
                return
            position = _position(index, _list_len(self), "list assignment index out of range")
            if type(value) in _CONTAINERS and value is _list_getitem(self, position):
                return  # already there: ``l[0] += [1]`` sets l[0] to the list it extended
            copy, text = self._prepared(value, position)
            core.commit(
                [journal.set_record(path, str(position), text)], [Set((self, position, copy))]
            )

    def _assign_slice(self, core: StateCore, path: str, index: slice, value: Any) -> None:
        start, stop, step = index.indices(_list_len(self))
        items = list(value)
        if step == 1:
            stop = max(start, stop)
            copies, texts = self._prepare_all(items, start)
            if stop > start or copies:
                core.commit(
                    [journal.splice_record(path, start, stop, texts)],
                    [Splice((self, start, stop, copies))],
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
                [Set((self, p, c)) for p, c in zip(positions, copies, strict=True)],
            )

    def __delitem__(self, index: Any) -> None:
        core = self._core
        with core.lock:
            path = core.path_for_change(self)
            size = _list_len(self)
            if not isinstance(index, slice):
                position = _position(index, size, "list assignment index out of range")
                core.commit(
                    [journal.delete_record(path, str(position))], [Delete((self, position))]
                )
                return
            start, stop, step = index.indices(size)
            if step == 1:
                if stop > start:
                    core.commit(
                        [journal.splice_record(path, start, stop, [])],
                        [Splice((self, start, stop, []))],
                    )
                return
            positions = sorted(range(start, stop, step), reverse=True)  # last first: no shifts
            if positions:
                core.commit(
                    [journal.delete_record(path, str(p)) for p in positions],
                    [Delete((self, p)) for p in positions],
                )

    def insert(self, index: SupportsIndex, value: Any) -> None:
        position = _index_sized(index)
        with self._core.lock:
            size = _list_len(self)
            if position < 0:
                position = max(0, position + size)
            self._insert_at(min(position, size), value)

    def append(self, value: Any) -> None:
        with self._core.lock:  # the end must not move before the insert
            self._insert_at(_list_len(self), value)

    def _insert_at(self, position: int, value: Any) -> None:
        core = self._core
        path = core.path_for_change(self)
        copy, text = self._prepared(value, position)
        core.commit([journal.insert_record(path, position, text)], [Insert((self, position, copy))])

    def extend(self, items: Iterable[Any]) -> None:
        """Append all items as one change."""
        with self._core.lock:
            end = _list_len(self)
            self[end:end] = list(items)

    def __iadd__(self, items: Iterable[Any]) -> LiveList:  # type: ignore[misc]
        self.extend(items)
        return self

    def __imul__(self, times: SupportsIndex) -> LiveList:
        count = _index_sized(times)
        with self._core.lock:
            if count <= 0:
                self.clear()
            elif count > 1:
                self.extend(_list_copy(self) * (count - 1))
        return self

    def pop(self, index: SupportsIndex = -1) -> Any:
        """Remove the item at ``index`` and return it as plain data."""
        given = _index_sized(index)  # (a bad index is refused first, as list.pop does)
        with self._core.lock:
            if not _list_len(self):
                raise IndexError("pop from empty list")
            position = _position(given, _list_len(self), "pop index out of range")
            value = values.plain_copy(_list_getitem(self, position))
            del self[position]
            return value

    def remove(self, value: Any) -> None:
        with self._core.lock:
            try:
                position = list.index(self, value)
            except ValueError:
                raise ValueError("list.remove(x): x not in list") from None
            del self[position]

    def reverse(self) -> None:
        with self._core.lock:
            self._reorder(list(range(_list_len(self) - 1, -1, -1)))

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        """Sort in place. A key (or a comparison) that changes the list itself raises
        ValueError, as with a plain list: the list then holds its own items, sorted, and the
        changes the key made inside them."""
        core = self._core
        with core.lock:
            items = _list_copy(self)
            if key is None:
                order = sorted(range(len(items)), key=items.__getitem__, reverse=reverse)
            else:
                order = sorted(
                    range(len(items)),
                    key=lambda i: key(_linked(core, self, i, items[i])),
                    reverse=reverse,
                )
            if len(items) == _list_len(self) and all(map(operator.is_, items, self)):
                self._reorder(order)
                return
            self._put_back([items[i] for i in order])
            raise ValueError("list modified during sort")

    def _put_back(self, items: list[Any]) -> None:
        """Make the list hold ``items``, the very objects (some of them taken out of it)."""
        core = self._core
        path = core.path_for_change(self)
        texts = [self._prepared(item, index)[1] for index, item in enumerate(items)]
        end = _list_len(self)
        core.commit([journal.splice_record(path, 0, end, texts)], [Splice((self, 0, end, items))])

    def _reorder(self, order: list[int]) -> None:
        """Move the existing items (the same objects: kept references follow them)."""
        core = self._core
        with core.lock:
            path = core.path_for_change(self)
            if order != list(range(len(order))):
                core.commit([journal.reorder_record(path, order)], [Reorder((self, order))])


class TopDict(LiveDict):
    """The top of a state's data: a LiveDict whose item assignment and deletion are dict's
    own, writing no record, so that the core's short path for a top-level scalar stores at a
    plain dict's speed (CPython uses dict's C code only when both are dict's). The state's
    methods, and LiveDict's, call LiveDict.__setitem__ and __delitem__ for it."""

    __slots__ = ()

    __setitem__ = dict.__setitem__
    __delitem__ = dict.__delitem__

    def copy(self) -> dict[Any, Any]:
        with self._core.lock:
            return values.plain_copy(dict.copy(self))  # type: ignore[no-any-return]


_CONTAINERS = (LiveDict, LiveList)  # (the containers a program is given)
values.register_containers(StoredDict, StoredList, (LiveDict, TopDict), (LiveList,))


def _index_sized(index: Any) -> int:
    """``index`` as an int that fits a C ``ssize_t``: list's TypeError or OverflowError
    otherwise."""
    position = operator.index(index)
    if not -sys.maxsize - 1 <= position <= sys.maxsize:
        raise OverflowError("Python int too large to convert to C ssize_t")
    return position


def _position(index: Any, size: int, message: str) -> int:
    position = operator.index(index)
    if position < 0:
        position += size
    if not 0 <= position < size:
        raise IndexError(message)
    return position


# -- how other libraries see them ----------------------------------------------------------


def _represent_dict(representer: Any, data: StoredDict) -> Any:
    return representer.represent_dict(dict(_dict_items(data)))  # (a dict: sort_keys sorts it)


def _represent_list(representer: Any, data: StoredList) -> Any:
    return representer.represent_sequence("tag:yaml.org,2002:seq", _list_copy(data))


def _represent_live(representer: Any, data: Any) -> Any:
    """A live container's node, made through the core: PyYAML builds the nodes of the
    containers inside it meanwhile, so all of them are read as one (``Core.read_whole``)."""
    kind = _represent_dict if type(data) is not LiveList else _represent_list
    return data._core.read_whole(
        lambda data, representer: kind(representer, data), data, representer
    )


# yaml.safe_dump and yaml.dump write them as the plain mappings and lists they are (PyYAML
# looks representers up by exact type). Every dumper class that may hold its own table gets
# them: a program may have copied a table by registering representers of its own.
_DUMPERS = ("SafeDumper", "Dumper", "CSafeDumper", "CDumper")  # (the C ones: with libyaml)
for _dumper in (
    yaml.representer.SafeRepresenter,
    yaml.representer.Representer,
    *filter(None, (getattr(yaml, name, None) for name in _DUMPERS)),
):
    _dumper.add_representer(StoredDict, _represent_dict)  # (read through a base method)
    _dumper.add_representer(StoredList, _represent_list)
    for _live in (LiveDict, LiveList):
        _dumper.add_representer(_live, _represent_live)
