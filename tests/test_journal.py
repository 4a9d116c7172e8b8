"""The file format: 26.1 fixtures, the record grammar, and the recovery rules of docs/design.md."""

from __future__ import annotations

import gc
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import assert_same, fixture_26_1

from persistedstate import CorruptStateError, PersistedState, load

# -- files written by 26.1 --------------------------------------------------------------


def test_26_1_clean_file_opens() -> None:
    assert load(fixture_26_1("clean.yaml")) == {
        "flags": {"dry_run": False, "note": None, "ratio": 0.5},
        "host": "example.invalid",
        "paths": ["/a", "/b"],
        "retries": 3,
    }


def test_26_1_unvacuumed_journal_opens_to_expected_data(tmp_path: Path) -> None:
    expected = json.loads(fixture_26_1("unvacuumed-journal.expected.json").read_text("utf-8"))
    assert load(fixture_26_1("unvacuumed-journal.yaml")) == expected

    copy = tmp_path / "state.yaml"
    shutil.copyfile(fixture_26_1("unvacuumed-journal.yaml"), copy)
    with PersistedState(copy) as state:
        assert state == expected
        state["seen"].append("item-6")  # appending after a record with no final newline
    expected["seen"].append("item-6")
    assert load(copy) == expected
    assert yaml.safe_load(copy.read_text("utf-8")) == expected  # one clean document


def test_26_1_file_keeps_working_without_close(tmp_path: Path) -> None:
    copy = tmp_path / "state.yaml"
    shutil.copyfile(fixture_26_1("unvacuumed-journal.yaml"), copy)
    state = PersistedState(copy)
    state["cursor"]["page"] = 6
    after_change = copy.read_bytes()
    state.close(compact=False)  # let go without compacting, as a crash would
    assert load(copy)["cursor"]["page"] == 6
    assert after_change.endswith(b'--- ["set", ["cursor"], "page", 6]\n')


# -- the layout we write ------------------------------------------------------------------


