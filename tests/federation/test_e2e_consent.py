"""Consent: a gateway links only to partners that allow-listed it. Linking to one that has not
(at all, or not for that room) shows the link ``refused`` with the partner's reason, in the admin
API and in ``rondpoint room show``, and nothing appears on the partner."""

from __future__ import annotations

import secrets

import pytest

from tests.federation.harness import PartnerGateway, Partners, target

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

GATEWAYS = ("fr", "de", "be")


def assert_refused_everywhere(
    partners: Partners, a: PartnerGateway, room: str, b: PartnerGateway, b_room: str, reason: str
) -> None:
    """``a`` shows its link refused, with ``reason`` in the detail; ``b`` shows nothing."""
    status = partners.wait_link_state(a, room, b, b_room, "refused")
    detail = status.get("detail", "")
    assert reason in detail, status

    shown = a.cli("room", "show", room)
    assert shown.returncode == 0, shown.stderr
    [line] = [line for line in shown.stdout.splitlines() if target(b, b_room) in line]
    assert "refused" in line and detail in line, shown.stdout
    assert a.admin_token not in shown.stdout + shown.stderr

    # Nothing on the partner: no link, nobody, and the refusal named no secret.
    assert b.room_show(b_room)["links"] == []
    assert b.participants(b_room) == []
    assert a.admin_token not in detail and b.admin_token not in detail


def test_a_partner_that_did_not_add_us_refuses_the_link(partners: Partners) -> None:
    fr, be = partners["fr"], partners["be"]
    room = f"consent-{secrets.token_hex(3)}"
    fr.create_room(room)
    be.create_room(room)
    partners.peer_add(fr, be)  # fr trusts be; be never added fr
    partners.link(fr, room, be, room)
    assert_refused_everywhere(partners, fr, room, be, room, "not a peer of this server")


def test_a_partner_that_allowed_us_another_room_only_refuses_this_one(partners: Partners) -> None:
    fr, de = partners["fr"], partners["de"]
    allowed, other = f"salon-{secrets.token_hex(3)}", f"cuisine-{secrets.token_hex(3)}"
    for room in (allowed, other):
        fr.create_room(room)
        de.create_room(room)
    partners.peer_add(fr, de)
    partners.peer_add(de, fr, rooms=[allowed])
    partners.link(fr, other, de, other)
    assert_refused_everywhere(partners, fr, other, de, other, "not allowed")

    # The allowed room links.
    partners.link_connected(fr, allowed, de, allowed)
