"""RFC 5118 IPv6 torture messages: IPv6 references in Request-URI, Via, Contact and SDP."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.media import sdp
from protocols.sip.message import NameAddress, Request, SipParseError, SipUri, Via, parse_message

TORTURE = Path(__file__).parent / "torture" / "rfc5118"

VALID = [
    "ipv6-good",
    "port-ambiguous",
    "port-unambiguous",
    "via-received-param-with-delim",
    "via-received-param-no-delim",
    "ipv6-in-sdp",
    "mult-ip-in-header",
    "mult-ip-in-sdp",
    "ipv4-mapped-ipv6",
    "ipv6-bug-abnf-3-colons",
    "ipv6-correct-abnf-2-colons",
]
INVALID = ["ipv6-bad"]


def parse_request(name: str) -> Request:
    message = parse_message((TORTURE / f"{name}.dat").read_bytes())
    assert isinstance(message, Request)
    return message


def test_every_rfc5118_message_has_a_fixture_and_a_verdict() -> None:
    assert {path.stem for path in TORTURE.glob("*.dat")} == set(VALID) | set(INVALID)


@pytest.mark.parametrize("name", VALID)
def test_valid_ipv6_message_parses(name: str) -> None:
    request = parse_request(name)
    SipUri.parse(request.uri)
    for via in request.headers.get_all("Via"):
        Via.parse(via)


def test_ipv6_bad_request_uri_without_brackets_is_400() -> None:
    with pytest.raises(SipParseError) as caught:
        parse_request("ipv6-bad")
    assert caught.value.status == 400


def test_ipv6_good_reference_in_request_uri_via_and_contact() -> None:
    request = parse_request("ipv6-good")
    assert SipUri.parse(request.uri).host == "[2001:db8::10]"
    assert Via.parse(request.headers.get("Via") or "").host == "[2001:db8::9:1]"
    contact = NameAddress.parse(request.headers.get("Contact") or "")
    assert (contact.display_name, contact.uri.host) == ("Caller", "[2001:db8::1]")


def test_port_ambiguous_last_group_is_part_of_the_address() -> None:
    uri = SipUri.parse(parse_request("port-ambiguous").uri)
    assert (uri.host, uri.port) == ("[2001:db8::10:5070]", None)


def test_port_unambiguous_port_follows_the_bracket() -> None:
    uri = SipUri.parse(parse_request("port-unambiguous").uri)
    assert (uri.host, uri.port) == ("[2001:db8::10]", 5070)


@pytest.mark.parametrize(
    ("name", "received"),
    [
        ("via-received-param-with-delim", "[2001:db8::9:255]"),
        ("via-received-param-no-delim", "2001:db8::9:255"),
    ],
)
def test_via_received_accepted_with_and_without_brackets(name: str, received: str) -> None:
    via = Via.parse(parse_request(name).headers.get("Via") or "")
    assert via.received == received


def test_mult_ip_in_header_mixed_via_list() -> None:
    vias = [Via.parse(value) for value in parse_request("mult-ip-in-header").headers.get_all("Via")]
    assert [(via.transport, via.host, via.port) for via in vias] == [
        ("UDP", "[2001:db8::9:1]", 6050),
        ("UDP", "192.0.2.1", None),
        ("TCP", "[2001:db8::9:255]", None),
    ]
    assert vias[2].received == "192.0.2.200"


@pytest.mark.parametrize(
    ("name", "connections"),
    [
        ("ipv6-in-sdp", ["IN IP6 2001:db8::20"]),
        ("mult-ip-in-sdp", ["IN IP4 192.0.2.1", "IN IP6 2001:db8::1"]),
        ("ipv4-mapped-ipv6", ["IN IP6 ::ffff:192.0.2.2"]),
    ],
)
def test_sdp_body_with_ipv6_connection_addresses(name: str, connections: list[str]) -> None:
    session = sdp.parse(parse_request(name).body.decode())
    found = [session.connection] if session.connection else []
    found += [media.connection for media in session.media if media.connection]
    assert found == connections


def test_ipv4_mapped_addresses_in_via_and_contact() -> None:
    request = parse_request("ipv4-mapped-ipv6")
    vias = [Via.parse(value) for value in request.headers.get_all("Via")]
    assert [(via.host, via.port) for via in vias] == [
        ("[::ffff:192.0.2.10]", 19823),
        ("[::ffff:192.0.2.2]", None),
    ]
    contact = NameAddress.parse(request.headers.get("Contact") or "")
    assert contact.uri.host == "[::ffff:192.0.2.2]"


@pytest.mark.parametrize(
    ("name", "host"),
    [
        ("ipv6-bug-abnf-3-colons", "[2001:db8:::192.0.2.1]"),
        ("ipv6-correct-abnf-2-colons", "[2001:db8::192.0.2.1]"),
    ],
)
def test_rfc3261_abnf_bug_three_colons_is_tolerated(name: str, host: str) -> None:
    request = parse_request(name)
    assert SipUri.parse(request.uri).host == host
    assert NameAddress.parse(request.headers.get("To") or "").uri.host == host


@pytest.mark.parametrize(
    "uri",
    ["sip:[2001:db8:::1]", "sip:[::::192.0.2.1]", "sip:[2001:db8::1", "sip:[fe80::1%eth0]"],
)
def test_other_malformed_ipv6_references_are_refused(uri: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(uri)
