"""README.md "API": the semantics of the state and of its live dict and list proxies."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable, MutableMapping, MutableSequence
from typing import Any

import _workers as workers  # tests/ is on sys.path under pytest
import pytest
from conftest import assert_same, assert_single_document, crash_copy, file_bytes, normalized

import persistedstate
from persistedstate import PersistedState, PersistedStateError

# -- the README example and the basic API ---------------------------------------------------


def test_readme_api_example(state_path: str) -> None:
    state = PersistedState(state_path, last_id=0)
    for current_id in range(state.last_id + 1, 6):
        state.last_id = current_id
    state["last-id"] = 5
    state.items_done = 0
    state.items_done += 1
    state.setdefault("key", {})["nested"] = [1, 2]
    state.key["nested"].append(3)
    expected = {
        "last_id": 5,
        "last-id": 5,
        "items_done": 1,
        "key": {"nested": [1, 2, 3]},
    }
    assert_same(crash_copy(state_path, state_path + ".copy"), expected)
    del state.last_id
    del expected["last_id"]
    assert_same(crash_copy(state_path, state_path + ".copy"), expected)
    state.close()
    assert_same(persistedstate.load(state_path), expected)
    with PersistedState(state_path, last_id=0) as again:
        assert again.last_id == 0  # absent again, so the default applies
        assert again["last-id"] == 5


def test_state_and_proxies_are_mutable_mappings_and_sequences(state: PersistedState) -> None:
    state.d = {"a": 1}
    state.l = [1]
    assert isinstance(state, MutableMapping)
    assert isinstance(state.d, MutableMapping)
    assert isinstance(state.l, MutableSequence)
    assert isinstance(state["l"], MutableSequence)
    assert isinstance(state.l, MutableSequence)


def test_missing_keys(state: PersistedState) -> None:
    with pytest.raises(AttributeError):
        _ = state.missing
    with pytest.raises(KeyError):
        _ = state["missing"]
    with pytest.raises(AttributeError):
        del state.missing
    with pytest.raises(KeyError):
        del state["missing"]
    assert state.get("missing") is None
    assert state.get("missing", 7) == 7
    assert "missing" not in state


def test_dict_api(state: PersistedState, state_path: str) -> None:
    state.d = {"a": 1, "b": 2}
    d = state.d
    assert len(d) == 2
    assert list(d) == ["a", "b"]
    assert list(reversed(d)) == ["b", "a"]
    assert list(d.keys()) == ["a", "b"]
    assert list(d.values()) == [1, 2]
    assert list(d.items()) == [("a", 1), ("b", 2)]
    assert "a" in d and "z" not in d
    assert d.get("a") == 1 and d.get("z", 0) == 0
    d.update({"c": 3}, e=5)
    d.update([("f", 6)])
    d |= {"g": 7}
    assert d.setdefault("a", 100) == 1
    assert d.setdefault("h", [1]) == [1]
    d["h"].append(2)
    assert d.pop("b") == 2
    assert d.pop("zz", "default") == "default"
    with pytest.raises(KeyError):
        d.pop("zz")
    assert d.popitem() == ("h", [1, 2])
    del d["c"]
    expected = {"a": 1, "e": 5, "f": 6, "g": 7}
    assert_same(state.d.copy(), expected)
    assert_same(crash_copy(state_path, state_path + ".copy"), {"d": expected})
    merged = d | {"z": 0}
    assert_same(merged, {**expected, "z": 0})
    assert_same(state.d.copy(), expected)  # | makes a new dict
    d.clear()
    assert_same(crash_copy(state_path, state_path + ".copy"), {"d": {}})
    with pytest.raises(KeyError):
        d.popitem()


def test_state_level_dict_api(state: PersistedState, state_path: str) -> None:
    state.update({"a": 1}, b=2)
    state |= {"c": 3}
    assert state.setdefault("d", 4) == 4
    assert state.pop("a") == 1
    assert state.popitem() == ("d", 4)
    assert_same(crash_copy(state_path, state_path + ".copy"), {"b": 2, "c": 3})
    state.clear()
    assert_same(crash_copy(state_path, state_path + ".copy"), {})
    assert len(state) == 0


def test_list_api(state: PersistedState, state_path: str) -> None:
    state.l = [3, 1, 2]
    lst = state.l
    lst.append(4)
    lst.extend([5, 6])
    lst += [7]
    lst.insert(0, 0)
    lst.insert(-1, 6.5)
    lst.insert(100, 8)
    lst.insert(-100, -1)
    assert lst == [-1, 0, 3, 1, 2, 4, 5, 6, 6.5, 7, 8]
    assert lst[-1] == 8 and lst[-2] == 7
    assert lst[1:4] == [0, 3, 1]
    assert lst[::-3] == [8, 6, 2, 0]
    assert lst.index(3) == 2
    assert lst.count(6) == 1
    assert 6.5 in lst
    assert lst.pop() == 8
    assert lst.pop(0) == -1
    assert lst.pop(-2) == 6.5
    lst.remove(3)
    with pytest.raises(ValueError):
        lst.remove(99)
    with pytest.raises(IndexError):
        _ = lst[100]
    with pytest.raises(IndexError):
        lst[100] = 1
    with pytest.raises(IndexError):
        lst.pop(100)
    lst[0] = "zero"
    lst[-1] = "last"
    lst[1:3] = ["a", "b", "c"]
    lst[::2] = [10, 20, 30, 40]
    with pytest.raises(ValueError):
        lst[::2] = [1]
    assert lst == [10, "a", 20, "c", 30, 5, 40, "last"]
    del lst[-1]
    del lst[::3]
    assert lst == ["a", 20, 30, 5]
    del lst[0:1]
    lst.remove(5)
    expected = [20, 30]
    assert_same(state.l.copy(), expected)
    lst *= 3
    assert_same(state.l.copy(), [20, 30, 20, 30, 20, 30])
    lst.reverse()
    lst.sort()
    lst.sort(reverse=True, key=lambda x: -x)
    assert_same(state.l.copy(), [20, 20, 20, 30, 30, 30])
    assert_same(crash_copy(state_path, state_path + ".copy"), {"l": [20, 20, 20, 30, 30, 30]})
    assert lst + [1] == [20, 20, 20, 30, 30, 30, 1]  # noqa: RUF005
    assert [0] + lst == [0, 20, 20, 20, 30, 30, 30]  # noqa: RUF005
    assert lst * 0 == []
    lst *= 0
    assert_same(crash_copy(state_path, state_path + ".copy"), {"l": []})
    with pytest.raises(IndexError):
        lst.pop()
    lst.extend(x for x in range(3))
    lst.clear()
    assert_same(crash_copy(state_path, state_path + ".copy"), {"l": []})


def test_sort_with_key_on_nested_containers(state: PersistedState, state_path: str) -> None:
    state.l = [{"n": 3}, {"n": 1}, {"n": 2}]
    state.l.sort(key=lambda item: item["n"])
    assert_same(state.l.copy(), [{"n": 1}, {"n": 2}, {"n": 3}])
    assert_same(crash_copy(state_path, state_path + ".copy"), {"l": [{"n": 1}, {"n": 2}, {"n": 3}]})


GROWING_KEYS: dict[str, Callable[[Any], None]] = {
    "append": lambda target: target.append({"n": 0}),
    "insert": lambda target: target.insert(0, {"n": 0}),
    "extend": lambda target: target.extend([{"n": 0}, {"n": 4}]),
}


def _changing_key(target: Any, change: Callable[[Any], None]) -> Callable[[Any], Any]:
    def key(item: Any) -> Any:
        item["seen"] = True
        change(target)
        return item["n"]

    return key


@pytest.mark.parametrize("change", list(GROWING_KEYS))
def test_a_sort_key_that_grows_the_list_fails_as_in_python(
    state: PersistedState, state_path: str, change: str
) -> None:
    """Plain Python raises ValueError, keeps the changes the key made inside the items, and
    leaves the list's own items sorted: what the key added to the list is dropped."""
    model: list[Any] = [{"n": 3}, {"n": 1}, {"n": 2}]
    state.l = model
    with pytest.raises(ValueError, match="list modified during sort"):
        model.sort(key=_changing_key(model, GROWING_KEYS[change]))
    with pytest.raises(ValueError, match="list modified during sort"):
        state.l.sort(key=_changing_key(state.l, GROWING_KEYS[change]))
    assert_same(state.l.copy(), model)
    assert_same(crash_copy(state_path, state_path + ".copy"), {"l": model})
    state.close()
    assert_same(persistedstate.load(state_path), {"l": model})


