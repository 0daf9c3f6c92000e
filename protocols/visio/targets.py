"""``visio:`` link targets: a Visio room is named by its UUID, the LiveKit room name.

Light to import (no bridge, no LiveKit client): the plugin checks targets in configuration files
with it before the bridge runs.
"""

from __future__ import annotations

import uuid

SCHEME = "visio"


def visio_room(target: str) -> str:
    """The canonical UUID of a `visio:UUID` target; ValueError with a sentence otherwise."""
    scheme, _, rest = target.strip().partition(":")
    if scheme.lower() != SCHEME:
        raise ValueError(f"a Visio link looks like visio:ROOM-UUID, not {target[:80]!r}")
    try:
        return str(uuid.UUID(rest.strip()))
    except ValueError:
        raise ValueError(
            "a Visio room is named by its UUID (as in its address), e.g. "
            "visio:0b4c8f2e-5a1d-4c3e-9f00-3f6c2a1b9d77"
        ) from None


def normalize_target(target: str) -> str:
    """The canonical ``visio:UUID`` (lowercase UUID); ValueError with a sentence otherwise."""
    return f"{SCHEME}:{visio_room(target)}"
