"""Hand edits survive compaction: comments, key order, and the way values were written."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

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
    assert load(path) == expected == {**original, "added_later": {"list": [1, 2]}}
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
