"""Hand edits survive compaction: comments, key order, and the way values were written."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import assert_same

from persistedstate import PersistedState, load

CORPUS = {
    "above-and-after": """\
# Settings for the nightly job
host: example.invalid   # where to connect

# how often to retry
retries: 3
""",
    "nested": """\
server:
  # the public name
  name: api   # short
  ports:
    - 80    # http
    # and the secure one
    - 443
limits: {cpu: 2, memory: 512}   # flow style
""",
    "odd-indentation": """\
jobs:
      first:     # four-plus spaces
            every: 5m
      second:
            every: 1h   # hourly
""",
    "anchors": """\
defaults: &defaults   # shared settings
  timeout: 30
production:
  <<: *defaults
  host: prod   # the real one
staging: *defaults
""",
    "quoted-and-typed": """\
answer: 'yes'     # a string, not a bool
mask: 0x1F        # hex stays hex
when: 2026-01-01  # a date
text: |
  two
  lines
""",
}


def _comment_lines(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        if "#" in line:
            found.append(line[line.index("#") :].strip())
    return found


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_comments_and_order_survive_changes(tmp_path: Path, name: str) -> None:
    path = tmp_path / "state.yaml"
    path.write_text(CORPUS[name], encoding="utf-8")
    original = load(path)
    with PersistedState(path) as state:
        first_key = next(iter(state))
        state["added_later"] = {"list": [1, 2]}
        expected = state.copy()
    text = path.read_text(encoding="utf-8")
    assert_same(load(path), expected)  # keys in the same order as in memory
    assert expected == {**original, "added_later": {"list": [1, 2]}}
    assert _comment_lines(CORPUS[name]) == _comment_lines(text), text
    assert list(yaml.safe_load(text)) == [*original, "added_later"]  # order kept, new at end
    assert next(iter(load(path))) == first_key


def test_changed_values_keep_their_comments(tmp_path: Path) -> None:
    path = tmp_path / "state.yaml"
    path.write_text(CORPUS["nested"], encoding="utf-8")
    with PersistedState(path) as state:
        state["server"]["name"] = "api-2"
        state["server"]["ports"][0] = 8080
        state["limits"]["cpu"] = 4
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert any("name: api-2" in line and line.endswith("# short") for line in lines), text
    assert any("8080" in line and line.endswith("# http") for line in lines), text
    assert "# flow style" in text and "# the public name" in text
    assert load(path)["limits"] == {"cpu": 4, "memory": 512}


def test_deleting_a_key_keeps_the_comment_above_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "state.yaml"
    path.write_text(CORPUS["above-and-after"], encoding="utf-8")
    with PersistedState(path) as state:
        del state["host"]
    text = path.read_text(encoding="utf-8")
    assert "# where to connect" not in text  # it belonged to the deleted key
    assert text.index("# how often to retry") < text.index("retries: 3")
    assert text.startswith("# Settings for the nightly job")


def test_a_key_deleted_and_set_again_comes_last_in_the_file_as_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "state.yaml"
    path.write_text(
        "# top\nhost: a   # where\n# about retries\nretries: 3\nserver:\n"
        "  name: api   # short\n  # about port\n  port: 80\n  tls: true\nlast: 1\n",
        encoding="utf-8",
    )
    with PersistedState(path) as state:
        del state["host"]
        state["host"] = "b"
        del state["server"]["name"]
        state["server"]["name"] = "api-2"
        state["server"]["extra"] = 1
        expected = state.copy()
    assert list(expected) == ["retries", "server", "last", "host"]
    assert list(expected["server"]) == ["port", "tls", "name", "extra"]
    assert_same(load(path), expected)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# top\n")
    assert text.index("# about retries") < text.index("retries: 3")  # stays with its key
    assert text.index("# about port") < text.index("port: 80")
    lines = text.splitlines()
    assert any(line.startswith("host: b") and line.endswith("# where") for line in lines), text
    assert any("name: api-2" in line and line.endswith("# short") for line in lines), text


def test_a_dict_replaced_in_another_order_is_written_in_that_order(tmp_path: Path) -> None:
    path = tmp_path / "state.yaml"
    path.write_text("# note\nd:\n  a: 1   # first\n  b: 2\n  c: 3\n", encoding="utf-8")
    with PersistedState(path) as state:
        state["d"] = {"new": 0, "c": 3, "a": 1, "b": 2}
        expected = state.copy()
    assert_same(load(path), expected)
    assert "# note" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("before", "change", "after"),
    [
        pytest.param(
            "a: 1\nb: 2\n# the end\n",
            lambda state: state.pop("b"),
            "a: 1\n# the end\n",
            id="last-key-deleted",
        ),
        pytest.param(
            "a: 1\nc:\n  x: 1\n# about d\nd: 2\n",
            lambda state: state["c"].update(k=2),
            "a: 1\nc:\n  x: 1\n  k: 2\n# about d\nd: 2\n",
            id="key-added-to-a-nested-map",
        ),
        pytest.param(
            "a: 1\nc:\n  x: 1\n  l:\n  - 1\n# about d\nd: 2\n",
            lambda state: state.pop("c"),
            "a: 1\n# about d\nd: 2\n",
            id="nested-map-deleted",
        ),
        pytest.param(
            "c:\n  x: 1\n# about d\nd: 2\n# the end\n",
            lambda state: (state.pop("c"), state.update(l=[1, 2])),
            "# about d\nd: 2\nl:\n- 1\n- 2\n# the end\n",
            id="first-key-deleted-and-a-list-added",
        ),
        pytest.param(
            "# state\nretries: 3   # per job\npending:\n  job1: queued\n# the end\n",
            lambda state: state["pending"].pop("job1"),
            "# state\nretries: 3   # per job\npending: {}\n# the end\n",
            id="last-map-emptied",
        ),
        pytest.param(
            "queue:  # to do\n- job1\nb: 1\n",
            lambda state: state["queue"].pop(),
            "queue: [] # to do\nb: 1\n",  # (ruamel.yaml's spacing)
            id="list-emptied",
        ),
        pytest.param(
            "a:\n  b: [1, 2]\nc: 2\n# about d\nd: 3\n",
            lambda state: state.pop("c"),
            "a:\n  b: [1, 2]\n# about d\nd: 3\n",
            id="flow-list-before-a-deleted-key",
        ),
        pytest.param(
            "# c\nx: 0.0\ny: -0.0\n",
            lambda state: state.update(x=-0.0, y=0.0),
            "# c\nx: -0.0\ny: 0.0\n",
            id="signed-zeros",
        ),
        pytest.param(
            "l:\n- 1\n- 2\n# the end\n",
            lambda state: state["l"].append(3),
            "l:\n- 1\n- 2\n- 3\n# the end\n",
            id="list-appended-to",
        ),
    ],
)
def test_comment_lines_stay_where_they_were_written(
    tmp_path: Path, before: str, change: Any, after: str
) -> None:
    """A comment between entries stays before the entry it was above; a closing one at the end."""
    path = tmp_path / "state.yaml"
    path.write_text(before, encoding="utf-8")
    with PersistedState(path) as state:
        change(state)
        expected = state.copy()
    assert path.read_text(encoding="utf-8") == after
    assert_same(load(path), expected)


def test_keys_ruamel_yaml_reads_as_booleans_keep_their_comments(tmp_path: Path) -> None:
    """ruamel.yaml's YAML 1.1 reads y and n as booleans; PyYAML, the reader of record, does not."""
    path = tmp_path / "state.yaml"
    path.write_text("window:\n  x: 10  # left\n  y: 20  # from the top\nn: 1  # count\n")
    with PersistedState(path) as state:
        state["window"]["x"] = 11
        state["answer"] = "y"
        expected = state.copy()
    text = path.read_text(encoding="utf-8")
    assert "  y: 20  # from the top\n" in text and "n: 1  # count\n" in text
    assert_same(load(path), expected)