def _delete_the_first_once(target: Any) -> None:
    if len(target) == 3:
        del target[0]


def _replace_the_first(target: Any) -> None:
    target[0] = {"n": -1}


@pytest.mark.parametrize("change", [_delete_the_first_once, _replace_the_first])
def test_a_sort_key_that_removes_or_replaces_items_fails_and_keeps_the_items(
    state: PersistedState, state_path: str, change: Callable[[Any], None]
) -> None:
    """(Inside a plain list's sort the key sees an empty list; here it sees the items.) The
    same outcome as a key that adds: ValueError, the original items sorted, file and memory
    alike."""
    state.l = [{"n": 3}, {"n": 1}, {"n": 2}]
    kept = state.l[0]
    with pytest.raises(ValueError, match="list modified during sort"):
        state.l.sort(key=_changing_key(state.l, change))
    expected = [{"n": 1, "seen": True}, {"n": 2, "seen": True}, {"n": 3, "seen": True}]
    assert_same(state.l.copy(), expected)
    kept["after"] = 1  # the very item is back in the list, where a kept reference reaches it
    expected[2]["after"] = 1
    assert_same(crash_copy(state_path, state_path + ".copy"), {"l": expected})
    state.close()
    assert_same(persistedstate.load(state_path), {"l": expected})


