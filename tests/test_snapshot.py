"""The snapshot writer: what it writes is what a full dump writes, and any YAML reader reads it."""

from __future__ import annotations

import datetime
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from persistedstate import CorruptStateError, PersistedState, load, snapshot, values

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
    text = snapshot.dump_snapshot(state)
    assert values.exactly_equal(yaml.safe_load(text.decode("utf-8")) or {}, state)


# One round of changes between two snapshots: values replaced (same keys), keys added at the
# end, keys deleted (every n-th, 0: none), lists changed inside (reported as changed).
rounds = st.tuples(top_levels, top_levels, st.sampled_from([0, 1, 2, 3]), st.sets(keys))


@settings(max_examples=300, deadline=None)
@given(top_levels, st.lists(rounds, min_size=1, max_size=3))
def test_reused_entries_give_a_snapshot_that_reads_back_exactly(
    first: dict[Any, Any], changes: list[tuple[Any, ...]]
) -> None:
    entries = snapshot.SnapshotEntries()
    state = dict(first)
    assert _read(entries.render(state, set()), state)
    for replacements, additions, delete_every, nested_changes in changes:
        for key, value in replacements.items():
            if key in state:
                state[key] = value
        for key, value in additions.items():
            state.setdefault(key, value)
        if delete_every:
            for key in list(state)[::delete_every]:
                del state[key]
        changed = nested_changes & set(state)
        for key in changed:  # changed inside, same object
            if type(state[key]) is list:
                state[key].append(1)
        assert _read(entries.render(state, changed), state)


def _read(written: bytes, expected: dict[Any, Any]) -> bool:
    return values.exactly_equal(yaml.safe_load(written.decode("utf-8")) or {}, expected)


def test_entries_are_reused_only_for_the_same_object() -> None:
    entries = snapshot.SnapshotEntries()
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
    text = snapshot.dump_snapshot(state).decode("utf-8")
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


# -- reading: the snapshot reader gives what PyYAML's safe loader gives ---------------------

YAML_EDGE_CASES = [
    "a: 010\nb: 0o17\nc: 0x1F\nd: 0b101\ne: 1_000\nf: 1:30\ng: +5\nh: -0\ni: 0\nj: 00\n",
    "a: 1.5\nb: .inf\nc: -.Inf\nd: .NaN\ne: 1e3\nf: 1.0e+3\ng: 1:30.5\nh: 1_0.5\n",
    "a: yes\nb: No\nc: on\nd: OFF\ne: y\nf: ~\ng: null\nh:\ni: ''\nj: true\n",
    "a: 2026-11-29\nb: 2026-11-29 10:00:00\nc: 2026-11-29T10:00:00.5+01:00\n",
    "a: !!binary aGVsbG8=\nb: !!str 5\nc: !!int '12'\nd: !!float '3'\ne: !!bool 'yes'\n",
    "a: !!float 0\nb: !!float '0'\nc: !!str 0\nd: !!int 0\n",
    "a: !!int '\u0661\u0662'\nb: !!null ''\nc: !!timestamp 2026-01-02\n",
    "base: &base {x: 1, y: [1, 2]}\nother: *base\nlist: [*base, *base]\n",
    "base: &base {x: 1}\nmerged:\n  <<: *base\n  y: 2\n",
    "a: &a [1, *a]\n",
    "a: !!set {x, y}\n",
    "a: !!omap [x: 1, y: 2]\n",
    "a: !!pairs [x: 1, x: 2]\n",
    "? [1, 2]\n: x\n",
    "? {a: 1}\n: x\n",
    "a: 1\na: 2\nb: 3\n",
    "1: one\n1.5: x\ntrue: t\n~: n\n2026-01-01: date\n",
    "a: = \nb: '='\n",
    "a: !!python/name:os.system ''\n",
    "a: !custom 5\n",
    "a: !!map {}\nb: !!seq []\nc: !!str\n",
    "a: !!int 'x'\n",
    "a: !!timestamp '2026'\n",
    "a: !!map 'scalar'\n",
    "- 1\n- 2\n",
    "just a string\n",
    "",
    "# only a comment\n",
    "a: |\n  line one\n  line two\nb: >\n  folded\n  text\n",
    "a: \"\\x85 \\u2028 \\t\"\nb: 'its'\n",
]


