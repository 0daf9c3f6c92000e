"""Partner gateways for the federation tests: fr.test, de.test and be.test as real processes.

Each gateway runs on its own loopback address (127.0.0.11, .12, .13) with its own data directory
and configuration file, serves HTTPS with a certificate (SAN: its DNS name and its IP) issued by a
per-session test CA, and trusts that CA for federation through ``[federation] ca_file`` only (no
system store is touched). Its ports come from the federation port zone (``FEDERATION_PORTS``),
checked free on its own address. Helpers drive the admin API (peers, rooms, links, tokens), the
CLI (``rondpoint room show``) and ORS clients (spec/conformance/orsclient.py) over TLS.
Processes are stopped however a test ends (``partner_gateways`` is a context manager).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from spec.conformance.orsclient import OrsClient
from spec.conformance.webrtc import SAMPLE_RATE, WebRtcPeer, dominant_frequency
from tests.federation.certs import CaKey, issue_cert, make_ca
from tests.gateway_process import ROOT, free_udp_block, stop_process

SITES: dict[str, tuple[str, str]] = {
    "fr": ("fr.test", "127.0.0.11"),
    "de": ("de.test", "127.0.0.12"),
    "be": ("be.test", "127.0.0.13"),
}
"""Short name -> (server name, loopback address)."""

FEDERATION_PORTS = (5000, 9999)
"""This harness's port zone (see the zones in tests/gateway_process.py): every port of a partner
gateway (HTTPS, media, SIP, SIP RTP), below the kernel's ephemeral ports."""
PORTS_PER_GATEWAY = 24
"""HTTPS and media on the block's first port (TCP and UDP), SIP on the second, SIP RTP after."""

CLIENT_ADDRESS = "127.0.0.10"
"""Where the tests' own requests and ORS clients come from, so a firewall rule cutting the
gateways apart (test_e2e_faults.py) can leave them through."""

READY_SECONDS = 20.0


def free_block_on(host: str, count: int, zone: tuple[int, int] = FEDERATION_PORTS) -> int:
    """The first port P of ``count`` consecutive ports free for both UDP and TCP on ``host`` now,
    P even, picked at random in ``zone`` (first, last)."""
    return free_udp_block(count, zone, host=host, tcp=True)


class AdminError(AssertionError):
    """The admin API answered something other than what the helper expected."""