def test_records_are_one_line_each_and_the_file_is_a_yaml_stream(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    state = PersistedState(path, a=1)
    state.a += 1
    state.text = "two\nlines"
    with state.transaction():
        state.a = 10
        state.b = [1, 2]
    lines = path.read_bytes().decode("utf-8").splitlines()
    assert lines[0] == "a: 1"  # the snapshot of a new file holds its defaults
    assert lines[1].startswith("# The lines below are changes")  # (a YAML comment)
    assert all(line.startswith("--- [") for line in lines[2:])
    assert len(lines) == 5  # snapshot, the line heading the records, +=, text, transaction
    documents = list(yaml.safe_load_all(path.read_text("utf-8")))
    assert documents[0] == {"a": 1}
    assert documents[-1] == ["tx", [["set", [], "a", 10], ["set", [], "b", [1, 2]]]]
    state.close()
    assert path.read_text("utf-8") == "a: 10\ntext: |-\n  two\n  lines\nb:\n- 1\n- 2\n"


def test_every_operation_replays(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    state = PersistedState(path)
    state["d"] = {"x": 1, "y": 2}
    state["l"] = [5, 3, 9, 1]
    del state["d"]["x"]
    state["l"].insert(1, 7)
    state["l"][1:3] = ["a", "b", "c"]
    state["l"].sort(key=str)
    state["l"].reverse()
    state["d"].clear()
    state["l"].pop(0)
    expected = state.copy()
    assert load(path) == expected
    state.close()
    assert load(path) == expected


# -- recovery: torn ends are dropped, other damage is reported -------------------------


def _state_with_journal(path: Path) -> bytes:
    state = PersistedState(path, counter=0)
    for _ in range(3):
        state.counter += 1
    state.close(compact=False)  # crash: no compaction
    return path.read_bytes()


@pytest.mark.parametrize(
    "tail",
    [b'--- ["set", [], "counter", 4', b"--- [", b"---", b"--", b"-", b"\0\0\0\0\0\0"],
)
def test_torn_last_record_is_dropped_with_a_warning(
    tmp_path: Path, tail: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.yaml"
    good = _state_with_journal(path)
    path.write_bytes(good + tail)
    with caplog.at_level(logging.WARNING, logger="persistedstate"):
        assert load(path) == {"counter": 3}
    assert "incomplete last journal record" in caplog.text
    assert path.read_bytes() == good + tail  # load() never writes

    state = PersistedState(path)
    assert state == {"counter": 3}
    assert path.read_bytes() == good + tail  # opening writes nothing
    state.counter += 1  # the torn tail is cut off before the record is written
    assert path.read_bytes() == good + b'--- ["set", [], "counter", 4]\n'
    state.close(compact=False)
    assert load(path) == {"counter": 4}


def test_26_1_layout_errors_point_at_the_record_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(
        b'\n---\n["set", [], "a", 1]\n---\n["set", [], "a", ]]\n---\n["set", [], "a", 3]\n'
    )
    _assert_corrupt_and_untouched(path, line=5, column=19)


def test_26_1_record_torn_after_its_marker_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b'\n---\n["set", [], "a", 1]\n---\n')
    assert load(path) == {"a": 1}
    path.write_bytes(b'\n---\n["set", [], "a", 1]\n---\n["set", [], "b", ')
    assert load(path) == {"a": 1}


def test_complete_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b'{}\n--- ["set", [], "a", 1]')
    assert load(path) == {"a": 1}


def _assert_corrupt_and_untouched(path: Path, line: int, column: int | None = None) -> str:
    before = path.read_bytes()
    with pytest.raises(CorruptStateError) as caught:
        load(path)
    with pytest.raises(CorruptStateError) as caught_open:
        PersistedState(path)
    gc.collect()
    assert path.read_bytes() == before
    for error in (caught.value, caught_open.value):
        assert error.path == str(path)
        assert error.line == line
        if column is not None:
            assert error.column == column
        assert str(path) in str(error) and f"line {line}" in str(error)
    return str(caught.value)


def test_bad_record_in_the_middle_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(
        b'a: 1\n--- ["set", [], "a", 2]\n--- ["set", [], "a", oops}\n--- ["set", [], "a", 3]\n'
    )
    _assert_corrupt_and_untouched(path, line=3)


def test_record_for_a_missing_path_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b'a: 1\n--- ["set", ["nope"], "x", 2]\n')
    message = _assert_corrupt_and_untouched(path, line=2, column=5)
    assert "['nope']" in message


def test_a_lone_surrogate_escape_in_a_record_is_corruption(tmp_path: Path) -> None:
    """JSON would read it, YAML refuses it, and no state could ever be written holding it."""
    path = tmp_path / "s.yaml"
    path.write_bytes(b'a: 1\n--- ["set", [], "a", 2]\n--- ["set", [], "x", "ok\\udcff"]\n')
    message = _assert_corrupt_and_untouched(path, line=3, column=25)
    assert "surrogate" in message
    # After a valid pair: the column is the lone one's.
    path.write_bytes(b'a: 1\n--- ["set", [], "x", "\\ud83d\\ude00 x \\udcff"]\n')
    _assert_corrupt_and_untouched(path, line=2, column=38)
    # Columns count characters, as everywhere else, not the bytes of the text before.
    path.write_bytes('a: 1\n--- ["set", [], "ключ", "\\udcff"]\n'.encode())
    _assert_corrupt_and_untouched(path, line=2, column=26)


@pytest.mark.parametrize(
    "record",
    [b'["set", [], "k", "\\udcff"]', b'["set", [], "k"]', b'["set", ["nope"], "k", 1]'],
    ids=["surrogate", "fields", "path"],
)
def test_a_last_record_that_parses_is_complete_so_its_damage_is_corruption(
    tmp_path: Path, record: bytes
) -> None:
    """26.1 writes no final newline; a record cut short never parses, this one does."""
    path = tmp_path / "s.yaml"
    path.write_bytes(b"a: 1\n---\n" + record)
    _assert_corrupt_and_untouched(path, line=3)


