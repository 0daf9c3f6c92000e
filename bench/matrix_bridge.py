"""The Matrix bridge: CPU per bridged participant and added one-way latency, beside the Visio
bridge in the same run.

Everything runs on loopback: a real livekit-server (the focus), Synapse from PyPI
(tests/matrix/synapse.py) with the gateway as its application service, and the gateway as its own
process with both a `[visio]` and a `[matrix]` section on the same livekit-server. Both bridges are
the same `LiveKitBridge` under different policies; the Matrix one adds the Matrix half (a ghost
user per person here holding a MatrixRTC call membership, restarted every 5 s).

The method is bench/visio_bridge.py's, whose measuring code this reuses (CPU windows from
/proc/PID/stat, the phone and probe helper processes, burst onsets); only the rooms differ:

- Matrix -> here: N Element Call participants (LiveKit's SDK with identities `@ecI:hs.test:DEV`
  in the Matrix call's LiveKit room, protocols/matrix/rooms.py, `auto_subscribe=False`) publish a tone, then a
  tone and video; one phone here listens. Per participant = (window N - window 0) / N.
- here -> Matrix: K phones here, measured unlinked then linked to a Matrix room (each phone a
  ghost with its membership, and its LiveKit participant `{ghost}:RONDPOINT`); an SDK listener
  in the LiveKit room subscribes to every mirror. Per mirrored participant as for Visio.
- Latency: bursts from an SDK speaker in the Matrix room's LiveKit room to a phone here (minus the
  probe's direct arrival), and from the phone to the probe through the phone's ghost's mirror.
- The same Visio figures (bench.visio_bridge's own functions) in the same run, same gateway.
- E2EE, the same three in encrypted Matrix rooms: each Element Call participant is an
  `EncryptedMember`, a matrix-js-sdk 43 session with its Rust crypto (tests/matrix/jsclient.py)
  holding the call membership and trading media keys over Olm, whose media LiveKit's Python SDK
  publishes and receives with those keys (Element Call's key provider settings). The bridge
  decrypts the members' frames and encrypts each ghost's with the ghost's key; the SDK listener
  decrypts the ghosts' tracks with the keys its member received (its tone is checked), and the
  latency probe decrypts with them too (protocols/matrix/frame_crypto, before decoding).

    .venv/bin/python -m bench.matrix_bridge [--users 2,6 --phones 2,6 --seconds 10
        --repetitions 2 --bursts 12 --no-visio --no-e2ee]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import random
import secrets
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import visio_bridge as vb
from bench.measure import loadavg, machine

GHOST_PREFIX = "@rondpoint_"
SERVER_NAME = "hs.test"


@dataclass
class MatrixSetup(vb.Setup):
    """bench.visio_bridge's Setup with a Synapse whose user OWNER makes the Matrix rooms."""

    owner: Any = None
    synapse: Any = None
    logs: Path = Path(".")

    async def matrix_room(self, *, encrypted: bool = False) -> str:
        from tests.matrix.conftest import BOT_LOCALPART

        return str(
            await self.owner.create_room(
                f"bench-{secrets.token_hex(3)}",
                encrypted=encrypted,
                invite=[f"@{BOT_LOCALPART}:{SERVER_NAME}"],
            )
        )

    def link_matrix(self, room: str, matrix_room: str) -> None:
        status, body = self.gateway.admin(
            "POST", f"/api/v1/rooms/{room}/links", {"target": f"matrix:{matrix_room}"}
        )
        assert status == 201, body

    def unlink_matrix(self, room: str, matrix_room: str) -> None:
        status, body = self.gateway.admin(
            "DELETE", f"/api/v1/rooms/{room}/links/matrix:{matrix_room}"
        )
        assert status in (200, 204), (status, body)

    async def linked_matrix(self, room: str, matrix_room: str) -> None:
        self.link_matrix(room, matrix_room)
        await vb.wait_for(
            lambda: self.link_state(room) == "connected", 30, f"{room}: link never connected"
        )


def matrix_here(setup: MatrixSetup, room: str, kinds: set[str]) -> int:
    return sum(
        1
        for p in setup.participants(room)
        if p["origin"] == "matrix" and kinds <= {t["kind"] for t in p["tracks"]}
    )


