"""SIP messages, sans-I/O: parse and serialize requests and responses (RFC 3261 sections 7, 18.3, 20, 25).

Datagrams go through parse_message(); streams (TCP, TLS) through StreamReader, which frames by
Content-Length. Both check what the torture tests of RFC 4475 and RFC 5118 ask a parser to refuse,
and raise SipParseError (carrying the status to answer) for anything else that is not SIP.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from protocols.sip.uri import (
    SipParseError,
    SipUri,
    check_absolute_uri,
    format_host,
    reason_phrase,
    split_hostport,
)

__all__ = [
    "CSeq",
    "Headers",
    "NameAddress",
    "Request",
    "Response",
    "SipParseError",
    "StreamReader",
    "Via",
    "make_response",
    "parse_message",
    "serialize",
]

# RFC 3261 7.3.3 and the IANA registry: compact form -> full name.
_COMPACT_FORMS = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "e": "Content-Encoding",
    "k": "Supported",
    "s": "Subject",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "u": "Allow-Events",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
    "n": "Identity-Info",
}

_KNOWN_NAMES = [
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "Min-Expires",
    "Min-SE",
    "MIME-Version",
    "Organization",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Service-Route",
    "Session-Expires",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
]
_CANONICAL = {name.lower(): name for name in _KNOWN_NAMES}

# Headers whose grammar is a comma-separated list (RFC 3261 7.3.1); get_all() splits these.
_LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Path",
        "Privacy",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Reject-Contact",
        "Require",
        "Route",
        "Service-Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    )
)

# Headers that must appear at most once (RFC 4475 3.1.2.x multi01, mcl01).
_SINGLE_HEADERS = (
    "to",
    "from",
    "call-id",
    "cseq",
    "max-forwards",
    "content-length",
    "content-type",
)
_REQUIRED_HEADERS = ("via", "to", "from", "call-id", "cseq")

_TOKEN_RE = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_GEN_VALUE_RE = re.compile(r"[A-Za-z0-9.!%*_+`'~\[\]:-]+")
_URI_BREAK_RE = re.compile(r'[ \t<>"]')
_LWS_RE = re.compile(r"[ \t]")
_MAX_UINT32 = 2**32 - 1
_MAX_CSEQ = 2**31 - 1
MAX_HEAD_SIZE = 65536
MAX_BODY_SIZE = 1 << 20


def canonical_name(name: str) -> str:
    """The full, conventionally capitalised header name (compact forms expanded)."""
    lower = name.lower()
    if len(lower) == 1:
        expanded = _COMPACT_FORMS.get(lower)
        if expanded is not None:
            return expanded
    return _CANONICAL.get(lower, name)


def _is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def _split_outside(value: str, separator: str) -> list[str]:
    """Split on `separator` where it is outside quoted strings and <...>; raises on an open quote."""
    if '"' not in value and "<" not in value:
        return value.split(separator)
    parts: list[str] = []
    start = 0
    i = 0
    length = len(value)
    in_angle = False
    while i < length:
        char = value[i]
        if char == '"' and not in_angle:
            i += 1
            while i < length and value[i] != '"':
                i += 2 if value[i] == "\\" else 1
            if i >= length:
                raise SipParseError("unterminated quoted string")
        elif char == "<":
            in_angle = True
        elif char == ">":
            in_angle = False
        elif char == separator and not in_angle:
            parts.append(value[start:i])
            start = i + 1
        i += 1
    parts.append(value[start:])
    return parts


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted string opening at text[start]; return its unescaped content and the end."""
    out: list[str] = []
    i = start + 1
    length = len(text)
    while i < length:
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\":
            if i + 1 >= length:
                break
            out.append(text[i + 1])
            i += 2
            continue
        out.append(char)
        i += 1
    raise SipParseError("unterminated quoted string")


_NEEDS_QUOTED_PAIR = re.compile(r'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f"\\]')


def _quote(text: str) -> str:
    """A quoted-string; quotes, backslashes and control characters become quoted-pairs."""
    if "\r" in text or "\n" in text:
        raise ValueError("a quoted string cannot carry CR or LF")
    return '"' + _NEEDS_QUOTED_PAIR.sub(lambda match: "\\" + match.group(), text) + '"'