def test_proxies_compare_equal_to_plain_data(state: PersistedState) -> None:
    state.update(d={"a": [1, {"b": 2}]}, l=[1, [2, 3], {"c": None}])
    assert state.d == {"a": [1, {"b": 2}]}
    assert {"a": [1, {"b": 2}]} == state.d  # noqa: SIM300
    assert state.d["a"] == [1, {"b": 2}]
    assert state.l == [1, [2, 3], {"c": None}]
    assert [1, [2, 3], {"c": None}] == state.l  # noqa: SIM300
    assert state.l != [1, [2, 3]]
    assert state.d != {"a": []}
    assert state == {"d": {"a": [1, {"b": 2}]}, "l": [1, [2, 3], {"c": None}]}
    assert state.l[1] < [2, 4]
    assert state.l[1] >= [2, 3]
    assert state.d == state.d
    assert state.l[1] == state.l[1]


# -- copies in, copies out -------------------------------------------------------------------


def test_assigning_copies_the_value_in(state: PersistedState, state_path: str) -> None:
    a = [1]
    state.x = a
    a.append(2)
    assert state.x == [1]
    nested = {"inner": {"list": [1]}}
    state["n"] = nested
    nested["inner"]["list"].append(2)
    nested["inner"]["new"] = 1
    assert_same(state["n"].copy(), {"inner": {"list": [1]}})
    items = [[1], {"k": [2]}]
    state.l = []
    state.l.extend(items)
    state.l.append(items[0])
    state.l.insert(0, items[1])
    state.l[0:0] = [items[0]]
    state.l += [items[1]]
    items[0].append("changed")
    items[1]["k"].append("changed")
    expected = [[1], {"k": [2]}, [1], {"k": [2]}, [1], {"k": [2]}]
    assert_same(state.l.copy(), expected)
    d: dict[str, Any] = {"a": [1]}
    state.d = {}
    state.d.update(d)
    state.d.setdefault("b", d["a"])
    state.d |= {"c": d["a"]}
    d["a"].append(2)
    assert_same(state.d.copy(), {"a": [1], "b": [1], "c": [1]})
    assert_same(
        crash_copy(state_path, state_path + ".copy"),
        {
            "x": [1],
            "n": {"inner": {"list": [1]}},
            "l": expected,
            "d": {"a": [1], "b": [1], "c": [1]},
        },
    )


def test_assigning_a_proxy_makes_an_independent_copy(
    state: PersistedState, state_path: str
) -> None:
    state.x = {"l": [1, {"a": 1}]}
    state.y = state.x
    state.y["l"].append(2)
    state.y["l"][1]["a"] = 2
    assert_same(state.x.copy(), {"l": [1, {"a": 1}]})
    state.x["l"][1]["b"] = 3
    assert_same(state.y.copy(), {"l": [1, {"a": 2}, 2]})
    state.list = [1, [2]]
    state.list.append(state.list)  # a copy of the list as it was: no cycle
    state.list[1].append(3)
    assert_same(state.list.copy(), [1, [2, 3], [1, [2]]])
    state.list += state.list
    assert_same(state.list.copy(), [1, [2, 3], [1, [2]], 1, [2, 3], [1, [2]]])
    state.list[0] = state.list[1]
    state.list[0].append(4)
    assert_same(state.list.copy(), [[2, 3, 4], [2, 3], [1, [2]], 1, [2, 3], [1, [2]]])
    state.x["self"] = state.x
    assert_same(state.x.copy(), {"l": [1, {"a": 1, "b": 3}], "self": {"l": [1, {"a": 1, "b": 3}]}})
    state.whole = state
    assert_same(state.whole["x"].copy(), state.x.copy())
    state.close()
    loaded = persistedstate.load(state_path)
    assert_same(loaded["y"], {"l": [1, {"a": 2}, 2]})
    assert_same(loaded["list"], [[2, 3, 4], [2, 3], [1, [2]], 1, [2, 3], [1, [2]]])


