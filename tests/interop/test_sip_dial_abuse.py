"""Dialling out cannot be abused: only operator-issued hosts dial, and a refused or failed call
gives back its RTP ports and its participant (issue 9)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from spec.conformance.orsclient import OrsClient, OrsError, anonymous_token
from tests.gateway_process import RunningGateway

pytestmark = pytest.mark.interop


class SipListener:
    """A UDP socket on loopback that only records what reaches it: is anything sent there?"""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.port: int = self.socket.getsockname()[1]

    def received(self) -> list[bytes]:
        datagrams = []
        while True:
            try:
                datagrams.append(self.socket.recv(65536))
            except BlockingIOError:
                return datagrams

    async def wait_for_invite(self, timeout: float = 10) -> bytes:
        async with asyncio.timeout(timeout):
            while True:
                for datagram in self.received():
                    if datagram.startswith(b"INVITE "):
                        return datagram
                await asyncio.sleep(0.1)

    def close(self) -> None:
        self.socket.close()


def room_state(gateway: RunningGateway, room: str) -> dict:
    status, body = gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 200, body
    return body


async def test_a_host_who_made_the_room_anonymously_cannot_dial(gateway: RunningGateway) -> None:
    """Anyone may create a room and be its host, but dialling would spend the operator's trunk
    on any number they type: refused with `forbidden`, and no INVITE leaves the gateway."""
    made = await anonymous_token(gateway.base_url, "salle-anonyme", "Quelqu'un")
    assert made["status"] == 201 and made["role"] == "host", made
    phone = SipListener()
    try:
        anonymous_host = await OrsClient.connect(gateway.base_url, "salle-anonyme")
        await anonymous_host.join(made["token"])
        with pytest.raises(OrsError) as refused:
            await anonymous_host.request(
                {"type": "dial", "to": f"sip:0612345642@127.0.0.1:{phone.port}"}
            )
        assert refused.value.code == "forbidden"
        assert refused.value.problem["status"] == 403
        assert "anonymous" in refused.value.problem["detail"]
        with pytest.raises(OrsError) as refused:
            await anonymous_host.request({"type": "dial", "to": "tel:+33899123456"})
        assert refused.value.code == "forbidden"
        await asyncio.sleep(1)  # time for an INVITE to arrive, were one sent
        assert phone.received() == []
        room = room_state(gateway, "salle-anonyme")
        assert room["calls"] == []
        assert [p["name"] for p in room["participants"]] == ["Quelqu'un"]

        # The same room, a host token the operator issued: the call is placed.
        host = await OrsClient.connect(gateway.base_url, "salle-anonyme")
        await host.join(gateway.token("salle-anonyme", "hote", "Hôte", role="host"))
        await host.request({"type": "dial", "to": f"sip:0612345642@127.0.0.1:{phone.port}"})
        invite = await phone.wait_for_invite()
        assert invite.startswith(b"INVITE sip:0612345642@127.0.0.1:")
        ringing = await host.next_event("participant_joined", timeout=10)
        assert ringing["participant"]["name"] == "Phone ••• 42 · ringing"
        await host.request({"type": "remove", "participant_id": ringing["participant"]["id"]})
        await host.close()
        await anonymous_host.close()
    finally:
        phone.close()
