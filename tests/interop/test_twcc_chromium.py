"""Chromium publishing to the relay: its own congestion controller (draft-holmer-rmcat-transport-
wide-cc-extensions-01 feedback from the relay) raises its upload, it stays near the start rate when
no feedback comes, and the relay's REMB stays the ceiling ([media] max_publish_bitrate)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_process import RunningGateway, running_gateway
from tests.interop.noise_camera import chromium_filming, noise_video

pytestmark = [pytest.mark.interop, pytest.mark.browser]

WATCH_SECONDS = 20.0
AVAILABLE_GOAL = 1_000_000  # the candidate pair's availableOutgoingBitrate, bits/s
SENT_GOAL = 600_000  # the outbound video bitrate, bits/s
CEILING = 300_000  # max_publish_bitrate of the capped gateway
CEILING_SLACK = 400_000

# Joins over the ORS WebSocket and publishes the fake camera at 1280x720, one layer. WITHOUT_TWCC:
# the offer sent to the relay carries no transport-cc (so the relay sends no feedback), while the
# answer handed to Chromium gets it back, so Chromium waits for feedback that never comes.
PUBLISH_JS = """async ({token, room, withoutTwcc}) => {
  const { OrsClient } = await import("/static/ors-client.js");
  const client = new OrsClient({ room });
  await client.connect(token, "publisher");
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: 1280, height: 720, frameRate: 30 },
  });
  const pc = new RTCPeerConnection();
  const tx = pc.addTransceiver(stream.getVideoTracks()[0], { direction: "sendonly" });
  const parameters = tx.sender.getParameters();
  parameters.degradationPreference = "maintain-resolution";  // 1280x720 throughout
  await tx.sender.setParameters(parameters);
  await pc.setLocalDescription(await pc.createOffer());
  let offer = pc.localDescription.sdp;
  const isTwcc = (l) => l.includes("transport-wide-cc") || / transport-cc$/.test(l);
  if (withoutTwcc) offer = offer.split("\\r\\n").filter((l) => !isTwcc(l)).join("\\r\\n");
  const reply = await client.request("offer", {
    pc: "publish", sdp: offer, tracks: [{ mid: tx.mid, source: "camera" }],
  });
  let answer = reply.sdp;
  if (withoutTwcc) {
    const extmap = pc.localDescription.sdp.match(/a=extmap:\\d+ \\S*transport-wide-cc\\S*/)[0];
    const pt = answer.match(/m=video \\d+ \\S+ (\\d+)/)[1];
    const lines = `${extmap}\\r\\na=rtcp-fb:${pt} transport-cc\\r\\n`;
    answer = answer.replace(/(a=mid:[^\\r]*\\r\\n)/, (m) => m + lines);
  }
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  window.publisher = { pc, client, answer };
}"""

SAMPLE_JS = """async () => {
  const out = { available: null, bytes: 0, t: 0, state: window.publisher.pc.connectionState };
  const stats = await window.publisher.pc.getStats();
  stats.forEach((s) => {
    // the transport's selected pair's estimate; none in a sample that has no such pair
    const pair = s.type === "transport" ? stats.get(s.selectedCandidatePairId) : null;
    if (pair && typeof pair.availableOutgoingBitrate === "number")
      out.available = pair.availableOutgoingBitrate;
    if (s.type === "outbound-rtp" && s.kind === "video") {
      out.bytes += s.bytesSent;
      out.t = s.timestamp;
      out.limit = `${s.frameWidth}x${s.frameHeight}@${s.framesPerSecond} ${s.qualityLimitationReason}`;
      out.target = s.targetBitrate || 0;
    }
  });
  return out;
}"""


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    video = noise_video(Path(tmp_path_factory.mktemp("twcc-video")) / "noise.y4m", grey=True)
    with chromium_filming(video) as browser:
        yield browser


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    # no ICE-TCP: UDP is what this measures, and two gateways would contend for its port
    with running_gateway(
        Path(tmp_path_factory.mktemp("twcc-gateway")), media_config="tcp_port = 0"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def capped_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(
        Path(tmp_path_factory.mktemp("twcc-capped")),
        media_config=f"max_publish_bitrate = {CEILING}\ntcp_port = 0",
    ) as running:
        yield running


class _Watch:
    """getStats samples of one publishing page: the pair's estimate and the sent video bitrate."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.samples: list[dict[str, float]] = []
        self.available: list[float] = []
        self.sent: list[float] = []  # bits/s over the last ~2 s

    def sample(self) -> None:
        now = dict(self.page.evaluate(SAMPLE_JS))
        self.samples.append(now)
        if now["available"] is not None:  # a sample without the selected pair measures nothing
            self.available.append(float(now["available"]))
        earlier = self.samples[max(0, len(self.samples) - 5)]
        if now["t"] > earlier["t"]:
            self.sent.append((now["bytes"] - earlier["bytes"]) * 8000 / (now["t"] - earlier["t"]))

    def summary(self) -> str:
        return (
            f"availableOutgoingBitrate max {max(self.available, default=0):.0f}, "
            f"sent video bitrate max {max(self.sent, default=0):.0f} bits/s; "
            f"last sent {[round(s) for s in self.sent[-6:]]}, "
            f"last available {[round(a) for a in self.available[-6:]]}, "
            f"encoder {self.samples[-1].get('limit') if self.samples else None} "
            f"target {[round(s.get('target', 0)) for s in self.samples[-6:]]}"
        )