def matrix_count(setup: MatrixSetup, room: str, kinds: set[str], n: int) -> Callable[[], bool]:
    return lambda: matrix_here(setup, room, kinds) == n


def focus_room(matrix_room: str) -> str:
    """The LiveKit room of the Matrix room's call, as the focus and the bridge name it (the
    gateway runs with the default [matrix] livekit_room_names)."""
    from protocols.matrix.config import MatrixConfig
    from protocols.matrix.rooms import livekit_room_name

    return livekit_room_name(MatrixConfig(), matrix_room)


def element_call_identity(name: str) -> str:
    return f"@{name}:{SERVER_NAME}:{name.upper()}DEV"


KeySink = Callable[[str, bytes, int], None]
"""Takes a media key: (LiveKit identity, key, index)."""


def element_call_encryption() -> Any:
    """LiveKit's Python SDK E2EE options as Element Call sets livekit-client's: per-participant
    keys (no shared key) used as HKDF material, ratchet window 10, key ring 256, failure
    tolerance 10 (livekit-client's default), GCM; protocols/matrix/frame_crypto does the same."""
    from livekit import rtc
    from livekit.rtc._proto import e2ee_pb2

    return rtc.E2EEOptions(
        key_provider_options=rtc.KeyProviderOptions(
            shared_key=None,
            ratchet_salt=b"LKFrameEncryptionKey",
            ratchet_window_size=10,
            key_ring_size=256,
            failure_tolerance=10,
            key_derivation_function=e2ee_pb2.KeyDerivationFunction.HKDF,
        ),
        encryption_type=e2ee_pb2.EncryptionType.GCM,
    )


def pass_keys(js: Any, room_id: str, sinks: list[KeySink], seen: int) -> int:
    """The media keys of JS's events from SEEN on in ROOM_ID, to every sink; the new SEEN."""
    events = js.events[seen:]
    for event in events:
        if event["event"] == "media_key" and event["room"] == room_id:
            key = base64.b64decode(event["key"])
            for sink in sinks:
                sink(event["identity"], key, event["index"])
    return seen + len(events)


async def feed_keys(js: Any, room_id: str, sinks: list[KeySink], seen: int) -> None:
    """Every media key JS's session manages in ROOM_ID (its own and the members' it received),
    to every sink, as they come (runs until cancelled)."""
    while True:
        seen = pass_keys(js, room_id, sinks, seen)
        await asyncio.sleep(0.05)


@dataclass
class EncryptedMember:
    """An Element Call participant of an encrypted room: `js` (matrix-js-sdk, Rust crypto) holds
    the call membership and trades media keys over Olm; `user` (LiveKit's Python SDK, identity
    `{user}:{device}`) encrypts its media with its key and decrypts the others' with theirs."""

    js: Any
    user: Any
    identity: str
    feeder: asyncio.Task[None]

    async def leave(self) -> None:
        self.feeder.cancel()
        await self.user.leave()
        if self.js is not None:
            await self.js.close()


async def encrypted_member(
    setup: MatrixSetup,
    matrix_room: str,
    name: str,
    *,
    auto_subscribe: bool,
    sinks: list[KeySink] | None = None,
) -> EncryptedMember:
    """NAME (a new Matrix user) joins MATRIX_ROOM and its call with E2EE, as in
    tests/matrix/conftest.element_call_user, its media on LiveKit's Python SDK; SINKS get every
    key its session manages too."""
    from livekit import rtc

    from tests.interop.livekit_sdk import VisioUser, visio_token
    from tests.matrix.jsclient import start_js_client

    account = await setup.synapse.register_user(name, secrets.token_hex(8))
    await setup.owner.invite(matrix_room, account.user_id)
    device = f"{name.upper()}DEV"
    identity = f"{account.user_id}:{device}"
    js = await start_js_client(setup.logs / f"{name}-js.log")
    room = rtc.Room(loop=asyncio.get_running_loop())
    feeder: asyncio.Task[None] | None = None
    try:
        await js.command(
            "login",
            homeserver_url=account.homeserver_url,
            user_id=account.user_id,
            password=account.password,
            device_id=device,
            crypto=True,
        )
        await js.command("join", room=matrix_room)
        await js.command("rtc_join", room=matrix_room, manage_media_keys=True)
        await js.wait_event("media_key", lambda e: e["identity"] == identity, timeout=15)
        token = visio_token(setup.livekit, focus_room(matrix_room), identity, name)
        options = rtc.RoomOptions(
            auto_subscribe=auto_subscribe, encryption=element_call_encryption()
        )
        await asyncio.wait_for(room.connect(setup.livekit.url, token, options), 10)
        provider = room.e2ee_manager.key_provider
        assert provider is not None, "the SDK room has no key provider"
        every = [provider.set_key, *(sinks or [])]
        seen = pass_keys(js, matrix_room, every, 0)  # its own key before anything is published
        feeder = asyncio.create_task(feed_keys(js, matrix_room, every, seen))
    except BaseException:
        if feeder is not None:
            feeder.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(room.disconnect(), 5)
        await js.close()
        raise
    return EncryptedMember(
        js, VisioUser(room, identity, name, focus_room(matrix_room)), identity, feeder
    )


