"""The command line, driven through real subprocesses (``python -m persistedstate ...``)."""

from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import name_of_bytes

from persistedstate import CorruptStateError, PersistedState, load
from persistedstate import journal as journal_module

SRC = Path(__file__).resolve().parents[1] / "src"
WORKERS = Path(__file__).resolve().parent / "_workers.py"
COMMANDS = ["show", "get", "set", "del", "check", "compact", "edit"]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VISUAL", "EDITOR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["PYTHONUTF8"] = "1"
    env.update(extra)
    return env


def run(*args: Any, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """Run ``python -m persistedstate ARGS`` with no terminal on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "persistedstate", *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        env=env or cli_env(),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def write_state(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    """A compacted state file with nested data."""
    path = tmp_path / "job.state"
    with PersistedState(path) as state:
        state["last_id"] = 7
        state["name"] = "nightly"
        state["items"] = [{"name": "first", "done": True}, {"name": "second", "done": False}]
        state["settings"] = {"retries": 3, "mode": "fast"}
    return path


def journal_lines(path: Path) -> list[str]:
    return [line for line in path.read_text("utf-8").splitlines() if line.startswith("--- [")]


# -- help and entry points -------------------------------------------------------------------


def test_top_level_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert '"a.b".c' in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: persistedstate {command} ")


def test_no_command_is_a_usage_error() -> None:
    result = run()
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_console_script_works_like_python_m(state_file: Path) -> None:
    script = Path(sys.executable).with_name("persistedstate")
    if not script.exists():
        pytest.skip("the console script is not installed next to this interpreter")
    result = subprocess.run(
        [str(script), "get", str(state_file), "name"],
        capture_output=True,
        encoding="utf-8",
        env=cli_env(),
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, "nightly\n")


# -- show and get ----------------------------------------------------------------------------


def test_show_and_get_apply_the_journal_of_a_file_held_open(tmp_path: Path) -> None:
    path = tmp_path / "live.state"
    state = PersistedState(path, counter=0)
    try:
        state["counter"] += 5
        state["items"] = [1, 2]
        state["items"].append({"name": "three"})
        del state["items"][0]
        assert len(journal_lines(path)) >= 4  # the changes are journal records, not compacted
        before = path.read_bytes()

        shown = run("show", path)  # a writer holds the lock: readers need none
        assert shown.returncode == 0, shown.stderr
        assert yaml.safe_load(shown.stdout) == {"counter": 5, "items": [2, {"name": "three"}]}
        assert run("get", path, "counter").stdout == "5\n"
        assert run("get", path, "items.1.name").stdout == "three\n"
        assert yaml.safe_load(run("show", path, "items").stdout) == [2, {"name": "three"}]
        assert path.read_bytes() == before
    finally:
        state.close()


def test_show_of_a_copy_with_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "a.state"
    state = PersistedState(path)
    state["a"] = {"b": [1]}
    state["a"]["b"].append(2)
    copy = tmp_path / "copy.state"
    copy.write_bytes(path.read_bytes())
    state.close()
    result = run("show", copy)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a:\n  b:\n  - 1\n  - 2\n"
    assert journal_lines(copy)  # show did not compact it


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("name", "nightly\n"),
        ("last_id", "7\n"),
        ("items.0.done", "true\n"),
        ("items.-1.name", "second\n"),
        ("settings", "retries: 3\nmode: fast\n"),
        ("items.1", "name: second\ndone: false\n"),
    ],
)
def test_get_prints_scalars_bare_and_containers_as_yaml(
    state_file: Path, path: str, expected: str
) -> None:
    result = run("get", state_file, path)
    assert (result.returncode, result.stdout, result.stderr) == (0, expected, "")


def test_get_prints_strings_exactly_and_show_quotes_them(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    with PersistedState(path) as state:
        state["number_text"] = "5"
        state["lines"] = "one\ntwo"
        state["unicode"] = "héllo ✓ 日本"
    assert run("get", path, "number_text").stdout == "5\n"
    assert run("show", path, "number_text").stdout == "'5'\n"
    assert run("get", path, "lines").stdout == "one\ntwo\n"
    assert yaml.safe_load(run("show", path, "lines").stdout) == "one\ntwo"
    assert run("get", path, "unicode").stdout == "héllo ✓ 日本\n"


def test_show_without_path_prints_the_whole_state(state_file: Path) -> None:
    result = run("show", state_file)
    assert result.returncode == 0
    assert yaml.safe_load(result.stdout) == load(state_file)
    assert result.stdout == state_file.read_text("utf-8")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("missing", "the state has no key 'missing'"),
        ("settings.nope", "settings has no key 'nope'"),
        ("items.5", "items is a list of 2 items; it has no index 5"),
        ("items.name", "items is a list, and 'name' is not a list index"),
        ("last_id.x", "last_id is an int, not a mapping or a list"),
    ],
)
def test_get_of_a_missing_path_fails(state_file: Path, path: str, message: str) -> None:
    result = run("get", state_file, path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{state_file}: {message}" in result.stderr


def test_show_of_a_missing_file_fails(tmp_path: Path) -> None:
    result = run("show", tmp_path / "nothing.state")
    assert result.returncode == 1
    assert "no such file" in result.stderr


# -- PATH syntax -----------------------------------------------------------------------------


@pytest.fixture
def tricky_file(tmp_path: Path) -> Path:
    path = tmp_path / "tricky.state"
    with PersistedState(path) as state:
        state["a.b"] = {"c": "dotted"}
        state["a"] = {"b": {"c": "nested"}}
        state['say "hi"'] = "quoted"
        state["back\\slash"] = "backslash"
        state[""] = "empty key"
        state["ints"] = {1: "int one", "1": "string one", "2": "string two", 0: "zero"}
        state["flags"] = {True: "yes", None: "nothing"}
        state["version 1.2"] = {"x.y": [10, 20]}
    return path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ('"a.b".c', "dotted"),
        ("a.b.c", "nested"),
        ('"a"."b"."c"', "nested"),
        ('"say \\"hi\\""', "quoted"),
        ('"back\\\\slash"', "backslash"),
        ('""', "empty key"),
        ("ints.1", "int one"),  # an integer key wins when it exists
        ('ints."1"', "string one"),  # quoted: always the string key
        ("ints.2", "string two"),  # no int key 2: the string key
        ("ints.0", "zero"),
        ("flags.true", "yes"),
        ("flags.null", "nothing"),
        ('"version 1.2"."x.y".1', "20"),
    ],
)
def test_path_syntax(tricky_file: Path, path: str, expected: str) -> None:
    result = run("get", tricky_file, path)
    assert (result.returncode, result.stdout, result.stderr) == (0, expected + "\n", "")


@pytest.mark.parametrize("path", ["a..b", "a.", ".a", '"a', '"a"b', 'a"b', '"a\\x"'])
def test_bad_path_is_a_usage_error(tricky_file: Path, path: str) -> None:
    result = run("get", tricky_file, path)
    assert result.returncode == 2
    assert "bad PATH" in result.stderr
    assert "usage: persistedstate get" in result.stderr


def test_set_and_del_with_dotted_keys(tricky_file: Path) -> None:
    assert run("set", tricky_file, '"a.b".c', "changed").returncode == 0
    assert run("set", tricky_file, '"new.key"', "1").returncode == 0
    assert run("set", tricky_file, "ints.7", "x").returncode == 0  # creates the string key
    data = load(tricky_file)
    assert data["a.b"] == {"c": "changed"}
    assert data["a"] == {"b": {"c": "nested"}}
    assert data["new.key"] == 1
    assert data["ints"]["7"] == "x"
    assert 7 not in data["ints"]
    assert run("del", tricky_file, '"new.key"').returncode == 0
    assert run("del", tricky_file, "ints.1").returncode == 0
    data = load(tricky_file)
    assert "new.key" not in data
    assert data["ints"] == {"1": "string one", "2": "string two", 0: "zero", "7": "x"}


# -- set -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5),
        ('"5"', "5"),
        ("'5'", "5"),
        ("-5", -5),
        ("2.5", 2.5),
        ("[1, 2]", [1, 2]),
        ("{a: 1, b: [x]}", {"a": 1, "b": ["x"]}),
        ("true", True),
        ("null", None),
        ("", None),
        ("hello world", "hello world"),
        ("2024-01-02", datetime.date(2024, 1, 2)),
        ("héllo ✓", "héllo ✓"),
        ("12345678901234567890123", 12345678901234567890123),
    ],
)
def test_set_reads_value_as_yaml(state_file: Path, value: str, expected: Any) -> None:
    result = run("set", state_file, "value", value)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    stored = load(state_file)["value"]
    assert stored == expected
    assert type(stored) is type(expected)
    assert not journal_lines(state_file)  # set closes the state, which compacts the file


def test_set_keeps_the_comments_of_a_hand_edited_file(tmp_path: Path) -> None:
    path = write_state(tmp_path / "c.state", "# the job\nlast_id: 1  # resume here\nname: x\n")
    assert run("set", path, "last_id", "2").returncode == 0
    assert path.read_text("utf-8") == "# the job\nlast_id: 2  # resume here\nname: x\n"


def test_set_string_option_stores_the_text(state_file: Path) -> None:
    assert run("set", "--string", state_file, "v", "[1, 2]").returncode == 0
    assert run("set", "-s", state_file, "w", "5").returncode == 0
    assert load(state_file)["v"] == "[1, 2]"
    assert load(state_file)["w"] == "5"


def test_set_into_lists_and_nested_mappings(state_file: Path) -> None:
    assert run("set", state_file, "items.0.name", "renamed").returncode == 0
    assert run("set", state_file, "items.-1.done", "true").returncode == 0
    assert run("set", state_file, "items.2", "{name: third}").returncode == 0  # appends
    assert run("set", state_file, "settings.retries", "4").returncode == 0
    assert run("set", state_file, "settings.new", "[]").returncode == 0
    data = load(state_file)
    assert data["items"] == [
        {"name": "renamed", "done": True},
        {"name": "second", "done": True},
        {"name": "third"},
    ]
    assert data["settings"] == {"retries": 4, "mode": "fast", "new": []}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("items.5", "items is a list of 2 items; it has no index 5"),
        ("nope.key", "the state has no key 'nope'"),
        ("name.key", "name is a string, not a mapping or a list, so it cannot hold key 'key'"),
    ],
)
def test_failed_set_leaves_the_file_byte_for_byte(
    state_file: Path, path: str, message: str
) -> None:
    with state_file.open("a", encoding="utf-8") as file:  # a journal: a compaction would show
        file.write('--- ["set", [], "last_id", 8]\n')
    before = state_file.read_bytes()
    result = run("set", state_file, path, "1")
    assert result.returncode == 1
    assert message in result.stderr
    assert state_file.read_bytes() == before


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[1, 2", "VALUE is not valid YAML"),
        ("!!set {a, b}", "cannot store a value of type set"),
        # (a key given twice, refused as the file refuses it: the key, where in VALUE)
        ("{x: 1, x: 2}", "VALUE gives the key 'x' twice (line 1, column 8 of VALUE)"),
        ("{a: [{b: 1, c: 2, b: 3}]}", "VALUE gives the key 'b' twice (line 1, column 19 of VALUE)"),
        ("{1: p, 1.0: q}", "VALUE gives the key 1.0 twice (line 1, column 8 of VALUE)"),
        ("x: 1\ny: 2\nx: 3", "VALUE gives the key 'x' twice (line 3, column 1 of VALUE)"),
        # (YAML that parses but builds no value: PyYAML's constructor raises what it raises)
        ('!!timestamp "2026"', "VALUE is not valid YAML: no value can be built from it"),
        ("!!bool maybe", "VALUE is not valid YAML: no value can be built from it"),
    ],
)
def test_bad_value_is_a_usage_error(state_file: Path, value: str, message: str) -> None:
    before = state_file.read_bytes()
    result = run("set", state_file, "x", value)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert state_file.read_bytes() == before


def test_set_on_a_missing_file_needs_create(tmp_path: Path) -> None:
    path = tmp_path / "new.state"
    result = run("set", path, "a", "1")
    assert result.returncode == 1
    assert "--create" in result.stderr
    assert not path.exists()

    nested = run("set", "--create", path, "a.b", "1")  # a new state has no key a
    assert nested.returncode == 1
    assert not path.exists()

    assert run("set", "--create", path, "a", "1").returncode == 0
    assert load(path) == {"a": 1}


def test_set_on_a_damaged_file_fails_and_leaves_it(tmp_path: Path) -> None:
    path = write_state(tmp_path / "bad.state", "a: [1, 2\nb: 3\n")
    before = path.read_bytes()
    result = run("set", path, "c", "1")
    assert result.returncode == 1
    assert "line" in result.stderr
    assert path.read_bytes() == before


# -- del -------------------------------------------------------------------------------------


def test_del_keys_and_list_items(state_file: Path) -> None:
    assert run("del", state_file, "name").returncode == 0
    assert run("del", state_file, "items.0").returncode == 0
    assert run("del", state_file, "settings.mode").returncode == 0
    assert load(state_file) == {
        "last_id": 7,
        "items": [{"name": "second", "done": False}],
        "settings": {"retries": 3},
    }


def test_del_of_a_missing_key_fails_and_changes_nothing(state_file: Path) -> None:
    before = state_file.read_bytes()
    for path in ("nope", "items.2", "settings.nope"):
        result = run("del", state_file, path)
        assert result.returncode == 1, path
        assert str(state_file) in result.stderr
    assert run("del", state_file, "").returncode == 2
    assert state_file.read_bytes() == before


# -- check -----------------------------------------------------------------------------------


def test_check_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "good.state"
    state = PersistedState(path, a=1)
    state["b"] = 2
    state["b"] += 1
    before = path.read_bytes()
    try:
        result = run("check", path)
        assert path.read_bytes() == before
    finally:
        state.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: OK, 2 keys, 2 journal records\n"  # (a is in the snapshot)


def test_check_a_file_with_bad_yaml(tmp_path: Path) -> None:
    path = write_state(tmp_path / "bad.state", "a: 1\nb: [1, 2\nc: 3\n")
    before = path.read_bytes()
    with pytest.raises(CorruptStateError) as expected:
        journal_module.read_state(str(path), before)
    result = run("check", path)
    assert result.returncode == 1
    assert result.stdout == ""
    where = f"{path}, line {expected.value.line}, column {expected.value.column}:"
    assert where in result.stderr
    assert "invalid YAML" in result.stderr
    assert path.read_bytes() == before


def test_check_a_file_with_a_bad_journal_record(tmp_path: Path) -> None:
    text = 'a: 1\n--- ["set", [], "b", 2]\n--- ["set", ["nope"], "c", 3]\n--- ["set", [], "d", 4]\n'
    path = write_state(tmp_path / "bad.state", text)
    before = path.read_bytes()
    result = run("check", path)
    assert result.returncode == 1
    assert f"{path}, line 3, column 5:" in result.stderr
    assert "does not exist" in result.stderr
    assert '--- ["set", ["nope"], "c", 3]' in result.stderr  # the line itself is shown
    assert path.read_bytes() == before


def test_check_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write_state(tmp_path / "list.state", "- 1\n- 2\n")
    result = run("check", path)
    assert result.returncode == 1
    assert f"{path}, line 1, column 1: the state must be a YAML mapping" in result.stderr


def test_check_a_file_with_a_duplicate_key(tmp_path: Path) -> None:
    path = write_state(tmp_path / "dup.state", "a: 1\nb:\n  c: 2\n  c: 3\n")
    before = path.read_bytes()
    result = run("check", path)
    assert result.returncode == 1
    assert (
        f"{path}, line 4, column 3: duplicate key 'c' at line 4 (first at line 3)" in result.stderr
    )
    assert path.read_bytes() == before


def test_the_command_shows_what_the_exception_says(tmp_path: Path) -> None:
    path = tmp_path / "state.yaml"
    path.write_text("a: 1\nb 2\nc: 3\n", encoding="utf-8")
    with pytest.raises(CorruptStateError) as raised:
        load(path)
    said = str(raised.value).split("\n")[:-1]  # (the last line: how to re-check the file)
    assert len(said) >= 3  # where and what, the line, the caret, ...
    result = run("check", path)
    assert result.returncode == 1
    assert "\n".join(said) in result.stderr


def test_check_lists_plain_values_yaml_reads_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "state.yaml"
    path.write_text(
        "answer: yes\n"
        "country: NO\n"
        "on: 1\n"
        "duration: 1:30\n"
        "zip: 01234\n"
        "big: 1e16\n"
        "fine: true\n"
        "quoted: 'yes'\n"
        "number: 1.0e+16\n"
        "hex: 0x1F\n"
        "nested:\n"
        "  - off\n",
        encoding="utf-8",
    )
    result = run("check", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: OK, 11 keys, 0 journal records\n"
    warnings = [line for line in result.stderr.splitlines() if ", line " in line]
    expected = {  # line: (what is written, what YAML reads, the quoted text)
        1: ("yes", "true", "'yes'"),
        2: ("NO", "false", "'NO'"),
        3: ("on", "true", "'on'"),
        4: ("1:30", "90", "'1:30'"),
        5: ("01234", "668", "'01234'"),
        6: ("1e16", "text", "1.0e+16"),
        12: ("off", "false", "'off'"),
    }
    assert len(warnings) == len(expected), result.stderr
    for warning, (line, (written, reads_as, advice)) in zip(
        warnings, expected.items(), strict=True
    ):
        assert f"{path}, line {line}, column " in warning
        assert written in warning and reads_as in warning and advice in warning


def test_check_reports_a_torn_last_record_without_touching_it(tmp_path: Path) -> None:
    path = write_state(tmp_path / "torn.state", 'a: 1\n--- ["set", [], "b", 2]\n--- ["set", [')
    before = path.read_bytes()
    result = run("check", path)
    assert result.returncode == 0, result.stderr
    assert "OK, 2 keys, 1 journal record;" in result.stdout
    assert "incomplete last record at line 3" in result.stdout
    assert path.read_bytes() == before


def test_check_a_missing_file(tmp_path: Path) -> None:
    result = run("check", tmp_path / "none.state")
    assert result.returncode == 1
    assert "no such file" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs are POSIX")
@pytest.mark.parametrize("kind", ["fifo", "directory"])
@pytest.mark.parametrize(
    "command",
    [["check"], ["show"], ["get", "a"], ["set", "a", "1"], ["del", "a"], ["compact"], ["edit"]],
    ids=lambda command: command[0],
)
def test_every_command_refuses_what_is_not_a_regular_file_at_once(
    tmp_path: Path, kind: str, command: list[str]
) -> None:
    """A FIFO would make a reader wait for a writer forever: refused without opening it
    for long (the timeout turns a regression into a failure, not a hang)."""
    path = tmp_path / "x.state"
    if kind == "fifo":
        os.mkfifo(path)
        what = "a named pipe (FIFO)"
    else:
        path.mkdir()
        what = "a directory"
    result = run(command[0], path, *command[1:], env=cli_env(EDITOR="false"), timeout=20)
    assert result.returncode == 1, result.stderr
    assert f"{path} is {what}, not a regular file" in result.stderr
    assert result.stdout == ""
    assert os.listdir(tmp_path) == ["x.state"]  # nothing created beside it


def test_show_of_a_damaged_file_names_the_place(tmp_path: Path) -> None:
    path = write_state(tmp_path / "bad.state", "a: 1\n  b: 2\n")
    result = run("show", path)
    assert result.returncode == 1
    assert f"{path}, line 2" in result.stderr


# -- compact ---------------------------------------------------------------------------------


def test_compact_folds_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "c.state"
    state = PersistedState(path)
    for number in range(5):
        state[f"k{number}"] = number
    del state["k0"]
    copy = tmp_path / "copy.state"
    copy.write_bytes(path.read_bytes())
    state.close()
    assert len(journal_lines(copy)) == 6
    expected = load(copy)
    result = run("compact", copy)
    assert (result.returncode, result.stderr) == (0, "")
    assert not journal_lines(copy)
    assert load(copy) == expected
    assert copy.read_bytes() == path.read_bytes()


def test_compact_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none.state"
    assert run("compact", path).returncode == 1
    assert not path.exists()


# -- the writer lock -------------------------------------------------------------------------

WRITER = """
import sys
from persistedstate import PersistedState
state = PersistedState.open(sys.argv[1])
state["child"] = "was here"
print("ready", flush=True)
sys.stdin.readline()
state.close()
"""


@pytest.fixture
def live_writer(state_file: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process that holds the state open until a line arrives on its stdin."""
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(state_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        yield child
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["set", "{f}", "x", "1"], {"x": 1}),
        (["del", "{f}", "name"], {"name": None}),
        (["compact", "{f}"], {}),
        (["edit", "{f}"], {"last_id": 8}),
    ],
)
def test_writer_commands_work_while_a_program_holds_the_file(
    state_file: Path, live_writer: subprocess.Popen[str], args: list[str], expected: Any
) -> None:
    """The command is not a second program: it is not refused; the running program takes the
    change in, so its own compaction when it closes keeps it."""
    editor = shlex.join(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; p = pathlib.Path(sys.argv[1]); "
            "p.write_text(p.read_text().replace('last_id: 7', 'last_id: 8'))",
        ]
    )
    result = run(*[arg.format(f=state_file) for arg in args], env=cli_env(EDITOR=editor))
    assert result.returncode == 0, result.stderr
    assert live_writer.poll() is None
    assert live_writer.stdin is not None
    live_writer.stdin.write("done\n")
    live_writer.stdin.flush()
    live_writer.wait(timeout=30)
    data = load(state_file)
    assert data["child"] == "was here"
    for key, value in expected.items():
        if value is None:
            assert key not in data
        else:
            assert data[key] == value
    assert journal_lines(state_file) == []  # (the program compacted it at close)


