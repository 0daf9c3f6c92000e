"""The SDP offer/answer of a phone call's audio (RFC 3264), with telephone-event (RFC 4733).

Uses the project's one SDP parser (gateway.media.sdp). Only what is tested with real SIP peers
is accepted: PCMA, PCMU and G.722, plus telephone-event for DTMF.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from gateway.media.audio.codecs import G722, PCMA, PCMU, AudioCodec
from gateway.media.sdp import (
    Codec,
    MediaDescription,
    SdpError,
    SessionDescription,
    parse,
    serialize,
)
from protocols.sip.sdes import Crypto, parse_crypto

SUPPORTED = {"pcma": PCMA, "pcmu": PCMU, "g722": G722}
"""Codecs a phone may use, by rtpmap name; the caller's order of preference decides."""

RTP_AVP = ("RTP/AVP", "RTP/AVPF")
RTP_SAVP = ("RTP/SAVP", "RTP/SAVPF")
_DIRECTIONS = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


@dataclass
class AudioOffer:
    """What the phone offered, reduced to what the call needs."""

    codec: AudioCodec
    payload_type: int
    telephone_event_pt: int | None
    address: tuple[str, int] | None
    """Where to send RTP (None when the offer says 0.0.0.0 or port 0: hold, RFC 3264 8.4)."""
    direction: str
    """The phone's direction: sendrecv, sendonly (it puts us on hold), recvonly or inactive."""
    crypto: Crypto | None = None
    """The phone's SRTP key (RTP/SAVP with RFC 4568 SDES), None for plain RTP."""


def read_offer(text: str, srtp: str = "optional") -> AudioOffer:
    """The first usable audio m-line of an offer; SdpError naming what is missing otherwise.

    ``srtp`` is the trunk's policy: "off" (plain RTP only), "optional" (either), "required".
    """
    description = parse(text)
    refused_for_srtp = False
    for media in description.media:
        if media.kind != "audio" or media.proto not in RTP_AVP + RTP_SAVP:
            continue
        crypto = None
        if media.proto in RTP_SAVP:
            crypto = next(
                (c for name, v in media.extra if name == "crypto" and v and (c := parse_crypto(v))),
                None,
            )
            if crypto is None or srtp == "off":
                refused_for_srtp = True
                continue
        elif srtp == "required":
            refused_for_srtp = True
            continue
        chosen: tuple[AudioCodec, int] | None = None
        telephone_event = None
        for payload in media.fmt:
            if not payload.isdigit():
                continue
            pt = int(payload)
            codec = media.codec(pt)
            name = codec.name.lower() if codec is not None else _static_name(pt)
            if name == "telephone-event" and (codec is None or codec.clock_rate == 8000):
                telephone_event = telephone_event if telephone_event is not None else pt
            elif chosen is None and name in SUPPORTED:
                chosen = (SUPPORTED[name], pt)
        if chosen is None:
            continue
        host = media.connection or description.connection
        if not host and media.port != 0:
            raise SdpError("the offer's audio line has no c= address (RFC 4566 5.7)")
        address = _address(host, media.port)
        direction = media.direction or "sendrecv"
        return AudioOffer(chosen[0], chosen[1], telephone_event, address, direction, crypto)
    if refused_for_srtp:
        wanted = {"off": "plain RTP/AVP", "required": "SRTP (RTP/SAVP with a=crypto)"}
        raise SdpError(
            f"this trunk takes {wanted.get(srtp, 'RTP/SAVP with a usable a=crypto')} only"
        )
    raise SdpError("the offer has no audio line with PCMA, PCMU or G722 over RTP/AVP")


def _static_name(payload_type: int) -> str:
    return {0: "pcmu", 8: "pcma", 9: "g722"}.get(payload_type, "")


def _address(connection: str | None, port: int) -> tuple[str, int] | None:
    if not 0 <= port <= 65535:
        raise SdpError(f"the offer's m= port {port} is out of range")
    if not connection or port == 0:
        return None
    parts = connection.split()
    if len(parts) < 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError("the offer's c= line is malformed")
    host = parts[2].split("/")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise SdpError("the offer's c= address is not an IP address") from None
    if (address.version == 6) != (parts[1] == "IP6"):
        raise SdpError(f"the offer's c= address is not an {parts[1]} address")
    if address.is_unspecified:
        return None
    if address.is_multicast:
        raise SdpError("the offer's c= address is multicast")
    return host, port


def make_answer(
    offer: AudioOffer,
    local_ip: str,
    port: int,
    session_id: int,
    version: int,
    on_hold: bool = False,
    local_crypto: Crypto | None = None,
) -> str:
    """Our answer: the chosen codec (with the caller's payload type) and telephone-event,
    on RTP/SAVP with our own key when the offer was SRTP."""
    family = "IP6" if ":" in local_ip else "IP4"
    codecs = [Codec(offer.payload_type, offer.codec.name, offer.codec.clock_rate)]
    fmt = [str(offer.payload_type)]
    if offer.telephone_event_pt is not None:
        codecs.append(Codec(offer.telephone_event_pt, "telephone-event", 8000, fmtp="0-16"))
        fmt.append(str(offer.telephone_event_pt))
    direction = _DIRECTIONS.get(offer.direction, "sendrecv")
    if on_hold and direction == "sendrecv":
        direction = "sendonly"
    extra: list[tuple[str, str | None]] = [("ptime", "20")]
    if local_crypto is not None:
        extra.append(("crypto", local_crypto.attribute()))
    media = MediaDescription(
        kind="audio",
        port=port,
        proto="RTP/SAVP" if local_crypto is not None else "RTP/AVP",
        fmt=fmt,
        direction=direction,
        codecs=codecs,
        extra=extra,
    )
    description = SessionDescription(
        origin=f"rondpoint {session_id} {version} IN {family} {local_ip}",
        name="Rondpoint",
        connection=f"IN {family} {local_ip}",
        media=[media],
    )
    return serialize(description)


__all__ = ["AudioOffer", "SdpError", "make_answer", "read_offer"]
