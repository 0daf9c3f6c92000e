"""STUN messages for ICE connectivity checks: parse, build, MESSAGE-INTEGRITY and FINGERPRINT (RFC 8489)."""

from __future__ import annotations

import hmac
import ipaddress
import os
import struct
import zlib
from dataclasses import dataclass, field
from hashlib import sha1

MAGIC_COOKIE = 0x2112A442
HEADER_LENGTH = 20
FINGERPRINT_XOR = 0x5354554E

# Message types (method | class), RFC 8489 section 5.
BINDING_REQUEST = 0x0001
BINDING_INDICATION = 0x0011
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111

# Attributes (RFC 8489 section 18.3, RFC 8445 section 16.1).
ATTR_MAPPED_ADDRESS = 0x0001
ATTR_USERNAME = 0x0006
ATTR_MESSAGE_INTEGRITY = 0x0008
ATTR_ERROR_CODE = 0x0009
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_PRIORITY = 0x0024
ATTR_USE_CANDIDATE = 0x0025
ATTR_SOFTWARE = 0x8022
ATTR_FINGERPRINT = 0x8028
ATTR_ICE_CONTROLLED = 0x8029
ATTR_ICE_CONTROLLING = 0x802A

_HEADER = struct.Struct("!HHI12s")
_ATTR_HEADER = struct.Struct("!HH")
_MI_ATTR_LENGTH = 4 + 20
_FP_ATTR_LENGTH = 4 + 4


class StunError(ValueError):
    """A datagram that is not a well-formed STUN message."""


@dataclass
class StunMessage:
    """One STUN message; `attributes` keeps wire order, values are raw attribute bytes."""

    message_type: int
    transaction_id: bytes
    attributes: list[tuple[int, bytes]] = field(default_factory=list)

    def get(self, attr_type: int) -> bytes | None:
        for kind, value in self.attributes:
            if kind == attr_type:
                return value
        return None

    def has(self, attr_type: int) -> bool:
        return any(kind == attr_type for kind, _ in self.attributes)

    @property
    def username(self) -> str | None:
        value = self.get(ATTR_USERNAME)
        return None if value is None else value.decode("utf-8", "replace")

    @property
    def xor_mapped_address(self) -> tuple[str, int] | None:
        value = self.get(ATTR_XOR_MAPPED_ADDRESS)
        return None if value is None else decode_xor_address(value, self.transaction_id)


def is_stun(data: bytes) -> bool:
    """RFC 7983: first byte 0..3, and a STUN header with the magic cookie."""
    return (
        len(data) >= HEADER_LENGTH
        and data[0] < 4
        and data[4:8] == b"\x21\x12\xa4\x42"
        and len(data) - HEADER_LENGTH == (data[2] << 8 | data[3])
    )


def parse(data: bytes) -> StunMessage:
    """Parse a STUN message; raises StunError when it is malformed."""
    if not is_stun(data):
        raise StunError("not a STUN message")
    message_type, length, _cookie, transaction_id = _HEADER.unpack_from(data)
    attributes: list[tuple[int, bytes]] = []
    pos = HEADER_LENGTH
    end = HEADER_LENGTH + length
    while pos < end:
        if pos + 4 > end:
            raise StunError("truncated attribute header")
        attr_type, attr_length = _ATTR_HEADER.unpack_from(data, pos)
        value_end = pos + 4 + attr_length
        if value_end > end:
            raise StunError("truncated attribute value")
        attributes.append((attr_type, bytes(data[pos + 4 : value_end])))
        pos = value_end + (-attr_length % 4)
    return StunMessage(message_type, transaction_id, attributes)


def _attribute_offset(data: bytes, wanted: int) -> int:
    """Byte offset of the first attribute of type `wanted`, or -1."""
    pos = HEADER_LENGTH
    end = len(data)
    while pos + 4 <= end:
        attr_type, attr_length = _ATTR_HEADER.unpack_from(data, pos)
        if attr_type == wanted:
            return pos
        pos += 4 + attr_length + (-attr_length % 4)
    return -1


def _with_length(data: bytes, upto: int, extra: int) -> bytes:
    """The message up to `upto` with its header length field set as if `extra` more bytes followed."""
    length = upto - HEADER_LENGTH + extra
    return data[:2] + struct.pack("!H", length) + data[4:upto]


def verify_message_integrity(data: bytes, key: bytes) -> bool:
    """Check MESSAGE-INTEGRITY (HMAC-SHA1, short-term credential key = the password)."""
    pos = _attribute_offset(data, ATTR_MESSAGE_INTEGRITY)
    if pos < 0 or pos + _MI_ATTR_LENGTH > len(data):
        return False
    expected = hmac.new(key, _with_length(data, pos, _MI_ATTR_LENGTH), sha1).digest()
    return hmac.compare_digest(expected, data[pos + 4 : pos + _MI_ATTR_LENGTH])


