"""WHIP (RFC 9725) publishing and WHEP viewing, with aiortc peers against a real gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import aioice
import jwt
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from gateway.store import Store
from spec.conformance.orsclient import OrsClient, anonymous_token
from spec.conformance.webrtc import PatternTrack, ReceivedTrack, ToneTrack
from tests.gateway_process import RunningGateway, running_gateway

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # aioice skips 127.0.0.1 when it gathers; the tests stay on loopback.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda *_, **__: ["127.0.0.1"])


async def test_whip_publisher_is_heard_by_a_whep_viewer(gateway: RunningGateway) -> None:
    gateway.create_room("broadcast")
    publisher = RTCPeerConnection()
    publisher.addTransceiver(ToneTrack(880.0), direction="sendonly")
    await publisher.setLocalDescription(await publisher.createOffer())
    url = gateway.base_url + "/ors/v1/rooms/broadcast"
    async with aiohttp.ClientSession() as http:
        headers = {
            "Authorization": f"Bearer {gateway.token('broadcast', 'obs', 'OBS Studio')}",
            "Content-Type": "application/sdp",
        }
        async with http.post(
            url + "/whip", data=publisher.localDescription.sdp, headers=headers
        ) as response:
            assert response.status == 201
            assert response.content_type == "application/sdp"
            whip_location = response.headers["Location"]
            await publisher.setRemoteDescription(
                RTCSessionDescription(await response.text(), "answer")
            )
        shown = gateway.admin("GET", "/api/v1/rooms/broadcast")[1]
        assert [p["name"] for p in shown["participants"]] == ["OBS Studio"]

        viewer = RTCPeerConnection()
        viewer.addTransceiver("audio", direction="recvonly")
        received = ReceivedTrack("tone", "audio")
        consumers: list[asyncio.Task[None]] = []

        @viewer.on("track")
        def on_track(track) -> None:  # type: ignore[no-untyped-def]
            async def consume() -> None:
                while True:
                    frame = await track.recv()
                    received.frames += 1
                    data = frame.to_ndarray().reshape(-1)
                    received.samples.append(data[:: len(frame.layout.channels)].copy())

            consumers.append(asyncio.create_task(consume()))

        await viewer.setLocalDescription(await viewer.createOffer())
        headers["Authorization"] = f"Bearer {gateway.token('broadcast', 'viewer', 'Viewer')}"
        async with http.post(
            url + "/whep", data=viewer.localDescription.sdp, headers=headers
        ) as response:
            assert response.status == 201
            await viewer.setRemoteDescription(
                RTCSessionDescription(await response.text(), "answer")
            )
        async with asyncio.timeout(15):
            while received.frames < 60:
                await asyncio.sleep(0.1)
        assert abs(received.frequency() - 880.0) < 15

        async with http.patch(gateway.base_url + whip_location, headers=headers) as response:
            assert response.status == 405
        # the viewer's token is valid for the room, but the WHIP session is not its own (spec 11)
        async with http.delete(gateway.base_url + whip_location, headers=headers) as response:
            assert response.status == 403
            assert (await response.json(content_type=None))["code"] == "forbidden"
        shown = gateway.admin("GET", "/api/v1/rooms/broadcast")[1]
        assert "OBS Studio" in [p["name"] for p in shown["participants"]]
        heard = received.frames
        async with asyncio.timeout(15):
            while received.frames < heard + 25:  # the tone still flows
                await asyncio.sleep(0.1)
        # OBS's identity ends it, even with another token
        headers["Authorization"] = f"Bearer {gateway.token('broadcast', 'obs', 'OBS Studio')}"
        async with http.delete(gateway.base_url + whip_location, headers=headers) as response:
            assert response.status == 200
        shown = gateway.admin("GET", "/api/v1/rooms/broadcast")[1]
        assert "OBS Studio" not in [p["name"] for p in shown["participants"]]
    for task in consumers:
        task.cancel()
    await publisher.close()
    await viewer.close()


async def test_whip_without_a_token_is_refused(gateway: RunningGateway) -> None:
    gateway.create_room("broadcast-2")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway.base_url + "/ors/v1/rooms/broadcast-2/whip",
            data="v=0\r\n",
            headers={"Content-Type": "application/sdp"},
        ) as response,
    ):
        assert response.status == 401
        assert (await response.json(content_type=None))["code"] == "token_invalid"
    assert gateway.admin("GET", "/api/v1/rooms/broadcast-2")[1]["participants"] == []


async def _whip_publish(
    http: aiohttp.ClientSession, gateway: RunningGateway, room: str, identity: str
) -> tuple[RTCPeerConnection, str]:
    """A WHIP publisher of a tone (aiortc); returns it and its resource's Location."""
    publisher = RTCPeerConnection()
    publisher.addTransceiver(ToneTrack(440.0), direction="sendonly")
    await publisher.setLocalDescription(await publisher.createOffer())
    async with http.post(
        f"{gateway.base_url}/ors/v1/rooms/{room}/whip",
        data=publisher.localDescription.sdp,
        headers={
            "Authorization": f"Bearer {gateway.token(room, identity, identity.upper())}",
            "Content-Type": "application/sdp",
        },
    ) as response:
        assert response.status == 201, await response.text()
        await publisher.setRemoteDescription(RTCSessionDescription(await response.text(), "answer"))
        return publisher, response.headers["Location"]


