"""The client's address, the one key of anonymous rate limits and the ``source`` of log lines.

Behind a reverse proxy every request comes from the proxy, so the address of the person is in
``X-Forwarded-For``. That header is believed only when the request's direct peer is one of
``[http] trusted_proxies``; from anyone else it is ignored, so a visitor talking to the gateway
directly cannot name another address to escape its rate limit.

The header is read as nginx's realip module reads it with ``real_ip_recursive on``: from the
right, skipping the addresses that are themselves trusted proxies; the first one that is not is
the client. If every address in it is a trusted proxy, the left-most one is. A malformed entry
met on the way (not an IP address) makes the whole header untrustworthy: the peer address is
used, as if the header were absent.

``client_address_middleware`` applies this once per request (``request.clone(remote=...)``), so
every handler, the WebSocket session included, reads the client's address as ``request.remote``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_trusted_proxies(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Each value is an address ("10.0.0.5", "::1") or a network ("10.0.0.0/8", "fd00::/8").

    Raises ValueError naming the value when one is neither, or is a network with host bits set
    ("10.0.0.5/8": which was meant, the address or the network?).
    """
    networks = []
    for value in values:
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address or network (CIDR) with its host bits zero"
            ) from None
        networks.append(network)
    return tuple(networks)


def _address(value: str) -> IPAddress | None:
    """An IP address from a header entry or a peer address; IPv4-mapped IPv6 becomes IPv4."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str | None:
    """The client's address for a request from ``peer`` carrying these X-Forwarded-For headers.

    ``forwarded_for`` holds each X-Forwarded-For header's value, in the order received (several
    headers count as one comma-separated list). Returns ``peer`` unchanged when it is not a
    trusted proxy, when there is no header, or when the header is malformed.
    """
    if peer is None or not trusted:
        return peer
    peer_address = _address(peer)
    if peer_address is None or not is_trusted(peer_address, trusted):
        return peer
    entries = [e.strip() for value in forwarded_for for e in value.split(",")]
    entries = [e for e in entries if e]
    chosen: IPAddress | None = None
    for entry in reversed(entries):
        address = _address(entry)
        if address is None:
            return peer
        chosen = address
        if not is_trusted(address, trusted):
            break
    return str(chosen) if chosen is not None else peer


def client_address_middleware(trusted_values: Iterable[str]) -> Middleware:
    """A middleware that sets ``request.remote`` to the client's address (see the module doc)."""
    trusted = parse_trusted_proxies(trusted_values)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if trusted:
            peer = request.remote
            client = client_address(peer, request.headers.getall("X-Forwarded-For", []), trusted)
            if client is not None and client != peer:
                request = request.clone(remote=client)
        return await handler(request)

    return middleware
