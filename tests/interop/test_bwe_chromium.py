"""Chromium subscribing to a three-layer simulcast on loopback: the relay's send-side estimate of
the subscriber (transport-cc feedback from Chromium) rises, the subscriber gets the top layer, and
its own max_height stays the ceiling (Router.set_max_height beneath the congestion allocation)."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_process import RunningGateway, running_gateway
from tests.interop.noise_camera import chromium_filming, noise_video

pytestmark = [pytest.mark.interop, pytest.mark.browser]

START_ESTIMATE = 1_000_000  # gateway/media/bwe.py START_BITRATE

# The publisher: the fake camera at 1280x720 in three simulcast layers (q/h/f).
PUBLISH_JS = """async ({token, room}) => {
  const { OrsClient } = await import("/static/ors-client.js");
  const client = new OrsClient({ room });
  await client.connect(token, "publisher");
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: 1280, height: 720, frameRate: 30 },
  });
  const pc = new RTCPeerConnection();
  const layers = [
    { rid: "q", scaleResolutionDownBy: 4, width: 320, height: 180 },
    { rid: "h", scaleResolutionDownBy: 2, width: 640, height: 360 },
    { rid: "f", scaleResolutionDownBy: 1, width: 1280, height: 720 },
  ];
  const tx = pc.addTransceiver(stream.getVideoTracks()[0], {
    direction: "sendonly",
    sendEncodings: layers.map(({ rid, scaleResolutionDownBy }) => ({ rid, scaleResolutionDownBy })),
  });
  await pc.setLocalDescription(await pc.createOffer());
  const reply = await client.request("offer", {
    pc: "publish", sdp: pc.localDescription.sdp,
    tracks: [{ mid: tx.mid, source: "camera",
               simulcast: layers.map(({ rid, width, height }) => ({ rid, width, height })) }],
  });
  await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
  window.publisher = { pc, client, trackId: reply.tracks[0].id };
}"""

# The subscriber: answers every subscribe offer on one peer connection.
SUBSCRIBE_JS = """async ({token, room}) => {
  const { OrsClient } = await import("/static/ors-client.js");
  const client = new OrsClient({ room });
  const pc = new RTCPeerConnection();
  window.subscriber = { pc, client, answered: 0 };
  let queue = Promise.resolve();
  client.on("offer", (m) => {
    if (m.pc !== "subscribe") return;
    queue = queue.then(async () => {
      await pc.setRemoteDescription({ type: "offer", sdp: m.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      await client.request("answer", { pc: "subscribe", sdp: pc.localDescription.sdp });
      window.subscriber.answered += 1;
    });
  });
  await client.connect(token, "viewer");
}"""

INBOUND_JS = """async () => {
  const out = { height: 0, frames: 0, bytes: 0 };
  (await window.subscriber.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      out.height = s.frameHeight || 0;
      out.frames = s.framesDecoded || 0;
      out.bytes = s.bytesReceived || 0;
    }
  });
  return out;
}"""


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    video = noise_video(Path(tmp_path_factory.mktemp("bwe-video")) / "noise.y4m")
    with chromium_filming(video) as browser:
        yield browser


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(
        Path(tmp_path_factory.mktemp("bwe-gateway")), extra_config='[log]\nlevel = "debug"\n'
    ) as running:
        yield running


def _estimates(gateway: RunningGateway) -> tuple[int, float]:
    """(subscribers with an estimate, the sum of their estimates) from /metrics."""
    with urllib.request.urlopen(gateway.base_url + "/metrics", timeout=5) as response:
        body = response.read().decode()
    count = re.search(r"^rondpoint_relay_subscriber_bandwidth_bits_count (\S+)$", body, re.M)
    total = re.search(r"^rondpoint_relay_subscriber_bandwidth_bits_sum (\S+)$", body, re.M)
    assert count is not None and total is not None, "no estimate histogram in /metrics"
    return int(float(count.group(1))), float(total.group(1))


def _page(context: Any, gateway: RunningGateway) -> Any:
    page = context.new_page()
    # a document of the gateway's own origin (a page Playwright served would count as public
    # and Chromium's local network access checks would block its WebSocket to loopback)
    page.goto(gateway.base_url + "/readyz")
    return page


def test_subscriber_estimate_rises_to_the_top_layer_and_max_height_caps_it(
    chromium: Any, gateway: RunningGateway
) -> None:
    room = "bwe-simulcast"
    gateway.create_room(room)
    publisher_context = chromium.new_context()
    subscriber_context = chromium.new_context()
    try:
        publisher_context.grant_permissions(["camera"], origin=gateway.base_url)
        publisher = _page(publisher_context, gateway)
        publisher.evaluate(PUBLISH_JS, {"token": gateway.token(room, "publisher"), "room": room})
        publisher.wait_for_function(
            "window.publisher.pc.connectionState === 'connected'", timeout=15_000
        )
        track_id = str(publisher.evaluate("window.publisher.trackId"))
        subscriber = _page(subscriber_context, gateway)
        subscriber.evaluate(SUBSCRIBE_JS, {"token": gateway.token(room, "viewer"), "room": room})
        subscriber.wait_for_function(
            "window.subscriber.pc.connectionState === 'connected'", timeout=20_000
        )

        heights: list[int] = []
        estimates: list[float] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            subscriber.wait_for_timeout(500)
            heights.append(int(subscriber.evaluate(INBOUND_JS)["height"]))
            count, total = _estimates(gateway)
            if count:
                estimates.append(total / count)
            if heights[-1] == 720 and estimates and max(estimates) > START_ESTIMATE:
                break
        report = f"heights {heights[-12:]}, estimates {[round(e) for e in estimates[-12:]]}"
        congestion = [line for line in gateway.log_text().splitlines() if "subscriber" in line]
        report += "\n" + "\n".join(congestion[-40:])  # the relay's probes and allocations
        print(f"{room}: {report}")  # the figures, for the run's log
        assert estimates, report
        assert max(estimates) > START_ESTIMATE, report
        assert heights[-1] == 720, report

        # the subscriber's own ceiling holds whatever the estimate allows
        subscriber.evaluate(
            "(t) => window.subscriber.client.request('subscription', {track_id: t, max_height: 360})",
            track_id,
        )
        capped: list[int] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            subscriber.wait_for_timeout(500)
            capped.append(int(subscriber.evaluate(INBOUND_JS)["height"]))
            if capped[-4:] == [360] * 4:
                break
        print(f"{room}: after max_height 360: heights {capped[-12:]}")
        assert capped[-4:] == [360] * 4, capped
    finally:
        subscriber_context.close()
        publisher_context.close()
