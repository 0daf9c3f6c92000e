"""Property-based fuzzing of the SIP message parser, SipUri and the SDP parser SIP relies on."""

from __future__ import annotations

import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.media import sdp
from protocols.sip.message import (
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

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TORTURE = Path(__file__).parent / "torture"
SEEDS = [path.read_bytes() for path in sorted(TORTURE.glob("**/*.dat"))]

# Bytes that sit on the parser's decision points.
INTERESTING = [
    b"\r\n",
    b"\r\n ",
    b"\r\n\r\n",
    b":",
    b";",
    b",",
    b'"',
    b"\\",
    b"<",
    b">",
    b"[",
    b"]",
    b"@",
    b"%",
    b"%0",
    b"=",
    b"?",
    b" ",
    b"\x00",
    b"\xff",
    b"\xc3\xa9",
    b"SIP/2.0",
    b"99999999999999999999999",
    b"-1",
]


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    message = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 5))):
        index = draw(st.integers(0, len(message)))
        operation = draw(st.integers(0, 3))
        if operation == 0:
            message[index:index] = draw(st.sampled_from(INTERESTING))
        elif operation == 1:
            del message[index : index + draw(st.integers(1, 16))]
        elif operation == 2 and index < len(message):
            message[index] = draw(st.integers(0, 255))
        else:
            message[index:index] = draw(st.binary(max_size=8))
    return bytes(message)


def parse_or_refuse(data: bytes) -> Request | Response | None:
    try:
        return parse_message(data)
    except SipParseError as error:
        assert 400 <= error.status < 600
        return None


def feed_or_refuse(chunks: list[bytes]) -> list[Request | Response]:
    reader = StreamReader()
    messages: list[Request | Response] = []
    try:
        for chunk in chunks:
            messages += reader.feed(chunk)
    except SipParseError as error:
        assert 400 <= error.status < 600
    return messages


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[start:end] for start, end in zip([0, *points], [*points, len(data)], strict=True)]


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_sip_parse_error(data: bytes) -> None:
    parse_or_refuse(data)
    feed_or_refuse([data])


@FUZZ
@given(mutated_messages(), st.lists(st.integers(0, 4096), max_size=4))
def test_mutated_torture_messages_only_ever_raise_sip_parse_error(
    data: bytes, cuts: list[int]
) -> None:
    message = parse_or_refuse(data)
    feed_or_refuse(split_at(data, cuts))
    if message is None:
        return
    # Whatever the parser accepts, the helpers built on it handle without crashing.
    for value in message.headers.get_all("Via"):
        assert Via.parse(value).host
    for name in ("To", "From", "Contact", "Route", "Record-Route"):
        for value in message.headers.get_all(name):
            try:
                NameAddress.parse(value)
            except SipParseError as error:
                assert error.status in (400, 416)
    if isinstance(message, Request):
        assert make_response(message, 200, to_tag="fuzz").status == 200
    again = parse_message(serialize(message))
    assert again.headers.get("Call-ID") == message.headers.get("Call-ID")


# --- generated messages -------------------------------------------------------------------------

TOKEN = string.ascii_letters + string.digits + "-.!%*_+`'~"
tokens = st.text(alphabet=TOKEN, min_size=1, max_size=12)
unicode_text = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")
hostnames = st.lists(
    st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8),
    min_size=1,
    max_size=4,
).map(".".join)
hosts = st.one_of(
    hostnames,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda address: f"[{address}]"),
)
ports = st.none() | st.integers(0, 65535)
param_names = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=8)
uri_params = st.dictionaries(
    param_names, st.none() | st.text(unicode_text, min_size=1, max_size=10), max_size=3
)


@st.composite
def sip_uris(draw: st.DrawFn, with_headers: bool = True) -> SipUri:
    if draw(st.integers(0, 5)) == 0:
        number = draw(st.text(alphabet="0123456789-.()+*#", min_size=1, max_size=15))
        return SipUri("tel", None, None, number, None, draw(uri_params), {})
    user = draw(st.none() | st.text(unicode_text, min_size=1, max_size=12))
    password = draw(st.none() | st.text(unicode_text, max_size=8)) if user is not None else None
    headers = (
        draw(
            st.dictionaries(
                st.text(unicode_text, min_size=1, max_size=8),
                st.text(unicode_text, max_size=8),
                max_size=2,
            )
        )
        if with_headers
        else {}
    )
    return SipUri(
        draw(st.sampled_from(["sip", "sips"])),
        user,
        password,
        draw(hosts),
        draw(ports),
        draw(uri_params),
        headers,
    )


header_params = st.dictionaries(param_names, st.none() | tokens, max_size=3)


