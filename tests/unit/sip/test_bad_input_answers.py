"""What the gateway answers to input it refuses: best-effort 400/505 for unparsable requests
(transport.error_response), and SDP offers it cannot use (offer_answer.read_offer -> 488)."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocols.sip.message import parse_message
from protocols.sip.offer_answer import SdpError, read_offer
from protocols.sip.transport import error_response
from protocols.sip.uri import SipParseError
from tests.unit.sip.test_torture_rfc4475 import INVALID

TORTURE = Path(__file__).parent / "torture"


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages_are_answered_with_their_status_or_dropped(name: str) -> None:
    data = (TORTURE / f"{name}.dat").read_bytes()
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    answer = error_response(data, caught.value.status, caught.value.reason)
    if data.startswith(b"SIP/2.0"):
        assert answer is None  # a response is never answered
    if answer is None:
        return
    status_line, *headers = answer.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert status_line.startswith(f"SIP/2.0 {INVALID[name]} ".encode())
    names = [h.split(b":", 1)[0] for h in headers]
    assert {b"Via", b"From", b"To", b"Call-ID", b"CSeq"} <= set(names)
    assert b";tag=" in next(h for h in headers if h.startswith(b"To:"))


def test_most_invalid_requests_get_an_answer() -> None:
    answered = 0
    for name, status in INVALID.items():
        data = (TORTURE / f"{name}.dat").read_bytes()
        answered += error_response(data, status, "Bad Request") is not None
    assert answered >= 15


def test_no_answer_to_ack_or_without_the_five_fields() -> None:
    ack = b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
    ack += b"To: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 ACK\r\n\r\n"
    assert error_response(ack, 400, "Bad Request") is None
    partial = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\n\r\n"
    assert error_response(partial, 400, "Bad Request") is None
    binary = ack.replace(b"ACK", b"BYE").replace(b"Call-ID: x", b"Call-ID: \x00\x01")
    assert error_response(binary, 400, "Bad Request") is None


@pytest.mark.parametrize(
    "sdp",
    [
        "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 99999 RTP/AVP 8\r\n",
        "v=0\r\nc=IN IP6 127.0.0.1\r\nm=audio 4000 RTP/AVP 8\r\n",
        "v=0\r\nc=IN IP4 ::1\r\nm=audio 4000 RTP/AVP 8\r\n",
        "v=0\r\nm=audio 4000 RTP/AVP 8\r\n",
        "v=0\r\nc=IN IP4 224.0.0.1\r\nm=audio 4000 RTP/AVP 8\r\n",
        "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
    ],
)
def test_unusable_offers_are_refused(sdp: str) -> None:
    with pytest.raises(SdpError):
        read_offer(sdp)


def test_hold_offers_still_parse() -> None:
    assert read_offer("v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 8\r\n").address is None
    assert read_offer("v=0\r\nc=IN IP6 ::1\r\nm=audio 4000 RTP/AVP 8\r\n").address == ("::1", 4000)