def _parse_header_params(text: str) -> dict[str, str | None]:
    """Parse `;name[=value]` parameters of a header value (generic-param, RFC 3261 25.1).

    Names are lower-cased; quoted values keep their quotes so they serialize unchanged.
    """
    params: dict[str, str | None] = {}
    for item in _split_outside(text, ";"):
        name, eq, value = item.partition("=")
        name = name.strip(" \t").lower()
        if not _is_token(name):
            raise SipParseError("malformed header parameter")
        if name in params:
            raise SipParseError(f"duplicate header parameter {name[:20]!r}")
        if not eq:
            params[name] = None
            continue
        value = value.strip(" \t")
        if value.startswith('"'):
            _, end = _read_quoted(value, 0)
            if end != len(value):
                raise SipParseError("garbage after quoted parameter value")
        elif _GEN_VALUE_RE.fullmatch(value) is None:
            raise SipParseError(f"malformed value of header parameter {name[:20]!r}")
        params[name] = value
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(
        f";{name}" if value is None else f";{name}={value}" for name, value in params.items()
    )


def _parse_name_addr(value: str) -> tuple[str | None, str, dict[str, str | None], bool]:
    """Split a name-addr or addr-spec (RFC 3261 20.10) into display name, URI text, params, angled."""
    text = value.strip(" \t")
    if not text:
        raise SipParseError("empty address")
    display: str | None = None
    if text[0] == '"':
        display, end = _read_quoted(text, 0)
        rest = text[end:].lstrip(" \t")
        if not rest.startswith("<"):
            raise SipParseError("quoted display name without <URI>")
    else:
        lt = text.find("<")
        if lt < 0:
            rest = ""
        else:
            words = text[:lt].split()
            if not all(_is_token(word) for word in words):
                raise SipParseError("display name is neither tokens nor a quoted string")
            display = " ".join(words) or None
            rest = text[lt:]
    if rest:
        gt = rest.find(">")
        if gt < 0:
            raise SipParseError("unterminated <URI>")
        uri_text = rest[1:gt]
        after = rest[gt + 1 :].strip(" \t")
        angled = True
    else:
        uri_text, semicolon, after = text.partition(";")
        uri_text = uri_text.rstrip(" \t")
        after = semicolon + after
        angled = False
        if "," in uri_text or "?" in uri_text:
            raise SipParseError("a URI with ',' or '?' must be enclosed in <>")
    if not uri_text or _URI_BREAK_RE.search(uri_text):
        raise SipParseError("malformed URI in address")
    params: dict[str, str | None] = {}
    if after:
        if after[0] != ";":
            raise SipParseError("garbage after address")
        params = _parse_header_params(after[1:])
    return display, uri_text, params, angled


def _check_address(value: str) -> dict[str, str | None]:
    """Syntax-check an address whose URI may have any scheme (RFC 4475 unksm2); return its params."""
    _, uri_text, params, _ = _parse_name_addr(value)
    if uri_text.partition(":")[0].lower() in ("sip", "sips", "tel"):
        SipUri.parse(uri_text)
    else:
        check_absolute_uri(uri_text)
    return params


