"""Attacks on phones' calls and on the SIP listeners, through real sockets and real peers (SIPp):
RTP sprayed at the port range, wrong PINs behind a trunk, hostile TCP connections."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import WebRtcPeer
from tests.gateway_process import RunningGateway, free_udp_block, running_gateway
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


# SIP over TCP: every connection has deadlines and caps ----------------------------------------

IDLE_SECONDS = 2
MESSAGE_SECONDS = 1
PER_ADDRESS = 10


@pytest.fixture(scope="module")
def tcp_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = (
        f"tcp_idle_seconds = {IDLE_SECONDS}\ntcp_message_seconds = {MESSAGE_SECONDS}\n"
        f"tcp_connections_per_address = {PER_ADDRESS}\n"
    )
    with running_gateway(Path(tmp_path_factory.mktemp("tcp")), extra_config=config) as gateway:
        yield gateway


def register(number: int, port: int, content_length: int = 0) -> bytes:
    return (
        f"REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK{number:08d}r\r\n"
        f"From: <sip:u{number}@127.0.0.1>;tag={number}\r\nTo: <sip:u{number}@127.0.0.1>\r\n"
        f"Call-ID: reg-{number}@127.0.0.1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def connect(gateway: RunningGateway, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", gateway.sip_port))
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """What the gateway sends within ``timeout`` seconds, and whether it then closed."""
    sock.settimeout(0.1)
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def is_open(sock: socket.socket) -> bool:
    """Whether the gateway still holds this connection (no EOF waiting), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def open_fds(gateway: RunningGateway) -> int:
    return len(os.listdir(f"/proc/{gateway.process.pid}/fd"))


def rss_kib(gateway: RunningGateway) -> int:
    status = Path(f"/proc/{gateway.process.pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))


def test_a_flood_pipelined_on_one_tcp_connection_is_rate_limited(
    tcp_gateway: RunningGateway,
) -> None:
    """5,000 REGISTERs written at once on one connection: each message counts against the
    address's rate limit (as a datagram would), so most are never answered."""
    with contextlib.closing(connect(tcp_gateway, "127.0.0.40")) as sock:
        with contextlib.suppress(OSError):  # the gateway may close while we still write
            sock.sendall(b"".join(register(n, tcp_gateway.sip_port) for n in range(5000)))
        data, _ = read_until_closed(sock, 5)
    answered = data.count(b"SIP/2.0 403")
    assert 0 < answered < 500, f"{answered} of 5,000 REGISTERs answered"


def test_an_idle_tcp_connection_is_closed(tcp_gateway: RunningGateway) -> None:
    with contextlib.closing(connect(tcp_gateway, "127.0.0.41")) as sock:
        _, closed = read_until_closed(sock, IDLE_SECONDS + 5)
    assert closed


async def test_a_call_over_tcp_outlives_the_idle_deadline(tcp_gateway: RunningGateway) -> None:
    """A phone's connection carries nothing between its INVITE and its BYE (8 s, four idle
    deadlines here): it is kept open while the call goes through it."""
    tcp_gateway.create_room("salle-tcp")
    call = await run_sipp(
        tcp_gateway.sip_port, "dial_in_g711.xml", "salle-tcp", transport="t1", timeout=30
    )
    call.assert_passed()


def test_crlf_keepalives_keep_a_tcp_connection_open(tcp_gateway: RunningGateway) -> None:
    """RFC 5626 keep-alives are activity: a client that sends them is not idle."""
    with contextlib.closing(connect(tcp_gateway, "127.0.0.42")) as sock:
        for _ in range(4 * IDLE_SECONDS):
            sock.sendall(b"\r\n\r\n")
            _, closed = read_until_closed(sock, 0.5)
            assert not closed
        sock.sendall(register(1, tcp_gateway.sip_port))
        data, _ = read_until_closed(sock, 2)
    assert data.startswith(b"SIP/2.0 403")


def test_a_message_that_does_not_complete_in_time_closes_its_connection(
    tcp_gateway: RunningGateway,
) -> None:
    """A head dripped a byte at a time, and a body that never comes, are both cut off after
    the message deadline however steadily bytes keep arriving."""
    with contextlib.closing(connect(tcp_gateway, "127.0.0.43")) as slow_body:
        slow_body.sendall(register(2, tcp_gateway.sip_port, content_length=4000) + b"v=0\r\n")
        _, closed = read_until_closed(slow_body, MESSAGE_SECONDS + 5)
        assert closed
    with contextlib.closing(connect(tcp_gateway, "127.0.0.43")) as drip:
        head = register(3, tcp_gateway.sip_port)
        closed = False
        for byte in range(len(head) - 4):
            try:
                drip.sendall(head[byte : byte + 1])
            except OSError:
                closed = True
                break
            _, closed = read_until_closed(drip, 0.2)
            if closed:
                break
        assert closed, "a dripped head was never cut off"


def test_a_body_above_the_limit_is_refused_with_413(tcp_gateway: RunningGateway) -> None:
    with contextlib.closing(connect(tcp_gateway, "127.0.0.44")) as sock:
        sock.sendall(register(4, tcp_gateway.sip_port, content_length=1 << 20) + b"x" * 1000)
        data, closed = read_until_closed(sock, 5)
    assert data.startswith(b"SIP/2.0 413")
    assert closed


def test_connections_beyond_the_per_address_cap_are_refused(tcp_gateway: RunningGateway) -> None:
    sockets = [connect(tcp_gateway, "127.0.0.45") for _ in range(PER_ADDRESS + 60)]
    try:
        time.sleep(0.5)  # refused ones are closed at once; the idle deadline is further off
        assert sum(is_open(sock) for sock in sockets) == PER_ADDRESS
        with contextlib.closing(connect(tcp_gateway, "127.0.0.46")) as other:
            other.sendall(register(5, tcp_gateway.sip_port))
            data, _ = read_until_closed(other, 2)
        assert data.startswith(b"SIP/2.0 403"), "another address was refused too"
    finally:
        for sock in sockets:
            sock.close()


def test_hostile_connections_are_shed_and_leave_no_memory_or_descriptors(
    tcp_gateway: RunningGateway,
) -> None:
    """60 connections, one from each of 60 addresses, half silent and half with a pending
    1 MiB body: the bodies are refused at once, the silent ones closed at the idle deadline,
    and the gateway holds no more descriptors than before."""
    time.sleep(IDLE_SECONDS + 1)  # earlier tests' connections are gone
    fds_before, rss_before = open_fds(tcp_gateway), rss_kib(tcp_gateway)
    sockets = []
    for n in range(60):
        sock = connect(tcp_gateway, f"127.0.0.{100 + n}")
        if n % 2:
            with contextlib.suppress(OSError):
                sock.sendall(register(n, tcp_gateway.sip_port, 1 << 20) + b"x" * ((1 << 20) - 1))
        sockets.append(sock)
    try:
        deadline = time.monotonic() + IDLE_SECONDS + 10
        while open_fds(tcp_gateway) > fds_before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert open_fds(tcp_gateway) <= fds_before
        assert rss_kib(tcp_gateway) - rss_before < 16 * 1024
    finally:
        for sock in sockets:
            sock.close()
