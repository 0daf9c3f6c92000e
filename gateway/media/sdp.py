"""The project's one SDP parser and serializer (RFC 8866, JSEP RFC 8829, BUNDLE RFC 8843, RFC 8285, RFC 8851/8853)."""

from __future__ import annotations

from dataclasses import dataclass, field

# RTP header extension URIs (RFC 8285 registrations used by browsers).
EXT_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
EXT_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
EXT_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
EXT_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
EXT_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
EXT_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

# RFC 3551 static payload types that may appear without a=rtpmap.
_STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    13: ("CN", 8000, 1),
}


class SdpError(ValueError):
    """An offer or answer that cannot be used; the message says why (it never echoes secrets).

    ``field`` is the JSON pointer of the offending member of the ORS request when the fault is
    one of its members rather than the SDP as a whole (``/tracks/0/mid``), else None.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Codec:
    """One payload type of an m-line: a=rtpmap, a=fmtp and a=rtcp-fb together."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int | None = None
    fmtp: str = ""
    rtcp_fb: list[str] = field(default_factory=list)

    @property
    def parameters(self) -> dict[str, str]:
        return parse_fmtp(self.fmtp)


@dataclass
class Extmap:
    id: int
    uri: str
    direction: str | None = None


@dataclass
class Rid:
    """a=rid (RFC 8851): id, direction (send/recv) and the raw restrictions."""

    id: str
    direction: str
    params: str = ""


@dataclass
class Simulcast:
    """a=simulcast (RFC 8853): alternatives per stream, '~' marks a paused rid."""

    send: list[list[str]] = field(default_factory=list)
    recv: list[list[str]] = field(default_factory=list)

    @staticmethod
    def parse(value: str) -> Simulcast:
        result = Simulcast()
        tokens = value.split()
        for i in range(0, len(tokens) - 1, 2):
            streams = [alt.split(",") for alt in tokens[i + 1].split(";")]
            if tokens[i] == "send":
                result.send = streams
            elif tokens[i] == "recv":
                result.recv = streams
        return result

    def serialize(self) -> str:
        parts = []
        for direction, streams in (("send", self.send), ("recv", self.recv)):
            if streams:
                parts.append(direction + " " + ";".join(",".join(alt) for alt in streams))
        return " ".join(parts)

    def rids(self, direction: str) -> list[str]:
        """The rid ids in `direction`, first alternative of each stream, '~' removed."""
        streams = self.send if direction == "send" else self.recv
        return [alt[0].lstrip("~") for alt in streams if alt]


@dataclass
class SsrcGroup:
    semantics: str
    ssrcs: list[int]


@dataclass
class MediaDescription:
    kind: str
    port: int
    proto: str
    fmt: list[str]
    connection: str | None = None
    mid: str | None = None
    direction: str | None = None
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: str | None = None
    fingerprint: tuple[str, str] | None = None
    setup: str | None = None
    rtcp_mux: bool = False
    rtcp_rsize: bool = False
    msid: str | None = None
    codecs: list[Codec] = field(default_factory=list)
    extmaps: list[Extmap] = field(default_factory=list)
    ssrcs: list[tuple[int, str, str]] = field(default_factory=list)  # (ssrc, attribute, value)
    ssrc_groups: list[SsrcGroup] = field(default_factory=list)
    rids: list[Rid] = field(default_factory=list)
    simulcast: Simulcast | None = None
    candidates: list[str] = field(default_factory=list)
    end_of_candidates: bool = False
    bandwidth: list[str] = field(default_factory=list)
    extra: list[tuple[str, str | None]] = field(
        default_factory=list
    )  # unknown attributes, in order

    @property
    def active(self) -> bool:
        """Not rejected: a port other than 0, or port 0 with a=bundle-only (RFC 8843 section 6)."""
        return self.port != 0 or ("bundle-only", None) in self.extra

    @property
    def sends(self) -> bool:
        """An active audio or video m-section whose offerer sends media (sendrecv or sendonly)."""
        return (
            self.kind in ("audio", "video")
            and self.active
            and (self.direction or "sendrecv") in ("sendrecv", "sendonly")
        )

    def codec(self, payload_type: int) -> Codec | None:
        for codec in self.codecs:
            if codec.payload_type == payload_type:
                return codec
        return None

    def extmap_id(self, uri: str) -> int:
        for ext in self.extmaps:
            if ext.uri == uri:
                return ext.id
        return 0

    def ssrc_values(self) -> list[int]:
        seen: list[int] = []
        for ssrc, _, _ in self.ssrcs:
            if ssrc not in seen:
                seen.append(ssrc)
        return seen

    def rtx_payload_type(self, payload_type: int) -> int | None:
        for codec in self.codecs:
            if codec.name.lower() == "rtx" and codec.parameters.get("apt") == str(payload_type):
                return codec.payload_type
        return None