def test_escapes_that_look_like_surrogates_but_are_not_read_back(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    # A surrogate pair is one character; an escaped backslash makes the rest plain text.
    path.write_bytes(b'a: 1\n--- ["set", [], "x", "\\ud83d\\ude00 \\\\ud800"]\n')
    expected = {"a": 1, "x": "\U0001f600 \\ud800"}
    assert load(path) == expected
    with PersistedState(path) as state:
        assert state.copy() == expected
    assert load(path) == expected


def test_json_constants_yaml_reads_as_strings_are_read_as_yaml_does(tmp_path: Path) -> None:
    """Python's json reads NaN and Infinity as floats; in YAML (the file's format) they are text."""
    path = tmp_path / "s.yaml"
    text = 'a: 1\n--- ["set", [], "x", NaN]\n--- ["set", [], "y", [Infinity, -Infinity]]\n'
    path.write_text(text, encoding="utf-8")
    expected = {"a": 1, "x": "NaN", "y": ["Infinity", "-Infinity"]}
    assert [*yaml.safe_load_all(text)][1:] == [
        ["set", [], "x", "NaN"],
        ["set", [], "y", ["Infinity", "-Infinity"]],
    ]
    assert_same(load(path), expected)


@pytest.mark.parametrize(
    "record",
    [
        b'["set", [], "a", 2, 3]',
        b'["clear", ["l"], 0]',
        b'["delete", ["l"], 0, 1]',
        b'["insert", ["l"], -4, "x"]',
        b'["splice", ["l"], -4, 0, []]',
        b'["insert", ["l"], 4, "x"]',
        b'["splice", ["l"], 0, 4, []]',
    ],
    ids=[
        "set-a-field-too-many",
        "clear-a-field-too-many",
        "delete-a-field-too-many",
        "insert-before-the-start",
        "splice-from-before-the-start",
        "insert-past-the-end",
        "splice-past-the-end",
    ],
)
def test_a_record_with_extra_fields_or_an_index_out_of_range_is_corruption(
    tmp_path: Path, record: bytes
) -> None:
    """We never write such a record, and Python would take it in (ignore a field, clamp an
    index) and read a state no one wrote."""
    path = tmp_path / "s.yaml"
    path.write_bytes(b"a: 1\nl: [1, 2, 3]\n--- " + record + b'\n--- ["set", [], "a", 3]\n')
    _assert_corrupt_and_untouched(path, line=3, column=5)


@pytest.mark.parametrize(
    "record",
    [
        b'["tx", [["clear"]]]',
        b'["tx", [["set", [], "a"]]]',
        b'["tx", [["set", [], "a", 2, 3]]]',
        b'["tx", [["set", [], "a", 2], ["delete", ["l"], 0, 1]]]',
        b'["tx", [["insert", ["l"], 0]]]',
        b'[["set"], [], "a", 2]',
        b'[{"set": 1}, [], "a", 2]',
        b'["tx", [[["set"], [], "a", 2]]]',
    ],
    ids=[
        "tx-clear-without-its-path",
        "tx-set-a-field-short",
        "tx-set-a-field-too-many",
        "tx-second-record-a-field-too-many",
        "tx-insert-a-field-short",
        "operation-a-list",
        "operation-a-mapping",
        "tx-operation-a-list",
    ],
)
def test_a_record_of_the_wrong_shape_inside_a_tx_or_with_an_odd_operation_is_corruption(
    tmp_path: Path, record: bytes
) -> None:
    """The records inside a tx are checked as a record on its own line is (no IndexError,
    no extra field taken in), and an operation that is not a string is no TypeError."""
    path = tmp_path / "s.yaml"
    path.write_bytes(b"a: 1\nl: [1, 2, 3]\n--- " + record + b'\n--- ["set", [], "a", 3]\n')
    _assert_corrupt_and_untouched(path, line=3, column=5)


def test_unknown_operation_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b'a: 1\n--- ["frobnicate", [], "x"]\n')
    _assert_corrupt_and_untouched(path, line=2)


