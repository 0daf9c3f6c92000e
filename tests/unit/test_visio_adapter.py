"""protocols/visio: targets, and what Visio is told about phone callers."""

import pytest

from gateway.rooms.model import Participant
from protocols.visio.adapter import visio_room
from protocols.visio.bridge import display_name, phone_number

UUID = "0b4c8f2e-5a1d-4c3e-9f00-3f6c2a1b9d77"


def test_visio_targets_are_normalised_to_the_lowercase_uuid() -> None:
    assert visio_room(f"visio:{UUID.upper()}") == UUID
    assert visio_room(f"  VISIO: {UUID} ") == UUID


@pytest.mark.parametrize(
    "target", ["visio:", "visio:salle-1", "matrix:!a:b", "visio", f"visio:{UUID}x", ""]
)
def test_anything_else_is_refused_with_a_sentence(target: str) -> None:
    with pytest.raises(ValueError, match="UUID"):
        visio_room(target)


def test_phone_numbers_are_shown_in_visio_as_masked_here() -> None:
    masked = Participant("PA_1", "Phone ••• 42", origin="sip", origin_address="Phone ••• 42")
    assert phone_number(masked) == "••• 42"
    clear = Participant("PA_2", "Phone 0140506042", origin="sip", origin_address="0140506042")
    assert phone_number(clear) == "0140506042"
    unknown = Participant("PA_3", "Phone", origin="sip", origin_address="")
    assert phone_number(unknown) == "•••"


def test_visio_names_are_shown_printable_and_at_most_64_characters() -> None:
    assert display_name("Alice\x00 Martin\n", "sub") == "Alice Martin"
    assert display_name("É" * 100, "sub") == "É" * 64
    assert display_name(" \t", "oidc-sub-1") == "oidc-sub-1"
    assert display_name("", "") == "Visio"
