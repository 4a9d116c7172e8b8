"""The value types a state holds, and their one-line encoding for journal records.

A state holds *plain data*: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``,
``datetime.date``, ``datetime.datetime``, ``list``, ``tuple`` (stored as a list) and ``dict``
with ``str``, ``int``, ``float``, ``bool`` or ``None`` keys. Subclasses of ``int``, ``float``,
``str``, ``dict`` and ``list`` are stored as their base type. :data:`VALUE_TYPES` has a row
for each type with every rule that depends on it.

:func:`prepare` is the single gate through which every value enters a state. In one walk it
checks the types, takes a private deep copy (so later changes to the caller's object do not leak
in, and no container is ever shared between two places in the tree) and encodes the value as
flow text. That text is YAML, and when the value only uses JSON types it is also JSON that means
the same thing to both parsers, so replay can use the fast ``json.loads``.
"""

from __future__ import annotations

import base64
import datetime
import math
import re
from collections.abc import Callable, Iterable, Mapping
from json.encoder import encode_basestring

TYPE_CHECKING = False  # (typing's, without importing typing: docs/design.md, Memory)
if TYPE_CHECKING:
    from typing import Any

# Characters a YAML reader treats as line breaks or rejects as non-printable, which
# json's escaping leaves as they are; they are written as \uXXXX escapes instead.
_YAML_UNSAFE_CHARS = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
# Lone surrogates (from surrogateescape decoding, say) are not Unicode text: UTF-8 has no form
# for them, so no file could hold them.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Python refuses to convert ints of more than 4300 decimal digits to text (and back) by
# default; bigger ints are written in hexadecimal, which YAML reads as an int too.
_DECIMAL_INT_MAX_BITS = 12_000
# YAML limits implicit mapping keys to 1024 characters; longer ones get an explicit "? ".
_IMPLICIT_KEY_MAX = 1000

# The deepest nesting of dicts and lists a state may hold, the top mapping included: deep
# enough for any real state, shallow enough that every recursive walk (ours, PyYAML's,
# ruamel.yaml's) stays far from Python's recursion limit.
MAX_DEPTH = 100
_NAN_KEY = "nan cannot be a dict key: it is not equal to itself, so it could never be found"
_TOO_DEEP = f"cannot store dicts and lists nested more than {MAX_DEPTH} levels deep"