def test_pop_and_popitem_return_plain_data(state: PersistedState, state_path: str) -> None:
    state.update(a={"x": [1, {"y": 2}]}, b=[[1], {"z": []}], c={"k": {"deep": [1]}})
    popped = state.pop("a")
    assert_same(popped, {"x": [1, {"y": 2}]})
    popped["x"].append("changed")  # plain data: changes go nowhere
    key, value = state.c.popitem()
    assert key == "k"
    assert_same(value, {"deep": [1]})
    value["deep"].append("changed")
    first = state.b.pop(0)
    assert_same(first, [1])
    last = state.b.pop()
    assert_same(last, {"z": []})
    last["z"].append("changed")
    state.b.append({"w": [1]})
    item = state.popitem()
    assert_same(item, ("c", {}))
    assert_same(state.copy(), {"b": [{"w": [1]}]})
    assert_same(crash_copy(state_path, state_path + ".copy"), {"b": [{"w": [1]}]})


def test_plain_deep_copies(state: PersistedState, state_path: str) -> None:
    data = {"d": {"l": [1, {"x": [2]}]}, "l": [[1], {"y": {}}]}
    state.update(data)
    before = file_bytes(state_path)
    copies = [
        state.d.copy(),
        copy.copy(state.d),
        copy.deepcopy(state.d),
        state.l.copy(),
        copy.copy(state.l),
        copy.deepcopy(state.l),
        state.copy(),
        copy.deepcopy(state),
        state.d["l"][1].copy(),
    ]
    expected = [data["d"]] * 3 + [data["l"]] * 3 + [data] * 2 + [{"x": [2]}]
    for taken, wanted in zip(copies, expected, strict=True):
        assert_same(taken, wanted)  # plain dicts and lists all the way down
    for taken in copies:
        for container in _containers(taken):
            if isinstance(container, dict):
                container["changed"] = True
            else:
                container.append("changed")
    assert_same(state.copy(), data)
    assert file_bytes(state_path) == before


def _containers(value: Any) -> list[Any]:
    found = []
    if isinstance(value, dict):
        found.append(value)
        for item in list(value.values()):
            found.extend(_containers(item))
    elif isinstance(value, list):
        found.append(value)
        for item in list(value):
            found.extend(_containers(item))
    return found


# -- detached proxies --------------------------------------------------------------------------


def _dict_changes(d: Any) -> list[Callable[[], Any]]:
    def ior() -> None:
        target = d
        target |= {"y": 1}

    return [
        lambda: d.__setitem__("x", 1),
        lambda: d.__delitem__("a"),
        lambda: d.update(x=1),
        lambda: d.pop("a"),
        lambda: d.pop("a", None),
        lambda: d.popitem(),
        lambda: d.clear(),
        lambda: d.setdefault("new", 1),
        ior,
    ]


def _list_changes(lst: Any) -> list[Callable[[], Any]]:
    def iadd() -> None:
        target = lst
        target += [1]

    def imul() -> None:
        target = lst
        target *= 2

    return [
        lambda: lst.append(1),
        lambda: lst.insert(0, 1),
        lambda: lst.extend([1, 2]),
        lambda: lst.pop(),
        lambda: lst.pop(0),
        lambda: lst.remove(lst[0]),
        lambda: lst.clear(),
        lambda: lst.reverse(),
        lambda: lst.sort(reverse=True),
        lambda: lst.__setitem__(0, 9),
        lambda: lst.__setitem__(-1, 9),
        lambda: lst.__setitem__(slice(0, 1), [7, 8]),
        lambda: lst.__setitem__(slice(None, None, 2), [5] * len(range(0, len(lst), 2))),
        lambda: lst.__delitem__(0),
        lambda: lst.__delitem__(slice(0, 1)),
        lambda: lst.__delitem__(slice(None, None, 2)),
        iadd,
        imul,
    ]


def _check_detached(state: PersistedState, state_path: str, proxy: Any) -> None:
    expected = state.copy()
    before = file_bytes(state_path)
    changes = _list_changes(proxy) if isinstance(proxy, MutableSequence) else _dict_changes(proxy)
    for number, change in enumerate(changes):
        with pytest.raises(PersistedStateError):
            change()
        assert file_bytes(state_path) == before, f"change {number} touched the file"
        assert_same(state.copy(), expected)
    # The state itself still works.
    state["after"] = 1
    expected["after"] = 1
    assert_same(crash_copy(state_path, state_path + ".copy"), expected)


