"""values.VALUE_TYPES is the one list of the types a state holds (README "Values").

The lists derived from it need no test; these check the ones that cannot derive from it: the
type tests written out for speed, and the prose (docstring, README, error messages).
"""

from __future__ import annotations

import datetime
import decimal
import re
from pathlib import Path
from typing import Any

import pytest

from persistedstate import PersistedState, values

README = Path(__file__).resolve().parent.parent / "README.md"

# One value of each type a state takes: the table's types and the ones stored as them.
SAMPLES: dict[type, Any] = {
    type(None): None,
    bool: True,
    int: 7,
    float: -0.0,
    str: "text",
    bytes: b"\x00\xff",
    datetime.date: datetime.date(2026, 1, 2),
    datetime.datetime: datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc),
    list: [1, "a"],
    tuple: (1, "a"),
    dict: {"a": [1]},
}
NOT_STORABLE = [{1, 2}, frozenset(), 1j, bytearray(b"x"), decimal.Decimal(1), object(), range(2)]


def _row_of(kind: type) -> values.ValueType:
    return next(row for row in values.VALUE_TYPES if kind in (row.python_type, *row.also_from))


def test_the_samples_cover_the_table() -> None:
    taken = {kind for row in values.VALUE_TYPES for kind in (row.python_type, *row.also_from)}
    assert set(SAMPLES) == taken


@pytest.mark.parametrize("kind", list(SAMPLES), ids=lambda kind: kind.__name__)
def test_the_walk_takes_each_type_of_the_table_as_its_row_says(kind: type) -> None:
    """_prepare tests the types in turn (faster than a lookup): it must take the table's."""
    sample, row = SAMPLES[kind], _row_of(kind)
    stored, text = values.prepare([sample])  # (in a list: through the walk, not a shortcut)
    assert isinstance(stored[0], row.python_type)  # (a state's dicts and lists: subclasses)
    assert type(values.plain_copy(stored[0])) is row.python_type
    assert values.exactly_equal(stored[0], row.python_type(sample) if row.also_from else sample)
    assert (stored[0] is sample) == (not row.mutable)
    if row.flow_text is not None:
        assert text == "[" + row.flow_text(sample) + "]"


@pytest.mark.parametrize("value", NOT_STORABLE, ids=lambda value: type(value).__name__)
def test_the_walk_refuses_types_outside_the_table(value: Any) -> None:
    with pytest.raises(values.UnsupportedValue):
        values.prepare([value])


@pytest.mark.parametrize("kind", list(SAMPLES), ids=lambda kind: kind.__name__)
def test_dict_keys_are_the_types_the_table_marks_as_keys(kind: type) -> None:
    sample, row = SAMPLES[kind], _row_of(kind)
    if row.key:
        assert values.key_text(sample) == (sample, row.flow_text(sample))
    else:
        with pytest.raises(values.UnsupportedValue):
            values.key_text(sample)


@pytest.mark.parametrize("row", values.VALUE_TYPES, ids=lambda row: row.name)
def test_a_copy_shares_exactly_the_immutable_values(row: values.ValueType) -> None:
    sample = SAMPLES[row.python_type]
    copied = values.plain_copy({"k": sample})["k"]
    assert values.exactly_equal(copied, sample)
    assert (copied is sample) == (not row.mutable)


def _listed(prose: str) -> tuple[list[str], list[str]]:
    """The types a sentence names: the value types, up to ``dict``, then the key types."""
    while re.search(r"\([^()]*\)", prose):  # (asides name examples, not types)
        prose = re.sub(r"\([^()]*\)", "", prose)
    names = re.findall(r"`+([A-Za-z][\w.]*)`+", prose)
    end = names.index("dict") + 1
    return names[:end], names[end:]


VALUE_NAMES = [
    name for row in values.VALUE_TYPES for name in (row.name, *(t.__name__ for t in row.also_from))
]
KEY_NAMES = {row.name for row in values.VALUE_TYPES if row.key}


def _sentence(text: str, start: str) -> str:
    return text[text.index(start) : text.index(".", text.index(" keys", text.index(start)))]


@pytest.mark.parametrize(
    "prose",
    [
        pytest.param(_sentence(values.__doc__ or "", "A state holds"), id="values-docstring"),
        pytest.param(
            _sentence(README.read_text(encoding="utf-8"), "after a crash:"), id="readme-values"
        ),
    ],
)
def test_the_prose_names_the_types_of_the_table(prose: str) -> None:
    value_names, key_names = _listed(prose)
    assert value_names == VALUE_NAMES
    assert set(key_names) == KEY_NAMES and len(key_names) == len(KEY_NAMES)


def test_the_errors_name_the_types_of_the_table(tmp_path: Path) -> None:
    with PersistedState(tmp_path / "s.yaml") as state:
        with pytest.raises(TypeError) as refused_value:
            state["k"] = object()
        with pytest.raises(TypeError) as refused_key:
            state[(1, 2)] = 1
    supported = str(refused_value.value).split("supported: ")[1].split(" (at key path")[0]
    assert re.split(r", | and ", supported) == VALUE_NAMES
    keys = str(refused_key.value).split("keys are ")[1].split(" (at key path")[0]
    assert set(re.split(r", | or ", keys)) == KEY_NAMES
