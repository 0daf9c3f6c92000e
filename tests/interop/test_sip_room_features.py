"""Phones in rooms, end to end: the lobby, ``*6`` self-mute, join and leave tones, early media.

Real peers on both sides of the gateway: baresip (tests/interop/baresip.py) or SIPp as the phone,
and aiortc WebRTC participants (spec/conformance/webrtc.py) signalled over ORS. Every check is on
something a person would notice: who is in the room and in which state, what the browser hears
from the phone, what the phone hears from the gateway (baresip's recording, read with a
single-frequency detector).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from gateway.media.audio.tone import tone_amplitude
from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import SAMPLE_RATE, ReceivedTrack, WebRtcPeer
from tests.gateway_process import RunningGateway
from tests.interop.baresip import Baresip
from tests.interop.sipp_tools import phones, wait_until
from tests.interop.test_sip_dial_in import SCENARIOS
from tests.interop.test_sip_dial_out import callee

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

PHONE_HZ = 1000.0
BROWSER_HZ = 300.0
"""What WebRTC participants publish: far from the phone's tone and from the join/leave tones."""
PHONE_NUMBER = "0140506042"
JOIN_TONE = (660.0, 880.0)
LEAVE_TONE = (880.0, 660.0)
"""As protocols/sip/call.py plays them: 120 ms each, peak 6000."""


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[Baresip]:
    async with Baresip(tmp_path, tone_hz=PHONE_HZ, user=PHONE_NUMBER) as running:
        yield running


def log_entries(gateway: RunningGateway, since: int, message: str) -> list[dict]:
    """The gateway's JSON log lines with ``msg == message`` written after byte ``since``."""
    with open(gateway.log_path, "rb") as f:
        f.seek(since)
        lines = f.read().decode(errors="replace").splitlines()
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == message:
            found.append(entry)
    return found


def log_size(gateway: RunningGateway) -> int:
    return gateway.log_path.stat().st_size


async def wait_frames(received: dict[str, ReceivedTrack], track_id: str, frames: int) -> None:
    async with asyncio.timeout(15):
        while (track := received.get(track_id)) is None or track.frames < frames:
            await asyncio.sleep(0.1)


async def heard_during(track: ReceivedTrack, seconds: float) -> tuple[int, np.ndarray]:
    """Frames the WebRTC participant received on ``track`` in the next ``seconds``, and their audio."""
    start = track.frames
    await asyncio.sleep(seconds)
    new = track.frames - start
    if new <= 0:
        return 0, np.zeros(0, np.int16)
    return new, np.concatenate(track.samples[-min(new, len(track.samples)) :])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def recorded_samples(phone: Baresip) -> int:
    """How many samples baresip's current 'dec' recording holds so far (a mark in its timeline).

    sndfile writes as it decodes, so the file's size tells where "now" falls in the recording;
    the WAV header's size is taken off once the recording is complete (see ``at_mark``)."""
    files = sorted(phone.recordings.glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)
    assert files, f"baresip records nothing yet in {phone.recordings}"
    return files[-1].stat().st_size // 2


def marks_to_samples(phone: Baresip, marks: list[int]) -> tuple[np.ndarray, int, list[int]]:
    """The finished recording, its rate, and the marks as sample indexes into it."""
    samples, rate = phone.recording("dec")
    files = sorted(phone.recordings.glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)
    header = files[-1].stat().st_size // 2 - len(samples)  # 16-bit mono: 2 bytes a sample
    return samples, rate, [max(0, mark - header) for mark in marks]


