"""SIP load: concurrent G.711 calls with audio into mixing rooms, and the call-setup rate.

Part 1 (legs): for each step of the room count, a fresh gateway process (`tests/gateway_process.py`)
gets open rooms made through the admin API, and one SIPp process per room places 10 calls
(PCMA, `rtp_stream` looping a generated A-law "voice" for the whole call) that stay up for the
steady window plus ramp and margin. Over the window (all legs joined) it reads the gateway's CPU
(utime+stime from /proc/PID/stat) and its /metrics counters: RTP packets received from the phones,
sent to them, frames concealed and late, conference tick overruns; plus the kernel's drop counter
of the gateway's RTP sockets (/proc/net/udp). Loss is the worst of: packets received short of
50/s per leg, packets sent short of 50/s per leg, frames concealed. The step stops at the first
room count with >= 1% loss, or when the time budget would run out.

Part 2 (setup rate): one open room, SIPp places short calls (INVITE, 200, ACK, 1 s pause, BYE) at
increasing rates for about 10 s each; a rate passes when SIPp reports every call successful.

Loopback only; every SIPp and gateway process started here is stopped here.

    .venv/bin/python -m bench.sip_load [--rooms 1,2,4,6 --callers-per-room 10 --seconds 60]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import platform
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.measure import cpu_seconds, loadavg, machine
from gateway.media.audio.g711 import alaw_encode
from tests.gateway_process import RunningGateway, free_port, running_gateway

PACKETS_PER_SECOND = 50  # 20 ms G.711 frames
GATEWAY_RTP_PORTS = (42000, 43999)
SIPP_MEDIA_BASE = 46000  # SIPp process i takes its rtp_stream ports from 46000 + 200 i (-mp)
METRICS = (
    "rondpoint_sip_rtp_packets_received_total",
    "rondpoint_sip_rtp_packets_sent_total",
    "rondpoint_sip_rtp_frames_concealed_total",
    "rondpoint_sip_rtp_frames_late_total",
    "rondpoint_sip_conference_tick_overruns_total",
)

_INVITE = """\
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "Load [call_number]" <sip:01405[call_number]@[local_ip]:[local_port]>;tag=[pid]L[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:load@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=load 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio {media_port} RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "Load [call_number]" <sip:01405[call_number]@[local_ip]:[local_port]>;tag=[pid]L[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:load@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

_BYE = """\
  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "Load [call_number]" <sip:01405[call_number]@[local_ip]:[local_port]>;tag=[pid]L[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:load@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
"""


def scenario(name: str, media_port: str, middle: str) -> str:
    invite = _INVITE.replace("{media_port}", media_port)
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        f'<scenario name="{name}">\n{invite}{middle}{_BYE}</scenario>\n'
    )


def audio_call_scenario(alaw_path: Path) -> str:
    """A call that streams the A-law file in a loop for the call's duration (-d ms)."""
    middle = f'  <nop><action><exec rtp_stream="{alaw_path},-1,8"/></action></nop>\n  <pause/>\n'
    return scenario("sip load: audio call", "[auto_media_port]", middle)


def short_call_scenario(sink_port: int) -> str:
    """INVITE, 200, ACK, 1 s pause, BYE: media goes to a socket that never reads."""
    return scenario("sip load: short call", str(sink_port), '  <pause milliseconds="1000"/>\n')


def voice_alaw(seconds: float = 10.0) -> bytes:
    """A stand-in voice at speech level: two tones under a syllable-rate envelope, never silent."""
    t = np.arange(int(8000 * seconds)) / 8000
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t) ** 2
    wave = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 1230 * t)
    return alaw_encode((4000 * envelope * wave).astype(np.int16))


# measurement ------------------------------------------------------------------------------------


