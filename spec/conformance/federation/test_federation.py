"""Server-to-server conformance of an ORS v1 gateway (spec/ors-v1.md section 14).

The suite plays a partner gateway: it links its room to a room of the target, sends signed
requests and events, receives the target's, and watches the target's room with an ORS client.
The tests run in file order and share one link.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spec.conformance.federation.conftest import PEER_ROOM, Setup
from spec.conformance.federation.peer import (
    PartnerServer,
    Response,
    SigningKey,
    Target,
    body_sha256,
    random_id,
    schema_errors,
    sign,
)
from spec.conformance.orsclient import OrsClient, OrsError

pytestmark = pytest.mark.interop

PARTNER_NAME = "Conformance Partner"


def home_participant(name: str, participant_id: str = "") -> dict[str, Any]:
    """One of the suite's home participants with an Opus microphone (14.5)."""
    participant_id = participant_id or random_id("p_", 14)
    return {
        "id": participant_id,
        "name": name,
        "origin": "ors",
        "origin_address": "",
        "role": "host",
        "state": "joined",
        "joined_at": int(time.time() * 1000),
        "tracks": [
            {
                "id": random_id("t_", 12),
                "participant_id": participant_id,
                "kind": "audio",
                "source": "microphone",
                "codec": "opus",
                "muted": False,
                "streams": [{"rid": "", "ssrc": 0x0C0F0000 + len(name)}],
            }
        ],
    }


def transaction(
    target: Target,
    partner: PartnerServer,
    link_id: str,
    events: list[dict[str, Any]],
    txn_id: str = "",
    **options: Any,
) -> Response:
    body = {"link_id": link_id, "events": events}
    return target.call(
        partner.identity, "PUT", f"/transactions/{txn_id or random_id(length=16)}", body, **options
    )


def assert_problem(response: Response, status: int, code: str, secret: str = "") -> dict[str, Any]:
    """An RFC 9457 problem with ``status`` and ``code`` (12.1) that does not repeat ``secret``."""
    shown = response.body[:300].decode(errors="replace")
    assert (response.status, response.content_type) == (status, "application/problem+json"), shown
    problem = response.json
    errors = schema_errors("server.error.json", {"type": "error", "problem": problem})
    assert errors == [], errors
    assert (problem["code"], problem["status"]) == (code, status), problem
    assert problem["type"] == f"urn:ors:error:{code}"
    if secret:
        for part in secret.split("."):
            assert part not in response.body.decode(errors="replace"), (
                "the problem repeats the token"
            )
    return dict(problem)


async def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(check)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


async def watcher(target: Target, setup: Setup, name: str) -> tuple[OrsClient, dict[str, Any]]:
    """An ORS client (spec/conformance/orsclient.py) joined to the target's room."""
    token = setup.token(name.lower().replace(" ", "-"), name)
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=target.ssl_context))
    template = str(target.discovery["websocket_url_template"])
    url = template.replace("{room}", urllib.parse.quote(setup.room, safe=""))
    try:
        ws = await http.ws_connect(url, max_msg_size=4 * 1024 * 1024)
    except BaseException:
        await http.close()
        raise
    client = OrsClient(http, ws)
    try:
        joined = await client.join(token, name)
    except BaseException:
        await client.close()
        raise
    assert joined["type"] == "joined", joined
    return client, joined


async def participant_named(client: OrsClient, joined: dict[str, Any], name: str) -> Any:
    """The participant called ``name``, from ``joined`` or the events that follow."""
    for participant in joined["participants"]:
        if participant["name"] == name:
            return participant
    while True:
        event = await client.next_event("participant_joined", "participant_updated")
        if event["participant"]["name"] == name:
            return event["participant"]


# discovery and keys (14.1, 14.2) ---------------------------------------------------------------


def test_discovery_offers_federation(target: Target) -> None:
    document = target.discovery
    assert schema_errors("discovery.json", document) == []
    assert "federation" in document["capabilities"]
    assert document["api_base"].startswith("https://")
    assert document["keys_url"].startswith("https://")


def test_keys_are_a_jwks_of_ed25519_public_keys(target: Target) -> None:
    response = target.get(str(target.discovery["keys_url"]))
    assert response.status == 200
    jwks = response.json
    assert schema_errors("jwks.json", jwks) == []
    kids = [key["kid"] for key in jwks["keys"]]
    assert kids and len(set(kids)) == len(kids)