def tone_levels(samples: np.ndarray, frequency: float, rate: int) -> np.ndarray:
    """The tone's amplitude in consecutive 40 ms windows."""
    size = rate // 25
    return np.array(
        [
            tone_amplitude(samples[i : i + size], frequency, rate)
            for i in range(0, len(samples) - size + 1, size // 2)
        ]
    )


def assert_tone_pair(
    samples: np.ndarray,
    rate: int,
    quiet_from: int,
    start: int,
    end: int,
    pair: tuple[float, float],
    what: str,
) -> None:
    """``pair[0]`` then ``pair[1]`` stand far above the floor in samples[start:end], and neither
    is in samples[quiet_from:start], before the event."""
    window = samples[start:end]
    before = samples[quiet_from:start]
    assert start - quiet_from > rate, f"{what}: too short a stretch before the event"
    first, second = (tone_levels(window, f, rate) for f in pair)
    assert len(first) and first.max() > 1500, f"{what}: no {pair[0]:.0f} Hz ({first.max():.0f})"
    assert second.max() > 1500, f"{what}: no {pair[1]:.0f} Hz ({second.max():.0f})"
    assert int(np.argmax(first)) < int(np.argmax(second)), f"{what}: the tones are in wrong order"
    for frequency in pair:
        quiet = tone_levels(before, frequency, rate)
        assert not len(quiet) or quiet.max() < 300, (
            f"{what}: {frequency:.0f} Hz already before the event ({quiet.max():.0f})"
        )


async def test_the_lobby_holds_a_phone_until_a_host_admits_it(
    gateway: RunningGateway, phone: Baresip
) -> None:
    room = "salle-attente-tel"
    gateway.create_room(room, lobby=True)
    since = log_size(gateway)
    host = await OrsClient.connect(gateway.base_url, room)
    peer = WebRtcPeer(host)
    try:
        joined = await host.join(gateway.token(room, "hote", "Hôte", role="host"))
        assert joined["type"] == "joined"
        await peer.publish(frequency=BROWSER_HZ)

        await phone.dial(f"sip:{room}@127.0.0.1:{gateway.sip_port}")
        await phone.wait_event("CALL_ESTABLISHED", timeout=10)
        waiting = (await host.next_event("participant_joined", timeout=15))["participant"]
        assert (waiting["state"], waiting["origin"], waiting["name"]) == (
            "lobby",
            "sip",
            "Phone ••• 42",
        )

        # In the lobby: the waiting prompt plays, the phone publishes nothing, nobody hears it.
        await wait_until(
            lambda: log_entries(gateway, since, "phone prompt"), 10, "no prompt for the phone"
        )
        await asyncio.sleep(1)  # the host admits it in the middle of the prompt (3.6 s)
        prompts = [e["prompt"] for e in log_entries(gateway, since, "phone prompt")]
        assert prompts and set(prompts) == {"lobby"}, prompts
        [listed] = phones(gateway, room)
        assert (listed["state"], listed["tracks"]) == ("lobby", [])
        types = [m["type"] for m in host.received]
        assert "track_published" not in types and "offer" not in types, types
        assert peer.received == {}

        await host.request({"type": "admit", "participant_id": waiting["id"]})
        admitted_at = time.monotonic()
        admitted = (await host.next_event("participant_updated", timeout=10))["participant"]
        assert (admitted["id"], admitted["state"]) == (waiting["id"], "joined")
        track = (await host.next_event("track_published", timeout=10))["track"]
        waited = time.monotonic() - admitted_at
        assert waited < 1.5, f"the phone entered the room {waited:.1f} s after its admission"
        assert (track["participant_id"], track["kind"]) == (waiting["id"], "audio")
        await peer.accept_offer(await host.next_event("offer", timeout=10))
        await wait_frames(peer.received, track["id"], 50)
        heard = np.concatenate(peer.received[track["id"]].samples[-25:])
        assert tone_amplitude(heard, PHONE_HZ, SAMPLE_RATE) > 2000, "the host does not hear it"
        assert phones(gateway, room)[0]["state"] == "joined"

        await asyncio.sleep(2)  # the joined prompt, then the host's tone reaches the phone
        await phone.hangup()
        await phone.wait_event("CALL_CLOSED", timeout=10)
    finally:
        await peer.close()
        await host.close()

    # The phone heard something while waiting (the lobby prompt) and the host once admitted.
    samples, rate = phone.recording("dec")
    assert rms(samples[: 2 * rate]) > 200, "the phone heard silence in the lobby"
    assert tone_amplitude(samples[-rate:], BROWSER_HZ, rate) > 2000, "no room audio once admitted"


async def test_star_six_mutes_and_unmutes_a_phone(gateway: RunningGateway, phone: Baresip) -> None:
    room = "salle-sourdine-tel"
    gateway.create_room(room)
    alice = await OrsClient.connect(gateway.base_url, room)
    peer = WebRtcPeer(alice)
    try:
        await alice.join(gateway.token(room, "alice", "Alice"))
        await phone.dial(f"sip:{room}@127.0.0.1:{gateway.sip_port}")
        await phone.wait_event("CALL_ESTABLISHED", timeout=10)
        caller = (await alice.next_event("participant_joined", timeout=15))["participant"]
        track = (await alice.next_event("track_published", timeout=10))["track"]
        await peer.accept_offer(await alice.next_event("offer", timeout=10))
        await wait_frames(peer.received, track["id"], 50)
        received = peer.received[track["id"]]
        frames, heard = await heard_during(received, 1.0)
        assert frames > 30 and tone_amplitude(heard, PHONE_HZ, SAMPLE_RATE) > 2000

        await phone.send_digits("*6")
        muted = await alice.next_event("track_muted", timeout=5)
        assert (muted["track_id"], muted["participant_id"], muted["muted"]) == (
            track["id"],
            caller["id"],
            True,
        )
        await asyncio.sleep(0.5)  # what was in flight
        frames, heard = await heard_during(received, 1.5)
        level = tone_amplitude(heard, PHONE_HZ, SAMPLE_RATE) if frames else 0.0
        assert frames < 10 or level < 100, f"muted, yet {frames} frames at {level:.0f}"

        await phone.send_digits("*6")
        unmuted = await alice.next_event("track_muted", timeout=5)
        assert (unmuted["track_id"], unmuted["muted"]) == (track["id"], False)
        await asyncio.sleep(0.5)
        frames, heard = await heard_during(received, 1.0)
        assert frames > 30, f"unmuted, yet only {frames} frames in 1 s"
        assert tone_amplitude(heard, PHONE_HZ, SAMPLE_RATE) > 2000, "unmuted but not heard"
        [listed] = phones(gateway, room)
        assert [t["muted"] for t in listed["tracks"]] == [False]

        await phone.hangup()
        await phone.wait_event("CALL_CLOSED", timeout=10)
    finally:
        await peer.close()
        await alice.close()


async def test_a_phone_hears_a_tone_when_someone_joins_and_leaves(
    gateway: RunningGateway, phone: Baresip
) -> None:
    room = "salle-tonalites"
    gateway.create_room(room)
    await phone.dial(f"sip:{room}@127.0.0.1:{gateway.sip_port}")
    await phone.wait_event("CALL_ESTABLISHED", timeout=10)
    await wait_until(lambda: phones(gateway, room), 10, "the phone never joined")
    await asyncio.sleep(2)  # the "joined" prompt ends (a tone does not interrupt a prompt)

    # Marks in the phone's recording: quiet before the join, 2 s for the join tone, quiet
    # again, 2 s for the leave tone.
    quiet_mark = recorded_samples(phone)
    await asyncio.sleep(2)
    join_mark = recorded_samples(phone)
    alice = await OrsClient.connect(gateway.base_url, room)
    try:
        await alice.join(gateway.token(room, "alice", "Alice"))  # publishes nothing: silent
        await asyncio.sleep(2)
        settled_mark = recorded_samples(phone)
        await asyncio.sleep(1.5)
        leave_mark = recorded_samples(phone)
    finally:
        await alice.close()
    await asyncio.sleep(2)
    end_mark = recorded_samples(phone)
    await phone.hangup()
    await phone.wait_event("CALL_CLOSED", timeout=10)

    samples, rate, (quiet_at, join_at, settled_at, leave_at, end_at) = marks_to_samples(
        phone, [quiet_mark, join_mark, settled_mark, leave_mark, end_mark]
    )
    assert end_at - quiet_at > 6 * rate, "the recording does not follow the call's time"
    assert_tone_pair(samples, rate, quiet_at, join_at, settled_at, JOIN_TONE, "join tone")
    assert_tone_pair(samples, rate, settled_at, leave_at, end_at, LEAVE_TONE, "leave tone")


async def test_early_media_is_heard_in_the_room_while_the_callee_rings(
    gateway: RunningGateway,
) -> None:
    room = "salle-media-precoce"
    gateway.create_room(room)
    host = await OrsClient.connect(gateway.base_url, room)
    peer = WebRtcPeer(host)
    sipp, port = await callee("-sf", str(SCENARIOS / "callee_early_media.xml"))
    try:
        await host.join(gateway.token(room, "hote", "Hôte", role="host"))
        status, call = gateway.admin(
            "POST", f"/api/v1/rooms/{room}/dial", {"to": f"sip:0612345642@127.0.0.1:{port}"}
        )
        assert status == 202, call
        ringing = (await host.next_event("participant_joined", timeout=10))["participant"]
        assert ringing["name"] == "Phone ••• 42 · ringing"
        track = (await host.next_event("track_published", timeout=10))["track"]
        assert (track["participant_id"], track["kind"]) == (ringing["id"], "audio")
        await peer.accept_offer(await host.next_event("offer", timeout=10))
        # g711a.pcap is silent for its first half second: wait for its voice, still ringing.
        await wait_frames(peer.received, track["id"], 10)
        received = peer.received[track["id"]]
        deadline = time.monotonic() + 3.5
        while (level := rms(np.concatenate(received.samples[-10:]))) < 100:
            assert time.monotonic() < deadline, f"early media is silent in the room ({level:.0f})"
            await asyncio.sleep(0.1)
        answered_early = [m for m in host.received if m["type"] == "participant_updated"]
        [listed] = phones(gateway, room)
        assert listed["name"].endswith(" · ringing") and not answered_early, (
            "the callee answered before its early media was heard: make the 183 phase longer"
        )

        answered = (await host.next_event("participant_updated", timeout=10))["participant"]
        assert (answered["id"], answered["name"]) == (ringing["id"], "Phone ••• 42")
        calls = gateway.admin("GET", f"/api/v1/rooms/{room}")[1]["calls"]
        assert [c["status"] for c in calls] == ["answered"]
        frames, _ = await heard_during(peer.received[track["id"]], 0.5)
        assert frames > 10, "the callee's audio stopped at the answer"

        await host.request({"type": "remove", "participant_id": ringing["id"]})
        output, _ = await asyncio.wait_for(sipp.communicate(), 15)
        assert sipp.returncode == 0, output.decode(errors="replace")[-1500:]
    finally:
        if sipp.returncode is None:
            sipp.kill()
            await sipp.wait()
        await peer.close()
        await host.close()
