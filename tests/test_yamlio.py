"""The snapshot writer: what it writes is what a full dump writes, and any YAML reader reads it."""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from persistedstate import PersistedState, load, values, yamlio

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(max_size=20)
    | st.dates()
    | st.datetimes()
)
keys = st.none() | st.booleans() | st.integers() | st.text()
data = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
top_levels = st.dictionaries(keys, data, max_size=8)


@settings(max_examples=200, deadline=None)
@given(top_levels)
def test_snapshot_reads_back_exactly_with_a_plain_yaml_reader(state: dict[Any, Any]) -> None:
    text = yamlio.dump_snapshot(state)
    assert values.exactly_equal(yaml.safe_load(text.decode("utf-8")) or {}, state)


@settings(max_examples=200, deadline=None)
@given(top_levels, top_levels, st.sets(keys))
def test_reused_entries_give_a_snapshot_that_reads_back_exactly(
    first: dict[Any, Any], changes: dict[Any, Any], nested_changes: set[Any]
) -> None:
    entries = yamlio.SnapshotEntries()
    assert _read(entries.render(first, set()), first)
    second = dict(first)
    second.update(changes)
    for key in list(second)[::3]:
        del second[key]
    for key in nested_changes & set(second):  # changed inside, same object
        if type(second[key]) is list:
            second[key].append(1)
    changed = nested_changes & set(second)
    assert _read(entries.render(second, changed), second)


def _read(snapshot: bytes, expected: dict[Any, Any]) -> bool:
    return values.exactly_equal(yaml.safe_load(snapshot.decode("utf-8")) or {}, expected)


def test_entries_are_reused_only_for_the_same_object() -> None:
    entries = yamlio.SnapshotEntries()
    state: dict[Any, Any] = {"a": [1], "b": 2}
    entries.render(state, set())
    state["a"].append(2)  # a change inside, not reported as changed: the old text is kept
    assert entries.render(state, set()) == b"a:\n- 1\nb: 2\n"
    assert entries.render(state, {"a"}) == b"a:\n- 1\n- 2\nb: 2\n"


def test_special_values_are_written_readably() -> None:
    state = {
        "floats": [1e16, 5e-324, math.inf, -math.inf],
        "text": "two\nlines\n",
        "emoji": "party \N{PARTY POPPER}",
        "looks_like_bool": "yes",
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "huge": 10**5000,
    }
    text = yamlio.dump_snapshot(state).decode("utf-8")
    assert "- 1.0e+16\n" in text and "- .inf\n" in text
    assert "text: |\n  two\n  lines\n" in text
    assert "party \N{PARTY POPPER}" in text
    assert "looks_like_bool: 'yes'" in text
    assert "when: 2026-01-02 03:04:05+00:00" in text
    assert "huge: 0x" in text
    assert values.exactly_equal(yaml.safe_load(text), state)


@pytest.mark.parametrize(
    "text",
    [
        '{\n  "last_id": 1,\n  "done": []\n}\n',  # JSON, as a person may start a state
        '{"last_id": 1, "done": []}\n',
        "last_id: 1\ndone: []\n<<: {merged: true}\n",
        "'last_id': 1\n\"done\": []\n",
        "base: &b {x: 1}\nlast_id: 1\ndone: *b\n",
        "last_id: 1\ndone: [1,\n  2]\n",
    ],
    ids=["json", "flow", "merge-key", "quoted-keys", "anchors", "flow-over-lines"],
)
def test_any_layout_a_person_writes_compacts_to_the_same_data(tmp_path: Path, text: str) -> None:
    path = tmp_path / "state.yaml"
    path.write_text(text, encoding="utf-8")
    expected = {**load(path), "last_id": 2}
    with PersistedState(path) as state:
        state["last_id"] = 2
    assert values.exactly_equal(load(path), expected)
    assert values.exactly_equal(yaml.safe_load(path.read_text(encoding="utf-8")), expected)
