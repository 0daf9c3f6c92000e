"""Attacks on phones' calls and on the SIP listeners, through real sockets and real peers (SIPp):
RTP sprayed at the port range, wrong PINs behind a trunk, hostile TCP connections (issue 9)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import WebRtcPeer
from tests.gateway_process import free_udp_block, running_gateway
from tests.interop.sipclient import Call, SipClient, audio_offer
from tests.interop.sipp_tools import phones, run_sipp, wait_until

pytestmark = pytest.mark.interop

GATEWAY_RTP_PORTS = (20000, 29999)  # the gateways' zone (tests/gateway_process.py)
SPRAY_LIMIT = 60_000  # packets: a bounded flood


class RtpSprayer:
    """An attacker on its own loopback address sending RTP of its own SSRC to every even port of
    a range, over and over, and counting what comes back."""

    def __init__(self, host: str, ports: range, ssrc: int = 0x0BADBEEF) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.ports = ports
        self.ssrc = ssrc
        self.sent = 0
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RtpSprayer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        sequence = 0
        while not self._stop.is_set() and self.sent < SPRAY_LIMIT:
            for port in self.ports:
                sequence = (sequence + 1) % 65536
                header = struct.pack("!BBHII", 0x80, 8, sequence, sequence * 160, self.ssrc)
                try:
                    self.sock.sendto(header + b"\xd5" * 160, ("127.0.0.1", port))  # A-law silence
                    self.sent += 1
                except OSError:
                    pass
            while True:
                try:
                    self.sock.recv(2048)
                except (BlockingIOError, OSError):
                    break
                self.received += 1
            time.sleep(0.002)


async def test_rtp_sprayed_at_the_port_range_never_takes_over_a_phone_behind_nat(
    tmp_path: Path,
) -> None:
    """The phone's SDP names a dead port (it is behind NAT), so its media must be latched; an
    attacker spraying the whole RTP range from before the call must neither be latched (it would
    hear the room) nor reach the mix (the room would hear its silence instead of the phone)."""
    first = free_udp_block(20, GATEWAY_RTP_PORTS)
    with running_gateway(tmp_path, rtp_ports=(first, first + 19)) as gateway:
        room = "salle-pulverisee"
        gateway.create_room(room)
        alice = await OrsClient.connect(gateway.base_url, room)
        await alice.join(gateway.token(room, "alice", "Alice"))
        peer = WebRtcPeer(alice)
        await peer.publish(frequency=660.0)  # the room's sound, which the attacker must not get
        with RtpSprayer("127.0.0.23", range(first, first + 20, 2)) as attacker:
            phone = asyncio.create_task(
                run_sipp(gateway.sip_port, "dial_in_g711_nat.xml", room, timeout=40)
            )
            joined = (await alice.next_event("participant_joined", timeout=15))["participant"]
            track = (await alice.next_event("track_published", timeout=10))["track"]
            assert track["participant_id"] == joined["id"]
            await peer.accept_offer(await alice.next_event("offer", timeout=10))
            async with asyncio.timeout(15):
                while (heard := peer.received.get(track["id"])) is None or heard.frames < 250:
                    await asyncio.sleep(0.1)
            audio = np.concatenate(heard.samples[-100:]).astype(np.float64)
            (await phone).assert_passed()
        assert attacker.sent > 5_000, "the spray did not run"
        assert attacker.received == 0, "the attacker was sent the call's audio"
        assert np.sqrt(np.mean(audio**2)) > 100, "the room hears the attacker, not the phone"
        await peer.close()
        await alice.close()


def _answer_port(body: bytes) -> int:
    line = next(line for line in body.decode().splitlines() if line.startswith("m=audio "))
    return int(line.split()[1])


async def test_rtp_sprayed_at_the_port_range_never_takes_what_a_phone_behind_nat_hears(
    tmp_path: Path,
) -> None:
    """The other direction: the phone (its SDP naming a dead port, its RTP from another one)
    keeps hearing the room while the attacker sprays, and the attacker hears nothing."""
    first = free_udp_block(20, GATEWAY_RTP_PORTS)
    with running_gateway(tmp_path, rtp_ports=(first, first + 19)) as gateway:
        room = "salle-ecoutee"
        gateway.create_room(room)
        alice = await OrsClient.connect(gateway.base_url, room)
        await alice.join(gateway.token(room, "alice", "Alice"))
        peer = WebRtcPeer(alice)
        await peer.publish(frequency=660.0)
        with (
            RtpSprayer("127.0.0.24", range(first, first + 20, 2)) as attacker,
            SipClient(("127.0.0.1", gateway.sip_port)) as phone,
        ):
            invite = phone.request(
                "INVITE",
                room,
                body=audio_offer("127.0.0.1", 9),  # behind NAT: not where its RTP comes from
                content_type="application/sdp",
            )
            phone.send(invite)
            call = Call(invite, "", invite.headers.get("Call-ID") or "")
            final = await asyncio.to_thread(phone.wait_answer, call, 10.0)
            assert final is not None and final.status == 200
            gateway_rtp = ("127.0.0.1", _answer_port(final.body))
            heard = await asyncio.to_thread(_talk_and_listen, phone.rtp, gateway_rtp, 5.0)
            await asyncio.to_thread(phone.bye, call)
        assert attacker.sent > 2_000, "the spray did not run"
        assert attacker.received == 0, "the attacker was sent the call's audio"
        assert heard > 100, "the phone does not hear the room"
        await peer.close()
        await alice.close()


def _talk_and_listen(sock: socket.socket, gateway: tuple[str, int], seconds: float) -> int:
    """Send the phone's stream (one SSRC, in sequence, every 20 ms) for ``seconds``; the number
    of packets heard back that carry sound (the room's tone, not silence)."""
    heard = 0
    deadline = time.monotonic() + seconds
    sequence = 0
    while (now := time.monotonic()) < deadline:
        sequence += 1
        header = struct.pack("!BBHII", 0x80, 8, sequence, sequence * 160, 0x5EED)
        sock.sendto(header + bytes(range(160)), gateway)
        next_packet = now + 0.02
        while (left := next_packet - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(2048)
            except TimeoutError:
                break
            if len(set(data[12:])) > 10:
                heard += 1
    return heard


TRUNK_ADDRESS = "127.0.0.31"


async def test_wrong_pins_behind_a_trunk_refuse_that_caller_not_the_trunk(tmp_path: Path) -> None:
    """Caller A, behind a trusted trunk, types twelve wrong PINs (four calls at once, three tries
    each; ``failures_before_ban`` is 10): A is refused (403), and caller B of the same trunk, from
    the same address, still gets in with the right PIN."""
    with running_gateway(tmp_path) as gateway:
        status, body = gateway.admin(
            "POST",
            "/api/v1/sip/trunks",
            {"name": "operateur", "address": f"{TRUNK_ADDRESS}:5060", "allowed": [TRUNK_ADDRESS]},
        )
        assert status in (200, 201), body
        room = "pin-trunk"
        gateway.create_room(room, pin="2468")
        guesses = await run_sipp(
            gateway.sip_port,
            "trunk_pin_wrong.xml",
            room,
            "-key",
            "caller",
            "0611111111",
            "-l",
            "4",
            local_ip=TRUNK_ADDRESS,
            calls=4,
            timeout=60,
        )
        log = gateway.log_text()
        assert log.count("SIP room PIN failed") >= 11, guesses.explain()
        assert "SIP trunk operateur caller 0611111111 refused" in log
        assert "SIP address banned" not in log, "the trunk's address was banned"

        refused = await run_sipp(
            gateway.sip_port,
            "trunk_refused.xml",
            room,
            "-key",
            "caller",
            "0611111111",
            local_ip=TRUNK_ADDRESS,
            timeout=10,
        )
        refused.assert_passed()  # A's next call gets 403

        other = asyncio.create_task(
            run_sipp(
                gateway.sip_port,
                "trunk_pin_right.xml",
                room,
                "-key",
                "caller",
                "0622222222",
                local_ip=TRUNK_ADDRESS,
            )
        )
        joined = await wait_until(lambda: phones(gateway, room), 20, "caller B never got in")
        assert isinstance(joined, list) and joined[0]["name"] == "Phone ••• 22"
        (await other).assert_passed()