async def _everything_before(witness: OrsClient) -> list[dict]:
    """The witness's events up to its own chat (events go out in the order they happen, 6.3),
    but active_speakers, which come and go with the publishers' tone."""
    marker = f"marker-{len(witness.received)}"
    await witness.request({"type": "chat", "text": marker})
    seen = []
    while (event := await witness.next_event(timeout=10))["type"] != "chat" or event["message"][
        "text"
    ] != marker:
        if event["type"] != "active_speakers":
            seen.append(event)
    return seen


BAD_BODIES = {
    "empty": b"",
    "text": b"hello, this is not an SDP offer",
    "not_utf8": b"v=0\r\n\xff\xfe\xfd\r\n",
    "no_m_line": b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    "no_ice": (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        b"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n"
    ),
}


@pytest.mark.parametrize("body", list(BAD_BODIES))
@pytest.mark.parametrize("kind", ["whip", "whep"])
async def test_a_body_that_is_not_a_usable_offer_is_400_negotiation_failed(
    gateway: RunningGateway, kind: str, body: str
) -> None:
    room = f"bad-body-{kind}-{body.replace('_', '-')}"
    gateway.create_room(room)
    async with aiohttp.ClientSession() as http:
        publisher, _ = await _whip_publish(http, gateway, room, "obs")  # someone to view
        witness = await OrsClient.connect(gateway.base_url, room)
        try:
            await witness.join(gateway.token(room, "witness", "Witness"))
            await witness.next_event("offer")  # OBS's tone, offered to the witness
            before = gateway.admin("GET", f"/api/v1/rooms/{room}")[1]["participants"]
            async with http.post(
                f"{gateway.base_url}/ors/v1/rooms/{room}/{kind}",
                data=BAD_BODIES[body],
                headers={
                    "Authorization": f"Bearer {gateway.token(room, 'tool', 'Tool')}",
                    "Content-Type": "application/sdp",
                },
            ) as response:
                assert response.status == 400
                assert response.content_type == "application/problem+json"
                problem = await response.json(content_type=None)
            assert (problem["code"], problem["status"]) == ("negotiation_failed", 400)
            assert "Location" not in response.headers
            # nobody joined, not even for a moment
            assert gateway.admin("GET", f"/api/v1/rooms/{room}")[1]["participants"] == before
            assert await _everything_before(witness) == []
        finally:
            await witness.close()
            await publisher.close()


