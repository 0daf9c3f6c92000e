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
- Not measured: E2EE (the bridge does not decrypt Element Call media yet).

    .venv/bin/python -m bench.matrix_bridge [--users 2,6 --phones 2,6 --seconds 10
        --repetitions 2 --bursts 12 --no-visio]
"""

from __future__ import annotations

import argparse
import asyncio
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

    async def matrix_room(self) -> str:
        from tests.matrix.conftest import BOT_LOCALPART

        return str(
            await self.owner.create_room(
                f"bench-{secrets.token_hex(3)}", invite=[f"@{BOT_LOCALPART}:{SERVER_NAME}"]
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


async def matrix_to_here(
    setup: MatrixSetup, rep: int, counts: list[int], seconds: float
) -> list[dict[str, Any]]:
    """Windows with 0, then N Element Call participants (audio, then audio+video); one phone here
    listens."""
    from tests.interop.livekit_sdk import VisioUser

    room = f"bench-ma{rep}"
    matrix_room = await setup.matrix_room()
    setup.gateway.create_room(room)
    rows: list[dict[str, Any]] = []
    async with vb.phone(setup, room, 1, 0):
        await setup.linked_matrix(room, matrix_room)
        await asyncio.sleep(2)
        base = await setup.window(seconds)
        rows.append({"rep": rep, "users": 0, "media": "-", **base})
        for n in counts:
            users = [
                await VisioUser.join(
                    setup.livekit,
                    focus_room(matrix_room),
                    element_call_identity(f"ec{rep}x{n}x{i}"),
                    f"Element {i}",
                    auto_subscribe=False,
                )
                for i in range(n)
            ]
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
                for user in users:
                    await user.leave()
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
            f"  rep {rep} matrix->here {n} users {row['media']:<11} "
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


async def here_to_matrix(
    setup: MatrixSetup, rep: int, counts: list[int], seconds: float
) -> list[dict[str, Any]]:
    """For K in 0 and COUNTS: K phones in a fresh room, unlinked then linked to a fresh Matrix
    room; an SDK listener in its LiveKit room subscribes to every mirror."""
    from tests.interop.livekit_sdk import VisioUser

    rows: list[dict[str, Any]] = []
    for k in [0, *counts]:
        room = f"bench-mb{rep}-{k}"
        matrix_room = await setup.matrix_room()
        setup.gateway.create_room(room)
        listener = await VisioUser.join(
            setup.livekit,
            focus_room(matrix_room),
            element_call_identity(f"listener{rep}x{k}"),
            "Listener",
        )
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
                setup.unlink_matrix(room, matrix_room)
        finally:
            await listener.leave()
        rows.append({"rep": rep, "phones": k, "unlinked": unlinked, "linked": link})
        print(
            f"  rep {rep} here->matrix {k} phones: gateway unlinked "
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


async def latency(setup: MatrixSetup, bursts: int, period: float) -> list[dict[str, Any]]:
    """bench.visio_bridge.latency's two paths, through a Matrix link."""
    from tests.interop.livekit_sdk import VisioUser

    room = "bench-mlatency"
    matrix_room = await setup.matrix_room()
    setup.gateway.create_room(room)
    lk_room = focus_room(matrix_room)
    token = vb.probe_token(setup.livekit, lk_room, element_call_identity("probe"))
    speaker_identity = element_call_identity("speaker")
    speaker_user = await VisioUser.join(
        setup.livekit, lk_room, speaker_identity, "Speaker", auto_subscribe=False
    )
    listener = await VisioUser.join(
        setup.livekit, lk_room, element_call_identity("listener"), "Listener"
    )
    speaker = vb.BurstSpeaker(speaker_user)
    recorders: list[asyncio.Task[None]] = []
    heard: dict[str, vb.Onsets] = {"speaker": [], "phone": []}
    try:
        await speaker.start()
        with vb.child(vb.probe_main, setup.livekit.url, token) as probe:
            await vb.expect(probe, "ready")
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
        await speaker_user.leave()
        await listener.leave()
    captured = speaker.captured
    lk_starts = [t - 0.05 for t in captured]
    probe_lk = vb.onset_times(probed.get(speaker_identity, []), lk_starts, vb.SDK_RATE)
    phone_lk = vb.onset_times(report.received, lk_starts, vb.PHONE_RATE)
    sent = [t - 0.02 for t in report.sent_onsets]
    phone_starts = [t - 0.001 for t in report.sent_onsets]
    probe_phone = vb.onset_times(probed.get(mirror, []), phone_starts, vb.SDK_RATE)
    print("Matrix latency (one-way, onset of a 200 ms burst):", flush=True)
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
        setup = MatrixSetup(gateway, livekit, owner=owner)
        seconds = args.seconds
        rows: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
            "Matrix": ([], []),
            "Visio": ([], []),
        }
        for rep in range(args.repetitions):
            print(f"repetition {rep + 1} (load average {loadavg()})", flush=True)
            if users:
                rows["Matrix"][0].extend(await matrix_to_here(setup, rep, users, seconds))
                if not args.no_visio:
                    rows["Visio"][0].extend(await vb.visio_to_here(setup, rep, users, seconds))
            if phones:
                rows["Matrix"][1].extend(await here_to_matrix(setup, rep, phones, seconds))
                if not args.no_visio:
                    rows["Visio"][1].extend(await vb.here_to_visio(setup, rep, phones, seconds))
        print(f"\nCPU per bridged participant, % of one core, median of {args.repetitions}:")
        for label, (a_rows, b_rows) in rows.items():
            report_cpu(label, a_rows, b_rows, seconds)
        if args.bursts:
            print(f"\nlatency, {args.bursts} bursts each way (load {loadavg()})", flush=True)
            await latency(setup, args.bursts, args.period)
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
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