def metrics(gateway: RunningGateway) -> dict[str, float]:
    with urllib.request.urlopen(gateway.base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        values[name] = float(value)
    return values


def sip_joined(values: dict[str, float]) -> int:
    return int(values.get('rondpoint_participants{origin="sip",state="joined"}', 0))


def udp_drops(ports: tuple[int, int]) -> int:
    """Datagrams the kernel dropped on full receive buffers of sockets bound in `ports`."""
    total = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if ports[0] <= port <= ports[1]:
                total += int(fields[-1])
    return total


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every SIPp started inside is terminated (then killed) on the way out."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def add_load_trunk(gateway: RunningGateway) -> None:
    """SIPp calls come from a trunk (IP allow-list 127.0.0.1), as an operator's would: calls from
    an address that is no trunk's are limited per address (protocols/sip/call.py)."""
    status, body = gateway.admin(
        "POST", "/api/v1/sip/trunks", {"name": "load", "allowed": ["127.0.0.1/32"]}
    )
    if status != 201:
        raise RuntimeError(f"cannot make the load trunk: {status} {body}")


def sipp(
    gateway: RunningGateway, scenario_path: Path, service: str, *options: str, log: Path
) -> subprocess.Popen[bytes]:
    command = [
        "sipp",
        "-sf",
        str(scenario_path),
        "-s",
        service,
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port(socket.SOCK_DGRAM)),
        "-nostdin",
        "-recv_timeout",
        "10000",
        *options,
        f"127.0.0.1:{gateway.sip_port}",
    ]
    with log.open("wb") as stderr:
        return subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=scenario_path.parent
        )


# part 1: concurrent legs --------------------------------------------------------------------------
@dataclass
class LegsStep:
    rooms: int
    legs: int
    joined: int
    window: float
    cpu: float  # gateway CPU seconds over the window
    sipp_cpu: float
    received: int
    sent: int
    concealed: int
    late: int
    overruns: int
    socket_drops: int
    failed_calls: int
    load: str

    @property
    def expected(self) -> float:
        return self.legs * PACKETS_PER_SECOND * self.window

    @property
    def loss_in(self) -> float:
        return max(0.0, 1 - self.received / self.expected)

    @property
    def loss_out(self) -> float:
        return max(0.0, 1 - self.sent / self.expected)

    @property
    def concealed_ratio(self) -> float:
        return self.concealed / self.expected

    @property
    def loss(self) -> float:
        return max(self.loss_in, self.loss_out, self.concealed_ratio)

    @property
    def core_share(self) -> float:
        """The gateway's CPU as a share of one core over the window."""
        return self.cpu / self.window

    @property
    def cpu_per_leg(self) -> float:
        """% of one core per leg."""
        return 100 * self.core_share / self.legs

    @property
    def legs_per_core(self) -> float:
        return self.legs / self.core_share if self.core_share else float("inf")

    def line(self) -> str:
        return (
            f"rooms={self.rooms:3d} legs={self.legs:4d} joined={self.joined:4d} "
            f"gw_cpu={100 * self.core_share:5.1f}% cpu/leg={self.cpu_per_leg:.3f}% "
            f"legs/core={self.legs_per_core:6.0f} sipp_cpu={100 * self.sipp_cpu / self.window:5.1f}% "
            f"loss_in={100 * self.loss_in:.2f}% loss_out={100 * self.loss_out:.2f}% "
            f"concealed={100 * self.concealed_ratio:.2f}% late={self.late} "
            f"sock_drops={self.socket_drops} overruns={self.overruns} "
            f"failed_calls={self.failed_calls} load={self.load}"
        )


