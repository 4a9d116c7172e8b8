"""Errors a person can act on: the place of the typo, the line with a caret, a hint.

README "check" and design.md "Opening": damage is reported with the line and column of the
mistake itself where it can be found, the file's line with a caret under that column (in the
Python exception as in the command), and a one-line hint for the common YAML mistakes.
The command line shows the same, and ``check`` lists the plain values YAML 1.1 reads otherwise
than they look: tests/test_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from persistedstate import CorruptStateError, load


def _damage(tmp_path: Path, text: str) -> CorruptStateError:
    path = tmp_path / "state.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CorruptStateError) as raised:
        load(path)
    return raised.value


@pytest.mark.parametrize(
    ("text", "line", "column", "hint"),
    [
        pytest.param("a: 1\nb 2\nc: 3\n", 2, 1, "':'", id="missing-colon"),
        pytest.param("a: 1\nb 2\n", 2, 1, "':'", id="missing-colon-on-the-last-line"),
        pytest.param("a:\n  x: 1\n  y 2\n  z: 3\n", 3, 3, "':'", id="missing-colon-nested"),
        pytest.param("a:\n\tb: 1\n", 2, 1, "tab", id="tab-indentation"),
        pytest.param("a:\n  b: 1\n\tc: 2\n", 3, 1, "tab", id="tab-after-spaces"),
        pytest.param("a: [1, 2\nb: 3\n", 2, 2, "'['", id="unclosed-bracket"),
        pytest.param("a: 1\nb: {x: 1\n", 3, 1, "'{'", id="unclosed-brace-at-the-end"),
        pytest.param('a: "abc\nb: 3\n', 1, 4, "quote", id="unclosed-double-quote"),
        pytest.param("a: 'abc\nb: 3\n", 1, 4, "quote", id="unclosed-single-quote"),
        pytest.param("a:\n  b: 1\n c: 2\n", 3, 2, "indent", id="indented-less"),
        pytest.param("a:\n  - 1\n - 2\n", 3, 2, "indent", id="list-item-indented-less"),
        pytest.param("a: 1\n  b: 2\n", 2, 3, "indent", id="indented-under-a-value"),
    ],
)
def test_the_mistake_is_found_where_it_was_made_with_a_hint(
    tmp_path: Path, text: str, line: int, column: int, hint: str
) -> None:
    error = _damage(tmp_path, text)
    assert (error.line, error.column) == (line, column), error.problem
    assert error.hint is not None and hint in error.hint.lower()
    assert "\n" not in error.hint  # one line


def test_a_missing_colon_is_reported_on_its_own_line(tmp_path: Path) -> None:
    error = _damage(tmp_path, "name: job\nretries 3\nmode: fast\n")
    assert error.line == 2
    assert "retries 3" in str(error)


def test_the_exception_shows_the_line_and_a_caret_under_the_column(tmp_path: Path) -> None:
    error = _damage(tmp_path, "a: 1\nb: c: d\ne: 3\n")
    assert (error.line, error.column) == (2, 5)
    lines = str(error).split("\n")
    shown = next(index for index, text in enumerate(lines) if text.strip() == "b: c: d")
    source, caret = lines[shown], lines[shown + 1]
    assert caret.strip() == "^"
    assert caret.index("^") == source.index("b: c: d") + 4
    assert error.hint is not None and error.hint in str(error)
    assert str(error).startswith(f"{error.path}, line {error.line}, column {error.column}: ")


def test_lines_are_counted_as_an_editor_counts_them(tmp_path: Path) -> None:
    """NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR end a line for the YAML parser, not in most
    editors, nor in every other position the library reports (a line and column that pointed
    past the end of the file was found by the fuzz test)."""
    for separator in ("\x85", "\u2028", "\u2029"):
        error = _damage(tmp_path, f"a: 1\nb: x{separator}y: [\n")
        assert (error.line, error.column) == (3, 1), repr(separator)
        error = _damage(tmp_path, f"0{separator}--- ")
        assert (error.line, error.column) == (1, 3), repr(separator)  # ("---" after 2 chars)


def test_an_unclosed_bracket_is_named_where_it_opens(tmp_path: Path) -> None:
    """Where the parser notices it is where the caret goes; the words point at the bracket."""
    error = _damage(tmp_path, "host: example\nretries: [3\nname: x\n")
    assert "the '[' at line 2, column 10 is never closed" in error.problem


def test_a_tab_is_called_a_tab(tmp_path: Path) -> None:
    error = _damage(tmp_path, "a:\n\tb: 1\n")
    assert "tab" in error.problem
    assert "cannot start any token" not in error.problem


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        pytest.param("ok: 1\n.nan: 2\n", 2, 1, id="top"),
        pytest.param("ok: 1\nthresholds:\n  low: 1\n  .NaN: 2\n", 4, 3, id="nested"),
        pytest.param("a:\n- {x: 1, .nan: 2}\n", 2, 10, id="in-a-list"),
    ],
)
def test_a_nan_key_is_pointed_at(tmp_path: Path, text: str, line: int, column: int) -> None:
    """README "Guarantees": damage is reported with the line and column (NaN is refused as a
    key: it is not equal to itself)."""
    error = _damage(tmp_path, text)
    assert (error.line, error.column) == (line, column), error.problem
    assert "nan cannot be a dict key" in error.problem