class UnsupportedValue(Exception):
    """Raised inside the walk; ``key_path`` grows as the error travels up."""

    def __init__(self, message: str, value_error: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.value_error = value_error
        self.key_path: list[Any] = []

    def to_builtin(self, prefix: list[Any] | None = None) -> Exception:
        """The TypeError (or ValueError) shown to the user, naming where the value sits."""
        where = [*(prefix or []), *self.key_path]
        text = f"{self.message} (at key path {where})" if where else self.message
        return ValueError(text) if self.value_error else TypeError(text)


def str_text(value: str) -> str:
    """A double-quoted string that JSON and YAML both read back as ``value``.

    Raises UnsupportedValue (a ValueError for the user) for a lone surrogate.
    """
    text = encode_basestring(value)
    if text.isascii() and "\x7f" not in text:
        return text
    surrogate = _SURROGATE.search(value)
    if surrogate is not None:
        raise UnsupportedValue(
            f"cannot store a str holding the lone surrogate {surrogate.group()!r} at index "
            f"{surrogate.start()}: UTF-8 cannot encode it",
            value_error=True,
        )
    return _YAML_UNSAFE_CHARS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def bool_text(value: bool) -> str:
    return "true" if value else "false"


def int_text(value: int) -> str:
    if value.bit_length() > _DECIMAL_INT_MAX_BITS:
        return hex(value)
    return str(value)


def float_text(value: float) -> str:
    if math.isfinite(value):
        text = repr(value)
        # YAML 1.1 needs a dot in a float ("1e+16" would read back as a string).
        if "." not in text:
            text = text.replace("e", ".0e", 1) if "e" in text else text + ".0"
        return text
    if value != value:
        return ".nan"
    return ".inf" if value > 0 else "-.inf"


def null_text(value: None) -> str:
    return "null"


def binary_text(value: bytes) -> str:
    return '!!binary "' + base64.b64encode(value).decode("ascii") + '"'


def timestamp_text(value: datetime.date) -> str:
    if isinstance(value, datetime.datetime):
        offset = value.utcoffset()
        if offset is not None and (offset.seconds % 60 or offset.microseconds):
            raise UnsupportedValue(
                f"cannot store {value!r}: YAML timestamps hold UTC offsets in whole minutes",
                value_error=True,
            )
        return '!!timestamp "' + value.isoformat(" ") + '"'
    return '!!timestamp "' + value.isoformat() + '"'


# How two values of one type compare exactly (exactly_equal has checked that the types match).


def _equal(left: Any, right: Any) -> bool:
    return bool(left == right)


def _floats_exactly_equal(left: float, right: float) -> bool:
    if left != left:
        return right != right  # nan is nan
    return left == right and math.copysign(1.0, left) == math.copysign(1.0, right)  # -0.0


def _datetimes_exactly_equal(left: datetime.datetime, right: datetime.datetime) -> bool:
    return left == right and left.utcoffset() == right.utcoffset()


def _lists_exactly_equal(left: list[Any], right: list[Any]) -> bool:
    return list.__len__(left) == list.__len__(right) and all(
        map(exactly_equal, list.copy(left), list.copy(right))
    )


def _dicts_exactly_equal(left: dict[Any, Any], right: dict[Any, Any]) -> bool:
    return (
        dict.__len__(left) == dict.__len__(right)
        and all(map(exactly_equal, dict.keys(left), dict.keys(right)))
        and all(map(exactly_equal, dict.values(left), dict.values(right)))
    )


class ValueType:
    """A type a state holds, and every rule that depends on it: one row of VALUE_TYPES.

    (A plain class, not a NamedTuple: typing is not imported at run time.)
    """

    __slots__ = (
        "also_from",
        "cli_name",
        "exactly_equal",
        "flow_text",
        "kept_as_given",
        "key",
        "mutable",
        "name",
        "python_type",
        "yaml_tag",
    )

    def __init__(
        self,
        python_type: type,
        name: str,  # as the docs and error messages spell it
        cli_name: str,  # what the `persistedstate` command calls a value of this type
        yaml_tag: str,  # its tag in the snapshot
        flow_text: Callable[[Any], str] | None,  # its journal text (a container's: the walk's)
        exactly_equal: Callable[[Any, Any], bool] = _equal,  # equal in value and type, deeply
        *,
        key: bool = False,  # may be a dict key
        mutable: bool = False,  # copied deeply wherever a state takes or gives one; else shared
        also_from: tuple[type, ...] = (),  # other types stored as this one
        kept_as_given: bool = True,  # memory holds the value itself (else what a reopen gives)
    ) -> None:
        self.python_type = python_type
        self.name = name
        self.cli_name = cli_name
        self.yaml_tag = yaml_tag
        self.flow_text = flow_text
        self.exactly_equal = exactly_equal
        self.key = key
        self.mutable = mutable
        self.also_from = also_from
        self.kept_as_given = kept_as_given


_TAG = "tag:yaml.org,2002:"

# The one list of the types a state holds. The lists below derive from it; the ones written
# out for speed (the chains in _prepare, key_text and plain_copy) and the prose ones (this
# module's docstring, the README) are checked against it by tests/test_value_types.py.
VALUE_TYPES = (
    ValueType(type(None), "None", "null", _TAG + "null", null_text, key=True),
    ValueType(bool, "bool", "a boolean", _TAG + "bool", bool_text, key=True),
    ValueType(int, "int", "an int", _TAG + "int", int_text, key=True),
    ValueType(
        float, "float", "a float", _TAG + "float", float_text, _floats_exactly_equal, key=True
    ),
    ValueType(str, "str", "a string", _TAG + "str", str_text, key=True),
    ValueType(bytes, "bytes", "bytes", _TAG + "binary", binary_text),
    ValueType(datetime.date, "datetime.date", "a date", _TAG + "timestamp", timestamp_text),
    ValueType(
        datetime.datetime,
        "datetime.datetime",
        "a timestamp",
        _TAG + "timestamp",
        timestamp_text,
        _datetimes_exactly_equal,
        kept_as_given=False,  # (see _stored_datetime)
    ),
    ValueType(
        list,
        "list",
        "a list",
        _TAG + "seq",
        None,
        _lists_exactly_equal,
        mutable=True,
        also_from=(tuple,),
    ),
    ValueType(dict, "dict", "a mapping", _TAG + "map", None, _dicts_exactly_equal, mutable=True),
)


def _names(names: list[str], last: str) -> str:
    """``a, b and c``, or with another last word."""
    return ", ".join(names[:-1]) + f" {last} " + names[-1]


# The flow text of the exact immutable types (not subclasses) that memory keeps as given, for
# the hot paths: such a value needs no copy and no conversion.
SCALAR_TEXT: dict[type, Callable[[Any], str]] = {
    row.python_type: row.flow_text
    for row in VALUE_TYPES
    if row.flow_text is not None and row.kept_as_given
}
KEY_TYPES = tuple(row.python_type for row in VALUE_TYPES if row.key)
_KEY_NAMES = _names([row.name for row in VALUE_TYPES if row.key], "or")
_SUPPORTED = _names(
    [name for row in VALUE_TYPES for name in (row.name, *(t.__name__ for t in row.also_from))],
    "and",
)
_IMMUTABLE_TYPES = frozenset(row.python_type for row in VALUE_TYPES if not row.mutable)
_EXACTLY_EQUAL = {row.python_type: row.exactly_equal for row in VALUE_TYPES}


def key_text(key: Any) -> tuple[Any, str]:
    """The stored form of a dict key and its flow text; raises UnsupportedValue."""
    kind = type(key)
    if kind is str:
        text = str_text(key)
    elif kind is int:
        text = int_text(key)
    elif kind is bool:
        text = bool_text(key)
    elif key is None:
        text = "null"
    elif kind is float:
        if key != key:
            raise UnsupportedValue(_NAN_KEY, value_error=True)
        text = float_text(key)
    elif isinstance(key, (str, int, float)):
        return key_text(_base_value(key))
    else:
        raise UnsupportedValue(f"cannot use a {kind.__name__} as a dict key; keys are {_KEY_NAMES}")
    return key, text


def key_path(keys: Iterable[Any]) -> str:
    """Keys as a PATH of the command line (README, "PATH: naming a value"):
    ``settings.batch``, ``'"a.b".c'``. A string key that could be read as something else (a
    number, ``true``, a dot in it, ...) is quoted, so that it is taken as that string."""
    return ".".join(map(_path_key, keys))


def _path_key(key: Any) -> str:
    if type(key) is not str:
        return key_text(key)[1]
    if _PLAIN_KEY.fullmatch(key) and key not in ("true", "false", "null"):
        return key
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _base_value(value: Any) -> Any:
    """The built-in value of an int, float or str subclass instance (bool stays bool)."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str.__str__(value)


def prepare(value: Any, room: int = MAX_DEPTH - 1) -> tuple[Any, str]:
    """Check ``value``, copy it and encode it: ``(private_copy, flow_text)``.

    ``room`` is how many levels of nested containers may still go below the place the value
    is stored. Raises UnsupportedValue for a type the state cannot hold, a circular reference
    or nesting deeper than that.
    """
    encode = SCALAR_TEXT.get(type(value))
    if encode is not None:  # (the common case, without the walk's set)
        return value, encode(value)
    return _prepare(value, set(), room)


def _prepare(value: Any, active: set[int], room: int) -> tuple[Any, str]:
    kind = type(value)
    # The encoders of SCALAR_TEXT, tested in turn: in this loop that is 12% faster than the
    # table (measured on a dict of 150 scalars). A test checks that the chain takes exactly
    # the types of VALUE_TYPES.
    if kind is str:
        return value, str_text(value)
    if kind is int:
        return value, int_text(value)
    if kind is float:
        return value, float_text(value)
    if kind is bool:
        return value, bool_text(value)
    if value is None:
        return None, "null"
    if kind in _DICT_TYPES:
        return _prepare_dict(_dict_items(value), value, active, room)
    if kind in _LIST_TYPES:
        return _prepare_list(_list_copy(value), value, active, room)
    if isinstance(value, (dict, Mapping)):
        return _prepare_dict(value.items(), value, active, room)
    if isinstance(value, (list, tuple)):
        return _prepare_list(value, value, active, room)
    if kind is bytes:
        return value, binary_text(value)
    if isinstance(value, datetime.date):
        if kind is not datetime.date:
            value = _stored_datetime(value)
        return value, timestamp_text(value)
    if isinstance(value, (str, int, float)):
        return _prepare(_base_value(value), active, room)
    raise UnsupportedValue(f"cannot store a value of type {kind.__name__}; supported: {_SUPPORTED}")


# The containers of a state's data are subclasses of dict and list: made as ``new_dict`` and
# ``new_list``, which become one of the ``live`` types once a program reads them (their changes
# then reach the file). proxies.py defines them and registers them here, since this module
# cannot import it. The base classes' methods read them without a record.
new_dict: type[dict[Any, Any]] = dict
new_list: type[list[Any]] = list
_DICT_TYPES: frozenset[type] = frozenset({dict})  # every type of dict, plain or a state's
_LIST_TYPES: frozenset[type] = frozenset({list})
_dict_items = dict.items
_list_copy = list.copy


def register_containers(
    dict_type: type[dict[Any, Any]],
    list_type: type[list[Any]],
    live_dict_types: tuple[type, ...],
    live_list_types: tuple[type, ...],
) -> None:
    """Make the data of a state of ``dict_type`` and ``list_type``, which become one of the
    live types when read."""
    global new_dict, new_list, _DICT_TYPES, _LIST_TYPES
    new_dict, new_list = dict_type, list_type
    _DICT_TYPES = frozenset({dict, dict_type, *live_dict_types})
    _LIST_TYPES = frozenset({list, list_type, *live_list_types})


def _stored_datetime(value: datetime.date) -> datetime.date:
    """What a state holds for a date or datetime: what reading its file gives back.

    A plain ``date`` for a date subclass. A datetime is written with its UTC offset, so an
    aware one is kept with a fixed-offset timezone (``timezone(offset)``) and ``fold=0``: the
    same moment, the same wall time and offset, and equal to a reopen's in every way (a
    ``zoneinfo`` zone, or a ``fold`` that chose between two offsets, would not be). A naive
    datetime with ``fold=1`` (the second of two equal wall times, as ``datetime.now()`` gives
    in the hour repeated when clocks go back) cannot be written: UnsupportedValue.
    """
    if not isinstance(value, datetime.datetime):
        return datetime.date(value.year, value.month, value.day)
    offset = value.utcoffset()
    if offset is None:
        if value.fold:
            raise UnsupportedValue(
                f"cannot store {value!r}: a YAML timestamp cannot say which of two equal "
                "wall times a naive datetime with fold=1 is; store an aware datetime "
                "(datetime.now().astimezone(), or datetime.now(datetime.timezone.utc)), "
                "or the wall time alone (.replace(fold=0))",
                value_error=True,
            )
        zone = None
    else:  # (a new timezone also drops a name given to one: a reopen has none)
        zone = datetime.timezone(offset)
    if type(value) is datetime.datetime and zone is value.tzinfo and not value.fold:
        return value  # (already in the stored form: naive, or timezone.utc)
    return datetime.datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        zone,
    )


def _enter(container: Any, active: set[int], room: int) -> None:
    if id(container) in active:
        raise UnsupportedValue("cannot store a circular reference", value_error=True)
    if len(active) >= room:
        raise UnsupportedValue(_TOO_DEEP, value_error=True)
    active.add(id(container))


def _prepare_dict(
    items: Iterable[tuple[Any, Any]], value: Any, active: set[int], room: int
) -> tuple[Any, str]:
    """The copy and text of ``value``, a mapping whose ``items`` are given."""
    _enter(value, active, room)
    copy: dict[Any, Any] = {}
    parts = []
    for key, item in items:
        try:
            stored_key, text = key_text(key)
            item_copy, item_text = _prepare(item, active, room)
        except UnsupportedValue as error:
            error.key_path.insert(0, key)
            raise
        copy[stored_key] = item_copy
        if len(text) > _IMPLICIT_KEY_MAX:
            text = "? " + text
        parts.append(f"{text}: {item_text}")
    active.discard(id(value))
    return new_dict(copy), "{" + ", ".join(parts) + "}"


def _prepare_list(items: Iterable[Any], value: Any, active: set[int], room: int) -> tuple[Any, str]:
    """The copy and text of ``value``, a sequence of ``items``."""
    _enter(value, active, room)
    copy = []
    parts = []
    for index, item in enumerate(items):
        try:
            item_copy, item_text = _prepare(item, active, room)
        except UnsupportedValue as error:
            error.key_path.insert(0, index)
            raise
        copy.append(item_copy)
        parts.append(item_text)
    active.discard(id(value))
    return new_list(copy), "[" + ", ".join(parts) + "]"


def plain_copy(raw: Any) -> Any:
    """A deep copy, in plain dicts and lists, of data already in a state (or valid for one)."""
    kind = type(raw)
    if kind in _DICT_TYPES:
        return {key: plain_copy(item) for key, item in _dict_items(raw)}
    if kind in _LIST_TYPES:
        return [plain_copy(item) for item in _list_copy(raw)]
    return raw


def stored_like(container: Any, data: Any) -> Any:
    """``data``, valid plain data (a journal record's value), in the kind of containers that
    ``container`` is: a state's own when it is one of them, else as it is."""
    if type(container) is dict or type(container) is list:
        return data
    return _stored(data)


def _stored(data: Any) -> Any:
    # Without recursion: a damaged record may nest deeper than Python's recursion limit (where
    # json reads it, as 3.13's does), and replay refuses it only once it is applied.
    if type(data) is not dict and type(data) is not list:
        return data
    found: list[tuple[Any, Any, Any]] = []  # (parent, key, container), parents first
    pending: list[tuple[Any, Any, Any]] = [(None, None, data)]
    while pending:
        entry = pending.pop()
        found.append(entry)
        node = entry[2]
        items = node.items() if type(node) is dict else enumerate(node)
        pending.extend((node, key, item) for key, item in items if type(item) in (dict, list))
    made = data
    for parent, key, node in reversed(found):  # (children first: each is copied into its own)
        made = new_dict(node) if type(node) is dict else new_list(node)
        if parent is not None:
            parent[key] = made
    return made


def check_loaded(data: Any, *, stored: bool = False) -> Any:
    """Validate data a YAML parser built; return it with shared containers unshared, in a
    state's own dicts and lists if ``stored``.

    YAML anchors and aliases make one object appear in several places; a state needs each
    container in exactly one place, so repeats become independent copies. Raises
    UnsupportedValue (a ``!!set``, a date used as a key, a recursive alias, ...).
    """
    return _check_loaded(data, set(), set(), stored)


# (libyaml refuses such an escape itself; PyYAML's pure-Python reader builds the string.)
_LOADED_SURROGATE = "a string with a lone surrogate (\\ud800-\\udfff), which no UTF-8 text holds"


def _check_loaded(data: Any, seen: set[int], active: set[int], stored: bool) -> Any:
    kind = type(data)
    if kind is dict or kind is list:
        if id(data) in active:
            raise UnsupportedValue("an alias refers to a mapping or list that contains it")
        if len(active) >= MAX_DEPTH:
            raise UnsupportedValue(_TOO_DEEP)
        if id(data) in seen:
            data = plain_copy(data)
        seen.add(id(data))
        active.add(id(data))
        if kind is dict:
            for key, item in data.items():
                if (
                    type(key) not in KEY_TYPES
                    or key != key
                    or (type(key) is str and not key.isascii() and _SURROGATE.search(key))
                ):
                    error = UnsupportedValue(
                        _NAN_KEY
                        if type(key) is float
                        else _LOADED_SURROGATE
                        if type(key) is str
                        else f"a {type(key).__name__} cannot be a key (keys are {_KEY_NAMES})"
                    )
                    error.key_path.append(key)
                    raise error
                try:
                    checked = _check_loaded(item, seen, active, stored)
                except UnsupportedValue as error:
                    error.key_path.insert(0, key)
                    raise
                if checked is not item:
                    data[key] = checked
            active.discard(id(data))
            return new_dict(data) if stored else data
        for index, item in enumerate(data):
            try:
                checked = _check_loaded(item, seen, active, stored)
            except UnsupportedValue as error:
                error.key_path.insert(0, index)
                raise
            if checked is not item:
                data[index] = checked
        active.discard(id(data))
        return new_list(data) if stored else data
    if kind is str and not data.isascii() and _SURROGATE.search(data):
        raise UnsupportedValue(_LOADED_SURROGATE)
    if kind in _IMMUTABLE_TYPES:
        return data
    if kind is tuple:  # !!omap and !!pairs build lists of tuples
        return _check_loaded(list(data), seen, active, stored)
    raise UnsupportedValue(f"a {kind.__name__} value is not supported")


def exactly_equal(left: Any, right: Any) -> bool:
    """Equal in value and type all the way down, dict keys in the same order.

    ``nan`` equals ``nan``; ``-0.0`` does not equal ``0.0``; a dict or list of a state's data
    is of the same type as a plain one.
    """
    kind = _plain_type(left)
    if kind is not _plain_type(right):
        return False
    return _EXACTLY_EQUAL.get(kind, _equal)(left, right)


def _plain_type(value: Any) -> type:
    """The type of ``value``, a state's dicts and lists counting as dict and list."""
    kind = type(value)
    if kind in _DICT_TYPES:
        return dict
    return list if kind in _LIST_TYPES else kind


def deeper_than(data: Any, limit: int) -> bool:
    """Whether ``data`` nests dicts and lists more than ``limit`` levels (no recursion)."""
    stack = [(data, 1)]
    while stack:
        item, level = stack.pop()
        kind = _plain_type(item)
        if kind is dict or kind is list:
            if level > limit:
                return True
            children = dict.values(item) if kind is dict else list.copy(item)
            stack.extend((child, level + 1) for child in children)
    return False