def test_hand_edit_typo_is_reported_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"host: example\nretries: [3\nname: x\n")
    message = _assert_corrupt_and_untouched(path, line=3, column=5)
    assert "invalid YAML" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"- a\n- b\n")
    assert "mapping" in _assert_corrupt_and_untouched(path, line=1)


def test_invalid_utf8_is_reported_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    _assert_corrupt_and_untouched(path, line=2, column=7)


def test_unsupported_yaml_types_are_reported_with_key_path(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"a:\n  b: !!set {x: null}\n")
    with pytest.raises(CorruptStateError, match=r"\['a', 'b'\]"):
        load(path)


def test_hand_written_snapshot_with_marker_and_comments_opens(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"# my job\n---\nlast_id: 5  # resume here\n")
    assert load(path) == {"last_id": 5}
    path.write_bytes(b'%YAML 1.1\n---\nlast_id: 5\n--- ["set", [], "last_id", 6]\n')
    assert load(path) == {"last_id": 6}


def test_aliases_load_as_independent_copies(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"base: &b {x: 1}\nother: *b\n")
    with PersistedState(path) as state:
        state["other"]["x"] = 2
        assert state == {"base": {"x": 1}, "other": {"x": 2}}
    assert load(path) == {"base": {"x": 1}, "other": {"x": 2}}


def test_recursive_alias_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"a: &a [1, *a]\n")
    with pytest.raises(CorruptStateError, match="alias"):
        load(path)


def test_a_complete_last_record_that_does_not_fit_is_corruption_not_a_torn_write(
    tmp_path: Path,
) -> None:
    """Only a record cut short can be torn; one that parses was written whole."""
    path = tmp_path / "s.yaml"
    path.write_bytes(b'a: 1\n--- ["tx", [["set", [], "b", 2], ["delete", [], "zz"]]]')
    _assert_corrupt_and_untouched(path, line=2)


@pytest.mark.parametrize(
    ("raw", "line", "column"),
    [
        pytest.param(
            b'a: 1\n--- ["set", [], "a", 2]\n--- ["set", [], "a", oops}\n', 3, 26, id="our-layout"
        ),
        pytest.param(
            b'\n---\n["set", [], "a", 1]\n---\n["set", [], "a", 2]\n---\n["set", [], "a", oops}\n',
            7,
            22,
            id="26.1-layout",
        ),
    ],
)
def test_a_damaged_last_record_that_ends_with_its_newline_is_corruption_not_a_torn_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, raw: bytes, line: int, column: int
) -> None:
    """An interrupted append never writes the newline without the bytes before it: a last
    record that does not parse but ends with its newline was damaged after it was written.
    It is reported, not dropped, and no writer cuts it off."""
    path = tmp_path / "s.yaml"
    path.write_bytes(raw)
    with caplog.at_level(logging.WARNING, logger="persistedstate"):
        _assert_corrupt_and_untouched(path, line=line, column=column)
    assert "incomplete last journal record" not in caplog.text
    assert path.read_bytes() == raw


def _nested(depth: int, opening: bytes, closing: bytes, inner: bytes = b"") -> bytes:
    return opening * depth + inner + closing * depth


def _chain_of_60_dicts() -> bytes:
    """A record making state["k"]["k"]... (60 keys) a dict: the state is then 61 levels deep."""
    return b'{}\n--- ["set", [], "k", ' + _nested(59, b'{"k": ', b"}", b"{}") + b"]\n"


_PATH_OF_60 = b"[" + b", ".join([b'"k"'] * 60) + b"]"


