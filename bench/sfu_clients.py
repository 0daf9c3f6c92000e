"""Lean SFU load participants: synthetic Opus + VP8 simulcast over real ICE, DTLS-SRTP and RTCP.

A participant has two peer connections, as browsers have with both SFUs: a publish leg (one Opus
m-line, one VP8 m-line with three rids) and a subscribe leg (whatever the SFU offers). Each leg is a
`bench.srtp_client.LeanPeer` (our STUN, DTLS with pyOpenSSL memory BIOs, libsrtp) that also:

- sends: packets built per send (bench/sfu_media.py) with the transport-cc extension when the SFU
  negotiated it, sender reports each second, a key frame for a PLI or FIR;
- receives: counts media packets per SSRC (RTP headers are clear in SRTP: nothing is decrypted),
  records transport-wide arrivals (gateway/media/twcc.py `ArrivalRecorder`) and sends their
  feedback every 50 ms, and a receiver report each second.

Two signalling flavours, one media code: `OrsParticipant` (our gateway: the ORS WebSocket, the
`subscription` message's `max_height` for the layer) and `LiveKitParticipant` (livekit-server:
protocols/livekit/signal.py, AddTrackRequest with the three layers, the server's subscriber offers,
trickled candidates, UpdateTrackSettings for the layer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import time
from collections.abc import Set as AbstractSet
from typing import Any

import aiohttp
import pylibsrtp
from livekit.protocol import models
from livekit.protocol import rtc as proto

from bench.sfu_media import (
    AUDIO_INTERVAL,
    EXT_AUDIO_LEVEL_ID,
    EXT_MID_ID,
    EXT_RID_ID,
    EXT_TRANSPORT_CC_ID,
    LAYERS,
    OPUS_PT,
    VP8_PT,
    StreamCounter,
    TrackSender,
    wants_high,
)
from bench.srtp_client import LeanPeer
from gateway.media import rtcp, stun
from gateway.media.dtls import DtlsState
from gateway.media.sdp import (
    EXT_AUDIO_LEVEL,
    EXT_MID,
    EXT_RID,
    EXT_TRANSPORT_CC,
    Codec,
    Extmap,
    MediaDescription,
    Rid,
    SessionDescription,
    Simulcast,
)
from gateway.media.sdp import parse as parse_sdp
from gateway.media.srtp import SrtpContext
from gateway.media.twcc import ArrivalRecorder, read_transport_seq
from protocols.livekit.signal import SignalClient, Unhandled
from spec.conformance.orsclient import OrsClient

SETTINGS = {"audio_only": False, "all_high": False}
"""Load shapes of bench/saturation.py: participants publishing Opus alone; every video
subscription on the high layer."""
VIDEO_FEEDBACK = ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
LOW_HEIGHT, HIGH_HEIGHT = LAYERS[0].height, LAYERS[-1].height
RECEIVE_BUFFER = 4 * 1024 * 1024
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def socket_drops(ports: AbstractSet[int]) -> int:
    """Datagrams the kernel dropped on our UDP sockets bound to PORTS (full receive buffers),
    from the `drops` column of /proc/net/udp."""
    drops = 0
    with open("/proc/net/udp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) in ports:
                drops += int(fields[-1])
    return drops


def _ssrc() -> int:
    return int.from_bytes(os.urandom(4), "big") | 1


class MediaLeg(LeanPeer):
    """One peer connection of a load participant (publish or subscribe side)."""

    def __init__(self) -> None:
        super().__init__()
        self.rtcp_ssrc = _ssrc()
        self.counter = StreamCounter()
        self.kinds: dict[int, str] = {}  # payload type -> audio/video (media PTs we count)
        self.audio_received = 0
        self.video_received = 0
        self.other_received = 0  # padding, RTX, unknown payload types
        self.recv_tcc_id = 0
        self.recorder: ArrivalRecorder | None = None
        self.first_ssrc = 0
        # publish side
        self.senders: dict[int, TrackSender] = {}
        self.tcc_seq = 0
        self.audio_ssrc = 0
        self.audio_sender: TrackSender | None = None
        self.video_senders: list[TrackSender] = []
        self.twcc_negotiated = False
        self.keyframe_requests = 0
        self.rtcp_errors = 0
        self.connected = asyncio.Event()
        self.candidate = asyncio.Event()
        self.checks: set[bytes] = set()  # transaction ids of our binding requests
        self.ice_answered = asyncio.Event()

    async def open(self, host: str = "127.0.0.1") -> None:
        await super().open(host)
        assert self.transport is not None
        sock = self.transport.get_extra_info("socket")
        # A large receive buffer: a load process descheduled for a while on a busy machine must
        # not drop what the SFU sent (those drops are counted apart: socket_drops).
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)

    # receive -----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        first = data[0]
        if 127 < first < 192:
            pt = data[1]
            if 191 < pt < 224:
                self._on_rtcp(data)
                return
            kind = self.kinds.get(pt & 0x7F)
            if kind is None or first & 0x20:
                self.other_received += 1
            else:
                ssrc = data[8] << 24 | data[9] << 16 | data[10] << 8 | data[11]
                self.counter.count(ssrc, data[2] << 8 | data[3])
                if kind == "audio":
                    self.audio_received += 1
                else:
                    self.video_received += 1
                if not self.first_ssrc:
                    self.first_ssrc = ssrc
            if self.recorder is not None:
                seq = read_transport_seq(data, self.recv_tcc_id)
                if seq is not None:
                    self.recorder.on_arrival(seq, time.monotonic())
            return
        if first < 4 and self.checks and not self.ice_answered.is_set():
            with contextlib.suppress(stun.StunError):
                message = stun.parse(data)
                if (
                    message.transaction_id in self.checks
                    and stun.verify_message_integrity(data, self.remote_pwd.encode())
                    and stun.verify_fingerprint(data)
                ):
                    self.ice_answered.set()
        super().datagram_received(data, addr)

    def _on_rtcp(self, data: bytes) -> None:
        if self.srtp is None:
            return
        try:
            plain = self.srtp.unprotect_rtcp(data)
            packets = rtcp.parse_rtcp(plain)
        except (pylibsrtp.Error, rtcp.RtcpError, ValueError):
            self.rtcp_errors += 1
            return
        for packet in packets:
            if isinstance(packet, rtcp.RtcpPli):
                self._keyframe(packet.media_ssrc)
            elif isinstance(packet, rtcp.RtcpFir):
                for ssrc, _ in packet.entries:
                    self._keyframe(ssrc)

    def _keyframe(self, ssrc: int) -> None:
        sender = self.senders.get(ssrc)
        if sender is not None and sender.layer is not None:
            sender.keyframe_wanted = True
            self.keyframe_requests += 1

    # periodic RTCP -----------------------------------------------------------------------

    def send_rtcp(self, packet: bytes) -> None:
        if self.srtp is not None:
            self.send(self.srtp.protect_rtcp(packet))

    def send_feedback(self) -> None:
        """Transport-wide feedback for what arrived since the last call (every 50 ms)."""
        if self.recorder is not None and self.srtp is not None:
            for packet in self.recorder.feedback(self.first_ssrc):
                self.send_rtcp(packet)

    def send_reports(self) -> None:
        """A receiver report for up to 31 received streams, sender reports for our own."""
        if self.srtp is None:
            return
        if self.counter.streams:
            blocks = [
                rtcp.RtcpReceptionReport(ssrc, highest_sequence=stream[1])
                for ssrc, stream in list(self.counter.streams.items())[:31]
            ]
            self.send_rtcp(rtcp.RtcpReceiverReport(self.rtcp_ssrc, blocks).serialize())
        now = time.time()
        for sender in self.senders.values():
            report = rtcp.RtcpSenderReport(
                sender.ssrc, rtcp.ntp_timestamp(now), sender.timestamp, sender.sent, 0
            )
            self.send_rtcp(report.serialize())

    # send --------------------------------------------------------------------------------

    def send_rtp(self, packet: bytes) -> None:
        assert self.srtp is not None
        self.send(self.srtp.protect_rtp(packet))

    # SDP ---------------------------------------------------------------------------------

    def simulcast_offer(self, stream: str, audio_track: str, video_track: str) -> str:
        """Opus (mid 0) and VP8 simulcast q/h/f (mid 1), as Chromium offers them."""
        session = SessionDescription(
            origin=f"- {random.getrandbits(48)} 1 IN IP4 127.0.0.1",
            groups=[("BUNDLE", ["0", "1"])],
            msid_semantic="WMS *",
        )
        audio = self._media("audio", "0", "sendonly")
        audio.fmt = [str(OPUS_PT)]
        audio.codecs = [
            Codec(OPUS_PT, "opus", 48000, 2, "minptime=10;useinbandfec=1", ["transport-cc"])
        ]
        audio.extmaps = [
            Extmap(EXT_AUDIO_LEVEL_ID, EXT_AUDIO_LEVEL),
            Extmap(EXT_TRANSPORT_CC_ID, EXT_TRANSPORT_CC),
            Extmap(EXT_MID_ID, EXT_MID),
        ]
        audio.msid = f"{stream} {audio_track}"
        self.audio_ssrc = _ssrc()
        audio.ssrcs = [
            (self.audio_ssrc, "cname", stream),
            (self.audio_ssrc, "msid", f"{stream} {audio_track}"),
        ]
        video = self._media("video", "1", "sendonly")
        video.fmt = [str(VP8_PT)]
        video.codecs = [Codec(VP8_PT, "VP8", 90000, None, "", list(VIDEO_FEEDBACK))]
        video.extmaps = [
            Extmap(EXT_TRANSPORT_CC_ID, EXT_TRANSPORT_CC),
            Extmap(EXT_MID_ID, EXT_MID),
            Extmap(EXT_RID_ID, EXT_RID),
        ]
        video.msid = f"{stream} {video_track}"
        video.rids = [Rid(layer.rid, "send") for layer in LAYERS]
        video.simulcast = Simulcast(send=[[layer.rid] for layer in LAYERS])
        session.media += [audio] if SETTINGS["audio_only"] else [audio, video]
        if SETTINGS["audio_only"]:
            session.groups = [("BUNDLE", ["0"])]
        return session.serialize()

    def accept_publish_answer(self, answer_text: str, seed: int) -> None:
        """Take the negotiated extension ids and build the track senders."""
        answer = parse_sdp(answer_text)
        audio = answer.media[0]

        def ids(media: MediaDescription) -> tuple[int, int]:
            tcc = (
                media.extmap_id(EXT_TRANSPORT_CC)
                if any("transport-cc" in c.rtcp_fb for c in media.codecs)
                else 0
            )
            return media.extmap_id(EXT_MID), tcc

        mid_id, tcc_id = ids(audio)
        level_id = audio.extmap_id(EXT_AUDIO_LEVEL)
        prefix: list[tuple[int, bytes]] = []
        if mid_id:
            prefix.append((mid_id, b"0"))
        if level_id:
            prefix.append((level_id, bytes((0x80 | 30,))))
        audio_pt = audio.codecs[0].payload_type if audio.codecs else OPUS_PT
        self.audio_sender = TrackSender(self.audio_ssrc, audio_pt, 960, prefix, tcc_id, None, seed)
        self.senders = {self.audio_ssrc: self.audio_sender}
        self.twcc_negotiated = bool(tcc_id)
        if len(answer.media) < 2:
            return
        video = answer.media[1]
        mid_id, tcc_id = ids(video)
        rid_id = video.extmap_id(EXT_RID)
        video_pt = video.codecs[0].payload_type if video.codecs else VP8_PT
        self.video_senders = []
        for n, layer in enumerate(LAYERS):
            ext: list[tuple[int, bytes]] = []
            if mid_id:
                ext.append((mid_id, b"1"))
            if rid_id:
                ext.append((rid_id, layer.rid.encode()))
            sender = TrackSender(_ssrc(), video_pt, 3000, ext, tcc_id, layer, seed + 17 * n)
            self.video_senders.append(sender)
            self.senders[sender.ssrc] = sender
        self.twcc_negotiated = bool(tcc_id)

    def subscribe_answer(self, offer_text: str) -> str:
        """recvonly for each sending audio/video m-line (Opus or VP8 only, offered extensions and
        feedback kept, transport-cc included); data channels and the rest rejected."""
        offer = parse_sdp(offer_text)
        session = SessionDescription(
            origin=f"- {random.getrandbits(48)} 1 IN IP4 127.0.0.1", msid_semantic="WMS *"
        )
        accepted: list[str] = []
        for index, offered in enumerate(offer.media):
            mid = offered.mid if offered.mid is not None else str(index)
            wanted = "opus" if offered.kind == "audio" else "vp8"
            codec = next((c for c in offered.codecs if c.name.lower() == wanted), None)
            if offered.kind == "application" and offered.active:
                # LiveKit's data channels: accepted so that DTLS starts on this section too; the
                # SCTP association never comes up (DTLS application data is ignored).
                media = self._media("application", mid, "sendrecv")
                media.direction = None
                media.proto, media.fmt = offered.proto, list(offered.fmt)
                media.extra = [("sctp-port", "5000"), ("max-message-size", "65535")]
                session.media.append(media)
                accepted.append(mid)
                continue
            if offered.kind not in ("audio", "video") or not offered.active or codec is None:
                media = MediaDescription(
                    kind=offered.kind, port=0, proto=offered.proto, fmt=offered.fmt[:1], mid=mid
                )
                session.media.append(media)
                continue
            accepted.append(mid)
            media = self._media(offered.kind, mid, "recvonly" if offered.sends else "inactive")
            media.proto = offered.proto
            media.codecs = [
                Codec(
                    codec.payload_type,
                    codec.name,
                    codec.clock_rate,
                    codec.channels,
                    codec.fmtp,
                    list(codec.rtcp_fb),
                )
            ]
            # RTX accepted as a browser accepts it: the SFUs' bandwidth probes are RTX padding.
            rtx_pt = offered.rtx_payload_type(codec.payload_type)
            rtx = offered.codec(rtx_pt) if rtx_pt is not None else None
            if rtx is not None:
                media.codecs.append(
                    Codec(rtx.payload_type, rtx.name, rtx.clock_rate, None, rtx.fmtp)
                )
            media.fmt = [str(c.payload_type) for c in media.codecs]
            media.extmaps = [Extmap(e.id, e.uri) for e in offered.extmaps]
            media.rtcp_rsize = offered.rtcp_rsize
            session.media.append(media)
            self.kinds[codec.payload_type] = offered.kind
            tcc = offered.extmap_id(EXT_TRANSPORT_CC)
            if tcc and "transport-cc" in codec.rtcp_fb and not self.recv_tcc_id:
                self.recv_tcc_id = tcc
                self.recorder = ArrivalRecorder(self.rtcp_ssrc)
        if accepted:
            session.groups = [("BUNDLE", accepted)]
        return session.serialize()

    def apply_credentials(self, sdp_text: str) -> None:
        """The remote ICE credentials and DTLS fingerprint, and a UDP host candidate if listed."""
        description = parse_sdp(sdp_text)
        media = next(m for m in description.media if m.port != 0)
        self.remote_ufrag, self.remote_pwd = description.ice_credentials(media)
        self.dtls.set_remote_fingerprint(*description.dtls_fingerprint(media))
        for candidate in media.candidates:
            self.add_candidate(candidate)

    def add_candidate(self, line: str) -> None:
        tokens = line.removeprefix("a=").removeprefix("candidate:").split()
        if (
            self.remote_address is None
            and len(tokens) >= 8
            and tokens[2].lower() == "udp"
            and tokens[7] == "host"
            and "." in tokens[4]
        ):
            self.remote_address = (tokens[4], int(tokens[5]))
            self.candidate.set()

    async def establish(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.candidate.wait(), timeout)
        await self.ice_check(timeout)
        await self.dtls_handshake(timeout)
        self.connected.set()

    async def dtls_handshake(self, timeout: float) -> None:
        """LeanPeer's DTLS client handshake, after our own ICE check."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.ice_done_at = time.perf_counter()
        self._send_dtls(self.dtls.start())
        while not self._dtls_done.is_set():
            if loop.time() > deadline:
                raise TimeoutError("DTLS handshake with the SFU timed out")
            wait = self.dtls.get_timeout()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dtls_done.wait(), 0.05 if wait is None else wait)
            if not self._dtls_done.is_set():
                self._send_dtls(self.dtls.handle_timeout())
        if self.dtls.state is not DtlsState.CONNECTED or self.dtls.keys is None:
            raise ConnectionError(f"DTLS failed: {self.dtls.failure or self.dtls.state.value}")
        self.srtp = SrtpContext(self.dtls.keys)

    async def ice_check(self, timeout: float) -> None:
        """Binding requests every 50 ms until any of them is answered: a load process busy with
        media may read an answer later than LeanPeer's 50 ms per-request wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        username = f"{self.remote_ufrag}:{self.ufrag}"
        while not self.ice_answered.is_set():
            if loop.time() > deadline:
                raise TimeoutError("no valid STUN Binding response from the SFU")
            transaction_id = os.urandom(12)
            self.checks.add(transaction_id)
            self.send(
                stun.binding_request(
                    username,
                    self.remote_pwd,
                    use_candidate=True,
                    controlling=True,
                    transaction_id=transaction_id,
                )
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ice_answered.wait(), 0.05)


class Participant:
    """Publishes audio + simulcast video on one leg, receives everybody else's on the other."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.pub = MediaLeg()
        self.sub = MediaLeg()
        self.high = 0
        self.low = 0
        self.tasks: list[asyncio.Task[Any]] = []
        now = time.monotonic()
        phase = random.random()
        self.next_audio = now + phase * AUDIO_INTERVAL
        self.next_video = [now + random.random() / layer.fps for layer in LAYERS]

    def tick(self, now: float) -> None:
        """Send what is due: an Opus frame every 20 ms, a frame of each layer at its rate."""
        pub = self.pub
        audio = pub.audio_sender
        if pub.srtp is None or audio is None:
            return
        while self.next_audio <= now:
            pub.send_rtp(audio.audio_packet(pub.tcc_seq))
            if audio.tcc_id:
                pub.tcc_seq += 1
            self.next_audio += AUDIO_INTERVAL
        for n, sender in enumerate(pub.video_senders):
            due = self.next_video[n]
            if due > now:
                continue
            packets = sender.video_frame(now, pub.tcc_seq)
            if sender.tcc_id:
                pub.tcc_seq += len(packets)
            for packet in packets:
                pub.send_rtp(packet)
            layer = sender.layer
            assert layer is not None
            self.next_video[n] = max(due + 1 / layer.fps, now - 0.1)

    def reset_schedule(self) -> None:
        now = time.monotonic()
        self.next_audio = now + random.random() * AUDIO_INTERVAL
        self.next_video = [now + random.random() / layer.fps for layer in LAYERS]

    @property
    def legs(self) -> tuple[MediaLeg, MediaLeg]:
        return self.pub, self.sub

    def choose(self, key: str) -> int:
        """The height this subscriber asks for the video track KEY (mixed pattern)."""
        if SETTINGS["all_high"] or wants_high(self.index, key):
            self.high += 1
            return HIGH_HEIGHT
        self.low += 1
        return LOW_HEIGHT

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task
        self.pub.close()
        self.sub.close()