@pytest.mark.parametrize(
    "detach",
    [
        "replace-key",
        "delete-key",
        "pop-key",
        "clear-parent",
        "replace-grandparent",
        "update-parent",
        "popitem-parent",
        "reopen",
        "close",
    ],
)
def test_detached_dict_proxy_refuses_changes(state_path: str, detach: str) -> None:
    state = PersistedState(state_path)
    state.top = {"inner": {"a": 1, "b": 2}}
    proxy = state.top["inner"]
    if detach == "replace-key":
        state.top["inner"] = {"a": 1, "b": 2}
    elif detach == "delete-key":
        del state.top["inner"]
    elif detach == "pop-key":
        state.top.pop("inner")
    elif detach == "clear-parent":
        state.top.clear()
    elif detach == "replace-grandparent":
        state.top = {"inner": {"a": 1, "b": 2}}
    elif detach == "update-parent":
        state.top.update(inner={"a": 1, "b": 2})
    elif detach == "popitem-parent":
        state.top.popitem()
    elif detach in ("reopen", "close"):
        state.close()
        if detach == "reopen":
            state = PersistedState(state_path)
        else:
            before = file_bytes(state_path)
            for change in _dict_changes(proxy):
                with pytest.raises(PersistedStateError):
                    change()
                assert file_bytes(state_path) == before
            return
    _check_detached(state, state_path, proxy)
    state.close()


@pytest.mark.parametrize(
    "detach",
    [
        "replace-key",
        "delete-key",
        "pop-element",
        "del-element",
        "remove-element",
        "replace-element",
        "slice-replace",
        "clear-list",
        "imul-zero",
        "replace-whole-list",
    ],
)
def test_detached_list_proxy_refuses_changes(state_path: str, detach: str) -> None:
    with PersistedState(state_path) as state:
        state.l = [[1, 2, 3], [4, 5, 6]]
        element = state.l[0]
        whole = state.l
        if detach == "replace-key":
            state.l = [[1, 2, 3], [4, 5, 6]]
        elif detach == "delete-key":
            del state.l
        elif detach == "pop-element":
            state.l.pop(0)
        elif detach == "del-element":
            del state.l[0]
        elif detach == "remove-element":
            state.l.remove([1, 2, 3])
        elif detach == "replace-element":
            state.l[0] = [1, 2, 3]
        elif detach == "slice-replace":
            state.l[0:1] = [[1, 2, 3]]
        elif detach == "clear-list":
            state.l.clear()
        elif detach == "imul-zero":
            lst = state.l
            lst *= 0
        elif detach == "replace-whole-list":
            state["l"] = state.l.copy()
        _check_detached(state, state_path, element)
        if detach in ("replace-key", "delete-key", "replace-whole-list"):
            _check_detached(state, state_path, whole)


def test_detached_proxy_of_a_dict_inside_a_replaced_list(
    state: PersistedState, state_path: str
) -> None:
    state.l = [{"a": 1, "b": 2}]
    proxy = state.l[0]
    state.l.pop()
    state.l.append({"a": 1, "b": 2})  # equal, but another container
    _check_detached(state, state_path, proxy)


def test_replaced_then_restored_key_stays_detached(state: PersistedState, state_path: str) -> None:
    state.d = {"a": 1, "b": 2}
    proxy = state.d
    state.d = {"a": 1, "b": 2}
    _check_detached(state, state_path, proxy)


# -- kept proxies follow their element -------------------------------------------------------


def _imul(lst: Any) -> None:
    lst *= 2


def _iadd_self(lst: Any) -> None:
    lst += lst


def _append_then_insert(lst: Any) -> None:
    lst.append({"n": 4})
    lst.insert(1, {"n": 0.5})


def _set_other_indexes(lst: Any) -> None:
    lst[0] = {"n": "zero"}
    lst[-1] = {"n": "last"}


SHIFTS: dict[str, Callable[[Any], Any]] = {
    "insert-0": lambda lst: lst.insert(0, {"n": -1}),
    "insert-negative": lambda lst: lst.insert(-3, {"n": 0.5}),
    "append-then-insert": _append_then_insert,
    "delete-before": lambda lst: lst.__delitem__(0),
    "pop-before": lambda lst: lst.pop(1),
    "remove-before": lambda lst: lst.remove({"n": 0}),
    "slice-assign-before": lambda lst: lst.__setitem__(
        slice(0, 2), [{"n": "a"}, {"n": "b"}, {"n": "c"}]
    ),
    "slice-delete-before": lambda lst: lst.__delitem__(slice(None, 2)),
    "extended-slice-delete": lambda lst: lst.__delitem__(slice(None, None, 3)),
    "extended-slice-assign": lambda lst: lst.__setitem__(
        slice(None, None, 3), [{"n": "a"}, {"n": "b"}]
    ),
    "reverse": lambda lst: lst.reverse(),
    "sort": lambda lst: lst.sort(key=lambda item: -item["n"]),
    "sort-key-reverse": lambda lst: lst.sort(key=lambda item: item["n"] % 2, reverse=True),
    "extend": lambda lst: lst.extend([{"n": 9}]),
    "imul": _imul,
    "iadd-self": _iadd_self,
    "set-other-indexes": _set_other_indexes,
}


