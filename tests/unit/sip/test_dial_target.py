"""Dial targets (protocols/sip/uri.parse_dial_target): only the URI reaches the INVITE."""

from __future__ import annotations

import pytest

from protocols.sip.uri import SipParseError, SipUri, parse_dial_target


@pytest.mark.parametrize(
    ("typed", "number"),
    [
        ("tel:+33140506070", "+33140506070"),
        ("+33 1 40 50 60 70", "+33140506070"),
        ("01.40.50.60.70", "0140506070"),
        ("tel:+1-(202)-555-0100", "+12025550100"),
    ],
)
def test_a_number_keeps_its_digits_only(typed: str, number: str) -> None:
    assert parse_dial_target(typed) == SipUri("tel", None, None, number)


def test_a_sip_uri_keeps_transport_and_user_parameters() -> None:
    uri = parse_dial_target(" sip:alice@pbx.example.org;transport=tcp ")
    assert (uri.scheme, uri.user, uri.host, uri.transport) == (
        "sip",
        "alice",
        "pbx.example.org",
        "tcp",
    )
    assert str(parse_dial_target("sips:bob@[2001:db8::1]:5061")) == "sips:bob@[2001:db8::1]:5061"


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("tel:+33612345678\r\nX-Evil: 1", "control characters"),
        ("sip:alice@example.org\nVia: x", "control characters"),
        ("sip:bob%0D%0AX-Evil@example.org", "control characters"),
        ("tel:+33612345678;user=phone>;X=1", "parameters"),
        ("tel:+33899;phone-context=example.org", "parameters"),
        ("+33 6 12 ab", "digits"),
        ("tel:" + "1" * 33, "digits"),
        ("٠٦١٢٣٤٥٦٧٨", "non-ASCII"),
        ("sip:alice@example.org?Subject=hi", "headers"),
        ("sip:alice:secret@example.org", "password"),
        ("sip:alice@example.org;maddr=192.0.2.1", "parameter"),
        ("sip:alice@example.org;transport=sctp", "transport"),
        ("mailto:alice@example.org", "not a sip:"),
        ("sip:alice@exa mple.org", "invalid character in host"),
        ("", "1 to 256"),
    ],
)
def test_a_target_that_could_steer_the_request_is_refused(typed: str, reason: str) -> None:
    with pytest.raises(SipParseError) as refused:
        parse_dial_target(typed)
    assert reason in str(refused.value)
    assert "Evil" not in str(refused.value) and "secret" not in str(refused.value)
