"""The federation endpoints partner gateways call (spec 14.4), under ``/ors/v1/federation/``.

Every request is signed (gateway/federation/signing.py checks it, in the spec's order), then
limited per peer (``[federation] requests_per_second``, ``request_burst``), then checked by the
endpoint: the room or link must exist and the peer be allowed for the room. Bodies are at most
256 KiB (the application's bound). Refusals are RFC 9457 problems, counted by code.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.federation import schemas
from gateway.federation.signing import rate_limited
from gateway.federation.store import Peer
from gateway.http.keys import GATEWAY
from gateway.ors.problems import Problem, json_object

if TYPE_CHECKING:
    from gateway.federation.service import FederationService
    from gateway.server import Gateway

log = logging.getLogger(__name__)

PLUGIN = "federation"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TXN_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
MAX_SDP = 64 * 1024


def _service(request: web.Request) -> FederationService:
    running = request.config_dict[GATEWAY].running.get(PLUGIN)
    if running is None or running.service is None:
        raise Problem("not_found", "federation is not enabled on this server", 404)
    service: FederationService = running.service
    return service


async def _caller(request: web.Request, service: FederationService) -> Peer:
    """The signing peer, within its rate. Anyone can reach these routes: an address that keeps
    sending requests that name no peer of ours (malformed, or from a stranger) gets 429 instead
    of a verdict after its burst. A request naming a peer is checked whatever its address (a
    partner rotating its keys may send a few with an unknown key); it costs one signature check,
    and a fetch of that peer's keys at most every 30 s."""
    try:
        claimed = service.verifier.identify(request)
    except Problem:
        if not service.unverified.allow(request.remote or "?"):
            raise rate_limited("too many refused requests from this address", 60.0) from None
        raise
    peer = await service.verifier.check(request, claimed)
    if not service.check_rate(peer):
        raise rate_limited(f"too many requests from {peer.name}; slow down", 1.0)
    return peer


async def create_link(request: web.Request) -> web.Response:
    service = _service(request)
    peer = await _caller(request, service)
    body = await json_object(request)
    schemas.check("link-request", body)
    answer = await service.accept(peer, body)
    return web.json_response(answer)


async def delete_link(request: web.Request) -> web.Response:
    service = _service(request)
    peer = await _caller(request, service)
    await service.unlinked(peer, request.match_info["link_id"])
    return web.Response(status=204)


async def put_transaction(request: web.Request) -> web.Response:
    service = _service(request)
    peer = await _caller(request, service)
    txn_id = request.match_info["txn_id"]
    if not TXN_ID.fullmatch(txn_id):
        raise Problem(
            "invalid_message", "a txn_id is 8 to 64 letters, digits, '-' or '_'", 400, field=""
        )
    body = await json_object(request)
    schemas.check("transaction", body)
    link = service.link_of(peer, body["link_id"])
    link.receive(txn_id, body["events"])
    return web.json_response({})


async def post_media(request: web.Request) -> web.Response:
    service = _service(request)
    peer = await _caller(request, service)
    body = await json_object(request)
    schemas.check("media-offer", body)
    link = service.link_of(peer, request.match_info["link_id"])
    sdp = body["sdp"]
    if len(sdp) > MAX_SDP:
        raise Problem("message_too_large", "the offer is too long", 413, "/sdp")
    if link.media is None:
        raise Problem("negotiation_failed", "this server relays no media on links", 400)
    try:
        answer = link.media.accept_offer(sdp)
    except ValueError as error:
        raise Problem("negotiation_failed", str(error)[:300], 400, "/sdp") from None
    return web.json_response({"sdp": answer})


@web.middleware
async def count_refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        running = request.config_dict[GATEWAY].running.get(PLUGIN)
        if running is not None and running.service is not None:
            running.service.refused.update([problem.code])
        raise


def public_app(gateway: Gateway) -> web.Application:
    """The routes mounted at /ors/v1/federation/."""
    app = web.Application(middlewares=[count_refusals], client_max_size=256 * 1024)
    app.router.add_post("/links", create_link)
    app.router.add_delete("/links/{link_id}", delete_link)
    app.router.add_put("/transactions/{txn_id}", put_transaction)
    app.router.add_post("/links/{link_id}/media", post_media)
    return app
