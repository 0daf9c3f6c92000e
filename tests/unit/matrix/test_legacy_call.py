"""protocols/matrix/legacy_call.py's pure parts: which ghosts are legacy-call targets, and how
long an invite may still ring."""

from __future__ import annotations

import pytest

from protocols.matrix.legacy_call import (
    DEFAULT_RING_MS,
    MAX_RING_MS,
    LegacyTarget,
    legacy_target,
    ring_seconds,
)


def target(user_id: str) -> LegacyTarget | None:
    return legacy_target(user_id, user_prefix="rondpoint_", server_name="hs.test")


def test_room_and_phone_ghosts_name_their_targets() -> None:
    assert target("@rondpoint_room_cabinet-7:hs.test") == LegacyTarget("room", "cabinet-7")
    assert target("@rondpoint_tel_+33612345678:hs.test") == LegacyTarget("tel", "+33612345678")


@pytest.mark.parametrize(
    "user_id",
    [
        "@rondpoint_room_cabinet:other.test",  # another server's user
        "@someone_room_cabinet:hs.test",  # outside our namespace
        "@rondpoint_room_ab:hs.test",  # not a room name here (3 characters at least)
        "@rondpoint_room_=41bc:hs.test",  # escaped characters are never in a room name
        "@rondpoint_tel_0612345678:hs.test",  # not E.164
        "@rondpoint_tel_+0612345678:hs.test",  # E.164 never starts with 0
        "@rondpoint_tel_+3361234567890123:hs.test",  # longer than 15 digits
        "@rondpoint_p__ab_c:hs.test",  # a participant's ghost, not a legacy one
        "@rondpoint:hs.test",
        "not a user id",
    ],
)
def test_anything_else_is_not_a_legacy_target(user_id: str) -> None:
    assert target(user_id) is None


def test_an_invite_rings_for_its_lifetime_less_its_age() -> None:
    assert ring_seconds({"lifetime": 30000}, 10000) == 20.0
    assert ring_seconds({"lifetime": 30000}, 31000) < 0


def test_a_missing_or_absurd_lifetime_rings_the_default_and_never_beyond_the_cap() -> None:
    assert ring_seconds({}, 0) == DEFAULT_RING_MS / 1000
    assert ring_seconds({"lifetime": "60000"}, 0) == DEFAULT_RING_MS / 1000
    assert ring_seconds({"lifetime": True}, 0) == DEFAULT_RING_MS / 1000
    assert ring_seconds({"lifetime": -5}, 0) == DEFAULT_RING_MS / 1000
    assert ring_seconds({"lifetime": 10**12}, 0) == MAX_RING_MS / 1000