@pytest.mark.parametrize(
    ("make", "last_line"),
    [
        # make(n) gives a file whose last record makes the state n levels deep.
        pytest.param(
            lambda n: b'{}\n--- ["set", [], "x", ' + _nested(n - 1, b"[", b"]") + b"]\n",
            2,
            id="value",
        ),
        # A long path and a short value (few brackets in the record): the path decides.
        pytest.param(
            lambda n: (
                _chain_of_60_dicts()
                + b'--- ["set", '
                + _PATH_OF_60
                + b', "k", '
                + _nested(n - 61, b"[", b"]")
                + b"]\n"
            ),
            3,
            id="path",
        ),
        pytest.param(
            lambda n: (
                _chain_of_60_dicts()
                + b'--- ["tx", [["set", [], "y", 1], ["set", '
                + _PATH_OF_60
                + b', "k", '
                + _nested(n - 61, b"[", b"]")
                + b"]]]\n"
            ),
            3,
            id="path-in-a-tx",
        ),
    ],
)
def test_a_record_that_nests_the_state_too_deep_is_corruption(
    tmp_path: Path, make: Any, last_line: int
) -> None:
    """Dicts and lists nest at most 100 levels, the top mapping included (docs/design.md,
    Limits): a record that makes the state 101 levels deep is damage; 100 levels open."""
    path = tmp_path / "s.yaml"
    path.write_bytes(make(100))
    data = load(path)
    with PersistedState(path) as state:
        assert state == data
    assert load(path) == data

    path.write_bytes(make(101))
    message = _assert_corrupt_and_untouched(path, line=last_line)
    assert "more than 100 levels deep" in message


def test_aliases_read_by_pyyaml_s_own_constructor_load_as_independent_copies(
    tmp_path: Path,
) -> None:
    """A merge key sends the snapshot through PyYAML's constructor, which shares aliased
    containers; a journal record with anchors is read by PyYAML too. Each container must still
    sit in one place only: a change to one copy leaves the others as they were."""
    path = tmp_path / "s.yaml"
    path.write_bytes(
        b"base: &b {x: 1, l: [1]}\n"
        b"other: *b\n"
        b"merged: {<<: *b, y: 2}\n"
        b'--- ["set", [], "pair", [&p {"n": [1]}, *p]]\n'
    )
    expected = {
        "base": {"x": 1, "l": [1]},
        "other": {"x": 2, "l": [1, 3]},
        "merged": {"x": 1, "l": [1], "y": 2},
        "pair": [{"n": [1, 4]}, {"n": [1]}],
    }
    with PersistedState(path) as state:
        state["other"]["x"] = 2
        state["other"]["l"].append(3)
        state["pair"][0]["n"].append(4)
        assert_same(state.copy(), expected)
        assert_same(load(path), expected)  # the records replay onto independent copies
    assert_same(load(path), expected)


# -- a byte-order mark at the start -----------------------------------------------------------
# Some Windows editors put the UTF-8 byte-order mark (EF BB BF) at the start of a file they
# save. A file is read as if it were not there, whatever comes first; no rewrite keeps it.

BOM = b"\xef\xbb\xbf"

STARTS = {
    "26.1, a record first": fixture_26_1("unvacuumed-journal.yaml").read_bytes(),
    "26.1, a snapshot": fixture_26_1("clean.yaml").read_bytes(),
    "a record on the first line": b'--- ["set", [], "a", 1]\n--- ["set", [], "b", [2]]\n',
    "a snapshot, then records": b'a: 1\n--- ["set", [], "a", 2]\n',
    "a snapshot started with ---": b'---\na: 1\n--- ["set", [], "a", 2]\n',
    "a directive": b'%YAML 1.1\n---\na: 1\n--- ["set", [], "a", 2]\n',
    "a comment, then a record": b'# notes\n--- ["set", [], "a", 1]\n',
    "a snapshot with comments": b"# notes\na: 1  # one\nb: [1, 2]\n",
    "nothing else": b"",
}


