"""Mutation testing: does each promise of README.md's Guarantees table have a test that fails
when the code breaks it?

Each mutant below is one deliberate bug: an exact snippet of a module of src/persistedstate/
and what replaces it. The tool applies one mutant at a time to a temporary copy of the
repository (src/, tests/, pyproject.toml; the working tree is never touched), runs there the
test files the README names for the mutant's promise (``pytest -x -q``, with a timeout) and
reports whether they caught it. A mutant whose snippet is not found exactly once is reported as
an error (the code moved on: update the snippet; ``--check`` lists them all in a second, with
each one's first line and the promise it breaks). Snippets are kept as short as they can be
while still found once, so that a change nearby rarely breaks them.

    .venv/bin/python tools/mutants.py                 # every mutant (make mutants)
    .venv/bin/python tools/mutants.py -j 2            # two at a time
    .venv/bin/python tools/mutants.py torn-if-unparsable dirsync-only-at-creation
    .venv/bin/python tools/mutants.py --list          # names, promises, what each breaks
    .venv/bin/python tools/mutants.py --check         # are all snippets still there?

Before the mutants, the test files they need are run once on an unchanged copy
(``--no-baseline`` skips that): a test that fails there would make every mutant look caught.
A mutant whose tests are still running at the timeout counts as caught (a hang gets noticed)
and is reported as such. The exit status is 0 when every mutant was caught, 1 otherwise.

It is not part of the test suite (it runs the suite's slowest files about 75 times).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "src/persistedstate"

# The promises of README.md's Guarantees table and the test files it names for each.
EXACT = "Exact values"
REAL_VALUES = "Real dicts and lists"
CONSISTENCY = "Consistency"
CRASH = "Crash safety"
POWER = "Power-cut safety"
RECOVERY = "Recovery"
FAILED_WRITES = "Failed writes"
CTRL_C = "Ctrl-C"
ONE_WRITER = "One program"
THREADS = "Threads"
EDITS = "Someone else's edit"
COMMENTS = "Comments"
TYPED = "Typed states"
PROMISES: dict[str, list[str]] = {
    EXACT: ["tests/test_values.py"],
    REAL_VALUES: ["tests/test_real_values.py", "tests/test_threads.py"],
    CONSISTENCY: ["tests/test_model.py"],
    CRASH: ["tests/test_crash.py"],
    POWER: ["tests/test_powercut.py"],
    RECOVERY: ["tests/test_journal.py", "tests/test_fuzz.py"],
    FAILED_WRITES: ["tests/test_faults.py"],
    CTRL_C: ["tests/test_interrupts.py"],
    ONE_WRITER: ["tests/test_locks.py"],
    THREADS: ["tests/test_threads.py"],
    EDITS: ["tests/test_locks.py"],
    COMMENTS: ["tests/test_comments.py"],
    TYPED: ["tests/test_typed.py", "tests/test_typed_live.py"],
}


@dataclass(frozen=True)
class Mutant:
    name: str
    promise: str
    file: str  # in src/persistedstate/
    snippet: str  # exact source text, found exactly once in the file
    replacement: str
    bug: str  # what the mutant breaks, in a few words

    @property
    def tests(self) -> list[str]:
        return PROMISES[self.promise]


M = Mutant
# fmt: off
MUTANTS = [
    # -- exact values -----------------------------------------------------------------------
    M("float-without-dot", EXACT, "values.py",
      'if "." not in text:',
      "if False:",
      "1e+16 is written without the dot YAML 1.1 needs: it reads back as a str"),
    M("big-int-in-decimal", EXACT, "values.py",
      "if value.bit_length() > _DECIMAL_INT_MAX_BITS:",
      "if False:",
      "ints of more than 4300 digits written in decimal (Python refuses to)"),
    M("datetime-offset-dropped", EXACT, "values.py",
      'value.isoformat(" ")',
      'value.replace(tzinfo=None).isoformat(" ")',
      "aware datetimes lose their UTC offset in records"),
    M("str-subclass-kept", EXACT, "values.py",
      "return str.__str__(value)",
      "return value",
      "an instance of a str subclass is stored as it is, not as a str"),
    M("tuple-kept-in-memory", EXACT, "values.py",
      'return new_list(copy), "["',
      'return (tuple(copy) if type(value) is tuple else new_list(copy)), "["',
      "a tuple stays a tuple in memory, and reads back as a list"),
    M("astral-escaped-in-snapshot", EXACT, "snapshot.py",
      "if _ESCAPED_ASTRAL.search(text):",
      "if False:",
      "characters beyond the BMP are written as \\U escapes in the snapshot"),
    M("yaml-line-breaks-raw-in-records", EXACT, "values.py",
      'return _YAML_UNSAFE_CHARS.sub(lambda m: f"\\\\u{ord(m.group()):04x}", text)',
      "return text",
      "\\x85, \\u2028 ... written raw in records: YAML reads them as line breaks"),
    M("bool-key-as-int", EXACT, "values.py",
      "    elif kind is bool:\n        text = bool_text(key)",
      "    elif kind is bool:\n        text = int_text(int(key))",
      "a bool key is written as 1/0 in records, reads back as an int"),
    # -- real dicts and lists ---------------------------------------------------------------
    M("list-remove-not-overridden", REAL_VALUES, "proxies.py",
      "    def remove(self, value: Any) -> None:",
      "    def _remove(self, value: Any) -> None:",
      "a nested list's remove() is list's own: it changes memory and writes no record"),
    M("yaml-dict-representer-missing", REAL_VALUES, "proxies.py",
      "    _dumper.add_representer(StoredDict, _represent_dict)  # (read through a base method)\n"
      "    _dumper.add_representer(StoredList, _represent_list)\n"
      "    for _live in (LiveDict, LiveList):",
      "    _dumper.add_representer(StoredList, _represent_list)\n"
      "    for _live in (LiveList,):",
      "yaml.safe_dump refuses a nested dict (PyYAML looks its representers up by exact type)"),
    # -- consistency ------------------------------------------------------------------------
    M("multi-change-first-record-only", CONSISTENCY, "core.py",
      "records[0] if len(records) == 1 else journal.tx_record(records)",
      "records[0]",
      "update() of several keys writes only the first key's record"),
    M("reorder-record-reversed", CONSISTENCY, "proxies.py",
      "[journal.reorder_record(path, order)]",
      "[journal.reorder_record(path, order[::-1])]",
      "sort()/reverse() write another order than memory takes"),
    M("splice-record-as-insert", CONSISTENCY, "proxies.py",
      "[journal.splice_record(path, start, stop, texts)],",
      "[journal.splice_record(path, start, start, texts)],",
      "slice assignment is written as an insertion (the replaced items stay in the file)"),
    M("extended-slice-deleted-first-to-last", CONSISTENCY, "proxies.py",
      "positions = sorted(range(start, stop, step), reverse=True)",
      "positions = sorted(range(start, stop, step))",
      "del l[::2] deletes in index order, so indexes shift under it"),
    M("path-cache-trusted-blindly", CONSISTENCY, "proxies.py",
      "known[0], top) is container:",
      "known[0], top) is not None:",
      "a change through a kept proxy goes to the path it had last time"),
    M("undo-delete-appends-key", CONSISTENCY, "journal.py",
      "the dict\n                undo.append(Restore.of(container))",
      "the dict\n"
      "                undo.append(Set((container, key, dict.__getitem__(container, key))))",
      "a rolled-back delete puts the key back at the end, not in its place"),
    M("nested-change-keeps-stale-entry", CONSISTENCY, "snapshot.py",
      "if changed_keys:",
      "if False:",
      "compaction reuses the text of a top-level entry a nested change went into"),
    M("attribute-kept-after-change", CONSISTENCY, "core.py",
      "del self._mirror[name]",
      "pass",
      "state.x keeps returning the value from before a change"),
    # -- crash safety -----------------------------------------------------------------------
    M("compaction-in-place", CRASH, "storage.py",
      "temp_path = _temp_path(self.path)",
      "temp_path = self.path",
      "compaction writes the new file at the file's own path (deleting the old one first), "
      "no temporary file"),
    M("transaction-record-by-record", CRASH, "core.py",
      "file.append(line)  # the critical section: write, note it (see _settle)",
      "for one in tx.records:\n"
      "                        file.append(journal.line(one))",
      "a transaction is written as separate records: a kill can leave half of it"),
    M("stale-temp-files-kept", CRASH, "storage.py",
      "_remove_stale_temp_files(self.path)",
      "pass",
      "the temporary file of a killed compaction is never removed"),
    M("multi-change-record-by-record", CRASH, "core.py",
      "            file.append(line)\n            if len(changes) == 1:",
      "            for one in records:\n"
      "                file.append(journal.line(one))\n            if len(changes) == 1:",
      "update() of several keys is written key by key: a kill can leave part of it"),
    # -- power-cut safety -------------------------------------------------------------------
    M("no-fsync-on-append", POWER, "storage.py",
      "if self.fsync:",
      "if False:",
      "fsync=True does not sync the appended record"),
    M("temp-file-not-synced", POWER, "storage.py",
      "_sync_file(fd)\n",
      "pass  # (not synced)\n",
      "compaction renames a new file whose data may not be on disk yet"),
    M("dirsync-only-at-creation", POWER, "storage.py",
      "        self._repair()  # the header completed, the descriptor on the new file\n"
      "        self._sync_directory()",
      "        created = self._identity is None\n"
      "        self._repair()\n        if created:\n            self._sync_directory()",
      "a compaction's rename is not made durable (a power cut brings the old name back)"),
    M("failed-dirsync-not-retried", POWER, "storage.py",
      "if self._directory_unsynced:",
      "if False:",
      "a directory sync that failed is not retried by the next fsync'd append"),
    # -- recovery ---------------------------------------------------------------------------
    M("torn-if-unparsable", RECOVERY, "journal.py",
      'cut_short = not content or not body.endswith(b"\\n")',
      "cut_short = True",
      "every unparsable last record is taken for a torn write, even with its newline"),
    M("zero-tail-is-damage", RECOVERY, "journal.py",
      'if tail and (b"--- ".startswith(tail)',
      'if tail and tail.strip(b"\\0") and (b"--- ".startswith(tail)',
      "a tail of zero bytes (an extended, unwritten file) is reported as damage"),
    M("torn-tail-not-cut", RECOVERY, "storage.py",
      "        if self._cut_owed:  # (only then",
      "        if False:  # (only then",
      "the next record is appended after a torn tail instead of replacing it"),
    M("open-writes-at-once", RECOVERY, "storage.py",
      "        self._checksum = zlib.crc32(kept)\n",
      "        self._checksum = zlib.crc32(kept)\n"
      "        if self._repair_needed:\n            self._repair()\n",
      "opening cuts a torn tail at once (load() and a failed open must write nothing)"),
    M("no-depth-check-on-replay", RECOVERY, "journal.py",
      "if deep and values.deeper_than(data, values.MAX_DEPTH):",
      "if False:",
      "a record may nest the state deeper than 100 levels"),
    M("depth-check-ignores-paths", RECOVERY, "journal.py",
      "        return len(record[1]) > _HALF_MAX_DEPTH",
      "        return False",
      "a record with a long path and a short value is not checked for depth"),
    M("aliases-shared", RECOVERY, "values.py",
      "        if id(data) in seen:\n            data = plain_copy(data)",
      "        if False:\n            data = plain_copy(data)",
      "YAML aliases read by PyYAML's constructor stay one shared container"),
    M("lone-surrogate-escape-accepted", RECOVERY, "journal.py",
      "_refuse_lone_surrogates(content, record)",
      "pass",
      'a record holding "\\udcff" is read (no file could ever be written from it)'),
    M("json-nan-as-float", RECOVERY, "journal.py",
      "json.JSONDecoder(parse_constant=_yaml_reads_it_otherwise, ",
      "json.JSONDecoder(",
      "NaN and Infinity in a record read as floats, where YAML reads strings"),
    M("error-line-off-by-one", RECOVERY, "journal.py",
      "error.problem, line, column",
      "error.problem, line - 1, column",
      "a damaged record is reported one line too early"),
    M("extra-fields-accepted", RECOVERY, "journal.py",
      "if len(record) != operation.fields:",
      "if len(record) < operation.fields:",
      "a record with too many fields is applied, its extra fields ignored"),
    M("negative-index-unchecked", RECOVERY, "journal.py",
      "    if not -len(node) <= index <= limit:",
      "    if not index <= limit:",
      "a record's list index far below -len is applied (clamped) instead of reported"),
    # -- failed writes ----------------------------------------------------------------------
    M("failed-append-not-cut-back", FAILED_WRITES, "storage.py",
      "            self._repair_needed = self._cut_owed = self._cut_untried = True\n",
      "",
      "the bytes of a failed append stay in the file"),
    M("multi-change-applied-before-write", FAILED_WRITES, "core.py",
      "else journal.tx_record(records))\n",
      "else journal.tx_record(records))\n"
      "        if len(changes) > 1:\n            for change in changes:\n"
      "                change.apply(None)\n            changes = []\n",
      "update() of several keys changes memory even when its write fails"),
    M("failed-transaction-kept-in-memory", FAILED_WRITES, "core.py",
      "                conflict = error\n            except BaseException:\n",
      "                conflict = error\n            except OSError:\n                raise\n"
      "            except BaseException:\n",
      "a transaction whose write fails keeps its changes in memory"),
    M("failed-auto-compaction-raises", FAILED_WRITES, "core.py",
      "except (OSError, UnwritableMemoryError) as error:",
      "except UnwritableMemoryError as error:",
      "a change whose automatic compaction fails raises, though it was written and applied"),
    M("failed-compaction-leaves-temp-file", FAILED_WRITES, "storage.py",
      "os.unlink(temp_path)\n",
      "pass\n",
      "a compaction that fails leaves its temporary file behind"),
    M("size-counted-before-write", FAILED_WRITES, "storage.py",
      "written = os.write(self._fd, data)",
      "self.size += len(data)\n            self._checksum = zlib.crc32(data, self._checksum)\n"
      "            written = os.write(self._fd, data)",
      "the file's length is counted before the write, so a failure is not cut back"),
    # -- Ctrl-C -----------------------------------------------------------------------------
    M("interrupted-commit-not-settled", CTRL_C, "core.py",
      "            self._unsettled = (_COMMIT, changes, length, line)\n"
      "            self.lock = self._settling_lock  # (plain stores first: see _settle)\n"
      "            self.read = self._settling_read  # type: ignore[method-assign]\n"
      "            self._epoch |= 1\n            self._settle_interrupted()\n",
      "",
      "a change interrupted between its write and memory keeps its record in the file"),
    M("take-back-leaves-written-record", CTRL_C, "storage.py",
      "written = self._last_written(data)\n        if written is not None:  # it returned",
      "written = None\n        if written is not None:  # it returned",
      "take_back() cuts nothing once the append returned: the file keeps a change memory lacks"),
    M("half-applied-change-not-finished", CTRL_C, "core.py",
      "                self._applied = done\n                self._apply_all(changes)\n",
      "                pass\n",
      "update() of several keys interrupted halfway stays half applied; the file has all of it"),
    # -- one program ------------------------------------------------------------------------
    M("lock-timeout-ignored", ONE_WRITER, "locking.py",
      "deadline = time.monotonic() + timeout",
      "deadline = time.monotonic()",
      "lock_timeout does not wait for the holder"),
    M("holder-pid-unknown", ONE_WRITER, "locking.py",
      "            pid = self.header[HOLDER_PID] or None\n        return pid",
      "            pass\n        return None",
      "StateLockedError does not name the holder's PID"),
    M("reopen-in-process-not-taken-over", ONE_WRITER, "storage.py",
      "        _take_over_in_this_process(self.path)",
      "        pass",
      "a second open in the same process does not close the first: two objects write one file"),
    M("core-refers-to-state-strongly", ONE_WRITER, "state.py",
      "key not in names",
      "key not in type(self)._attribute_names",
      "the core refers to the state (its mirror's key test does): a reference cycle, so a "
      "dropped state frees its lock only when the collector runs"),
    M("compaction-copies-in-place", ONE_WRITER, "storage.py",
      "    os.replace(source, target)",
      "    if not os.path.exists(target):\n        os.replace(source, target)\n        return\n"
      "    with open(source, 'rb') as new, open(target, 'r+b') as old:\n"
      "        old.truncate(0)\n        old.write(new.read())\n    os.unlink(source)",
      "compaction copies the new file over the old one: load() can see it half-written"),
    # -- threads ----------------------------------------------------------------------------
    M("transaction-not-marked-for-readers", THREADS, "core.py",
      "                self._epoch += 1  # odd: lock-free readers take the lock until the end",
      "                pass",
      "lock-free reads go on during a transaction and see it half done"),
    M("attribute-kept-inside-transaction", THREADS, "core.py",
      "self.tx is None and dict.get(self._raw, name",
      "dict.get(self._raw, name",
      "state.x keeps a value a transaction then rolls back"),
    M("len-without-lock", THREADS, "proxies.py",
      "return self._core.read_whole(_call, self, _dict_len)",
      "return _dict_len(self)  # (no lock, no epoch check)",
      "len() of the state or a dict sees inside another thread's transaction"),
    M("multi-change-not-marked-for-readers", THREADS, "core.py",
      "self._epoch += 1  # odd: readers wait until every part is applied",
      "pass",
      "lock-free reads see update() of several keys half applied"),
    M("append-end-read-unlocked", THREADS, "proxies.py",
      "with self._core.lock:  # the end must not move before the insert",
      "if True:  # (no lock: insert() takes it after the end is read)",
      "append() reads the end before taking the lock: another thread's item may follow"),
    # -- someone else's edit ----------------------------------------------------------------
    M("no-length-check-before-append", EDITS, "storage.py",
      "if os.lseek(self._fd, 0, os.SEEK_END) != self.size:",
      "if False:",
      "a change is appended to a file someone rewrote in place"),
    M("no-checksum-before-compaction", EDITS, "storage.py",
      "if size != self.size or checksum != self._checksum:",
      "if size != self.size:",
      "an edit that keeps the file's length is overwritten by the next compaction"),
    M("no-check-before-compaction", EDITS, "storage.py",
      "current = self.check_unchanged()",
      "current = self._status",
      "compaction replaces someone else's file with ours"),
    # -- comments ---------------------------------------------------------------------------
    M("round-trip-not-compared", COMMENTS, "comments.py",
      "if values.exactly_equal(snapshot.load_snapshot(path, result), plain):",
      "if True:",
      "the commented output is written without checking that it reads back as the state"),
    M("comment-lines-leave-with-their-key", COMMENTS, "comments.py",
      "    lines = _take_tail_lines(node, key)\n    if not lines.strip():\n        return\n",
      "    return\n",
      "the comment lines after a deleted or moved entry go with it"),
    M("ruamel-own-resolver", COMMENTS, "comments.py",
      "    round_trip.Resolver = _PyYAMLTags\n",
      "",
      "ruamel.yaml reads y/n as booleans: those keys seem replaced and lose their comments"),
    M("comments-at-line-start-only", COMMENTS, "snapshot.py",
      '_COMMENT = re.compile(rb"(?:^|[ \\t])#", re.MULTILINE)',
      '_COMMENT = re.compile(rb"^#", re.MULTILINE)',
      "a file whose comments all follow a value is compacted by the plain writer"),
    M("written-values-rewritten", COMMENTS, "comments.py",
      "if node is not None and _same_scalar(node, data):",
      "if False:",
      "unchanged values are rewritten: 'yes' quotes, hex and dates as the person wrote them go"),
    # -- typed states -----------------------------------------------------------------------
    M("typed-int-takes-bool", TYPED, "schema.py",
      'int: Exact("int", (int,)),',
      'int: Exact("int", (int, bool)),',
      "True goes into an int key, and reads back as a bool"),
    M("typed-nested-changes-unchecked", TYPED, "schema.py",
      "self.schema.check_change(kind, change, self.data)",
      "pass",
      "a list or dict change (append, update, ...) is not checked"),
    M("typed-file-unchecked", TYPED, "schema.py",
      "raise self._corrupt(path, text, misfit) from None",
      "pass",
      "a file whose value does not fit the declared type opens"),
    M("typed-position-of-another-value", TYPED, "schema.py",
      "if values.exactly_equal(found, misfit.value):",
      "if found is not _MISSING:",
      "a value a record set is reported at the document's older value's line"),
    M("typed-taken-in-unchecked", TYPED, "schema.py",
      "self._schema.check_record(self._data, record)",
      "pass",
      "a typed program takes others' changes in unchecked"),
    M("typed-owed-report-never-raised", TYPED, "core.py",
      "core._raise_report()",
      "pass",
      "a default-mode program takes a command's misfit in without a word"),
    M("typed-shared-report-not-raised", TYPED, "core.py",
      "                raise taken.made\n",
      "                pass\n",
      "a shared-mode program takes another process's misfit in without a word"),
    M("typed-owed-report-not-checked-again", TYPED, "schema.py",
      "intake.check_again(owed)",
      "pass",
      "a report owed is dropped by the next handover, though the value still does not fit"),
    M("typed-misfit-fixed-later-reported", TYPED, "schema.py",
      "schema.check_at(data, found.path)",
      "raise found",
      "a misfit a later record fixed is reported all the same"),
    M("typed-report-at-another-line", TYPED, "schema.py",
      "where = (line_and_column(raw, offset)[0], 1)",
      "where = (line_and_column(raw, offset)[0] - 1, 1)",
      "the record that set a misfit is shown at the line before it"),
]
# fmt: on


# -- running -------------------------------------------------------------------------------


@dataclass
class Result:
    mutant: Mutant
    status: str  # caught | survived | timeout | error
    seconds: float
    detail: str  # the failing test, or what went wrong


def apply(mutant: Mutant, source: str) -> str:
    """The source with the mutant in; ValueError when the snippet is not there exactly once."""
    count = source.count(mutant.snippet)
    if count != 1:
        raise ValueError(f"snippet found {count} times in {PACKAGE}/{mutant.file}")
    return source.replace(mutant.snippet, mutant.replacement)


def make_copy() -> Path:
    """A temporary copy of what the tests need: <tmp>/repo/{src,tests,pyproject.toml}.

    tests/conftest.py finds the 26.1 fixtures in shared/ beside the checkout: a link to the
    real one is put beside the copy.
    """
    top = Path(tempfile.mkdtemp(prefix="persistedstate-mutant-"))
    repo = top / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "*.egg-info")
    repo.mkdir()
    for part in ("src", "tests"):
        shutil.copytree(ROOT / part, repo / part, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", repo / "pyproject.toml")
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (top / "shared").symlink_to(shared)
    return repo


def run_tests(repo: Path, tests: list[str], timeout: float) -> tuple[str, str]:
    """Run pytest on the copy: ("passed" | "failed" | "timeout", what failed)."""
    env = dict(os.environ, PYTHONPATH=str(repo / "src"), PYTHONDONTWRITEBYTECODE="1")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--basetemp={repo.parent / 'pytest-tmp'}",
        *tests,
    ]
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            command,
            cwd=repo,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout ends its children too
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return "timeout", f"no result after {timeout:.0f} s"
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
    if code == 0:
        return "passed", ""
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.MULTILINE)
    if failed:
        return "failed", failed[0]
    return "failed", f"pytest exit status {code}: " + " | ".join(text.strip().splitlines()[-3:])


def check_import(repo: Path) -> None:
    """Make sure the tests in the copy import the copy's package, not the installed one."""
    env = dict(os.environ, PYTHONPATH=str(repo / "src"))
    found = subprocess.run(
        [sys.executable, "-c", "import persistedstate; print(persistedstate.__file__)"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(repo.resolve()):
        raise SystemExit(f"the copy imports persistedstate from {found}, not from {repo}/src")


def run_mutant(mutant: Mutant, timeout: float, keep: bool) -> Result:
    started = time.monotonic()
    try:
        original = (ROOT / PACKAGE / mutant.file).read_text(encoding="utf-8")
        mutated = apply(mutant, original)
    except (OSError, ValueError) as error:
        return Result(mutant, "error", 0.0, str(error))
    repo = make_copy()
    try:
        (repo / PACKAGE / mutant.file).write_text(mutated, encoding="utf-8")
        check_import(repo)
        outcome, detail = run_tests(repo, mutant.tests, timeout)
    finally:
        if keep:
            print(f"  (kept {repo.parent})", flush=True)
        else:
            shutil.rmtree(repo.parent, ignore_errors=True)
    status = {"passed": "survived", "failed": "caught", "timeout": "timeout"}[outcome]
    return Result(mutant, status, time.monotonic() - started, detail)


def baseline(tests: list[str], timeout: float) -> None:
    """The tests must pass on an unchanged copy, or every mutant would look caught."""
    print(f"baseline: {' '.join(tests)} on an unchanged copy ...", flush=True)
    started = time.monotonic()
    repo = make_copy()
    try:
        check_import(repo)
        outcome, detail = run_tests(repo, tests, timeout)
    finally:
        shutil.rmtree(repo.parent, ignore_errors=True)
    if outcome != "passed":
        raise SystemExit(f"baseline {outcome}: {detail}; fix that before measuring mutants")
    print(f"baseline: passed in {time.monotonic() - started:.0f} s", flush=True)


def readme_disagreements() -> list[str]:
    """Promises whose test files differ from the README's Guarantees table."""
    try:
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
    except OSError:
        return ["README.md not found"]
    problems = []
    for promise, tests in PROMISES.items():
        row = re.search(rf"^\| {re.escape(promise)} \|.*\|(.*)\|\s*$", readme, re.MULTILINE)
        named = re.findall(r"`(tests/[^`]+)`", row.group(1)) if row else None
        if named != tests:
            problems.append(f"{promise}: README names {named}, this tool runs {tests}")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Apply each mutant to a copy of the repository and run the tests "
        "README.md names for its promise.",
    )
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for one mutant's tests")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument(
        "--check", action="store_true", help="check that every snippet is found, run nothing"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    args = parser.parse_args(argv)

    names = [mutant.name for mutant in MUTANTS]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise SystemExit(f"mutant names used twice: {sorted(duplicates)}")
    unknown = [name for name in args.names if name not in names]
    if unknown:
        raise SystemExit(f"no mutant named {', '.join(unknown)}; --list shows them")
    chosen = [mutant for mutant in MUTANTS if not args.names or mutant.name in args.names]
    for problem in readme_disagreements():
        print(f"warning: {problem}", file=sys.stderr)

    if args.list:
        for mutant in chosen:
            print(f"{mutant.name:40} {mutant.promise:20} {mutant.file:12} {mutant.bug}")
        return 0
    if args.check:
        errors = 0
        for mutant in chosen:
            try:
                apply(mutant, (ROOT / PACKAGE / mutant.file).read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                errors += 1
                lines = mutant.snippet.strip().splitlines()
                more = " ..." if len(lines) > 1 else ""
                print(f"error    {mutant.name}: {error}")
                print(f"         snippet: {lines[0]!r}{more}")
                print(f"         breaks {mutant.promise}: {mutant.bug}")
        print(f"{len(chosen) - errors} of {len(chosen)} snippets found exactly once")
        if errors:
            print(
                "Find where that code lives now (git log -S'<snippet>' names the commit that "
                "moved or changed it) and give the mutant a snippet there that breaks the "
                "same promise the same way."
            )
        return 1 if errors else 0

    if not args.no_baseline:
        baseline(sorted({test for mutant in chosen for test in mutant.tests}), args.timeout)
    started = time.monotonic()
    results: list[Result] = []
    printing = threading.Lock()

    def one(mutant: Mutant) -> Result:
        result = run_mutant(mutant, args.timeout, args.keep)
        with printing:
            results.append(result)
            shown = f"[{len(results):2}/{len(chosen)}] {result.status:8} {mutant.name:40}"
            print(f"{shown} {result.seconds:6.1f} s  {result.detail}", flush=True)
        return result

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        list(pool.map(one, chosen))

    by_status = {
        status: [r for r in results if r.status == status]
        for status in ("caught", "timeout", "survived", "error")
    }
    caught = len(by_status["caught"]) + len(by_status["timeout"])
    print(
        f"\nmutation score: {caught}/{len(results)} caught"
        f" ({len(by_status['timeout'])} of them by timeout),"
        f" {len(by_status['survived'])} survived, {len(by_status['error'])} errors,"
        f" in {(time.monotonic() - started) / 60:.1f} min"
    )
    for result in by_status["survived"]:
        mutant = result.mutant
        tests = " ".join(mutant.tests)
        print(f"  survived {mutant.name} ({mutant.promise}: {tests}): {mutant.bug}")
    for result in by_status["error"]:
        print(f"  error    {result.mutant.name}: {result.detail}")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