def test_readers_work_while_a_writer_holds_the_file(
    state_file: Path, live_writer: subprocess.Popen[str]
) -> None:
    assert run("get", state_file, "child").stdout == "was here\n"
    assert run("check", state_file).returncode == 0


@pytest.fixture
def in_transaction(state_file: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process holding the state inside an open transaction until a line arrives."""
    child = subprocess.Popen(
        [sys.executable, str(WORKERS), "hold-transaction", str(state_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "in transaction\n"
        yield child
    finally:
        child.kill()
        child.wait(timeout=30)


def test_wait_gives_up_while_a_program_stays_in_a_transaction(
    state_file: Path, in_transaction: subprocess.Popen[str]
) -> None:
    before = state_file.read_bytes()
    result = run("set", "--wait", "0.5", state_file, "x", "1")
    assert result.returncode == 1
    assert f"busy: process {in_transaction.pid} did not let go of it within 0.5 s" in (
        result.stderr
    )
    assert "--wait" in result.stderr
    assert state_file.read_bytes() == before


def test_a_command_waits_for_the_end_of_a_transaction(
    state_file: Path, in_transaction: subprocess.Popen[str]
) -> None:
    waiting = subprocess.Popen(
        [sys.executable, "-m", "persistedstate", "set", "--wait", "30", str(state_file), "x", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    time.sleep(1.0)
    assert waiting.poll() is None  # still waiting for the file
    assert in_transaction.stdin is not None and in_transaction.stdout is not None
    in_transaction.stdin.write("end\n")
    in_transaction.stdin.flush()
    assert in_transaction.stdout.readline() == "committed\n"
    _out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    in_transaction.stdin.write("close\n")
    in_transaction.stdin.flush()
    assert in_transaction.stdout.readline() == "closed\n"
    data = load(state_file)
    assert data["x"] == 1
    assert data["in_transaction"] is True


@pytest.mark.parametrize("wait", ["-1", "soon", "nan"])
def test_bad_wait_is_a_usage_error(state_file: Path, wait: str) -> None:
    result = run("set", "--wait", wait, state_file, "x", "1")
    assert result.returncode == 2


# -- edit ------------------------------------------------------------------------------------


def make_editor(tmp_path: Path, body: str, name: str = "editor.py") -> str:
    """A Python script used as $EDITOR; it gets the file to edit as ``path``."""
    script = tmp_path / name
    script.write_text(
        "import pathlib, sys\npath = pathlib.Path(sys.argv[-1])\n" + textwrap.dedent(body),
        encoding="utf-8",
    )
    return shlex.join([sys.executable, str(script)])


@pytest.fixture
def temp_dir(tmp_path: Path) -> Path:
    """Where edit puts its temporary file ($TMPDIR), to check that it is removed."""
    path = tmp_path / "tmp"
    path.mkdir()
    return path


def edit_env(temp_dir: Path, editor: str, **extra: str) -> dict[str, str]:
    return cli_env(EDITOR=editor, TMPDIR=str(temp_dir), TEMP=str(temp_dir), **extra)


def test_edit_saves_a_valid_edit_as_written(
    state_file: Path, tmp_path: Path, temp_dir: Path
) -> None:
    editor = make_editor(
        tmp_path,
        """
        assert path.suffix == ".yaml", path
        text = path.read_text("utf-8")
        path.write_text("# edited by hand\\n" + text.replace("last_id: 7", "last_id: 8  # was 7"))
        """,
    )
    result = run("edit", state_file, env=edit_env(temp_dir, editor))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{state_file}: saved\n"
    text = state_file.read_text("utf-8")
    assert text.startswith("# edited by hand\n")
    assert "last_id: 8  # was 7\n" in text
    assert load(state_file)["last_id"] == 8
    assert list(temp_dir.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="os.pathconf")
def test_edit_works_on_a_name_as_long_as_the_file_system_takes(
    tmp_path: Path, temp_dir: Path
) -> None:
    """Its temporary file is named after the state file, as are the lock file and the
    compaction's temporary file: all must fit."""
    state_file = name_of_bytes(tmp_path, 0)
    write_state(state_file, "last_id: 7\n")
    editor = make_editor(tmp_path, "path.write_text(path.read_text('utf-8').replace('7', '8'))")
    result = run("edit", state_file, env=edit_env(temp_dir, editor))
    assert result.returncode == 0, result.stderr
    assert load(state_file) == {"last_id": 8}
    assert list(temp_dir.iterdir()) == []
    assert run("set", state_file, "last_id", "9").returncode == 0
    assert run("compact", state_file).returncode == 0
    assert state_file.read_text("utf-8") == "last_id: 9\n"
    assert sorted(tmp_path.iterdir()) == sorted([state_file, tmp_path / "editor.py", temp_dir])


def test_a_byte_order_mark_is_read_past_by_every_command_and_dropped_by_edit(
    tmp_path: Path, temp_dir: Path
) -> None:
    """Some Windows editors put one at the start of the file: it is no part of the state."""
    path = tmp_path / "job.state"
    path.write_bytes(b'\xef\xbb\xbf--- ["set", [], "last_id", 7]\n')  # (26.1: records first)
    check = run("check", path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"{path}: OK, 1 key, 1 journal record")
    assert run("get", path, "last_id").stdout == "7\n"
    editor = make_editor(
        tmp_path, "path.write_bytes(b'\\xef\\xbb\\xbf' + path.read_bytes().replace(b'7', b'8'))"
    )
    result = run("edit", path, env=edit_env(temp_dir, editor))
    assert result.returncode == 0, result.stderr
    assert path.read_bytes() == b"last_id: 8\n"


def test_edit_refuses_a_broken_edit_without_a_terminal(
    state_file: Path, tmp_path: Path, temp_dir: Path
) -> None:
    before = state_file.read_bytes()
    editor = make_editor(tmp_path, "path.write_text('last_id: [1, 2\\nname: x\\n')\n")
    result = run("edit", state_file, env=edit_env(temp_dir, editor))
    assert result.returncode == 1
    assert f"{state_file} (your edit), line " in result.stderr
    assert ", column " in result.stderr
    assert "not saved" in result.stderr
    assert "Edit again" not in result.stderr
    assert state_file.read_bytes() == before
    assert list(temp_dir.iterdir()) == []


@pytest.mark.parametrize(
    "content",
    ["- a list\n- not a mapping\n", 'a: 1\n--- ["set", ["nope"], "x", 1]\n', 'a: 1\n--- ["set"'],
)
def test_edit_refuses_other_invalid_states(
    state_file: Path, tmp_path: Path, temp_dir: Path, content: str
) -> None:
    before = state_file.read_bytes()
    editor = make_editor(tmp_path, f"path.write_text({content!r})\n")
    result = run("edit", state_file, env=edit_env(temp_dir, editor))
    assert result.returncode == 1
    assert "(your edit), line" in result.stderr
    assert state_file.read_bytes() == before


def test_edit_refuses_a_duplicate_key(state_file: Path, tmp_path: Path, temp_dir: Path) -> None:
    before = state_file.read_bytes()
    editor = make_editor(tmp_path, "path.write_text(path.read_text() + 'last_id: 8\\n')\n")
    result = run("edit", state_file, env=edit_env(temp_dir, editor))
    assert result.returncode == 1
    assert "(your edit), line 11, column 1: duplicate key 'last_id' at line 11" in result.stderr
    assert "not saved" in result.stderr
    assert state_file.read_bytes() == before


def test_edit_without_changes_does_nothing(
    state_file: Path, tmp_path: Path, temp_dir: Path
) -> None:
    state_file.write_text("# notes\n" + state_file.read_text("utf-8"), encoding="utf-8")
    before = state_file.read_bytes()
    stat = state_file.stat()
    editor = make_editor(tmp_path, "assert path.read_text('utf-8').startswith('# notes')\n")
    result = run("edit", state_file, env=edit_env(temp_dir, editor))
    assert (result.returncode, result.stdout) == (0, f"{state_file}: no changes\n")
    assert state_file.read_bytes() == before
    assert state_file.stat().st_ino == stat.st_ino  # not even replaced by a copy
    assert list(temp_dir.iterdir()) == []


def test_edit_compacts_a_journal_first(tmp_path: Path, temp_dir: Path) -> None:
    path = tmp_path / "j.state"
    state = PersistedState(path, a=1)
    state["b"] = [1]
    state["b"].append(2)
    copy = tmp_path / "copy.state"
    copy.write_bytes(path.read_bytes())
    state.close()
    assert journal_lines(copy)
    editor = make_editor(
        tmp_path,
        """
        text = path.read_text("utf-8")
        assert "---" not in text, text
        path.write_text(text + "c: 3\\n")
        """,
    )
    result = run("edit", copy, env=edit_env(temp_dir, editor))
    assert result.returncode == 0, result.stderr
    assert copy.read_text("utf-8") == "a: 1\nb:\n- 1\n- 2\nc: 3\n"


def test_edit_keeps_comments_when_it_compacts(tmp_path: Path, temp_dir: Path) -> None:
    path = write_state(tmp_path / "c.state", "# the job\ncursor: 1  # page\n")
    with path.open("a", encoding="utf-8") as file:
        file.write('--- ["set", [], "cursor", 2]\n')
    editor = make_editor(
        tmp_path,
        """
        text = path.read_text("utf-8")
        assert text == "# the job\\ncursor: 2  # page\\n", text
        path.write_text(text + "# added\\n")
        """,
    )
    result = run("edit", path, env=edit_env(temp_dir, editor))
    assert result.returncode == 0, result.stderr
    assert path.read_text("utf-8") == "# the job\ncursor: 2  # page\n# added\n"


def test_edit_repairs_a_damaged_file(tmp_path: Path, temp_dir: Path) -> None:
    path = write_state(tmp_path / "bad.state", "a: 1\nb: [1, 2\n")
    editor = make_editor(
        tmp_path,
        "path.write_text(path.read_text('utf-8').replace('[1, 2', '[1, 2]'))\n",
    )
    result = run("edit", path, env=edit_env(temp_dir, editor))
    assert result.returncode == 0, result.stderr
    assert "is damaged; opening it as it is" in result.stderr
    assert load(path) == {"a": 1, "b": [1, 2]}


def test_edit_stops_when_the_editor_fails(state_file: Path, tmp_path: Path, temp_dir: Path) -> None:
    before = state_file.read_bytes()
    editor = make_editor(tmp_path, "path.write_text('a: 1\\n')\nraise SystemExit(3)\n")
    result = run("edit", state_file, env=edit_env(temp_dir, editor))
    assert result.returncode == 1
    assert "the editor exited with status 3" in result.stderr
    assert state_file.read_bytes() == before
    assert list(temp_dir.iterdir()) == []


def test_edit_with_an_editor_that_cannot_run(state_file: Path, temp_dir: Path) -> None:
    result = run("edit", state_file, env=edit_env(temp_dir, "no-such-editor-anywhere --wait"))
    assert result.returncode == 1
    assert "cannot run the editor 'no-such-editor-anywhere --wait'" in result.stderr
    assert list(temp_dir.iterdir()) == []


def test_edit_prefers_visual_and_passes_editor_arguments(
    state_file: Path, tmp_path: Path, temp_dir: Path
) -> None:
    visual = make_editor(
        tmp_path,
        """
        assert sys.argv[1:3] == ["--flag", "two words"], sys.argv
        path.write_text(path.read_text("utf-8") + "by: visual\\n")
        """,
        name="visual editor.py",  # a space in the script's path, too
    )
    editor = make_editor(tmp_path, "raise SystemExit('EDITOR must not run')\n")
    env = edit_env(temp_dir, editor, VISUAL=visual + " --flag 'two words'")
    result = run("edit", state_file, env=env)
    assert result.returncode == 0, result.stderr
    assert load(state_file)["by"] == "visual"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_the_edit_belongs_to_the_editor(
    state_file: Path, tmp_path: Path, temp_dir: Path
) -> None:
    editor = make_editor(
        tmp_path,
        """
        import os, signal, time
        os.kill(os.getppid(), signal.SIGINT)  # what Ctrl-C in a terminal sends to both
        time.sleep(0.2)
        path.write_text(path.read_text("utf-8") + "after: interrupt\\n")
        """,
    )
    result = run("edit", state_file, env=edit_env(temp_dir, editor))
    assert result.returncode == 0, result.stderr
    assert load(state_file)["after"] == "interrupt"


def test_edit_holds_no_lock_while_the_editor_runs(
    state_file: Path, tmp_path: Path, temp_dir: Path
) -> None:
    """A command run while the person edits works, and the save keeps both changes."""
    report = tmp_path / "report.txt"
    editor = make_editor(
        tmp_path,
        f"""
        import subprocess
        result = subprocess.run(
            [sys.executable, "-m", "persistedstate", "set", {str(state_file)!r}, "x", "1"],
            capture_output=True, text=True,
        )
        pathlib.Path({str(report)!r}).write_text(f"{{result.returncode}}\\n{{result.stderr}}")
        path.write_text(path.read_text().replace("last_id: 7", "last_id: 8"))
        """,
    )
    result = run("edit", state_file, env=edit_env(temp_dir, editor))
    assert result.returncode == 0, result.stderr
    status, message = report.read_text().split("\n", 1)
    assert status == "0", message
    assert load(state_file)["x"] == 1
    assert load(state_file)["last_id"] == 8


@pytest.mark.skipif(sys.platform == "win32", reason="uses a pseudo-terminal")
def test_edit_offers_to_edit_again_on_a_terminal(
    state_file: Path, tmp_path: Path, temp_dir: Path
) -> None:
    import pty

    counter = tmp_path / "count"
    editor = make_editor(
        tmp_path,
        f"""
        counter = pathlib.Path({str(counter)!r})
        calls = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(calls))
        if calls == 1:
            path.write_text("last_id: [\\n")  # broken
        else:
            assert path.read_text() == "last_id: [\\n"  # the broken edit, to fix
            path.write_text("last_id: 99\\n")
        """,
    )
    main_fd, terminal_fd = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "persistedstate", "edit", str(state_file)],
            stdin=terminal_fd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=edit_env(temp_dir, editor),
        )
        os.write(main_fd, b"y\n")
        _out, err = process.communicate(timeout=60)
    finally:
        os.close(terminal_fd)
        os.close(main_fd)
    assert process.returncode == 0, err
    assert "Edit again? [y/n]" in err
    assert counter.read_text() == "2"
    assert load(state_file) == {"last_id": 99}
    assert list(temp_dir.iterdir()) == []


