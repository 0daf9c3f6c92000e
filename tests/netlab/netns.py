"""An impaired network for one test peer: a Linux network namespace joined to the host by a veth pair.

The kernel here has no netem, so impairments are what tbf and iptables give: a bandwidth cap
(``tc qdisc ... tbf``, host side for the downlink into the namespace, namespace side for the uplink),
random loss (``iptables -m statistic --mode random``) and blocked protocols/ports (iptables DROP), in
chains of our own: the namespace's INPUT for the downlink, the host's raw PREROUTING matched on our
veth for the uplink (a drop in the namespace's OUTPUT would fail the sender's sendto() with EPERM,
which no real network does). Delay comes from ``udp_delay.py``.

Addresses come from 198.18.0.0/15 (RFC 2544, reserved for benchmarking, never routed): each NetLab
takes its own /30, so traffic only ever crosses this machine's own veth pairs. Everything a NetLab
adds (namespace, veth, qdiscs, chains) is removed on exit, on failure and on KeyboardInterrupt; the
namespaces of a killed run are removed by the next one (:func:`remove_stale`). Requires root.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Literal

PREFIX = "rpnl"
"""Namespace names are ``rpnl-<pid>-<n>`` and veth names ``rpnl<index>h`` / ``rpnl<index>n``."""
NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
SLOTS = NETWORK.num_addresses // 4
CHROMIUM = "/usr/bin/chromium"
COMMAND_TIMEOUT = 10.0

Direction = Literal["down", "up", "both"]
_counter = itertools.count()
_made_links: set[str] = set()
"""Host-side veth names this process created (what :func:`leftovers` checks)."""
_NAME = re.compile(rf"^{PREFIX}-(\d+)-(\d+)$")


class NetLabError(RuntimeError):
    """A command that builds or tears down the network failed."""


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if check and done.returncode != 0:
        raise NetLabError(f"{shlex.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done


def is_root() -> bool:
    return os.geteuid() == 0


def namespaces() -> list[str]:
    """Every network namespace name on this machine (``ip netns list``)."""
    out = _run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def our_namespaces() -> list[str]:
    return [name for name in namespaces() if _NAME.match(name)]


def our_links() -> list[str]:
    """Host-side veth names of any NetLab (ours or a stale one)."""
    out = _run(["ip", "-o", "link", "show"]).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    return [n for n in names if re.fullmatch(rf"{PREFIX}\d+[hn]", n)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Deletes the namespaces (and with them their veth pairs, qdiscs and chains) that a NetLab of
    a process no longer running left behind. A live process's namespaces are never touched, so
    two test runs side by side do not break each other. Returns the names removed."""
    removed = []
    for name in our_namespaces():
        match = _NAME.match(name)
        assert match is not None
        if not _alive(int(match.group(1))):
            _run(["ip", "netns", "delete", name], check=False)
            removed.append(name)
    links = set(our_links())
    for line in _run(["iptables", "-t", "raw", "-S"]).stdout.splitlines():
        match = re.fullmatch(rf"-A (PREROUTING .*-j ({PREFIX.upper()}(\d+)[DU][LB]))", line)
        if match and f"{PREFIX}{match.group(3)}h" not in links:
            _run(["iptables", "-t", "raw", "-D", *match.group(1).split()], check=False)
            _run(["iptables", "-t", "raw", "-F", match.group(2)], check=False)
            _run(["iptables", "-t", "raw", "-X", match.group(2)], check=False)
            removed.append(match.group(2))
    return removed


@atexit.register
def _remove_own() -> None:
    """At interpreter exit: the namespaces of this process a NetLab could not close."""
    with contextlib.suppress(Exception):
        for name in namespaces():
            if name.startswith(f"{PREFIX}-{os.getpid()}-"):
                _run(["ip", "netns", "delete", name], check=False)


def _addresses_in_use() -> set[str]:
    out = _run(["ip", "-o", "-4", "addr", "show"]).stdout
    return {m.group(1) for m in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+)/", out)}