async def test_whip_and_whep_check_token_then_room_then_body(gateway: RunningGateway) -> None:
    """Spec 11: the token first (a token for one room cannot probe which other rooms exist),
    then the room, the grant, the content type, the size and the SDP."""
    gateway.create_room("order-home")
    home_token = gateway.token("order-home", "tester", "Tester")
    gateway.create_room("order-gone")
    gone_token = gateway.token("order-gone", "tester", "Tester")
    assert gateway.admin("DELETE", "/api/v1/rooms/order-gone")[0] in (200, 204)
    offer = "v=0\r\n"
    cases = [
        # (room, token, content type, body) -> (status, code)
        ("order-nowhere", home_token, "application/sdp", offer, 403, "token_wrong_room"),
        ("order-home", gone_token, "application/sdp", offer, 403, "token_wrong_room"),
        ("order-gone", gone_token, "application/sdp", offer, 404, "room_not_found"),
        ("order-gone", gone_token, "text/plain", "hello", 404, "room_not_found"),
        ("order-home", None, "text/plain", "hello", 401, "token_invalid"),
        ("order-home", "not-a-jwt", "text/plain", "hello", 401, "token_invalid"),
        ("order-home", home_token, "text/plain", offer, 415, "unsupported_media_type"),
        (
            "order-home",
            home_token,
            "application/sdp",
            "v=0\r\n" + "a=x\r\n" * 14000,
            413,
            "message_too_large",
        ),
        ("order-home", home_token, "application/sdp", "", 400, "negotiation_failed"),
    ]
    async with aiohttp.ClientSession() as http:
        for kind in ("whip", "whep"):
            for room, token, content_type, body, status, code in cases:
                headers = {"Content-Type": content_type}
                if token is not None:
                    headers["Authorization"] = f"Bearer {token}"
                url = f"{gateway.base_url}/ors/v1/rooms/{room}/{kind}"
                async with http.post(url, data=body.encode(), headers=headers) as response:
                    problem = await response.json(content_type=None)
                    assert (response.status, problem["code"]) == (status, code), (kind, room, code)
                    assert response.content_type == "application/problem+json"
    assert gateway.admin("GET", "/api/v1/rooms/order-home")[1]["participants"] == []


