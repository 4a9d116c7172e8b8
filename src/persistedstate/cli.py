"""The ``persistedstate`` command: look at a state file, change it, check it, edit it by hand.

Commands (``persistedstate COMMAND --help`` tells more about each)::

    show FILE [PATH]        the state (journal applied), or the value at PATH, as YAML
    get FILE PATH           one value: a string as it is, anything else as YAML
    set FILE PATH VALUE     store VALUE (read as YAML) at PATH
    del FILE PATH           delete the key or list item at PATH
    check FILE              say whether the file reads; where it is damaged if not, and which
                            values YAML reads otherwise than they look
    compact FILE            rewrite the file as one clean YAML document
    edit FILE               edit the file in $VISUAL or $EDITOR, saved only if it is valid

``show``, ``get`` and ``check`` take no lock and never change the file. ``set``, ``del``,
``compact`` and ``edit`` take the file's write lock for a moment; a program that has the state
open hands it over, and takes the change in at its next operation (``--wait SECONDS``: how
long to wait, 10 s by default, for a program inside a transaction). ``edit`` holds no lock
while the editor runs, and merges the edit with what a program changed meanwhile. A failed
command leaves the file as it was.

PATH is a dotted list of keys, ``items.0.name``. A number indexes a list (negative numbers count
from the end) and, in a mapping, selects an integer key when there is one, else the string key.
A key written in double quotes is taken literally, always as a string: ``"a.b".c`` is key
``c`` inside key ``a.b``; inside the quotes ``\\"`` is a quote and ``\\\\`` a backslash.

Exit status: 0 on success, 1 on an error (missing key, damaged file, file locked, ...),
2 on a usage error (bad arguments, bad PATH, VALUE that is not valid YAML), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping, MutableSequence, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from . import editing, journal, mistakes, snapshot, storage, values
from .errors import CorruptStateError, PersistedStateError, StateLockedError
from .state import COMMAND_WAIT, PersistedState, command, schema_of

if TYPE_CHECKING:
    from .schema import Schema
from .textpos import line_and_column

PROG = "persistedstate"
_HELP_WIDTH = 88

_PATH_HELP = """\
PATH is a dotted list of keys, e.g. items.0.name. A number indexes a list (-1 is the last
item) and, in a mapping, selects an integer key if there is one, else the string key. Put a
key in double quotes to take it literally as a string, dots included: '"a.b".c' is key "c"
inside key "a.b" (inside the quotes, write \\" for a quote and \\\\ for a backslash). An empty
PATH ('') is the whole state."""


class CliError(Exception):
    """A failure to report on stderr: ``status`` 1 for errors, 2 for usage errors."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class PathError(CliError):
    """PATH names something that is not in the state; reported after the file's name."""


class UsageError(CliError):
    """A bad argument (PATH syntax, VALUE); reported with the command's usage, status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


# -- PATH ------------------------------------------------------------------------------------

_INTEGER = re.compile(r"-?[0-9]+")
# How YAML 1.1 (the file's YAML) spells the booleans and null.
_NON_STRING_KEYS: dict[str, Any] = {
    **dict.fromkeys(["true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"], True),
    **dict.fromkeys(["false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"], False),
    **dict.fromkeys(["null", "Null", "NULL", "~"], None),
}


@dataclass(frozen=True)
class Segment:
    """One step of a PATH: ``key`` is the key text (unquoted), ``source`` as it was written."""

    key: str
    quoted: bool
    source: str

    def integer(self) -> int | None:
        """The segment as a list index or int key, None if it is not a plain integer."""
        if self.quoted or not _INTEGER.fullmatch(self.key):
            return None
        return int(self.key)


def parse_path(text: str) -> list[Segment]:
    """Split a PATH into segments (none for the empty PATH); raises UsageError if malformed."""
    segments: list[Segment] = []
    position = 0
    while text:
        if text.startswith('"', position):
            end, key = _read_quoted(text, position)
            segments.append(Segment(key, True, text[position:end]))
        else:
            end = text.find(".", position)
            end = len(text) if end < 0 else end
            key = text[position:end]
            if not key:
                raise UsageError(f"bad PATH {text!r}: empty key at character {position + 1}")
            if '"' in key:
                raise UsageError(
                    f'bad PATH {text!r}: a quote (") may only start a key; to name key {key!r}, '
                    'quote the whole key and write \\" for each quote inside it'
                )
            segments.append(Segment(key, False, key))
        if end == len(text):
            break
        if text[end] != ".":
            raise UsageError(
                f"bad PATH {text!r}: expected '.' after the quoted key, at character {end + 1}"
            )
        position = end + 1
        if position == len(text):
            raise UsageError(f"bad PATH {text!r}: it ends with '.'")
    return segments


def _read_quoted(text: str, start: int) -> tuple[int, str]:
    """Read the double-quoted key at ``start``: (index after the closing quote, the key)."""
    chars: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == '"':
            return position + 1, "".join(chars)
        if char == "\\":
            following = text[position + 1 : position + 2]
            if following not in ('"', "\\"):
                raise UsageError(
                    f'bad PATH {text!r}: inside quotes, a backslash must be followed by " or \\'
                )
            chars.append(following)
            position += 2
            continue
        chars.append(char)
        position += 1
    raise UsageError(f"bad PATH {text!r}: the quote at character {start + 1} is not closed")


def _shown(segments: Sequence[Segment]) -> str:
    return ".".join(segment.source for segment in segments)


def _name(segments: Sequence[Segment]) -> str:
    return _shown(segments) if segments else "the state"


def _find_key(mapping: Mapping[Any, Any], segment: Segment) -> tuple[bool, Any]:
    """(found, key): the key of ``mapping`` that ``segment`` names, or the key it would create."""
    if segment.quoted:
        return segment.key in mapping, segment.key
    number = segment.integer()
    if number is not None and _has_key(mapping, number):
        return True, number
    if segment.key in mapping:
        return True, segment.key
    # Keys that are booleans or null in the file (true:, null:) when no string key matches.
    scalar = _NON_STRING_KEYS.get(segment.key, segment.key)
    if scalar is not segment.key and _has_key(mapping, scalar):
        return True, scalar
    return False, segment.key


def _has_key(mapping: Mapping[Any, Any], key: Any) -> bool:
    """Whether ``mapping`` has this very key: 1 and True are one dict key in Python, not here."""
    return key in mapping and any(type(k) is type(key) and k == key for k in mapping)


def _list_index(
    items: Sequence[Any], segment: Segment, parent: Sequence[Segment], *, allow_end: bool
) -> int:
    number = segment.integer()
    if number is None:
        raise PathError(
            f"{_name(parent)} is a list, and {segment.source!r} is not a list index "
            "(use a number; -1 is the last item)"
        )
    limit = len(items) if allow_end else len(items) - 1
    if not -len(items) <= number <= limit:
        count = f"{len(items)} item" + ("" if len(items) == 1 else "s")
        raise PathError(f"{_name(parent)} is a list of {count}; it has no index {number}")
    return number if number >= 0 else number + len(items)


def _step(node: Any, segment: Segment, parent: Sequence[Segment]) -> Any:
    """The key (or index) of ``node`` that ``segment`` names; raises CliError if missing."""
    if isinstance(node, Mapping):
        found, key = _find_key(node, segment)
        if not found:
            raise PathError(f"{_name(parent)} has no key {segment.key!r}")
        return key
    if isinstance(node, MutableSequence):
        return _list_index(node, segment, parent, allow_end=False)
    raise PathError(
        f"{_name(parent)} is {_type_name(node)}, not a mapping or a list, "
        f"so it has no key {segment.key!r}"
    )


def resolve(root: Any, segments: Sequence[Segment]) -> Any:
    """The value at the PATH; works on plain data and on a live state alike."""
    node = root
    for depth, segment in enumerate(segments):
        node = node[_step(node, segment, segments[:depth])]
    return node


_TYPE_NAMES = {row.python_type: row.cli_name for row in values.VALUE_TYPES}


def _type_name(value: Any) -> str:
    """What a value is, with its article: "a list", "an int", "null"."""
    if isinstance(value, Mapping):  # (a live dict or list too)
        kind: type = dict
    elif isinstance(value, MutableSequence):
        kind = list
    else:
        kind = type(value)
    return _TYPE_NAMES.get(kind, f"a {kind.__name__}")


# -- output ----------------------------------------------------------------------------------


def _write_out(text: str) -> None:
    """Write data to stdout as UTF-8, whatever the console's encoding."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(text)
    else:
        buffer.write(text.encode("utf-8"))
        buffer.flush()


def _say(message: str) -> None:
    print(message, file=sys.stderr)


@contextlib.contextmanager
def _library_quiet() -> Iterator[None]:
    """Silence the library's warnings where this command reports the same thing itself."""
    logger = logging.getLogger("persistedstate")
    was_disabled = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was_disabled


# -- reading without a lock ------------------------------------------------------------------


def _read_raw(path: str) -> bytes:
    raw = storage.read_file(path)
    if raw is None:
        raise CliError(f"{path}: no such file")
    return raw


def _value_at(file: str, path: str) -> Any:
    """The value at PATH in the file's current state (journal applied); no lock taken."""
    return resolve(journal.read_state(file, _read_raw(file)).data, parse_path(path))


def cmd_show(args: argparse.Namespace) -> int:
    _write_out(snapshot.dump_value(_value_at(args.file, args.path or "")))
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    value = _value_at(args.file, args.path)
    _write_out(value + "\n" if type(value) is str else snapshot.dump_value(value))
    return 0


def _schema(args: argparse.Namespace) -> Schema | None:
    """The schema of ``--schema MODULE:CLASS``: the module is imported (from the current
    directory too, as ``python -m`` does) and CLASS must be a typed PersistedState."""
    text: str | None = args.schema
    if text is None:
        return None
    module_name, _, name = text.partition(":")
    if not module_name or not name:
        raise UsageError(f"--schema {text}: give MODULE:CLASS, such as myjob:Job")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"--schema {text}: cannot import {module_name}: {error}") from None
    for part in name.split("."):
        found = getattr(found, part, None)
    declared = schema_of(found) if isinstance(found, type) else None
    if not issubclass(found if isinstance(found, type) else type, PersistedState) or not declared:
        raise UsageError(
            f"--schema {text}: {name} is not a subclass of PersistedState that declares keys"
        )
    return declared


