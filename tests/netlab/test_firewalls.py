"""A participant whose network blocks UDP, with real Chromiums: one inside a NetLab namespace
(tests/netlab/netns.py) whose outgoing UDP is dropped, one on the host side.

a. ICE-TCP: the namespace's Chromium joins through the relay's passive TCP candidate (RFC 6544);
   its selected candidate pairs are TCP, and audio and video flow both ways.
b. TURN/TLS: with TCP to the media port dropped too, it joins through a real coturn over TLS
   (`turns:` from ORS `joined.ice_servers`, credentials from [turn]); its selected local
   candidates are relay candidates over TLS, and audio and video flow both ways.

Chromium checks a TURN server's TLS certificate: with the throwaway one untrusted, TURN/TLS fails
and the page never connects (tried; --ignore-certificate-errors would let it through). So the
namespace's Chromium gets a HOME whose NSS database trusts the test certificate (certutil, from
libnss3-tools), as an operator's users trust a real certificate (docs/deploy.md): verification
stays on. Each test saves both participants' final getStats figures under test-artifacts/netlab/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import coturn
from tests.browser.conftest import CHROMIUM_ARGS, load_room_page
from tests.gateway_process import RunningGateway, running_gateway
from tests.netlab.browsers import Browsers, host_and_namespace
from tests.netlab.netns import NetLab

pytestmark = [
    pytest.mark.interop,
    pytest.mark.browser,
    pytest.mark.skipif(
        not coturn.available() or shutil.which("certutil") is None,
        reason="coturn and certutil (libnss3-tools): run tests/setup-system.sh",
    ),
]

FRAMES = 60
"""Video frames each side must decode from the other (two seconds and more at 30 fps)."""
JOIN_TIMEOUT = 45.0

# Keeps the page's peer connections and reads, for each, the selected candidate pair and the
# media received and sent (window.firewall.stats()).
FIREWALL_JS = """
(() => {
  const Native = window.RTCPeerConnection;
  const pcs = [];
  function Recorded(...args) {
    const pc = new Native(...args);
    pcs.push(pc);
    return pc;
  }
  Recorded.prototype = Native.prototype;
  Object.setPrototypeOf(Recorded, Native);
  window.RTCPeerConnection = Recorded;
  const pick = (s, keys) => s ? Object.fromEntries(keys.map((k) => [k, s[k]])) : null;
  const CANDIDATE = ["protocol", "candidateType", "relayProtocol", "address", "port"];
  window.firewall = {
    async stats() {
      const out = [];
      for (const pc of pcs) {
        if (pc.connectionState === "closed") continue;
        const report = await pc.getStats();
        let pair = null;
        report.forEach((s) => {
          if (s.type === "transport" && s.selectedCandidatePairId)
            pair = report.get(s.selectedCandidatePairId);
        });
        const inbound = {}, outbound = {};
        report.forEach((s) => {
          if (s.type === "inbound-rtp") {
            const k = inbound[s.kind] || (inbound[s.kind] = {framesDecoded: 0, totalAudioEnergy: 0, packetsReceived: 0});
            k.framesDecoded += s.framesDecoded || 0;
            k.totalAudioEnergy += s.totalAudioEnergy || 0;
            k.packetsReceived += s.packetsReceived || 0;
          } else if (s.type === "outbound-rtp") {
            const k = outbound[s.kind] || (outbound[s.kind] = {packetsSent: 0});
            k.packetsSent += s.packetsSent || 0;
          }
        });
        out.push({
          state: pc.connectionState,
          local: pair ? pick(report.get(pair.localCandidateId), CANDIDATE) : null,
          remote: pair ? pick(report.get(pair.remoteCandidateId), CANDIDATE) : null,
          inbound, outbound,
        });
      }
      return out;
    },
  };
})();
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[NetLab]:
    with NetLab() as running:
        yield running


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory, lab: NetLab) -> Iterator[coturn.RunningTurn]:
    """coturn on the host side, allowed to relay to the gateway's address only."""
    directory = Path(tmp_path_factory.mktemp("netlab-coturn"))
    with coturn.running_turn(directory, lab.host_ip, allowed_peer=lab.host_ip) as server:
        yield server


@dataclass
class Gateway:
    running: RunningGateway
    udp_port: int
    tcp_port: int


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, lab: NetLab, turn: coturn.RunningTurn
) -> Iterator[Gateway]:
    tmp = Path(tmp_path_factory.mktemp("netlab-firewall-gateway"))
    tls_url = f"turns:{turn.host}:{turn.tls_port}?transport=tcp"
    extra = (
        '[rooms]\ndemo_room = ""\n'
        f'[turn]\nservers = ["{tls_url}"]\nsecret = "{turn.secret}"\nttl = 600\n'
    )
    with running_gateway(tmp, extra_config=extra, log_format="text", host=lab.host_ip) as running:
        banner = re.search(r"media +udp \S+:(\d+), tcp (\d+)", running.log_text())
        assert banner, "the banner names the ICE-TCP port"
        yield Gateway(running, int(banner.group(1)), int(banner.group(2)))
        assert turn.secret not in running.log_text()


