"""SipUri: sip, sips and tel URIs (RFC 3261 19.1, RFC 3966), escapes and IPv6 references."""

from __future__ import annotations

import pytest

from protocols.sip.uri import SipParseError, SipUri


def test_full_sip_uri_parts() -> None:
    uri = SipUri.parse(
        "sip:alice:secret@atlanta.example.com:5061;transport=tcp;lr?subject=hi&priority=urgent"
    )
    assert uri == SipUri(
        "sip",
        "alice",
        "secret",
        "atlanta.example.com",
        5061,
        {"transport": "tcp", "lr": None},
        {"subject": "hi", "priority": "urgent"},
    )
    assert uri.transport == "tcp"


def test_scheme_and_parameter_names_are_case_insensitive() -> None:
    uri = SipUri.parse("SIPS:Bob@Biloxi.example.com;Transport=TLS")
    assert uri.scheme == "sips"
    assert uri.params == {"transport": "TLS"}
    assert uri.user == "Bob"


def test_host_only_uri() -> None:
    uri = SipUri.parse("sip:biloxi.example.com")
    assert (uri.user, uri.host, uri.port) == (None, "biloxi.example.com", None)


def test_escaped_user_is_unescaped_and_escaped_again_on_output() -> None:
    uri = SipUri.parse("sip:%61lice%20smith@example.com")
    assert uri.user == "alice smith"
    assert str(uri) == "sip:alice%20smith@example.com"
    assert SipUri.parse(str(uri)) == uri


def test_ipv6_reference_with_port() -> None:
    uri = SipUri.parse("sip:alice@[2001:db8::1]:5070;transport=udp")
    assert (uri.host, uri.port) == ("[2001:db8::1]", 5070)
    assert str(uri) == "sip:alice@[2001:db8::1]:5070;transport=udp"


def test_bare_ipv6_host_gets_brackets_on_output() -> None:
    assert str(SipUri("sip", None, None, "2001:db8::1", 5060)) == "sip:[2001:db8::1]:5060"


def test_tel_uri_keeps_the_number_in_host() -> None:
    uri = SipUri.parse("tel:+33-1-23-45-67-89;phone-context=example.fr")
    assert (uri.scheme, uri.user, uri.host) == ("tel", None, "+33-1-23-45-67-89")
    assert uri.params == {"phone-context": "example.fr"}
    assert str(uri) == "tel:+33-1-23-45-67-89;phone-context=example.fr"


def test_unknown_scheme_is_416() -> None:
    with pytest.raises(SipParseError) as caught:
        SipUri.parse("http://example.com/")
    assert (caught.value.status, caught.value.reason) == (416, "Unsupported URI Scheme")


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@example.com",
        "sip:alice@",
        "sip:alice@example.com:",
        "sip:alice@example.com:65536",
        "sip:alice@example.com:5o60",
        "sip:alice@exa mple.com",
        "sip:al%zzice@example.com",
        "sip:alice@example.com;;lr",
        "sip:alice@example.com;lr;lr",
        "sip:alice@example.com?",
        "sip:alice@[::1",
        "sip:alice@[::1]x",
        "sip:alice@[not-v6]",
        "sip:al<ice@example.com",
        "tel:",
        "tel:+33 1",
        "example.com",
    ],
)
def test_malformed_uris_raise_sip_parse_error(text: str) -> None:
    with pytest.raises(SipParseError) as caught:
        SipUri.parse(text)
    assert caught.value.status in (400, 416)


def test_escaped_non_utf8_is_refused() -> None:
    with pytest.raises(SipParseError):
        SipUri.parse("sip:%FF@example.com")
