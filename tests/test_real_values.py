"""README.md "Values read from a state": nested dicts and lists are real dicts and lists.

Whatever reads them (isinstance checks, json, yaml.safe_dump, pickle, pprint) sees the plain
data they hold, and every change made through them, by any method of dict or list, still
reaches the file or is refused.
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import json
import logging
import pickle
import pprint
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import assert_same, crash_copy, file_bytes

from persistedstate import PersistedState, PersistedStateError, load
from persistedstate.proxies import LiveDict, LiveList, TopDict

NESTED: dict[str, Any] = {
    "settings": {"batch": 100, "retry": {"times": 3, "waits": [1.5, 3.0]}, "name": "job"},
    "done": ["a", {"id": 1, "tags": ["x", "y"]}, [1, [2, [3]]], None, True],
    "long": {f"key number {n}": list(range(n, n + 12)) for n in range(6)},
}


def _reads(state: PersistedState) -> Iterator[tuple[str, Any, Any]]:
    """(how it was read, what a state gives, what the plain data gives) for every way of
    reading a nested dict or list."""
    plain = copy.deepcopy(NESTED)
    yield "attribute", state.settings, plain["settings"]
    yield "item", state["done"], plain["done"]
    yield "get", state.get("long"), plain["long"]
    yield "two levels", state.settings["retry"], plain["settings"]["retry"]
    yield "three levels", state.settings["retry"]["waits"], plain["settings"]["retry"]["waits"]
    yield "list item", state.done[1], plain["done"][1]
    yield "negative index", state.done[-3], plain["done"][-3]
    yield "slice", state.done[1:3][1][1], plain["done"][1:3][1][1]
    yield "nested get", state.settings.get("retry"), plain["settings"].get("retry")
    yield "values()", next(iter(state.values())), next(iter(plain.values()))
    yield "items()", list(state.settings.items())[1][1], list(plain["settings"].items())[1][1]
    yield "iteration", list(state.done)[2], list(plain["done"])[2]
    yield "setdefault", state.setdefault("done", []), plain.setdefault("done", [])


@pytest.fixture
def nested_state(state: PersistedState) -> PersistedState:
    state.update(copy.deepcopy(NESTED))
    return state


def test_nested_values_are_dicts_and_lists(nested_state: PersistedState) -> None:
    for how, live, plain in _reads(nested_state):
        kind = type(plain)
        assert isinstance(live, kind), how
        assert live == plain, how


def test_they_serialize_as_the_plain_data_would(nested_state: PersistedState) -> None:
    dumpers = [yaml.SafeDumper, yaml.Dumper]
    dumpers += [getattr(yaml, name) for name in ("CSafeDumper", "CDumper") if hasattr(yaml, name)]
    for how, live, plain in _reads(nested_state):
        assert json.dumps(live) == json.dumps(plain), how
        assert json.dumps(live, indent=2, sort_keys=True) == json.dumps(
            plain, indent=2, sort_keys=True
        ), how
        assert yaml.safe_dump(live) == yaml.safe_dump(plain), how
        for dumper in dumpers:
            assert yaml.dump(live, Dumper=dumper) == yaml.dump(plain, Dumper=dumper), how
        assert pprint.pformat(live) == pprint.pformat(plain), how
        assert pprint.pformat(live, width=30) == pprint.pformat(plain, width=30), how
        assert repr(live) == repr(plain), how
    assert "\n" in pprint.pformat(nested_state.long)  # (wide enough to need several lines)
    # The state itself: its one documented call, .copy() (README "API").
    assert json.dumps(nested_state.copy()) == json.dumps(NESTED)
    assert yaml.safe_dump(nested_state.copy()) == yaml.safe_dump(NESTED)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_they_pickle_as_plain_data(nested_state: PersistedState, protocol: int) -> None:
    for _how, live, plain in _reads(nested_state):
        assert_same(pickle.loads(pickle.dumps(live, protocol)), plain)  # (plain all the way)
    assert_same(pickle.loads(pickle.dumps(nested_state, protocol)), NESTED)


def test_copies_and_other_code_making_one_of_their_type_give_plain_data(
    nested_state: PersistedState,
) -> None:
    @dataclasses.dataclass
    class Holder:
        settings: Any
        done: Any

    holder = Holder(nested_state.settings, nested_state.done)
    assert_same(
        dataclasses.asdict(holder), {"settings": NESTED["settings"], "done": NESTED["done"]}
    )
    for _how, live, plain in _reads(nested_state):
        assert_same(copy.copy(live), plain)
        assert_same(copy.deepcopy(live), plain)
        assert_same(live.copy(), plain)
        assert_same(type(live)(plain), plain)  # (a shallow plain copy, like type(plain)(plain))


def test_changes_still_reach_the_file_after_being_serialized(
    nested_state: PersistedState, state_path: str
) -> None:
    expected = copy.deepcopy(NESTED)
    for _how, live, _plain in _reads(nested_state):
        json.dumps(live)
        yaml.safe_dump(live)
        pickle.dumps(live)
        pprint.pformat(live)
    nested_state.settings["retry"]["waits"].append(6.0)
    expected["settings"]["retry"]["waits"].append(6.0)
    nested_state.done[1]["tags"].insert(0, "w")
    expected["done"][1]["tags"].insert(0, "w")
    assert_same(crash_copy(state_path, state_path + ".copy"), expected)


# -- every method of dict and list -------------------------------------------------------------

# Methods about the object, never its data: its type, its attributes, the size of its table.
ABOUT_THE_OBJECT = {
    "__class__",
    "__class_getitem__",
    "__delattr__",
    "__dir__",
    "__getattribute__",
    "__getstate__",
    "__init_subclass__",
    "__new__",
    "__setattr__",
    "__sizeof__",
    "__subclasshook__",
}
# Methods that change nothing: about the object, pickling and formatting (which read).
NOT_ABOUT_THE_DATA = ABOUT_THE_OBJECT | {"__format__", "__reduce__", "__reduce_ex__"}


class Kw(dict[str, Any]):
    """The keyword arguments of a call below."""


# Calls to try for each method of dict and of list (the arguments of each call, and Kw(...)).
# A method that Python adds later is not here, and fails the test below until its calls are
# added.
DICT_CALLS: dict[str, list[tuple[Any, ...]]] = {
    "__contains__": [("a",), ("zz",)],
    "__delitem__": [("a",), ("zz",)],
    "__eq__": [({"a": 1},), (NESTED,)],
    "__ge__": [({},)],
    "__getitem__": [("a",), ("l",), ("zz",)],
    "__gt__": [({},)],
    "__init__": [({"a": 5, "new": [1]},), ((("p", 1),),), ((), Kw(kw={"x": 1}))],
    "__ior__": [({"a": 2, "n": {"m": []}},), ([("p", 1)],), (5,)],
    "__iter__": [()],
    "__le__": [({},)],
    "__len__": [()],
    "__lt__": [({},)],
    "__ne__": [({"a": 1},)],
    "__or__": [({"a": 2},), (5,)],
    "__repr__": [()],
    "__reversed__": [()],
    "__ror__": [({"a": 2},), (5,)],
    "__setitem__": [("a", 7), ("new", {"x": [1]}), (3, None), ([], 1)],
    "__str__": [()],
    "clear": [()],
    "copy": [()],
    "fromkeys": [(["x", "y"], 0)],
    "get": [("a",), ("zz", 0)],
    "items": [()],
    "keys": [()],
    "pop": [("a",), ("zz",), ("zz", 0)],
    "popitem": [()],
    "setdefault": [("a", 9), ("new", [1])],
    "update": [({"a": 3, "b": [2]},), ([("q", 1)],), ((), Kw(kw=1)), ([1],)],
    "values": [()],
}

LIST_CALLS: dict[str, list[tuple[Any, ...]]] = {
    "__add__": [([9],), ((9,),)],
    "__contains__": [(1,), ({"k": 1},), (99,)],
    "__delitem__": [(0,), (-1,), (slice(1, 3),), (slice(None, None, 2),), (99,)],
    "__eq__": [([1],)],
    "__ge__": [([1],)],
    "__getitem__": [(0,), (-1,), (slice(1, 3),), (99,)],
    "__gt__": [([1],)],
    "__iadd__": [([7, [8]],), (5,)],
    "__imul__": [(2,), (0,)],
    "__init__": [([4, {"k": 2}],)],
    "__iter__": [()],
    "__le__": [([1],)],
    "__len__": [()],
    "__lt__": [([1],)],
    "__mul__": [(2,)],
    "__ne__": [([1],)],
    "__repr__": [()],
    "__reversed__": [()],
    "__rmul__": [(2,)],
    "__setitem__": [(0, 5), (-1, [6]), (slice(0, 2), [7]), (slice(None, None, 2), [1, 2]), (9, 1)],
    "__str__": [()],
    "append": [({"n": [1]},)],
    "clear": [()],
    "copy": [()],
    "count": [(1,)],
    "extend": [([3, 4],), (5,)],
    "index": [(1,), (99,)],
    "insert": [(1, "i"), (-9, "j")],
    "pop": [(), (0,), (99,)],
    "remove": [({"k": 1},), (99,)],
    "reverse": [()],
    "sort": [((), Kw(key=str)), ((), Kw(key=str, reverse=True)), ()],
}

DICT_START: dict[Any, Any] = {"a": 1, "l": [1, {"x": 2}], "d": {"e": None}, 2: "two"}
LIST_START: list[Any] = [1, {"k": 1}, [2, 3], "s", 1]


def _methods(kind: type) -> set[str]:
    return {name for name in dir(kind) if callable(getattr(kind, name))} - NOT_ABOUT_THE_DATA


def _as_data(result: Any) -> Any:
    """A result as plain data: views and iterators become lists, containers plain copies."""
    if isinstance(result, (dict, list)):
        return copy.deepcopy(result)
    if result is NotImplemented or isinstance(result, (str, int, type(None), tuple)):
        return result
    return [_as_data(item) for item in result]


def _call(target: Any, name: str, call: tuple[Any, ...]) -> tuple[bool, Any]:
    args, kwargs = (call[0], call[1]) if len(call) == 2 and type(call[1]) is Kw else (call, {})
    try:
        return True, _as_data(getattr(target, name)(*copy.deepcopy(args), **kwargs))
    except Exception as error:
        return False, type(error)


def _mutating_calls(kind: type, calls: dict[str, list[tuple[Any, ...]]], start: Any) -> set[str]:
    """The methods that change a plain container, by trying them."""
    found = set()
    for name, tries in calls.items():
        for call in tries:
            plain = copy.deepcopy(start)
            _call(plain, name, call)
            if plain != start:
                found.add(name)
    return found


@pytest.mark.parametrize(
    ("kind", "calls", "start"), [(dict, DICT_CALLS, DICT_START), (list, LIST_CALLS, LIST_START)]
)
def test_every_method_behaves_as_on_a_plain_container_and_every_change_is_written(
    state_path: str, kind: type, calls: dict[str, list[tuple[Any, ...]]], start: Any
) -> None:
    assert _methods(kind) == set(calls), "a method of this Python's dict or list is not tried"
    mutating = _mutating_calls(kind, calls, start)
    assert {"__setitem__", "__delitem__", "__init__", "clear", "pop"} <= mutating
    state = PersistedState(state_path)
    try:
        for number, (name, call) in enumerate(
            (name, call) for name, tries in calls.items() for call in tries
        ):
            key = f"c{number}"
            state[key] = copy.deepcopy(start)
            live = state[key]
            expected = copy.deepcopy(start)
            before = file_bytes(state_path)
            outcome = _call(live, name, call)
            wanted = _call(expected, name, call)
            what = f"{kind.__name__}.{name}{call!r}"
            assert outcome == wanted, f"{what}: {outcome!r}, plain Python: {wanted!r}"
            assert_same(live.copy(), expected)
            if name not in mutating or expected == start:
                assert file_bytes(state_path) == before, f"{what} wrote to the file"
            assert_same(crash_copy(state_path, state_path + ".copy")[key], expected)
    finally:
        state.close()
    assert mutating  # (and each was written: the crash copies above held every change)


def test_reads_through_views_and_slices_give_containers_that_write(
    state: PersistedState, state_path: str
) -> None:
    state.update(d={"x": {"n": 0}}, l=[{"n": 0}, [0]])
    writers: list[Callable[[], Any]] = [
        lambda: next(iter(state.d.values())),
        lambda: next(iter(state.d.items()))[1],
        lambda: state.l[0:1][0],
        lambda: next(iter(state.l)),
        lambda: next(reversed(state.l)),
        lambda: state.d.get("x"),
        lambda: state.d.setdefault("x", {}),
    ]
    for number, read in enumerate(writers):
        target = read()
        if isinstance(target, dict):
            target[f"w{number}"] = number
        else:
            target.append(number)
    expected = {
        "d": {"x": {"n": 0, "w0": 0, "w1": 1, "w5": 5, "w6": 6}},
        "l": [{"n": 0, "w2": 2, "w3": 3}, [0, 4]],
    }
    assert_same(state.copy(), expected)
    assert_same(crash_copy(state_path, state_path + ".copy"), expected)


# -- every method that reads -------------------------------------------------------------------

# Methods of dict and list that never read the data a container holds: about the object, or
# making a new dict (fromkeys).
DOES_NOT_READ = ABOUT_THE_OBJECT | {"fromkeys"}
# object's own, which reach the data through __repr__ only (str() and format() call repr()).
THROUGH_REPR = {"__str__", "__format__"}
# dict's orderings return NotImplemented without looking at either dict (checked below).
DICT_ORDERINGS = {"__lt__", "__le__", "__gt__", "__ge__"}


@pytest.mark.parametrize(
    ("kind", "ours", "calls", "start"),
    [
        (dict, (LiveDict, TopDict), DICT_CALLS, DICT_START),
        (list, (LiveList,), LIST_CALLS, LIST_START),
    ],
)
def test_every_method_that_reads_is_the_states_own(
    kind: type, ours: tuple[type, ...], calls: dict[str, list[tuple[Any, ...]]], start: Any
) -> None:
    """A method of dict or list written in C reads the container's own storage: without the
    state's lock (another thread's transaction half applied) and without catching up with
    other processes (shared mode). So every one that reads is overridden (the override takes
    the lock or reads as ``Core.read`` does, then calls it); a method a future Python adds
    fails here until it is handled or listed above."""
    for name in THROUGH_REPR:
        assert getattr(kind, name) is getattr(object, name), name
    for name in DICT_ORDERINGS if kind is dict else ():
        assert getattr(dict, name)({1: 2}, {1: 2}) is NotImplemented, name
    mutating = _mutating_calls(kind, calls, start)
    methods = {name for name in dir(kind) if callable(getattr(kind, name))}
    reading = methods - mutating - DOES_NOT_READ - THROUGH_REPR
    if kind is dict:
        reading -= DICT_ORDERINGS
    assert {"__eq__", "__repr__", "__contains__", "__len__", "__iter__", "copy"} <= reading
    for cls in ours:
        own = [vars(c) for c in cls.__mro__ if c not in (kind, object)]
        inherited = sorted(name for name in reading if not any(name in o for o in own))
        assert inherited == [], f"{cls.__name__} reads with {kind.__name__}'s own {inherited}"


# -- bad arguments -----------------------------------------------------------------------------


def _imul(items: Any, times: Any) -> Any:
    items *= times
    return items


def _setitem(items: Any, index: Any) -> None:
    items[index] = 0


def _delitem(items: Any, index: Any) -> None:
    del items[index]


def _set_slice(items: Any, index: Any) -> None:
    items[:index] = []


def _del_slice(items: Any, index: Any) -> None:
    del items[index:]


# The list methods and operators that take an int (an index, a count, a slice bound).
TAKING_AN_INT: dict[str, Callable[[Any, Any], Any]] = {
    "l[i]": lambda items, i: items[i],
    "l[i:]": lambda items, i: items[i:],
    "l[i] = 0": _setitem,
    "l[:i] = []": _set_slice,
    "del l[i]": _delitem,
    "del l[i:]": _del_slice,
    "l.insert(i, 0)": lambda items, i: items.insert(i, 0),
    "l.pop(i)": lambda items, i: items.pop(i),
    "l * i": lambda items, i: items * i,
    "i * l": lambda items, i: i * items,
    "l *= i": _imul,
    "l.__mul__(i)": lambda items, i: items.__mul__(i),
    "l.__rmul__(i)": lambda items, i: items.__rmul__(i),
    "l.__imul__(i)": lambda items, i: items.__imul__(i),
    "l.index(1, i)": lambda items, i: items.index(1, i),
    "l.index(1, 0, i)": lambda items, i: items.index(1, 0, i),
}
BAD_INTS = ["x", 2.0, None, [], 2**100, -(2**100)]


@pytest.mark.parametrize("operation", TAKING_AN_INT)
@pytest.mark.parametrize("start", [[1, 2], []], ids=["items", "empty"])
def test_a_bad_int_argument_raises_what_a_plain_list_raises(
    state: PersistedState, state_path: str, operation: str, start: list[Any]
) -> None:
    do = TAKING_AN_INT[operation]
    for bad in BAD_INTS:
        state["l"] = start
        plain = list(start)
        outcomes = []
        for items in (plain, state["l"]):
            try:
                do(items, bad)
            except Exception as error:
                outcomes.append(type(error))
            else:
                outcomes.append(None)
        assert outcomes[1] == outcomes[0], f"{operation} with {bad!r}: plain list {outcomes[0]}"
        assert_same(state["l"].copy(), plain)  # (l[:None] = [] is fine)
    assert_same(crash_copy(state_path, state_path + ".copy")["l"], plain)


# -- what is not caught: C code that changes a container in place (README "API") --------------


def test_heapq_and_exec_change_memory_without_a_record_as_the_readme_says(
    state: PersistedState, state_path: str
) -> None:
    """A check of the README's text, not a feature: heapq's functions and exec()'s globals
    change a state's list or dict in C, without a record; the README's way writes."""
    state.update(queue=[5, 3], ns={"base": 10})
    heapq.heappush(state.queue, 1)
    exec("limit = base * 2", state.ns)  # (limit is set through the dict's own __setitem__)
    assert state.queue == [1, 3, 5]
    assert "__builtins__" in state.ns
    assert crash_copy(state_path, state_path + ".copy") == {
        "queue": [5, 3],
        "ns": {"base": 10, "limit": 20},
    }
    dict.pop(state.ns, "__builtins__")  # (as it came in: the README's advice)
    queue = list(state.queue)  # the README's way: a plain copy, assigned back
    heapq.heappush(queue, 0)
    namespace = dict(state.ns)
    exec("twice = limit * 2", namespace)
    state.queue = queue
    state.ns["twice"] = namespace["twice"]
    assert crash_copy(state_path, state_path + ".copy") == {
        "queue": [0, 1, 5, 3],
        "ns": {"base": 10, "limit": 20, "twice": 40},
    }


def test_memory_the_file_cannot_hold_is_refused_at_compaction_saying_where(
    state_path: str,
) -> None:
    state = PersistedState(state_path, cfg={"base": 10, "expr": "base * 2"})
    assert eval(state.cfg["expr"], state.cfg) == 20  # (adds __builtins__ in C)
    state.cfg["base"] = 20  # (its entry must be written anew)
    with pytest.raises(PersistedStateError, match=r"'cfg', '__builtins__'.*exec\(\) and eval"):
        state.compact()
    written = {"cfg": {"base": 20, "expr": "base * 2"}}
    assert load(state_path) == written  # the file keeps the last version written
    dict.pop(state.cfg, "__builtins__")  # taken out as it came in, the state goes on
    state.compact()
    assert load(state_path) == written
    exec("x = 1", state.cfg)
    with pytest.raises(PersistedStateError, match="cannot be written"):
        state.close()
    assert load(state_path) == {"cfg": {**written["cfg"], "x": 1}}
    PersistedState(state_path).close()  # (closed all the same: the file is free)


def test_automatic_compaction_of_memory_the_file_cannot_hold_is_put_off(
    state_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The change that triggers it was written: it returns, and a warning says why the file
    was not compacted."""
    state = PersistedState.open(
        state_path, {"cfg": {"base": 10}}, compact_min_bytes=0, compact_ratio=0
    )
    exec("limit = base * 2", state.cfg)
    state.cfg["base"] = 20
    assert "cannot be written" in caplog.text
    assert load(state_path) == {"cfg": {"base": 20, "limit": 20}}
    dict.pop(state.cfg, "__builtins__")
    state.close()
    assert load(state_path) == {"cfg": {"base": 20, "limit": 20}}