class OrsParticipant(Participant):
    """A participant of our gateway: ORS WebSocket, publish offer with simulcast, subscribe answers."""

    client: OrsClient

    async def join(self, base_url: str, room: str, token: str) -> None:
        self.client = await OrsClient.connect(base_url, room)
        await self.client.join(token, name=f"load{self.index}")
        await self.pub.open()
        await self.sub.open()
        offer = self.pub.simulcast_offer(f"s{self.index}", f"a{self.index}", f"v{self.index}")
        simulcast = [{"rid": x.rid, "width": x.width, "height": x.height} for x in LAYERS]
        tracks: list[dict[str, Any]] = [{"mid": "0", "source": "microphone"}]
        if not SETTINGS["audio_only"]:
            tracks.append({"mid": "1", "source": "camera", "simulcast": simulcast})
        reply = await self.client.request(
            {"type": "offer", "pc": "publish", "sdp": offer, "tracks": tracks}
        )
        self.pub.apply_credentials(reply["sdp"])
        self.pub.accept_publish_answer(reply["sdp"], self.index * 1000)
        await self.pub.establish()
        self.tasks.append(asyncio.create_task(self._subscribe_loop()))

    async def _subscribe_loop(self) -> None:
        asked: set[str] = set()
        for _ in range(10_000):
            offer = await self.client.next_event("offer", timeout=3600)
            sdp_text = offer["sdp"]
            answer = self.sub.subscribe_answer(sdp_text)
            if self.sub.remote_address is None:
                self.sub.apply_credentials(sdp_text)
            await self.client.request({"type": "answer", "pc": "subscribe", "sdp": answer})
            if not self.sub.connected.is_set() and not any(
                t.get_name() == "establish" for t in self.tasks
            ):
                self.tasks.append(asyncio.create_task(self.sub.establish(), name="establish"))
            kinds = {m.mid: m.kind for m in parse_sdp(sdp_text).media}
            for track in offer.get("tracks", []):
                track_id = track["track_id"]
                if kinds.get(track["mid"]) == "video" and track_id not in asked:
                    asked.add(track_id)
                    await self.client.request(
                        {
                            "type": "subscription",
                            "track_id": track_id,
                            "max_height": self.choose(track_id),
                        }
                    )

    async def close(self) -> None:
        await super().close()
        with contextlib.suppress(Exception):
            await self.client.send({"type": "leave"})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), 5)


