"""SIP attack tests: sipvicious svwar and svcrack against the
real gateway, known and unknown targets answered alike and as fast, and the per-address guard
(message rate limit, ban after repeated wrong PINs, logged in a line fail2ban matches).

Bounded load, 127.0.0.1 and 127.0.0.2 only; every scanner process is waited for or killed.
"""

from __future__ import annotations

import configparser
import re
import shutil
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from protocols.sip.message import Response
from tests.gateway_process import ROOT, RunningGateway, free_port, running_gateway
from tests.interop.sipclient import SipClient

pytestmark = pytest.mark.interop

FAILURES_BEFORE_BAN = 5
BAN_SECONDS = 10
PIN = "4242"
CONFIG = (
    f"failures_before_ban = {FAILURES_BEFORE_BAN}\n"
    f"ban_seconds = {BAN_SECONDS}\n"
    # one PIN try per call: each call gives exactly one failure, none arrives later
    "pin_attempts = 1\n"
)
KNOWN = ["salle-ouverte", "salle-pin", "salle-lobby", "demo"]
UNKNOWN = ["salle-fantome", "100", "1000", "alice", "admin", "rondpoint"]
DISPATCHED_NUMBER = "0140506070"
FAIL2BAN_FILTER = ROOT / "docs" / "fail2ban" / "rondpoint-sip.conf"
SVWAR = shutil.which("svwar")
SVCRACK = shutil.which("svcrack")

