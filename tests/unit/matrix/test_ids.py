"""Matrix ids of the bot and ghosts: the spec's reversible localpart mapping, our namespace, and
LiveKit identities of Matrix devices."""

from __future__ import annotations

import pytest

from protocols.matrix.ids import (
    escape,
    ghost_participant_id,
    ghost_user_id,
    is_ours,
    livekit_identity,
    room_ghost_user_id,
    split_identity,
    tel_ghost_user_id,
    unescape,
)

OURS = {"sender_localpart": "rondpoint", "user_prefix": "rondpoint_", "server_name": "hs.test"}


def test_a_participant_id_maps_to_lowercase_localpart_characters() -> None:
    assert escape("p_AbC-12_xyz") == "p___ab_c-12__xyz"
    assert escape("é ok") == "=c3=a9=20ok"
    assert escape("a=b") == "a=3db"


@pytest.mark.parametrize("text", ["p_AbC-12_xyz", "ZZ__", "a=b/c.d", "é日本 !", ""])
def test_the_mapping_is_reversible(text: str) -> None:
    assert unescape(escape(text)) == text


@pytest.mark.parametrize("localpart", ["_", "=zz", "A", "a b", "=c3"])
def test_what_escape_cannot_make_is_refused(localpart: str) -> None:
    with pytest.raises(ValueError):
        unescape(localpart)


def test_ghosts_of_participants_phones_and_rooms() -> None:
    assert ghost_user_id("rondpoint_", "p_Ab", "hs.test") == "@rondpoint_p___ab:hs.test"
    assert tel_ghost_user_id("rondpoint_", "+33612345678", "hs.test") == (
        "@rondpoint_tel_+33612345678:hs.test"
    )
    assert room_ghost_user_id("rondpoint_", "Demo", "hs.test") == "@rondpoint_room__demo:hs.test"


def test_the_ghost_gives_back_its_participant() -> None:
    user = ghost_user_id("rondpoint_", "p_AbC-12_xyz", "hs.test")
    assert ghost_participant_id(user, user_prefix="rondpoint_", server_name="hs.test") == (
        "p_AbC-12_xyz"
    )
    assert (
        ghost_participant_id("@anna:hs.test", user_prefix="rondpoint_", server_name="hs.test")
        is None
    )
    assert ghost_participant_id(user, user_prefix="rondpoint_", server_name="other.test") is None


@pytest.mark.parametrize(
    ("user_id", "ours"),
    [
        ("@rondpoint:hs.test", True),
        ("@rondpoint_p__x:hs.test", True),
        ("@rondpoint_p__x:other.test", False),
        ("@anna:hs.test", False),
        ("@rondpointer:hs.test", False),
        ("rondpoint_x:hs.test", False),
    ],
)
def test_is_ours(user_id: str, ours: bool) -> None:
    assert is_ours(user_id, **OURS) is ours


def test_element_call_identities_split_on_the_last_colon() -> None:
    identity = livekit_identity("@anna:hs.test", "ABCDEF")
    assert identity == "@anna:hs.test:ABCDEF"
    assert split_identity(identity) == ("@anna:hs.test", "ABCDEF")
    assert split_identity("@anna:hs.test:8448:DEV") == ("@anna:hs.test:8448", "DEV")
    assert split_identity("rondpoint-p_1") is None
    assert split_identity("@anna:hs.test:") is None