def trusting_home(directory: Path, certificate: Path) -> Path:
    """A HOME whose NSS database (~/.pki/nssdb, what Chromium on Linux reads) trusts CERTIFICATE
    as a certificate authority, as an operator's machines trust a real one."""
    nssdb = directory / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    database = f"sql:{nssdb}"
    subprocess.run(
        ["certutil", "-N", "-d", database, "--empty-password"], check=True, capture_output=True
    )
    subprocess.run(
        ["certutil", "-A", "-d", database, "-t", "C,,", "-n", "rondpoint test TURN", "-i",
         str(certificate)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return directory


@pytest.fixture(scope="module")
def browsers(
    tmp_path_factory: pytest.TempPathFactory,
    lab: NetLab,
    gateway: Gateway,
    turn: coturn.RunningTurn,
) -> Iterator[Browsers]:
    """One Chromium on the host; one in the namespace, trusting the TURN server's certificate."""
    home = trusting_home(Path(tmp_path_factory.mktemp("chromium-home")), turn.certificate)
    args = [
        *CHROMIUM_ARGS,
        f"--unsafely-treat-insecure-origin-as-secure={gateway.running.base_url}",
    ]
    with host_and_namespace(lab, args, {**os.environ, "HOME": str(home)}) as browsers:
        yield browsers


@pytest.fixture(autouse=True)
def clean_network(lab: NetLab) -> Iterator[None]:
    lab.clear()
    yield
    lab.clear()


@contextlib.contextmanager
def participant(browser: Any, gateway: Gateway, room: str, name: str) -> Iterator[Any]:
    """The real Rondpoint page, joined and publishing camera (360p, no simulcast) and microphone."""
    origin = gateway.running.base_url
    context = browser.new_context(viewport={"width": 1000, "height": 700}, locale="en-US")
    try:
        context.grant_permissions(["camera", "microphone"], origin=origin)
        context.add_init_script(FIREWALL_JS)
        page = context.new_page()
        load_room_page(page, f"{origin}/r/{room}?autojoin=1&name={name}&res=360&simulcast=0")
        page.wait_for_function(
            "() => window.rondpoint && window.rondpoint.state === 'room'", timeout=20_000
        )
        yield page
    finally:
        context.close()


def stats(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate("window.firewall.stats()"))


def received(page: Any, kind: str, key: str) -> float:
    return sum(float(pc["inbound"].get(kind, {}).get(key, 0)) for pc in stats(page))


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def media_both_ways(inside: Any, outside: Any) -> None:
    """Each side decodes FRAMES of the other's video and hears the other's audio."""
    for page, name in ((inside, "the namespace's participant"), (outside, "the host's")):
        wait_for(
            lambda page=page: received(page, "video", "framesDecoded") >= FRAMES,
            JOIN_TIMEOUT,
            f"{name} to decode {FRAMES} video frames",
        )
        wait_for(
            lambda page=page: received(page, "audio", "totalAudioEnergy") > 0,
            JOIN_TIMEOUT,
            f"{name} to hear audio",
        )


def selected_local_candidates(page: Any) -> list[dict[str, Any]]:
    """The local candidate of each connected peer connection's selected pair (publish, subscribe)."""
    connected = [pc for pc in stats(page) if pc["state"] == "connected"]
    return [pc["local"] for pc in connected if pc["local"] is not None]


def metric(gateway: Gateway, name: str) -> float:
    url = gateway.running.base_url + "/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^rondpoint_relay_{name}(?:_total)? (\S+)$", text, re.MULTILINE)
    assert match, f"rondpoint_relay_{name} missing from /metrics"
    return float(match.group(1))


def save(artifacts: Path, test: str, pages: dict[str, Any]) -> None:
    figures = {name: stats(page) for name, page in pages.items()}
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / f"{test}.json").write_text(json.dumps(figures, indent=1))


def test_udp_blocked_joins_through_ice_tcp(
    lab: NetLab, gateway: Gateway, turn: coturn.RunningTurn, browsers: Browsers, artifacts: Path
) -> None:
    lab.block("udp")
    lab.block("tcp", turn.port)  # and no TURN: ICE-TCP is the only way
    lab.block("tcp", turn.tls_port)
    room = f"icetcp-{secrets.token_hex(3)}"
    with (
        participant(browsers.host, gateway, room, "Host") as outside,
        participant(browsers.namespace, gateway, room, "Inside") as inside,
    ):
        try:
            media_both_ways(inside, outside)
            locals_ = selected_local_candidates(inside)
            assert len(locals_) == 2, stats(inside)  # publish and subscribe
            assert all(c["protocol"] == "tcp" for c in locals_), locals_
            remotes = [pc["remote"] for pc in stats(inside) if pc["state"] == "connected"]
            assert all(r["port"] == gateway.tcp_port for r in remotes), remotes
            assert metric(gateway, "tcp_connections") >= 2
        finally:
            save(artifacts, "firewall-ice-tcp", {"inside": inside, "outside": outside})


def test_udp_and_media_tcp_blocked_joins_through_turn_over_tls(
    lab: NetLab, gateway: Gateway, browsers: Browsers, artifacts: Path
) -> None:
    lab.block("udp")
    lab.block("tcp", gateway.tcp_port)
    room = f"turn-{secrets.token_hex(3)}"
    with (
        participant(browsers.host, gateway, room, "Host") as outside,
        participant(browsers.namespace, gateway, room, "Inside") as inside,
    ):
        try:
            media_both_ways(inside, outside)
            locals_ = selected_local_candidates(inside)
            assert len(locals_) == 2, stats(inside)
            for candidate in locals_:
                assert candidate["candidateType"] == "relay", locals_
                assert candidate["relayProtocol"] == "tls", locals_
        finally:
            save(artifacts, "firewall-turn-tls", {"inside": inside, "outside": outside})
