"""RFC 4475 torture messages: valid ones parse with the fields the RFC calls out, invalid ones are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocols.sip.message import (
    CSeq,
    NameAddress,
    Request,
    Response,
    SipParseError,
    SipUri,
    StreamReader,
    Via,
    parse_message,
)

TORTURE = Path(__file__).parent / "torture"

# 3.1.1 Valid messages.
VALID = [
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
]

# 3.1.2 Invalid messages, and the 3.3 ones a parser refuses, with the status to answer.
INVALID = {
    "badinv01": 400,  # 3.1.2.1 extraneous header field separators
    "clerr": 400,  # 3.1.2.2 Content-Length larger than the message
    "ncl": 400,  # 3.1.2.3 negative Content-Length
    "scalar02": 400,  # 3.1.2.4 request scalar fields with overlarge values
    "scalarlg": 400,  # 3.1.2.5 response scalar fields with overlarge values (dropped)
    "quotbal": 400,  # 3.1.2.6 unterminated quoted string in display name
    "ltgtruri": 400,  # 3.1.2.7 <> enclosing the Request-URI
    "lwsruri": 400,  # 3.1.2.8 LWS inside the Request-URI
    "lwsstart": 400,  # 3.1.2.9 multiple SP separating Request-Line elements
    "trws": 400,  # 3.1.2.10 SP characters at the end of the Request-Line
    "escruri": 400,  # 3.1.2.11 escaped headers in the SIP Request-URI
    "baddate": 400,  # 3.1.2.12 invalid time zone in Date
    "regbadct": 400,  # 3.1.2.13 name-addr URI with ? not enclosed in <>
    "badaspec": 400,  # 3.1.2.14 spaces within addr-spec
    "baddn": 400,  # 3.1.2.15 non-token characters in display name
    "badvers": 505,  # 3.1.2.16 unknown protocol version
    "mismatch01": 400,  # 3.1.2.17 start line and CSeq method mismatch
    "mismatch02": 400,  # 3.1.2.18 unknown method with CSeq method mismatch
    "bigcode": 400,  # 3.1.2.19 overlarge response code (dropped)
    "insuf": 400,  # 3.3.1 missing required header fields
    "multi01": 400,  # 3.3.9 multiple values in single-value header fields
    "mcl01": 400,  # 3.3.10 multiple Content-Length values
}

# Syntactically valid messages whose rejection (if any) is the transaction layer's or the TU's.
PARSED_FOR_THE_TU = [
    "badbranch",  # 3.2.1 branch is only the magic cookie: transaction layer decides
    "unkscm",  # 3.3.2 unknown Request-URI scheme: TU answers 416
    "novelsc",  # 3.3.3 known but atypical scheme: TU answers 416
    "unksm2",  # 3.3.4 unknown schemes in To, From, Contact
    "bext01",  # 3.3.5 Require / Proxy-Require: TU answers 420
    "invut",  # 3.3.6 unknown Content-Type: TU answers 415
    "regaut01",  # 3.3.7 unknown authorization scheme: registrar challenges
    "bcast",  # 3.3.11 200 OK with a broadcast Via: never sent to 255.255.255.255
    "zeromf",  # 3.3.12 Max-Forwards 0: a proxy answers 483, a UAS answers OPTIONS
    "cparam01",  # 3.3.13 REGISTER with a Contact header parameter
    "cparam02",  # 3.3.14 REGISTER with a URI parameter
    "regescrt",  # 3.3.15 REGISTER with an escaped header in the Contact URI
    "sdp01",  # 3.3.16 unacceptable Accept: TU answers 406
    "inv2543",  # 3.4.1 RFC 2543 INVITE: no branch, no Max-Forwards, no Content-Length
]


def load(name: str) -> bytes:
    return (TORTURE / f"{name}.dat").read_bytes()


def parse_request(name: str) -> Request:
    message = parse_message(load(name))
    assert isinstance(message, Request)
    return message


def test_every_rfc4475_message_has_a_fixture_and_a_verdict() -> None:
    on_disk = {path.stem for path in TORTURE.glob("*.dat")}
    assert on_disk == set(VALID) | set(INVALID) | set(PARSED_FOR_THE_TU)


@pytest.mark.parametrize("name", VALID + PARSED_FOR_THE_TU)
def test_valid_message_parses(name: str) -> None:
    message = parse_message(load(name))
    assert message.headers.get("Call-ID")
    assert CSeq.parse(message.headers.get("CSeq") or "").number >= 0
    for via in message.headers.get_all("Via"):
        assert Via.parse(via).host


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_message_is_refused_with_its_status(name: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(load(name))
    assert caught.value.status == INVALID[name]


# On a stream a body shorter than Content-Length (clerr), or a header section without its empty
# line (baddn ends that way), only means more bytes are still to come.
@pytest.mark.parametrize("name", sorted(set(INVALID) - {"clerr", "baddn"}))
def test_invalid_message_is_refused_on_a_stream_too(name: str) -> None:
    with pytest.raises(SipParseError) as caught:
        StreamReader().feed(load(name))
    assert caught.value.status == INVALID[name]


def test_wsinv_folded_headers_and_lws_everywhere() -> None:
    request = parse_request("wsinv")
    assert request.method == "INVITE"
    uri = SipUri.parse(request.uri)
    assert (uri.user, uri.host, uri.params) == (
        "vivekg",
        "chair-dnrc.example.com",
        {"unknownparam": None},
    )
    to = NameAddress.parse(request.headers.get("To") or "")
    assert to.display_name is None
    assert to.tag == "1918181833n"
    sender = NameAddress.parse(request.headers.get("From") or "")
    assert sender.display_name == 'J Rosenberg \\"'
    assert sender.tag == "98asjd8"
    assert request.headers.get("Max-Forwards") == "0068"
    assert CSeq.parse(request.headers.get("CSeq") or "") == CSeq(9, "INVITE")
    vias = [Via.parse(value) for value in request.headers.get_all("v")]
    assert [(via.transport, via.host, via.branch) for via in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert request.headers.get("Subject") == ""
    assert request.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert request.headers.get("unknownheaderwithunusualvalue") == ";;,,;;,;"
    contact = NameAddress.parse(request.headers.get("m") or "")
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    route = NameAddress.parse(request.headers.get("Route") or "")
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert len(request.body) == 150


def test_intmeth_unknown_method_and_unusual_characters() -> None:
    request = parse_request("intmeth")
    assert request.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = SipUri.parse(request.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert Via.parse(request.headers.get("Via") or "").branch == "z9hG4bK-.!%66*_+`'~"
    to = NameAddress.parse(request.headers.get("To") or "")
    assert to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    sender = NameAddress.parse(request.headers.get("From") or "")
    assert sender.display_name == "token1~` token2'+_ token3*%!.-"
    assert sender.tag == "_token~1'+`*%!-."
    assert sender.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert request.headers.get("Call-ID") == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert request.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_esc01_escaped_user_is_unescaped() -> None:
    request = parse_request("esc01")
    uri = SipUri.parse(request.uri)
    assert uri.user == "sips:user@example.com"
    assert uri.host == "example.net"
    assert NameAddress.parse(request.headers.get("To") or "").uri.user == "user"
    assert NameAddress.parse(request.headers.get("From") or "").uri.user == "I have spaces"
    contact = NameAddress.parse(request.headers.get("Contact") or "")
    assert contact.uri.user == "caller"
    assert contact.uri.params == {"lr": None, "name": "value%41"}
    assert request.headers.get("Content-Type") == "application/sdp"


def test_escnull_escaped_nul_bytes_in_user() -> None:
    request = parse_request("escnull")
    users = [NameAddress.parse(value).uri.user for value in request.headers.get_all("Contact")]
    assert users == ["\x00", "\x00\x00"]
    assert NameAddress.parse(request.headers.get("To") or "").uri.user == "null-\x00-null"


def test_esc02_percent_is_not_an_escape_in_method_and_header_names() -> None:
    request = parse_request("esc02")
    assert request.method == "RE%47IST%45R"
    assert NameAddress.parse(request.headers.get("To") or "").display_name == "%Z%45"
    contacts = [NameAddress.parse(value).uri.host for value in request.headers.get_all("Contact")]
    assert contacts == ["host1.example.com", "host3.example.com"]
    assert request.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_display_name_without_space_before_angle() -> None:
    sender = NameAddress.parse(parse_request("lwsdisp").headers.get("From") or "")
    assert sender.display_name == "caller"
    assert sender.tag == "323"


def test_longreq_long_values_survive() -> None:
    request = parse_request("longreq")
    vias = request.headers.get_all("Via")
    assert len(vias) > 30
    to = NameAddress.parse(request.headers.get("To") or "")
    assert to.uri.port == 6000
    assert len(request.body) == int(request.headers.get("Content-Length") or "")


def test_dblreq_second_request_after_content_length_is_ignored() -> None:
    request = parse_request("dblreq")
    assert request.method == "REGISTER"
    assert request.body == b""


def test_semiuri_semicolon_in_user_part() -> None:
    request = parse_request("semiuri")
    uri = SipUri.parse(request.uri)
    assert uri.user == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert uri.params == {}
    assert request.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports_unknown_transport_tokens() -> None:
    vias = [Via.parse(value) for value in parse_request("transports").headers.get_all("Via")]
    assert [via.transport for via in vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_binary_multipart_body_is_kept_byte_exact() -> None:
    data = load("mpart01")
    request = parse_request("mpart01")
    assert len(request.body) == 553
    assert data.endswith(request.body)
    assert b"\x00" in request.body


def test_unreason_utf8_reason_phrase() -> None:
    response = parse_message(load("unreason"))
    assert isinstance(response, Response)
    assert response.status == 200
    assert response.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"


def test_noreason_empty_reason_phrase() -> None:
    response = parse_message(load("noreason"))
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (100, "")


def test_badbranch_cookie_only_branch_is_left_to_the_transaction_layer() -> None:
    via = Via.parse(parse_request("badbranch").headers.get("Via") or "")
    assert via.branch == "z9hG4bK"


@pytest.mark.parametrize("name", ["unkscm", "novelsc"])
def test_unknown_request_uri_scheme_is_416_for_the_tu(name: str) -> None:
    with pytest.raises(SipParseError) as caught:
        SipUri.parse(parse_request(name).uri)
    assert caught.value.status == 416


def test_unksm2_unknown_schemes_in_addresses_are_416_for_the_tu() -> None:
    request = parse_request("unksm2")
    for name in ("To", "From", "Contact"):
        with pytest.raises(SipParseError) as caught:
            NameAddress.parse(request.headers.get(name) or "")
        assert caught.value.status == 416


def test_bext01_require_values_are_listed() -> None:
    request = parse_request("bext01")
    assert request.headers.get_all("Require") == [
        "nothingSupportsThis",
        "nothingSupportsThisEither",
    ]
    assert request.headers.get_all("Proxy-Require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]


def test_invut_unknown_content_type_is_kept() -> None:
    request = parse_request("invut")
    assert request.headers.get("Content-Type") == "application/unknownformat"
    assert request.body.startswith(b"<audio>")


def test_regaut01_unknown_authorization_scheme_is_kept() -> None:
    request = parse_request("regaut01")
    assert request.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"


def test_bcast_broadcast_via_is_visible() -> None:
    response = parse_message(load("bcast"))
    assert [Via.parse(value).host for value in response.headers.get_all("Via")] == [
        "192.0.2.198",
        "255.255.255.255",
    ]


def test_zeromf_max_forwards_zero() -> None:
    assert parse_request("zeromf").headers.get("Max-Forwards") == "0"


def test_cparam01_unknown_param_of_addr_spec_belongs_to_the_header() -> None:
    contact = NameAddress.parse(parse_request("cparam01").headers.get("Contact") or "")
    assert contact.params == {"unknownparam": None}
    assert contact.uri.params == {}
    assert contact.uri.user == "+19725552222"


def test_cparam02_unknown_param_inside_angle_brackets_belongs_to_the_uri() -> None:
    contact = NameAddress.parse(parse_request("cparam02").headers.get("Contact") or "")
    assert contact.params == {}
    assert contact.uri.params == {"unknownparam": None}


def test_regescrt_escaped_header_in_contact_uri() -> None:
    contact = NameAddress.parse(parse_request("regescrt").headers.get("Contact") or "")
    assert contact.uri.headers == {"Route": "<sip:sip.example.com>"}


def test_sdp01_accept_lists_what_the_caller_accepts() -> None:
    assert parse_request("sdp01").headers.get_all("Accept") == ["text/nobodyKnowsThis"]


def test_inv2543_rfc2543_request_without_branch_or_content_length() -> None:
    request = parse_request("inv2543")
    via = Via.parse(request.headers.get("Via") or "")
    assert via.branch is None
    assert "Max-Forwards" not in request.headers
    assert request.body.startswith(b"v=0")