async def element_call_users(
    setup: MatrixSetup, matrix_room: str, names: list[str], *, encrypted: bool
) -> list[EncryptedMember]:
    """Element Call participants NAMES in MATRIX_ROOM's call that publish and subscribe to
    nothing: LiveKit's SDK alone, or EncryptedMembers (their `user` is the SDK's)."""
    from tests.interop.livekit_sdk import VisioUser

    users: list[EncryptedMember] = []
    try:
        for i, name in enumerate(names):
            if encrypted:
                users.append(await encrypted_member(setup, matrix_room, name, auto_subscribe=False))
            else:
                identity = element_call_identity(name)
                user = await VisioUser.join(
                    setup.livekit,
                    focus_room(matrix_room),
                    identity,
                    f"Element {i}",
                    auto_subscribe=False,
                )
                users.append(EncryptedMember(None, user, identity, asyncio.create_task(idle())))
    except BaseException:
        for member in users:
            await member.leave()
        raise
    return users


async def idle() -> None:
    await asyncio.Event().wait()


async def matrix_to_here(
    setup: MatrixSetup, rep: int, counts: list[int], seconds: float, *, encrypted: bool = False
) -> list[dict[str, Any]]:
    """Windows with 0, then N Element Call participants (audio, then audio+video); one phone here
    listens. ENCRYPTED: in an encrypted room, the participants EncryptedMembers."""
    room = f"bench-m{'e' if encrypted else 'a'}{rep}"
    label = "matrix e2ee->here" if encrypted else "matrix->here"
    matrix_room = await setup.matrix_room(encrypted=encrypted)
    setup.gateway.create_room(room)
    rows: list[dict[str, Any]] = []
    async with vb.phone(setup, room, 1, 0):
        await setup.linked_matrix(room, matrix_room)
        await asyncio.sleep(2)
        base = await setup.window(seconds)
        rows.append({"rep": rep, "users": 0, "media": "-", **base})
        for n in counts:
            tag = "ece" if encrypted else "ec"
            names = [f"{tag}{rep}x{n}x{i}" for i in range(n)]
            members = await element_call_users(setup, matrix_room, names, encrypted=encrypted)
            users = [member.user for member in members]
            try:
                for i, user in enumerate(users):
                    await user.publish_tone(300 + 50 * i)
                await vb.wait_for(matrix_count(setup, room, {"audio"}, n), 30, "audio not bridged")
                await asyncio.sleep(2)
                rows.append(
                    {"rep": rep, "users": n, "media": "audio", **await setup.window(seconds)}
                )
                for user in users:
                    await user.publish_video()
                await vb.wait_for(
                    matrix_count(setup, room, {"audio", "video"}, n),
                    30,
                    "video not bridged",
                )
                await asyncio.sleep(2)
                rows.append(
                    {"rep": rep, "users": n, "media": "audio+video", **await setup.window(seconds)}
                )
            finally:
                for member in members:
                    await member.leave()
            await vb.wait_for(
                lambda: matrix_here(setup, room, set()) == 0, 20, "Element Call users stayed"
            )
        setup.unlink_matrix(room, matrix_room)
    for row in rows:
        n = row["users"]
        if n:
            for key in ("gateway", "livekit"):
                row[f"{key}_pp"] = vb.per_participant(row[key], base[key], n, seconds)
        print(
            f"  rep {rep} {label} {n} users {row['media']:<11} "
            f"gateway {vb.pct(row['gateway'], seconds):5.1f}% "
            f"livekit {vb.pct(row['livekit'], seconds):5.1f}%",
            flush=True,
        )
    return rows