async def test_only_the_creator_or_a_host_deletes_a_whip_or_whep_session(
    gateway: RunningGateway,
) -> None:
    gateway.create_room("owned")
    other_room = gateway.create_room("owned-elsewhere")["id"]
    base = gateway.base_url
    async with aiohttp.ClientSession() as http:
        publisher, whip = await _whip_publish(http, gateway, "owned", "encoder")
        viewer = RTCPeerConnection()
        viewer.addTransceiver("audio", direction="recvonly")
        await viewer.setLocalDescription(await viewer.createOffer())
        async with http.post(
            f"{base}/ors/v1/rooms/owned/whep",
            data=viewer.localDescription.sdp,
            headers={
                "Authorization": f"Bearer {gateway.token('owned', 'watcher', 'Watcher')}",
                "Content-Type": "application/sdp",
            },
        ) as response:
            assert response.status == 201
            whep = response.headers["Location"]
        witness = await OrsClient.connect(base, "owned")
        await witness.join(gateway.token("owned", "witness", "Witness"))
        await witness.next_event("offer")  # the encoder's tone

        def bearer(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        intruder = gateway.token("owned", "intruder", "Intruder")
        refused = [
            (whip, bearer(intruder), 403, "forbidden"),
            (whep, bearer(intruder), 403, "forbidden"),
            (whip, bearer(gateway.token("owned", "watcher", "Watcher")), 403, "forbidden"),
            (
                whip,
                bearer(gateway.token(other_room, "encoder", "Encoder", "host")),
                403,
                "token_wrong_room",
            ),
            (whip, {}, 401, "token_invalid"),
            (whip.replace("/whip/", "/whep/"), bearer(intruder), 404, "not_found"),
            (whip + "x", bearer(intruder), 404, "not_found"),
        ]
        try:
            for location, headers, status, code in refused:
                async with http.delete(base + location, headers=headers) as response:
                    problem = await response.json(content_type=None)
                    assert (response.status, problem["code"]) == (status, code), location
            names = [
                p["name"] for p in gateway.admin("GET", "/api/v1/rooms/owned")[1]["participants"]
            ]
            assert sorted(names) == ["ENCODER", "Watcher", "Witness"]
            assert await _everything_before(witness) == []  # nobody left

            # a host may end anyone's session
            host = gateway.token("owned", "chair", "Chair", role="host")
            async with http.delete(base + whep, headers=bearer(host)) as response:
                assert response.status == 200
            async with http.delete(base + whip, headers=bearer(host)) as response:
                assert response.status == 200
            names = [
                p["name"] for p in gateway.admin("GET", "/api/v1/rooms/owned")[1]["participants"]
            ]
            assert names == ["Witness"]
        finally:
            await witness.close()
            await viewer.close()
            await publisher.close()


async def test_whip_refuses_a_source_the_token_may_not_publish(gateway: RunningGateway) -> None:
    """Spec 5.3 canPublishSources with WHIP (11.1: audio is a microphone, video a camera)."""
    gateway.create_room("whip-sources")
    secret = Store(gateway.data_dir / "rondpoint.sqlite3").token_keys()["rondpoint"]
    claims = {
        "iss": "rondpoint",
        "sub": "encoder",
        "exp": int(time.time()) + 600,
        "video": {"roomJoin": True, "room": "whip-sources", "canPublishSources": ["microphone"]},
    }
    headers = {
        "Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}",
        "Content-Type": "application/sdp",
    }
    url = f"{gateway.base_url}/ors/v1/rooms/whip-sources/whip"
    both = RTCPeerConnection()
    both.addTransceiver(ToneTrack(440.0), direction="sendonly")
    both.addTransceiver(PatternTrack(), direction="sendonly")
    mic = RTCPeerConnection()
    mic.addTransceiver(ToneTrack(440.0), direction="sendonly")
    try:
        async with aiohttp.ClientSession() as http:
            await both.setLocalDescription(await both.createOffer())
            async with http.post(url, data=both.localDescription.sdp, headers=headers) as response:
                assert response.status == 403
                assert (await response.json(content_type=None))["code"] == "forbidden"
            assert gateway.admin("GET", "/api/v1/rooms/whip-sources")[1]["participants"] == []
            await mic.setLocalDescription(await mic.createOffer())
            async with http.post(url, data=mic.localDescription.sdp, headers=headers) as response:
                assert response.status == 201
        [shown] = gateway.admin("GET", "/api/v1/rooms/whip-sources")[1]["participants"]
        assert [t["source"] for t in shown["tracks"]] == ["microphone"]
    finally:
        await both.close()
        await mic.close()


CONSENT_SECONDS = (
    10  # above aioice's consent interval (4 to 6 s), so a live client keeps its session
)


@pytest.fixture(scope="module")
def consent_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(
        tmp_path_factory.mktemp("consent"),
        extra_config=f"[limits]\nmedia_consent_seconds = {CONSENT_SECONDS}\n",
    ) as running:
        yield running


def _names(gateway: RunningGateway, room: str) -> list[str]:
    return [p["name"] for p in gateway.admin("GET", f"/api/v1/rooms/{room}")[1]["participants"]]


async def _delete_status(
    http: aiohttp.ClientSession, gateway: RunningGateway, room: str, location: str, identity: str
) -> int:
    headers = {"Authorization": f"Bearer {gateway.token(room, identity, identity.upper())}"}
    async with http.delete(gateway.base_url + location, headers=headers) as response:
        return response.status


async def test_a_whip_client_that_vanishes_without_delete_leaves_after_its_consent_timeout(
    consent_gateway: RunningGateway,
) -> None:
    gateway = consent_gateway
    gateway.create_room("vanishing")
    async with aiohttp.ClientSession() as http:
        alive, alive_location = await _whip_publish(http, gateway, "vanishing", "alive")
        gone, gone_location = await _whip_publish(http, gateway, "vanishing", "gone")
        assert sorted(_names(gateway, "vanishing")) == ["ALIVE", "GONE"]
        await gone.close()  # no DELETE: its ICE consent checks stop
        async with asyncio.timeout(CONSENT_SECONDS * 4):
            while "GONE" in _names(gateway, "vanishing"):
                await asyncio.sleep(0.5)
        # the live client has outlived the timeout on its consent checks alone
        assert _names(gateway, "vanishing") == ["ALIVE"]
        assert await _delete_status(http, gateway, "vanishing", gone_location, "gone") == 404
        assert await _delete_status(http, gateway, "vanishing", alive_location, "alive") == 200
        assert _names(gateway, "vanishing") == []
        await alive.close()
    assert "no ICE consent" in gateway.log_text()


async def test_a_whip_session_ends_when_a_host_removes_its_participant_or_the_room_goes(
    consent_gateway: RunningGateway,
) -> None:
    gateway = consent_gateway
    gateway.create_room("removals")
    async with aiohttp.ClientSession() as http:
        streamer, location = await _whip_publish(http, gateway, "removals", "streamer")
        other, other_location = await _whip_publish(http, gateway, "removals", "other")
        host = await OrsClient.connect(gateway.base_url, "removals")
        joined = await host.join(gateway.token("removals", "host", "Host", role="host"))
        [target] = [p["id"] for p in joined["participants"] if p["name"] == "STREAMER"]
        await host.request({"type": "remove", "participant_id": target})
        async with asyncio.timeout(CONSENT_SECONDS):
            # a bystander's DELETE changes nothing: 403 while the session lives, 404 once it is gone
            while await _delete_status(http, gateway, "removals", location, "bystander") != 404:
                await asyncio.sleep(0.5)
        assert sorted(_names(gateway, "removals")) == ["Host", "OTHER"]
        await host.close()
        assert gateway.admin("DELETE", "/api/v1/rooms/removals")[0] in (200, 204)
        gateway.create_room("removals")  # a new room of the same name: the old session is gone
        async with asyncio.timeout(CONSENT_SECONDS):
            while (
                await _delete_status(http, gateway, "removals", other_location, "bystander") != 404
            ):
                await asyncio.sleep(0.5)
        await streamer.close()
        await other.close()


async def test_one_token_holds_one_whip_session_and_one_that_never_connects_is_removed(
    gateway: RunningGateway,
) -> None:
    """One guest token posted 100 WHIP offers that never connected, and the room (100
    participants at most) refused its host. A new session of an identity replaces its older one
    of the same kind (spec 11), and a session with no ICE check within 15 s is ended."""
    gateway.create_room("phantoms")
    guest = await anonymous_token(gateway.base_url, "phantoms", "Phantom")
    assert (guest["status"], guest["role"]) == (201, "guest")
    never_connected = RTCPeerConnection()
    never_connected.addTransceiver(ToneTrack(440.0), direction="sendonly")
    await never_connected.setLocalDescription(await never_connected.createOffer())
    headers = {"Authorization": f"Bearer {guest['token']}", "Content-Type": "application/sdp"}
    most = 0
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                async with http.post(
                    f"{gateway.base_url}/ors/v1/rooms/phantoms/whip",
                    data=never_connected.localDescription.sdp,
                    headers=headers,
                ) as response:
                    assert response.status == 201, await response.text()
                most = max(most, _names(gateway, "phantoms").count("Phantom"))
        assert most == 1
        host = await OrsClient.connect(gateway.base_url, "phantoms")
        try:
            joined = await host.join(gateway.token("phantoms", "chair", "Chair", role="host"))
            assert joined["type"] == "joined"
            async with asyncio.timeout(30):  # 15 s without an ICE check, plus one sweep period
                while "Phantom" in _names(gateway, "phantoms"):
                    await asyncio.sleep(0.5)
            assert _names(gateway, "phantoms") == ["Chair"]
        finally:
            await host.close()
    finally:
        await never_connected.close()
    assert "no ICE consent check within 15 s" in gateway.log_text()


async def test_short_datagrams_from_a_connected_whip_client_are_dropped_without_a_traceback(
    gateway: RunningGateway,
) -> None:
    """A 1-byte datagram from a connected peer raised IndexError, a traceback each."""
    gateway.create_room("noisy")
    async with aiohttp.ClientSession() as http:
        publisher, _ = await _whip_publish(http, gateway, "noisy", "noisy")
        try:
            async with asyncio.timeout(15):
                while publisher.connectionState != "connected":
                    await asyncio.sleep(0.1)
            sender = publisher.getTransceivers()[0].sender
            ice = sender.transport.transport._connection  # aioice: the pair ICE nominated
            pair = ice._nominated[1]
            for length in range(1, 12):
                for first in (0x80, 0x90, 0xBF):
                    datagram = bytes([first]) + bytes(length - 1)
                    pair.protocol.transport.sendto(datagram, pair.remote_addr)
            await asyncio.sleep(1)
            assert publisher.connectionState == "connected"
            assert _names(gateway, "noisy") == ["NOISY"]
        finally:
            await publisher.close()
    log = gateway.log_text()
    assert "Traceback" not in log
    assert '"level": "error"' not in log
