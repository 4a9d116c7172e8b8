"""README.md "Values": every supported value comes back with the same type and value.

Three ways back are checked for each value: (a) the journal (the file's bytes copied while the
state is still open, as a crash would leave them), (b) the snapshot written by close(), also
read by ``yaml.safe_load``, and (c) reopening with PersistedState. Unsupported values raise
TypeError (ValueError for a circular reference) and change neither memory nor the file.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import fractions
import functools
import math
import os
import tempfile
import zoneinfo
from typing import Any

import pytest
from conftest import (
    assert_same,
    assert_single_document,
    crash_copy,
    file_bytes,
    first_difference,
    normalized,
    plain,
    values,
)
from hypothesis import HealthCheck, given, settings

import persistedstate
from persistedstate import PersistedState

UTC = datetime.timezone.utc
IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
PST = datetime.timezone(datetime.timedelta(hours=-8))


def _nested_list(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def _nested_dict(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = {f"k{level}": value, level: [value] if level % 10 == 0 else level}
    return value


CONTROL_CHARACTERS = [chr(code) for code in range(0x20)] + ["\x7f", "\x85", "\u2028", "\u2029"]
CONTROL_CHARACTERS.append("\ufeff")

SUPPORTED: list[tuple[str, Any]] = [
    ("none", None),
    ("true", True),
    ("false", False),
    ("zero", 0),
    ("one", 1),
    ("minus-one", -1),
    ("int64-edge", 2**63),
    ("int64-edge-negative", -(2**63) - 1),
    ("huge-10**5000", 10**5000),
    ("huge-negative", -(10**5000)),
    ("huge-4299-digits", 10**4298 + 1),
    ("huge-4301-digits", 10**4300 + 1),
    ("huge-2**12000", 2**12000),
    ("huge-2**12001-1", 2**12001 - 1),
    ("huge-negative-2**13000", -(2**13000)),
    ("float-zero", 0.0),
    ("float-negative-zero", -0.0),
    ("float-1e16", 1e16),
    ("float-1e22", 1e22),
    ("float-5e-324", 5e-324),
    ("float-max", 1.7976931348623157e308),
    ("float-tenth", 0.1),
    ("float-small", -2.5e-300),
    ("float-1e-7", 1e-7),
    ("float-integral", 3.0),
    ("inf", math.inf),
    ("minus-inf", -math.inf),
    ("nan", math.nan),
    ("empty-string", ""),
    ("space", " "),
    ("all-control-characters", "".join(CONTROL_CHARACTERS)),
    ("controls-in-text", "a\x00b\x1bc\x7fd\x85e\u2028f\u2029g\ufeffh"),
    *(
        (f"yaml-lookalike-{text!r}", text)
        for text in [
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "true",
            "False",
            "null",
            "Null",
            "~",
            "012",
            "0o17",
            "0x1F",
            "0b101",
            "1_000",
            "1e3",
            "1.5",
            "-1",
            ".inf",
            "-.inf",
            ".nan",
            ".NaN",
            "2026-01-01",
            "2026-01-01 10:00:00",
            "12:30:00",
            "- a",
            "a: b",
            "a:b",
            "#x",
            "a #x",
            " leading space",
            "trailing space ",
            "trailing\n\n",
            "\n",
            "\nleading newline",
            "<<",
            "=",
            "!",
            "!!str",
            "&anchor",
            "*alias",
            "|",
            ">",
            "%YAML",
            "@",
            "`",
            "'",
            '"',
            "---",
            "...",
            "--- x",
            "---\n[1]",
            "? a",
            "{a: 1}",
            "[1, 2]",
            "[",
            "{",
        ]
    ),
    ("non-ascii", "héllo wörld, Ωμέγα, 日本語, العربية"),
    ("emoji", "😀👍🏽🏳️‍🌈 \U0010ffff"),
    ("private-use-and-noncharacters", "\ue000\ufffd\ufffe\uffff"),
    ("multi-line", "line 1\nline 2\n\n  indented line\nlast line without newline"),
    ("multi-line-trailing-space", "first \nsecond  \n  "),
    ("windows-line-endings", "a\r\nb\r\n"),
    ("carriage-return", "a\rb"),
    ("tabs", "\tcol1\tcol2\t"),
    ("long-words", "word " * 200),
    ("long-line", "x" * 5000),
    ("bytes-empty", b""),
    ("bytes-text", b"hello"),
    ("bytes-binary", bytes(range(256)) * 3),
    ("bytes-nul", b"\x00"),
    ("date", datetime.date(2026, 1, 1)),
    ("date-min", datetime.date(1, 1, 1)),
    ("date-max", datetime.date(9999, 12, 31)),
    ("datetime-naive", datetime.datetime(2026, 1, 2, 3, 4, 5)),
    ("datetime-naive-microseconds", datetime.datetime(2026, 1, 2, 3, 4, 5, 678901)),
    ("datetime-naive-one-microsecond", datetime.datetime(2026, 1, 2, 3, 4, 5, 1)),
    ("datetime-midnight", datetime.datetime(2026, 1, 2)),
    ("datetime-utc", datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)),
    ("datetime-plus-0530", datetime.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=IST)),
    ("datetime-minus-0800", datetime.datetime(2026, 12, 31, 23, 59, 59, tzinfo=PST)),
    ("datetime-min", datetime.datetime(1, 1, 1)),
    ("datetime-max", datetime.datetime(9999, 12, 31, 23, 59, 59, 999999)),
    ("list-empty", []),
    ("list", [1, "two", 3.0, None, True, b"x", datetime.date(2026, 1, 1)]),
    ("tuple-empty", ()),
    ("tuple", (1, 2, 3)),
    ("tuple-nested", (1, (2, (3, ())), [4, (5,)], {"t": (6,)})),
    ("dict-empty", {}),
    ("dict-key-types", {"a": 1, 2: "b", 2.5: "c", True: "d", None: "e", -7: "f"}),
    (
        "dict-lookalike-keys",
        {
            "1": 1,
            1: 2,
            "null": 3,
            None: 4,
            "true": 5,
            False: 6,
            "": 7,
            "-0.0": 8,
            -0.5: 9,
            math.inf: 10,
            -math.inf: 11,
            "a: b": 12,
            "- x": 13,
            "? q": 14,
            "#c": 15,
            "<<": 16,
            "=": 17,
            "x\ny": 18,
            "\x00\x85\u2028": 19,
            " ": 20,
            "2026-01-01": 21,
            "0x10": 22,
            10**5000: 23,
            "k" * 2000: 24,
        },
    ),
    ("dict-negative-zero-key", {-0.0: "negative zero key"}),
    ("dict-bool-keys", {True: 1, False: 0}),
    ("dict-in-list-in-dict", {"a": [{"b": [{"c": []}, {}]}, [[]]]}),
    ("empties", [[], {}, "", b"", (), [[]], [{}], {"a": {}}]),
    # Deep, but within the 100 levels docs/design.md allows (the top mapping and the
    # containers check_round_trip puts around the value included).
    ("deep-list", _nested_list(90)),
    ("deep-dict", _nested_dict(45)),
]


def _ids(cases: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in cases]


def check_round_trip(directory: str, value: Any) -> None:
    """Store ``value`` with every kind of journal record, then read it back three ways."""
    path = os.path.join(directory, "values.state")
    expected_value = normalized(value)
    expected = {
        "set": expected_value,
        "appended": [expected_value],
        "extended": [0, expected_value, expected_value],
        "inserted": [expected_value, 1],
        "updated": {"k": expected_value},
        "nested": {"deeper": [expected_value]},
    }
    state = PersistedState(path)
    try:
        state["set"] = value
        state["appended"] = []
        state["appended"].append(value)
        state["extended"] = [0]
        state["extended"].extend([value, value])
        state["inserted"] = [1]
        state["inserted"].insert(0, value)
        state["updated"] = {}
        state["updated"].update(k=value)
        state["nested"] = {"deeper": []}
        state["nested"]["deeper"] += [value]

        # In memory, through the proxies' plain copy.
        assert_same(state.copy(), expected)
        # (a) the journal, as a crash would leave it.
        assert_same(crash_copy(path, os.path.join(directory, "crash.state")), expected)
        # ... and a reopen of that copy with PersistedState.
        with PersistedState(os.path.join(directory, "crash.state")) as copy_state:
            assert_same(copy_state.copy(), expected)
    finally:
        state.close()
    # (b) the snapshot, read by load() and by any YAML reader, and (c) a reopen.
    assert_closed_file_holds(path, expected)
    with PersistedState(path) as state:
        assert_same(plain(state["set"]), expected_value)


@pytest.mark.parametrize("value", [value for _, value in SUPPORTED], ids=_ids(SUPPORTED))
def test_value_round_trips(tmp_path: Any, value: Any) -> None:
    check_round_trip(str(tmp_path), value)


def assert_closed_file_holds(path: str, expected: Any) -> None:
    """After close(): load() and any YAML reader see ``expected``, and so does a reopen."""
    assert_same(persistedstate.load(path), expected)
    assert_single_document(path, expected)
    with PersistedState(path) as state:
        assert_same(state.copy(), expected)


KEYS: list[tuple[str, Any]] = [
    (name, value)
    for name, value in SUPPORTED
    if (value is None or type(value) in (str, int, float, bool)) and value == value  # not nan
]
KEYS += [
    ("key-1001-characters", "k" * 1001),
    ("key-999-characters", "k" * 999),
    ("key-long-with-spaces", "a long key " * 120),
]


def check_key_round_trip(directory: str, key: Any) -> None:
    """A key in every place a record names one: as the key set, deleted, and in a path."""
    path = os.path.join(directory, "keys.state")
    state = PersistedState(path)
    try:
        state[key] = {}  # the key of a "set" record (top level)
        state[key][key] = []  # the key in the path of a record, and set in a nested dict
        state[key][key].append(key)  # the path of an "insert" record holds the key twice
        state["other"] = {key: 1, "x": 2}
        del state["other"][key]  # the key of a "delete" record
        state.setdefault("gone", {})[key] = 3
        state["gone"].pop(key)
        key_copy = normalized(key)
        expected = {key_copy: {key_copy: [key_copy]}, "other": {"x": 2}, "gone": {}}
        assert_same(state.copy(), expected)
        assert_same(crash_copy(path, os.path.join(directory, "crash.state")), expected)
    finally:
        state.close()
    assert_closed_file_holds(path, expected)


@pytest.mark.parametrize("key", [value for _, value in KEYS], ids=_ids(KEYS))
def test_key_round_trips(tmp_path: Any, key: Any) -> None:
    check_key_round_trip(str(tmp_path), key)


@pytest.mark.parametrize(
    "character", CONTROL_CHARACTERS, ids=[hex(ord(c)) for c in CONTROL_CHARACTERS]
)
def test_each_control_character_round_trips(tmp_path: Any, character: str) -> None:
    check_round_trip(str(tmp_path), {character: [character, f"a{character}b", character * 3]})


def test_all_values_together_round_trip(tmp_path: Any) -> None:
    check_round_trip(str(tmp_path), {name: value for name, value in SUPPORTED})


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(values(max_leaves=20))
def test_any_value_round_trips(value: Any) -> None:
    with tempfile.TemporaryDirectory() as directory:
        check_round_trip(directory, value)


def test_value_shared_by_two_entries_survives_compaction(state_path: str) -> None:
    """One date object in two top-level entries; then only one entry changes."""
    state = PersistedState(state_path)
    state.x = {"when": datetime.datetime(2000, 1, 1)}
    state.y = state.x  # a copy: the datetime inside is the same (immutable) object
    state.compact()
    state.x = {"when": datetime.datetime(2001, 1, 1)}
    state.compact()
    expected = {
        "x": {"when": datetime.datetime(2001, 1, 1)},
        "y": {"when": datetime.datetime(2000, 1, 1)},
    }
    assert_same(persistedstate.load(state_path), expected)
    state.close()
    assert_same(persistedstate.load(state_path), expected)
    assert_single_document(state_path, expected)


def test_value_shared_by_two_entries_keeps_its_value(state_path: str) -> None:
    first, second = datetime.date(2001, 1, 1), datetime.date(2002, 2, 2)
    state = PersistedState(state_path)
    state.x = {"a": first}
    state.y = {"b": state.x["a"]}  # the same date object in two entries
    state.compact()
    state.x = {"a": second, "c": second}
    state.close()
    expected = {"x": {"a": second, "c": second}, "y": {"b": first}}
    assert_same(persistedstate.load(state_path), expected)
    with PersistedState(state_path) as reopened:
        assert_same(reopened.copy(), expected)


@pytest.mark.parametrize(
    ("old_key", "new_key"),
    [(0, False), (False, 0), (1, True), (True, 1), (1, 1.0), (0, -0.0), (2.0, 2)],
    ids=repr,
)
def test_key_of_another_type_replacing_an_equal_key(
    state_path: str, old_key: Any, new_key: Any
) -> None:
    """``0 == False``: a key deleted and then set again with the other type keeps that type."""
    state = PersistedState(state_path)
    state[old_key] = None
    state.other = 1
    state.compact()
    del state[old_key]
    state[new_key] = None
    expected = {"other": 1, new_key: None}
    assert_same(state.copy(), expected)
    state.compact()
    assert_same(persistedstate.load(state_path), expected)
    state.close()
    assert_same(persistedstate.load(state_path), expected)


def test_snapshot_keeps_unicode_unescaped(state_path: str) -> None:
    """README.md "The file": the snapshot is UTF-8 with Unicode as is (unescaped)."""
    with PersistedState(state_path) as state:
        state.text = "héllo 日本語"
        state["clé"] = 1
    text = file_bytes(state_path).decode("utf-8")
    assert "héllo 日本語" in text
    assert "clé" in text


def test_snapshot_keeps_emoji_unescaped(state_path: str) -> None:
    """Characters beyond the BMP are Unicode too: the snapshot shows them as they are."""
    with PersistedState(state_path) as state:
        state.text = "party 🎉 time"
        state["😀"] = "key"
    text = file_bytes(state_path).decode("utf-8")
    assert "party 🎉 time" in text, text
    assert "😀" in text, text


def test_tuple_comes_back_as_list(state: PersistedState) -> None:
    state.point = (1, 2)
    assert type(state.copy()["point"]) is list
    assert state.point == [1, 2]


# -- unsupported values ------------------------------------------------------------------------


class _Custom:
    pass


def _circular_list() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


def _circular_dict() -> dict[str, Any]:
    mapping: dict[str, Any] = {"a": 1}
    mapping["self"] = {"inner": [mapping]}
    return mapping


UNSUPPORTED: list[tuple[str, Any]] = [
    ("set", {1, 2}),
    ("frozenset", frozenset({1})),
    ("object", object()),
    ("custom-object", _Custom()),
    ("complex", complex(1, 2)),
    ("decimal", decimal.Decimal("1.5")),
    ("fraction", fractions.Fraction(1, 3)),
    ("bytearray", bytearray(b"x")),
    ("time", datetime.time(12, 0)),
    ("timedelta", datetime.timedelta(days=1)),
    ("type", int),
    ("function", len),
    ("range", range(3)),
    ("tuple-key", {(1, 2): "value"}),
    ("bytes-key", {b"k": 1}),
    ("date-key", {datetime.date(2026, 1, 1): 1}),
    ("frozenset-key", {frozenset(): 1}),
    ("nested-set", {"a": [1, 2, {"b": {3}}]}),
    ("set-in-tuple", (1, (2, {3}))),
    ("set-last-in-list", [1, 2, 3, {4}]),
    ("deque", collections.deque([1])),
]
CIRCULAR: list[tuple[str, Any]] = [
    ("circular-list", _circular_list()),
    ("circular-dict", _circular_dict()),
]
# Values of supported types that still cannot be stored exactly: ValueError.
IMPOSSIBLE: list[tuple[str, Any]] = [
    ("nan-key", {math.nan: "nan is not equal to itself: two nan keys could not be told apart"}),
    (
        "offset-with-seconds",
        datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(seconds=30))),
    ),
    ("too-deep", functools.reduce(lambda inner, _: [inner], range(100), 0)),
    # The second of two equal wall times: a YAML timestamp cannot say which one it is.
    ("naive-datetime-fold-1", datetime.datetime(2026, 11, 1, 1, 30, fold=1)),
    # Lone surrogates (what surrogateescape makes of undecodable bytes): UTF-8 has no form.
    ("lone-surrogate", "file-\udcff.txt"),
    ("surrogate-key", {"k\ud800": 1}),
    ("surrogate-deep", [1, {"a": ["ok", "\udfff"]}]),
]


def _attempts(state: PersistedState, bad: Any) -> list[tuple[str, Any]]:
    """Every way of putting ``bad`` into the state, each as (description, callable)."""

    def set_item() -> None:
        state["new"] = bad

    def set_existing() -> None:
        state["counter"] = bad

    def set_attribute() -> None:
        state.new = bad

    def set_nested() -> None:
        state["d"]["x"] = bad

    def set_list_item() -> None:
        state["l"][0] = bad

    def set_list_item_negative() -> None:
        state["l"][-1] = bad

    def append() -> None:
        state["l"].append(bad)

    def insert() -> None:
        state["l"].insert(0, bad)

    def extend() -> None:
        state["l"].extend([1, 2, bad])

    def iadd() -> None:
        lst = state["l"]
        lst += ["ok", bad]

    def assign_slice() -> None:
        state["l"][0:2] = ["ok", bad]

    def assign_extended_slice() -> None:
        state["l"][::2] = ["ok", bad]

    def update() -> None:
        state.update({"ok": 1, "bad": bad})

    def update_keywords() -> None:
        state["d"].update(ok=1, bad=bad)

    def update_pairs() -> None:
        state["d"].update([("ok", 1), ("bad", bad)])

    def ior() -> None:
        mapping = state["d"]
        mapping |= {"ok": 1, "bad": bad}

    def setdefault() -> None:
        state.setdefault("fresh", bad)

    def inside_list_value() -> None:
        state["wrapped"] = [1, {"inner": bad}]

    def in_transaction() -> None:
        with state.transaction():
            state["tx-ok"] = 1
            state["tx-bad"] = bad

    return [
        ("state[key] = bad", set_item),
        ("state[existing] = bad", set_existing),
        ("state.attr = bad", set_attribute),
        ("dict[key] = bad", set_nested),
        ("list[0] = bad", set_list_item),
        ("list[-1] = bad", set_list_item_negative),
        ("list.append(bad)", append),
        ("list.insert(0, bad)", insert),
        ("list.extend([1, 2, bad])", extend),
        ("list += [.., bad]", iadd),
        ("list[0:2] = [.., bad]", assign_slice),
        ("list[::2] = [.., bad]", assign_extended_slice),
        ("state.update({.., bad})", update),
        ("dict.update(bad=bad)", update_keywords),
        ("dict.update(pairs)", update_pairs),
        ("dict |= {.., bad}", ior),
        ("state.setdefault(key, bad)", setdefault),
        ("state[key] = [1, {inner: bad}]", inside_list_value),
        ("transaction with bad", in_transaction),
    ]


def _check_refused(state_path: str, bad: Any, errors: tuple[type[Exception], ...]) -> None:
    base = {"counter": 1, "l": [1, 2, 3], "d": {"a": 1}}
    with PersistedState(state_path) as state:
        state.update(base)
        for description, attempt in _attempts(state, bad):
            before_bytes = file_bytes(state_path)
            with pytest.raises(errors):
                attempt()
            problem = first_difference(state.copy(), base)
            assert problem is None, f"{description} changed memory: {problem}"
            assert file_bytes(state_path) == before_bytes, f"{description} changed the file"
        # The state still works and nothing of the attempts reached the file.
        state["after"] = 1
        assert_same(persistedstate.load(state_path), {**base, "after": 1})
    assert_same(persistedstate.load(state_path), {**base, "after": 1})


@pytest.mark.parametrize("bad", [value for _, value in UNSUPPORTED], ids=_ids(UNSUPPORTED))
def test_unsupported_value_raises_type_error_and_changes_nothing(state_path: str, bad: Any) -> None:
    _check_refused(state_path, bad, (TypeError,))


@pytest.mark.parametrize("bad", [value for _, value in CIRCULAR], ids=_ids(CIRCULAR))
def test_circular_value_is_refused_and_changes_nothing(state_path: str, bad: Any) -> None:
    _check_refused(state_path, bad, (TypeError, ValueError))


@pytest.mark.parametrize("bad", [value for _, value in IMPOSSIBLE], ids=_ids(IMPOSSIBLE))
def test_value_that_cannot_be_stored_exactly_is_refused(state_path: str, bad: Any) -> None:
    _check_refused(state_path, bad, (ValueError,))


def test_a_lone_surrogate_error_names_the_key_path_and_the_character(
    state: PersistedState,
) -> None:
    state["d"] = {"inner": {}}
    with pytest.raises(
        ValueError, match=r"'\\udcff' at index 5.*at key path \['d', 'inner', 'name'\]"
    ):
        state["d"]["inner"]["name"] = "file-\udcff"
    with pytest.raises(ValueError, match=r"'\\ud800' at index 1.*at key path \['d', 'k\\ud800'\]"):
        state["d"]["k\ud800"] = 1
    with pytest.raises(ValueError, match=r"at key path \['top'\]"):
        state.top = "\ud800"
    assert_same(state.copy(), {"d": {"inner": {}}})


def test_subclasses_are_stored_as_their_base_type(state_path: str) -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    class Ratio(float):
        pass

    class Settings(dict):  # type: ignore[type-arg]
        pass

    class Items(list):  # type: ignore[type-arg]
        pass

    with PersistedState(state_path) as state:
        state.level = Level.HIGH
        state.name = Name("x")
        state.ratio = Ratio(0.5)
        state.settings = Settings(a=1)
        state.items_ = Items([1])
        expected = {"level": 3, "name": "x", "ratio": 0.5, "settings": {"a": 1}, "items_": [1]}
        assert_same(state.copy(), expected)
        assert_same(crash_copy(state_path, state_path + ".copy"), expected)
    assert_same(persistedstate.load(state_path), expected)


def test_a_str_subclass_attribute_name_is_stored_as_a_str_key(state_path: str) -> None:
    """setattr() passes a str subclass name on as it is; the key stored is a plain str."""

    class Name(str):
        pass

    with PersistedState(state_path) as state:
        setattr(state, Name("count"), 1)
        setattr(state, Name("nested"), {})
        state.nested[Name("inner")] = 2
        assert [type(key) for key in state] == [str, str]
        assert [type(key) for key in state.nested] == [str]
        assert_same(state.copy(), {"count": 1, "nested": {"inner": 2}})
        assert state.count == 1
        state.count += 1
        assert state.count == 2
    assert_same(persistedstate.load(state_path), {"count": 2, "nested": {"inner": 2}})


def test_unsupported_key_at_top_level(state: PersistedState, state_path: str) -> None:
    state["a"] = 1
    before = file_bytes(state_path)
    for bad_key in [(1, 2), b"k", datetime.date(2026, 1, 1), frozenset()]:
        with pytest.raises(TypeError):
            state[bad_key] = 1
        with pytest.raises(TypeError):
            state.update({bad_key: 1})
    assert_same(state.copy(), {"a": 1})
    assert file_bytes(state_path) == before


def test_refused_value_inside_transaction_keeps_earlier_changes(
    state: PersistedState, state_path: str
) -> None:
    """A TypeError inside a transaction that is caught there does not abort the rest."""
    with state.transaction():
        state["a"] = 1
        with pytest.raises(TypeError):
            state["b"] = {1, 2}
        state["c"] = 3
    assert_same(state.copy(), {"a": 1, "c": 3})
    assert_same(crash_copy(state_path, state_path + ".copy"), {"a": 1, "c": 3})


def _new_york() -> datetime.tzinfo | None:
    try:
        return zoneinfo.ZoneInfo("America/New_York")
    except zoneinfo.ZoneInfoNotFoundError:
        return None  # (Windows without the tzdata package)


NEW_YORK = _new_york()
REPEATED = datetime.datetime(2026, 11, 1, 1, 30)  # New York's clocks go back at 2:00 that day
AWARE: list[tuple[str, Any]] = [
    ("fixed-offset-fold-1", REPEATED.replace(tzinfo=PST, fold=1)),
    ("utc-fold-1", REPEATED.replace(tzinfo=UTC, fold=1)),
    ("named-offset", REPEATED.replace(tzinfo=datetime.timezone(IST.utcoffset(None), "IST"))),
]
if NEW_YORK is not None:
    AWARE += [
        ("zoneinfo-first-of-two", REPEATED.replace(tzinfo=NEW_YORK)),
        ("zoneinfo-second-of-two", REPEATED.replace(tzinfo=NEW_YORK, fold=1)),
        ("zoneinfo-summer", datetime.datetime(2026, 7, 1, 12, tzinfo=NEW_YORK)),
    ]


@pytest.mark.parametrize("moment", [value for _, value in AWARE], ids=_ids(AWARE))
def test_an_aware_datetime_is_kept_as_a_reopen_gives_it(state_path: str, moment: Any) -> None:
    """docs: an aware datetime comes back with a fixed UTC offset; what memory holds is that
    same form from the start (fold 0, a timezone(offset)), so memory equals a reopen."""
    with PersistedState(state_path) as state:
        state["when"] = moment
        state["nested"] = {"in": [moment]}
        kept = state["when"]
        journal = crash_copy(state_path, state_path + ".crash")
        assert_same(state.copy(), journal)  # what a crash leaves (the journal) reads the same
    assert_same(persistedstate.load(state_path), {"when": kept, "nested": {"in": [kept]}})
    # The same moment, wall time and UTC offset as the value given.
    assert kept.astimezone(UTC) == moment.astimezone(UTC)  # (== says False across zones in a fold)
    assert kept.replace(tzinfo=None) == moment.replace(tzinfo=None)
    assert kept.utcoffset() == moment.utcoffset()
    assert (kept.fold, type(kept.tzinfo)) == (0, datetime.timezone)


def test_a_naive_datetime_with_fold_1_is_refused_naming_the_key_path_and_the_way_out(
    state: PersistedState,
) -> None:
    second = REPEATED.replace(fold=1)  # datetime.now() gives such ones in that hour
    state["log"] = {"runs": []}
    with pytest.raises(
        ValueError, match=r"fold=1.*aware datetime.*at key path \['log', 'runs', 0\]"
    ):
        state["log"]["runs"].append(second)
    state["log"]["runs"].append(second.replace(fold=0))  # the wall time alone
    state["log"]["runs"].append(second.astimezone())  # or the moment, with its offset
    assert len(state["log"]["runs"]) == 2


def test_key_path_writes_a_path_the_command_line_reads_back_as_the_same_keys() -> None:
    """One PATH writer for hints and edit's notices: a string key that the command line
    could read as something else (a number, true, null, a dot, a quote) is quoted."""
    from persistedstate import values as value_module
    from persistedstate.cli import parse_path

    keys = ["settings", "1", "true", "null", "a.b", 'x"y', "back\\slash", "", "é", 2, -1]
    segments = parse_path(value_module.key_path(keys))
    assert len(segments) == len(keys)
    for key, segment in zip(keys, segments, strict=True):
        if type(key) is int:
            assert segment.integer() == key
        else:
            assert segment.key == key
            assert segment.quoted or (segment.integer() is None and key not in ("true", "null"))
    assert value_module.key_path(["settings", "batch"]) == "settings.batch"
    assert value_module.key_path([None, True, 1.5]) == "null.true.1.5"
