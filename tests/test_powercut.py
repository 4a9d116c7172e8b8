"""Power-cut simulation: every state a power cut could leave, built from the recorded I/O.

Recording. ``persistedstate.storage.os`` is replaced by :class:`RecordingOs`, which forwards
every call to the real ``os`` module (the workload really runs on disk) and logs, for the
state's directory, the operations that change or sync it, into :class:`FsModel`:

- ``create`` (``os.open`` with ``O_CREAT`` of a missing name), ``rename`` (``os.replace``) and
  ``unlink``: *directory* operations;
- ``write`` (at the offset it lands at: the end of the file for ``O_APPEND`` descriptors, the
  descriptor's position otherwise) and ``truncate`` (``os.ftruncate``, ``O_TRUNC``): *data*
  operations on an inode (the model names inodes itself, so a reused inode number is harmless);
- ``fsync`` of a file descriptor: makes every earlier data operation on that inode durable;
  ``fsync`` of the directory: makes every earlier directory operation durable.

Crash states. For every cut point ``i`` (after the first ``i`` logged operations) the durable
operations are those followed by a covering sync before ``i``; the others are pending. A power
cut leaves the durable operations plus any prefix of the pending ones, in program order; the
last operation of that prefix, when it is a write, may also be torn (only its first bytes
written, or its length allocated with zeros where its data should be). Pre-existing files count
as durable. This is the model POSIX promises and a little more (real file systems may also
reorder pending operations; the prefix model is what the library's recovery rules are built on).
As a check on the model, applying every logged operation must give the real file's bytes.

Each state is written to a scratch directory and opened with ``load()`` and
``PersistedState.open`` (then closed, and loaded again). Acknowledgements are logged as the
number of operations done when a call returned, so for each cut point the last acknowledged
step ``a`` is known, and:

- with ``fsync=True`` the file must hold exactly ``S_a`` or ``S_a+1`` (nothing acknowledged is
  lost, the change in flight is all there or not at all);
- with the default ``fsync=False`` the file must be readable and hold some ``S_j``, ``j <= a+1``
  (a prefix of the changes);
- before the file's creation was acknowledged, no file is also acceptable.

A workload may run in several sessions (open, changes, ``close()``; open again, ...), each with
its own ``fsync`` setting: then what a call acknowledged with ``fsync=True`` must survive, and
the rest must be a prefix.

The number of crash states explored is printed and recorded as a test property.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _workers as workers  # tests/ is on sys.path under pytest
import pytest
from conftest import fixture_26_1

import persistedstate.storage
from persistedstate import PersistedState, load

pytestmark = [
    pytest.mark.skipif(
        sys.platform != "linux",
        reason="the recorded I/O model follows Linux (fsync, not F_FULLFSYNC)",
    ),
    pytest.mark.usefixtures("quiet_recovery_warnings"),
]


# -- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    kind: str  # create rename unlink (directory) | write truncate (data) | fsync dirsync
    inode: int = -1
    name: str = ""
    target: str = ""
    offset: int = 0
    data: bytes = b""
    size: int = 0

    @property
    def is_dir_op(self) -> bool:
        return self.kind in ("create", "rename", "unlink")

    @property
    def is_data_op(self) -> bool:
        return self.kind in ("write", "truncate")


@dataclass
class FsModel:
    """The logged operations on one directory, and its contents before them (durable)."""

    directory: str
    initial_names: dict[str, int] = field(default_factory=dict)
    initial_data: dict[int, bytes] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    names: dict[str, int] = field(default_factory=dict)  # everything applied (the real view)
    data: dict[int, bytearray] = field(default_factory=dict)
    next_inode: int = 1

    @classmethod
    def of_directory(cls, directory: Path) -> FsModel:
        model = cls(str(directory))
        for entry in sorted(directory.iterdir()):
            if entry.is_file() and not entry.name.endswith(".lock"):
                inode = model._new_inode()
                model.initial_names[entry.name] = inode
                model.initial_data[inode] = entry.read_bytes()
        model.names = dict(model.initial_names)
        model.data = {inode: bytearray(raw) for inode, raw in model.initial_data.items()}
        return model

    def _new_inode(self) -> int:
        self.next_inode += 1
        return self.next_inode

    def log(self, op: Op) -> None:
        self.ops.append(op)
        _apply(self.names, self.data, op)

    def crash_states(self) -> Iterator[tuple[int, str, dict[str, bytes]]]:
        """(cut point, description, {name: bytes}) for every state a power cut could leave."""
        for cut in range(len(self.ops) + 1):
            durable, pending = self._split(cut)
            for count in range(len(pending) + 1):
                included = durable | set(pending[:count])
                yield (
                    cut,
                    f"cut {cut}, {count}/{len(pending)} pending",
                    self._build(cut, included, None),
                )
                if count == 0:
                    continue
                last = self.ops[pending[count - 1]]
                if last.kind != "write" or len(last.data) < 2:
                    continue
                size = len(last.data)
                torn = {last.data[:n] for n in {1, size // 2, size - 1}}
                torn |= {last.data[:n] + bytes(size - n) for n in {0, size // 2}}
                for piece in sorted(torn):
                    replacement = (pending[count - 1], piece)
                    yield (
                        cut,
                        f"cut {cut}, {count}/{len(pending)} pending, last write torn to "
                        + repr(piece),
                        self._build(cut, included, replacement),
                    )

    def _split(self, cut: int) -> tuple[set[int], list[int]]:
        durable: set[int] = set()
        unsynced_data: dict[int, list[int]] = {}
        unsynced_dir: list[int] = []
        for index, op in enumerate(self.ops[:cut]):
            if op.is_data_op:
                unsynced_data.setdefault(op.inode, []).append(index)
            elif op.is_dir_op:
                unsynced_dir.append(index)
            elif op.kind == "fsync":
                durable.update(unsynced_data.pop(op.inode, []))
            elif op.kind == "dirsync":
                durable.update(unsynced_dir)
                unsynced_dir = []
        pending = sorted(
            index
            for index, op in enumerate(self.ops[:cut])
            if (op.is_data_op or op.is_dir_op) and index not in durable
        )
        return durable, pending

    def _build(
        self, cut: int, included: set[int], replacement: tuple[int, bytes] | None
    ) -> dict[str, bytes]:
        names = dict(self.initial_names)
        data = {inode: bytearray(raw) for inode, raw in self.initial_data.items()}
        for index in range(cut):
            if index not in included:
                continue
            op = self.ops[index]
            if replacement is not None and replacement[0] == index:
                op = Op("write", inode=op.inode, offset=op.offset, data=replacement[1])
            _apply(names, data, op)
        return {name: bytes(data[inode]) for name, inode in names.items()}


def _apply(names: dict[str, int], data: dict[int, bytearray], op: Op) -> None:
    if op.kind == "create":
        names[op.name] = op.inode
        data.setdefault(op.inode, bytearray())
    elif op.kind == "rename":
        names[op.target] = names.pop(op.name)
    elif op.kind == "unlink":
        names.pop(op.name, None)
    elif op.kind == "write":
        content = data.setdefault(op.inode, bytearray())
        if len(content) < op.offset:
            content.extend(bytes(op.offset - len(content)))
        content[op.offset : op.offset + len(op.data)] = op.data
    elif op.kind == "truncate":
        content = data.setdefault(op.inode, bytearray())
        if len(content) > op.size:
            del content[op.size :]
        else:
            content.extend(bytes(op.size - len(content)))


class RecordingOs:
    """The ``os`` module as persistedstate.storage sees it, logging into an FsModel."""

    def __init__(self, model: FsModel) -> None:
        self._model = model
        self._dir = os.path.realpath(model.directory)
        self._fds: dict[int, dict[str, Any]] = {}  # fd -> inode, append, position / dir

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _name(self, path: Any) -> str | None:
        full = os.path.realpath(os.fspath(path))
        if os.path.dirname(full) == self._dir:
            return os.path.basename(full)
        return None

    def open(self, path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        name = self._name(path)
        existed = name is not None and name in self._model.names
        fd = os.open(path, flags, mode, **kwargs)
        if os.path.realpath(os.fspath(path)) == self._dir:
            self._fds[fd] = {"dir": True}
            return fd
        if name is None:
            return fd
        if not existed:
            assert flags & os.O_CREAT
            inode = self._model._new_inode()
            self._model.log(Op("create", inode=inode, name=name))
        inode = self._model.names[name]
        if flags & os.O_TRUNC:
            self._model.log(Op("truncate", inode=inode, size=0))
        self._fds[fd] = {"inode": inode, "append": bool(flags & os.O_APPEND), "pos": 0}
        return fd

    def write(self, fd: int, data: Any) -> int:
        written = os.write(fd, data)
        info = self._fds.get(fd)
        if info is not None and "inode" in info:
            inode = info["inode"]
            offset = len(self._model.data[inode]) if info["append"] else info["pos"]
            self._model.log(Op("write", inode=inode, offset=offset, data=bytes(data[:written])))
            info["pos"] = offset + written
        return written

    def read(self, fd: int, size: int) -> bytes:
        chunk = os.read(fd, size)
        info = self._fds.get(fd)
        if info is not None and "inode" in info:
            info["pos"] += len(chunk)
        return chunk

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)
        info = self._fds.get(fd)
        if info is not None and "inode" in info:
            self._model.log(Op("truncate", inode=info["inode"], size=size))

    def fsync(self, fd: int) -> None:
        os.fsync(fd)
        info = self._fds.get(fd)
        if info is None:
            return
        if info.get("dir"):
            self._model.log(Op("dirsync"))
        else:
            self._model.log(Op("fsync", inode=info["inode"]))

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)
        info = self._fds.get(fd)
        if info is not None and "inode" in info:
            self._model.log(Op("fsync", inode=info["inode"]))

    def close(self, fd: int) -> None:
        self._fds.pop(fd, None)
        os.close(fd)

    def replace(self, source: Any, target: Any) -> None:
        os.replace(source, target)
        src, dst = self._name(source), self._name(target)
        if src is not None and dst is not None:
            self._model.log(Op("rename", name=src, target=dst))

    rename = replace

    def unlink(self, path: Any) -> None:
        os.unlink(path)
        name = self._name(path)
        if name is not None and name in self._model.names:
            self._model.log(Op("unlink", name=name))


class DirectorySyncFailsOnce(RecordingOs):
    """A RecordingOs whose ``fail_at``-th sync of the directory fails (EIO) and syncs nothing."""

    def __init__(self, model: FsModel, fail_at: int) -> None:
        super().__init__(model)
        self.fail_at = fail_at
        self.directory_syncs = 0
        self.failed_after: int | None = None  # operations logged when it failed

    def fsync(self, fd: int) -> None:
        if self._fds.get(fd, {}).get("dir"):
            self.directory_syncs += 1
            if self.directory_syncs == self.fail_at:
                self.failed_after = len(self._model.ops)
                raise OSError(errno.EIO, "injected EIO in the directory sync")
        super().fsync(fd)


# -- workloads -----------------------------------------------------------------------------


@dataclass
class Recording:
    model: FsModel
    # (operations logged when the call returned, steps done, made with fsync=True)
    acks: list[tuple[int, int, bool]]
    expected: list[dict[Any, Any]]  # S_0, S_1, ...
    name: str
    created_by_workload: bool
    io: RecordingOs


def _record(
    directory: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    sessions: list[tuple[bool, int]],
    initial: dict[Any, Any] | None = None,
    recording_os: Callable[[FsModel], RecordingOs] = RecordingOs,
) -> Recording:
    """Run the workload on ``directory/state.yaml`` under a RecordingOs.

    Each session, given as (fsync, steps), opens the file, makes its steps (with a
    ``compact()`` half-way) and closes it; the steps go on from one session to the next.
    """
    path = directory / "state.yaml"
    model = FsModel.of_directory(directory)
    created = not path.exists()
    total = sum(count for _, count in sessions)
    expected = [copy.deepcopy(initial or {})]
    for k in range(total):
        data = copy.deepcopy(expected[-1])
        workers.apply_step(data, k)
        expected.append(data)
    acks: list[tuple[int, int, bool]] = []
    io = recording_os(model)
    with monkeypatch.context() as patch:
        patch.setattr(persistedstate.storage, "os", io)
        done = 0
        for synced, count in sessions:
            state = PersistedState.open(
                path, fsync=synced, compact_min_bytes=200, compact_ratio=0.25
            )
            acks.append((len(model.ops), done, False))  # (opening changes nothing)
            for k in range(done, done + count):
                workers.apply_step(state, k, state.transaction)
                acks.append((len(model.ops), k + 1, synced))
                if k - done == count // 2:
                    state.compact()
                    acks.append((len(model.ops), k + 1, synced))
            done += count
            state.close()
            acks.append((len(model.ops), done, synced))
    real = {
        entry.name: entry.read_bytes()
        for entry in directory.iterdir()
        if entry.is_file() and not entry.name.endswith(".lock")
    }
    modelled = {name: bytes(model.data[inode]) for name, inode in model.names.items()}
    assert modelled == real, "the I/O model does not reproduce the real directory"
    assert workers.same(load(path), expected[-1])
    return Recording(model, acks, expected, path.name, created, io)


def _open_result(scratch: Path, name: str, content: bytes | None) -> Any:
    """What opening this content gives: ("missing",) | ("ok", data) | ("error", text)."""
    for entry in scratch.iterdir():
        entry.unlink()
    path = scratch / name
    if content is None:
        return ("missing",)
    path.write_bytes(content)
    try:
        data = load(path)
    except Exception as error:
        return ("error", f"load() raised {error!r}")
    if path.read_bytes() != content:
        return ("error", "load() changed the file")
    try:
        state = PersistedState.open(path)
    except Exception as error:
        return ("error", f"PersistedState.open raised {error!r}")
    try:
        if not workers.same(state.copy(), data):
            return ("error", f"open() gives {state.copy()!r}, load() gave {data!r}")
    finally:
        state.close()
    again = load(path)
    if not workers.same(again, data):
        return ("error", f"after open()+close() the file holds {again!r}, not {data!r}")
    return ("ok", data)


def _explore(recording: Recording, scratch: Path) -> tuple[int, int, list[str]]:
    """Check every crash state; (states explored, distinct files, failures)."""
    cache: dict[bytes, Any] = {}
    failures: list[str] = []
    explored = 0
    expected = recording.expected
    for cut, description, files in recording.model.crash_states():
        explored += 1
        content = files.get(recording.name)
        key = b"-" if content is None else b"+" + hashlib.sha256(content).digest()
        if key not in cache:
            result = _open_result(scratch, recording.name, content)
            index = None
            if result[0] == "ok":
                index = next(
                    (j for j, data in enumerate(expected) if workers.same(result[1], data)), None
                )
            cache[key] = (result, index)
        result, index = cache[key]
        acked = max((steps for done, steps, _ in recording.acks if done <= cut), default=None)
        synced = max(
            (steps for done, steps, fsync in recording.acks if done <= cut and fsync),
            default=None,
        )
        problem = None
        if result[0] == "error":
            problem = result[1]
        elif result[0] == "missing":
            if acked is not None or not recording.created_by_workload:
                problem = "the state file is missing"
        elif index is None:
            problem = f"the file holds a state that no prefix of the changes gives: {result[1]!r}"
        elif acked is not None and index > acked + 1:
            problem = f"the file holds S_{index}, but only {acked} steps were acknowledged"
        elif synced is not None and index < synced:
            problem = (
                f"acknowledged changes lost: S_{synced} acknowledged with fsync, "
                f"file holds S_{index}"
            )
        if problem is not None and len(failures) < 10:
            shown = content if content is None or len(content) < 600 else content[-600:]
            failures.append(f"{description} (acknowledged: {acked}): {problem}\n  file: {shown!r}")
    return explored, len(cache), failures


def _report(record_property: Callable[[str, object], None], label: str, numbers: Any) -> None:
    explored, distinct, cuts = numbers
    line = (
        f"power cut [{label}]: {explored} crash states explored "
        f"({distinct} distinct files) over {cuts} cut points"
    )
    print("\n" + line)
    record_property(f"powercut_states_{label}", explored)


WORKLOADS = [
    pytest.param(True, None, id="fsync-new-file"),
    pytest.param(False, None, id="default-new-file"),
    pytest.param(True, "torn", id="fsync-torn-existing"),
    pytest.param(False, "torn", id="default-torn-existing"),
    pytest.param(True, "26.1", id="fsync-26.1-journal"),
    pytest.param(False, "26.1", id="default-26.1-journal"),
]


@pytest.mark.parametrize(("fsync", "start"), WORKLOADS)
def test_every_power_cut_state_is_readable_and_keeps_what_it_must(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
    fsync: bool,
    start: str | None,
) -> None:
    work = tmp_path / "work"
    scratch = tmp_path / "scratch"
    work.mkdir()
    scratch.mkdir()
    initial: dict[Any, Any] | None = None
    if start == "torn":
        # A file left by an earlier crash: snapshot, journal, a torn last record.
        initial = {"count": 7, "seen": ["x"]}
        (work / "state.yaml").write_bytes(
            b'count: 6\nseen: []\n--- ["set", [], "count", 7]\n'
            b'--- ["insert", ["seen"], 0, "x"]\n--- ["insert", ["se'
        )
    elif start == "26.1":
        initial = json.loads(fixture_26_1("unvacuumed-journal.expected.json").read_text("utf-8"))
        (work / "state.yaml").write_bytes(fixture_26_1("unvacuumed-journal.yaml").read_bytes())
    recording = _record(work, monkeypatch, sessions=[(fsync, 40)], initial=initial)
    explored, distinct, failures = _explore(recording, scratch)
    _report(
        record_property,
        f"fsync={fsync}, start={start or 'new'}",
        (explored, distinct, len(recording.model.ops) + 1),
    )
    assert explored > len(recording.model.ops)
    assert not failures, f"{len(failures)}+ bad crash states:\n" + "\n".join(failures)


def test_a_change_made_with_fsync_in_a_later_session_survives_a_power_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, object], None]
) -> None:
    """Two sessions: open, change, ``close()``; open with ``fsync=True``, change. The second
    session's changes are synced into the file the first one's last compaction renamed into
    place, so they survive only if that rename is durable too (a power cut must not bring the
    old name back)."""
    work = tmp_path / "work"
    scratch = tmp_path / "scratch"
    work.mkdir()
    scratch.mkdir()
    recording = _record(work, monkeypatch, sessions=[(False, 12), (True, 12)])
    explored, distinct, failures = _explore(recording, scratch)
    _report(
        record_property,
        "two sessions, then fsync=True",
        (explored, distinct, len(recording.model.ops) + 1),
    )
    assert explored > len(recording.model.ops)
    assert not failures, f"{len(failures)}+ bad crash states:\n" + "\n".join(failures)


def test_with_fsync_a_failed_directory_sync_is_made_up_for_before_the_next_change_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, object], None]
) -> None:
    """The directory sync after an automatic compaction's rename fails (EIO): the compaction
    fails quietly (the rename is done, the change that started it is synced in both files) and
    the state goes on appending to the renamed file. With ``fsync=True`` the next change must
    make that rename durable before it returns, or a power cut loses it with the old name."""
    work = tmp_path / "work"
    scratch = tmp_path / "scratch"
    work.mkdir()
    scratch.mkdir()
    recording = _record(
        work,
        monkeypatch,
        sessions=[(True, 12)],
        recording_os=lambda model: DirectorySyncFailsOnce(model, fail_at=2),
    )
    failed_after = getattr(recording.io, "failed_after", None)
    assert failed_after is not None, "no directory sync failed"
    renames = [op for op in recording.model.ops[:failed_after] if op.kind == "rename"]
    assert len(renames) == 2, "the failed sync is not the one after a compaction's rename"
    explored, distinct, failures = _explore(recording, scratch)
    _report(
        record_property,
        "fsync=True, a directory sync fails",
        (explored, distinct, len(recording.model.ops) + 1),
    )
    assert not failures, f"{len(failures)}+ bad crash states:\n" + "\n".join(failures)


def test_the_model_sees_unsynced_appends_as_losable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sanity check of the model: without fsync, a crash state that lost the last change exists."""
    work = tmp_path / "work"
    work.mkdir()
    recording = _record(work, monkeypatch, sessions=[(False, 3)])
    cut = recording.acks[-2][0]  # after the last change returned, before close()
    states = {
        files.get(recording.name)
        for point, _, files in recording.model.crash_states()
        if point == cut
    }
    full = recording.model._build(cut, set(range(cut)), None).get(recording.name)
    assert full in states
    assert any(content != full for content in states)  # the unsynced appends may be lost