@dataclass
class SessionDescription:
    origin: str = "- 0 0 IN IP4 0.0.0.0"
    name: str = "-"
    timing: str = "0 0"
    connection: str | None = None
    ice_lite: bool = False
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: str | None = None
    fingerprint: tuple[str, str] | None = None
    setup: str | None = None
    groups: list[tuple[str, list[str]]] = field(default_factory=list)
    msid_semantic: str | None = None
    extra: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    @property
    def bundle_mids(self) -> list[str]:
        for semantics, mids in self.groups:
            if semantics == "BUNDLE":
                return mids
        return []

    def ice_credentials(self, media: MediaDescription) -> tuple[str, str]:
        """ICE ufrag and pwd for an m-line (media level wins over session level); SdpError if absent."""
        ufrag = media.ice_ufrag or self.ice_ufrag
        pwd = media.ice_pwd or self.ice_pwd
        if not ufrag or not pwd:
            raise SdpError("the SDP has no a=ice-ufrag / a=ice-pwd")
        return ufrag, pwd

    def dtls_fingerprint(self, media: MediaDescription) -> tuple[str, str]:
        fingerprint = media.fingerprint or self.fingerprint
        if fingerprint is None:
            raise SdpError("the SDP has no a=fingerprint (DTLS-SRTP is required)")
        return fingerprint

    def dtls_setup(self, media: MediaDescription) -> str:
        return media.setup or self.setup or "actpass"

    @staticmethod
    def parse(text: str) -> SessionDescription:
        return parse(text)

    def serialize(self) -> str:
        return serialize(self)


