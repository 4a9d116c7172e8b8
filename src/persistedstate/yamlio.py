"""YAML in and out: the snapshot document and the YAML-only journal records.

Uses PyYAML's libyaml bindings (CSafeLoader, CSafeDumper) when PyYAML was built with them and
the pure-Python SafeLoader/SafeDumper otherwise; both read and write the same YAML. Only safe
tags are used, so any YAML reader can load the snapshot.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from . import values
from .errors import CorruptStateError

try:
    from yaml import CSafeDumper as _BaseDumper
    from yaml import CSafeLoader as Loader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeDumper as _BaseDumper  # type: ignore[assignment]
    from yaml import SafeLoader as Loader  # type: ignore[assignment]

# Errors a YAML parser or constructor may raise on bad input (a constructor raises ValueError
# for "2026-13-45", RecursionError for absurdly deep nesting).
_LOAD_ERRORS = (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError)


class FlowError(Exception):
    def __init__(self, problem: str, column: int | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.column = column


class _SnapshotDumper(_BaseDumper):
    """SafeDumper with the choices that make the snapshot exact and pleasant to read."""


def _represent_str(dumper: _SnapshotDumper, value: str) -> yaml.Node:
    # Multi-line text as a literal block; the emitter falls back to quotes when it must.
    style = "|" if "\n" in value.rstrip("\n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_int(dumper: _SnapshotDumper, value: int) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:int", values.int_text(value))


_SnapshotDumper.add_representer(str, _represent_str)
_SnapshotDumper.add_representer(int, _represent_int)


def dump_snapshot(data: dict[Any, Any]) -> bytes:
    """The snapshot document: a block mapping in insertion order, Unicode as is."""
    if not data:
        return b"{}\n"
    text: str = yaml.dump(
        data,
        Dumper=_SnapshotDumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=120,
    )
    return text.encode("utf-8")


def load_snapshot(path: str | os.PathLike[str], raw: bytes) -> dict[Any, Any]:
    """Parse the snapshot document; raises CorruptStateError saying where it is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - raw.rfind(b"\n", 0, error.start)
        raise CorruptStateError(path, "the file is not valid UTF-8", line, column) from None
    try:
        data = yaml.load(text, Loader=Loader)
    except _LOAD_ERRORS as error:
        raise _corrupt(path, error) from None
    if data is None:
        return {}
    if type(data) is not dict:
        raise CorruptStateError(
            path,
            f"the state must be a YAML mapping (key: value lines), found a {type(data).__name__}",
            1,
            1,
        )
    try:
        checked: dict[Any, Any] = values.check_loaded(data)
    except values.UnsupportedValue as error:
        raise CorruptStateError(path, f"{error.message} at key path {error.key_path}") from None
    return checked


def _corrupt(path: str | os.PathLike[str], error: BaseException) -> CorruptStateError:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        problem = " ".join(part for part in (error.context, error.problem) if part)
        return CorruptStateError(path, f"invalid YAML: {problem}", mark.line + 1, mark.column + 1)
    return CorruptStateError(path, f"invalid YAML: {error}")


def load_flow(content: bytes) -> Any:
    """Parse one YAML-only journal record (raises FlowError)."""
    try:
        return yaml.load(content, Loader=Loader)
    except _LOAD_ERRORS as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise FlowError(problem, mark.column + 1 if mark is not None else None) from None
