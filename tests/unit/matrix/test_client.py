"""MatrixClient as the homeserver sees it: the AS token in the header (never the query), who it
acts as, paths percent-encoded by nio's builders, MSC4140 delayed events, MSC3202 device
masquerading, and errors that say what failed without a token, over HTTP and verified TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocols.matrix.client import MatrixClient, MatrixError, MatrixUnavailable
from protocols.matrix.config import MatrixConfig
from tests.federation.certs import issue_cert, make_ca
from tests.unit.matrix.recording_homeserver import RecordingHomeserver

AS_TOKEN = "as-token-of-the-client-tests-0123"
BOT = "@rondpoint:hs.test"
GHOST = "@rondpoint_p__a:hs.test"


@pytest.fixture
async def client(homeserver: RecordingHomeserver) -> AsyncIterator[MatrixClient]:
    matrix = MatrixClient(homeserver.url, AS_TOKEN, BOT, timeout=5.0)
    yield matrix
    await matrix.close()


async def test_requests_carry_the_token_in_the_header_and_act_as_the_ghost(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    await client.set_display_name(GHOST, "Anna (phone)")
    (request,) = homeserver.requests
    assert request.method == "PUT"
    assert request.path == f"/_matrix/client/v3/profile/{GHOST}/displayname"
    assert request.headers["Authorization"] == f"Bearer {AS_TOKEN}"
    assert request.query == {"user_id": GHOST}
    assert request.body == {"displayname": "Anna (phone)"}


async def test_the_bot_is_the_application_service_itself(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    homeserver.answers[("POST", "/_matrix/client/v3/join/#team:hs.test")] = (
        200,
        {"room_id": "!abc:hs.test"},
    )
    assert await client.join("#team:hs.test") == "!abc:hs.test"
    assert homeserver.requests[0].query == {}


async def test_room_ids_are_percent_encoded_in_paths(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    homeserver.answers[("PUT", "/_matrix/client/v3/rooms/!r:hs.test/send/m.room.message/t1")] = (
        200,
        {"event_id": "$sent"},
    )
    event_id = await client.send(
        "!r:hs.test",
        "m.room.message",
        {"msgtype": "m.text", "body": "hi"},
        as_user=GHOST,
        txn_id="t1",
    )
    assert event_id == "$sent"
    sent = homeserver.requests[0]
    assert sent.body == {"msgtype": "m.text", "body": "hi"}
    assert sent.query == {"user_id": GHOST}


async def test_state_with_an_empty_key_and_room_state(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    homeserver.answers[("PUT", "/_matrix/client/v3/rooms/!r:hs.test/state/m.room.topic/")] = (
        200,
        {"event_id": "$topic"},
    )
    homeserver.answers[("GET", "/_matrix/client/v3/rooms/!r:hs.test/state")] = (
        200,
        [{"type": "m.room.create", "state_key": ""}, "junk"],
    )
    assert await client.put_state("!r:hs.test", "m.room.topic", "", {"topic": "t"}) == "$topic"
    assert await client.room_state("!r:hs.test") == [{"type": "m.room.create", "state_key": ""}]


async def test_relations_are_read_a_page_at_a_time_as_the_bot_and_a_reply_without_events_is_refused(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    path = "/_matrix/client/v1/rooms/!r:hs.test/relations/$m/m.annotation/m.reaction"
    reaction = {"type": "m.reaction", "event_id": "$h", "sender": "@anna:hs.test"}
    homeserver.answers[("GET", path)] = (200, {"chunk": [reaction, "junk", 7, reaction]})
    got = await client.relations(
        "!r:hs.test", "$m", "m.annotation", "m.reaction", limit=3, as_user=BOT
    )
    assert got == ([reaction], None)  # the page's first 3 items, objects only; the last page
    assert homeserver.requests[0].query == {"limit": "3", "user_id": BOT}
    # a next page: its token given back, and asked for with `from`; a hostile token is no page
    for token, expected in (("t_2", "t_2"), ("x" * 513, None), (7, None), ("", None)):
        homeserver.answers[("GET", path)] = (200, {"chunk": [reaction], "next_batch": token})
        got = await client.relations(
            "!r:hs.test", "$m", "m.annotation", "m.reaction", limit=3, page="t_1", as_user=BOT
        )
        assert got == ([reaction], expected)
        assert homeserver.requests[-1].query == {"limit": "3", "from": "t_1", "user_id": BOT}
    for hostile in ({"chunk": {"a": 1}}, {}, ["not", "an", "object"], {"chunk": None}):
        homeserver.answers[("GET", path)] = (200, hostile)
        with pytest.raises(MatrixError) as refused:
            await client.relations("!r:hs.test", "$m", "m.annotation", "m.reaction", limit=50)
        assert refused.value.errcode == "M_BAD_JSON"
    homeserver.answers[("GET", path)] = (403, {"errcode": "M_FORBIDDEN", "error": "not in room"})
    with pytest.raises(MatrixError) as forbidden:
        await client.relations("!r:hs.test", "$m", "m.annotation", "m.reaction", limit=50)
    assert forbidden.value.errcode == "M_FORBIDDEN"


async def test_a_delayed_state_event_is_scheduled_restarted_and_cancelled(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    key = f"_{GHOST}_RONDPOINT_m.call"
    path = f"/_matrix/client/v3/rooms/!r:hs.test/state/org.matrix.msc3401.call.member/{key}"
    homeserver.answers[("PUT", path)] = (200, {"delay_id": "syd_abc"})
    delay_id = await client.put_delayed_state(
        "!r:hs.test", "org.matrix.msc3401.call.member", key, {}, 8000, as_user=GHOST
    )
    assert delay_id == "syd_abc"
    assert homeserver.requests[0].query == {"org.matrix.msc4140.delay": "8000", "user_id": GHOST}
    await client.update_delayed(delay_id, "restart", as_user=GHOST)
    await client.update_delayed(delay_id, "cancel", as_user=GHOST)
    base = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/syd_abc"
    assert homeserver.paths("POST") == [f"{base}/restart", f"{base}/cancel"]
    with pytest.raises(ValueError):
        await client.update_delayed(delay_id, "delete", as_user=GHOST)


async def test_a_homeserver_without_delayed_events_is_said_so(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    with pytest.raises(MatrixError, match="MSC4140"):
        await client.put_delayed_state("!r:hs.test", "t", "k", {}, 8000, as_user=GHOST)


async def test_a_gone_delayed_event_is_a_404_matrix_error(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    homeserver.answers[
        ("POST", "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/gone/restart")
    ] = (404, {"errcode": "M_NOT_FOUND", "error": "Delayed event not found"})
    with pytest.raises(MatrixError) as caught:
        await client.update_delayed("gone", "restart", as_user=GHOST)
    assert (caught.value.status, caught.value.errcode) == (404, "M_NOT_FOUND")


async def test_to_device_from_a_ghosts_device(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    messages = {"@anna:hs.test": {"ABC": {"keys": []}}}
    await client.send_to_device(
        "io.element.call.encryption_keys", messages, as_user=GHOST, device_id="RONDPOINT"
    )
    (request,) = homeserver.requests
    assert request.path.startswith(
        "/_matrix/client/v3/sendToDevice/io.element.call.encryption_keys/"
    )
    assert request.query == {"user_id": GHOST, "device_id": "RONDPOINT"}
    assert request.body == {"messages": messages}


async def test_registering_a_ghost_already_there_is_fine(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    homeserver.answers[("POST", "/_matrix/client/v3/register")] = (
        400,
        {"errcode": "M_USER_IN_USE", "error": "User ID already taken."},
    )
    await client.register("rondpoint_p__a")
    assert homeserver.requests[0].body == {
        "type": "m.login.application_service",
        "username": "rondpoint_p__a",
        "inhibit_login": True,
    }


async def test_a_refusal_is_a_matrix_error_without_the_token(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    homeserver.answers[("POST", "/_matrix/client/v3/rooms/!r:hs.test/invite")] = (
        403,
        {"errcode": "M_FORBIDDEN", "error": "You don't have permission to invite users"},
    )
    with pytest.raises(MatrixError) as caught:
        await client.invite("!r:hs.test", GHOST)
    error = caught.value
    assert not isinstance(error, MatrixUnavailable)
    assert (error.status, error.errcode) == (403, "M_FORBIDDEN")
    assert "invite" in str(error) and "403" in str(error) and AS_TOKEN not in str(error)


async def test_a_failing_or_unreachable_homeserver_is_unavailable(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    homeserver.answers[("GET", "/_matrix/client/v3/directory/room/#a:hs.test")] = (502, {})
    with pytest.raises(MatrixUnavailable) as failing:
        await client.resolve_alias("#a:hs.test")
    assert failing.value.status == 502
    await homeserver.close()
    with pytest.raises(MatrixUnavailable) as unreachable:
        await client.resolve_alias("#a:hs.test")
    assert "cannot be reached" in str(unreachable.value)
    assert AS_TOKEN not in str(unreachable.value)


async def test_a_homeserver_that_does_not_answer_times_out(homeserver: RecordingHomeserver) -> None:
    homeserver.stall = asyncio.Event()
    client = MatrixClient(homeserver.url, AS_TOKEN, BOT, timeout=0.2)
    try:
        with pytest.raises(MatrixUnavailable) as caught:
            await client.leave("!r:hs.test", as_user=GHOST)
        assert caught.value.errcode == "M_TIMEOUT"
    finally:
        await client.close()


async def test_the_openid_check_sends_no_token_of_ours(
    client: MatrixClient, homeserver: RecordingHomeserver
) -> None:
    homeserver.openid_users["openid-1"] = "@anna:hs.test"
    assert await client.openid_userinfo("openid-1") == "@anna:hs.test"
    assert "Authorization" not in homeserver.requests[0].headers
    with pytest.raises(MatrixError) as caught:
        await client.openid_userinfo("forged-openid")
    assert caught.value.status == 401 and "forged-openid" not in str(caught.value)


async def test_tls_is_verified_against_the_configured_ca(tmp_path: Path) -> None:
    ca_path, ca = make_ca(tmp_path / "ca")
    cert, key = issue_cert(ca, tmp_path / "server", "localhost", "127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    homeserver = await RecordingHomeserver().start(ssl=server_context)
    url = homeserver.url
    assert url.startswith("https://")
    config = MatrixConfig(ca_file=str(ca_path))
    trusting = MatrixClient(url, AS_TOKEN, BOT, ssl_context=config.ssl_context())
    untrusting = MatrixClient(url, AS_TOKEN, BOT)
    try:
        await trusting.leave("!r:hs.test", as_user=GHOST)
        assert homeserver.paths() == ["/_matrix/client/v3/rooms/!r:hs.test/leave"]
        with pytest.raises(MatrixUnavailable):
            await untrusting.leave("!r:hs.test", as_user=GHOST)
        assert len(homeserver.requests) == 1
    finally:
        await trusting.close()
        await untrusting.close()
        await homeserver.close()