def mirrors(listener: Any) -> list[str]:
    """Identities of our ghosts' LiveKit participants that publish, as LISTENER sees them."""
    return [
        p.identity
        for p in listener.room.remote_participants.values()
        if p.identity.startswith(GHOST_PREFIX) and p.track_publications
    ]


def mirrored(listener: Any, k: int) -> Callable[[], bool]:
    return lambda: len(mirrors(listener)) == k


async def subscriber(setup: MatrixSetup, matrix_room: str, name: str, encrypted: bool) -> Any:
    """An SDK listener in MATRIX_ROOM's call that subscribes to everything (an EncryptedMember's
    when ENCRYPTED)."""
    from tests.interop.livekit_sdk import VisioUser

    if encrypted:
        return await encrypted_member(setup, matrix_room, name, auto_subscribe=True)
    user = await VisioUser.join(
        setup.livekit, focus_room(matrix_room), element_call_identity(name), "Listener"
    )
    return EncryptedMember(None, user, user.identity, asyncio.create_task(idle()))


async def decrypted_tone(listener: Any, hz: float) -> bool:
    """Whether LISTENER hears a mirror's tone at HZ (a wrong key gives no frames, or noise)."""
    try:
        found = await listener.dominant_frequency(mirrors(listener)[0], 1.0, timeout=10)
    except AssertionError:
        return False
    return abs(found - hz) <= 10


async def here_to_matrix(
    setup: MatrixSetup, rep: int, counts: list[int], seconds: float, *, encrypted: bool = False
) -> list[dict[str, Any]]:
    """For K in 0 and COUNTS: K phones in a fresh room, unlinked then linked to a fresh Matrix
    room; an SDK listener in its LiveKit room subscribes to every mirror (ENCRYPTED: an
    encrypted room, the listener an EncryptedMember, who must hear the phones' tone)."""
    rows: list[dict[str, Any]] = []
    label = "here->matrix e2ee" if encrypted else "here->matrix"
    for k in [0, *counts]:
        room = f"bench-m{'f' if encrypted else 'b'}{rep}-{k}"
        matrix_room = await setup.matrix_room(encrypted=encrypted)
        setup.gateway.create_room(room)
        member = await subscriber(
            setup, matrix_room, f"listener{'e' if encrypted else ''}{rep}x{k}", encrypted
        )
        listener = member.user
        heard = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if k:
                    await stack.enter_async_context(vb.phone(setup, room, k, 700))
                    await vb.wait_for(vb.phone_count(setup, room, k), 20, "phones not in")
                await asyncio.sleep(2)
                unlinked = await setup.window(seconds)
                await setup.linked_matrix(room, matrix_room)
                await vb.wait_for(
                    mirrored(listener, k),
                    40,
                    "phones not mirrored into LiveKit",
                )
                await asyncio.sleep(2)
                link = await setup.window(seconds)
                if k:
                    heard = await decrypted_tone(listener, 700)
                setup.unlink_matrix(room, matrix_room)
        finally:
            await member.leave()
        rows.append({"rep": rep, "phones": k, "unlinked": unlinked, "linked": link})
        print(
            f"  rep {rep} {label} {k} phones (listener heard the tone: {heard}): gateway unlinked "
            f"{vb.pct(unlinked['gateway'], seconds):5.1f}% linked "
            f"{vb.pct(link['gateway'], seconds):5.1f}%, livekit {vb.pct(link['livekit'], seconds):5.1f}%",
            flush=True,
        )
    zero = rows[0]
    for row in rows[1:]:
        k = row["phones"]
        for key in ("gateway", "livekit"):
            added = row["linked"][key] - row["unlinked"][key]
            fixed = zero["linked"][key] - zero["unlinked"][key]
            row[f"{key}_pp"] = vb.per_participant(added, fixed, k, seconds)
        row["gateway_total_pp"] = vb.per_participant(
            row["linked"]["gateway"], zero["unlinked"]["gateway"], k, seconds
        )
    return rows


def e2ee_probe_main(url: str, token: str, conn: Any) -> None:  # pragma: no cover - child
    """bench.visio_bridge.probe_main for an encrypted call: ("key", identity, key, index)
    messages give it the media keys, with which it decrypts each Opus packet before decoding
    (protocols/matrix/frame_crypto, as the bridge does; microseconds a packet)."""
    asyncio.run(_e2ee_probe(url, token, conn))