def _outcome(load: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", load(text)
    except Exception as error:
        return "error", f"{type(error).__name__}: {error}"


def _same_outcome(text: str) -> None:
    expected = _outcome(lambda text: yaml.load(text, Loader=snapshot.Loader), text)
    actual = _outcome(snapshot.load_document, text)
    assert actual[0] == expected[0], (text, actual, expected)
    if expected[0] == "error":
        assert actual == expected
    else:
        assert repr(actual[1]) == repr(expected[1])  # (repr: nan equals nan, types shown)


@pytest.mark.parametrize("text", YAML_EDGE_CASES)
def test_reader_matches_pyyaml_on_every_kind_of_document(text: str) -> None:
    _same_outcome(text)


@settings(max_examples=300, deadline=None)
@given(top_levels, st.sampled_from([False, True, None]), st.booleans())
def test_reader_matches_pyyaml_on_generated_documents(
    state: dict[Any, Any], flow: bool | None, canonical: bool
) -> None:
    _same_outcome(yaml.safe_dump(state, default_flow_style=flow, canonical=canonical))


PURE_YAML_CHILD = """
import datetime
import sys
sys.modules["yaml._yaml"] = None  # as if PyYAML had been built without libyaml
import yaml
import persistedstate
from persistedstate import snapshot

assert snapshot.Loader is yaml.SafeLoader, snapshot.Loader
mine, theirs = sys.argv[1], sys.argv[2]
with persistedstate.PersistedState(mine) as state:
    state.update(eval(sys.argv[3], {"inf": float("inf"), "datetime": datetime}))
print(repr(persistedstate.load(mine)))
print(repr(persistedstate.load(theirs)))
"""


def test_without_libyaml_the_pure_python_yaml_reads_and_writes_the_same(tmp_path: Path) -> None:
    sample = {
        "floats": [1e16, 5e-324, math.inf, -math.inf, -0.0, 0.1],
        "int keys": {1: "a", -2: "b", 10**30: "big"},
        "text": ["\x85 next line", "multi\nline\n", "😀 astral", "", "yes", "010"],
        "when": [datetime.date(2026, 11, 29), datetime.datetime(2026, 11, 29, 8, 30)],
        "bytes": b"\x00\xff",
        "nested": {"a": [{"b": [None, True, False]}]},
    }
    theirs = tmp_path / "written-with-libyaml.yaml"
    with PersistedState(theirs) as state:
        state.update(sample)
    mine = tmp_path / "written-without.yaml"
    child = subprocess.run(
        [sys.executable, "-c", PURE_YAML_CHILD, str(mine), str(theirs), repr(sample)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    read_mine, read_theirs = child.stdout.splitlines()
    assert read_mine == read_theirs == repr(sample)
    assert repr(load(mine)) == repr(sample)


PROGRAM_WITH_ITS_OWN_YAML_TASTES = """
import sys
import yaml

LOADERS = [yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)]
TIMESTAMP = "tag:yaml.org,2002:timestamp"


def register_everything():
    for loader in LOADERS:
        yaml.add_constructor(TIMESTAMP, lambda loader, node: "TS:" + node.value, Loader=loader)
        yaml.add_multi_constructor("!", lambda loader, suffix, node: "custom", Loader=loader)
        yaml.add_implicit_resolver("!env", __import__("re").compile(r"^\\$\\{\\w+\\}$"), ["$"],
                                   Loader=loader)
        yaml.add_constructor("!env", lambda loader, node: "expanded", Loader=loader)


if sys.argv[1] == "before":
    register_everything()
import persistedstate  # noqa: E402

if sys.argv[1] == "after":
    register_everything()
for name in sys.argv[2:]:
    print(repr(persistedstate.load(name)))
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_yaml_tastes_a_program_registers_on_pyyaml_do_not_change_how_states_read(
    tmp_path: Path, when: str
) -> None:
    written = tmp_path / "written.yaml"
    with PersistedState(written, day=datetime.date(2026, 1, 2), home="${HOME}"):
        pass
    edited = tmp_path / "edited.yaml"  # a merge key: read by PyYAML's own constructor
    edited.write_text("base: &base {x: 1}\nother:\n  <<: *base\nday: 2026-01-02\n")
    journal = tmp_path / "journal.yaml"  # a record only YAML reads, as 26.1 wrote some
    journal.write_text("a: 1\n--- [set, [], day, 2026-01-02]\n")
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("a: !env HOME\n")
    child = subprocess.run(
        [sys.executable, "-c", PROGRAM_WITH_ITS_OWN_YAML_TASTES, when]
        + [str(path) for path in (written, edited, journal)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    day = datetime.date(2026, 1, 2)
    assert child.stdout.splitlines() == [
        repr({"day": day, "home": "${HOME}"}),
        repr({"base": {"x": 1}, "other": {"x": 1}, "day": day}),
        repr({"a": 1, "day": day}),
    ]
    refused = subprocess.run(
        [sys.executable, "-c", PROGRAM_WITH_ITS_OWN_YAML_TASTES, when, str(tagged)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "CorruptStateError" in refused.stderr and "line 1" in refused.stderr


SURROGATE_CHILD = """
import sys
sys.modules["yaml._yaml"] = None  # as if PyYAML had been built without libyaml
import persistedstate

try:
    persistedstate.load(sys.argv[1])
except persistedstate.CorruptStateError as error:
    print(error.line, error.problem)
"""


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(b'a: 1\nk: "x\\udcff"\n', 2, id="snapshot"),
        pytest.param(b'a: 1\n--- ["set", [], "k", ["\\ud800", .inf]]\n', 2, id="yaml-only-record"),
        pytest.param(b'a: 1\n"\\udcff": 2\n', 2, id="key"),
    ],
)
def test_without_libyaml_a_lone_surrogate_escape_is_damage(
    tmp_path: Path, text: bytes, line: int
) -> None:
    """libyaml refuses the escape; PyYAML's pure-Python reader builds the string: the state
    must refuse it too, or no compaction could ever write the state."""
    path = tmp_path / "s.yaml"
    path.write_bytes(text)
    child = subprocess.run(
        [sys.executable, "-c", SURROGATE_CHILD, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith(f"{line} "), child.stdout
    assert "surrogate" in child.stdout
    assert path.read_bytes() == text


# -- duplicate keys: damage, wherever they are ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "line", "column", "first"),
    [
        pytest.param("a: 1\nb: 2\na: 3\n", "'a'", 3, 1, 1, id="top"),
        pytest.param("outer:\n  x: 1\n  y: 2\n  x: 3\n", "'x'", 4, 3, 2, id="nested"),
        pytest.param("l:\n- {k: 1, k: 2}\n", "'k'", 2, 10, 2, id="flow-in-a-list"),
        pytest.param("1: a\n1.0: b\n", "1.0", 2, 1, 1, id="int-and-float"),
        pytest.param("true: a\nb: 0\n1: b\n", "1", 3, 1, 1, id="bool-and-int"),
        pytest.param("a: 1\n!!str a: 2\n", "'a'", 2, 1, 1, id="tagged"),
        pytest.param(  # (a merge key: the document goes through PyYAML's constructor)
            "base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n  y: 3\n", "'y'", 5, 3, 4, id="merged-map"
        ),
    ],
)
def test_a_duplicate_key_is_damage_naming_both_lines(
    tmp_path: Path, text: str, key: str, line: int, column: int, first: int
) -> None:
    path = tmp_path / "state.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CorruptStateError) as raised:
        PersistedState(path)
    error = raised.value
    assert (error.line, error.column) == (line, column)
    assert error.problem.startswith(f"duplicate key {key} at line {line} (")
    assert error.problem.endswith(f" at line {first})")
    assert path.read_text(encoding="utf-8") == text


def test_keys_that_only_look_alike_are_not_duplicates(tmp_path: Path) -> None:
    """1 and "1", null and "null", a key a merge brings in and the map's own: all fine; the
    error points at the one real duplicate, after them."""
    path = tmp_path / "state.yaml"
    text = (
        "1: a\n'1': b\nnull: c\n'null': d\n"
        "base: &b {x: 1}\nm:\n  <<: *b\n  x: 2\ncopy: *b\n"
        "z: 1\nz: 2\n"
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CorruptStateError) as raised:
        load(path)
    assert (raised.value.line, raised.value.column) == (11, 1)
    text = text.replace("z: 2\n", "")
    path.write_text(text, encoding="utf-8")
    assert load(path) == yaml.safe_load(text)
