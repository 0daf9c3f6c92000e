"""Lean WebRTC load client for the benchmarks: minimal SDP, ICE checks, DTLS-SRTP client, pre-protected SRTP.

It measures nothing by itself; bench.relay_vs_rtpengine and bench.join_latency drive it. It is a
browser stand-in that costs almost no CPU per packet (no aiortc media pipeline): publishers send
packets protected in advance, subscribers only count what arrives and keep a few for decryption.
STUN messages, SDP, DTLS (pyOpenSSL memory BIOs) and SRTP sessions come from gateway.media, the
project's single implementation of each.
"""

from __future__ import annotations

import asyncio
import functools
import os
import struct
import time

from gateway.media import stun
from gateway.media.dtls import DtlsCertificate, DtlsSession, DtlsState
from gateway.media.ice import random_ice_string
from gateway.media.rtp import RtpPacket
from gateway.media.sdp import (
    EXT_AUDIO_LEVEL,
    EXT_MID,
    Codec,
    Extmap,
    MediaDescription,
    SessionDescription,
)
from gateway.media.sdp import parse as parse_sdp
from gateway.media.srtp import SrtpContext

Address = tuple[str, int]

OPUS_PT = 111
AUDIO_LEVEL_ID = 1  # Chromium's ids
MID_ID = 4
PACKET_INTERVAL = 0.02  # 20 ms Opus frames: 50 packets/s
PAYLOAD_SIZE = 80  # bytes of stand-in Opus per frame, about 32 kbit/s
SRTP_TAG_SIZE = 10  # SRTP_AES128_CM_SHA1_80 authentication tag
MAGIC = b"RPBN"  # payloads start with MAGIC, publisher index (u16), frame number (u32)
_PAYLOAD_HEAD = struct.Struct("!4sHI")
_SAMPLES_KEPT = 8


@functools.cache
def client_certificate() -> DtlsCertificate:
    """One self-signed certificate for every lean peer; offers only SRTP_AES128_CM_SHA1_80."""
    certificate = DtlsCertificate()
    certificate.context.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
    return certificate


def frame_payload(publisher: int, frame: int, size: int = PAYLOAD_SIZE) -> bytes:
    head = _PAYLOAD_HEAD.pack(MAGIC, publisher & 0xFFFF, frame & 0xFFFFFFFF)
    return head + bytes((frame + i) & 0xFF for i in range(size - len(head)))


def parse_frame_payload(payload: bytes) -> tuple[int, int] | None:
    """(publisher, frame) of a benchmark payload, None when it is not one."""
    if len(payload) < _PAYLOAD_HEAD.size:
        return None
    magic, publisher, frame = _PAYLOAD_HEAD.unpack_from(payload)
    return (publisher, frame) if magic == MAGIC else None


def rtp_frames(
    publisher: int,
    count: int,
    ssrc: int,
    mid: str = "",
    payload_size: int = PAYLOAD_SIZE,
    audio_level: int = 30,
) -> list[bytes]:
    """`count` plain RTP Opus packets (audio level and, when `mid` is set, MID header extensions)."""
    first_seq = int.from_bytes(os.urandom(2), "big")
    first_ts = int.from_bytes(os.urandom(4), "big")
    extensions = {AUDIO_LEVEL_ID: bytes((0x80 | audio_level,))}
    if mid:
        extensions[MID_ID] = mid.encode()
    return [
        RtpPacket(
            payload_type=OPUS_PT,
            sequence_number=(first_seq + i) & 0xFFFF,
            timestamp=(first_ts + 960 * i) & 0xFFFFFFFF,
            ssrc=ssrc,
            marker=i == 0,
            extensions=extensions,
            payload=frame_payload(publisher, i, payload_size),
        ).serialize()
        for i in range(count)
    ]