def legs_step(
    work: Path, alaw: Path, rooms: int, callers: int, window: float, ramp_rate: int
) -> LegsStep:
    scenario_path = work / "audio_call.xml"
    scenario_path.write_text(audio_call_scenario(alaw))
    legs = rooms * callers
    # rooms start one after another (ramp_rate calls/s in all), so call setup does not skew it
    ramp = legs / ramp_rate + 6.0  # dialling, the 0.3 s answer delay, the joined prompt
    hold_ms = int((ramp + window + 3.0) * 1000)
    load = loadavg()
    step_dir = work / f"rooms-{rooms}"
    step_dir.mkdir()
    with (
        running_gateway(step_dir, log_format="json", rtp_ports=GATEWAY_RTP_PORTS) as gateway,
        processes() as started,
    ):
        add_load_trunk(gateway)
        for room in range(rooms):
            gateway.create_room(f"load-{room}")
        for room in range(rooms):
            if room:
                time.sleep(callers / ramp_rate)
            base = SIPP_MEDIA_BASE + 200 * room
            started.append(
                sipp(
                    gateway,
                    scenario_path,
                    f"load-{room}",
                    "-m",
                    str(callers),
                    "-l",
                    str(callers),
                    "-r",
                    str(ramp_rate),
                    "-d",
                    str(hold_ms),
                    "-mp",
                    str(base),
                    "-timeout",
                    f"{int(hold_ms / 1000 + ramp + 30)}s",
                    log=step_dir / f"sipp-{room}.log",
                )
            )
        deadline = time.monotonic() + 20
        joined = 0
        while time.monotonic() < deadline:
            joined = sip_joined(metrics(gateway))
            if joined >= legs:
                break
            time.sleep(0.25)
        time.sleep(2.0)  # the joined prompt, jitter buffers settling
        sipps = [p.pid for p in started]
        before = metrics(gateway)
        drops_before = udp_drops(GATEWAY_RTP_PORTS)
        cpu_before = cpu_seconds(gateway.process.pid)
        sipp_before = sum(cpu_seconds(pid) for pid in sipps)
        start = time.monotonic()
        time.sleep(window)
        after = metrics(gateway)
        cpu_after = cpu_seconds(gateway.process.pid)
        sipp_after = sum(cpu_seconds(pid) for pid in sipps)
        elapsed = time.monotonic() - start
        drops = udp_drops(GATEWAY_RTP_PORTS) - drops_before
        joined = min(joined, sip_joined(after))
        failed = 0
        end = time.monotonic() + hold_ms / 1000 + 20
        for process in started:
            try:
                process.wait(timeout=max(1.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                failed += callers
                continue
            if process.returncode != 0:
                failed += 1  # at least one; SIPp's exit code does not say how many
                log = step_dir / f"sipp-{started.index(process)}.log"
                print(f"  SIPp exit {process.returncode}: {log.read_text(errors='replace')[-300:]}")
        delta = {name: int(after.get(name, 0) - before.get(name, 0)) for name in METRICS}
    return LegsStep(
        rooms=rooms,
        legs=legs,
        joined=joined,
        window=elapsed,
        cpu=cpu_after - cpu_before,
        sipp_cpu=sipp_after - sipp_before,
        received=delta[METRICS[0]],
        sent=delta[METRICS[1]],
        concealed=delta[METRICS[2]],
        late=delta[METRICS[3]],
        overruns=delta[METRICS[4]],
        socket_drops=drops,
        failed_calls=failed,
        load=load,
    )


# part 2: call-setup rate --------------------------------------------------------------------------
@dataclass
class SetupStep:
    rate: int
    calls: int
    successful: int
    failed: int
    exit_code: int
    cpu_share: float  # gateway CPU over the run, share of one core
    seconds: float
    load: str

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and self.failed == 0 and self.successful == self.calls

    def line(self) -> str:
        return (
            f"rate={self.rate:4d} cps calls={self.calls:5d} ok={self.successful:5d} "
            f"failed={self.failed:4d} sipp_exit={self.exit_code} "
            f"gw_cpu={100 * self.cpu_share:5.1f}% over {self.seconds:.1f} s load={self.load}"
        )


def sipp_stats(path: Path) -> tuple[int, int]:
    """(successful, failed) calls from the last line of a SIPp -trace_stat CSV."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    if not rows:
        return 0, 0
    last = rows[-1]
    return int(last.get("SuccessfulCall(C)", 0) or 0), int(last.get("FailedCall(C)", 0) or 0)


def setup_rates(work: Path, rates: list[int], seconds: float) -> list[SetupStep]:
    results: list[SetupStep] = []
    step_dir = work / "setup"
    step_dir.mkdir()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
        running_gateway(
            step_dir,
            extra_config="[rooms]\nmax_participants = 2000\n",  # 1 s calls pile up in one room
            log_format="json",
            rtp_ports=GATEWAY_RTP_PORTS,
        ) as gateway,
    ):
        sink.bind(("127.0.0.1", 0))
        scenario_path = step_dir / "short_call.xml"
        scenario_path.write_text(short_call_scenario(sink.getsockname()[1]))
        add_load_trunk(gateway)
        gateway.create_room("setup")
        for rate in rates:
            calls = int(rate * seconds)
            stats_path = step_dir / f"stats-{rate}.csv"
            load = loadavg()
            with processes() as started:
                cpu_before = cpu_seconds(gateway.process.pid)
                start = time.monotonic()
                process = sipp(
                    gateway,
                    scenario_path,
                    "setup",
                    "-m",
                    str(calls),
                    "-r",
                    str(rate),
                    "-l",
                    str(rate * 5),
                    "-trace_stat",
                    "-stf",
                    str(stats_path),
                    "-fd",
                    "1",
                    "-timeout",
                    f"{int(seconds + 40)}s",
                    log=step_dir / f"sipp-{rate}.log",
                )
                started.append(process)
                try:
                    process.wait(timeout=seconds + 45)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                elapsed = time.monotonic() - start
                cpu = cpu_seconds(gateway.process.pid) - cpu_before
            successful, failed = sipp_stats(stats_path) if stats_path.exists() else (0, calls)
            step = SetupStep(
                rate, calls, successful, failed, process.returncode, cpu / elapsed, elapsed, load
            )
            print("  " + step.line(), flush=True)
            if not step.passed:
                log = step_dir / f"sipp-{rate}.log"
                print(f"  SIPp: {log.read_text(errors='replace')[:600]}")
            results.append(step)
            time.sleep(3.0)  # the last calls' BYEs and the conference's legs are gone
            if not step.passed:
                break
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rooms", default="1,2,4,6,8", help="room counts to step through")
    parser.add_argument("--callers-per-room", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0, help="steady window per step")
    parser.add_argument("--ramp-rate", type=int, default=20, help="calls per second per room")
    parser.add_argument("--rates", default="20,50,100,150,200", help="call setups per second")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run")
    parser.add_argument("--skip-legs", action="store_true")
    parser.add_argument("--skip-setup", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    print(f"machine: {machine()}; Python {platform.python_version()}; load {loadavg()}")
    with tempfile.TemporaryDirectory(prefix="sip-load-") as tmp:
        work = Path(tmp)
        alaw = work / "voice.alaw"
        alaw.write_bytes(voice_alaw())
        steps: list[LegsStep] = []
        if not args.skip_legs:
            print(
                f"concurrent legs ({args.callers_per_room} callers a room, {args.seconds:.0f} s window):"
            )
            setup_reserve = 0 if args.skip_setup else 90
            for rooms in [int(r) for r in args.rooms.split(",")]:
                step_cost = args.seconds + args.callers_per_room / args.ramp_rate + 20
                if time.monotonic() - started + step_cost + setup_reserve > args.budget:
                    print(f"  (stopping before {rooms} rooms: time budget)")
                    break
                step = legs_step(
                    work, alaw, rooms, args.callers_per_room, args.seconds, args.ramp_rate
                )
                steps.append(step)
                print("  " + step.line(), flush=True)
                if step.loss >= 0.01 or step.joined < step.legs:
                    break
        setups: list[SetupStep] = []
        if not args.skip_setup:
            print(f"call-setup rate ({args.rate_seconds:.0f} s per rate, 1 s calls, one room):")
            setups = setup_rates(work, [int(r) for r in args.rates.split(",")], args.rate_seconds)
    print("summary:")
    good = [s for s in steps if s.loss < 0.01 and s.joined == s.legs and not s.failed_calls]
    if good:
        best = max(good, key=lambda s: s.legs)
        per_core = statistics.median(s.legs_per_core for s in good)
        print(
            f"  largest load at < 1% loss: {best.legs} concurrent legs ({best.rooms} rooms), "
            f"gateway {100 * best.core_share:.0f}% of a core, {best.cpu_per_leg:.3f}% of a core "
            f"per leg, {best.legs_per_core:.0f} legs per core (median over passing steps "
            f"{per_core:.0f}); loss {100 * best.loss:.2f}%"
        )
    elif steps:
        print("  no step stayed under 1% loss")
    passed = [s for s in setups if s.passed]
    if passed:
        best_rate = max(passed, key=lambda s: s.rate)
        print(
            f"  call setups: {best_rate.rate} per second with no failed call, gateway "
            f"{100 * best_rate.cpu_share:.0f}% of a core"
        )
    elif setups:
        print("  call setups: no rate passed")
    print(f"  total {time.monotonic() - started:.0f} s; load {loadavg()}")


if __name__ == "__main__":
    main()