def test_how_values_were_written_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.yaml"
    path.write_text(CORPUS["quoted-and-typed"], encoding="utf-8")
    with PersistedState(path) as state:
        state["new_text"] = "yes"  # must be quoted, or YAML 1.1 reads a bool
    text = path.read_text(encoding="utf-8")
    assert "answer: 'yes'" in text and "mask: 0x1F" in text and "when: 2026-01-01" in text
    assert load(path)["new_text"] == "yes"
    assert load(path)["mask"] == 31


def test_aliases_become_independent_copies_and_keep_comments(tmp_path: Path) -> None:
    path = tmp_path / "state.yaml"
    path.write_text(CORPUS["anchors"], encoding="utf-8")
    with PersistedState(path) as state:
        state["staging"]["timeout"] = 5
    data = load(path)
    assert data["staging"] == {"timeout": 5}
    assert data["defaults"] == {"timeout": 30}
    assert data["production"] == {"timeout": 30, "host": "prod"}
    assert "# the real one" in path.read_text(encoding="utf-8")


def test_files_without_comments_use_the_plain_writer(tmp_path: Path) -> None:
    path = tmp_path / "state.yaml"
    path.write_text("b: 1\na: 2\n", encoding="utf-8")
    with PersistedState(path) as state:
        state["c"] = "multi\nline"
    assert path.read_text(encoding="utf-8") == "b: 1\na: 2\nc: |-\n  multi\n  line\n"


def test_floats_are_written_exactly_with_the_comments_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.yaml"
    path.write_text("# a comment\na: 1\n", encoding="utf-8")
    floats = {"tiny": 5.019273308782307e-108, "big": 1e16, "least": 5e-324, "inf": float("inf")}
    with caplog.at_level(logging.WARNING, logger="persistedstate"), PersistedState(path) as state:
        state.update(floats)
        state.compact()  # again, now that the floats were read back by ruamel.yaml
        state["a"] = 2
    assert_same(load(path), {"a": 2, **floats})
    assert path.read_text(encoding="utf-8").startswith("# a comment\n")
    assert "could not keep the comments" not in caplog.text