def test_edit_of_a_missing_file_fails(tmp_path: Path, temp_dir: Path) -> None:
    path = tmp_path / "none.state"
    result = run("edit", path, env=edit_env(temp_dir, "true"))
    assert result.returncode == 1
    assert not path.exists()


def test_set_of_a_value_too_deep_for_its_place_is_a_usage_error(state_file: Path) -> None:
    before = state_file.read_bytes()
    deep = "[" * 99 + "]" * 99  # fits at the top, not two levels down
    done = run("set", state_file, "settings.deep", deep)
    assert done.returncode == 2, done.stderr
    assert "cannot be stored at settings.deep" in done.stderr
    assert "Traceback" not in done.stderr
    assert state_file.read_bytes() == before


def test_a_failed_del_leaves_a_26_1_file_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "old.state"
    path.write_bytes(b'a: 1\n---\n["set", [], "b", 2]')  # 26.1: no final newline
    done = run("del", path, "nokey")
    assert done.returncode == 1
    assert path.read_bytes() == b'a: 1\n---\n["set", [], "b", 2]'


def test_ctrl_c_exits_130_and_leaves_the_file_whole(
    state_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from persistedstate import cli, storage

    before = state_file.read_bytes()

    def interrupted(self: storage.StateFile, data: bytes) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(storage.StateFile, "append", interrupted)
    assert cli.main(["set", str(state_file), "last_id", "8"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert state_file.read_bytes() == before