def test_memory_the_file_cannot_hold_says_so_once_for_a_file_with_comments(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No warning that the file "is written without its comments" when it is not written."""
    path = tmp_path / "job.state"
    path.write_text("# the job's settings\ncfg: {base: 10}\n", encoding="utf-8")
    state = PersistedState(path)
    exec("limit = base * 2", state.cfg)
    with (
        caplog.at_level(logging.WARNING, logger="persistedstate"),
        pytest.raises(PersistedStateError, match="cannot be written"),
    ):
        state.compact()
    assert "without its comments" not in caplog.text
    assert path.read_text(encoding="utf-8").startswith("# the job's settings\n")
    dict.pop(state.cfg, "__builtins__")
    state.close()
    assert path.read_text(encoding="utf-8").startswith("# the job's settings\n")


@pytest.mark.parametrize("view", ["keys", "values", "items"])
def test_a_live_dict_s_views_do_what_a_plain_dict_s_do(state_path: str, view: str) -> None:
    """README "Values": every method of dict gives what it gives on a plain one, its views'
    too (every name dict's view has, listed by introspection, is there)."""
    plain = {"a": 1, "b": [2], "c": {"d": 3}}
    state = PersistedState(state_path, d=plain)
    theirs, ours = getattr(plain, view)(), getattr(state.d, view)()
    missing = set(dir(type(theirs))) - set(dir(type(ours)))
    assert not missing, f"dict.{view}() has {sorted(missing)}, ours not"
    assert repr(ours) == repr(theirs)
    assert list(reversed(ours)) == list(reversed(theirs))
    assert dict(ours.mapping) == dict(theirs.mapping)
    assert len(ours) == len(theirs) and list(ours) == list(theirs)
    if view != "values":
        other = {"a": 1, ("a", 1): 0, "z": 9}.keys() if view == "keys" else {("a", 1)}
        for operation in ("__and__", "__or__", "__sub__", "__xor__", "isdisjoint"):
            assert _outcome(getattr(ours, operation), other) == _outcome(
                getattr(theirs, operation), other
            ), operation
    state.close()


def _outcome(function: Callable[[Any], Any], argument: Any) -> Any:
    """What ``function(argument)`` gives, or the type of what it raises."""
    try:
        return function(argument)
    except Exception as error:  # (items holding a list are unhashable, in either)
        return type(error)