@pytest.mark.parametrize("shift", list(SHIFTS))
def test_kept_list_element_follows_its_element(
    state: PersistedState, state_path: str, shift: str
) -> None:
    model: list[Any] = [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]
    state.l = model
    kept = state.l[2]
    kept_through_slice = state.l[1:3][1]
    model_kept = model[2]
    SHIFTS[shift](state.l)
    SHIFTS[shift](model)
    position = next(i for i, item in enumerate(model) if item is model_kept)
    model = normalized(model)  # *= and += share items in plain Python; a state copies
    assert_same(state.l.copy(), model)
    kept["seen"] = True
    kept_through_slice["also"] = 1
    model[position]["seen"] = True
    model[position]["also"] = 1
    assert_same(state.copy(), {"l": model})
    assert_same(crash_copy(state_path, state_path + ".copy"), {"l": model})
    kept.pop("seen")
    del model[position]["seen"]
    assert_same(crash_copy(state_path, state_path + ".copy"), {"l": model})
    state.close()
    assert_same(persistedstate.load(state_path), {"l": model})


def test_augmented_assignment_through_the_parent_keeps_kept_proxies(
    state: PersistedState, state_path: str
) -> None:
    """``state.l += [4]`` extends the list in place (Python then sets state.l to the same list):
    proxies kept from before still point at it, as they would with plain dicts and lists."""
    state.l = [1, 2, 3]
    state.d = {"inner": [1], "n": 0}
    kept_list = state.l
    kept_inner = state.d["inner"]
    kept_dict = state.d
    state.l += [4]
    state["l"] *= 2
    state.d |= {"n": 1}
    state.d["inner"] += [2]
    kept_list.append(5)
    kept_inner.append(3)
    kept_dict["m"] = 2
    expected = {"l": [1, 2, 3, 4, 1, 2, 3, 4, 5], "d": {"inner": [1, 2, 3], "n": 1, "m": 2}}
    assert_same(state.copy(), expected)
    assert_same(crash_copy(state_path, state_path + ".copy"), expected)


def test_augmented_assignment_through_the_parent_costs_its_own_size(
    state: PersistedState, state_path: str
) -> None:
    """docs/design.md "Writing a change": ``state.big += [1]`` is one small change (one
    ``splice`` record), not a rewrite of the list."""
    state.big = list(range(20_000))
    state.counter = 0
    before = os.path.getsize(state_path)
    state.big += [1]
    state.counter += 1
    growth = os.path.getsize(state_path) - before
    assert growth < 500, f"two small changes added {growth} bytes to the file"
    assert state.big[-1] == 1 and len(state.big) == 20_001


def test_kept_nested_list_follows_through_two_levels(
    state: PersistedState, state_path: str
) -> None:
    state.grid = [[[0], [1]], [[2], [3]]]
    cell = state.grid[1][0]
    state.grid.reverse()
    state.grid[0].insert(0, ["new"])
    state.grid.insert(0, [])
    cell.append("here")
    expected = {"grid": [[], [["new"], [2, "here"], [3]], [[0], [1]]]}
    assert_same(state.copy(), expected)
    assert_same(crash_copy(state_path, state_path + ".copy"), expected)


def test_kept_proxy_survives_a_rolled_back_transaction(
    state: PersistedState, state_path: str
) -> None:
    state.l = [[1], [2]]
    kept = state.l[1]
    with pytest.raises(RuntimeError), state.transaction():
        state.l.insert(0, [0])
        state.l = []
        raise RuntimeError("roll back")
    kept.append(3)
    assert_same(state.copy(), {"l": [[1], [2, 3]]})
    assert_same(crash_copy(state_path, state_path + ".copy"), {"l": [[1], [2, 3]]})


# -- names ---------------------------------------------------------------------------------------

RESERVED = [
    "items",
    "keys",
    "values",
    "get",
    "pop",
    "popitem",
    "update",
    "setdefault",
    "clear",
    "copy",
    "close",
    "compact",
    "transaction",
    "open",
]


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_names_need_item_syntax(state: PersistedState, state_path: str, name: str) -> None:
    before = file_bytes(state_path)
    with pytest.raises(AttributeError) as error:
        setattr(state, name, 1)
    message = str(error.value)
    assert name in message and "[" in message, message
    assert file_bytes(state_path) == before
    assert name not in state
    state[name] = 1
    assert state[name] == 1
    assert callable(getattr(state, name))  # the method is still there
    assert_same(crash_copy(state_path, state_path + ".copy"), {name: 1})


def test_reserved_key_does_not_hide_methods(state: PersistedState, state_path: str) -> None:
    state["items"] = [1, 2]
    state["keys"] = {"a": 1}
    assert list(state.items()) == [("items", [1, 2]), ("keys", {"a": 1})]
    assert list(state.keys()) == ["items", "keys"]
    state["items"].append(3)
    state.close()
    assert_same(persistedstate.load(state_path), {"items": [1, 2, 3], "keys": {"a": 1}})