class LiveKitParticipant(Participant):
    """A participant of livekit-server: its v16 signalling and two peer connections."""

    signal: SignalClient

    async def join(self, url: str, token: str, http: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        self.published: dict[str, asyncio.Future[str]] = {}
        self.answer: asyncio.Future[str] = loop.create_future()
        self.asked: set[str] = set()
        self.signal = await SignalClient.connect(url, token, auto_subscribe=True, http=http)
        await self.pub.open()
        await self.sub.open()
        self.tasks.append(asyncio.create_task(self._events()))
        audio_cid, video_cid = f"a{self.index}-{os.urandom(3).hex()}", f"v{self.index}"
        for cid in (audio_cid, video_cid):
            self.published[cid] = loop.create_future()
        await self.signal.send(
            proto.SignalRequest(
                add_track=proto.AddTrackRequest(
                    cid=audio_cid,
                    name="microphone",
                    type=models.TrackType.AUDIO,
                    source=models.TrackSource.MICROPHONE,
                    disable_red=True,
                    disable_dtx=True,
                )
            )
        )
        qualities = (models.VideoQuality.LOW, models.VideoQuality.MEDIUM, models.VideoQuality.HIGH)
        await self.signal.send(
            proto.SignalRequest(
                add_track=proto.AddTrackRequest(
                    cid=video_cid,
                    name="camera",
                    type=models.TrackType.VIDEO,
                    source=models.TrackSource.CAMERA,
                    width=LAYERS[-1].width,
                    height=LAYERS[-1].height,
                    layers=[
                        models.VideoLayer(
                            quality=q, width=x.width, height=x.height, bitrate=x.bitrate, rid=x.rid
                        )
                        for q, x in zip(qualities, LAYERS, strict=True)
                    ],
                )
            )
        )
        await asyncio.wait_for(asyncio.gather(*self.published.values()), 15)
        offer = self.pub.simulcast_offer(f"s{self.index}", audio_cid, video_cid)
        await self.signal.send(
            proto.SignalRequest(offer=proto.SessionDescription(type="offer", sdp=offer, id=1))
        )
        answer = await asyncio.wait_for(self.answer, 15)
        self.pub.apply_credentials(answer)
        self.pub.accept_publish_answer(answer, self.index * 1000)
        await self.pub.establish()

    async def _events(self) -> None:
        for _ in range(1_000_000):
            event = await self.signal.events.get()
            if not isinstance(event, Unhandled):
                continue
            message = event.message
            if event.kind == "track_published":
                waiter = self.published.get(message.track_published.cid)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message.track_published.track.sid)
            elif event.kind == "answer":
                if not self.answer.done():
                    self.answer.set_result(message.answer.sdp)
            elif event.kind == "trickle":
                self._on_trickle(message.trickle)
            elif event.kind == "offer":
                await self._on_offer(message.offer)

    def _on_trickle(self, trickle: proto.TrickleRequest) -> None:
        try:
            init = json.loads(trickle.candidateInit)
        except ValueError:
            return
        line = str(init.get("candidate") or "") if isinstance(init, dict) else ""
        if line:
            leg = self.sub if trickle.target == proto.SignalTarget.SUBSCRIBER else self.pub
            leg.add_candidate(line)

    async def _on_offer(self, offer: proto.SessionDescription) -> None:
        answer = self.sub.subscribe_answer(offer.sdp)
        if not self.sub.remote_ufrag:
            self.sub.apply_credentials(offer.sdp)
            self.tasks.append(asyncio.create_task(self.sub.establish()))
        await self.signal.send(
            proto.SignalRequest(
                answer=proto.SessionDescription(type="answer", sdp=answer, id=offer.id)
            )
        )
        kinds = {m.mid: m.kind for m in parse_sdp(offer.sdp).media}
        for mid, sid in offer.mid_to_track_id.items():
            if kinds.get(mid) == "video" and sid not in self.asked:
                self.asked.add(sid)
                height = self.choose(sid)
                layer = LAYERS[0] if height == LOW_HEIGHT else LAYERS[-1]
                await self.signal.send(
                    proto.SignalRequest(
                        track_setting=proto.UpdateTrackSettings(
                            track_sids=[sid], width=layer.width, height=layer.height
                        )
                    )
                )

    async def close(self) -> None:
        await super().close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.signal.leave(), 5)