def verify_fingerprint(data: bytes) -> bool:
    """Check FINGERPRINT when present; a message without one passes."""
    pos = _attribute_offset(data, ATTR_FINGERPRINT)
    if pos < 0:
        return True
    if pos + _FP_ATTR_LENGTH != len(data):
        return False
    crc = zlib.crc32(_with_length(data, pos, _FP_ATTR_LENGTH)) ^ FINGERPRINT_XOR
    return struct.unpack_from("!I", data, pos + 4)[0] == crc


def encode_xor_address(host: str, port: int, transaction_id: bytes) -> bytes:
    address = ipaddress.ip_address(host)
    xport = port ^ (MAGIC_COOKIE >> 16)
    if address.version == 4:
        xaddr = int(address) ^ MAGIC_COOKIE
        return struct.pack("!BBHI", 0, 1, xport, xaddr)
    mask = struct.pack("!I", MAGIC_COOKIE) + transaction_id
    raw = bytes(a ^ b for a, b in zip(address.packed, mask, strict=True))
    return struct.pack("!BBH", 0, 2, xport) + raw


def decode_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    if len(value) < 8:
        raise StunError("short XOR-MAPPED-ADDRESS")
    family = value[1]
    port = struct.unpack_from("!H", value, 2)[0] ^ (MAGIC_COOKIE >> 16)
    if family == 1:
        raw = struct.unpack_from("!I", value, 4)[0] ^ MAGIC_COOKIE
        return str(ipaddress.IPv4Address(raw)), port
    if family == 2 and len(value) >= 20:
        mask = struct.pack("!I", MAGIC_COOKIE) + transaction_id
        raw6 = bytes(a ^ b for a, b in zip(value[4:20], mask, strict=True))
        return str(ipaddress.IPv6Address(raw6)), port
    raise StunError("unknown address family")


def serialize(
    message: StunMessage, integrity_key: bytes | None = None, fingerprint: bool = True
) -> bytes:
    """Encode a message, appending MESSAGE-INTEGRITY (when a key is given) and FINGERPRINT."""
    body = bytearray()
    for attr_type, value in message.attributes:
        body += _ATTR_HEADER.pack(attr_type, len(value)) + value + b"\x00" * (-len(value) % 4)
    data = bytearray(
        _HEADER.pack(message.message_type, len(body), MAGIC_COOKIE, message.transaction_id)
    )
    data += body
    if integrity_key is not None:
        upto = len(data)
        digest = hmac.new(
            integrity_key, _with_length(bytes(data), upto, _MI_ATTR_LENGTH), sha1
        ).digest()
        data += _ATTR_HEADER.pack(ATTR_MESSAGE_INTEGRITY, 20) + digest
    if fingerprint:
        upto = len(data)
        crc = zlib.crc32(_with_length(bytes(data), upto, _FP_ATTR_LENGTH)) ^ FINGERPRINT_XOR
        data += _ATTR_HEADER.pack(ATTR_FINGERPRINT, 4) + struct.pack("!I", crc)
    struct.pack_into("!H", data, 2, len(data) - HEADER_LENGTH)
    return bytes(data)


def binding_request(
    username: str,
    password: str,
    priority: int = 1853817087,
    use_candidate: bool = False,
    controlling: bool = True,
    tie_breaker: int | None = None,
    transaction_id: bytes | None = None,
) -> bytes:
    """A connectivity check as a full ICE agent sends it (RFC 8445 section 7.1.1)."""
    attributes = [
        (ATTR_USERNAME, username.encode("utf-8")),
        (ATTR_PRIORITY, struct.pack("!I", priority)),
    ]
    tie = tie_breaker if tie_breaker is not None else int.from_bytes(os.urandom(8), "big")
    role = ATTR_ICE_CONTROLLING if controlling else ATTR_ICE_CONTROLLED
    attributes.append((role, struct.pack("!Q", tie)))
    if use_candidate:
        attributes.append((ATTR_USE_CANDIDATE, b""))
    message = StunMessage(BINDING_REQUEST, transaction_id or os.urandom(12), attributes)
    return serialize(message, integrity_key=password.encode("utf-8"))


def binding_success(
    transaction_id: bytes, address: tuple[str, int], password: str | bytes
) -> bytes:
    """The success response of an ICE-lite agent: XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT."""
    key = password.encode("utf-8") if isinstance(password, str) else password
    value = encode_xor_address(address[0], address[1], transaction_id)
    message = StunMessage(BINDING_SUCCESS, transaction_id, [(ATTR_XOR_MAPPED_ADDRESS, value)])
    return serialize(message, integrity_key=key)


def binding_error(
    transaction_id: bytes, code: int, reason: str, password: str | bytes | None = None
) -> bytes:
    """An error response (e.g. 400 Bad Request, 487 Role Conflict)."""
    key = password.encode("utf-8") if isinstance(password, str) else password
    value = struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode("utf-8")
    message = StunMessage(BINDING_ERROR, transaction_id, [(ATTR_ERROR_CODE, value)])
    return serialize(message, integrity_key=key)