# linking (14.4) ---------------------------------------------------------------------------------


def test_a_link_to_an_allowed_room_is_connected(link: dict[str, Any], setup: Setup) -> None:
    assert schema_errors("federation.link.json", link) == []
    assert (link["room"], link["peer_room"], link["state"]) == (setup.room, PEER_ROOM, "connected")


async def test_the_target_sends_its_full_state_first(
    partner: PartnerServer, link: dict[str, Any]
) -> None:
    first = await wait_for(partner.transactions, 20, "a transaction from the target")
    assert first[0].body["link_id"] == link["link_id"]
    assert first[0].body["events"] and first[0].body["events"][0]["type"] == "state"


def test_a_link_to_a_room_not_allowed_is_refused(
    target: Target, partner: PartnerServer, setup: Setup
) -> None:
    if not setup.denied_room:
        pytest.skip("give --fed-denied-room (or --fed-admin-token)")
    body = {"link_id": random_id("l_", 22), "room": setup.denied_room, "peer_room": "elsewhere"}
    response = target.call(partner.identity, "POST", "/links", body)
    assert_problem(response, 403, "peer_not_allowed")


def test_a_link_to_a_missing_room_is_refused(
    target: Target, partner: PartnerServer, setup: Setup
) -> None:
    body = {"link_id": random_id("l_", 22), "room": "no-such-room-" + random_id(length=8).lower()}
    body["room"] = re.sub(r"[^a-z0-9-]", "x", body["room"])
    response = target.call(partner.identity, "POST", "/links", {**body, "peer_room": "elsewhere"})
    if setup.admin_token:  # the suite is allowed for its room only: 403 whether or not it exists
        assert_problem(response, 403, "peer_not_allowed")
    else:
        assert response.status in (403, 404), response
        assert_problem(
            response,
            response.status,
            {403: "peer_not_allowed"}.get(response.status, "room_not_found"),
        )


def test_a_link_request_that_breaks_its_schema_is_refused(
    target: Target, partner: PartnerServer, setup: Setup
) -> None:
    body = {"link_id": "not-a-link-id", "room": setup.room, "peer_room": PEER_ROOM}
    problem = assert_problem(
        target.call(partner.identity, "POST", "/links", body), 400, "invalid_message"
    )
    assert problem.get("field") == "/link_id"


def test_unlinking_an_unknown_link_is_refused(target: Target, partner: PartnerServer) -> None:
    response = target.call(partner.identity, "DELETE", f"/links/{random_id('l_', 22)}")
    assert_problem(response, 404, "link_not_found")


# signed requests (14.3): every refusal, each changing nothing ---------------------------------


def _refused_case(name: str, target: Target, partner: PartnerServer, link_id: str) -> Response:
    """One request the target must refuse; its events would add a participant called
    "Refused <name>" if it were applied."""
    events = [{"type": "participant", "participant": home_participant(f"Refused {name}")}]
    identity = partner.identity
    now = int(time.time())
    send: Callable[..., Response] = lambda **options: transaction(  # noqa: E731
        target, partner, link_id, events, **options
    )
    if name == "unsigned":
        return send(authorization="")
    if name == "not a token":
        return send(authorization="Bearer not.a.token")
    if name == "basic":
        return send(authorization="Basic Y29uZm9ybWFuY2U6eA==")
    if name == "HS256":
        return send(algorithm="HS256")
    if name == "typ JWT":
        return send(header={"typ": "JWT"})
    if name == "not allow-listed":
        return send(claims={"iss": "stranger.invalid"})
    if name == "unknown key":
        return send(key=identity.new_key())
    if name == "forged":
        return send(key=SigningKey(identity.signing.kid, Ed25519PrivateKey.generate()))
    if name == "no jti":
        return send(claims={"jti": None})
    if name == "short jti":
        return send(claims={"jti": "short"})
    if name == "wrong audience":
        return send(claims={"aud": "elsewhere.invalid"})
    if name == "expired":
        return send(claims={"iat": now - 200, "exp": now - 100})
    if name == "from the future":
        return send(claims={"iat": now + 120, "exp": now + 170})
    if name == "too long":
        return send(claims={"iat": now, "exp": now + 600})
    if name == "other path":
        return send(claims={"path": target.federation_path("/transactions/other-txn-id")})
    if name == "other method":
        return send(claims={"method": "POST"})
    if name == "other body":
        return send(claims={"body_sha256": body_sha256(b"{}")})
    if name == "unknown link":
        return transaction(target, partner, random_id("l_", 22), events)
    if name == "bad event":
        bad = home_participant(f"Refused {name}")
        bad["origin"] = "federation:elsewhere.invalid"
        return transaction(
            target, partner, link_id, [*events, {"type": "state", "participants": [bad]}]
        )
    if name == "too many events":
        return transaction(
            target, partner, link_id, events + [{"type": "demand", "tracks": []}] * 100
        )
    if name == "not JSON":
        return target.call(
            identity, "PUT", f"/transactions/{random_id(length=16)}", raw=b'{"link_id": '
        )
    if name == "too large":
        chat = {"id": "m_big", "from": "p_x", "from_name": "x", "text": "x" * 4000, "ts": 0}
        many = [{"type": "chat", "message": chat}] * 80
        return transaction(target, partner, link_id, events + many)
    if name == "bad txn_id":
        return transaction(target, partner, link_id, events, txn_id="x")
    raise AssertionError(name)


