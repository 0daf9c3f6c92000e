"""The SIP plugin's configuration section ``[sip]`` (docs/configuration.md), read by gateway/config.py."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from gateway.config import (
    ConfigError,
    check_addresses,
    check_choices,
    check_ports,
    check_positive,
)

DISPATCH_NUMBER = re.compile(r"\*|\+?[0-9A-Za-z.\-_]{1,64}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DOMAIN = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
"""A host name (RFC 1123 labels), for ``sip.domain``."""
LANGUAGES = ("fr", "en")


@dataclass
class DispatchRuleConfig:
    """A ``[[sip.dispatch]]`` table: a dialled number or SIP user -> a room, or the PIN prompt."""

    number: str = ""
    room: str = ""
    """Empty: the caller is asked for a PIN. ``visio:UUID``: that Visio room."""
    language: str = ""
    pin: str = ""
    """Optional: typed before entering; typed at any PIN prompt it reaches this rule's room."""


@dataclass
class SipConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    """Address the SIP UDP and TCP listeners bind to."""
    port: int = 5060
    tls_port: int = 0
    """SIP over TLS (RFC 5630 sips: and transport=tls) on this port; 0 turns it off."""
    tls_cert: str = ""
    tls_key: str = ""
    tls_min_version: str = "1.2"
    public_ip: str = ""
    """Address written in Via, Contact and SDP for peers behind NAT; empty means sip.host."""
    domain: str = ""
    """Host name of the SIP URIs shown to participants (sip:ROOM@domain, ORS dial-in, spec 4.5),
    as DNS leads callers here; empty: public_ip (else host) and the port when it is not 5060."""
    rtp_port_start: int = 20000
    rtp_port_end: int = 20999
    language: str = "fr"
    """Prompts for callers when a dispatch rule names none: fr or en."""
    mask_numbers: bool = True
    """Show callers as "Phone ••• 42" rather than their full number."""
    pin_attempts: int = 3
    allow_anonymous: bool = True
    """Whether calls from addresses that are no trunk's may dial rooms by name (sip:ROOM@host)."""
    failures_before_ban: int = 10
    ban_seconds: int = 600
    tcp_idle_seconds: int = 60
    """A SIP connection (TCP, TLS) silent this long with no call on it is closed."""
    tcp_message_seconds: int = 10
    """A message on a SIP connection must arrive whole within this from its first byte."""
    tcp_connections_per_address: int = 10
    """SIP connections one address may hold at once (trunks' addresses: no cap of their own)."""
    tcp_max_connections: int = 1000
    """SIP connections held at once per listener."""
    dispatch: list[DispatchRuleConfig] = field(default_factory=list)
    """Dispatch rules from the file; rules made through the admin API win for the same number."""
    dns_servers: list[str] = field(default_factory=list)
    """Name servers for dialling SIP domains (RFC 3263), "IP" or "IP:PORT"; empty: the system's."""

    def validate(self, where: str) -> None:
        """ConfigError naming the file and the key of the first value that cannot be used."""
        check_choices(
            self, "sip", where, {"language": LANGUAGES, "tls_min_version": ("1.2", "1.3")}
        )
        check_ports(self, "sip", where, ("port", "rtp_port_start", "rtp_port_end"))
        check_positive(
            self,
            "sip",
            where,
            (
                "pin_attempts",
                "failures_before_ban",
                "ban_seconds",
                "tcp_idle_seconds",
                "tcp_message_seconds",
                "tcp_connections_per_address",
                "tcp_max_connections",
            ),
        )
        check_addresses(self, "sip", where, ("host",))
        check_addresses(self, "sip", where, ("public_ip",), optional=True)
        if not 0 <= self.tls_port <= 65535:
            raise ConfigError(f"{where}: 'sip.tls_port' must be a port between 1 and 65535, or 0")
        if self.tls_port and not (self.tls_cert and self.tls_key):
            raise ConfigError(f"{where}: 'sip.tls_port' needs 'sip.tls_cert' and 'sip.tls_key'")
        if self.domain and not DOMAIN.fullmatch(self.domain):
            raise ConfigError(f"{where}: 'sip.domain' must be a host name such as sip.example.org")
        if self.rtp_port_end <= self.rtp_port_start:
            raise ConfigError(f"{where}: 'sip.rtp_port_end' must be above 'sip.rtp_port_start'")
        self._validate_dns_servers(where)
        self._validate_dispatch(where)

    def _validate_dns_servers(self, where: str) -> None:
        value: object = self.dns_servers
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: 'sip.dns_servers' must be a list of addresses")
        for index, server in enumerate(value):
            try:
                dns_server_address(server)
            except ValueError:
                raise ConfigError(
                    f"{where}: 'sip.dns_servers[{index}]' must be an IP address, IP:PORT or "
                    "[IPv6]:PORT"
                ) from None

    def _validate_dispatch(self, where: str) -> None:
        from gateway.links import check_target
        from gateway.plugins import installed
        from gateway.rooms import ROOM_ID_PATTERN
        from protocols.sip.dispatch import check_rule, is_link_target

        for index, rule in enumerate(self.dispatch):
            key = f"sip.dispatch[{index}]"
            if not DISPATCH_NUMBER.fullmatch(rule.number):
                raise ConfigError(
                    f"{where}: '{key}.number' must be a dialled number, a SIP user or '*'"
                )
            try:
                rule.room = check_rule(rule.room)
                if is_link_target(rule.room):
                    rule.room = check_target(rule.room, installed())
            except ValueError:
                raise ConfigError(
                    f"{where}: '{key}.room' must match {ROOM_ID_PATTERN.pattern}, "
                    "be visio:VISIO_ROOM_UUID, or be empty"
                ) from None
            try:
                check_rule(rule.room, rule.pin)
            except ValueError as error:
                raise ConfigError(f"{where}: '{key}.pin': {error}") from None
            if rule.language not in ("", *LANGUAGES):
                raise ConfigError(
                    f"{where}: '{key}.language' is {rule.language!r}; allowed: fr, en"
                )


def dns_server_address(text: str) -> tuple[str, int]:
    """(IP, port) of a ``sip.dns_servers`` entry: "IP", "IPv4:PORT" or "[IPv6]:PORT"; ValueError."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError("not [IPv6]:PORT")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, digits = text.partition(":")
        if not digits.isdigit():
            raise ValueError("not IP:PORT")
        port = int(digits)
    ipaddress.ip_address(host)
    if not 1 <= port <= 65535:
        raise ValueError("port out of range")
    return host, port
