"""Attribute access on the state: what is a key and what is a Python attribute."""

from __future__ import annotations

from pathlib import Path

import pytest

from persistedstate import PersistedState, load


def test_attribute_helpers_work_for_any_name(tmp_path: Path) -> None:
    state = PersistedState(tmp_path / "s.yaml", present=1)
    assert getattr(state, "", "default") == "default"
    assert getattr(state, "missing", None) is None
    assert hasattr(state, "present") and not hasattr(state, "absent")
    setattr(state, "", 5)  # not an identifier: a plain Python attribute, not a key
    assert "" not in state
    delattr(state, "")
    state.close()
    assert load(tmp_path / "s.yaml") == {"present": 1}


def test_deleting_a_method_name_or_a_missing_key_raises_attribute_error(tmp_path: Path) -> None:
    with PersistedState(tmp_path / "s.yaml") as state:
        state["items"] = 1
        with pytest.raises(AttributeError):
            del state.items  # a method: never the key
        with pytest.raises(AttributeError, match="no key 'nothing'"):
            del state.nothing
        assert state["items"] == 1