def _publish(
    chromium: Any,
    gateway: RunningGateway,
    room: str,
    *,
    without_twcc: bool = False,
) -> _Watch:
    """Publish for WATCH_SECONDS after the connection, sampling getStats every 0.5 s."""
    room = f"{room}-{secrets.token_hex(3)}"  # a rerun's room is a new one
    gateway.create_room(room)
    token = gateway.token(room, "publisher")
    context = chromium.new_context()
    try:
        context.grant_permissions(["camera"], origin=gateway.base_url)
        page = context.new_page()
        # a document of the gateway's own origin (a page Playwright served would count as public
        # and Chromium's local network access checks would block its WebSocket to loopback)
        page.goto(gateway.base_url + "/readyz")
        page.evaluate(PUBLISH_JS, {"token": token, "room": room, "withoutTwcc": without_twcc})
        page.wait_for_function(
            "window.publisher.pc.connectionState === 'connected'", timeout=15_000
        )
        answer = str(page.evaluate("window.publisher.answer"))
        assert "transport-cc" in answer  # Chromium negotiated it in every run
        watch = _Watch(page)
        deadline = time.monotonic() + WATCH_SECONDS
        while time.monotonic() < deadline:
            page.wait_for_timeout(500)
            watch.sample()
        print(f"{room}: {watch.summary()}")  # the figures, for the run's log
        return watch
    finally:
        context.close()


def _sustained(watch: _Watch) -> tuple[float, float]:
    """The lowest estimate and the median sent bitrate of the last five seconds: Chromium trusts
    the REMB grant for a while even without feedback, so only what lasts tells them apart."""
    sent = sorted(watch.sent[-10:])
    return min(watch.available[-10:]), sent[len(sent) // 2]


def test_feedback_lets_chromium_raise_its_upload(chromium: Any, gateway: RunningGateway) -> None:
    available, sent = _sustained(_publish(chromium, gateway, "twcc-on"))
    assert available > AVAILABLE_GOAL and sent > SENT_GOAL, (available, sent)


def test_without_feedback_chromium_backs_off(chromium: Any, gateway: RunningGateway) -> None:
    """The control: the same page and figures with transport-cc negotiated by Chromium but not
    by the relay, so no feedback comes: the same assertions would fail."""
    available, sent = _sustained(_publish(chromium, gateway, "twcc-off", without_twcc=True))
    assert available < AVAILABLE_GOAL and sent < SENT_GOAL, (available, sent)


def test_remb_ceiling_holds_with_feedback(chromium: Any, capped_gateway: RunningGateway) -> None:
    """The relay tells the ceiling with its first feedback, so the sender never climbs past it."""
    watch = _publish(chromium, capped_gateway, "twcc-capped")
    assert watch.sent and max(watch.sent) < CEILING_SLACK, watch.summary()
    assert max(watch.available) <= CEILING * 1.1, watch.summary()
