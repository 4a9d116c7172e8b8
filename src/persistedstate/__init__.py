"""persistedstate: a program's small state in one human-editable YAML file.

Every attribute, dict and list change is on disk when the call returns, so a script can be
killed at any point and carry on where it stopped::

    from persistedstate import PersistedState

    state = PersistedState("job.state", last_id=0)
    state.last_id += 1
"""

from .errors import CorruptStateError, PersistedStateError, StateLockedError
from .state import PersistedState, load

__all__ = [
    "CorruptStateError",
    "PersistedState",
    "PersistedStateError",
    "StateLockedError",
    "load",
]
