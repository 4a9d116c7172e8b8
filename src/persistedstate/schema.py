"""Typed states: the keys a subclass of PersistedState declares, and whether a value fits.

A subclass declares its keys as annotations, with or without a default (see the README,
"Typed states"). ``Schema.of`` reads them once, when the class is defined; this module is
imported only then, so an untyped state, and ``import persistedstate``, pay nothing for it.

A declared type is turned into a ``Kind``: a small object that checks a stored value (plain
data, as ``values.prepare`` leaves it: a tuple is a list by then) and knows the kind of what a
container holds. Every change of a typed state passes ``CheckedCore`` (a core whose
``set_scalar`` and ``commit``, the two ways into the data, check first), and an open passes
``Schema.check_file``. A value that does not fit raises before anything is written.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import shlex
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

from . import core, proxies, snapshot, values
from .errors import CorruptStateError, PersistedStateError
from .journal import Change, Clear, Delete, Insert, Set, Splice
from .textpos import bom_length, line_and_column

VERSION_KEY = "_version"  # where the file keeps the version of its data (item syntax only)
_MISSING: Any = object()


class Misfit(Exception):
    """A value that does not fit its declared type; ``path`` is its key path in the state."""

    def __init__(self, path: list[Any], problem: str, value: Any = _MISSING) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem
        self.value = value  # (the value refused; _MISSING when the key itself is wrong)

    def where(self) -> str:
        """The key path as Python would reach it: ``done[2]``, ``settings['batch']``."""
        first, *rest = self.path
        return str(first) + "".join(f"[{key!r}]" for key in rest)


def _misfit(path: list[Any], expected: str, value: Any) -> Misfit:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    # (a state's own dicts and lists are subclasses: named as what they are to a person)
    kind = "dict" if isinstance(value, dict) else "list" if isinstance(value, list) else None
    found = kind or type(value).__name__
    return Misfit(path, f"expected {expected}, found {found} {shown}", value)


class Kind:
    """A declared type: ``check`` raises Misfit for a value that does not fit it."""

    name: str
    container: type | None = None  # list or dict for the kinds of containers
    # For a list of a scalar type, the types its items may have (a quick test for appends).
    items_accepted: tuple[type, ...] = ()

    def check(self, value: Any, path: list[Any]) -> None:
        raise NotImplementedError

    def member_for(self, value: Any) -> Kind:
        """The kind that describes ``value`` (a union's member of that container type)."""
        return self

    def child(self, key: Any, path: list[Any]) -> Kind:
        """The kind of ``container[key]`` (raises Misfit for a key the container may not hold)."""
        raise Misfit(path, f"expected {self.name}, which holds no keys or items")

    def removable(self, key: Any) -> bool:
        return True


class _Any(Kind):
    name = "Any"

    def check(self, value: Any, path: list[Any]) -> None:
        pass  # (values.prepare has checked that the state can hold it)

    def child(self, key: Any, path: list[Any]) -> Kind:
        return self


ANY = _Any()


class Exact(Kind):
    """A scalar type, tested by identity of type: ``int`` takes no ``bool``, ``float`` takes an
    ``int`` too (as Python's typing does)."""

    def __init__(self, name: str, accepted: tuple[type, ...]) -> None:
        self.name = name
        self.accepted = accepted

    def check(self, value: Any, path: list[Any]) -> None:
        if type(value) not in self.accepted:
            raise _misfit(path, self.name, value)


class OneOf(Kind):
    """``Literal[...]``: one of the values given, of the same type (``1`` is not ``True``)."""

    def __init__(self, options: tuple[Any, ...]) -> None:
        self.options = [(type(option), option) for option in options]
        self.name = f"Literal[{', '.join(map(repr, options))}]"

    def check(self, value: Any, path: list[Any]) -> None:
        if (type(value), value) not in self.options:
            raise _misfit(path, self.name, value)


class ListOf(Kind):
    container = list

    def __init__(self, item: Kind) -> None:
        self.item = item
        self.name = f"list[{item.name}]"
        if type(item) is Exact:
            self.items_accepted = item.accepted

    def check(self, value: Any, path: list[Any]) -> None:
        if not isinstance(value, list):  # (a state's own lists are a subclass)
            raise _misfit(path, self.name, value)
        if self.item is not ANY:
            for index, item in enumerate(value):
                self.item.check(item, [*path, index])

    def child(self, key: Any, path: list[Any]) -> Kind:
        return self.item


class DictOf(Kind):
    container = dict

    def __init__(self, key: Kind, value: Kind) -> None:
        self.key = key
        self.value = value
        self.name = f"dict[{key.name}, {value.name}]"

    def check(self, value: Any, path: list[Any]) -> None:
        if not isinstance(value, dict):  # (a state's own dicts are a subclass)
            raise _misfit(path, self.name, value)
        for key, item in value.items():
            self.child(key, path).check(item, [*path, key])

    def child(self, key: Any, path: list[Any]) -> Kind:
        try:
            self.key.check(key, path)
        except Misfit:
            raise _misfit([*path, key], f"a key of type {self.key.name}", key) from None
        return self.value


class Fields(Kind):
    """A TypedDict, or the top of a typed state: named keys, each of its own kind."""

    container = dict

    def __init__(self, name: str, fields: dict[str, Kind], required: frozenset[str]) -> None:
        self.name = name
        self.fields = fields
        self.required = required

    def check(self, value: Any, path: list[Any]) -> None:
        if not isinstance(value, dict):  # (a state's own dicts are a subclass)
            raise _misfit(path, self.name, value)
        for key, item in value.items():
            self.child(key, path).check(item, [*path, key])
        for key in self.required:
            if key not in value:
                raise Misfit([*path, key], f"missing: {self.name} requires it")

    def child(self, key: Any, path: list[Any]) -> Kind:
        kind = self.fields.get(key) if type(key) is str else None
        if kind is None:
            declared = ", ".join(self.fields) or "none"
            raise Misfit([*path, key], f"not a key of {self.name} (its keys: {declared})")
        return kind

    def removable(self, key: Any) -> bool:
        return key not in self.required


class AnyOf(Kind):
    """A union (``X | None``, ``Optional[X]``): at most one member per container type, so the
    member a container's changes are checked against is known from the container itself."""

    def __init__(self, members: list[Kind]) -> None:
        self.members = members
        self.name = " | ".join(member.name for member in members)

    def check(self, value: Any, path: list[Any]) -> None:
        member = self.member_for(value)
        if member is not self:  # (a container: its own check says where inside it is wrong)
            member.check(value, path)
            return
        for member in self.members:
            try:
                member.check(value, path)
                return
            except Misfit:
                pass
        raise _misfit(path, self.name, value)

    def member_for(self, value: Any) -> Kind:
        for member in self.members:
            if member.container is not None and isinstance(value, member.container):
                return member
        return self


_SCALARS: dict[Any, Kind] = {
    int: Exact("int", (int,)),
    float: Exact("float", (float, int)),
    str: Exact("str", (str,)),
    bytes: Exact("bytes", (bytes,)),
    bool: Exact("bool", (bool,)),
    type(None): Exact("None", (type(None),)),
    None: Exact("None", (type(None),)),
    datetime.date: Exact("date", (datetime.date,)),
    datetime.datetime: Exact("datetime", (datetime.datetime,)),
}
_SUPPORTED = (
    "int, float, str, bytes, bool, None, date, datetime, Any, Literal[...], list[T], "
    "dict[K, V], a TypedDict, and unions of them (X | None)"
)


def kind_of(declared: Any, where: str) -> Kind:
    """The Kind of a declared type; TypeError (naming ``where``) for one a state cannot honour."""
    scalar = _SCALARS.get(declared) if isinstance(declared, typing.Hashable) else None
    if scalar is not None:
        return scalar
    if declared is Any:
        return ANY
    origin, arguments = typing.get_origin(declared), typing.get_args(declared)
    if origin is Union or origin is types.UnionType:
        members = [kind_of(argument, where) for argument in arguments]
        containers = [member.container for member in members if member.container]
        if ANY in members:
            return ANY
        if len(containers) != len(set(containers)):
            raise TypeError(
                f"{where}: {declared} has two members of one container type; a change inside "
                "could not tell which it must fit (declare one, such as list[int | str])"
            )
        return AnyOf(members)
    if origin is Literal:
        if not all(type(option) in (int, str, bytes, bool, type(None)) for option in arguments):
            raise TypeError(f"{where}: {declared}: Literal values must be int, str, bytes or bool")
        return OneOf(arguments)
    if declared is list or origin is list:
        return ListOf(kind_of(arguments[0], where) if arguments else ANY)
    if declared is dict or origin is dict:
        if not arguments:
            return DictOf(ANY, ANY)
        return DictOf(kind_of(arguments[0], where), kind_of(arguments[1], where))
    if _is_typeddict(declared):
        hints = typing.get_type_hints(declared)  # (Required and NotRequired taken off)
        fields = {name: kind_of(hint, f"{where}: {name}") for name, hint in hints.items()}
        return Fields(declared.__name__, fields, frozenset(declared.__required_keys__))
    if declared is tuple or origin is tuple:
        raise TypeError(
            f"{where}: a tuple is stored as a list and reads back as one; declare list[...]"
        )
    if hasattr(declared, "__dataclass_fields__"):
        raise TypeError(
            f"{where}: a dataclass cannot be a declared type: the file holds plain data and a "
            "mapping reads back as a dict, never as your class; declare a TypedDict instead"
        )
    raise TypeError(f"{where}: a state cannot check values of type {declared!r}; {_SUPPORTED}")


def _stored(value: Any, key: Any) -> Any:
    """``value`` as a state stores it (a tuple as a list, a str subclass as a str): what is
    checked. Raises what storing it would raise."""
    try:
        return values.prepare(value)[0]
    except values.UnsupportedValue as error:
        raise error.to_builtin([key]) from None


def _is_typeddict(declared: Any) -> bool:
    # (typing_extensions' TypedDict too, on Python 3.10, which typing.is_typeddict misses)
    return (
        isinstance(declared, type)
        and issubclass(declared, dict)
        and hasattr(declared, "__required_keys__")
    )


class Schema:
    """What a typed state class declares: its keys' kinds and defaults, and its version."""

    def __init__(
        self, owner: type, fields: dict[str, Kind], defaults: dict[str, Any], version: int | None
    ) -> None:
        self.owner = owner.__name__
        self.top = Fields(owner.__name__, fields, frozenset(fields) - {VERSION_KEY})
        self.defaults = defaults
        self.version = version

    @classmethod
    def of(cls, owner: type, inherited: Schema | None, attribute_names: frozenset[str]) -> Schema:
        """Read the class's own annotations, on top of what its typed base declares.

        A declared key's default is taken off the class: the key is then reached as any
        key is (the attribute mirror), and ``dir``'s names of the class stay its methods.
        Raises TypeError for an annotation that cannot be honoured.
        """
        fields = dict(inherited.top.fields) if inherited else {}
        defaults = dict(inherited.defaults) if inherited else {}
        version = inherited.version if inherited else None
        for name, declared in _own_hints(owner).items():
            where = f"{owner.__name__}.{name}"
            if typing.get_origin(declared) is typing.ClassVar or declared is typing.ClassVar:
                if name == "version":
                    version = owner.__dict__.get("version")
                    if type(version) is not int or version < 1:
                        raise TypeError(f"{where} must be an int of 1 or more")
                continue
            if name[:1] == "_":  # (a Python attribute, as for every state)
                continue
            if name in attribute_names:
                raise TypeError(
                    f"{where}: {name!r} is a method or attribute of {owner.__name__}, so it "
                    "cannot be a declared key; name the key otherwise"
                )
            kind = fields[name] = kind_of(declared, where)
            default = owner.__dict__.get(name, _MISSING)
            if default is not _MISSING:
                delattr(owner, name)
                try:
                    kind.check(_stored(default, name), [name])
                except Misfit as misfit:
                    raise TypeError(f"{where}: the default {misfit.problem}") from None
                defaults[name] = default
        if version is not None:
            fields[VERSION_KEY] = _SCALARS[int]
            if version > 1 and not callable(getattr(owner, "upgrade", None)):
                raise TypeError(
                    f"{owner.__name__}.version is {version}: define upgrade(self, from_version) "
                    "to bring older files up to it"
                )
        return cls(owner, fields, defaults, version)

    @property
    def core(self) -> type[CheckedCore]:
        """The core of a typed state (``shared_core``: in shared mode)."""
        return CheckedCore

    @property
    def shared_core(self) -> type[CheckedSharedCore]:
        return CheckedSharedCore

    # -- at open -------------------------------------------------------------------------

    def defaults_with(self, given: Mapping[Any, Any]) -> dict[Any, Any]:
        """The class's defaults overridden by the ones given to open the state; TypeError for
        a given one that is not declared or does not fit (before any file is touched)."""
        for key, value in given.items():
            self.check_set(key, _stored(value, key))
        merged = {**self.defaults, **given}
        if self.version is not None:
            merged[VERSION_KEY] = self.version
        return merged

    def check_file(
        self, path: str, defaults: Mapping[Any, Any], data: dict[Any, Any], text: bytes | None
    ) -> None:
        """Refuse a file whose data does not fit (CorruptStateError, where the value is), or
        a declared key with no default that neither the file nor ``defaults`` gives.

        ``text`` is the file's document (None for a new file, whose data are the defaults).
        Data of an older version are checked after ``upgrade``, not here.
        """
        if self.version is not None:
            found = self.data_version(data)
            if type(found) is int and found > self.version:
                raise PersistedStateError(
                    f"{path}: its data are version {found}, newer than {self.owner}.version "
                    f"({self.version}): a newer program wrote it. Open it with that program."
                )
            if type(found) is int and found < self.version:
                return  # (upgrade() brings it up to date, then it is checked)
        if text is not None:  # (a new file's data are the defaults, checked already)
            for key, value in data.items():
                try:
                    self.top.child(key, []).check(value, [key])
                except Misfit as misfit:
                    raise self._corrupt(path, text, misfit) from None
        for key in self.top.required - data.keys() - defaults.keys():
            problem = f"{self.owner} declares {key!r} with no default: give its value"
            if text is None:
                raise TypeError(f"{problem}, {self.owner}(path, {key}=...)")
            raise CorruptStateError(path, f"key {key!r} is missing; {problem} in the file")

    def data_version(self, data: dict[Any, Any]) -> Any:
        """The version of the data (1 when they hold none); None for a class without one."""
        return data.get(VERSION_KEY, 1) if self.version is not None else None

    def _corrupt(self, path: str, text: bytes, misfit: Misfit) -> CorruptStateError:
        """The error for data read from ``path`` (whose document is ``text``) that do not fit:
        at the value refused (or the key not declared), when the document holds it."""
        document = text.decode("utf-8")  # (it was just read as UTF-8)
        where, found = _located(path, text, document, misfit)
        problem = f"key {misfit.where()}: {misfit.problem}"
        if misfit.value is not _MISSING:
            problem += f" (the type {self.owner} declares)"
            hint = f"correct the value, or the type {self.owner} declares"
        elif found is not _MISSING:  # a key not declared
            hint = f"delete the key, or declare it in {self.owner}"
        else:  # a required key of a TypedDict missing
            hint = "add the key, with a value of its type"
        if where is None and misfit.value is not _MISSING:
            hint = f"a change after the document set it: {hint}"
        line, column = where or (None, None)
        return CorruptStateError(path, problem, line, column, text=document, hint=hint)

    def taken_in(
        self,
        path: str,
        file_path: str,
        data: dict[Any, Any],
        misfit: Misfit,
        offset: int | None,
        end: int,
    ) -> CorruptStateError:
        """The error for others' change that does not fit, which the program has taken in
        (``data`` holds it now): at the line of its record (``offset``: where that line starts
        in the file) or else where the file's document (its first ``end`` bytes) holds it.
        ``path`` names the file as the program did; ``file_path`` is the file, resolved at
        open (a later ``os.chdir()`` changes nothing)."""
        try:  # (the caller holds the write lock: nobody changes the file meanwhile)
            with open(file_path, "rb") as file:
                raw = file.read()
        except OSError:
            raw = b""
        problem = f"key {misfit.where()}: {misfit.problem}"
        if misfit.value is not _MISSING:
            problem += f" (the type {self.owner} declares)"
        where: tuple[int, int] | None = None
        if offset is not None and offset < len(raw):
            where = (line_and_column(raw, offset)[0], 1)
            problem += ", from the change on this line, made outside this program"
        else:
            document = raw[bom_length(raw) : end]
            if document.strip():
                try:  # (the place only: a document that does not parse leaves it unknown)
                    where = _located(path, document, document.decode("utf-8"), misfit)[0]
                except (PersistedStateError, ValueError):
                    where = None
            problem += ", from a change made outside this program"
        place = f"{shlex.quote(path)} {shlex.quote(values.key_path(misfit.path))}"
        if misfit.value is not _MISSING:
            hint = f"set a value that fits: persistedstate set {place} VALUE, {_OR_ASSIGN}"
        elif _value_at(data, misfit.path) is not _MISSING:  # a key not declared
            hint = f"delete it: persistedstate del {place}, or declare it in {self.owner}"
        else:  # a declared key deleted
            hint = f"give it a value: persistedstate set {place} VALUE, {_OR_ASSIGN}"
        line, column = where or (None, None)
        return CorruptStateError(
            path,
            problem,
            line,
            column,
            text=raw,
            hint=hint,
            then=(
                "This program has taken the change in, as the file holds it; the operation "
                "that took it in did nothing, and later ones go on (docs/design.md, "
                '"Others\' changes to a typed state").'
            ),
        )

    def settle(self, state: Any, missing: dict[Any, Any]) -> None:
        """At open, under the state's lock: set the missing defaults and, for data of an older
        version, run ``upgrade`` and write the version, all in one transaction."""
        found = state.get(VERSION_KEY, 1)
        missing.pop(VERSION_KEY, None)
        if self.version is None or (found == self.version and VERSION_KEY in state):
            if missing:
                state.update(missing)
            return
        with state.transaction():
            if missing:
                state.update(missing)
            if found != self.version:  # (Schema.of made sure that the class has upgrade())
                state.upgrade(found)
            state[VERSION_KEY] = self.version
            try:
                self.top.check(state.copy(), [])
            except Misfit as misfit:
                raise TypeError(
                    f"after {self.owner}.upgrade({found}), key "
                    f"{misfit.where()}: {misfit.problem}; nothing was written"
                ) from None

    # -- at each change ------------------------------------------------------------------

    def check_set(self, key: Any, value: Any) -> None:
        """``state[key] = value`` at the top; TypeError naming the key if it does not fit."""
        try:
            self.top.child(key, []).check(value, [key])
        except Misfit as misfit:
            raise self._refused(misfit) from None

    def kind_at(self, data: dict[Any, Any], keys: list[Any]) -> Kind:
        """The kind of the container at ``keys`` (its key path from the top of ``data``)."""
        try:
            return self._kind_within(data, keys)
        except Misfit as misfit:  # (data that someone changed without the schema)
            raise self._refused(misfit) from None

    def _kind_within(self, data: dict[Any, Any], keys: list[Any]) -> Kind:
        """``kind_at``, raising Misfit for a path the schema does not allow."""
        kind: Kind = self.top
        value: Any = data
        for depth, key in enumerate(keys):
            kind = kind.member_for(value).child(key, keys[:depth])
            # (a dropped state's data are gone: only a union then needs them, and refuses)
            value = _value_at(value, [key], None)
        return kind.member_for(value)

    def check_change(self, kind: Kind, change: Change, top: dict[Any, Any]) -> None:
        """A change to a container of ``kind`` in the state whose data are ``top``."""
        if type(change) is Insert and type(change[2]) in kind.items_accepted:
            return  # (an append to a list of a scalar type)
        container = change[0]
        try:
            if type(change) is Set or type(change) is Insert:
                kind.child(change[1], []).check(change[2], [change[1]])
            elif type(change) is Splice:
                start, items = change[1], change[3]
                for offset, item in enumerate(items):
                    kind.child(start + offset, []).check(item, [start + offset])
            elif type(change) is Delete or type(change) is Clear:
                gone = [change[1]] if type(change) is Delete else list(container)
                for key in gone if isinstance(container, dict) else ():
                    if not kind.removable(key):
                        raise Misfit([key], "it is declared, so it cannot be deleted")
        except Misfit as misfit:
            misfit.path = [*_path_to(top, container), *misfit.path]
            raise self._refused(misfit) from None

    # -- at others' changes, taken in while the state is open ------------------------------

    def check_record(self, data: dict[Any, Any], record: list[Any]) -> None:
        """A record another process wrote, just applied to ``data`` (so its path and indexes
        mean what they meant to its writer): Misfit for what it set, or removed, that does
        not fit."""
        name, keys = record[0], record[1]
        kind = self._kind_within(data, keys)
        if name == "set" or name == "insert":
            kind.child(record[2], keys).check(record[3], [*keys, record[2]])
        elif name == "splice":
            for offset, item in enumerate(record[4]):
                index = record[2] + offset
                kind.child(index, keys).check(item, [*keys, index])
        elif name == "delete":
            if not kind.removable(record[2]):
                raise Misfit([*keys, record[2]], f"missing: {kind.name} requires it")
        elif name == "clear" and type(kind) is Fields:
            for key in kind.fields:
                if key in kind.required:
                    raise Misfit([*keys, key], f"missing: {kind.name} requires it")
        # (a reorder moves the items a list holds: they fit as they did)

    def check_at(self, data: dict[Any, Any], keys: list[Any]) -> None:
        """Misfit if the value at ``keys`` in ``data`` (or its absence) does not fit."""
        *within, key = keys
        kind = self._kind_within(data, within)
        value = _value_at(data, keys)
        if value is not _MISSING:
            kind.child(key, within).check(values.plain_copy(value), keys)
        elif isinstance(_value_at(data, within), dict) and not kind.removable(key):
            raise Misfit(keys, f"missing: {kind.name} requires it")

    def check_key(self, data: dict[Any, Any], key: Any) -> None:
        """Misfit if the top-level ``key`` of ``data`` (or its absence) does not fit."""
        value = dict.get(data, key, _MISSING)
        if value is not _MISSING:
            self.top.child(key, []).check(values.plain_copy(value), [key])
        elif key in self.top.required:
            raise Misfit([key], f"missing: {self.owner} requires it")

    def check_data(self, data: dict[Any, Any]) -> None:
        """The whole state's data (``persistedstate set --schema``); TypeError if they do not
        fit, naming the first key that does not."""
        try:
            self.top.check(data, [])
        except Misfit as misfit:
            raise self._refused(misfit) from None

    def _refused(self, misfit: Misfit) -> TypeError:
        return TypeError(
            f"{self.owner} key {misfit.where()}: {misfit.problem}; nothing was written"
        )


def _own_hints(owner: type) -> dict[str, Any]:
    """The class's own annotations, evaluated (its bases' are the inherited schema's)."""
    # (in the class's module, with the class's namespace first: string annotations too)
    return inspect.get_annotations(owner, eval_str=True)


class CheckedCore(core.Core):
    """A core that checks every change against the schema before it is written.

    ``set_scalar`` and ``commit`` are the two ways a change reaches the data (see
    ``proxies.StateCore``). ``commit``'s caller has just called ``path_for_change`` for the
    container of its changes, which notes the container's kind. (The kinds are let go of with
    the data when the state is dropped: a container refers to the core, and that cycle would
    keep a dropped state's file locked.)
    """

    def __init__(
        self,
        file: Any,
        path: str,
        *,
        schema: Schema,
        defaults: Mapping[Any, Any],
        **options: Any,
    ) -> None:
        self.schema = schema
        # id(container) -> (container, its kind). A container stays where it is while it is in
        # the state (values are copied in), so its kind does too; kept, its id is not reused.
        # (Containers refer to their core: let_go empties this, as the core lets go of them.)
        self._kinds: dict[int, tuple[Any, Kind]] = {}
        check = functools.partial(schema.check_file, path, defaults)
        super().__init__(file, path, check=check, **options)
        self._kinds[id(self.data)] = (self.data, schema.top)
        # A top-level key of a scalar type is checked by its value's type alone.
        self._scalar_types = {
            key: kind.accepted for key, kind in schema.top.fields.items() if type(kind) is Exact
        }

    def path_for_change(self, container: proxies.Node) -> str:
        text = super().path_for_change(container)
        cached = self._kinds.get(id(container))
        if cached is None or cached[0] is not container:
            self._kind(container)
        return text

    def _kind(self, container: proxies.Node) -> Kind:
        """The kind of ``container``, one of the state's dicts or lists."""
        cached = self._kinds.get(id(container))
        if cached is not None and cached[0] is container:
            return cached[1]
        kind = self.schema.kind_at(self.data, proxies.locate(container))
        if len(self._kinds) >= _KINDS_CACHE_SIZE:
            self._kinds.clear()
            self._kinds[id(self.data)] = (self.data, self.schema.top)
        self._kinds[id(container)] = (container, kind)
        return kind

    def set_scalar(
        self, container: proxies.LiveDict, key: str, value: Any, encode: Callable[[Any], str]
    ) -> None:
        if container is self.data:
            if type(value) not in self._scalar_types.get(key, ()):
                self.schema.check_set(key, value)
        else:
            change = Set((container, key, value))
            self.schema.check_change(self._kind(container), change, self.data)
        super().set_scalar(container, key, value, encode)

    def let_go(self) -> None:
        super().let_go()
        self._kinds.clear()  # (a container kept after this is found from its noted path)

    def intake(self, owed: core.Intake | None) -> Intake:
        intake = Intake(self.schema, self.path, self.file_path, self.data)
        if isinstance(owed, Intake):  # (a report not raised yet: checked again, first)
            intake.check_again(owed)
        return intake

    def commit(self, records: list[str], changes: list[Change]) -> None:
        for change in changes:
            container = change[0]
            kind = self._kinds[id(container)][1]  # (noted by path_for_change)
            self.schema.check_change(kind, change, self.data)
        super().commit(records, changes)


_KINDS_CACHE_SIZE = 1024  # containers whose kind a typed core keeps


def _located(
    path: str, text: bytes, document: str, misfit: Misfit
) -> tuple[tuple[int, int] | None, Any]:
    """Where the document ``text`` of ``path`` (``document``: decoded) holds what ``misfit``
    refused (the value; the key not declared; what holds a key missing), if it does; and what
    it holds there."""
    found = _value_at(snapshot.load_snapshot(path, text), misfit.path)
    if misfit.value is not _MISSING:
        # (the document may hold another value there, which a journal record replaced)
        if values.exactly_equal(found, misfit.value):
            return snapshot.position_of(document, misfit.path, at_value=True), found
        return None, found
    if found is not _MISSING:  # a key not declared
        return snapshot.position_of(document, misfit.path), found
    if len(misfit.path) > 1:  # a required key of a TypedDict missing: what holds it
        return snapshot.position_of(document, misfit.path[:-1]), found
    return None, found


def _value_at(data: Any, keys: list[Any], missing: Any = _MISSING) -> Any:
    """What ``data`` holds at ``keys``, read as plain data (a state's own containers' reads
    would raise a report the program is owed: see core.Core._owe)."""
    try:
        for key in keys:
            data = (dict.__getitem__ if isinstance(data, dict) else list.__getitem__)(data, key)
    except (LookupError, TypeError):
        return missing
    return data


_OR_ASSIGN = "or assign one in the program"


def _path_to(top: dict[Any, Any], container: Any) -> list[Any]:
    """The key path of ``container`` in the state, found by identity (for a message only)."""
    pending: list[tuple[list[Any], Any]] = [([], top)]
    while pending:
        keys, value = pending.pop()
        if value is container:
            return keys
        items = value.items() if isinstance(value, dict) else enumerate(value)
        pending.extend(
            ([*keys, key], item) for key, item in items if isinstance(item, (dict, list))
        )
    raise LookupError("the container is not in the state")  # (never: it was just located)


class Intake:
    """Checks the changes a catch-up takes in from other processes (``core.Intake``): each
    record just after it is applied, so its path means what it meant to its writer; at the
    end, whether what did not fit is still there (a later record may have fixed it)."""

    def __init__(self, schema: Schema, path: str, file_path: str, data: dict[Any, Any]) -> None:
        self._schema = schema
        self._path = path  # (as the program named it; file_path: resolved, see taken_in)
        self._file_path = file_path
        self._data = data
        self._found: list[tuple[Misfit, int | None]] = []  # with the offset of its record
        self._offset: int | None = None  # where the records being applied start in the file
        self._replaced = self._everything = False
        self.made: CorruptStateError  # the report, once made (core keeps no intake before)
        self._reported: tuple[Misfit, int | None] | None = None  # (and its record's offset)
        self._again: tuple[Misfit, int | None] | None = None

    def check_again(self, earlier: Intake) -> None:
        """What ``earlier`` reported is still owed to the program: say it again if it is still
        so."""
        self._again = earlier._reported

    def records_at(self, offset: int | None) -> Callable[[list[Any], int], None]:
        self._offset = offset
        return self._applied

    def _applied(self, record: list[Any], at: int) -> None:
        try:
            self._schema.check_record(self._data, record)
        except Misfit as misfit:
            self._found.append((misfit, None if self._offset is None else self._offset + at))

    def replaced(self, *, parsed: bool) -> None:
        self._replaced = True
        self._everything = parsed

    def report(self, snapshot_size: int) -> CorruptStateError | None:
        if self._again is not None:  # (first; its record's line, unless a compaction moved it)
            again, at = self._again
            self._found.insert(0, (again, None if self._replaced else at))
        still = self._still_found()
        if still is None:
            return None
        misfit, offset = self._reported = still
        self.made = self._schema.taken_in(
            self._path, self._file_path, self._data, misfit, offset, snapshot_size
        )
        # (the core keeps this while the report is owed: not the data, which refer to it)
        self._data, self._found = {}, []
        return self.made

    def _still_found(self) -> tuple[Misfit, int | None] | None:
        """The first misfit found that is still there (with its record's offset), if any."""
        schema, data = self._schema, self._data
        if self._everything:  # (the file was parsed whole, as costly as checking it all)
            try:
                schema.top.check(values.plain_copy(data), [])
            except Misfit as anywhere:
                return anywhere, None
        for found, at in self._found:
            try:
                schema.check_at(data, found.path)
            except Misfit as still:
                return still, at
        # Not where it was: fixed by a later record, or moved (an insert before it in the
        # list): its top-level key is checked whole (the first misfit there, wherever).
        for found, _ in self._found:
            try:
                schema.check_key(data, found.path[0])
            except Misfit as moved:
                return moved, None
        return None


class CheckedSharedCore(CheckedCore, core.SharedCore):
    """A shared-mode core that checks every change (``CheckedCore``)."""
