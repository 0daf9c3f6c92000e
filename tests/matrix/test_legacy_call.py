"""Legacy 1:1 Matrix calls (m.call.*) to a ghost, with a real Synapse: the caller is a matrix-nio
client with an aiortc peer (as Element Web places such a call: a DM with the ghost, an
m.call.invite holding the offer); a browser-like ORS participant (spec/conformance) is in the room
here. Asserted: the ghost joins the DM, the call is answered, each side hears the other's tone at
its own frequency, the caller is listed here with origin `matrix`, a hangup from Matrix removes
them; a room with a PIN, a room that does not exist (or no longer does) are refused with a notice
and a hangup, leaving nobody here. A call to a phone ghost dials SIPp through a trunk, is answered
when it answers (a hangup from Matrix sends it BYE), and a busy phone is `user_busy`; baresip
answering hears the caller's tone and is heard, and its hangup ends the Matrix call."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from nio import AsyncClient, RoomCreateResponse, RoomSendResponse, SyncResponse

from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import ReceivedTrack, ToneTrack, WebRtcPeer, dominant_frequency
from tests.gateway_process import RunningGateway
from tests.interop.baresip import Baresip
from tests.interop.test_sip_dial_in import SCENARIOS
from tests.interop.test_sip_dial_out import callee
from tests.matrix.conftest import USER_PREFIX, MatrixStack
from tests.matrix.synapse import MatrixUser, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(150)]

CALLER_HZ = 660.0
ROOM_HZ = 440.0
PHONE_HZ = 1000.0
PHONE_NUMBER = "+33612345603"
"""baresip's account: it answers calls to this user only."""


@dataclass
class NioCaller:
    """A Matrix user placing legacy calls with matrix-nio, media from an aiortc peer."""

    user: MatrixUser
    client: AsyncClient
    events: list[dict[str, Any]] = field(default_factory=list)
    pc: RTCPeerConnection | None = None
    heard: ReceivedTrack = field(default_factory=lambda: ReceivedTrack("caller", "audio"))
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _since: str | None = None

    async def sync(self) -> None:
        reply = await self.client.sync(timeout=500, since=self._since)
        assert isinstance(reply, SyncResponse), reply
        self._since = reply.next_batch
        for room_id, room in reply.rooms.join.items():
            for event in room.timeline.events:
                self.events.append({"room_id": room_id, **event.source})

    async def next_event(self, room_id: str, *types: str, timeout: float = 20) -> dict[str, Any]:
        """The first event of TYPES in ROOM_ID not sent by the caller (synced as needed)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if (
                    event["room_id"] == room_id
                    and event.get("type") in types
                    and event.get("sender") != self.user.user_id
                ):
                    self.events.remove(event)
                    return event
            assert time.monotonic() < deadline, f"no {types} in {room_id} after {timeout} s"
            await self.sync()

    async def dm(self, ghost: str) -> str:
        reply = await self.client.room_create(invite=[ghost], is_direct=True)
        assert isinstance(reply, RoomCreateResponse), reply
        return reply.room_id

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> None:
        reply = await self.client.room_send(room_id, event_type, content)
        assert isinstance(reply, RoomSendResponse), reply

    async def invite(self, room_id: str, call_id: str) -> None:
        """An m.call.invite with an aiortc offer publishing CALLER_HZ."""
        self.pc = RTCPeerConnection()
        self.pc.addTransceiver(ToneTrack(CALLER_HZ), direction="sendrecv")
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = {"type": "offer", "sdp": self.pc.localDescription.sdp}
        content = {"call_id": call_id, "party_id": "CALLERDEV", "version": "1"}
        await self.send(room_id, "m.call.invite", {**content, "lifetime": 60000, "offer": offer})

    async def hang_up(self, room_id: str, call_id: str) -> None:
        content = {"call_id": call_id, "party_id": "CALLERDEV", "version": "1"}
        await self.send(room_id, "m.call.hangup", {**content, "reason": "user_hangup"})

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                data = frame.to_ndarray().reshape(-1)
                if frame.layout.name == "stereo":
                    data = data[::2]
                self.heard.frames += 1
                self.heard.samples.append(data.copy())
                del self.heard.samples[:-100]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.pc is not None:
            await self.pc.close()
        await self.client.close()


@contextlib.asynccontextmanager
async def nio_caller(stack: MatrixStack, name: str) -> AsyncIterator[NioCaller]:
    user = await stack.synapse.register_user(name, f"{name}-password")
    await user.set_display_name(name.capitalize())
    client = AsyncClient(stack.synapse.url, user.user_id, device_id=user.device_id)
    client.access_token = user.access_token
    caller = NioCaller(user, client)
    await caller.sync()
    try:
        yield caller
    finally:
        await caller.close()


def room_ghost(stack: MatrixStack, room: str) -> str:
    return f"@{USER_PREFIX}room_{room}:{stack.server_name}"


def participants(gateway: RunningGateway, room: str) -> list[dict[str, Any]]:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200, body
    return list(body["participants"])


async def dm_with(caller: NioCaller, ghost: str) -> str:
    """A DM of the caller's with GHOST, once the ghost has joined it."""
    dm = await caller.dm(ghost)

    async def joined() -> bool:
        return ghost in await caller.user.members(dm)

    await wait_for(joined, f"{ghost} to join the DM", 20)
    return dm


