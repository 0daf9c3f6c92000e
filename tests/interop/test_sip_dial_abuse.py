"""Dialling out cannot be abused: only operator-issued hosts dial, and a refused or failed call
gives back its RTP ports and its participant."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from spec.conformance.orsclient import OrsClient, OrsError, anonymous_token
from tests.gateway_process import RunningGateway, free_port, free_udp_block, running_gateway
from tests.interop.sipp_tools import SCENARIOS
from tests.interop.test_sip_dial_out import callee

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


RTP_PAIRS = 4
"""The small gateway's whole RTP range: a leak of a few calls is enough to refuse every call."""


@pytest.fixture(scope="module")
def small_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    first = free_udp_block(2 * RTP_PAIRS, (20000, 29999))
    silent_dns = free_port(socket.SOCK_DGRAM)  # nobody answers there: names never resolve
    with running_gateway(
        Path(tmp_path_factory.mktemp("small")),
        extra_config=f'dns_servers = ["127.0.0.1:{silent_dns}"]\n[rooms]\nmax_participants = 2\n',
        rtp_ports=(first, first + 2 * RTP_PAIRS - 1),
    ) as running:
        yield running


def rtp_range(gateway: RunningGateway) -> range:
    text = gateway.config_path.read_text()
    start = int(text.split("rtp_port_start = ")[1].split()[0])
    end = int(text.split("rtp_port_end = ")[1].split()[0])
    return range(start, end + 1)


def ports_held(ports: range) -> list[int]:
    """The ports of ``ports`` that cannot be bound on loopback now."""
    held = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                held.append(port)
    return held


async def eventually(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not (value := check()):
            await asyncio.sleep(0.2)
    assert value, what
    return value


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


async def test_refused_and_failed_dials_give_back_their_ports_and_participants(
    small_gateway: RunningGateway,
) -> None:
    """Dials into a full room, to targets with CR/LF or header injection, to a domain that does
    not resolve and to a busy callee, each more times than the range has port pairs: afterwards
    every port of the range is free, no callee is left in a room, and the gateway still places
    as many calls as it has port pairs."""
    gateway = small_gateway
    ports = rtp_range(gateway)
    assert len(ports) == 2 * RTP_PAIRS and ports_held(ports) == []
    trunk_end = SipListener()
    status, _ = gateway.admin(
        "POST",
        "/api/v1/sip/trunks",
        {"name": "operateur", "address": f"127.0.0.1:{trunk_end.port}"},
    )
    assert status == 201
    attempts = RTP_PAIRS + 2
    try:
        gateway.create_room("pleine")
        members = [await OrsClient.connect(gateway.base_url, "pleine") for _ in range(2)]
        for index, member in enumerate(members):
            await member.join(gateway.token("pleine", f"membre-{index}", f"Membre {index}"))
        for _ in range(attempts):
            status, problem = gateway.admin(
                "POST",
                "/api/v1/rooms/pleine/dial",
                {"to": f"sip:0612345642@127.0.0.1:{trunk_end.port}"},
            )
            assert (status, problem["code"]) == (403, "room_full")

        gateway.create_room("injections")
        injections = {
            "tel:+33612345678\r\nX-Evil: 1": "control characters",
            f"sip:alice@127.0.0.1:{trunk_end.port}\r\nX-Evil: 1": "control characters",
            "tel:+33612345678;user=phone>;X-Evil=1": "parameters",
            "tel:+33899123456;phone-context=x?Subject=y": "parameters",
            f"sip:alice@127.0.0.1:{trunk_end.port}?Subject=bonjour": "headers",
            f"sip:alice@127.0.0.1:{trunk_end.port};maddr=192.0.2.1": "parameter",
            f"sip:bob%0D%0AX-Evil@127.0.0.1:{trunk_end.port}": "control characters",
        }
        for _ in range(attempts // 2 + 1):
            for target, reason in injections.items():
                status, problem = gateway.admin(
                    "POST", "/api/v1/rooms/injections/dial", {"to": target}
                )
                assert status == 400, (target, problem)
                assert problem["code"] == "invalid_message" and problem["field"] == "/to"
                assert reason in problem["detail"] and "Evil" not in problem["detail"]

        for index in range(attempts):  # one after the other: each holds its pair until it fails
            room = f"domaine-{index}"
            gateway.create_room(room)
            status, call = gateway.admin(
                "POST", f"/api/v1/rooms/{room}/dial", {"to": "sip:alice@nowhere.invalid"}
            )
            assert status == 202, call
            await eventually(
                lambda room=room: room_state(gateway, room)["calls"][0]["status"] == "failed",
                15,
                "the domain that does not resolve to fail the call",
            )

        gateway.create_room("occupe")
        for _ in range(2):
            phone, port = await callee("-sf", str(SCENARIOS / "callee_busy.xml"))
            status, call = gateway.admin(
                "POST", "/api/v1/rooms/occupe/dial", {"to": f"sip:0612345699@127.0.0.1:{port}"}
            )
            assert status == 202, call
            output, _ = await asyncio.wait_for(phone.communicate(), 20)
            assert phone.returncode == 0, output.decode(errors="replace")[-1500:]

        def callees_left() -> list[str]:
            rooms = gateway.admin("GET", "/api/v1/rooms")[1]["rooms"]
            return [
                f"{r['id']}: {p['name']}"
                for r in rooms
                for p in room_state(gateway, r["id"])["participants"]
                if p["origin"] == "sip"
            ]

        await eventually(lambda: not callees_left(), 20, "every failed callee to leave")
        statuses = [c["status"] for c in room_state(gateway, "domaine-0")["calls"]]
        assert statuses == ["failed"]
        assert [c["status"] for c in room_state(gateway, "occupe")["calls"]] == ["busy", "busy"]
        await eventually(lambda: ports_held(ports) == [], 10, "every RTP port to be free")
        assert trunk_end.received() == []  # no refused target ever reached the wire

        # The whole range is the gateway's again: as many calls as port pairs are placed.
        for index in range(RTP_PAIRS):
            room = f"ensuite-{index}"
            gateway.create_room(room)
            status, call = gateway.admin(
                "POST",
                f"/api/v1/rooms/{room}/dial",
                {"to": f"sip:06123456{index:02}@127.0.0.1:{trunk_end.port}"},
            )
            assert status == 202, call
        assert len(ports_held(ports)) == 2 * RTP_PAIRS
        # Deleting the rooms hangs up the ringing calls (CANCEL) and frees the range again.
        for index in range(RTP_PAIRS):
            assert gateway.admin("DELETE", f"/api/v1/rooms/ensuite-{index}")[0] == 204
        await eventually(lambda: ports_held(ports) == [], 10, "the cancelled calls' ports")
        assert "Traceback" not in gateway.log_text()
        for member in members:
            await member.close()
    finally:
        trunk_end.close()