async def _e2ee_probe(url: str, token: str, conn: Any) -> None:  # pragma: no cover - child
    from gateway.media.audio.codecs import OpusDecoder
    from gateway.media.rtp import RtpPacket
    from protocols.livekit.rtc import LiveKitParticipant, RemoteTrack
    from protocols.matrix.frame_crypto import FrameCryptor, KeyRing, OpusCryptor

    received: dict[str, vb.Onsets] = {}
    tracks: dict[str, str] = {}
    rings: dict[str, KeyRing] = {}
    decrypt: dict[str, tuple[OpusCryptor, OpusDecoder]] = {}

    def on_remote_track(track: RemoteTrack) -> None:
        if track.kind == "audio":
            tracks[track.sid] = track.participant_identity

    def on_rtp(sid: str, packet: bytes) -> None:
        now = time.monotonic()
        identity = tracks.get(sid)
        if identity is None or identity not in rings:
            return
        if sid not in decrypt:
            cryptor = OpusCryptor(FrameCryptor(rings[identity]), encrypt=False)
            decrypt[sid] = (cryptor, OpusDecoder(vb.SDK_RATE))
        cryptor, decoder = decrypt[sid]
        for clear in cryptor.process(packet):
            payload = RtpPacket.parse(clear).payload
            if payload:
                samples = decoder.decode(payload)
                received.setdefault(identity, []).append(
                    (now, vb.loud_index(samples), len(samples))
                )

    participant = await LiveKitParticipant.connect(url, token, encoded=True)
    participant.on_remote_track = on_remote_track
    participant.on_rtp = on_rtp
    conn.send(("ready", participant.identity))
    stopped = asyncio.Event()

    def on_message() -> None:
        message = conn.recv()
        if message[0] == "key":
            _, identity, key, index = message
            rings.setdefault(identity, KeyRing()).set_key(key, index)
        else:
            stopped.set()

    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), on_message)
    await stopped.wait()
    loop.remove_reader(conn.fileno())
    conn.send(("report", received))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(participant.close(), 5)