class NetLab:
    """One namespace, one veth pair, one /30; a context manager (see the module docstring)."""

    def __init__(self) -> None:
        self.name = ""
        self.host_ip = ""
        self.ns_ip = ""
        self.host_if = ""
        self.ns_if = ""
        self._created = False
        self._launcher_dir: tempfile.TemporaryDirectory[str] | None = None
        self._processes: list[subprocess.Popen[bytes]] = []
        self._chains: set[tuple[str, str]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> NetLab:
        if not is_root():
            raise NetLabError("NetLab needs root (ip netns, tc, iptables)")
        remove_stale()
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _pick(self) -> None:
        pid = os.getpid()
        existing = set(namespaces())
        links = set(our_links())
        used = _addresses_in_use()
        for _ in range(64):
            n = next(_counter)
            name = f"{PREFIX}-{pid}-{n}"
            index = (pid * 64 + n) % SLOTS
            base = NETWORK.network_address + 4 * index
            host_ip, ns_ip = str(base + 1), str(base + 2)
            host_if, ns_if = f"{PREFIX}{index}h", f"{PREFIX}{index}n"
            if name in existing or host_if in links or ns_if in links:
                continue
            if host_ip in used or ns_ip in used:
                continue
            self.name, self.host_ip, self.ns_ip = name, host_ip, ns_ip
            self.host_if, self.ns_if = host_if, ns_if
            return
        raise NetLabError("no free NetLab slot")

    def _create(self) -> None:
        self._pick()
        _run(["ip", "netns", "add", self.name])
        self._created = True
        _made_links.add(self.host_if)
        _run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if])
        _run(["ip", "link", "set", self.ns_if, "netns", self.name])
        _run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if])
        _run(["ip", "link", "set", self.host_if, "up"])
        self._ns(["ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if])
        self._ns(["ip", "link", "set", self.ns_if, "up"])
        self._ns(["ip", "link", "set", "lo", "up"])
        # Segmentation offloads would hand tbf 64 KB "packets"; the cap must see wire-sized ones.
        for side in (["ethtool"], ["ip", "netns", "exec", self.name, "ethtool"]):
            iface = self.host_if if len(side) == 1 else self.ns_if
            with contextlib.suppress(FileNotFoundError, subprocess.TimeoutExpired):
                _run([*side, "-K", iface, "tso", "off", "gso", "off", "gro", "off"], check=False)

    def close(self) -> None:
        """Stops the processes started with :meth:`run`, then deletes the namespace, which takes
        the veth pair, its qdiscs and the namespace's iptables chains with it."""
        for process in self._processes:
            if process.poll() is None:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
        self._processes.clear()
        if self._created:
            with contextlib.suppress(NetLabError):
                self.clear()
            _run(["ip", "netns", "delete", self.name], check=False)
            self._created = False
        if self.host_if and self.host_if in our_links():
            _run(["ip", "link", "delete", self.host_if], check=False)
        if self._launcher_dir is not None:
            self._launcher_dir.cleanup()
            self._launcher_dir = None

    # -- processes --------------------------------------------------------------------------

    def _ns(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", self.name, *argv], check=check)

    def run(self, argv: list[str], **popen: object) -> subprocess.Popen[bytes]:
        """A process inside the namespace; killed on exit if still running."""
        process: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            ["ip", "netns", "exec", self.name, *argv], **popen
        )
        self._processes.append(process)
        return process

    def chromium_launcher(self, executable: str = CHROMIUM) -> Path:
        """An executable script running Chromium inside the namespace, for Playwright's
        ``executable_path`` (Playwright drives it over a pipe, which ``ip netns exec`` keeps)."""
        if self._launcher_dir is None:
            self._launcher_dir = tempfile.TemporaryDirectory(prefix=f"{self.name}-")
        path = Path(self._launcher_dir.name) / "chromium"
        path.write_text(
            "#!/bin/sh\n"
            f'exec ip netns exec {shlex.quote(self.name)} {shlex.quote(executable)} "$@"\n'
        )
        path.chmod(0o755)
        return path

    # -- impairments ------------------------------------------------------------------------

    @staticmethod
    def _directions(direction: Direction) -> tuple[str, ...]:
        if direction not in ("down", "up", "both"):
            raise ValueError(f"direction must be down, up or both, not {direction!r}")
        return ("down", "up") if direction == "both" else (direction,)

    def _tc(self, direction: str, args: list[str], *, check: bool = True) -> None:
        if direction == "down":  # host -> namespace: the host side's egress
            _run(["tc", "qdisc", *args[:1], "dev", self.host_if, *args[1:]], check=check)
        else:  # namespace -> host: the namespace side's egress
            self._ns(["tc", "qdisc", *args[:1], "dev", self.ns_if, *args[1:]], check=check)

    def cap(
        self,
        rate_kbit: int,
        *,
        direction: Direction = "down",
        burst_kbit: int = 32,
        latency_ms: int = 400,
    ) -> None:
        """A token-bucket cap of ``rate_kbit`` on the link (replaces any earlier cap)."""
        if rate_kbit <= 0 or burst_kbit <= 0 or latency_ms <= 0:
            raise ValueError("rate, burst and latency must be positive")
        for d in self._directions(direction):
            self._tc(
                d,
                ["replace", "root", "tbf", "rate", f"{rate_kbit}kbit", "burst",
                 f"{burst_kbit}kbit", "latency", f"{latency_ms}ms"],
            )  # fmt: skip

    def uncap(self, direction: Direction = "both") -> None:
        for d in self._directions(direction):
            self._tc(d, ["del", "root"], check=False)

    def _iptables(self, side: str, args: list[str], *, check: bool = True) -> int:
        """iptables in the namespace (``down``: its filter INPUT) or on the host (``up``: raw
        PREROUTING, matched on our veth), so a dropped uplink packet is lost on the wire instead
        of failing the sender's sendto() with EPERM, as a drop in the namespace's OUTPUT would."""
        if side == "down":
            return self._ns(["iptables", *args], check=check).returncode
        return _run(["iptables", "-t", "raw", *args], check=check).returncode

    def _chain_name(self, side: str, kind: str) -> str:
        return f"RPNL{self.host_if[len(PREFIX) : -1]}{side[0].upper()}{kind}"

    def _jump(self, side: str) -> list[str]:
        return ["INPUT"] if side == "down" else ["PREROUTING", "-i", self.host_if]

    def _chain(self, side: str, kind: str) -> str:
        """Our chain for ``side`` and ``kind`` (L = loss, B = block), created and jumped to once."""
        chain = self._chain_name(side, kind)
        if self._iptables(side, ["-n", "-L", chain], check=False) != 0:
            self._iptables(side, ["-N", chain])
            self._chains.add((side, kind))
        jump = self._jump(side)
        if self._iptables(side, ["-C", *jump, "-j", chain], check=False) != 0:
            self._iptables(side, ["-I", jump[0], "1", *jump[1:], "-j", chain])
        return chain

    def _drop_chain(self, side: str, kind: str) -> None:
        chain, jump = self._chain_name(side, kind), self._jump(side)
        while self._iptables(side, ["-D", *jump, "-j", chain], check=False) == 0:
            pass
        self._iptables(side, ["-F", chain], check=False)
        self._iptables(side, ["-X", chain], check=False)
        self._chains.discard((side, kind))

    def loss(
        self, probability: float, *, direction: Direction = "down", protocol: str = "udp"
    ) -> None:
        """Drops each ``protocol`` packet with ``probability`` (replaces earlier loss that way)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if protocol not in ("udp", "tcp", "icmp", "all"):
            raise ValueError(f"unsupported protocol {protocol!r}")
        for d in self._directions(direction):
            chain = self._chain(d, "L")
            self._iptables(d, ["-F", chain])
            if probability > 0:
                self._iptables(
                    d,
                    ["-A", chain, "-p", protocol, "-m", "statistic", "--mode", "random",
                     "--probability", f"{probability:.6f}", "-j", "DROP"],
                )  # fmt: skip

    def block(self, protocol: str, port: int | None = None, *, direction: Direction = "up") -> None:
        """Drops every ``protocol`` packet (to ``port`` going up, from ``port`` coming down)."""
        if protocol not in ("udp", "tcp"):
            raise ValueError(f"unsupported protocol {protocol!r}")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"bad port {port}")
        for d in self._directions(direction):
            chain = self._chain(d, "B")
            rule = ["-p", protocol]
            if port is not None:
                rule += ["--dport" if d == "up" else "--sport", str(port)]
            self._iptables(d, ["-A", chain, *rule, "-j", "DROP"])

    def clear(self) -> None:
        """Removes every cap, loss and block this NetLab added."""
        self.uncap("both")
        for side in ("down", "up"):
            for kind in ("L", "B"):
                self._drop_chain(side, kind)

    def __repr__(self) -> str:
        return f"NetLab({self.name}, host={self.host_ip}, ns={self.ns_ip})"


def leftovers() -> list[str]:
    """What NetLabs of this process left behind (empty when everything was cleaned up)."""
    mine = f"{PREFIX}-{os.getpid()}-"
    found = [f"netns {n}" for n in namespaces() if n.startswith(mine)]
    links = set(our_links()) & _made_links
    found += [f"link {n}" for n in sorted(links)]
    qdiscs = _run(["tc", "qdisc", "show"]).stdout
    for line in qdiscs.splitlines():
        match = re.search(r" dev (\S+)", line)
        if match and match.group(1) in _made_links:
            found.append(f"qdisc {line}")
    indexes = {link[len(PREFIX) : -1] for link in _made_links}
    for table in ("filter", "raw"):
        rules = _run(["iptables", "-t", table, "-S"]).stdout
        for line in rules.splitlines():
            match = re.search(rf"{PREFIX.upper()}(\d+)[DU][LB]", line)
            if match and match.group(1) in indexes:
                found.append(f"iptables -t {table} {line}")
    return found