class LeanPeer(asyncio.DatagramProtocol):
    """One peer connection to the relay: a UDP socket, ICE (controlling, full), DTLS client, SRTP."""

    def __init__(self) -> None:
        self.ufrag = random_ice_string(8)
        self.pwd = random_ice_string(24)
        self.certificate = client_certificate()
        self.dtls = DtlsSession(self.certificate, is_server=False)
        self.srtp: SrtpContext | None = None
        self.remote_address: Address | None = None
        self.remote_ufrag = ""
        self.remote_pwd = ""
        self.transport: asyncio.DatagramTransport | None = None
        self.rtp_received = 0
        self.rtcp_received = 0
        self.bytes_received = 0
        self.first_rtp_at: float | None = None
        self.first_rtp_event = asyncio.Event()
        self.samples: list[bytes] = []
        self._stun_waiters: dict[bytes, asyncio.Future[bytes]] = {}
        self._dtls_done = asyncio.Event()
        self.ice_done_at: float | None = None
        self.dtls_done_at: float | None = None

    # sockets -------------------------------------------------------------------------

    async def open(self, host: str = "127.0.0.1") -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))

    @property
    def local_port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        first = data[0]
        if 127 < first < 192:
            if 191 < data[1] < 224:
                self.rtcp_received += 1
                return
            self.rtp_received += 1
            self.bytes_received += len(data)
            if self.first_rtp_at is None:
                self.first_rtp_at = time.perf_counter()
                self.first_rtp_event.set()
            if len(self.samples) < _SAMPLES_KEPT:
                self.samples.append(data)
        elif 19 < first < 64:
            self._send_dtls(self.dtls.receive(data))
        elif first < 4:
            try:
                message = stun.parse(data)
            except stun.StunError:
                return
            waiter = self._stun_waiters.pop(message.transaction_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        return None

    def send(self, data: bytes) -> None:
        if self.transport is not None and self.remote_address is not None:
            self.transport.sendto(data, self.remote_address)

    # SDP -----------------------------------------------------------------------------

    def _media(self, kind: str, mid: str, direction: str) -> MediaDescription:
        return MediaDescription(
            kind=kind,
            port=9,
            proto="UDP/TLS/RTP/SAVPF",
            fmt=[str(OPUS_PT)],
            connection="IN IP4 0.0.0.0",
            mid=mid,
            direction=direction,
            ice_ufrag=self.ufrag,
            ice_pwd=self.pwd,
            fingerprint=self.certificate.fingerprint,
            setup="active",
            rtcp_mux=True,
        )

    def publish_offer(self, mids: list[str]) -> str:
        """A publish offer: one sendonly Opus m-line per mid, BUNDLE, rtcp-mux, a=setup:active."""
        session = SessionDescription(
            origin=f"- {int.from_bytes(os.urandom(6), 'big')} 1 IN IP4 127.0.0.1",
            groups=[("BUNDLE", list(mids))],
            msid_semantic="WMS *",
        )
        for mid in mids:
            media = self._media("audio", mid, "sendonly")
            media.codecs = [
                Codec(OPUS_PT, "opus", 48000, 2, "minptime=10;useinbandfec=1", ["transport-cc"])
            ]
            media.extmaps = [Extmap(AUDIO_LEVEL_ID, EXT_AUDIO_LEVEL), Extmap(MID_ID, EXT_MID)]
            media.msid = f"- bench-{mid}"
            session.media.append(media)
        return session.serialize()

    def subscribe_answer(self, offer_text: str) -> str:
        """Answer the relay's subscribe offer: recvonly for each sendonly m-line, same codec and extensions."""
        offer = parse_sdp(offer_text)
        session = SessionDescription(
            origin=f"- {int.from_bytes(os.urandom(6), 'big')} 1 IN IP4 127.0.0.1",
            groups=list(offer.groups),
            msid_semantic="WMS *",
        )
        for index, offered in enumerate(offer.media):
            mid = offered.mid if offered.mid is not None else str(index)
            sending = offered.port != 0 and offered.direction in ("sendonly", "sendrecv", None)
            media = self._media(offered.kind, mid, "recvonly" if sending else "inactive")
            media.port = 9 if offered.port != 0 else 0
            media.proto = offered.proto
            media.codecs = [
                Codec(c.payload_type, c.name, c.clock_rate, c.channels, c.fmtp, list(c.rtcp_fb))
                for c in offered.codecs[:1]
            ]
            media.fmt = [str(c.payload_type) for c in media.codecs] or offered.fmt[:1]
            media.extmaps = [Extmap(e.id, e.uri) for e in offered.extmaps]
            media.rtcp_rsize = offered.rtcp_rsize
            session.media.append(media)
        return session.serialize()

    def apply_remote(self, sdp_text: str) -> None:
        """Take the relay's ICE credentials, host candidate and DTLS fingerprint from its SDP."""
        description = parse_sdp(sdp_text)
        media = next(m for m in description.media if m.port != 0)
        self.remote_ufrag, self.remote_pwd = description.ice_credentials(media)
        self.dtls.set_remote_fingerprint(*description.dtls_fingerprint(media))
        for candidate in media.candidates:
            tokens = candidate.split()
            if len(tokens) >= 8 and tokens[2].lower() == "udp" and tokens[7] == "host":
                self.remote_address = (tokens[4], int(tokens[5]))
                break
        if self.remote_address is None:
            raise ValueError("the relay's SDP has no UDP host candidate")

    # connectivity --------------------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> None:
        """ICE check (USE-CANDIDATE) until answered, then the DTLS client handshake; sets `srtp`."""
        if self.srtp is not None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        username = f"{self.remote_ufrag}:{self.ufrag}"
        answered = False
        for _attempt in range(int(timeout / 0.05) + 1):
            transaction_id = os.urandom(12)
            waiter: asyncio.Future[bytes] = loop.create_future()
            self._stun_waiters[transaction_id] = waiter
            self.send(
                stun.binding_request(
                    username,
                    self.remote_pwd,
                    use_candidate=True,
                    controlling=True,
                    transaction_id=transaction_id,
                )
            )
            try:
                response = await asyncio.wait_for(waiter, 0.05)
            except TimeoutError:
                self._stun_waiters.pop(transaction_id, None)
                if loop.time() > deadline:
                    break
                continue
            if stun.verify_message_integrity(
                response, self.remote_pwd.encode()
            ) and stun.verify_fingerprint(response):
                answered = True
                break
        if not answered:
            raise TimeoutError("no valid STUN Binding response from the relay")
        self.ice_done_at = time.perf_counter()
        self._send_dtls(self.dtls.start())
        while not self._dtls_done.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("DTLS handshake with the relay timed out")
            wait = self.dtls.get_timeout()
            wait = min(remaining, 0.05 if wait is None else max(wait, 0.001))
            try:
                await asyncio.wait_for(self._dtls_done.wait(), wait)
            except TimeoutError:
                self._send_dtls(self.dtls.handle_timeout())
        if self.dtls.state is not DtlsState.CONNECTED or self.dtls.keys is None:
            raise ConnectionError(f"DTLS failed: {self.dtls.failure or self.dtls.state.value}")
        self.srtp = SrtpContext(self.dtls.keys)

    def _send_dtls(self, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            self.send(datagram)
        if self.dtls.state in (DtlsState.CONNECTED, DtlsState.FAILED, DtlsState.CLOSED):
            if self.dtls_done_at is None:
                # Stamped here: the relay's first RTP packet may be read before connect() resumes.
                self.dtls_done_at = time.perf_counter()
            self._dtls_done.set()

    # media ---------------------------------------------------------------------------

    def protect(self, packets: list[bytes]) -> list[bytes]:
        assert self.srtp is not None
        protect = self.srtp.protect_rtp
        return [protect(packet) for packet in packets]

    def decrypt_samples(self) -> list[RtpPacket]:
        """Unprotect the kept samples; raises pylibsrtp.Error when one does not authenticate."""
        assert self.srtp is not None
        return [RtpPacket.parse(self.srtp.unprotect_rtp(sample)) for sample in self.samples]
