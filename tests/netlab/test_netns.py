"""NetLab's self-test: each knob does what it says (loss rate, bandwidth cap, blocked ports,
Chromium launcher), two NetLabs never collide, and nothing is left behind after exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway_process import free_port
from tests.netlab import probe
from tests.netlab.netns import NetLab, NetLabError, leftovers, namespaces, remove_stale

pytestmark = pytest.mark.interop
ROOT = Path(__file__).resolve().parents[2]
PACKETS = 2000


def _probe(lab: NetLab, *args: object) -> subprocess.Popen[bytes]:
    return lab.run(
        [sys.executable, "-m", "tests.netlab.probe", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )


def _ready(process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"ready"


def _echo_loss(lab: NetLab) -> float:
    """The fraction of PACKETS datagrams host -> namespace echo -> host that did not come back."""
    port = free_port()
    echo = _probe(lab, "udp-echo", lab.ns_ip, port, 30)
    _ready(echo)
    try:
        back = probe.udp_count(lab.ns_ip, port, PACKETS)
    finally:
        echo.kill()
        echo.wait()
    return 1 - back / PACKETS


def test_loss_down_up_and_both(netlab: NetLab) -> None:
    assert _echo_loss(netlab) < 0.01
    # 2000 draws at p=0.10: sd 0.0067, so +-0.03 is more than 4 sd
    netlab.loss(0.10, direction="down")
    assert 0.07 < _echo_loss(netlab) < 0.13
    netlab.loss(0.10, direction="up")  # now both ways: 1 - 0.9^2 = 0.19
    assert 0.15 < _echo_loss(netlab) < 0.23
    netlab.loss(0.0, direction="down")
    assert 0.07 < _echo_loss(netlab) < 0.13
    netlab.clear()
    assert _echo_loss(netlab) < 0.01


def _tcp_rate(lab: NetLab, direction: str, seconds: float = 3.0) -> float:
    """Bytes/s of a TCP transfer across the veth, ``down`` = host -> namespace."""
    port = free_port()
    if direction == "down":
        sink = _probe(lab, "tcp-sink", lab.ns_ip, port, seconds)
        _ready(sink)
        probe.tcp_source(lab.ns_ip, port, seconds + 1)
        out, _ = sink.communicate(timeout=20)
        return float(out.decode().split()[-1])
    sink = subprocess.Popen(
        [sys.executable, "-m", "tests.netlab.probe", "tcp-sink", lab.host_ip, str(port),
         str(seconds)],
        cwd=ROOT, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        _ready(sink)
        source = _probe(lab, "tcp-source", lab.host_ip, port, seconds + 1)
        out, _ = sink.communicate(timeout=20)
        source.wait(timeout=20)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    return float(out.decode().split()[-1])


@pytest.mark.parametrize("direction", ["down", "up"])
def test_cap_holds_a_tcp_transfer_under_the_rate(netlab: NetLab, direction: str) -> None:
    rate_kbit = 2000
    netlab.cap(rate_kbit, direction=direction)  # type: ignore[arg-type]
    measured_kbit = _tcp_rate(netlab, direction) * 8 / 1000
    # under the cap (plus the 32 kbit burst spread over the window), and the link still carries
    assert measured_kbit <= rate_kbit * 1.05 + 32, measured_kbit
    assert measured_kbit > rate_kbit * 0.3, measured_kbit
    netlab.uncap(direction)  # type: ignore[arg-type]
    assert _tcp_rate(netlab, direction, 1.0) * 8 / 1000 > rate_kbit * 3


def test_block_drops_only_the_blocked_port(netlab: NetLab) -> None:
    udp_port, other_port = free_port(), free_port()
    tcp_port = free_port()
    echoes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.netlab.probe", "udp-echo", netlab.host_ip, str(p), "30"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )  # fmt: skip
        for p in (udp_port, other_port)
    ]
    try:
        for echo in echoes:
            _ready(echo)
        with socket.create_server((netlab.host_ip, tcp_port)):

            def from_ns(*args: object) -> str:
                out, _ = _probe(netlab, *args).communicate(timeout=20)
                return out.decode().strip()

            assert from_ns("udp-count", netlab.host_ip, udp_port, 50) == "50"
            assert from_ns("tcp-connect", netlab.host_ip, tcp_port) == "ok"
            netlab.block("udp", udp_port)
            netlab.block("tcp", tcp_port)
            assert from_ns("udp-count", netlab.host_ip, udp_port, 50) == "0"
            assert from_ns("udp-count", netlab.host_ip, other_port, 50) == "50"
            assert from_ns("tcp-connect", netlab.host_ip, tcp_port) == "fail"
            netlab.block("udp")
            assert from_ns("udp-count", netlab.host_ip, other_port, 50) == "0"
            netlab.clear()
            assert from_ns("udp-count", netlab.host_ip, udp_port, 50) == "50"
            assert from_ns("tcp-connect", netlab.host_ip, tcp_port) == "ok"
    finally:
        for echo in echoes:
            echo.kill()
            echo.wait()


def test_two_netlabs_never_collide_and_leave_nothing() -> None:
    with NetLab() as a, NetLab() as b:
        assert a.name != b.name and a.host_ip != b.host_ip and a.host_if != b.host_if
        assert {a.name, b.name} <= set(namespaces())
        a.cap(500)
        a.loss(0.05, direction="both")
        b.block("udp")
        launcher = a.chromium_launcher()
        assert launcher.stat().st_mode & 0o111
        ns_seen = subprocess.run([str(launcher), "--version"], capture_output=True, text=True)
        assert ns_seen.returncode == 0, ns_seen.stderr
    assert not launcher.exists()
    assert leftovers() == []
    for tool in (["ip", "netns", "list"], ["tc", "qdisc", "show"]):
        out = subprocess.run(tool, capture_output=True, text=True).stdout
        assert a.name not in out and b.name not in out and a.host_if not in out


def test_cleanup_on_failure_and_interrupt() -> None:
    for error in (RuntimeError("test failed"), KeyboardInterrupt()):
        with pytest.raises(type(error)), NetLab() as lab:
            lab.cap(300)
            lab.loss(0.03)
            raise error
        assert leftovers() == []


def test_bad_arguments_are_refused(netlab: NetLab) -> None:
    with pytest.raises(ValueError):
        netlab.loss(1.5)
    with pytest.raises(ValueError):
        netlab.cap(0)
    with pytest.raises(ValueError):
        netlab.block("sctp")
    with pytest.raises(ValueError):
        netlab.cap(300, direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(NetLabError):
        netlab._ns(["false"])


def test_a_killed_runs_leftovers_are_removed_but_a_live_ones_are_not() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale_ns, stale_link, stale_chain = f"rpnl-{dead.pid}-0", "rpnl99999h", "RPNL99999UL"
    live_ns = f"rpnl-{os.getppid()}-999"  # pytest's parent: alive
    jump = ["PREROUTING", "-i", stale_link, "-j", stale_chain]
    try:
        for name in (stale_ns, live_ns):
            subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["iptables", "-t", "raw", "-N", stale_chain], check=True)
        subprocess.run(["iptables", "-t", "raw", "-A", *jump], check=True)
        removed = remove_stale()
        assert stale_ns in removed and stale_chain in removed
        assert stale_ns not in namespaces() and live_ns in namespaces()
        rules = subprocess.run(["iptables", "-t", "raw", "-S"], capture_output=True, text=True)
        assert stale_chain not in rules.stdout
    finally:
        for name in (stale_ns, live_ns):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        subprocess.run(["iptables", "-t", "raw", "-D", *jump], capture_output=True)
        subprocess.run(["iptables", "-t", "raw", "-X", stale_chain], capture_output=True)
