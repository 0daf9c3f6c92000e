"""SIP user agent core, sans-I/O in the style of h11 (RFC 3261): messages, transactions, dialogs, digest."""

from protocols.sip.message import (
    CSeq,
    Headers,
    NameAddress,
    Request,
    Response,
    StreamReader,
    Via,
    make_response,
    parse_message,
    serialize,
)
from protocols.sip.uri import SipParseError, SipUri

__all__ = [
    "CSeq",
    "Headers",
    "NameAddress",
    "Request",
    "Response",
    "SipParseError",
    "SipUri",
    "StreamReader",
    "Via",
    "make_response",
    "parse_message",
    "serialize",
]