class Headers:
    """An ordered multi-map of header fields with case-insensitive names.

    Compact forms are expanded on the way in; serialization uses full names.
    """

    __slots__ = ("_fields",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str, str]] = []
        for name, value in items:
            self.add(name, value)

    def get(self, name: str) -> str | None:
        """The first value of the header, as received (not split)."""
        key = canonical_name(name).lower()
        for field_key, _, value in self._fields:
            if field_key == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value, in order; list headers (Via, Contact, Route...) split on their commas."""
        key = canonical_name(name).lower()
        values = [value for field_key, _, value in self._fields if field_key == key]
        if key not in _LIST_HEADERS:
            return values
        split: list[str] = []
        for value in values:
            for part in _split_outside(value, ","):
                part = part.strip(" \t")
                if part:
                    split.append(part)
        return split

    def add(self, name: str, value: str) -> None:
        """Append a header field."""
        if "\r" in value or "\n" in value:
            raise ValueError("header values must not contain CR or LF")
        canonical = canonical_name(name)
        self._fields.append((canonical.lower(), canonical, value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of that name with one value (kept at the first one's place)."""
        key = canonical_name(name).lower()
        for index, (field_key, _, _) in enumerate(self._fields):
            if field_key == key:
                self.remove(name)
                self.add(name, value)
                self._fields.insert(index, self._fields.pop())
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        """Remove every field of that name."""
        key = canonical_name(name).lower()
        self._fields = [item for item in self._fields if item[0] != key]

    def items(self) -> list[tuple[str, str]]:
        """Every field as (full name, value), in order."""
        return [(name, value) for _, name, value in self._fields]

    def copy(self) -> Headers:
        """An independent copy."""
        clone = Headers()
        clone._fields = list(self._fields)
        return clone

    def count(self, name: str) -> int:
        """How many fields of that name (not values) there are."""
        key = canonical_name(name).lower()
        return sum(1 for item in self._fields if item[0] == key)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name).lower()
        return any(item[0] == key for item in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self.items() == other.items()

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


@dataclass
class Request:
    """A SIP request; `uri` is the Request-URI as text (SipUri.parse it when it is sip/sips/tel)."""

    method: str
    uri: str
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"


@dataclass
class Response:
    """A SIP response."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"


@dataclass
class Via:
    """One Via value (RFC 3261 20.42); `host` keeps IPv6 brackets, params are lower-case names."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @staticmethod
    def parse(value: str) -> Via:
        """Parse one Via value (split a multi-valued header with Headers.get_all first)."""
        head, semicolon, raw_params = value.partition(";")
        parts = head.split("/")
        if len(parts) != 3:
            raise SipParseError("malformed Via sent-protocol")
        if parts[0].strip(" \t").upper() != "SIP" or parts[1].strip(" \t") != "2.0":
            raise SipParseError("Via protocol is not SIP/2.0")
        words = parts[2].split()
        if len(words) < 2 or not _is_token(words[0]):
            raise SipParseError("malformed Via transport or sent-by")
        sent_by = words[1]
        for word in words[2:]:
            # COLON is SWS ":" SWS: spaces are allowed only around the port's colon.
            if not (sent_by.endswith(":") or word.startswith(":")):
                raise SipParseError("malformed Via sent-by")
            sent_by += word
        host, port = split_hostport(sent_by)
        params = _parse_header_params(raw_params) if semicolon else {}
        return Via(words[0].upper(), host, port, params)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> str | None:
        """None when absent, "" when present without a value (RFC 3581 request), else the port."""
        if "rport" not in self.params:
            return None
        return self.params["rport"] or ""

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return (
            f"SIP/2.0/{self.transport} {format_host(self.host)}{port}{_format_params(self.params)}"
        )


@dataclass
class NameAddress:
    """A name-addr or addr-spec (To, From, Contact, Route...): display name, URI, header params."""

    display_name: str | None
    uri: SipUri
    params: dict[str, str | None] = field(default_factory=dict)

    @staticmethod
    def parse(value: str) -> NameAddress:
        """Parse one address; a URI scheme other than sip/sips/tel raises SipParseError(416)."""
        display, uri_text, params, _ = _parse_name_addr(value)
        return NameAddress(display, SipUri.parse(uri_text), params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        uri = f"<{self.uri}>"
        if self.display_name is not None:
            uri = f"{_quote(self.display_name)} {uri}"
        return uri + _format_params(self.params)


@dataclass
class CSeq:
    """The CSeq value (RFC 3261 20.16): a sequence number below 2**31 and a method."""

    number: int
    method: str

    @staticmethod
    def parse(value: str) -> CSeq:
        words = value.split()
        if len(words) != 2:
            raise SipParseError("malformed CSeq")
        number, method = words
        if not number.isascii() or not number.isdigit() or len(number.lstrip("0")) > 10:
            raise SipParseError("malformed CSeq number")
        if int(number) > _MAX_CSEQ:
            raise SipParseError("CSeq number too large")
        if not _is_token(method):
            raise SipParseError("malformed CSeq method")
        return CSeq(int(number), method)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def _parse_uint(value: str, what: str, limit: int) -> int:
    text = value.strip(" \t")
    if not text.isascii() or not text.isdigit():
        raise SipParseError(f"malformed {what}")
    if len(text.lstrip("0")) > 10 or int(text) > limit:
        raise SipParseError(f"{what} out of range")
    return int(text)


def _check_request_uri(uri: str) -> None:
    scheme = uri[:5].lower()
    if scheme.startswith(("sip:", "sips:", "tel:")):
        parsed = SipUri.parse(uri)
        if parsed.headers and parsed.scheme != "tel":
            # RFC 3261 19.1.1: headers are not allowed in a Request-URI (RFC 4475 escruri).
            raise SipParseError("headers in the Request-URI")
    else:
        check_absolute_uri(uri)


def _parse_start_line(line: str, headers: Headers) -> Request | Response:
    if line.startswith("SIP/") or line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        _check_version(version)
        code, _, reason = rest.partition(" ")
        if len(code) != 3 or not code.isascii() or not code.isdigit() or not "1" <= code[0] <= "6":
            raise SipParseError("malformed status code")
        return Response(int(code), reason, headers, b"", version.upper())
    parts = line.split(" ")
    if len(parts) != 3:
        # Extra spaces (RFC 4475 lwsstart, trws) or spaces inside the URI (lwsruri).
        raise SipParseError("malformed Request-Line")
    method, uri, version = parts
    if not _is_token(method):
        raise SipParseError("malformed method")
    _check_version(version)
    _check_request_uri(uri)
    return Request(method, uri, headers, b"", version.upper())


def _check_version(version: str) -> None:
    upper = version.upper()
    if upper == "SIP/2.0":
        return
    major, dot, minor = upper[4:].partition(".")
    if upper.startswith("SIP/") and dot and major.isdigit() and minor.isdigit():
        raise SipParseError(f"SIP version {version[:16]!r} not supported", 505)
    raise SipParseError("malformed SIP version")


def _parse_head(head: bytes) -> Request | Response:
    """Parse the start line and header fields (everything before the empty line)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("header section is not UTF-8") from None
    lines = text.split("\r\n")
    fields: list[list[str]] = []
    for line in lines[1:]:
        if not line:
            raise SipParseError("empty header line")
        if line[0] in " \t":
            if not fields:
                raise SipParseError("continuation line before any header")
            # LWS folding (RFC 3261 7.3.1): the CRLF and leading whitespace are one SP.
            fields[-1].append(line.strip(" \t"))
        else:
            fields.append([line])
    headers = Headers()
    for parts in fields:
        line = " ".join(parts) if len(parts) > 1 else parts[0]
        if "\r" in line or "\n" in line:
            raise SipParseError("bare CR or LF in header")
        colon = line.find(":")
        if colon < 0:
            raise SipParseError("header line without a colon")
        name = line[:colon].rstrip(" \t")
        if not _is_token(name):
            raise SipParseError("malformed header name")
        value = line[colon + 1 :].strip(" \t")
        canonical = canonical_name(name)
        headers._fields.append((canonical.lower(), canonical, value))
    start_line = lines[0]
    if "\n" in start_line or "\r" in start_line:
        raise SipParseError("bare CR or LF in start line")
    message = _parse_start_line(start_line, headers)
    _validate(message)
    return message


def _validate(message: Request | Response) -> None:
    """Refuse what RFC 4475 asks parsers to refuse; leave TU decisions (416, 420, 483...) to the TU."""
    headers = message.headers
    counts: dict[str, int] = {}
    for key, _, _ in headers._fields:
        counts[key] = counts.get(key, 0) + 1
    for key in _REQUIRED_HEADERS:
        if key not in counts:
            raise SipParseError(f"missing {canonical_name(key)} header")
    for key in _SINGLE_HEADERS:
        if counts.get(key, 0) > 1:
            raise SipParseError(f"{canonical_name(key)} header appears more than once")
    vias = headers.get_all("Via")
    if not vias:
        raise SipParseError("empty Via header")
    for via in vias:
        Via.parse(via)
    cseq = CSeq.parse(headers.get("CSeq") or "")
    if isinstance(message, Request) and cseq.method != message.method:
        raise SipParseError("CSeq method does not match the request method")
    for name in ("To", "From"):
        _check_address(headers.get(name) or "")
    call_id = headers.get("Call-ID") or ""
    if not call_id or _LWS_RE.search(call_id):
        raise SipParseError("malformed Call-ID")
    if "max-forwards" in counts:
        _parse_uint(headers.get("Max-Forwards") or "", "Max-Forwards", 255)
    if "expires" in counts:
        _parse_uint(headers.get("Expires") or "", "Expires", _MAX_UINT32)
    if "content-length" in counts:
        _parse_uint(headers.get("Content-Length") or "", "Content-Length", _MAX_UINT32)
    if "contact" in counts:
        contacts = headers.get_all("Contact")
        for contact in contacts:
            if contact == "*":
                if len(contacts) != 1:
                    raise SipParseError("Contact * must stand alone")
                continue
            expires = _check_address(contact).get("expires")
            if expires is not None:
                _parse_uint(expires, "Contact expires", _MAX_UINT32)
    if "retry-after" in counts:
        retry_after = headers.get("Retry-After") or ""
        _parse_uint(retry_after.split(";")[0].split("(")[0], "Retry-After", _MAX_UINT32)
    # RFC 3261 20.17: SIP-date is RFC 1123 with "GMT" only (RFC 4475 baddate).
    if "date" in counts and not (headers.get("Date") or "").endswith(" GMT"):
        raise SipParseError("Date must be in GMT")


def _content_length(headers: Headers) -> int | None:
    value = headers.get("Content-Length")
    if value is None:
        return None
    return _parse_uint(value, "Content-Length", _MAX_UINT32)


def parse_message(data: bytes) -> Request | Response:
    """Parse one datagram (RFC 3261 18.3): a body beyond Content-Length is dropped, a short one refused."""
    data = bytes(data)
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end >= 0:
        head, body = data[start:end], data[end + 4 :]
    elif data.endswith(b"\r\n") and len(data) > start:
        # No empty line after the headers: treat as a message without body.
        head, body = data[start:-2], b""
    else:
        raise SipParseError("no end of header section")
    if len(head) > MAX_HEAD_SIZE:
        raise SipParseError("header section too large", 513)
    message = _parse_head(head)
    length = _content_length(message.headers)
    if length is not None:
        if len(body) < length:
            raise SipParseError("body shorter than Content-Length")
        body = body[:length]
    message.body = body
    return message


def serialize(message: Request | Response) -> bytes:
    """The message's bytes, with full header names and Content-Length set from the body."""
    if isinstance(message, Request):
        start_line = f"{message.method} {message.uri} {message.version}"
    else:
        start_line = f"{message.version} {message.status:03d} {message.reason}"
    if "\r" in start_line or "\n" in start_line:
        raise ValueError("the start line must not contain CR or LF")
    body = message.body
    lines = [start_line]
    length_written = False
    for key, name, value in message.headers._fields:
        if key == "content-length":
            if length_written:
                continue
            value = str(len(body))
            length_written = True
        lines.append(f"{name}: {value}")
    if not length_written:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("")
    lines.append("")
    return "\r\n".join(lines).encode("utf-8") + body


class StreamReader:
    """Frames SIP messages on a stream transport (TCP, TLS) by Content-Length (RFC 3261 18.3).

    CRLF keep-alives between messages (RFC 5626 4.4.1) are skipped. After a SipParseError the
    stream cannot be resynchronised: close the connection.
    """

    def __init__(self, max_head_size: int = MAX_HEAD_SIZE, max_body_size: int = MAX_BODY_SIZE):
        self._buffer = bytearray()
        self._searched = 0
        self._pending: Request | Response | None = None
        self._body_start = 0
        self._total = 0
        self._max_head_size = max_head_size
        self._max_body_size = max_body_size

    @property
    def in_message(self) -> bool:
        """Whether part of a message has arrived (CRLF keep-alives are no message)."""
        return self._pending is not None or bool(self._buffer.strip(b"\r\n"))

    def buffered(self) -> bytes:
        """The bytes not framed yet, up to a head's worth (to answer a refused message)."""
        return bytes(self._buffer[: self._max_head_size + 4])

    def feed(self, data: bytes) -> list[Request | Response]:
        """Add received bytes; return the messages they complete. Raises SipParseError on garbage."""
        buffer = self._buffer
        buffer += data
        messages: list[Request | Response] = []
        while True:
            if self._pending is None:
                skip = 0
                while buffer[skip : skip + 2] == b"\r\n":
                    skip += 2
                if skip:
                    del buffer[:skip]
                    self._searched = 0
                end = buffer.find(b"\r\n\r\n", max(0, self._searched - 3))
                if end < 0:
                    self._searched = len(buffer)
                    if len(buffer) > self._max_head_size:
                        raise SipParseError("header section too large", 513)
                    break
                if end > self._max_head_size:
                    raise SipParseError("header section too large", 513)
                message = _parse_head(bytes(buffer[:end]))
                length = _content_length(message.headers)
                if length is None:
                    raise SipParseError("Content-Length is mandatory on stream transports")
                if length > self._max_body_size:
                    raise SipParseError("body too large", 413)
                self._pending = message
                self._body_start = end + 4
                self._total = end + 4 + length
            if len(buffer) < self._total:
                break
            message = self._pending
            message.body = bytes(buffer[self._body_start : self._total])
            del buffer[: self._total]
            self._pending = None
            self._searched = 0
            messages.append(message)
        return messages


def make_response(
    request: Request, status: int, reason: str | None = None, to_tag: str | None = None
) -> Response:
    """A response to `request` (RFC 3261 8.2.6): Via(s), From, To (+ tag), Call-ID, CSeq copied."""
    headers = Headers()
    fields = request.headers._fields
    for key in ("via", "from", "to", "call-id", "cseq"):
        for field_key, name, value in fields:
            if field_key != key:
                continue
            if key == "to" and to_tag is not None and not _has_tag(value):
                value = f"{value};tag={to_tag}"
            headers._fields.append((field_key, name, value))
    if status == 100:
        # RFC 3261 8.2.6.1: a 100 Trying echoes Timestamp.
        for field_key, name, value in fields:
            if field_key == "timestamp":
                headers._fields.append((field_key, name, value))
    return Response(status, reason if reason is not None else reason_phrase(status), headers)


def _has_tag(address: str) -> bool:
    try:
        return "tag" in _parse_name_addr(address)[2]
    except SipParseError:
        return ";tag=" in address.lower()
