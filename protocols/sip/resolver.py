"""Locating a SIP server for a URI (RFC 3263 section 4): NAPTR, then SRV, then A/AAAA.

The choices are pure functions of the records (``naptr_services``, ``srv_order``) and the
walk through them (``locate``) asks its questions through a ``Lookup``, so both are tested with
records as input; ``DnsLookup`` is the one piece that talks to name servers (dnspython).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from protocols.sip.uri import SipUri

DNS_QUERY_SECONDS = 2.0
"""How long one DNS question may take, retries to every server included."""
DNS_TOTAL_SECONDS = 6.0
"""How long locating one URI may take in all (a NAPTR, some SRV and address questions)."""
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
"""RFC 3263 4.1 service fields, and the transport each names."""
SRV_PREFIXES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}


@dataclass(frozen=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str


@dataclass(frozen=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class Hop:
    """Where to send a request: a transport, an IP address and a port."""

    transport: str
    address: str
    port: int


class Lookup(Protocol):
    """The DNS questions RFC 3263 asks; each answers [] for no record (or no such name)."""

    async def naptr(self, name: str) -> list[Naptr]: ...

    async def srv(self, name: str) -> list[Srv]: ...

    async def addresses(self, name: str) -> list[str]: ...


def transports_for(uri: SipUri, supported: Iterable[str]) -> list[str]:
    """The transports a URI may use here, in our order of preference: sips: is TLS only."""
    usable: list[str] = [t for t in ("udp", "tcp", "tls") if t in set(supported)]
    if uri.scheme == "sips":
        usable = [t for t in usable if t == "tls"]
    if uri.transport is not None:
        wanted = "tls" if uri.scheme == "sips" and uri.transport == "tcp" else uri.transport
        usable = [t for t in usable if t == wanted]
    return usable


def naptr_services(records: Sequence[Naptr], transports: Sequence[str]) -> list[tuple[str, str]]:
    """(transport, SRV name) of the NAPTR records we can use, by order then preference (4.1)."""
    chosen = []
    for record in sorted(records, key=lambda r: (r.order, r.preference)):
        transport = NAPTR_SERVICES.get(record.service.upper())
        if (
            transport is not None
            and transport in transports
            and record.flags.lower() == "s"
            and record.replacement.rstrip(".")
        ):
            chosen.append((transport, record.replacement.rstrip(".")))
    return chosen


def srv_order(records: Sequence[Srv], rng: random.Random | None = None) -> list[Srv]:
    """SRV records in the order to try them (RFC 2782): by priority, weighted at random inside
    each priority; a lone "." target means the service is not offered there."""
    rng = rng or random.Random()
    ordered: list[Srv] = []
    usable = [r for r in records if r.target.rstrip(".")]
    for priority in sorted({r.priority for r in usable}):
        group = [r for r in usable if r.priority == priority]
        while group:
            total = sum(r.weight for r in group)
            pick = rng.uniform(0, total) if total else 0.0
            for index, record in enumerate(group):
                pick -= record.weight
                if pick <= 0 or index == len(group) - 1:
                    ordered.append(group.pop(index))
                    break
    return ordered


async def locate(uri: SipUri, supported: Iterable[str], lookup: Lookup) -> list[Hop]:
    """The hops to try for ``uri``, best first (RFC 3263 4.1 and 4.2); [] when there is none."""
    transports = transports_for(uri, supported)
    if not transports:
        return []
    host = uri.host.strip("[]")
    default = "tls" if uri.scheme == "sips" else "udp"
    chosen = uri.transport and transports[0]
    if _is_ip(host) or uri.port is not None:
        # 4.1: a numeric address or an explicit port: no NAPTR nor SRV; 4.2: A/AAAA for a name.
        transport = chosen or (default if default in transports else transports[0])
        port = uri.port or DEFAULT_PORTS[transport]
        addresses = [host] if _is_ip(host) else await lookup.addresses(host)
        return [Hop(transport, address, port) for address in addresses]
    services: list[tuple[str, str]] = []
    if not chosen:
        services = naptr_services(await lookup.naptr(host), transports)
    if not services:
        # No NAPTR (or a transport the URI names): SRV for each transport we may use.
        services = [(t, f"{SRV_PREFIXES[t]}.{host}") for t in ([chosen] if chosen else transports)]
    hops: list[Hop] = []
    for transport, name in services:
        for record in srv_order(await lookup.srv(name)):
            for address in await lookup.addresses(record.target.rstrip(".")):
                hops.append(Hop(transport, address, record.port))
    if hops:
        return hops
    # 4.2: no SRV at all: the host's own addresses, on the default port of the transport.
    transport = chosen or (default if default in transports else transports[0])
    return [Hop(transport, a, DEFAULT_PORTS[transport]) for a in await lookup.addresses(host)]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class DnsLookup:
    """The questions of ``Lookup`` asked of name servers: ``servers`` as (IP, port), or the
    system's (/etc/resolv.conf) when empty; ``ipv6`` asks AAAA rather than A records."""

    def __init__(self, servers: Sequence[tuple[str, int]] = (), ipv6: bool = False) -> None:
        self._resolver = dns.asyncresolver.Resolver(configure=not servers)
        if servers:
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(address, port) for address, port in servers
            ]
        self._resolver.lifetime = DNS_QUERY_SECONDS
        self._resolver.timeout = DNS_QUERY_SECONDS / 2
        self._address_type = "AAAA" if ipv6 else "A"

    async def _ask(self, name: str, rdtype: str) -> list[Any]:
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return []
        except dns.exception.Timeout:
            raise LookupError(f"no answer from the name servers for {rdtype} {name}") from None
        return list(answer)

    async def naptr(self, name: str) -> list[Naptr]:
        return [
            Naptr(
                r.order,
                r.preference,
                r.flags.decode("ascii", "replace"),
                r.service.decode("ascii", "replace"),
                r.replacement.to_text(),
            )
            for r in await self._ask(name, "NAPTR")
        ]

    async def srv(self, name: str) -> list[Srv]:
        return [
            Srv(r.priority, r.weight, r.port, r.target.to_text())
            for r in await self._ask(name, "SRV")
        ]

    async def addresses(self, name: str) -> list[str]:
        return [r.address for r in await self._ask(name, self._address_type)]


async def locate_with_deadline(uri: SipUri, supported: Iterable[str], lookup: Lookup) -> list[Hop]:
    """``locate`` bounded by DNS_TOTAL_SECONDS; LookupError when the name servers do not answer."""
    try:
        async with asyncio.timeout(DNS_TOTAL_SECONDS):
            return await locate(uri, supported, lookup)
    except TimeoutError:
        raise LookupError("the name servers took too long") from None