@st.composite
def name_addresses(draw: st.DrawFn) -> NameAddress:
    display = draw(st.none() | st.text(unicode_text, max_size=12))
    params = draw(header_params)
    params["tag"] = draw(tokens)
    return NameAddress(display, draw(sip_uris()), params)


@st.composite
def vias(draw: st.DrawFn) -> Via:
    params = draw(header_params)
    params["branch"] = "z9hG4bK" + draw(tokens)
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"]))
    return Via(transport, draw(hosts), draw(ports), params)


header_values = st.text(unicode_text, max_size=30).map(lambda value: value.strip(" \t"))


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    method = draw(tokens)
    headers: list[tuple[str, str]] = [
        ("Via", str(via)) for via in draw(st.lists(vias(), min_size=1, max_size=3))
    ]
    headers += [
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
        ("To", str(draw(name_addresses()))),
        ("From", str(draw(name_addresses()))),
        ("Call-ID", f"{draw(tokens)}@{draw(hostnames)}"),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    headers += [
        (f"X-{name}", value)
        for name, value in draw(st.lists(st.tuples(tokens, header_values), max_size=4))
    ]
    order = draw(st.permutations(headers))
    body = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        uri = str(draw(sip_uris(with_headers=False)))
        return Request(method, uri, Headers(order), body)
    status = draw(st.integers(100, 699))
    reason = draw(st.text(unicode_text, max_size=20))
    return Response(status, reason, Headers(order), body)


@FUZZ
@given(messages())
def test_serialize_parse_serialize_round_trips(message: Request | Response) -> None:
    data = serialize(message)
    parsed = parse_message(data)
    assert serialize(parsed) == data
    assert parsed.body == message.body
    assert StreamReader().feed(data + data) == [parsed, parsed]


@FUZZ
@given(sip_uris())
def test_sip_uri_str_parse_round_trips(uri: SipUri) -> None:
    text = str(uri)
    assert SipUri.parse(text) == uri
    assert str(SipUri.parse(text)) == text


@FUZZ
@given(name_addresses())
def test_name_address_str_parse_round_trips(address: NameAddress) -> None:
    assert NameAddress.parse(str(address)) == address


@FUZZ
@given(vias())
def test_via_str_parse_round_trips(via: Via) -> None:
    assert Via.parse(str(via)) == via


@FUZZ
@given(st.text(max_size=200))
def test_sip_uri_parse_of_any_text_refuses_or_round_trips(text: str) -> None:
    for candidate in (text, "sip:" + text, "sip:user@" + text, "tel:" + text):
        try:
            uri = SipUri.parse(candidate)
        except SipParseError as error:
            assert error.status in (400, 416)
            continue
        assert SipUri.parse(str(uri)) == uri


# --- SDP: the one SDP parser (gateway.media.sdp), as SIP offers reach it ------------------------

SIP_OFFER = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 9 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
    "m=video 51372 RTP/AVP 96\r\n"
    "a=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 profile-level-id=42e01f\r\n"
    "a=rtcp-fb:96 nack pli\r\n"
    "a=rtcp-fb:* ccm fir\r\n"
    "a=extmap:1/sendonly urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=ssrc:1234 cname:x\r\n"
    "a=ssrc-group:FID 1234 5678\r\n"
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
    "a=fingerprint:sha-256 AB:CD:EF\r\n"
)
SDP_REPLACEMENTS = [
    " ",
    "",
    ":",
    "/",
    "x",
    "-1",
    "99999999999999999999",
    "\x00",
    "=",
    ";",
    "é",
    "*",
]


@st.composite
def mutated_offers(draw: st.DrawFn) -> str:
    lines = SIP_OFFER.split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        operation = draw(st.sampled_from(["truncate", "duplicate", "delete", "replace", "insert"]))
        line = lines[index]
        if operation == "truncate":
            lines[index] = line[: draw(st.integers(0, len(line)))]
        elif operation == "duplicate":
            lines.insert(index, line)
        elif operation == "delete" and len(lines) > 1:
            del lines[index]
        elif operation == "replace" and line:
            at = draw(st.integers(0, len(line) - 1))
            lines[index] = line[:at] + draw(st.sampled_from(SDP_REPLACEMENTS)) + line[at + 1 :]
        elif operation == "insert":
            lines.insert(index, draw(st.text(max_size=24)))
    return draw(st.sampled_from(["\r\n", "\n"])).join(lines)


@FUZZ
@given(mutated_offers())
def test_mutated_sip_sdp_offer_only_ever_raises_sdp_error(text: str) -> None:
    try:
        session = sdp.parse(text)
    except sdp.SdpError:
        return
    assert isinstance(sdp.serialize(session), str)