def cmd_check(args: argparse.Namespace) -> int:
    declared = _schema(args)
    raw = _read_raw(args.file)
    try:
        with _library_quiet():
            result = journal.read_state(args.file, raw)
    except CorruptStateError as error:
        _say(error.describe())
        _say(
            f"{PROG}: {args.file} is damaged; it was not changed. Repair it by hand or with "
            f"`{PROG} edit {shlex.quote(args.file)}`, or restore a backup."
        )
        return 1
    note = ""
    if declared is not None:
        try:
            declared.check_file(args.file, declared.defaults, result.data, result.document)
        except CorruptStateError as error:
            _say(error.describe())
            _say(
                f"{PROG}: {args.file} does not fit {declared.owner}; it was not changed. Correct "
                f"it by hand or with `{PROG} edit {shlex.quote(args.file)}`."
            )
            return 1
        version = declared.data_version(result.data)
        note = f", fits {declared.owner}"
        if version != declared.version:
            note = (
                f", version {version}: {declared.owner}.upgrade() brings it to version "
                f"{declared.version} when a program opens it (its types are checked then)"
            )
    _warn_of_values_read_otherwise(args.file, result.document)
    keys = _count(len(result.data), "key")
    records = _count(result.records, "journal record")
    if result.good_size < len(raw):
        torn_line = line_and_column(raw, result.good_size)[0]
        note += (
            f"; an incomplete last record at line {torn_line} (left by an interrupted write) "
            "is ignored and will be dropped by the next writer"
        )
    print(f"{args.file}: OK, {keys}, {records}{note}")
    return 0