@pytest.mark.parametrize(
    "text",
    ["line\x85break", "a\u2028b", "a\u2029b\n", "two\nlines", "ends\n", "\x85\n\u2028"],
)
def test_strings_with_any_line_break_are_written_exactly_with_the_comments_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    """README "Values": any Unicode string; the comments survive its compaction."""
    path = tmp_path / "state.yaml"
    path.write_text("# a comment\na: 1  # one\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="persistedstate"), PersistedState(path) as state:
        state["text"] = text
        state.compact()
        state[text] = 2  # (as a key too)
    assert_same(load(path), {"a": 1, "text": text, text: 2})
    assert path.read_text(encoding="utf-8").startswith("# a comment\na: 1  # one\n")
    assert "could not keep the comments" not in caplog.text


def test_a_value_the_round_trip_cannot_keep_exact_falls_back_without_comments(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.yaml"
    path.write_text("# a comment\na: 1\n", encoding="utf-8")
    huge = 10**5000  # too many digits for a decimal conversion in ruamel.yaml
    with caplog.at_level(logging.WARNING, logger="persistedstate"), PersistedState(path) as state:
        state["huge"] = huge
    assert load(path) == {"a": 1, "huge": huge}
    assert "could not keep the comments" in caplog.text


MARKED = "# top comment\n%YAML 1.1\n# between\n---\n# inside\na: 1  # eol\n...\n# after end\n"


@pytest.mark.parametrize(
    ("before", "change", "after"),
    [
        pytest.param(
            MARKED,
            lambda state: state.update(b=2),
            MARKED.replace("# eol\n", "# eol\nb: 2\n"),
            id="directive-markers-and-end",
        ),
        pytest.param(MARKED, lambda state: None, MARKED, id="no-change"),
        pytest.param(
            "# top\n--- # the state\na: 1\n",
            lambda state: state.update(a=2),
            "# top\n--- # the state\na: 2\n",
            id="comment-on-the-marker-line",
        ),
        pytest.param(
            "# top\n---\na: 1\n",
            lambda state: state.pop("a"),
            "# top\n---\n{}\n",
            id="emptied",
        ),
        pytest.param(
            "# no entries yet\n",
            lambda state: state.update(a=1),
            "# no entries yet\na: 1\n",
            id="comments-only",
        ),
        pytest.param(
            "# top\n---\n# no entries yet\n...\n# end\n",
            lambda state: state.update(a=1),
            "# top\n---\n# no entries yet\na: 1\n...\n# end\n",
            id="comments-only-between-markers",
        ),
    ],
)
def test_comments_around_the_document_markers_are_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, before: str, change: Any, after: str
) -> None:
    """Above "---" and its directives, on its line, after "...", in a document of comments."""
    path = _changed_and_closed(tmp_path, caplog, before, change)
    assert path.read_text(encoding="utf-8") == after
    assert not caplog.records


def _changed_and_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, change: Any
) -> Path:
    """A state file holding ``text``, opened, changed, compacted and closed, warnings caught;
    it reads back as the state was in memory."""
    path = tmp_path / "state.yaml"
    path.write_text(text, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="persistedstate"), PersistedState(path) as state:
        change(state)
        state.compact()
        expected = state.copy()
    assert_same(load(path), expected)
    return path


@pytest.mark.parametrize(
    ("text", "change", "why"),
    [
        pytest.param(
            "# a comment\na: 1\n",
            lambda state: state.update(huge=10**5000),
            "could not write this state",
            id="cannot-write",
        ),
        pytest.param(
            "? a  # a complex key\n: 1\n",
            lambda state: state.update(b=2),
            "would not read back as the same state",
            id="writes-what-does-not-read-back",
        ),
    ],
)
def test_comments_not_kept_are_reported_plainly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, change: Any, why: str
) -> None:
    """The warning names the file, what was not kept and why, in a person's words."""
    path = _changed_and_closed(tmp_path, caplog, text, change)
    [message] = [
        record.getMessage() for record in caplog.records if "comment" in record.getMessage()
    ]
    assert message.startswith(f"{path}: ")
    assert "could not keep the comments" in message and why in message
    for raw in ("<unicode string>", "<compaction>", "Error", "http", "\n"):
        assert raw not in message


def test_a_round_trip_that_reads_back_as_other_data_falls_back_to_exact_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison of the commented output with the state must be able to say no: a
    writer of strings that gets them wrong without raising (as a ruamel.yaml release may) is
    caught by it, and the plain snapshot is written instead."""
    import persistedstate.comments

    def misspelled(representer: Any, value: str) -> Any:
        return representer.represent_scalar("tag:yaml.org,2002:str", value.replace("e", "E"))

    monkeypatch.setattr(persistedstate.comments, "_represent_str", misspelled)
    path = tmp_path / "state.yaml"
    path.write_text("# a comment\na: 1\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="persistedstate"), PersistedState(path) as state:
        state["key"] = 1
        state["text"] = "line break"
        expected = state.copy()
    assert_same(load(path), expected)
    assert_same(yaml.safe_load(path.read_text(encoding="utf-8")), expected)
    assert "could not keep the comments" in caplog.text
    assert "would not read back as the same state" in caplog.text  # the comparison said no