async def place_call(caller: NioCaller, dm: str, call_id: str) -> dict[str, Any]:
    """The callee's first reply to an m.call.invite: its answer or its hangup."""
    await caller.invite(dm, call_id)
    reply = await caller.next_event(dm, "m.call.answer", "m.call.hangup")
    assert reply["content"]["call_id"] == call_id, reply
    return reply


async def test_a_legacy_call_to_a_room_ghost_joins_the_room_and_the_tones_cross(
    matrix_stack: MatrixStack,
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    room = f"legacy-{secrets.token_hex(3)}"
    gateway.create_room(room)
    host = await OrsClient.connect(gateway.base_url, room)
    peer = WebRtcPeer(host)
    try:
        await host.join(gateway.token(room, "bruno", "Bruno", role="host"))
        await peer.publish(frequency=ROOM_HZ)
        async with nio_caller(stack, "anna") as caller:
            ghost = room_ghost(stack, room)
            dm = await dm_with(caller, ghost)
            answer = await place_call(caller, dm, "call-1")
            assert answer["type"] == "m.call.answer", answer
            content = answer["content"]
            assert (content["version"], content["party_id"]) == ("1", "RONDPOINT"), content
            assert answer["sender"] == ghost
            assert caller.pc is not None
            await caller.pc.setRemoteDescription(
                RTCSessionDescription(content["answer"]["sdp"], "answer")
            )
            end = await caller.next_event(dm, "m.call.candidates")
            assert [c["candidate"] for c in end["content"]["candidates"]] == [""], end

            # Here: Anna, origin matrix, with an audio track Bruno hears at her frequency.
            async def anna_listed() -> dict[str, Any] | None:
                listed = await asyncio.to_thread(participants, gateway, room)
                anna = next((p for p in listed if p["origin"] == "matrix"), None)
                return anna if anna and anna["tracks"] else None

            anna = await wait_for(anna_listed, "Anna listed here with her audio", 20)
            assert anna["name"] == "Anna", anna
            assert anna["origin_address"] == caller.user.user_id, anna
            track = anna["tracks"][0]["id"]

            async def bruno_hears() -> bool:
                with contextlib.suppress(TimeoutError):
                    await peer.accept_offer(await host.next_event("offer", timeout=0.3))
                received = peer.received.get(track)
                return bool(received and received.frames > 100)

            await wait_for(bruno_hears, "Bruno to receive Anna's audio", 20, interval=0)
            assert abs(peer.received[track].frequency() - CALLER_HZ) < 15

            async def anna_hears() -> bool:
                return caller.heard.frames > 100

            await wait_for(anna_hears, "Anna to receive the room's audio", 20)
            assert abs(caller.heard.frequency() - ROOM_HZ) < 15

            # Anna hangs up in Matrix: she leaves the room here.
            await caller.hang_up(dm, "call-1")

            async def anna_gone() -> bool:
                listed = await asyncio.to_thread(participants, gateway, room)
                return [p["name"] for p in listed] == ["Bruno"]

            await wait_for(anna_gone, "Anna to leave the room here", 15)
    finally:
        await peer.close()
        await host.close()


async def test_a_room_with_a_pin_refuses_the_call_with_a_notice(
    matrix_stack: MatrixStack,
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    room = f"pinned-{secrets.token_hex(3)}"
    gateway.create_room(room, pin="4711")
    async with nio_caller(stack, "berta") as caller:
        dm = await dm_with(caller, room_ghost(stack, room))
        hangup = await place_call(caller, dm, "call-pin")
        assert hangup["type"] == "m.call.hangup", hangup
        assert hangup["content"]["reason"] == "unknown_error"
        notice = await caller.next_event(dm, "m.room.message")
        assert "PIN" in notice["content"]["body"], notice
        assert participants(gateway, room) == []


async def test_a_ghost_of_a_room_that_does_not_exist_declines_and_a_deleted_one_hangs_up(
    matrix_stack: MatrixStack,
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    async with nio_caller(stack, "carla") as caller:
        nowhere = room_ghost(stack, f"nowhere-{secrets.token_hex(3)}")
        dm = await caller.dm(nowhere)

        async def declined() -> bool:
            return nowhere in await caller.user.members(dm, membership="leave")

        await wait_for(declined, "the ghost of a missing room to decline the invite", 20)

        room = f"gone-{secrets.token_hex(3)}"
        gateway.create_room(room)
        ghost = room_ghost(stack, room)
        dm = await dm_with(caller, ghost)
        status, body = gateway.admin("DELETE", f"/api/v1/rooms/{room}")
        assert status in (200, 204), body
        hangup = await place_call(caller, dm, "call-gone")
        assert hangup["type"] == "m.call.hangup", hangup
        assert hangup["content"]["reason"] == "unknown_error"

        async def left() -> bool:
            return ghost in await caller.user.members(dm, membership="leave")

        await wait_for(left, "the ghost to leave the DM of a deleted room", 20)
        status, _ = gateway.admin("GET", f"/api/v1/rooms/{room}")
        assert status == 404


@contextlib.contextmanager
def trunk_to(gateway: RunningGateway, port: int) -> Iterator[None]:
    status, body = gateway.admin(
        "POST", "/api/v1/sip/trunks", {"name": "matrix-legacy", "address": f"127.0.0.1:{port}"}
    )
    assert status == 201, body
    try:
        yield
    finally:
        gateway.admin("DELETE", "/api/v1/sip/trunks/matrix-legacy")


def private_rooms(gateway: RunningGateway) -> list[str]:
    status, body = gateway.admin("GET", "/api/v1/rooms")
    assert status == 200, body
    rooms = body["rooms"] if isinstance(body, dict) else body
    return [r["id"] for r in rooms if r["id"].startswith("matrix-call-")]


async def no_private_room_left(gateway: RunningGateway) -> None:
    async def cleaned() -> bool:
        return not await asyncio.to_thread(private_rooms, gateway)

    await wait_for(cleaned, "the call's private room to be deleted", 10)


@contextlib.asynccontextmanager
async def phone_dm(
    stack: MatrixStack, name: str, number: str, *sipp: str
) -> AsyncIterator[tuple[NioCaller, str, asyncio.subprocess.Process]]:
    """NAME's DM with the ghost of NUMBER, the trunk of tel: numbers leading to SIPp run with
    SIPP: (caller, dm, SIPp)."""
    phone, port = await callee(*sipp)
    try:
        with trunk_to(stack.gateway, port):
            async with nio_caller(stack, name) as caller:
                ghost = f"@{USER_PREFIX}tel_{number}:{stack.server_name}"
                yield caller, await dm_with(caller, ghost), phone
    finally:
        if phone.returncode is None:
            phone.kill()


async def test_a_call_to_a_phone_ghost_dials_the_phone_and_hangs_it_up(
    matrix_stack: MatrixStack,
) -> None:
    gateway = matrix_stack.gateway
    async with phone_dm(matrix_stack, "dora", "+33612345601", "-sn", "uas") as (caller, dm, phone):
        answer = await place_call(caller, dm, "call-phone")
        assert answer["type"] == "m.call.answer", answer
        assert len(private_rooms(gateway)) == 1
        await caller.hang_up(dm, "call-phone")
        output, _ = await asyncio.wait_for(phone.communicate(), 20)
        assert phone.returncode == 0, output.decode(errors="replace")[-1500:]
        await no_private_room_left(gateway)


async def test_a_busy_phone_is_user_busy(matrix_stack: MatrixStack) -> None:
    busy = ("-sf", str(SCENARIOS / "callee_busy.xml"))
    async with phone_dm(matrix_stack, "emil", "+33612345602", *busy) as (caller, dm, _):
        hangup = await place_call(caller, dm, "call-busy")
        assert hangup["type"] == "m.call.hangup", hangup
        assert hangup["content"]["reason"] == "user_busy"
        await no_private_room_left(matrix_stack.gateway)


async def test_a_phone_answering_a_phone_ghost_hears_the_caller_and_its_hangup_ends_the_call(
    matrix_stack: MatrixStack, tmp_path: Path
) -> None:
    stack, gateway = matrix_stack, matrix_stack.gateway
    async with (
        Baresip(tmp_path, tone_hz=PHONE_HZ, user=PHONE_NUMBER) as phone,
        nio_caller(stack, "fritz") as caller,
    ):
        with trunk_to(gateway, phone.sip_port):
            dm = await dm_with(caller, f"@{USER_PREFIX}tel_{PHONE_NUMBER}:{stack.server_name}")
            answer = await place_call(caller, dm, "call-baresip")
            assert answer["type"] == "m.call.answer", answer
            assert caller.pc is not None
            await caller.pc.setRemoteDescription(
                RTCSessionDescription(answer["content"]["answer"]["sdp"], "answer")
            )

            async def caller_hears() -> bool:
                return caller.heard.frames > 100

            await wait_for(caller_hears, "the caller to receive the phone's audio", 20)
            assert abs(caller.heard.frequency() - PHONE_HZ) < 15
            await asyncio.sleep(1)  # the phone records the caller meanwhile
            await phone.hangup()
            await phone.wait_event("CALL_CLOSED", timeout=10)
            hangup = await caller.next_event(dm, "m.call.hangup")
            assert hangup["content"]["reason"] == "user_hangup", hangup
            samples, rate = phone.recording("dec")
            assert abs(dominant_frequency(samples[-rate:], rate) - CALLER_HZ) < 15
            await no_private_room_left(gateway)