def _warn_of_values_read_otherwise(path: str, snapshot_text: bytes) -> None:
    """List the plain values of the snapshot that YAML 1.1 reads otherwise than they look."""
    text = snapshot_text.decode("utf-8")  # (it was just read: it is UTF-8)
    for surprise in mistakes.read_otherwise(text, snapshot.compose(text)):
        _say(
            f"{PROG}: warning: {path}, line {surprise.line}, column {surprise.column}: "
            f"{surprise.written} (unquoted) reads as {surprise.reads_as}; {surprise.advice}"
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


# -- writing under the lock ------------------------------------------------------------------


def _busy(error: StateLockedError, wait: float) -> CliError:
    holder = f"process {error.holder_pid}" if error.holder_pid is not None else "a program"
    return CliError(
        f"{error.path} is busy: {holder} did not let go of it within {wait:g} s (it may be "
        "inside a transaction, or stopped). Retry, or wait longer with --wait SECONDS."
    )


def _open_state(path: str, wait: float) -> PersistedState:
    try:
        return command(path, wait=wait)
    except StateLockedError as error:
        raise _busy(error, wait) from None


def _require_file(path: str) -> None:
    if not os.path.lexists(path):
        raise CliError(f"{path}: no such file")


def _change(
    path: str,
    wait: float,
    change: Callable[[PersistedState], None],
    declared: Schema | None = None,
) -> None:
    """Open the state, apply ``change(state)``, then close it (compacted, unless a program
    has it open), or on error leave it.

    With ``declared`` (--schema), a change after which the state does not fit it is refused.
    """
    state = _open_state(path, wait)
    try:
        if declared is None:
            change(state)
        else:
            with state.transaction():  # (refused: rolled back, nothing written)
                change(state)
                try:
                    declared.check_data(state.copy())
                except TypeError as error:
                    raise UsageError(f"refused by --schema: {error}") from None
    except BaseException:
        state.close(compact=False)  # a failed command leaves the file byte for byte
        raise
    try:
        state.close()
    except OSError as error:
        raise CliError(
            f"the change was saved in {path}, but compacting the file failed: {error}"
        ) from None


def _parse_value(text: str, as_string: bool) -> Any:
    if as_string:
        return text
    try:
        # (the file's own reader: it reads VALUE as the state will, and refuses a key given twice)
        value = snapshot.load_document(text, refuse_duplicate_keys=True)
    except snapshot.DuplicateKey as error:
        raise UsageError(
            f"VALUE gives the key {error.key!r} twice (line {error.line}, column {error.column} "
            "of VALUE): a mapping holds each key once"
        ) from None
    except snapshot.LOAD_ERRORS as error:  # (a bad !!timestamp raises AttributeError, ...)
        problem = f"no value can be built from it ({type(error).__name__}: {error})"
        if isinstance(error, (yaml.YAMLError, RecursionError)):
            problem = str(error)
        if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
            mark = error.problem_mark
            what = " ".join(part for part in (error.context, error.problem) if part)
            problem = f"{what} (line {mark.line + 1}, column {mark.column + 1})"
        raise UsageError(
            f"VALUE is not valid YAML: {problem}. To store it as text, use --string "
            "or put it in quotes inside the shell quotes: '\"...\"'"
        ) from None
    try:
        values.prepare(value)
    except values.UnsupportedValue as error:
        raise UsageError(f"VALUE cannot be stored: {error.to_builtin()}") from None
    return value


def cmd_set(args: argparse.Namespace) -> int:
    segments = parse_path(args.path)
    if not segments:
        raise UsageError("PATH is empty: name the key to set")
    value = _parse_value(args.value, args.string)

    def change(state: PersistedState) -> None:
        parent_path, last = segments[:-1], segments[-1]
        parent = resolve(state, parent_path)
        try:
            if isinstance(parent, MutableMapping):
                parent[_find_key(parent, last)[1]] = value
            elif isinstance(parent, MutableSequence):
                index = _list_index(parent, last, parent_path, allow_end=True)
                if index == len(parent):
                    parent.append(value)
                else:
                    parent[index] = value
        except (TypeError, ValueError) as error:  # e.g. nested too deep for its place
            raise UsageError(f"VALUE cannot be stored at {_name(segments)}: {error}") from None
        if not isinstance(parent, (MutableMapping, MutableSequence)):
            raise PathError(
                f"{_name(parent_path)} is {_type_name(parent)}, not a mapping or a "
                f"list, so it cannot hold key {last.key!r}"
            )

    if not os.path.lexists(args.file):
        if not args.create:
            raise CliError(f"{args.file}: no such file (use --create to start a new state file)")
        if len(segments) > 1:  # a new state is empty: only a top-level key can be set
            resolve({}, segments[:-1])
    _change(args.file, args.wait, change, _schema(args))
    return 0


def cmd_del(args: argparse.Namespace) -> int:
    segments = parse_path(args.path)
    if not segments:
        raise UsageError("PATH is empty: name the key to delete")

    def change(state: PersistedState) -> None:
        parent = resolve(state, segments[:-1])
        del parent[_step(parent, segments[-1], segments[:-1])]

    _require_file(args.file)
    _change(args.file, args.wait, change, _schema(args))
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    _require_file(args.file)
    state = _open_state(args.file, args.wait)
    try:
        state.compact()  # (close() would leave it to a program that has the file open)
    except OSError as error:
        raise CliError(f"compacting {args.file} failed: {error}") from None
    finally:
        state.close(compact=False)
    return 0


# -- edit ------------------------------------------------------------------------------------

# Reopenings of the editor on a conflict before edit gives up. Each names only keys never named
# before (the person's choice on those stands), so a program that keeps changing what the
# person changed cannot keep the editor opening; this bounds the rest.
EDIT_REOPENINGS = 3


def cmd_edit(args: argparse.Namespace) -> int:
    path: str = args.file
    _require_file(path)
    session = editing.EditSession(path, wait=args.wait)
    try:
        original = session.start()
    except StateLockedError as error:
        raise _busy(error, args.wait) from None
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    if session.damage is not None:
        _say(session.damage.describe())
        _say(f"{PROG}: {path} is damaged; opening it as it is so that you can repair it")
    # (mkstemp adds 8 random characters between prefix and suffix)
    stem = storage.derived_name(tempfile.gettempdir(), os.path.basename(path), len("-.yaml") + 8)
    fd, temp_path = tempfile.mkstemp(prefix=stem + "-", suffix=".yaml")
    keep_temp = False
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(original)
        reopenings = 0  # (after one, saving the text unchanged keeps the person's values)
        while True:
            _run_editor(temp_path, path)
            with open(temp_path, "rb") as temp:
                edited = editing.without_notice(temp.read())
            if edited == original and not reopenings:
                print(f"{path}: no changes")
                return 0
            problem = _check_edit(path, edited)
            if problem is not None:
                _say(problem)
                if not _ask_again():
                    raise CliError(f"{path}: the edit was not saved; the file is as it was")
                continue
            try:
                conflicts = session.save(edited)
            except StateLockedError as error:
                _keep_edit(temp_path, edited)
                keep_temp = True
                raise CliError(
                    f"{_busy(error, args.wait)} The edit was not saved; it is kept in "
                    f"{temp_path}: run `{PROG} edit {shlex.quote(path)}` again and copy your "
                    "values from it."
                ) from None
            if not conflicts:
                print(f"{path}: saved")
                return 0
            for conflict in conflicts:
                _say(f"{PROG}: {path}: {conflict.describe()}")
            if reopenings == EDIT_REOPENINGS:
                _keep_edit(temp_path, edited)
                keep_temp = True
                raise CliError(
                    f"{path}: the edit was not saved: after {reopenings} reopenings a running "
                    f"program still changes keys you changed; {path} is as the program has it. "
                    f"Your edit is kept in {temp_path}: run `{PROG} edit {shlex.quote(path)}` "
                    "again when the program is idle or stopped, and copy your values from it."
                )
            _say(f"{PROG}: reopening your edit; save it as it is to keep your values")
            with open(temp_path, "wb") as temp:
                temp.write(editing.with_notice(edited, conflicts))
            reopenings += 1
    finally:
        if not keep_temp:
            with contextlib.suppress(OSError):
                os.unlink(temp_path)


def _keep_edit(temp_path: str, edited: bytes) -> None:
    """Leave the person's text in the editor's file (without a reopening's notice), for an
    edit that could not be saved."""
    with open(temp_path, "wb") as temp:
        temp.write(edited)


def _check_edit(path: str, edited: bytes) -> str | None:
    """What is wrong with an edited file, or None if it is a valid state."""
    label = f"{path} (your edit)"
    try:
        with _library_quiet():
            result = journal.read_state(path, edited)
    except CorruptStateError as error:
        return error.describe(label)
    if result.good_size < len(edited):
        line = line_and_column(edited, result.good_size)[0]
        return f"{label}, line {line}: this last line looks like an unfinished journal record"
    return None


def _editor_command() -> list[str]:
    for variable in ("VISUAL", "EDITOR"):
        setting = os.environ.get(variable, "").strip()
        if setting:
            try:
                words = _split_command(setting)
            except ValueError as error:
                raise CliError(f"cannot read ${variable} ({setting!r}): {error}") from None
            if words:
                return words
    return ["notepad"] if sys.platform == "win32" else ["vi"]


def _split_command(command: str) -> list[str]:
    """Split an editor setting into words; on Windows backslashes are path separators."""
    if sys.platform == "win32":
        words = shlex.split(command, posix=False)
        return [w[1:-1] if len(w) > 1 and w[0] == w[-1] == '"' else w for w in words]
    return shlex.split(command)


def _run_editor(temp_path: str, path: str) -> None:
    command = _editor_command()
    try:
        editor = subprocess.Popen([*command, temp_path])
    except OSError as error:
        raise CliError(
            f"cannot run the editor {shlex.join(command)!r}: {error.strerror or error}. "
            "Set $VISUAL or $EDITOR to your editor's command."
        ) from None
    with _interrupts_ignored():  # Ctrl-C is the editor's business (as git does)
        status = editor.wait()
    if status != 0:
        raise CliError(
            f"the editor exited with status {status}; the edit was not saved, {path} is as it was"
        )


@contextlib.contextmanager
def _interrupts_ignored() -> Iterator[None]:
    """Ignore Ctrl-C (and Ctrl-\\) in this process while the editor, already started, runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ("SIGINT", "SIGQUIT")
    numbers = [getattr(signal, name) for name in names if hasattr(signal, name)]
    saved = [(number, signal.signal(number, signal.SIG_IGN)) for number in numbers]
    try:
        yield
    finally:
        for number, handler in saved:
            signal.signal(number, handler)


def _ask_again() -> bool:
    """Offer to edit again, on a terminal only; anything but yes (or end of input) is no."""
    if not sys.stdin.isatty():
        return False
    while True:
        sys.stderr.write("Edit again? [y/n] ")
        sys.stderr.flush()
        answer = sys.stdin.readline()
        if not answer:
            return False
        answer = answer.strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no"):
            return False


# -- arguments -------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more: {text!r}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``persistedstate`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Look at, change, check or edit a persistedstate YAML state file.",
        epilog=_PATH_HELP
        + "\n\n"
        + textwrap.fill(
            "show, get and check take no lock and never change the file; set, del, compact "
            "and edit work while a program has the state open: it takes the change in at its "
            "next operation. `persistedstate COMMAND --help` tells more.",
            _HELP_WIDTH,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, summary: str, description: str, *, takes_path: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=textwrap.fill(description, _HELP_WIDTH),
            epilog=_PATH_HELP if takes_path else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        sub.add_argument("file", metavar="FILE", help="the state file")
        sub.set_defaults(parser=sub)
        return sub

    def schema_option(sub: argparse.ArgumentParser, what: str) -> None:
        sub.add_argument(
            "--schema",
            metavar="MODULE:CLASS",
            help=f"{what} the keys and types that CLASS (a typed PersistedState subclass "
            "in MODULE, imported from the current directory too) declares",
        )

    def wait_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--wait",
            metavar="SECONDS",
            type=_seconds,
            default=COMMAND_WAIT,
            help="wait up to SECONDS for the file: a program that has the state open lets "
            f"go of it at once, unless it is inside a transaction (default: {COMMAND_WAIT:g})",
        )

    show = command(
        "show",
        "print the state, or the value at PATH, as YAML",
        "Print the current state (journal applied) as YAML, or only the value at PATH. "
        "Takes no lock and changes nothing.",
    )
    show.add_argument("path", metavar="PATH", nargs="?", default="", help="what to show")
    show.set_defaults(run=cmd_show)

    get = command(
        "get",
        "print one value",
        "Print the value at PATH: a string as it is (no quotes), anything else as YAML. "
        "Takes no lock and changes nothing.",
    )
    get.add_argument("path", metavar="PATH", help="the value to print")
    get.set_defaults(run=cmd_get)

    set_ = command(
        "set",
        "store a value at PATH",
        "Store VALUE at PATH. VALUE is read as YAML: 5 is a number, '\"5\"' a string, "
        "'[1, 2]' a list, '{a: 1}' a mapping, true a boolean, null nothing. The key is "
        "created if it is missing (its parent must exist); a list index one past the end "
        "appends. Put -- before a VALUE that starts with '-'.",
    )
    set_.add_argument("path", metavar="PATH", help="where to store the value")
    set_.add_argument("value", metavar="VALUE", help="the value, as YAML")
    set_.add_argument(
        "-s", "--string", action="store_true", help="store VALUE as a string, as it is"
    )
    set_.add_argument("--create", action="store_true", help="create FILE if it does not exist")
    wait_option(set_)
    schema_option(set_, "refuse a change that leaves the state not fitting")
    set_.set_defaults(run=cmd_set)

    del_ = command("del", "delete the key or list item at PATH", "Delete the value at PATH.")
    del_.add_argument("path", metavar="PATH", help="what to delete")
    wait_option(del_)
    schema_option(del_, "refuse a change that leaves the state not fitting")
    del_.set_defaults(run=cmd_del)

    check = command(
        "check",
        "check that the file reads",
        "Exit 0 and print a summary if FILE reads as a state; otherwise print where it is "
        "damaged (line and column, with a hint for common mistakes) and exit 1. Plain values "
        "that YAML 1.1 reads otherwise than they look (yes, off, 1:30, 010, 1e16) are listed "
        "as warnings. Takes no lock and never changes the file.",
        takes_path=False,
    )
    schema_option(check, "also check that the state fits")
    check.set_defaults(run=cmd_check)

    compact = command(
        "compact",
        "rewrite the file as one clean YAML document",
        "Fold the journal into the state and rewrite FILE as one YAML document, atomically.",
        takes_path=False,
    )
    wait_option(compact)
    compact.set_defaults(run=cmd_compact)

    edit = command(
        "edit",
        "edit the file in your editor, saved only if valid",
        "Open FILE in $VISUAL or $EDITOR (else notepad on Windows, vi elsewhere). A file with "
        "a journal is compacted first. The edit is saved (atomically) only if it is a valid "
        "state; otherwise you are asked to edit again, or, without a terminal, the command "
        "fails and the file stays as it was. A program may run meanwhile: keys you changed "
        "take your values, keys it changed keep its values, and a key you both changed "
        "reopens the editor with a message naming it: save it as it is to keep your values "
        f"(a key named once is not asked about again). After {EDIT_REOPENINGS} reopenings "
        "the command fails, the file as the program has it, and keeps your edit in a file it "
        "names.",
        takes_path=False,
    )
    wait_option(edit)
    edit.set_defaults(run=cmd_edit)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("persistedstate")
    except Exception:
        return "unknown"


def _setup_logging() -> None:
    logger = logging.getLogger("persistedstate")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging()
    try:
        status: int = args.run(args)
    except UsageError as error:
        args.parser.error(error.message)  # exits with status 2
    except PathError as error:
        _say(f"{PROG}: error: {args.file}: {error.message}")
        return error.status
    except CliError as error:
        _say(f"{PROG}: error: {error.message}")
        return error.status
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except CorruptStateError as error:
        _say(f"{PROG}: error: {error}")
        return 1
    except (PersistedStateError, OSError) as error:
        _say(f"{PROG}: error: {_os_error_text(error)}")
        return 1
    except KeyboardInterrupt:
        _say(f"{PROG}: interrupted; the file holds the state before or after, never half")
        return 130
    return status


def _os_error_text(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(error)


def _silence_stdout() -> None:
    """After the reader of stdout went away: stop Python complaining when it flushes."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