def test_underscore_names_are_python_attributes(state: PersistedState, state_path: str) -> None:
    state.a = 1
    before = file_bytes(state_path)
    state._private = [1, 2]
    state.__dunder_like = 3
    assert state._private == [1, 2]
    assert "_private" not in state
    assert list(state) == ["a"]
    assert file_bytes(state_path) == before
    del state._private
    with pytest.raises(AttributeError):
        _ = state._private
    with pytest.raises(AttributeError):
        _ = state._never_set
    state.close()
    assert_same(persistedstate.load(state_path), {"a": 1})


def test_item_syntax_reaches_any_key(state: PersistedState, state_path: str) -> None:
    keys = ["with space", "with.dot", "last-id", "_underscore", "", 1, 2.5, None, False]
    for number, key in enumerate(keys):
        state[key] = number
    state.close()
    assert_same(persistedstate.load(state_path), {key: n for n, key in enumerate(keys)})


# -- locks, compaction, closing -------------------------------------------------------------


def test_thread_lock_is_a_reentrant_lock(state: PersistedState, state_path: str) -> None:
    state.counter = 0
    with state._thread_lock:
        state.counter += 1
        with state._thread_lock:
            state.counter += 1
        with state.transaction():
            state.counter += 1
    assert state.counter == 3
    assert_same(crash_copy(state_path, state_path + ".copy"), {"counter": 3})


def test_compact_and_close_leave_one_document(state_path: str) -> None:
    state = PersistedState(state_path, a=1)
    state.l = [1, 2, 3]
    state.l.append({"x": "y"})
    state.l.reverse()
    del state.a
    state.text = "multi\nline\n"
    with state.transaction():
        state.b = 2
        state.c = 3
    expected = {"l": [{"x": "y"}, 3, 2, 1], "text": "multi\nline\n", "b": 2, "c": 3}
    state.compact()
    assert_single_document(state_path, expected)
    assert_same(state.copy(), expected)
    state.l.pop()  # still usable after compact
    expected["l"].pop()
    assert_same(crash_copy(state_path, state_path + ".copy"), expected)
    state.compact()
    state.compact()
    assert_single_document(state_path, expected)
    state.close()
    assert_single_document(state_path, expected)
    state.close()  # closing twice is fine
    assert_single_document(state_path, expected)


def test_empty_state_file_is_one_document(state_path: str) -> None:
    with PersistedState(state_path):
        pass
    assert_single_document(state_path, {})
    assert_same(persistedstate.load(state_path), {})


def test_closed_state_refuses_changes(state_path: str) -> None:
    state = PersistedState(state_path, d={"a": 1}, l=[1, 2])
    d, lst = state.d, state.l
    state.close()
    before = file_bytes(state_path)

    def set_attribute() -> None:
        state.x = 1

    def delete_attribute() -> None:
        del state.d

    def transaction() -> None:
        with state.transaction():
            state.x = 1

    changes: list[Callable[[], Any]] = [
        set_attribute,
        delete_attribute,
        transaction,
        lambda: state.__setitem__("x", 1),
        lambda: state.__delitem__("d"),
        lambda: state.update(x=1),
        lambda: state.pop("d"),
        lambda: state.popitem(),
        lambda: state.clear(),
        lambda: state.setdefault("x", 1),
        *_dict_changes(d),
        *_list_changes(lst),
    ]
    for number, change in enumerate(changes):
        with pytest.raises(PersistedStateError):
            change()
        assert file_bytes(state_path) == before, f"change {number} touched the closed file"
    assert_same(persistedstate.load(state_path), {"d": {"a": 1}, "l": [1, 2]})


def test_context_manager_closes(state_path: str) -> None:
    with PersistedState(state_path) as state:
        state.a = 1
        state.b = [1]
        state.b.append(2)
    assert_single_document(state_path, {"a": 1, "b": [1, 2]})
    with pytest.raises(PersistedStateError):
        state.a = 2
    # The lock was released: this process (or another) can open it again.
    with PersistedState(state_path) as again:
        assert again.a == 1


def test_context_manager_closes_on_error(state_path: str) -> None:
    with pytest.raises(RuntimeError), PersistedState(state_path) as state:
        state.a = 1
        raise RuntimeError("boom")
    assert_single_document(state_path, {"a": 1})
    with PersistedState(state_path) as again:
        assert again.a == 1


