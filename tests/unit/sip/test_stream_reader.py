"""Framing SIP on a stream (RFC 3261 18.3): what the transport's deadlines and caps read from it."""

from __future__ import annotations

import pytest

from protocols.sip.message import SipParseError, StreamReader

HEAD = (
    b"OPTIONS sip:gw.example SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    b"From: <sip:a@192.0.2.1>;tag=1\r\nTo: <sip:gw.example>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
)


def test_keepalives_are_no_message_in_progress() -> None:
    reader = StreamReader()
    assert reader.feed(b"\r\n\r\n") == []
    assert not reader.in_message


def test_a_partial_head_or_body_is_a_message_in_progress() -> None:
    reader = StreamReader()
    reader.feed(HEAD[:20])
    assert reader.in_message
    reader = StreamReader()
    reader.feed(HEAD + b"Content-Length: 10\r\n\r\nabc")
    assert reader.in_message
    [message] = reader.feed(b"defghij")
    assert message.body == b"abcdefghij"
    assert not reader.in_message


def test_a_body_above_the_cap_is_refused_with_413_and_its_head_kept_for_the_answer() -> None:
    reader = StreamReader(max_body_size=65_536)
    with pytest.raises(SipParseError) as refused:
        reader.feed(HEAD + b"Content-Length: 1048576\r\n\r\nxx")
    assert refused.value.status == 413
    assert reader.buffered().startswith(HEAD)