async def latency(
    setup: MatrixSetup, bursts: int, period: float, *, encrypted: bool = False
) -> list[dict[str, Any]]:
    """bench.visio_bridge.latency's two paths, through a Matrix link (ENCRYPTED: an encrypted
    room, speaker and listener EncryptedMembers, the probe given the listener's keys)."""
    room = f"bench-mlatency{'-e2ee' if encrypted else ''}"
    matrix_room = await setup.matrix_room(encrypted=encrypted)
    setup.gateway.create_room(room)
    lk_room = focus_room(matrix_room)
    token = vb.probe_token(setup.livekit, lk_room, element_call_identity("probe"))
    tag = "e" if encrypted else ""
    speaker_member = (
        await element_call_users(setup, matrix_room, [f"speaker{tag}"], encrypted=encrypted)
    )[0]
    speaker_identity = speaker_member.identity
    speaker = vb.BurstSpeaker(speaker_member.user)
    recorders: list[asyncio.Task[None]] = []
    heard: dict[str, vb.Onsets] = {"speaker": [], "phone": []}
    listener_member: EncryptedMember | None = None
    try:
        await speaker.start()
        with vb.child(
            e2ee_probe_main if encrypted else vb.probe_main, setup.livekit.url, token
        ) as probe:
            await vb.expect(probe, "ready")

            def to_probe(identity: str, key: bytes, index: int) -> None:
                probe.send(("key", identity, key, index))

            if encrypted:
                listener_member = await encrypted_member(
                    setup, matrix_room, "listenere", auto_subscribe=True, sinks=[to_probe]
                )
            else:
                listener_member = await subscriber(setup, matrix_room, "listener", False)
            listener = listener_member.user
            async with vb.phone(setup, room, 1, 0) as phone_conn:
                await setup.linked_matrix(room, matrix_room)
                await vb.wait_for(
                    lambda: matrix_here(setup, room, {"audio"}) >= 1, 20, "speaker not bridged"
                )
                await vb.wait_for(lambda: bool(mirrors(listener)), 40, "phone not mirrored")
                mirror = mirrors(listener)[0]
                recorders = [
                    asyncio.create_task(
                        vb.record_frames(listener, speaker_identity, heard["speaker"])
                    ),
                    asyncio.create_task(vb.record_frames(listener, mirror, heard["phone"])),
                ]
                await asyncio.sleep(3)
                for _ in range(bursts):
                    speaker.burst()
                    await asyncio.sleep(period + random.uniform(0, 0.1))
                await asyncio.sleep(1)
                first = time.monotonic() + 0.5
                starts = [first + i * period + random.uniform(0, 0.1) for i in range(bursts)]
                phone_conn.send(("bursts", starts))
                await asyncio.sleep(starts[-1] - time.monotonic() + 1.5)
            report: vb.PhoneReport = phone_conn.report
            probe.send(("stop",))
            probed: dict[str, vb.Onsets] = await vb.expect(probe, "report")
    finally:
        for task in recorders:
            task.cancel()
        await speaker.close()
        await speaker_member.leave()
        if listener_member is not None:
            await listener_member.leave()
    captured = speaker.captured
    lk_starts = [t - 0.05 for t in captured]
    probe_lk = vb.onset_times(probed.get(speaker_identity, []), lk_starts, vb.SDK_RATE)
    phone_lk = vb.onset_times(report.received, lk_starts, vb.PHONE_RATE)
    sent = [t - 0.02 for t in report.sent_onsets]
    phone_starts = [t - 0.001 for t in report.sent_onsets]
    probe_phone = vb.onset_times(probed.get(mirror, []), phone_starts, vb.SDK_RATE)
    print(
        f"Matrix{' E2EE' if encrypted else ''} latency (one-way, onset of a 200 ms burst):",
        flush=True,
    )
    return [
        vb.summary(
            "LiveKit->phone ADDED (phone - probe)",
            vb.differences(phone_lk, probe_lk),
            len(captured),
        ),
        vb.summary(
            "phone->LiveKit ADDED (probe - phone capture)",
            vb.differences(probe_phone, sent),
            len(sent),
        ),
    ]


def report_cpu(
    label: str, a_rows: list[dict[str, Any]], b_rows: list[dict[str, Any]], seconds: float
) -> None:
    for n in sorted({r["users"] for r in a_rows if r["users"]}):
        for media in ("audio", "audio+video"):
            rows = [r for r in a_rows if r["users"] == n and r["media"] == media]
            g, lk = vb.median_of(rows, "gateway_pp"), vb.median_of(rows, "livekit_pp")
            print(
                f"  {label} -> here, {n} users, {media:<11}: gateway {g:.2f}%  "
                f"livekit-server {lk:.2f}%"
            )
    for k in sorted({r["phones"] for r in b_rows if "gateway_pp" in r}):
        rows = [r for r in b_rows if r["phones"] == k and "gateway_pp" in r]
        g, lk = vb.median_of(rows, "gateway_pp"), vb.median_of(rows, "livekit_pp")
        total = vb.median_of(rows, "gateway_total_pp")
        print(
            f"  here -> {label}, {k} phones: gateway {g:.2f}% per mirror (with the phone leg: "
            f"{total:.2f}%)  livekit-server {lk:.2f}%"
        )


def report_ratios(rows: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]) -> None:
    """Gateway CPU per participant, Matrix E2EE / Matrix and Matrix / Visio, for each step both
    runs have (medians' ratios)."""

    def steps(label: str) -> dict[str, float]:
        a_rows, b_rows = rows[label]
        found: dict[str, float] = {}
        for row in a_rows:
            if row["users"]:
                key = f"-> here, {row['users']} users, {row['media']}"
                found.setdefault(
                    key,
                    vb.median_of(
                        [
                            r
                            for r in a_rows
                            if r["users"] == row["users"] and r["media"] == row["media"]
                        ],
                        "gateway_pp",
                    ),
                )
        for row in b_rows:
            if "gateway_pp" in row:
                key = f"here ->, {row['phones']} phones"
                found.setdefault(
                    key,
                    vb.median_of(
                        [r for r in b_rows if r["phones"] == row["phones"] and "gateway_pp" in r],
                        "gateway_pp",
                    ),
                )
        return found

    print("gateway CPU per participant, ratios of the medians:")
    for top, bottom in (("Matrix E2EE", "Matrix"), ("Matrix", "Visio")):
        over, under = steps(top), steps(bottom)
        for key in over:
            if key in under:
                ratio = f"{over[key] / under[key]:.2f}" if under[key] > 0 else "n/a"
                print(f"  {top} / {bottom}, {key}: {ratio}")


