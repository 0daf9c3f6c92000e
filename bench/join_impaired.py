"""Join to first video frame over impaired links: our relay and livekit-server, median and p90.

In each SFU's room a publisher (headless Chromium on the host: the Rondpoint page, or livekit-client
on tests/netlab/pages/livekit.html, publishing 1280x720 with three simulcast layers) keeps sending;
a viewer in a NetLab network namespace (tests/netlab/netns.py: a veth pair, tbf caps, iptables
loss and blocks; root) joins again and again, under each network condition in turn. One figure is
the time from the join action (ours: the page's join form submitted, token request included;
LiveKit: `room.connect`) to the first decoded video frame (`framesDecoded` > 0 in getStats, polled
every 20 ms in the page). Each time the page is loaded on a clear link first (its download is not
the SFU's doing), then the condition is applied, then the viewer joins.

Conditions: a clear link; the downlink capped at 300 kbit/s with 3% loss (issue 13's weak
subscriber); 5% loss both ways; UDP blocked (ICE-TCP: our relay's `[media] tcp_port`,
livekit-server's `rtc.tcp_port`).

Loopback and the NetLab's 198.18.0.0/15 links only; every process and namespace started is removed;
each join waits at most --timeout seconds (a join that times out is counted as failed).

    sudo .venv/bin/python -m bench.join_impaired [--joins 7 --timeout 20 --only rondpoint,livekit]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.browser.conftest import CHROMIUM_ARGS
from tests.gateway_process import running_gateway
from tests.interop.livekit_fixtures import running_livekit
from tests.interop.livekit_sdk import visio_token
from tests.netlab.browsers import STATS_JS, host_and_namespace, serving_livekit_page
from tests.netlab.netns import NetLab, is_root

CONDITIONS: dict[str, Callable[[NetLab], None]] = {
    "clear": lambda lab: None,
    "300 kbit/s + 3% loss down": lambda lab: (
        lab.cap(300, direction="down"),
        lab.loss(0.03, direction="down"),
    ),
    "5% loss both ways": lambda lab: lab.loss(0.05, direction="both"),
    "UDP blocked (ICE-TCP)": lambda lab: lab.block("udp", direction="both"),
}

# In the page: run the join action, then poll getStats (window.netlab.sample, stats.js) until a
# video frame is decoded; milliseconds from the action, or null at the timeout.
MEASURE = """async ([action, arg, timeoutMs]) => {
  const t0 = performance.now();
  if (action === "rondpoint") {
    document.getElementById("prejoin-name").value = arg;
    document.getElementById("prejoin-form").requestSubmit();
  } else {
    window.lk.connect(arg.url, arg.token, false);
  }
  while (performance.now() - t0 < timeoutMs) {
    const sample = await window.netlab.sample();
    if (sample.inbound.some((s) => s.kind === "video" && (s.framesDecoded || 0) > 0)) {
      return performance.now() - t0;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return null;
}"""


def nearest_rank(values: list[float], share: float) -> float:
    """The SHARE percentile of VALUES by nearest rank (share 0.9: p90)."""
    if not values or not 0 < share <= 1:
        raise ValueError("a percentile needs values and a share in (0, 1]")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass
class Figures:
    """The joins of one SFU under one condition."""

    times_ms: list[float] = field(default_factory=list)
    failed: int = 0

    def row(self) -> str:
        """median, p90, max (ms) and failed joins, aligned under the table's header."""
        if not self.times_ms:
            return f"{'-':>8} {'-':>8} {'-':>8} {self.failed:>6}"
        median = statistics.median(self.times_ms)
        p90 = nearest_rank(self.times_ms, 0.9)
        return f"{median:>8.0f} {p90:>8.0f} {max(self.times_ms):>8.0f} {self.failed:>6}"


def _context(browser: Any, origin: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 720}, locale="en-US")
    context.grant_permissions(["camera", "microphone"], origin=origin)
    context.add_init_script(path=str(STATS_JS))
    return context, context.new_page()


@contextlib.contextmanager
def _page(browser: Any, origin: str) -> Iterator[Any]:
    context, page = _context(browser, origin)
    try:
        yield page
    finally:
        with contextlib.suppress(Exception):
            context.close()


class Sfu(Protocol):
    """How a page joins one SFU's room (the join action itself is in MEASURE)."""

    name: str
    origin: str

    def open_publisher(self, browser: Any) -> Any:
        """A browser context publishing 720p simulcast in the room."""

    def load_viewer(self, page: Any, index: int) -> None:
        """PAGE loaded, ready to join as viewer INDEX."""

    def join_arg(self, index: int) -> Any:
        """MEASURE's argument for viewer INDEX."""


class Rondpoint:
    name = "rondpoint"

    def __init__(self, base_url: str, room: str) -> None:
        self.origin = base_url
        self.room = room

    def open_publisher(self, browser: Any) -> Any:
        context, page = _context(browser, self.origin)
        page.goto(f"{self.origin}/r/{self.room}?autojoin=1&name=publisher&res=720")
        page.wait_for_function("() => window.rondpoint?.state === 'room'", timeout=20_000)
        return context

    def load_viewer(self, page: Any, index: int) -> None:
        page.goto(f"{self.origin}/r/{self.room}?name=viewer{index}&cam=0&mic=0")
        page.wait_for_function(
            "() => window.rondpoint?.state === 'prejoin'"
            " && !document.getElementById('prejoin-join').disabled"
            " && document.getElementById('prejoin-form').onsubmit !== null",
            timeout=20_000,
        )

    def join_arg(self, index: int) -> Any:
        return f"viewer{index}"


class LiveKit:
    name = "livekit"

    def __init__(self, page_url: str, livekit: Any, room: str) -> None:
        self.origin = page_url.rstrip("/")
        self.page_url = page_url
        self.livekit = livekit
        self.room = room

    def open_publisher(self, browser: Any) -> Any:
        context, page = _context(browser, self.origin)
        page.goto(self.page_url)
        page.wait_for_function("() => window.lk !== undefined", timeout=10_000)
        token = visio_token(self.livekit, self.room, "publisher", "publisher")
        status = page.evaluate(
            "([url, token]) => window.lk.connect(url, token, true)", [self.livekit.url, token]
        )
        if status != "connected":
            raise RuntimeError(f"livekit publisher: {page.evaluate('window.lk.state')}")
        return context

    def load_viewer(self, page: Any, index: int) -> None:
        page.goto(self.page_url)
        page.wait_for_function("() => window.lk !== undefined", timeout=10_000)

    def join_arg(self, index: int) -> Any:
        token = visio_token(self.livekit, self.room, f"viewer{index}", f"viewer{index}")
        return {"url": self.livekit.url, "token": token}


def measure(sfu: Sfu, lab: NetLab, browsers: Any, joins: int, timeout: float) -> dict[str, Figures]:
    """Every condition, JOINS times, for one SFU whose publisher is already sending."""
    results: dict[str, Figures] = {}
    index = 0
    for condition, apply in CONDITIONS.items():
        figures = results[condition] = Figures()
        for _ in range(joins):
            index += 1
            lab.clear()
            with _page(browsers.namespace, sfu.origin) as page:
                sfu.load_viewer(page, index)
                arg = sfu.join_arg(index)
                apply(lab)
                elapsed = page.evaluate(MEASURE, [sfu.name, arg, timeout * 1000])
                if elapsed is None:
                    figures.failed += 1
                else:
                    figures.times_ms.append(float(elapsed))
            lab.clear()
            time.sleep(0.5)  # the left viewer's session closes before the next joins
        print(f"  {sfu.name:<10} {condition:<28} {figures.row()}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=7, help="joins per SFU and condition")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds a join may take")
    parser.add_argument("--only", default="rondpoint,livekit", help="which SFUs, comma-separated")
    args = parser.parse_args()
    if not is_root():
        print("NetLab needs root (ip netns, tc, iptables)", file=sys.stderr)
        return 2
    if not 1 <= args.joins <= 50 or not 1 <= args.timeout <= 120:
        print("--joins 1..50, --timeout 1..120", file=sys.stderr)
        return 2
    only = set(args.only.split(","))
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="join-impaired-")))
        lab = stack.enter_context(NetLab())
        sfus: list[Sfu] = []
        (tmp / "gateway").mkdir()
        (tmp / "livekit").mkdir()
        if "rondpoint" in only:
            gateway = stack.enter_context(
                running_gateway(
                    tmp / "gateway",
                    extra_config='[rooms]\ndemo_room = ""\n'
                    "[limits]\nanonymous_requests_per_minute = 10000\n",
                    host=lab.host_ip,
                )
            )
            sfus.append(Rondpoint(gateway.base_url, "join-bench"))
        if "livekit" in only:
            livekit = stack.enter_context(running_livekit(tmp / "livekit", host=lab.host_ip))
            page_url = stack.enter_context(serving_livekit_page(lab))
            sfus.append(LiveKit(page_url, livekit, "join-bench"))
        origins = ",".join(sfu.origin for sfu in sfus)
        chromium_args = [*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={origins}"]
        browsers = stack.enter_context(host_and_namespace(lab, chromium_args))
        print(
            f"join to first video frame, ms ({args.joins} joins each; p90 by nearest rank)\n"
            f"  {'SFU':<10} {'condition':<28} {'median':>8} {'p90':>8} {'max':>8} {'failed':>6}"
        )
        for sfu in sfus:
            publisher = sfu.open_publisher(browsers.host)
            try:
                time.sleep(3)  # the publisher's layers are up before the first viewer joins
                measure(sfu, lab, browsers, args.joins, args.timeout)
            finally:
                with contextlib.suppress(Exception):
                    publisher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
