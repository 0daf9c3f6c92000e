"""SIP, SIPS and tel URIs (RFC 3261 sections 19.1 and 25.1, RFC 3966, IPv6 references per RFC 5118)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

__all__ = ["SipParseError", "SipUri", "parse_host", "format_host"]

# RFC 3261 section 21: the reason phrases this package puts on the responses it asks for.
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}


def reason_phrase(status: int) -> str:
    """The RFC reason phrase for a status code, or the class's generic phrase."""
    phrase = REASON_PHRASES.get(status)
    if phrase is not None:
        return phrase
    return REASON_PHRASES.get(status - status % 100, "Unknown")


class SipParseError(ValueError):
    """Bytes or text that are not valid SIP; `status` and `reason` say what to answer a request with.

    The message (str(error)) explains what was wrong, for logs; it is never sent to the peer.
    """

    status: int = 400
    reason: str = "Bad Request"

    def __init__(self, message: str, status: int = 400, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason if reason is not None else reason_phrase(status)


_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_MARK = frozenset("-_.!~*'()")
_UNRESERVED = _ALNUM | _MARK
_USER_CHARS = _UNRESERVED | frozenset("&=+$,;?/")
_PASSWORD_CHARS = _UNRESERVED | frozenset("&=+$,")
_PARAM_CHARS = _UNRESERVED | frozenset("[]/:&+$")
_HEADER_CHARS = _UNRESERVED | frozenset("[]/?:+$")
_TEL_CHARS = frozenset("0123456789abcdefABCDEF*#+-.()pPwW")
_PERCENT = frozenset("%")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_URI_FORBIDDEN_RE = re.compile(r'[\x00-\x20<>"\\{}|^`\x7f]')
_SCHEME_CHARS = _ALNUM | frozenset("+-.")
_MAX_PORT = 65535


_CLASS_PATTERNS: dict[frozenset[str], re.Pattern[str]] = {}
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _class_pattern(allowed: frozenset[str]) -> re.Pattern[str]:
    pattern = _CLASS_PATTERNS.get(allowed)
    if pattern is None:
        pattern = re.compile("[" + re.escape("".join(sorted(allowed))) + "]*")
        _CLASS_PATTERNS[allowed] = pattern
    return pattern


def _unescape(text: str, allowed: frozenset[str], what: str) -> str:
    """Check `text` against the allowed characters and decode %HH escapes (as UTF-8)."""
    if "%" not in text:
        if _class_pattern(allowed).fullmatch(text) is None:
            raise SipParseError(f"invalid character in URI {what}")
        return text
    if _class_pattern(allowed | _PERCENT).fullmatch(text) is None:
        raise SipParseError(f"invalid character in URI {what}")
    if _BAD_ESCAPE.search(text):
        raise SipParseError(f"bad escape in URI {what}")
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError(f"escaped URI {what} is not UTF-8") from None


def _escape(text: str, allowed: frozenset[str]) -> str:
    if _class_pattern(allowed).fullmatch(text) is not None:
        return text
    return "".join(
        char if char in allowed else "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
        for char in text
    )


def parse_host(text: str) -> str:
    """Validate a host: a hostname, an IPv4 address or a bracketed IPv6 reference (RFC 5118).

    The host is returned as written (IPv6 references keep their brackets).
    """
    if not text:
        raise SipParseError("empty host")
    if text[0] == "[":
        if text[-1] != "]" or "%" in text:
            raise SipParseError("malformed IPv6 reference")
        if not _is_ipv6(text[1:-1]):
            raise SipParseError("malformed IPv6 reference")
        return text
    if _HOSTNAME_RE.fullmatch(text) is None:
        raise SipParseError("invalid character in host")
    if text[0] in "-." or ".." in text:
        raise SipParseError("malformed host name")
    return text


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
        return True
    except ValueError:
        pass
    # RFC 3261's IPv6address ABNF allows "2001:db8:::192.0.2.1" (three colons before an embedded
    # IPv4 address); RFC 5118 4.10 says to tolerate it. Nothing else non-RFC 4291 gets in.
    head, sep, tail = text.rpartition(":::")
    if not sep or ":" in tail or "." not in tail:
        return False
    try:
        ipaddress.IPv6Address(f"{head}::{tail}")
        return True
    except ValueError:
        return False


def format_host(host: str) -> str:
    """A host ready for a URI or Via: bare IPv6 addresses get their brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def split_hostport(text: str) -> tuple[str, int | None]:
    """Split `host[:port]` (IPv6 references bracketed) into a validated host and port."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and rest[0] != ":":
            raise SipParseError("garbage after IPv6 reference")
    else:
        colon = text.find(":")
        if colon < 0:
            host, rest = text, ""
        else:
            host, rest = text[:colon], text[colon:]
    port: int | None = None
    if rest:
        digits = rest[1:]
        if not digits.isascii() or not digits.isdigit() or len(digits) > 5:
            raise SipParseError("malformed port")
        port = int(digits)
        if port > _MAX_PORT:
            raise SipParseError("port out of range")
    return parse_host(host), port


def _parse_uri_params(text: str, what: str = "parameter") -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name:
            raise SipParseError(f"empty URI {what} name")
        key = _unescape(name, _PARAM_CHARS, what).lower()
        if key in params:
            raise SipParseError(f"duplicate URI {what} {key!r}")
        if eq:
            if not value:
                raise SipParseError(f"empty URI {what} value")
            params[key] = _unescape(value, _PARAM_CHARS, what)
        else:
            params[key] = None
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(
        f";{_escape(name, _PARAM_CHARS)}"
        if value is None
        else f";{_escape(name, _PARAM_CHARS)}={_escape(value, _PARAM_CHARS)}"
        for name, value in params.items()
    )


@dataclass
class SipUri:
    """A sip:, sips: or tel: URI; user, password, parameters and headers are held unescaped.

    For a tel: URI the telephone number is in `host` and `user` is None.
    """

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def parse(value: str) -> SipUri:
        """Parse a URI as it appears in a Request-URI or inside <...>; raises SipParseError."""
        scheme, colon, rest = value.partition(":")
        scheme = scheme.lower()
        if not colon:
            raise SipParseError("URI without a scheme")
        if scheme == "tel":
            return _parse_tel(rest)
        if scheme not in ("sip", "sips"):
            raise SipParseError(f"unsupported URI scheme {scheme[:20]!r}", 416)
        user: str | None = None
        password: str | None = None
        at = rest.rfind("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            raw_user, has_password, raw_password = userinfo.partition(":")
            if not raw_user:
                raise SipParseError("empty user in URI")
            user = _unescape(raw_user, _USER_CHARS, "user")
            if has_password:
                password = _unescape(raw_password, _PASSWORD_CHARS, "password")
        headers: dict[str, str] = {}
        rest, question, raw_headers = rest.partition("?")
        if question:
            for item in raw_headers.split("&"):
                name, eq, header_value = item.partition("=")
                if not name or not eq:
                    raise SipParseError("malformed URI header")
                key = _unescape(name, _HEADER_CHARS, "header")
                if key in headers:
                    raise SipParseError(f"duplicate URI header {key[:20]!r}")
                headers[key] = _unescape(header_value, _HEADER_CHARS, "header")
        hostport, semicolon, raw_params = rest.partition(";")
        params = _parse_uri_params(raw_params) if semicolon else {}
        host, port = split_hostport(hostport)
        return SipUri(scheme, user, password, host, port, params, headers)

    @property
    def transport(self) -> str | None:
        """The transport parameter, lower case, if any."""
        value = self.params.get("transport")
        return value.lower() if value else None

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.host}{_format_params(self.params)}"
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(_escape(self.user, _USER_CHARS))
            if self.password is not None:
                parts += [":", _escape(self.password, _PASSWORD_CHARS)]
            parts.append("@")
        parts.append(format_host(self.host))
        if self.port is not None:
            parts.append(f":{self.port}")
        parts.append(_format_params(self.params))
        if self.headers:
            parts.append("?")
            parts.append(
                "&".join(
                    f"{_escape(name, _HEADER_CHARS)}={_escape(value, _HEADER_CHARS)}"
                    for name, value in self.headers.items()
                )
            )
        return "".join(parts)


def _parse_tel(rest: str) -> SipUri:
    number, semicolon, raw_params = rest.partition(";")
    if not number or any(char not in _TEL_CHARS for char in number):
        raise SipParseError("malformed tel: URI number")
    params = _parse_uri_params(raw_params) if semicolon else {}
    return SipUri("tel", None, None, number, None, params, {})


def check_absolute_uri(value: str) -> None:
    """Check the generic absoluteURI shape (RFC 3261 25.1) of a URI whose scheme we do not know."""
    scheme, colon, rest = value.partition(":")
    if (
        not colon
        or not scheme
        or not scheme[0].isascii()
        or not scheme[0].isalpha()
        or any(char not in _SCHEME_CHARS for char in scheme)
        or not rest
    ):
        raise SipParseError("malformed URI")
    if _URI_FORBIDDEN_RE.search(rest):
        raise SipParseError("invalid character in URI")


# Dial targets: what a host or an operator types to call someone out of a room ----------------

MAX_DIAL_TARGET = 256
MAX_NUMBER_DIGITS = 32
DIAL_URI_PARAMS = {"transport": ("udp", "tcp", "tls"), "user": ("phone", "ip")}
"""The only URI parameters a dial target may carry; anything else could steer the request."""
_NUMBER_SEPARATORS = str.maketrans("", "", " -.()")
_NUMBER_RE = re.compile(r"\+?[0-9]+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def parse_dial_target(text: str) -> SipUri:
    """A target typed to call out, checked so that nothing but the URI reaches the INVITE.

    ``tel:NUMBER`` or a bare number (digits, a leading ``+``, spaces, dots, dashes and brackets as
    separators, no parameters) gives a ``tel`` SipUri holding the digits; ``sip:``/``sips:`` gives
    the URI without headers or password, and with no parameter but ``transport`` and ``user``.
    Raises SipParseError saying what is wrong, without echoing the target.
    """
    text = text.strip()
    if not text or len(text) > MAX_DIAL_TARGET:
        raise SipParseError(f"the target is 1 to {MAX_DIAL_TARGET} characters")
    if _CONTROL_RE.search(text):
        raise SipParseError("the target contains control characters (CR, LF, ...)")
    if not text.isascii():
        raise SipParseError("the target contains non-ASCII characters")
    scheme, colon, rest = text.partition(":")
    if not colon or scheme.lower() == "tel":
        return _dial_number(rest if colon else text)
    if scheme.lower() not in ("sip", "sips"):
        raise SipParseError("the target is not a sip:, sips: or tel: URI, nor a number")
    uri = SipUri.parse(text)
    if uri.headers:
        raise SipParseError("the target may not carry headers ('?' in the URI)")
    if uri.password is not None:
        raise SipParseError("the target may not carry a password")
    if uri.user is not None and _CONTROL_RE.search(uri.user):
        raise SipParseError("the target contains control characters (CR, LF, ...)")
    for name, value in uri.params.items():
        allowed = DIAL_URI_PARAMS.get(name)
        if allowed is None:
            raise SipParseError(
                f"the target may carry no URI parameter but {', '.join(DIAL_URI_PARAMS)}"
            )
        if value is None or value.lower() not in allowed:
            raise SipParseError(f"the target's '{name}' parameter is one of {', '.join(allowed)}")
    return uri


def _dial_number(text: str) -> SipUri:
    if ";" in text:
        raise SipParseError("a telephone number may not carry parameters (';')")
    number = text.translate(_NUMBER_SEPARATORS)
    if _NUMBER_RE.fullmatch(number) is None or len(number.lstrip("+")) > MAX_NUMBER_DIGITS:
        raise SipParseError(
            f"a telephone number is up to {MAX_NUMBER_DIGITS} digits, with an optional leading '+'"
        )
    return SipUri("tel", None, None, number)