async def run(args: argparse.Namespace) -> int:
    from tests.gateway_process import free_port, running_gateway
    from tests.interop.livekit_fixtures import running_livekit
    from tests.matrix.conftest import focus_url, matrix_config, write_registration
    from tests.matrix.synapse import install_synapse, running_synapse

    warnings.filterwarnings("ignore", message=".*HMAC key.*")
    users = [int(x) for x in args.users.split(",") if x]
    phones = [int(x) for x in args.phones.split(",") if x]
    print(f"machine: {machine()}; load average {loadavg()}", flush=True)
    python = install_synapse()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rondpoint-bench-")))
        for sub in ("lk", "gw", "hs"):
            (tmp / sub).mkdir()
        livekit = stack.enter_context(running_livekit(tmp / "lk"))
        synapse_port = free_port()
        config = matrix_config(
            synapse_port, livekit, secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        ) + (
            f'[visio]\nurl = "{livekit.url}"\napi_key = "{livekit.api_key}"\n'
            f'api_secret = "{livekit.api_secret}"\nreconnect_max_seconds = 2\n'
        )
        gateway = stack.enter_context(running_gateway(tmp / "gw", extra_config=config))
        registration = write_registration(gateway, tmp / "registration.yaml")
        synapse = stack.enter_context(
            running_synapse(
                tmp / "hs",
                python,
                app_service_files=[registration],
                port=synapse_port,
                rtc_transports=[{"type": "livekit", "livekit_service_url": focus_url(gateway)}],
            )
        )
        owner = await synapse.register_user("bench-owner", secrets.token_hex(8))
        (tmp / "js").mkdir()
        setup = MatrixSetup(gateway, livekit, owner=owner, synapse=synapse, logs=tmp / "js")
        seconds = args.seconds
        rows: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
            "Matrix": ([], []),
            "Matrix E2EE": ([], []),
            "Visio": ([], []),
        }
        e2ee = not args.no_e2ee
        for rep in range(args.repetitions):
            print(f"repetition {rep + 1} (load average {loadavg()})", flush=True)
            if users:
                rows["Matrix"][0].extend(await matrix_to_here(setup, rep, users, seconds))
                if e2ee:
                    rows["Matrix E2EE"][0].extend(
                        await matrix_to_here(setup, rep, users, seconds, encrypted=True)
                    )
                if not args.no_visio:
                    rows["Visio"][0].extend(await vb.visio_to_here(setup, rep, users, seconds))
            if phones:
                rows["Matrix"][1].extend(await here_to_matrix(setup, rep, phones, seconds))
                if e2ee:
                    rows["Matrix E2EE"][1].extend(
                        await here_to_matrix(setup, rep, phones, seconds, encrypted=True)
                    )
                if not args.no_visio:
                    rows["Visio"][1].extend(await vb.here_to_visio(setup, rep, phones, seconds))
        print(f"\nCPU per bridged participant, % of one core, median of {args.repetitions}:")
        for label, (a_rows, b_rows) in rows.items():
            report_cpu(label, a_rows, b_rows, seconds)
        report_ratios(rows)
        if args.bursts:
            print(f"\nlatency, {args.bursts} bursts each way (load {loadavg()})", flush=True)
            await latency(setup, args.bursts, args.period)
            if e2ee:
                await latency(setup, args.bursts, args.period, encrypted=True)
            if not args.no_visio:
                print("Visio, same run:", flush=True)
                await vb.latency(setup, args.bursts, args.period)
    print(f"load average at the end: {loadavg()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", default="2,6", help="N Element Call users per step")
    parser.add_argument("--phones", default="2,6", help="K phones here per step")
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU window")
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--bursts", type=int, default=12, help="bursts each way (0: none)")
    parser.add_argument("--period", type=float, default=1.0, help="seconds between bursts")
    parser.add_argument("--no-visio", action="store_true", help="skip the Visio reference")
    parser.add_argument("--no-e2ee", action="store_true", help="skip the encrypted Matrix rooms")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