@pytest.mark.parametrize("text", STARTS.values(), ids=STARTS.keys())
def test_a_byte_order_mark_at_the_start_is_read_past_and_not_written_again(
    tmp_path: Path, text: bytes
) -> None:
    plain, marked = tmp_path / "plain.state", tmp_path / "marked.state"
    plain.write_bytes(text)
    marked.write_bytes(BOM + text)
    expected = load(plain)
    assert_same(load(marked), expected)
    with PersistedState(marked) as state:
        assert_same(state.copy(), expected)
        state.added = 1  # a record appended to a file that starts with the mark
    with PersistedState(plain) as state:
        state.added = 1
    rewritten = marked.read_bytes()
    assert not rewritten.startswith(BOM)
    assert rewritten == plain.read_bytes()  # what the same file without the mark becomes


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        (b'--- ["set", [], "a", ]]\n', 1, 23),  # a record on the first line
        (b'---\n["set", [], "a", 1, 2]\n', 2, 1),
        (b"a: [1\nb: 2\n", 2, 2),
        (b"a: !!set {x: null}\n", 1, 1),
    ],
)
def test_damage_in_a_file_starting_with_a_byte_order_mark_is_placed_as_without_it(
    tmp_path: Path, text: bytes, line: int, column: int
) -> None:
    """A person's editor shows no mark: the column on line 1, and the line shown, leave it
    out."""
    path = tmp_path / "s.state"
    path.write_bytes(text)
    plain = _assert_corrupt_and_untouched(path, line=line, column=column)
    path.write_bytes(BOM + text)
    assert _assert_corrupt_and_untouched(path, line=line, column=column) == plain


def test_a_byte_order_mark_an_editor_adds_above_records_is_not_an_edit(tmp_path: Path) -> None:
    """The heading's checksum covers the document's bytes: a mark added (or one a file had
    and lost) changes no value, so the records still apply."""
    path = tmp_path / "s.state"
    with PersistedState(path, a=1) as state:
        state.a = 2
        state.close(compact=False)  # document, heading, record: what a kill leaves
    raw = path.read_bytes()
    assert b"crc32" in raw
    path.write_bytes(BOM + raw)
    assert load(path) == {"a": 2}
    with PersistedState(path) as state:  # a record after a document that has the mark
        state.a = 3
        state.close(compact=False)
    marked = path.read_bytes()
    assert marked.startswith(BOM)
    assert load(path) == {"a": 3}
    path.write_bytes(marked[len(BOM) :])  # an editor that drops the mark
    assert load(path) == {"a": 3}


# -- a key given twice in a record --------------------------------------------------------------
# The document refuses a mapping holding a key twice (tests/test_snapshot.py); a record, hand
# written or damaged, is held to the same rule, whichever parser reads it.

TWICE = {
    "JSON": (b'--- ["set", [], "a", {"x": 1, "x": 2}]\n', 31),
    "JSON, nested": (b'--- ["set", [], "a", [{"y": {"x": 1, "z": 0, "x": 2}}]]\n', 46),
    "JSON, in a tx": (b'--- ["tx", [["set", [], "a", {"x": 1, "x": 2}]]]\n', 39),
    "YAML only": (b'--- ["set", [], "a", {"x": .inf, "x": 2}]\n', 34),
    "keys Python holds as one": (b'--- ["set", [], "a", {1: "p", 1.0: "q"}]\n', 31),
    "the last record, without its newline": (b'--- ["set", [], "a", {"x": 1, "x": 2}]', 31),
}


@pytest.mark.parametrize(("record", "column"), TWICE.values(), ids=TWICE.keys())
def test_a_key_given_twice_in_a_record_is_damage_where_it_is(
    tmp_path: Path, record: bytes, column: int
) -> None:
    """Not a torn write either (the record parses whole): the file is refused, untouched."""
    path = tmp_path / "s.state"
    path.write_bytes(b'a: 0\n--- ["set", [], "b", 1]\n' + record)
    message = _assert_corrupt_and_untouched(path, line=3, column=column)
    assert "twice" in message


def test_the_same_key_in_different_mappings_of_a_record_is_no_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    path.write_bytes(b'a: 0\n--- ["set", [], "a", [{"x": 1}, {"x": 2, "y": {"x": 3}}]]\n')
    assert load(path) == {"a": [{"x": 1}, {"x": 2, "y": {"x": 3}}]}
