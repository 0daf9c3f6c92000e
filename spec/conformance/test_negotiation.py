"""Black-box conformance: publish offers that disagree with their `tracks` (spec/ors-v1.md 8.2, 10.4,
10.6) fail as a whole with `negotiation_failed` and the documented `field`, publish nothing, and
leave the session able to publish with a corrected offer. Signalling only: the offers are
aiortc's (spec/conformance/webrtc.py), no media flows.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import aiohttp
import pytest
from yarl import URL

from spec.conformance.orsclient import Message, OrsClient, OrsError, anonymous_token
from spec.conformance.test_conformance import check, check_server_messages, joined
from spec.conformance.webrtc import PatternTrack, ToneTrack, WebRtcPeer

pytestmark = pytest.mark.interop

MIC = {"mid": "0", "source": "microphone"}
CAM = {"mid": "1", "source": "camera"}
LAYERS = [{"rid": "q", "height": 180}, {"rid": "h", "height": 360}]


def _video(sdp: str, change: Callable[[str], str]) -> str:
    start = sdp.index("m=video")
    end = sdp.find("\r\nm=", start)
    end = len(sdp) if end < 0 else end + 2
    return sdp[:start] + change(sdp[start:end]) + sdp[end:]


def no_usable_video_codec(sdp: str) -> str:
    return _video(sdp, lambda m: m.replace("VP8/90000", "VP9/90000").replace("H264/", "H265/"))


def rid_lines(sdp: str) -> str:
    return _video(sdp, lambda m: m + "a=rid:q send\r\na=rid:x send\r\na=simulcast:send q;x\r\n")


CASES: dict[str, tuple[list[dict], Callable[[str], str], str]] = {
    "mid_without_m_section": ([MIC, {**CAM, "mid": "9"}], str, "/tracks/1/mid"),
    "camera_on_audio": ([{**MIC, "source": "camera"}, CAM], str, "/tracks/0/source"),
    "microphone_on_video": ([MIC, {**CAM, "source": "microphone"}], str, "/tracks/1/source"),
    "no_usable_codec": ([MIC, CAM], no_usable_video_codec, "/tracks/1"),
    "simulcast_without_rid_lines": (
        [MIC, {**CAM, "simulcast": LAYERS}],
        str,
        "/tracks/1/simulcast",
    ),
    "simulcast_other_rids": ([MIC, {**CAM, "simulcast": LAYERS}], rid_lines, "/tracks/1/simulcast"),
    "sending_m_section_not_listed": ([MIC], str, "/tracks"),
}


def participant_id(client: OrsClient) -> str:
    reply = next(m for m in client.received if m["type"] in ("joined", "lobby"))
    return str(reply["participant"]["id"])


async def events_until_chat(sender: OrsClient, watcher: OrsClient) -> list[Message]:
    """A server sends a room's events in the order they happened (6.3): once the watcher has the
    sender's chat, it has every event that the sender's earlier requests caused."""
    marker = "marker-" + secrets.token_hex(4)
    await sender.request({"type": "chat", "text": marker})
    seen = []
    while (event := await watcher.next_event())["type"] != "chat" or event["message"][
        "text"
    ] != marker:
        seen.append(event)
    return seen


async def test_offers_that_disagree_with_tracks_fail_whole_and_publish_nothing(
    ors_url: str, ors_room: str
) -> None:
    # one session tries every case in turn (anonymous tokens are rate-limited): a failed offer
    # changes nothing, so each case starts from the same state
    alice = await joined(ors_url, ors_room, "Alice")
    bob = await joined(ors_url, ors_room, "Bob")
    peer = WebRtcPeer(alice)
    late = None
    try:
        peer.publish_pc.addTransceiver(ToneTrack(440.0), direction="sendonly")
        peer.publish_pc.addTransceiver(PatternTrack(), direction="sendonly")
        await peer.publish_pc.setLocalDescription(await peer.publish_pc.createOffer())
        sdp = peer.publish_pc.localDescription.sdp
        assert [t.mid for t in peer.publish_pc.getTransceivers()] == ["0", "1"]

        for case, (tracks, munge, field) in CASES.items():
            offer = {"type": "offer", "pc": "publish", "sdp": munge(sdp), "tracks": tracks}
            with pytest.raises(OrsError) as error:
                await alice.request(offer)
            problem = error.value.problem
            assert (problem["code"], problem["status"]) == ("negotiation_failed", 400), case
            assert problem.get("field") == field, (case, problem)

        # nothing published: Bob is told of no track, a newcomer sees Alice without tracks
        during = await events_until_chat(alice, bob)
        assert [e for e in during if e["type"] in ("track_published", "offer")] == []
        late = await joined(ors_url, ors_room, "Carol")
        reply = next(m for m in late.received if m["type"] == "joined")
        [seen] = [p for p in reply["participants"] if p["id"] == participant_id(alice)]
        assert seen["tracks"] == []

        # the session still publishes with a corrected offer
        answer = await alice.request(
            {"type": "offer", "pc": "publish", "sdp": sdp, "tracks": [MIC, CAM]}
        )
        assert sorted((t["mid"], t["kind"]) for t in answer["tracks"]) == [
            ("0", "audio"),
            ("1", "video"),
        ]
        announced = {(await bob.next_event("track_published"))["track"]["id"] for _ in range(2)}
        assert announced == {t["id"] for t in answer["tracks"]}
        for client in (alice, bob, late):
            check_server_messages(client)
    finally:
        await peer.close()
        for client in (alice, bob, late):
            if client is not None:
                await client.close()


async def _capabilities(ors_url: str) -> list[str]:
    async with aiohttp.ClientSession() as http, http.get(ors_url + "/.well-known/ors") as response:
        return list((await response.json())["capabilities"])


@pytest.mark.parametrize("body", [b"", b"this is not an SDP offer"])
async def test_whip_and_whep_answer_a_body_that_is_not_sdp_with_400_negotiation_failed(
    ors_url: str, ors_room: str, body: bytes
) -> None:
    grant = await anonymous_token(ors_url, ors_room, "Encoder")
    assert grant["status"] == 201, grant
    capabilities = await _capabilities(ors_url)
    kinds = [kind for kind in ("whip", "whep") if kind in capabilities]
    if not kinds:
        pytest.skip("the server offers neither WHIP nor WHEP")
    async with aiohttp.ClientSession() as http:
        for kind in kinds:
            async with http.post(
                f"{ors_url}/ors/v1/rooms/{ors_room}/{kind}",
                data=body,
                headers={
                    "Authorization": f"Bearer {grant['token']}",
                    "Content-Type": "application/sdp",
                },
            ) as response:
                assert response.status == 400, kind
                assert response.content_type == "application/problem+json"
                problem = await response.json(content_type=None)
            check("server.error.json", {"type": "error", "problem": problem})
            assert problem["code"] == "negotiation_failed", (kind, problem)


async def test_only_its_creator_or_a_host_may_delete_a_whip_session(
    ors_url: str, ors_room: str
) -> None:
    """Spec 11: another participant's valid token gets 403 forbidden and the session stays."""
    if "whip" not in await _capabilities(ors_url):
        pytest.skip("the server offers no WHIP")
    tokens = [
        await anonymous_token(ors_url, ors_room, name) for name in ("Host", "Encoder", "Other")
    ]
    assert [t["status"] for t in tokens] == [201] * 3, tokens
    encoder, other = tokens[1], tokens[2]
    peer = WebRtcPeer(await joined(ors_url, ors_room, "Watcher"))  # a WHIP peer; its client watches
    watcher = peer.client
    try:
        peer.publish_pc.addTransceiver(ToneTrack(440.0), direction="sendonly")
        await peer.publish_pc.setLocalDescription(await peer.publish_pc.createOffer())
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{ors_url}/ors/v1/rooms/{ors_room}/whip",
                data=peer.publish_pc.localDescription.sdp,
                headers={
                    "Authorization": f"Bearer {encoder['token']}",
                    "Content-Type": "application/sdp",
                },
            ) as response:
                assert response.status == 201, await response.text()
                location = str(response.url.join(URL(response.headers["Location"])))
            joined_event = await watcher.next_event("participant_joined")
            encoder_id = joined_event["participant"]["id"]

            async with http.delete(
                location, headers={"Authorization": f"Bearer {other['token']}"}
            ) as response:
                assert response.status == 403
                problem = await response.json(content_type=None)
            check("server.error.json", {"type": "error", "problem": problem})
            assert problem["code"] == "forbidden"
            during = await events_until_chat(watcher, watcher)
            assert [e for e in during if e["type"] == "participant_left"] == []

            role = tokens[0].get("role")
            deleter = tokens[0] if role == "host" else encoder
            async with http.delete(
                location, headers={"Authorization": f"Bearer {deleter['token']}"}
            ) as response:
                assert response.status == 200
            left = await watcher.next_event("participant_left")
            assert left["participant_id"] == encoder_id
    finally:
        await peer.close()
        await watcher.close()