@dataclass
class PartnerGateway:
    """One gateway process (fr, de or be); ``start``, ``kill9`` and ``restart`` keep its files."""

    short: str
    name: str
    host: str
    workdir: Path
    ca: CaKey
    ca_file: Path
    federation_config: str = ""
    """More keys of the ``[federation]`` table (``heartbeat_seconds = 2``...)."""
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    admin_token: str = ""
    restarts: int = 0
    ssl_context: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_block_on(self.host, PORTS_PER_GATEWAY)
        self.cert_path, self.key_path = issue_cert(
            self.ca, self.workdir / "tls", dns_name=self.name, ip=self.host
        )
        self.ssl_context = ssl.create_default_context(cafile=str(self.ca_file))
        self.write_config()

    # addresses ----------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def media_port(self) -> int:
        return self.port

    @property
    def sip_port(self) -> int:
        return self.port + 1

    @property
    def rtp_ports(self) -> tuple[int, int]:
        return self.port + 2, self.port + PORTS_PER_GATEWAY - 1

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def config_path(self) -> Path:
        return self.workdir / "rondpoint.toml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "gateway.log"

    def write_config(self) -> None:
        rtp_first, rtp_last = self.rtp_ports
        self.config_path.write_text(
            f'[server]\nname = "{self.name}"\ndata_dir = "{self.data_dir}"\n'
            f'public_url = "{self.base_url}"\n'
            f'[http]\nhost = "{self.host}"\nport = {self.port}\n'
            f'tls_cert = "{self.cert_path}"\ntls_key = "{self.key_path}"\n'
            f'[media]\nhost = "{self.host}"\nport = {self.media_port}\n'
            f"port_range_start = {self.media_port}\nport_range_end = {self.media_port}\n"
            f'[sip]\nhost = "{self.host}"\nport = {self.sip_port}\n'
            f"rtp_port_start = {rtp_first}\nrtp_port_end = {rtp_last}\n"
            f'[rooms]\ndemo_room = ""\n'
            f"[limits]\nanonymous_requests_per_minute = 10000\n"
            f'[federation]\nca_file = "{self.ca_file}"\n'
            f"{self.federation_config}\n"
        )

    # process ------------------------------------------------------------------------------------
    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.restarts}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(self.config_path), "serve"]
                + ["--log-format", "json"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def wait_ready(self, timeout: float = READY_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            with contextlib.suppress(OSError):
                request = urllib.request.Request(self.base_url + "/readyz")
                with urllib.request.urlopen(request, timeout=1, context=self.ssl_context) as r:
                    if r.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready: {self.log_tail()}")
            time.sleep(0.1)
        self.admin_token = (self.data_dir / "admin-token").read_text().strip()

    def kill9(self) -> None:
        """SIGKILL: no goodbye to the partners, as a crash or a power cut."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def restart(self) -> None:
        """Start again on the same ports, data directory and keys."""
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process)
        self.restarts += 1
        self.start()
        self.wait_ready()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # admin API ----------------------------------------------------------------------------------
    def admin(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        """The admin API, from ``CLIENT_ADDRESS``: (status, decoded JSON body)."""
        connection = http.client.HTTPSConnection(
            self.host,
            self.port,
            timeout=10,
            context=self.ssl_context,
            source_address=(CLIENT_ADDRESS, 0),
        )
        try:
            connection.request(
                method,
                path,
                body=json.dumps(body).encode() if body is not None else None,
                headers={
                    "Authorization": f"Bearer {self.admin_token}",
                    "Content-Type": "application/json",
                },
            )
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(raw) if raw else {}
        except ValueError:
            return response.status, {"raw": raw.decode(errors="replace")}

    def expect(self, method: str, path: str, body: object | None = None, status: int = 200) -> Any:
        got, answer = self.admin(method, path, body)
        if got != status:
            raise AdminError(f"{self.name} {method} {path}: {got} {answer} (wanted {status})")
        return answer

    def create_room(self, room: str, **policy: object) -> dict[str, Any]:
        return dict(self.expect("POST", "/api/v1/rooms", {"id": room, **policy}, status=201))

    def token(self, room: str, identity: str, name: str = "", role: str = "member") -> str:
        minted = self.expect(
            "POST",
            f"/api/v1/rooms/{quote(room)}/tokens",
            {"identity": identity, "name": name or identity, "role": role, "ttl": 600},
            status=201,
        )
        return str(minted["token"])

    def room_show(self, room: str) -> dict[str, Any]:
        return dict(self.expect("GET", f"/api/v1/rooms/{quote(room)}"))

    def participants(self, room: str) -> list[dict[str, Any]]:
        status, body = self.admin("GET", f"/api/v1/rooms/{quote(room)}")
        return list(body.get("participants", [])) if status == 200 else []

    def names(self, room: str) -> list[str]:
        """Joined participants' names, sorted (a name twice shows a duplicate)."""
        return sorted(p["name"] for p in self.participants(room) if p.get("state") == "joined")

    def links(self, room: str) -> list[dict[str, Any]]:
        status, body = self.admin("GET", f"/api/v1/rooms/{quote(room)}")
        return list(body.get("links", [])) if status == 200 else []

    def link_status(self, room: str, target: str) -> dict[str, Any]:
        """The link's status (``state``, ``detail``, ``packets_in``...) or {} if it is not there."""
        for link in self.links(room):
            if isinstance(link, dict) and link.get("target") == target:
                return dict(link.get("status") or {})
        return {}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``rondpoint ARGS`` against this gateway; the CLI trusts the test CA through
        SSL_CERT_FILE, its process's own setting."""
        return subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            env={**os.environ, "SSL_CERT_FILE": str(self.ca_file)},
        )

    # ORS ----------------------------------------------------------------------------------------
    async def ors_client(self, room: str) -> OrsClient:
        """An ORS WebSocket session on ``room`` over TLS (not joined yet)."""
        connector = aiohttp.TCPConnector(ssl=self.ssl_context, local_addr=(CLIENT_ADDRESS, 0))
        session = aiohttp.ClientSession(connector=connector)
        url = self.base_url.replace("https", "wss", 1) + f"/ors/v1/rooms/{quote(room)}/ws"
        try:
            ws = await session.ws_connect(url, max_msg_size=4 * 1024 * 1024)
        except BaseException:
            await session.close()
            raise
        return OrsClient(session, ws)

    async def join(self, room: str, name: str, role: str = "member") -> OrsClient:
        """An ORS client joined to ``room`` as ``name``."""
        client = await self.ors_client(room)
        try:
            identity = name.lower().replace(" ", "-")
            joined = await client.join(self.token(room, identity, name, role=role))
            assert joined["type"] == "joined", joined
        except BaseException:
            await client.close()
            raise
        return client


class Person:
    """Someone in a room through an ORS client with WebRTC (aiortc): publishes a tone (and a
    camera if asked), answers every subscribe offer in the background, and tells what it hears
    from whom. Use ``await Person.join(...)`` and ``await person.leave()``."""

    def __init__(
        self,
        client: OrsClient,
        name: str,
        participant_id: str,
        peer: Callable[[OrsClient], WebRtcPeer] = WebRtcPeer,
    ) -> None:
        self.client = client
        self.name = name
        self.id = participant_id
        self.peer = peer(client)
        self.tracks_of: dict[str, list[str]] = {}
        """participant id -> its track ids, as the subscribe offers told."""
        self._answering = asyncio.create_task(self._answer_offers())

    @classmethod
    async def join(
        cls,
        gateway: PartnerGateway,
        room: str,
        name: str,
        frequency: float | None,
        video: bool = False,
        role: str = "member",
        peer: Callable[[OrsClient], WebRtcPeer] = WebRtcPeer,
    ) -> Person:
        """``frequency`` None: a listener who publishes nothing. ``peer`` makes its WebRTC peer
        (a subclass that times what it receives, for a bench)."""
        client = await gateway.ors_client(room)
        try:
            identity = name.lower().replace(" ", "-")
            joined = await client.join(gateway.token(room, identity, name, role=role))
            assert joined["type"] == "joined", joined
            person = cls(client, name, joined["participant"]["id"], peer)
        except BaseException:
            await client.close()
            raise
        if frequency is not None:
            await person.peer.publish(frequency=frequency, video=video)
        return person

    async def _answer_offers(self) -> None:
        while True:
            offer = await self.client.next_event("offer", timeout=3600)
            for entry in offer.get("tracks", []):
                tracks = self.tracks_of.setdefault(entry["participant_id"], [])
                if entry["track_id"] not in tracks:
                    tracks.append(entry["track_id"])
            await self.peer.accept_offer(offer)

    def frames_from(self, participant_id: str) -> int:
        """Audio frames received so far from ``participant_id``'s tracks."""
        return sum(
            track.frames
            for track_id in self.tracks_of.get(participant_id, [])
            if (track := self.peer.received.get(track_id)) is not None and track.kind == "audio"
        )

    async def heard_from(self, participant_id: str, seconds: float = 1.0) -> float:
        """The dominant frequency of what ``participant_id`` sent in the next ``seconds`` (0 if
        fewer than half the frames arrived)."""
        before = self.frames_from(participant_id)
        await asyncio.sleep(seconds)
        new = self.frames_from(participant_id) - before
        if new < seconds * 25:  # 20 ms frames: half of them
            return 0.0
        for track_id in self.tracks_of.get(participant_id, []):
            track = self.peer.received.get(track_id)
            if track is not None and track.kind == "audio" and track.samples:
                recent = track.samples[-min(new, len(track.samples)) :]
                return dominant_frequency(np.concatenate(recent), SAMPLE_RATE)
        return 0.0

    async def wait_hearing(
        self, participant_id: str, frequency: float, timeout: float = 20
    ) -> None:
        """Waits until this person hears ``frequency`` (within 15 Hz) from ``participant_id``."""
        deadline = asyncio.get_running_loop().time() + timeout
        heard = 0.0
        while asyncio.get_running_loop().time() < deadline:
            heard = await self.heard_from(participant_id)
            if abs(heard - frequency) <= 15:
                return
        raise AssertionError(
            f"{self.name} does not hear {frequency:.0f} Hz from {participant_id} "
            f"(heard {heard:.0f} Hz; tracks {self.tracks_of.get(participant_id)})"
        )

    async def leave(self) -> None:
        self._answering.cancel()
        with contextlib.suppress(BaseException):
            await self.peer.close()
        with contextlib.suppress(BaseException):
            await self.client.close()


def quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def target(gateway: PartnerGateway, room: str) -> str:
    """The link target naming ``room`` on ``gateway``: ``ors:ROOM@SERVER``."""
    return f"ors:{room}@{gateway.name}"


@dataclass
class Partners:
    """The running gateways by short name, and the operations between them."""

    gateways: dict[str, PartnerGateway]

    def __getitem__(self, short: str) -> PartnerGateway:
        return self.gateways[short]

    def peer_add(
        self, a: PartnerGateway, b: PartnerGateway, rooms: list[str] | None = None
    ) -> dict[str, Any]:
        """``a`` allow-lists ``b`` (``rondpoint peer add b --url ...``): server-wide, or for
        ``rooms`` only."""
        body: dict[str, Any] = {"name": b.name, "url": b.base_url}
        if rooms is not None:
            body["rooms"] = rooms
        return dict(a.expect("POST", "/api/v1/federation/peers", body, status=201))

    def peer_both(self, a: PartnerGateway, b: PartnerGateway) -> None:
        self.peer_add(a, b)
        self.peer_add(b, a)

    def link(
        self, a: PartnerGateway, room: str, b: PartnerGateway, b_room: str, status: int = 201
    ) -> dict[str, Any]:
        """``a``'s ``room`` links to ``b``'s ``b_room`` (``rondpoint link ROOM ors:B_ROOM@B``)."""
        body = {"target": target(b, b_room)}
        return dict(a.expect("POST", f"/api/v1/rooms/{quote(room)}/links", body, status=status))

    def unlink(self, a: PartnerGateway, room: str, b: PartnerGateway, b_room: str) -> None:
        path = f"/api/v1/rooms/{quote(room)}/links/{quote(target(b, b_room))}"
        status, body = a.admin("DELETE", path)
        assert status in (200, 204), (status, body)

    def wait_link_state(
        self,
        a: PartnerGateway,
        room: str,
        b: PartnerGateway,
        b_room: str,
        state: str,
        timeout: float = 20,
    ) -> dict[str, Any]:
        """Waits until ``a`` shows its link of ``room`` to ``b_room@b`` in ``state``."""
        return dict(
            wait_until(
                lambda: (s := a.link_status(room, target(b, b_room))).get("state") == state and s,
                timeout,
                f"{a.name} {room} -> {target(b, b_room)} to be {state}",
                last=lambda: a.link_status(room, target(b, b_room)),
            )
        )

    def link_connected(
        self, a: PartnerGateway, room: str, b: PartnerGateway, b_room: str, timeout: float = 20
    ) -> None:
        """``a`` links ``room`` to ``b_room@b``; both sides then show the link connected."""
        self.link(a, room, b, b_room)
        self.wait_link_state(a, room, b, b_room, "connected", timeout)
        self.wait_link_state(b, b_room, a, room, "connected", timeout)

    def stop(self) -> None:
        for gateway in self.gateways.values():
            gateway.stop()


def wait_until(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.2,
    last: Callable[[], Any] | None = None,
) -> Any:
    """Polls ``check`` until it returns something truthy; fails naming ``what`` and the last
    value (or what ``last`` reads then)."""
    deadline = time.monotonic() + timeout
    value: Any = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    shown = last() if last is not None else value
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {shown!r}")


@contextlib.contextmanager
def partner_gateways(
    workdir: Path, shorts: tuple[str, ...] = ("fr", "de", "be"), federation_config: str = ""
) -> Iterator[Partners]:
    """Starts the named gateways (in parallel) and stops them however the block ends; the logs
    stay in ``workdir/SHORT/gateway.log``."""
    ca_file, ca = make_ca(workdir / "ca", "Rondpoint federation test CA")
    partners = Partners({})
    try:
        for short in shorts:
            name, host = SITES[short]
            gateway = PartnerGateway(
                short, name, host, workdir / short, ca, ca_file, federation_config
            )
            partners.gateways[short] = gateway
            gateway.start()
        for gateway in partners.gateways.values():
            gateway.wait_ready()
        yield partners
    finally:
        partners.stop()