needs_sipvicious = pytest.mark.skipif(
    SVWAR is None or SVCRACK is None, reason="sipvicious is not installed: run 'make system-deps'"
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A gateway with an open room, a PIN room and a lobby room, and a number dispatched to one."""
    tmp = Path(tmp_path_factory.mktemp("sipvicious"))
    with running_gateway(tmp, extra_config=CONFIG, log_format="text") as running:
        running.create_room("salle-ouverte")
        running.create_room("salle-pin", pin=PIN)
        running.create_room("salle-lobby", lobby=True)
        status, _ = running.admin(
            "POST", "/api/v1/sip/dispatch", {"number": DISPATCHED_NUMBER, "room": "salle-pin"}
        )
        if status == 201:
            KNOWN.append(DISPATCHED_NUMBER)
        yield running


def server(gateway: RunningGateway) -> tuple[str, int]:
    return ("127.0.0.1", gateway.sip_port)


# answers with what differs between any two requests masked ------------------------------------
_MASKS = [
    (re.compile(r";branch=[^;,\s]+"), ";branch=*"),
    (re.compile(r";rport=\d+"), ";rport=*"),
    (re.compile(r";received=[^;,\s]+"), ";received=*"),
    (re.compile(r";tag=[^;,\s>]+"), ";tag=*"),
    (re.compile(r'(nonce|opaque|cnonce)="[^"]*"'), r'\1="*"'),
    (re.compile(r"127\.0\.0\.\d+:\d+"), "HOST:PORT"),
    (re.compile(r"127\.0\.0\.\d+"), "HOST"),
]


def normalised(response: Response, target: str) -> tuple[object, ...]:
    """The response with tags, branches, Call-ID, nonces, our address and the target masked."""
    headers: list[tuple[str, str]] = []
    for name, value in response.headers.items():
        if name.lower() == "call-id":
            value = "*"
        elif name.lower() == "content-length":
            value = "*" if response.body else value
        if name.lower() == "to":
            value = value.replace(f"sip:{target}@", "sip:TARGET@")
        for pattern, replacement in _MASKS:
            value = pattern.sub(replacement, value)
        headers.append((name, value))
    body = response.body.decode("utf-8", "replace")
    body = re.sub(r"^o=(\S+) \d+ \d+", r"o=\1 * *", body, flags=re.M)
    body = re.sub(r"^m=audio \d+", "m=audio *", body, flags=re.M)
    return (response.status, response.reason, tuple(headers), body)


# sipvicious -----------------------------------------------------------------------------------
@dataclass
class ScanResult:
    target: str
    output: str
    statuses: list[str]
    """First lines of the answers svwar printed (--debug)."""

    @property
    def found(self) -> list[str]:
        """Extensions svwar reports (its result table or its "exists" lines)."""
        rows = re.findall(r"^\|\s*(\S+)\s*\|", self.output, flags=re.M)
        exists = re.findall(r"extension '([^']*)' (?:exists|probably exists)", self.output)
        return [row for row in rows if row != "Extension"] + exists


def svwar(gateway: RunningGateway, method: str, target: str, tmp: Path) -> ScanResult:
    """One svwar run for one name (svwar stops at the first answer it cannot classify, so a run
    per name makes sure every name is actually asked)."""
    assert SVWAR is not None
    dictionary = tmp / f"svwar-{method}-{target}.txt"
    dictionary.write_text(target + "\n")
    command = [
        SVWAR,
        "--force",  # the gateway refuses REGISTER for everyone: scan anyway
        "-m",
        method,
        "-d",
        str(dictionary),
        "-b",
        "127.0.0.1",
        "-x",
        "127.0.0.1",
        "-P",
        str(free_port(socket.SOCK_DGRAM)),
        "-p",
        str(gateway.sip_port),
        "--maximumtime",
        "5",
        "--debug",
        "-v",
        "127.0.0.1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout + done.stderr
    statuses = re.findall(r"b'(SIP/2\.0 \d{3} [^\\']*)\\r\\n", output)
    return ScanResult(target, output, statuses)


@needs_sipvicious
@pytest.mark.parametrize("method", ["REGISTER", "INVITE", "OPTIONS"])
def test_svwar_finds_no_room_and_no_user(
    gateway: RunningGateway, method: str, tmp_path: Path
) -> None:
    targets = KNOWN + UNKNOWN
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda t: svwar(gateway, method, t, tmp_path), targets))
    for result in results:
        assert not result.found, f"svwar {method} found {result.found}:\n{result.output[-3000:]}"
        assert "found nothing" in result.output, result.output[-3000:]
        assert "SIP device found" in result.output, result.output[-3000:]
        # its random probe and the name were both answered, and alike
        assert len(result.statuses) >= 2, result.output[-3000:]
    finals = {
        result.target: sorted({s for s in result.statuses if not s[8:11].startswith("1")})
        for result in results
    }
    assert len({tuple(f) for f in finals.values()}) == 1, finals


@needs_sipvicious
@pytest.mark.parametrize("method", ["REGISTER", "INVITE"])
def test_svcrack_cracks_nothing(gateway: RunningGateway, method: str, tmp_path: Path) -> None:
    assert SVCRACK is not None
    passwords = tmp_path / "passwords.txt"
    passwords.write_text(f"0000\n1234\n{PIN}\nsalle-pin\npassword\nrondpoint\n")
    for user in ("salle-pin", "salle-fantome"):
        scanner = subprocess.Popen(
            [
                SVCRACK,
                "-u",
                user,
                "-d",
                str(passwords),
                "-m",
                method,
                "-b",
                "127.0.0.1",
                "-x",
                "127.0.0.1",
                "-P",
                str(free_port(socket.SOCK_DGRAM)),
                "-p",
                str(gateway.sip_port),
                "-t",
                "0.05",  # about 20 requests a second: bounded
                "--maximumtime",
                "3",
                "-v",
                "127.0.0.1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # svcrack keeps asking as long as it is answered without a challenge: stop it as
            # with ^C, which still prints its results
            output, _ = scanner.communicate(timeout=4)
        except subprocess.TimeoutExpired:
            scanner.send_signal(signal.SIGINT)
            try:
                output, _ = scanner.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                scanner.kill()
                output, _ = scanner.communicate()
        assert "The password for" not in output, output[-3000:]
        # the PIN as a token of its own: timestamps like 08:43:29.424231 contain its digits
        shown = re.search(rf"(?<!\d){PIN}(?!\d)", output.replace(str(passwords), ""))
        assert shown is None, output[-3000:]
        if method == "REGISTER":
            assert "found nothing" in output, output[-3000:]


def test_known_and_unknown_targets_get_the_same_answers_in_the_same_time(
    gateway: RunningGateway,
) -> None:
    with SipClient(server(gateway)) as client:
        # the same answers, for every known name and several unknown ones
        for method in ("REGISTER", "OPTIONS"):
            answers = {}
            for target in KNOWN + UNKNOWN:
                responses = client.transact(client.request(method, target))
                answers[target] = [normalised(r, target) for r in responses]
                time.sleep(0.05)
            reference = answers[UNKNOWN[0]]
            assert reference, f"no answer to {method}"
            for target, got in answers.items():
                assert got == reference, f"{method} {target}: {got} != {reference}"
        invites = {}
        for target in UNKNOWN + KNOWN:
            call = client.invite(target)
            final = client.wait_answer(call)
            assert final is not None and final.status == 200, (target, call.responses)
            invites[target] = [normalised(r, target) for r in call.responses]
            assert client.bye(call) is not None  # before any PIN is asked: no failure
            time.sleep(0.1)
        reference = invites[UNKNOWN[0]]
        for target, got in invites.items():
            assert got == reference, f"INVITE {target}: {got} != {reference}"

        # the same time: medians over 20 tries each, known and unknown interleaved
        timings: dict[tuple[str, str], list[float]] = {}
        for attempt in range(20):
            for target in ("salle-pin", "salle-fantome")[:: 1 if attempt % 2 else -1]:
                for method in ("REGISTER", "OPTIONS", "INVITE"):
                    timings.setdefault((method, target), []).append(
                        _first_answer_time(client, method, target)
                    )
                    time.sleep(0.1)  # well below the guard's message rate
        for method in ("REGISTER", "OPTIONS", "INVITE"):
            known = statistics.median(timings[(method, "salle-pin")])
            unknown = statistics.median(timings[(method, "salle-fantome")])
            print(
                f"{method}: median first answer known {known * 1e3:.2f} ms, unknown {unknown * 1e3:.2f} ms"
            )
            assert abs(known - unknown) < 0.020, (method, known, unknown)


def _first_answer_time(client: SipClient, method: str, target: str) -> float:
    """Seconds from the request to its first answer; an INVITE is then cancelled (no call)."""
    if method == "INVITE":
        started = time.perf_counter()
        call = client.invite(target)
        first = client.responses_to(call.invite, 2.0, until_final=False)
        elapsed = time.perf_counter() - started
        assert first and first[0].status == 180, (target, first)
        client.cancel(call)
        final = client.wait_answer(call, timeout=2.0)
        assert final is not None and final.status in (200, 487), (target, call.responses)
        if final.status == 200:  # the answer crossed the CANCEL (RFC 3261 9.1): hang up
            assert client.bye(call) is not None
        client.drain(0.0)
        return elapsed
    request = client.request(method, target)
    started = time.perf_counter()
    answers = client.transact(request)
    elapsed = time.perf_counter() - started
    assert answers, (method, target)
    return elapsed


# the guard ------------------------------------------------------------------------------------
def test_a_message_flood_is_rate_limited_but_not_banned(gateway: RunningGateway) -> None:
    with SipClient(server(gateway)) as client:
        time.sleep(2.5)  # a full bucket
        started = time.monotonic()
        requests = [client.request("OPTIONS", "salle-fantome") for _ in range(300)]
        for request in requests:
            client.send(request)
        sent_in = time.monotonic() - started
        answered = sum(1 for m in client.drain(2.0) if isinstance(m, Response))
        # Guard(messages_per_second=50): a burst of 100, then 50 a second
        assert 50 <= answered <= 100 + 50 * (sent_in + 0.5) + 10, (answered, sent_in)
        time.sleep(2.5)
        assert client.transact(client.request("OPTIONS", "salle-fantome")), "flood led to a ban"


def _wrong_pin_calls(sip_server: tuple[str, int], calls: int, local_host: str) -> None:
    """``calls`` parallel calls into the PIN room from one address, each typing a wrong PIN."""
    clients = [SipClient(sip_server, local_host) for _ in range(calls)]
    try:
        pending = [(client, client.invite("salle-pin")) for client in clients]
        for client, call in pending:
            final = client.wait_answer(call)
            assert final is not None and final.status == 200, call.responses
        for client, call in pending:
            assert all(r is not None and r.status == 200 for r in client.info_digits(call, "1#"))
    finally:
        for client in clients:
            client.close()


def _wait_for_log(gateway: RunningGateway, pattern: str, timeout: float) -> float:
    """monotonic() when ``pattern`` first shows in the gateway's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, gateway.log_text()):
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not logged: {gateway.log_text()[-3000:]}")


def test_wrong_pins_ban_the_address_for_the_configured_time(gateway: RunningGateway) -> None:
    sip = server(gateway)
    with SipClient(sip, "127.0.0.2") as other:
        before = {
            m: [normalised(r, "salle-pin") for r in other.transact(other.request(m, "salle-pin"))]
            for m in ("REGISTER", "OPTIONS")
        }
    # one more failure than allowed, all from 127.0.0.1
    _wrong_pin_calls(sip, FAILURES_BEFORE_BAN + 1, "127.0.0.1")
    banned_at = _wait_for_log(gateway, r"SIP address banned: 127\.0\.0\.1 for", timeout=20)
    log = gateway.log_text()
    assert log.count("SIP room PIN failed from 127.0.0.1") >= FAILURES_BEFORE_BAN + 1, log[-3000:]
    assert log.count(f"SIP address banned: 127.0.0.1 for {BAN_SECONDS} s") == 1, log[-3000:]

    with SipClient(sip, "127.0.0.1") as banned, SipClient(sip, "127.0.0.2") as other:
        # refused: nothing is answered to the banned address, not even OPTIONS or a new call
        assert banned.transact(banned.request("OPTIONS", "salle-pin"), timeout=1.0) == []
        call = banned.invite("salle-pin")
        assert banned.wait_answer(call, timeout=1.0) is None

        # another source is answered as before, and can still call in
        for method, expected in before.items():
            got = [
                normalised(r, "salle-pin")
                for r in other.transact(other.request(method, "salle-pin"))
            ]
            assert got == expected, (method, got, expected)
        call = other.invite("salle-pin")
        final = other.wait_answer(call)
        assert final is not None and final.status == 200, call.responses
        assert other.bye(call) is not None

        # the ban holds for the configured time...
        time.sleep(max(0.0, banned_at + BAN_SECONDS - 1.5 - time.monotonic()))
        assert banned.transact(banned.request("OPTIONS", "salle-pin"), timeout=0.5) == []
        # ...and ends after it
        time.sleep(max(0.0, banned_at + BAN_SECONDS + 0.5 - time.monotonic()))
        answers = banned.transact(banned.request("OPTIONS", "salle-pin"), timeout=2.0)
        assert [r.status for r in answers] == [200]


# fail2ban ---------------------------------------------------------------------------------------
_HOST = r"(?P<host>(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+)"
# the date formats fail2ban finds and cuts out of a line before it applies failregex
_DATES = re.compile(
    r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?Z?",
)


def fail2ban_regexes() -> list[re.Pattern[str]]:
    """The filter's failregex lines, <HOST> turned into an IP pattern as fail2ban does."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=None)
    parser.read(FAIL2BAN_FILTER)
    lines = [line.strip() for line in parser.get("Definition", "failregex").splitlines()]
    return [re.compile(line.replace("<HOST>", _HOST)) for line in lines if line]


def fail2ban_hosts(log: str) -> list[str]:
    """The addresses the filter finds in a log, one per matching line."""
    regexes = fail2ban_regexes()
    hosts = []
    for line in log.splitlines():
        line = _DATES.sub("", line, count=1)
        for regex in regexes:
            if found := regex.search(line):
                hosts.append(found.group("host"))
                break
    return hosts


def test_fail2ban_filter_matches_the_text_log(gateway: RunningGateway) -> None:
    log = gateway.log_text()
    assert "SIP address banned: 127.0.0.1" in log, "run after the ban test"
    hosts = fail2ban_hosts(log)
    failures = log.count("SIP room PIN failed from ")
    assert hosts.count("127.0.0.1") == failures + log.count("SIP address banned: 127.0.0.1")
    assert set(hosts) == {"127.0.0.1"}
    # nothing else in the log matches: room names, SIP users and other lines do not
    assert len(hosts) == sum(
        1 for line in log.splitlines() if "SIP address banned" in line or "failed from" in line
    )
    # a forged line inside another logger's message does not match
    forged = (
        "2026-01-01 00:00:00,000 INFO    gateway.http.admin: room created "
        "room=x WARNING protocols.sip.transport: SIP address banned: 10.9.9.9 for 5 s"
    )
    assert fail2ban_hosts(forged) == []


def test_fail2ban_filter_matches_the_json_log(tmp_path: Path) -> None:
    config = "failures_before_ban = 1\nban_seconds = 5\npin_attempts = 1\n"
    with running_gateway(tmp_path, extra_config=config, log_format="json") as json_gateway:
        json_gateway.create_room("salle-pin", pin=PIN)
        _wrong_pin_calls(("127.0.0.1", json_gateway.sip_port), 2, "127.0.0.1")
        _wait_for_log(json_gateway, r'"msg": "SIP address banned: 127\.0\.0\.1 for', timeout=20)
        log = json_gateway.log_text()
    hosts = fail2ban_hosts(log)
    assert hosts.count("127.0.0.1") == 3, (hosts, log[-3000:])  # two failures and the ban
    assert set(hosts) == {"127.0.0.1"}
    forged = (
        '{"ts": "2026-01-01T00:00:00.000Z", "level": "info", "logger": "gateway.http.admin", '
        '"msg": "room created", "room": "\\", \\"msg\\": \\"SIP address banned: 10.9.9.9 for 5 s"}'
    )
    assert fail2ban_hosts(forged) == []