def test_defaults_only_set_when_absent(state_path: str) -> None:
    mutable_default: dict[str, Any] = {"list": [1]}
    with PersistedState(state_path, a=1, b=mutable_default) as state:
        mutable_default["list"].append(2)  # the default was copied in
        assert_same(state.copy(), {"a": 1, "b": {"list": [1]}})
        state.a = 5
        del state.b
    with PersistedState(state_path, a=1, b=2, c=None) as state:
        assert_same(state.copy(), {"a": 5, "b": 2, "c": None})
        state.c = "set"
    with PersistedState(state_path, c=0) as state:
        assert_same(state.copy(), {"a": 5, "b": 2, "c": "set"})
    assert_same(persistedstate.load(state_path), {"a": 5, "b": 2, "c": "set"})


def test_defaults_are_written_to_the_file(state_path: str) -> None:
    state = PersistedState(state_path, last_id=0, seen=[])
    assert_same(crash_copy(state_path, state_path + ".copy"), {"last_id": 0, "seen": []})
    state.close()


def test_open_with_defaults_and_fsync(state_path: str) -> None:
    state = PersistedState.open(state_path, {"a": 1, "l": []}, fsync=True)
    assert isinstance(state, PersistedState)
    state.l.append(1)
    state.b = {"x": [1]}
    with state.transaction():
        state.a += 1
    expected = {"a": 2, "l": [1], "b": {"x": [1]}}
    assert_same(crash_copy(state_path, state_path + ".copy"), expected)
    state.close()
    again = PersistedState.open(state_path, {"a": 100, "z": 0}, fsync=True, lock_timeout=0.5)
    assert_same(again.copy(), {**expected, "z": 0})
    again.close()
    with PersistedState.open(state_path) as third:
        assert_same(third.copy(), {**expected, "z": 0})


def test_a_second_program_gets_state_locked_error(state_path: str) -> None:
    """Another process is refused (this process opening the file again takes it over:
    tests/test_locks.py)."""
    with PersistedState(state_path, a=1):
        before = file_bytes(state_path)
        for timeout in ("0", "0.2"):
            tried = subprocess.run(
                [sys.executable, str(workers.SCRIPT), "try-open", state_path, timeout],
                capture_output=True,
                text=True,
                check=True,
            )
            assert tried.stdout.split()[0] == "locked", tried
            assert os.path.basename(state_path) in tried.stdout
        assert file_bytes(state_path) == before
        assert_same(persistedstate.load(state_path), {"a": 1})  # load() needs no lock


def test_load_changes_nothing(state_path: str) -> None:
    with PersistedState(state_path) as state:
        state.a = 1
        before = file_bytes(state_path)
        assert_same(persistedstate.load(state_path), {"a": 1})
        assert file_bytes(state_path) == before
        state.b = 2
    with pytest.raises(FileNotFoundError):
        persistedstate.load(state_path + ".missing")


# -- transactions ------------------------------------------------------------------------------


def test_transaction_commits_all_together(state: PersistedState, state_path: str) -> None:
    state.update(a=100, b=0, l=[])
    with state.transaction():
        state.a -= 10
        state.b += 10
        state.l.append("moved")
        # Nothing of the transaction is on disk before it ends.
        assert_same(crash_copy(state_path, state_path + ".copy"), {"a": 100, "b": 0, "l": []})
    expected = {"a": 90, "b": 10, "l": ["moved"]}
    assert_same(crash_copy(state_path, state_path + ".copy"), expected)
    assert_same(state.copy(), expected)


def test_transaction_rolls_back_memory_and_file(state: PersistedState, state_path: str) -> None:
    state.update(a=100, b=0, l=[1, 2], d={"k": "v"})
    before = file_bytes(state_path)
    with pytest.raises(KeyError), state.transaction():
        state.a -= 10
        state.l.reverse()
        state.l.append([3])
        state.d.clear()
        del state.b
        state.new = 1
        raise KeyError("abort")
    assert_same(state.copy(), {"a": 100, "b": 0, "l": [1, 2], "d": {"k": "v"}})
    assert file_bytes(state_path) == before
    state.after = 1
    expected = {"a": 100, "b": 0, "l": [1, 2], "d": {"k": "v"}, "after": 1}
    assert_same(crash_copy(state_path, state_path + ".copy"), expected)


def test_nested_transaction_rolls_back_only_its_part(
    state: PersistedState, state_path: str
) -> None:
    state.update(a=0, l=[])
    with state.transaction():
        state.a = 1
        with pytest.raises(ValueError), state.transaction():
            state.a = 2
            state.l.append("inner")
            raise ValueError
        state.l.append("outer")
    expected = {"a": 1, "l": ["outer"]}
    assert_same(state.copy(), expected)
    assert_same(crash_copy(state_path, state_path + ".copy"), expected)
    before = file_bytes(state_path)
    with pytest.raises(ValueError), state.transaction():
        with state.transaction():
            state.a = 3
        raise ValueError
    assert_same(state.copy(), expected)
    assert file_bytes(state_path) == before