REFUSALS: list[tuple[str, int, str, str | None]] = [
    ("unsigned", 401, "signature_invalid", None),
    ("not a token", 401, "signature_invalid", None),
    ("basic", 401, "signature_invalid", None),
    ("HS256", 401, "signature_invalid", None),
    ("typ JWT", 401, "signature_invalid", None),
    ("not allow-listed", 403, "peer_not_allowed", None),
    ("unknown key", 401, "key_unknown", None),
    ("forged", 401, "signature_invalid", None),
    ("no jti", 401, "signature_invalid", None),
    ("short jti", 401, "signature_invalid", None),
    ("wrong audience", 401, "wrong_audience", None),
    ("expired", 401, "signature_expired", None),
    ("from the future", 401, "signature_expired", None),
    ("too long", 401, "signature_expired", None),
    ("other path", 401, "signature_invalid", None),
    ("other method", 401, "signature_invalid", None),
    ("other body", 401, "signature_invalid", None),
    ("unknown link", 404, "link_not_found", None),
    ("bad event", 400, "invalid_message", "/events/1/participants/0/origin"),
    ("too many events", 400, "invalid_message", "/events"),
    ("not JSON", 400, "invalid_json", None),
    ("too large", 413, "message_too_large", None),
    ("bad txn_id", 400, "invalid_message", ""),
]


