"""SIP message parsing and serialization (RFC 3261 7, 18.3, 20): headers, framing, make_response."""

from __future__ import annotations

import pytest

from protocols.sip.message import (
    CSeq,
    Headers,
    NameAddress,
    Request,
    Response,
    SipParseError,
    SipUri,
    StreamReader,
    Via,
    make_response,
    parse_message,
    serialize,
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/TCP proxy.example.com:5061;branch=z9hG4bKnashds8;received=192.0.2.1\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob" <sip:bob@biloxi.example.com>\r\n'
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Timestamp: 54\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def parse_request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def test_request_line_and_body() -> None:
    request = parse_request(INVITE)
    assert (request.method, request.uri, request.version) == (
        "INVITE",
        "sip:bob@biloxi.example.com",
        "SIP/2.0",
    )
    assert request.body == b"v=0\n"


def test_status_line() -> None:
    response = parse_message(serialize(make_response(parse_request(INVITE), 180)))
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (180, "Ringing")


def test_header_names_are_case_insensitive_and_compact_forms_expand() -> None:
    data = INVITE.replace(b"Call-ID:", b"i:").replace(b"Contact:", b"M:").replace(b"CSeq", b"cseq")
    request = parse_request(data)
    assert request.headers.get("call-id") == "a84b4c76e66710@pc33.atlanta.example.com"
    assert request.headers.get("CALL-ID") == request.headers.get("i")
    assert request.headers.get("Contact") == "<sip:alice@pc33.atlanta.example.com>"
    names = [name for name, _ in request.headers.items()]
    assert "Call-ID" in names and "Contact" in names and "CSeq" in names
    assert b"\r\nCall-ID: " in serialize(request)


def test_folded_header_is_one_value() -> None:
    data = INVITE.replace(b"Subject", b"").replace(
        b"Timestamp: 54\r\n", b"Subject: I know\r\n   you're there,\r\n\tpick up\r\n"
    )
    assert parse_request(data).headers.get("Subject") == "I know you're there, pick up"


def test_repeated_and_comma_separated_values_both_list() -> None:
    data = INVITE.replace(
        b"Timestamp: 54\r\n",
        b'Route: <sip:p1.example.com;lr>, "a, b" <sip:p2.example.com;lr>\r\nRoute: <sip:p3.example.com;lr>\r\n',
    )
    routes = parse_request(data).headers.get_all("Route")
    assert routes == [
        "<sip:p1.example.com;lr>",
        '"a, b" <sip:p2.example.com;lr>',
        "<sip:p3.example.com;lr>",
    ]
    assert NameAddress.parse(routes[1]).display_name == "a, b"


def test_non_list_headers_are_not_split_on_commas() -> None:
    data = INVITE.replace(b"Timestamp: 54\r\n", b"Subject: one, two\r\n")
    assert parse_request(data).headers.get_all("Subject") == ["one, two"]


def test_datagram_body_longer_than_content_length_is_truncated() -> None:
    assert parse_request(INVITE + b"trailing junk").body == b"v=0\n"


def test_datagram_body_shorter_than_content_length_is_400() -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(INVITE[:-2])
    assert caught.value.status == 400


def test_datagram_without_content_length_takes_the_rest_as_body() -> None:
    data = INVITE.replace(b"Content-Length: 4\r\n", b"")
    assert parse_request(data).body == b"v=0\n"


@pytest.mark.parametrize("header", [b"Via", b"To", b"From", b"Call-ID", b"CSeq"])
def test_missing_mandatory_header_is_400(header: bytes) -> None:
    lines = [line for line in INVITE.split(b"\r\n") if not line.startswith(header + b":")]
    with pytest.raises(SipParseError) as caught:
        parse_message(b"\r\n".join(lines))
    assert caught.value.status == 400


def test_missing_max_forwards_is_tolerated() -> None:
    request = parse_request(INVITE.replace(b"Max-Forwards: 70\r\n", b""))
    assert "Max-Forwards" not in request.headers


def test_unsupported_version_is_505() -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(INVITE.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    assert (caught.value.status, caught.value.reason) == (505, "Version Not Supported")


def test_leading_crlf_before_the_start_line_is_ignored() -> None:
    assert parse_request(b"\r\n\r\n" + INVITE).method == "INVITE"


def test_serialize_round_trip_and_content_length_from_body() -> None:
    request = parse_request(INVITE)
    request.body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    data = serialize(request)
    assert f"Content-Length: {len(request.body)}\r\n".encode() in data
    again = parse_request(data)
    assert again.body == request.body
    assert again.headers.get("Content-Length") == str(len(request.body))
    assert serialize(again) == data


def test_serialize_adds_content_length_when_missing() -> None:
    request = Request("OPTIONS", "sip:bob@example.com", Headers([("Call-ID", "x")]))
    assert (
        serialize(request)
        == b"OPTIONS sip:bob@example.com SIP/2.0\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
    )


def test_headers_multimap_operations() -> None:
    headers = Headers([("Via", "a"), ("To", "t"), ("v", "b")])
    assert headers.get_all("VIA") == ["a", "b"]
    headers.set("Via", "c")
    assert headers.items() == [("Via", "c"), ("To", "t")]
    copy = headers.copy()
    copy.remove("via")
    assert headers.get("Via") == "c" and copy.get("Via") is None
    headers.add("x-custom", "1")
    assert headers.get("X-CUSTOM") == "1"
    with pytest.raises(ValueError):
        headers.add("Subject", "injected\r\nVia: evil")


def test_via_parse_and_properties() -> None:
    via = Via.parse("SIP/2.0/udp 192.0.2.4:5062;branch=z9hG4bK1;rport;received=198.51.100.7")
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.4", 5062)
    assert (via.branch, via.rport, via.received) == ("z9hG4bK1", "", "198.51.100.7")
    assert str(via) == "SIP/2.0/UDP 192.0.2.4:5062;branch=z9hG4bK1;rport;received=198.51.100.7"
    assert Via.parse("SIP/2.0/TCP h;rport=5066").rport == "5066"
    assert Via.parse("SIP/2.0/TCP h").rport is None


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0 host",
        "SIP/3.0/UDP host",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host port",
        "SIP/2.0/UDP host;;",
    ],
)
def test_malformed_via_is_400(value: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(value)


def test_name_address_round_trip() -> None:
    address = NameAddress.parse(
        '"Alice \\"A\\"" <sip:alice@example.com;transport=tcp>;tag=88;expires=60'
    )
    assert address.display_name == 'Alice "A"'
    assert address.tag == "88"
    assert address.uri.params == {"transport": "tcp"}
    assert NameAddress.parse(str(address)) == address


def test_name_address_addr_spec_params_belong_to_the_header() -> None:
    address = NameAddress.parse("sip:alice@example.com;tag=1")
    assert (address.display_name, address.tag, address.uri.params) == (None, "1", {})


def test_cseq_parse_and_limits() -> None:
    assert CSeq.parse("  0042   ACK ") == CSeq(42, "ACK")
    assert str(CSeq(1, "INVITE")) == "1 INVITE"
    with pytest.raises(SipParseError):
        CSeq.parse(str(2**31) + " INVITE")


def test_make_response_copies_dialog_headers_and_adds_to_tag() -> None:
    request = parse_request(INVITE)
    response = make_response(request, 200, to_tag="as83kd")
    assert (response.status, response.reason) == (200, "OK")
    assert [name for name, _ in response.headers.items()] == [
        "Via",
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
    ]
    assert response.headers.get_all("Via") == request.headers.get_all("Via")
    assert NameAddress.parse(response.headers.get("To") or "").tag == "as83kd"
    assert response.headers.get("CSeq") == "314159 INVITE"


def test_make_response_keeps_an_existing_to_tag_and_echoes_timestamp_on_100() -> None:
    request = parse_request(
        INVITE.replace(
            b"<sip:bob@biloxi.example.com>\r\n", b"<sip:bob@biloxi.example.com>;tag=x\r\n"
        )
    )
    response = make_response(request, 100, to_tag="new")
    assert NameAddress.parse(response.headers.get("To") or "").tag == "x"
    assert response.headers.get("Timestamp") == "54"
    assert make_response(request, 486).headers.get("Timestamp") is None
    assert make_response(request, 486, "Busy Here Now").reason == "Busy Here Now"


def test_stream_reader_frames_messages_split_anywhere() -> None:
    data = INVITE + b"\r\n\r\n" + INVITE + b"\r\n"
    for split in (1, 7, 100, len(INVITE) - 1, len(INVITE) + 1, len(INVITE) + 3):
        reader = StreamReader()
        messages = reader.feed(data[:split]) + reader.feed(data[split:])
        assert [message.body for message in messages] == [b"v=0\n", b"v=0\n"]


def test_stream_reader_byte_by_byte() -> None:
    reader = StreamReader()
    messages = []
    for index in range(len(INVITE)):
        messages += reader.feed(INVITE[index : index + 1])
    assert len(messages) == 1
    assert messages[0] == parse_message(INVITE)


def test_stream_reader_ignores_keepalives() -> None:
    reader = StreamReader()
    assert reader.feed(b"\r\n\r\n") == []
    assert reader.feed(b"\r\n") == []
    assert len(reader.feed(INVITE)) == 1


def test_stream_reader_requires_content_length() -> None:
    with pytest.raises(SipParseError):
        StreamReader().feed(INVITE.replace(b"Content-Length: 4\r\n", b""))


def test_stream_reader_refuses_an_endless_header_section() -> None:
    reader = StreamReader(max_head_size=1024)
    reader.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    with pytest.raises(SipParseError):
        for _ in range(100):
            reader.feed(b"X-Filler: " + b"a" * 50 + b"\r\n")


def test_a_message_with_a_thousand_header_fields_parses() -> None:
    # its parse time against size (linear) is measured in bench/sip_parse.py, not asserted here
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (index, b"a" * 40) for index in range(1000))
    message = parse_request(INVITE.replace(b"Timestamp: 54\r\n", filler))
    assert message.headers.get("X-Filler-999") == "a" * 40


def test_request_uri_parses_as_sip_uri() -> None:
    assert SipUri.parse(parse_request(INVITE).uri).user == "bob"


def test_display_name_control_characters_are_sent_as_quoted_pairs() -> None:
    address = NameAddress("BEL:\x07 NUL:\x00", SipUri.parse("sip:a@example.com"), {})
    assert str(address) == '"BEL:\\\x07 NUL:\\\x00" <sip:a@example.com>'
    assert NameAddress.parse(str(address)) == address


def test_serialize_refuses_cr_lf_in_the_start_line() -> None:
    response = Response(200, "OK\r\nVia: SIP/2.0/UDP evil", Headers())
    with pytest.raises(ValueError):
        serialize(response)