def parse_fmtp(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in value.split(";"):
        item = item.strip()
        if not item:
            continue
        key, _, val = item.partition("=")
        params[key.strip()] = val.strip()
    return params


def _fingerprint(value: str) -> tuple[str, str]:
    algorithm, _, digest = value.strip().partition(" ")
    if not digest:
        raise SdpError("malformed a=fingerprint")
    return algorithm.lower(), digest.strip().upper()


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SdpError(f"malformed {what}: {value[:40]!r}") from None


def _parse_media_attribute(media: MediaDescription, name: str, value: str | None) -> None:
    v = value or ""
    if name == "mid":
        media.mid = v
    elif name in DIRECTIONS:
        media.direction = name
    elif name == "ice-ufrag":
        media.ice_ufrag = v
    elif name == "ice-pwd":
        media.ice_pwd = v
    elif name == "ice-options":
        media.ice_options = v
    elif name == "fingerprint":
        media.fingerprint = _fingerprint(v)
    elif name == "setup":
        media.setup = v
    elif name == "rtcp-mux":
        media.rtcp_mux = True
    elif name == "rtcp-rsize":
        media.rtcp_rsize = True
    elif name == "msid":
        media.msid = v
    elif name == "rtpmap":
        pt_text, _, encoding = v.partition(" ")
        parts = encoding.split("/")
        if len(parts) < 2:
            raise SdpError(f"malformed a=rtpmap: {v[:40]!r}")
        pt = _int(pt_text, "a=rtpmap payload type")
        codec = media.codec(pt)
        channels = _int(parts[2], "a=rtpmap channels") if len(parts) > 2 else None
        if codec is None:
            media.codecs.append(Codec(pt, parts[0], _int(parts[1], "clock rate"), channels))
        else:
            codec.name, codec.clock_rate, codec.channels = (
                parts[0],
                _int(parts[1], "clock rate"),
                channels,
            )
    elif name == "fmtp":
        pt_text, _, params = v.partition(" ")
        codec = media.codec(_int(pt_text, "a=fmtp payload type"))
        if codec is not None:
            codec.fmtp = params.strip()
    elif name == "rtcp-fb":
        pt_text, _, feedback = v.partition(" ")
        if pt_text == "*":
            for codec in media.codecs:
                codec.rtcp_fb.append(feedback)
        else:
            codec = media.codec(_int(pt_text, "a=rtcp-fb payload type"))
            if codec is not None:
                codec.rtcp_fb.append(feedback)
    elif name == "extmap":
        id_text, _, rest = v.partition(" ")
        ext_id, _, direction = id_text.partition("/")
        uri = rest.split()[0] if rest.split() else ""
        media.extmaps.append(Extmap(_int(ext_id, "a=extmap id"), uri, direction or None))
    elif name == "ssrc":
        ssrc_text, _, attr = v.partition(" ")
        attr_name, _, attr_value = attr.partition(":")
        media.ssrcs.append((_int(ssrc_text, "a=ssrc"), attr_name, attr_value))
    elif name == "ssrc-group":
        tokens = v.split()
        if tokens:
            media.ssrc_groups.append(
                SsrcGroup(tokens[0], [_int(t, "a=ssrc-group") for t in tokens[1:]])
            )
    elif name == "rid":
        tokens = v.split(None, 2)
        if len(tokens) < 2:
            raise SdpError(f"malformed a=rid: {v[:40]!r}")
        media.rids.append(Rid(tokens[0], tokens[1], tokens[2] if len(tokens) > 2 else ""))
    elif name == "simulcast":
        media.simulcast = Simulcast.parse(v)
    elif name == "candidate":
        media.candidates.append(v)
    elif name == "end-of-candidates":
        media.end_of_candidates = True
    else:
        media.extra.append((name, value))


def parse(text: str) -> SessionDescription:
    """Parse an SDP text; unknown lines are kept, malformed essential lines raise SdpError."""
    if not isinstance(text, str) or "v=0" not in text[:16]:
        raise SdpError("not an SDP (it must start with v=0)")
    session = SessionDescription()
    media: MediaDescription | None = None
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            tokens = value.split()
            if len(tokens) < 3:
                raise SdpError(f"malformed m= line: {value[:40]!r}")
            port = _int(tokens[1].split("/")[0], "m= port")
            media = MediaDescription(tokens[0], port, tokens[2], tokens[3:])
            for token in media.fmt:
                # Declare every payload type up front so a=rtcp-fb / a=fmtp may precede a=rtpmap.
                if token.isdigit():
                    name, rate, channels = _STATIC_PAYLOAD_TYPES.get(int(token), ("", 0, None))
                    media.codecs.append(Codec(int(token), name, rate, channels))
            session.media.append(media)
        elif kind == "a":
            name, sep, attr_value = value.partition(":")
            attr: str | None = attr_value if sep else None
            if media is not None:
                _parse_media_attribute(media, name, attr)
            elif name == "ice-lite":
                session.ice_lite = True
            elif name == "ice-ufrag":
                session.ice_ufrag = attr
            elif name == "ice-pwd":
                session.ice_pwd = attr
            elif name == "ice-options":
                session.ice_options = attr
            elif name == "fingerprint":
                session.fingerprint = _fingerprint(attr or "")
            elif name == "setup":
                session.setup = attr
            elif name == "group":
                tokens = (attr or "").split()
                if tokens:
                    session.groups.append((tokens[0], tokens[1:]))
            elif name == "msid-semantic":
                session.msid_semantic = (attr or "").strip()
            else:
                session.extra.append((name, attr))
        elif media is not None:
            if kind == "c":
                media.connection = value
            elif kind == "b":
                media.bandwidth.append(value)
        elif kind == "o":
            session.origin = value
        elif kind == "s":
            session.name = value
        elif kind == "t":
            session.timing = value
        elif kind == "c":
            session.connection = value
    return session


def _attr(lines: list[str], name: str, value: str | None = None) -> None:
    lines.append(f"a={name}" if value is None else f"a={name}:{value}")


def serialize(session: SessionDescription) -> str:
    """Write an SDP with CRLF line ends, attributes in JSEP order."""
    lines = ["v=0", f"o={session.origin}", f"s={session.name}"]
    if session.connection:
        lines.append(f"c={session.connection}")
    lines.append(f"t={session.timing}")
    if session.ice_lite:
        _attr(lines, "ice-lite")
    for semantics, mids in session.groups:
        _attr(lines, "group", " ".join([semantics, *mids]))
    if session.msid_semantic:
        _attr(lines, "msid-semantic", session.msid_semantic)
    if session.ice_ufrag:
        _attr(lines, "ice-ufrag", session.ice_ufrag)
    if session.ice_pwd:
        _attr(lines, "ice-pwd", session.ice_pwd)
    if session.ice_options:
        _attr(lines, "ice-options", session.ice_options)
    if session.fingerprint:
        _attr(lines, "fingerprint", " ".join(session.fingerprint))
    if session.setup:
        _attr(lines, "setup", session.setup)
    for name, value in session.extra:
        _attr(lines, name, value)
    for media in session.media:
        _serialize_media(lines, media)
    return "\r\n".join(lines) + "\r\n"


def _serialize_media(lines: list[str], media: MediaDescription) -> None:
    fmt = media.fmt or [str(c.payload_type) for c in media.codecs] or ["0"]
    lines.append(f"m={media.kind} {media.port} {media.proto} {' '.join(fmt)}")
    if media.connection:
        lines.append(f"c={media.connection}")
    for bandwidth in media.bandwidth:
        lines.append(f"b={bandwidth}")
    for candidate in media.candidates:
        _attr(lines, "candidate", candidate)
    if media.end_of_candidates:
        _attr(lines, "end-of-candidates")
    if media.ice_ufrag:
        _attr(lines, "ice-ufrag", media.ice_ufrag)
    if media.ice_pwd:
        _attr(lines, "ice-pwd", media.ice_pwd)
    if media.ice_options:
        _attr(lines, "ice-options", media.ice_options)
    if media.fingerprint:
        _attr(lines, "fingerprint", " ".join(media.fingerprint))
    if media.setup:
        _attr(lines, "setup", media.setup)
    if media.mid is not None:
        _attr(lines, "mid", media.mid)
    for ext in media.extmaps:
        ext_id = f"{ext.id}/{ext.direction}" if ext.direction else str(ext.id)
        _attr(lines, "extmap", f"{ext_id} {ext.uri}")
    if media.direction:
        _attr(lines, media.direction)
    if media.msid:
        _attr(lines, "msid", media.msid)
    if media.rtcp_mux:
        _attr(lines, "rtcp-mux")
    if media.rtcp_rsize:
        _attr(lines, "rtcp-rsize")
    for codec in media.codecs:
        encoding = f"{codec.name}/{codec.clock_rate}"
        if codec.channels:
            encoding += f"/{codec.channels}"
        _attr(lines, "rtpmap", f"{codec.payload_type} {encoding}")
        for feedback in codec.rtcp_fb:
            _attr(lines, "rtcp-fb", f"{codec.payload_type} {feedback}")
        if codec.fmtp:
            _attr(lines, "fmtp", f"{codec.payload_type} {codec.fmtp}")
    for rid in media.rids:
        _attr(lines, "rid", f"{rid.id} {rid.direction} {rid.params}".rstrip())
    if media.simulcast is not None:
        _attr(lines, "simulcast", media.simulcast.serialize())
    for group in media.ssrc_groups:
        _attr(lines, "ssrc-group", " ".join([group.semantics, *map(str, group.ssrcs)]))
    for ssrc, attr_name, attr_value in media.ssrcs:
        _attr(
            lines,
            "ssrc",
            f"{ssrc} {attr_name}:{attr_value}" if attr_value else f"{ssrc} {attr_name}",
        )
    for name, value in media.extra:
        _attr(lines, name, value)