@pytest.mark.parametrize(
    ("case", "status", "code", "field"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
def test_a_bad_request_is_refused_with_its_problem(
    target: Target,
    partner: PartnerServer,
    link: dict[str, Any],
    case: str,
    status: int,
    code: str,
    field: str | None,
) -> None:
    response = _refused_case(case, target, partner, link["link_id"])
    problem = assert_problem(response, status, code)
    if field is not None:
        assert problem.get("field") == field, problem
    if status == 429:
        assert "retry-after" in response.headers


def test_a_replayed_token_is_refused(
    target: Target, partner: PartnerServer, link: dict[str, Any]
) -> None:
    txn_id = random_id(length=16)
    body = json.dumps({"link_id": link["link_id"], "events": []}).encode()
    path = target.federation_path(f"/transactions/{txn_id}")
    token = sign(partner.identity, target.name, "PUT", path, body)
    first = target.call(partner.identity, "PUT", f"/transactions/{txn_id}", raw=body, token=token)
    assert first.status == 200, first
    again = target.call(partner.identity, "PUT", f"/transactions/{txn_id}", raw=body, token=token)
    assert_problem(again, 401, "replayed_request", secret=token)


# events (14.5) ---------------------------------------------------------------------------------


async def test_events_appear_in_the_room_once_and_refused_ones_never(
    target: Target, partner: PartnerServer, setup: Setup, link: dict[str, Any]
) -> None:
    guest = home_participant(PARTNER_NAME)
    state = [{"type": "state", "participants": [guest]}]
    response = await asyncio.to_thread(transaction, target, partner, link["link_id"], state)
    assert (response.status, response.json) == (200, {}), response
    client, joined = await watcher(target, setup, "Conformance Watcher")
    try:
        shown = await participant_named(client, joined, PARTNER_NAME)
        assert shown["origin"] == f"federation:{partner.identity.name}"
        assert (shown["role"], shown["state"], shown["origin_address"]) == (
            "guest",
            "joined",
            "ors",
        )
        assert [t["kind"] for t in shown["tracks"]] == ["audio"]
        names = [p["name"] for p in joined["participants"]] + [
            m["participant"]["name"] for m in client.received if "participant" in m
        ]
        assert [n for n in names if n.startswith("Refused")] == []

        chat = {"id": random_id("m_", 12), "from": guest["id"], "from_name": PARTNER_NAME, "ts": 1}
        first = [{"type": "chat", "message": {**chat, "text": "Bonjour de la conformité"}}]
        txn_id = random_id(length=16)
        for _ in range(2):  # the same transaction twice: applied once
            sent = await asyncio.to_thread(
                transaction, target, partner, link["link_id"], first, txn_id
            )
            assert sent.status == 200, sent
        marker = [{"type": "chat", "message": {**chat, "id": random_id("m_", 12), "text": "fin"}}]
        sent = await asyncio.to_thread(transaction, target, partner, link["link_id"], marker)
        assert sent.status == 200, sent
        texts = []
        while not texts or texts[-1] != "fin":
            texts.append((await client.next_event("chat"))["message"]["text"])
        assert texts == ["Bonjour de la conformité", "fin"]

        left = [{"type": "participant_left", "participant_id": guest["id"], "reason": "left"}]
        sent = await asyncio.to_thread(transaction, target, partner, link["link_id"], left)
        assert sent.status == 200, sent
        gone = await client.next_event("participant_left")
        assert gone["participant_id"] == shown["id"]
    finally:
        await client.close()


async def test_reactions_cross_bounded_and_forged_ones_never(
    target: Target, partner: PartnerServer, setup: Setup, link: dict[str, Any]
) -> None:
    """14.5 ``reaction``: ours reach the target's clients under its id of our participant, within
    its reaction limit (8.18, a flood is answered 200 and cut); one without a usable emoji
    refuses its whole transaction; one naming nobody we brought, or with an emoji outside the
    eight, is ignored; and the
    target's own participant's reaction comes to us under the id it announced."""
    name = "Conformance Reactor"
    guest = home_participant(name)
    upsert = [{"type": "participant", "participant": guest}]
    response = await asyncio.to_thread(transaction, target, partner, link["link_id"], upsert)
    assert (response.status, response.json) == (200, {}), response
    client, joined = await watcher(target, setup, "Conformance Audience")
    try:
        shown = await participant_named(client, joined, name)
        ours = {"type": "reaction", "participant_id": guest["id"]}
        sent = await asyncio.to_thread(
            transaction, target, partner, link["link_id"], [{**ours, "emoji": "👏", "at": 1}]
        )
        assert (sent.status, sent.json) == (200, {}), sent
        seen = await client.next_event("reaction")
        assert (seen["participant_id"], seen["emoji"]) == (shown["id"], "👏")

        forged = [{**ours, "emoji": "🎉"}, {**ours, "emoji": ""}]
        refused = await asyncio.to_thread(transaction, target, partner, link["link_id"], forged)
        assert assert_problem(refused, 400, "invalid_message")["field"] == "/events/1/emoji"
        nobody = [
            {"type": "reaction", "participant_id": "p_nobody_here", "emoji": "🎉"},
            {"type": "reaction", "participant_id": joined["participant"]["id"], "emoji": "🎉"},
            {**ours, "emoji": "💩"},  # not one of the eight: ignored, the link goes on
        ]
        sent = await asyncio.to_thread(transaction, target, partner, link["link_id"], nobody)
        assert (sent.status, sent.json) == (200, {}), sent

        marker = {"id": random_id("m_", 12), "from": guest["id"], "from_name": name, "ts": 1}
        flood = [{**ours, "emoji": "🙏"}] * 30 + [
            {"type": "chat", "message": {**marker, "text": "fin des réactions"}}
        ]
        sent = await asyncio.to_thread(transaction, target, partner, link["link_id"], flood)
        assert (sent.status, sent.json) == (200, {}), sent
        while (await client.next_event("chat"))["message"]["text"] != "fin des réactions":
            pass
        reactions = [m for m in client.received if m["type"] == "reaction"]
        assert [m for m in reactions if m["emoji"] in ("🎉", "💩")] == []
        assert {m["participant_id"] for m in reactions} == {shown["id"]}
        assert 1 <= sum(m["emoji"] == "🙏" for m in reactions) < 30  # 14.8: bounded

        await client.request({"type": "reaction", "emoji": "🤔"})

        def reacted() -> list[dict[str, Any]]:
            return [e for e in partner.events() if e.get("type") == "reaction"]

        [theirs] = await wait_for(reacted, 20, "the target to send its participant's reaction")
        announced = {
            p["id"]
            for event in partner.events()
            for p in event.get("participants", []) + [event.get("participant") or {}]
            if p.get("name") == "Conformance Audience"
        }
        assert theirs["participant_id"] in announced and theirs["emoji"] == "🤔"
    finally:
        await client.close()
        left = [{"type": "participant_left", "participant_id": guest["id"], "reason": "left"}]
        await asyncio.to_thread(transaction, target, partner, link["link_id"], left)


async def test_a_hand_is_lowered_by_a_host_at_its_home_only(
    target: Target, partner: PartnerServer, setup: Setup, link: dict[str, Any]
) -> None:
    """14.5 and 14.7 ``lower_hand``: the suite's host lowers the raised hand of the target's
    participant, and the target lowers it as a host would (its participant sees it); one naming
    the suite's own participant there, or nobody, changes nothing. A host at the target lowering
    the suite's participant's hand sends ``lower_hand`` with the suite's id, and nobody there may
    raise it."""
    name = "Conformance Hand"
    guest = {**home_participant(name), "hand_raised_at": int(time.time() * 1000)}
    upsert = [{"type": "participant", "participant": guest}]
    response = await asyncio.to_thread(transaction, target, partner, link["link_id"], upsert)
    assert (response.status, response.json) == (200, {}), response
    raiser = f"Conformance Raiser {secrets.token_hex(2)}"
    client, joined = await watcher(target, setup, raiser)
    try:
        me = joined["participant"]["id"]
        shown = await participant_named(client, joined, name)
        await client.request({"type": "hand", "raised": True})

        def announced_raised() -> str:
            for event in partner.events():
                people = event.get("participants", []) + [event.get("participant") or {}]
                for p in people:
                    if p.get("name") == raiser and p.get("hand_raised_at"):
                        return str(p["id"])
            return ""

        theirs = await wait_for(announced_raised, 20, "the target to announce the raised hand")
        events = [
            {"type": "lower_hand", "participant_id": shown["id"]},  # the suite's own, there
            {"type": "lower_hand", "participant_id": "p_nobody_here"},
            {"type": "lower_hand", "participant_id": theirs},
        ]
        sent = await asyncio.to_thread(transaction, target, partner, link["link_id"], events)
        assert (sent.status, sent.json) == (200, {}), sent
        while True:
            event = await client.next_event("participant_updated")
            if event["participant"]["id"] == me and event["participant"]["hand_raised_at"] is None:
                break
        if joined["participant"]["role"] != "host":
            return  # a join token without host rights: the rest needs a host at the target
        with pytest.raises(OrsError) as refused:  # 8.17: nobody raises another's hand
            await client.request({"type": "hand", "raised": True, "participant_id": shown["id"]})
        assert refused.value.code == "forbidden"
        await client.request({"type": "hand", "raised": False, "participant_id": shown["id"]})

        def lowered() -> list[dict[str, Any]]:
            return [
                e
                for e in partner.events()
                if e.get("type") == "lower_hand" and e.get("participant_id") == guest["id"]
            ]

        [asked] = await wait_for(lowered, 20, "the target to send lower_hand")
        assert asked == {"type": "lower_hand", "participant_id": guest["id"]}
    finally:
        await client.close()
        left = [{"type": "participant_left", "participant_id": guest["id"], "reason": "left"}]
        await asyncio.to_thread(transaction, target, partner, link["link_id"], left)


async def test_the_target_announces_its_own_people_and_echoes_none_of_ours(
    target: Target, partner: PartnerServer, setup: Setup, link: dict[str, Any]
) -> None:
    client, _ = await watcher(target, setup, "Conformance Home")
    try:

        def announced() -> bool:
            for event in partner.events():
                people = event.get("participants", []) + [event.get("participant") or {}]
                if any(p.get("name") == "Conformance Home" for p in people):
                    return True
            return False

        await wait_for(announced, 20, "the target to announce its participant")
        theirs = next(
            p["id"]
            for event in partner.events()
            for p in event.get("participants", []) + [event.get("participant") or {}]
            if p.get("name") == "Conformance Home"
        )
        # the suite's host removes the target's participant from the suite's room (14.7): it
        # stays in its home room; events naming what the target does not know are ignored
        events = [
            {"type": "removed", "participant_id": theirs},
            {"type": "mute", "participant_id": "p_nobody_here", "track_id": "t_nothing"},
            {"type": "demand", "tracks": [{"track_id": "t_nothing", "rids": [""]}]},
        ]
        sent = await asyncio.to_thread(transaction, target, partner, link["link_id"], events)
        assert (sent.status, sent.json) == (200, {}), sent
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        assert [m for m in client.received if m["type"] == "left"] == []
    finally:
        await client.close()
    for event in partner.events():
        people = event.get("participants", []) + [event.get("participant") or {}]
        assert all(p.get("name") != PARTNER_NAME for p in people), "the target echoed our people"


async def test_a_failed_transaction_is_retried_with_the_same_id_and_body(
    target: Target, partner: PartnerServer, setup: Setup, link: dict[str, Any]
) -> None:
    partner.fail_transactions = 1
    client, _ = await watcher(target, setup, "Conformance Retry")  # makes the target send
    try:

        def retried() -> Any:
            failed = [r for r in partner.requests("PUT", "/transactions/") if r.status == 503]
            if not failed:
                return None
            return [r for r in partner.transactions() if r.path == failed[0].path] and failed[0]

        failed = await wait_for(retried, 20, "a transaction answered 503 to be sent again")
        again = next(r for r in partner.transactions() if r.path == failed.path)
        assert again.body == failed.body
    finally:
        partner.fail_transactions = 0
        await client.close()


async def test_heartbeats_arrive(partner: PartnerServer, link: dict[str, Any]) -> None:
    def heartbeat() -> bool:
        return any(t.body["events"] == [] for t in partner.transactions())

    await wait_for(heartbeat, 40, "an empty transaction (heartbeat, every 15 s)")


def test_every_request_of_the_target_was_signed_and_valid(partner: PartnerServer) -> None:
    faults = [(r.method, r.path, r.fault) for r in partner.requests() if r.fault is not None]
    assert faults == []


# media (14.6) -----------------------------------------------------------------------------------

OFFER = (
    "v=0\r\no=- 1767226800 1 IN IP4 {host}\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a v\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 {host}\r\na=mid:a\r\na=sendrecv\r\na=rtcp-mux\r\n"
    "a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=fingerprint:sha-256 {fingerprint}\r\n"
    "a=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=candidate:1 1 udp 2130706431 {host} 9 typ host\r\na=end-of-candidates\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\nc=IN IP4 {host}\r\na=mid:v\r\na=sendrecv\r\n"
    "a=rtcp-mux\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"
    "a=fingerprint:sha-256 {fingerprint}\r\na=setup:actpass\r\na=rtpmap:96 VP8/90000\r\n"
    "a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 ccm fir\r\n"
    "a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n"
    "a=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\na=rtcp-fb:102 ccm fir\r\n"
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=candidate:1 1 udp 2130706431 {host} 9 typ host\r\na=end-of-candidates\r\n"
)


def test_a_media_offer_is_answered_ice_lite_and_passive(
    target: Target, partner: PartnerServer, link: dict[str, Any]
) -> None:
    offer = OFFER.format(
        host=partner.identity.host,
        ufrag=secrets.token_hex(4),
        pwd=secrets.token_hex(12),
        fingerprint=":".join(f"{b:02X}" for b in bytes(range(32))),
    )
    response = target.call(
        partner.identity, "POST", f"/links/{link['link_id']}/media", {"sdp": offer}
    )
    assert response.status == 200, response.body[:300]
    assert schema_errors("federation.media-answer.json", response.json) == []
    answer = response.json["sdp"]
    lines = set(answer.replace("\r\n", "\n").split("\n"))
    assert "a=group:BUNDLE a v" in lines
    assert {"a=ice-lite", "a=setup:passive", "a=mid:a", "a=mid:v", "a=end-of-candidates"} <= lines
    assert any(line.startswith("a=fingerprint:sha-256 ") for line in lines)
    assert any(line.startswith("a=candidate:") and " udp " in line.lower() for line in lines)
    assert "a=rtpmap:111 opus/48000/2" in lines
    assert "a=rtpmap:96 VP8/90000" in lines or "a=rtpmap:102 H264/90000" in lines


def test_a_media_offer_for_an_unknown_link_is_refused(
    target: Target, partner: PartnerServer
) -> None:
    response = target.call(
        partner.identity, "POST", f"/links/{random_id('l_', 22)}/media", {"sdp": "v=0\r\n"}
    )
    assert_problem(response, 404, "link_not_found")


# rotation (14.2), relinking and unlinking (14.4) ---------------------------------------------


async def test_a_rotated_key_is_fetched_and_a_retired_one_refused(
    target: Target, partner: PartnerServer, link: dict[str, Any]
) -> None:
    identity = partner.identity
    old = identity.signing
    identity.keys.insert(0, identity.new_key())  # publish new + old, sign with the new one

    def accepted_with_new_key() -> bool:
        return transaction(target, partner, link["link_id"], []).status == 200

    # a receiver fetches keys again at most every 30 s, so the new key may wait that long
    await wait_for(accepted_with_new_key, 40, "a request signed with the new key to be accepted")
    identity.keys.remove(old)  # retire the old key
    identity.keep_signing_key()

    def refused_with_old_key() -> bool:
        transaction(target, partner, link["link_id"], [], key=identity.new_key())  # refetch
        response = transaction(target, partner, link["link_id"], [], key=old)
        return response.status == 401 and response.json["code"] == "key_unknown"

    await wait_for(refused_with_old_key, 40, "a request signed with the retired key refused")


async def test_linking_again_is_idempotent_and_replaces_the_link_id(
    target: Target, partner: PartnerServer, setup: Setup, link: dict[str, Any]
) -> None:
    old_id, new_id = link["link_id"], random_id("l_", 22)
    seen = len(partner.transactions())
    body = {"link_id": new_id, "room": setup.room, "peer_room": PEER_ROOM}
    response = await asyncio.to_thread(target.call, partner.identity, "POST", "/links", body)
    assert response.status == 200, response
    assert response.json["link_id"] == new_id
    link["link_id"] = new_id
    stale = await asyncio.to_thread(transaction, target, partner, old_id, [])
    assert_problem(stale, 404, "link_not_found")
    fresh = await asyncio.to_thread(transaction, target, partner, new_id, [])
    assert fresh.status == 200, fresh

    def state_again() -> bool:
        later = partner.transactions()[seen:]
        return any(
            t.body["link_id"] == new_id
            and t.body["events"][:1]
            and t.body["events"][0]["type"] == "state"
            for t in later
        )

    await wait_for(state_again, 20, "the target's full state on the new link id")


async def test_unlinking_removes_our_people_and_the_link(
    target: Target, partner: PartnerServer, setup: Setup, link: dict[str, Any]
) -> None:
    name = PARTNER_NAME + " 2"
    state = [{"type": "state", "participants": [home_participant(name)]}]
    sent = await asyncio.to_thread(transaction, target, partner, link["link_id"], state)
    assert sent.status == 200, sent
    client, joined = await watcher(target, setup, "Conformance Last")
    try:
        shown = await participant_named(client, joined, name)
        response = await asyncio.to_thread(
            target.call, partner.identity, "DELETE", f"/links/{link['link_id']}"
        )
        assert response.status == 204, response
        gone = await client.next_event("participant_left")
        assert gone["participant_id"] == shown["id"]
    finally:
        await client.close()
    after = await asyncio.to_thread(transaction, target, partner, link["link_id"], [])
    assert_problem(after, 404, "link_not_found")
