"""Rooms dial out: a host calls a phone (SIPp as the callee) through the admin API and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.resolver
import pytest

from tests.gateway_process import (
    RunningGateway,
    free_port,
    free_udp_block,
    running_gateway,
    sipp_media_port,
    stop_process,
)
from tests.interop.test_sip_dial_in import SCENARIOS

pytestmark = pytest.mark.interop


async def callee(*args: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        "sipp",
        *args,
        "-m",
        "1",
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-mp",
        str(sipp_media_port()),
        "-nostdin",
        "-timeout",
        "40s",
        "-timeout_error",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    await asyncio.sleep(0.5)
    return process, port


async def wait_for(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not (value := check()):
            await asyncio.sleep(0.2)
    assert value, what
    return value


async def test_the_room_calls_a_phone_that_answers_and_is_hung_up(gateway: RunningGateway) -> None:
    gateway.create_room("appel-sortant")
    phone, port = await callee("-sn", "uas")
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "gateway",
            "--config",
            str(gateway.config_path),
            "dial",
            "appel-sortant",
            f"sip:0612345642@127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert "calling sip:0612345642@127.0.0.1" in result.stdout

    def answered() -> list[dict]:
        room = gateway.admin("GET", "/api/v1/rooms/appel-sortant")[1]
        return [c for c in room["calls"] if c["status"] == "answered"]

    [call] = await wait_for(answered, 15, "the callee to answer")
    room = gateway.admin("GET", "/api/v1/rooms/appel-sortant")[1]
    [participant] = room["participants"]
    assert (participant["name"], participant["origin"]) == ("Phone ••• 42", "sip")
    assert participant["id"] == call["participant_id"]
    assert [t["kind"] for t in participant["tracks"]] == ["audio"]

    # The host deletes the room: the gateway hangs up (BYE) and SIPp's UAS ends cleanly.
    assert gateway.admin("DELETE", "/api/v1/rooms/appel-sortant")[0] == 204
    output, _ = await asyncio.wait_for(phone.communicate(), 20)
    assert phone.returncode == 0, output.decode(errors="replace")[-1500:]


async def test_a_busy_callee_shows_busy_then_leaves(gateway: RunningGateway) -> None:
    gateway.create_room("appel-occupe")
    phone, port = await callee("-sf", str(SCENARIOS / "callee_busy.xml"))
    status, call = gateway.admin(
        "POST", "/api/v1/rooms/appel-occupe/dial", {"to": f"sip:0612345699@127.0.0.1:{port}"}
    )
    assert status == 202 and call["status"] == "calling" and call["participant_id"]

    def named(suffix: str) -> bool:
        people = gateway.admin("GET", "/api/v1/rooms/appel-occupe")[1]["participants"]
        return any(p["name"].endswith(suffix) for p in people)

    await wait_for(lambda: named("· ringing") or named("· busy"), 10, "the call to ring")
    await wait_for(lambda: named("· busy"), 10, "the busy status")
    room = gateway.admin("GET", "/api/v1/rooms/appel-occupe")[1]
    assert [c["status"] for c in room["calls"]] == ["busy"]
    await wait_for(
        lambda: not gateway.admin("GET", "/api/v1/rooms/appel-occupe")[1]["participants"],
        10,
        "the busy callee to leave the room",
    )
    output, _ = await asyncio.wait_for(phone.communicate(), 20)
    assert phone.returncode == 0, output.decode(errors="replace")[-1500:]


def test_dialling_needs_a_usable_target(gateway: RunningGateway) -> None:
    gateway.create_room("appel-invalide")
    status, problem = gateway.admin(
        "POST", "/api/v1/rooms/appel-invalide/dial", {"to": "+33612345678"}
    )
    assert status == 400 and problem["field"] == "/to" and "trunk" in problem["detail"]
    status, problem = gateway.admin(
        "POST", "/api/v1/rooms/appel-invalide/dial", {"to": "mailto:x@y"}
    )
    assert status == 400
    assert gateway.admin("GET", "/api/v1/rooms/appel-invalide")[1]["participants"] == []


async def test_a_host_dials_from_the_room_and_sees_it_ring_then_answer(
    gateway: RunningGateway,
) -> None:
    from spec.conformance.orsclient import OrsClient, OrsError

    gateway.create_room("appel-hote")
    host = await OrsClient.connect(gateway.base_url, "appel-hote")
    await host.join(gateway.token("appel-hote", "hote", "Hôte", role="host"))
    member = await OrsClient.connect(gateway.base_url, "appel-hote")
    await member.join(gateway.token("appel-hote", "membre", "Membre"))
    assert (await host.next_event("participant_joined"))["participant"]["name"] == "Membre"
    phone, port = await callee("-sn", "uas")
    with pytest.raises(OrsError) as refused:
        await member.request({"type": "dial", "to": f"sip:0611111111@127.0.0.1:{port}"})
    assert refused.value.code == "forbidden"
    await host.request({"type": "dial", "to": f"sip:0612345642@127.0.0.1:{port}"})
    ringing = await host.next_event("participant_joined", timeout=10)
    assert ringing["participant"]["name"] == "Phone ••• 42 · ringing"
    assert ringing["participant"]["origin"] == "sip"
    answered = await host.next_event("participant_updated", timeout=15)
    assert answered["participant"]["name"] == "Phone ••• 42"
    await host.request({"type": "remove", "participant_id": answered["participant"]["id"]})
    output, _ = await asyncio.wait_for(phone.communicate(), 20)
    assert phone.returncode == 0, output.decode(errors="replace")[-1500:]
    await host.close()
    await member.close()


async def test_a_phone_is_transferred_out_of_the_room(gateway: RunningGateway) -> None:
    from tests.interop.test_sip_dial_in import sipp

    gateway.create_room("transfert")
    phone = await sipp(gateway, "transfer_out.xml", "transfert")

    def caller() -> list[dict]:
        return gateway.admin("GET", "/api/v1/rooms/transfert")[1]["participants"]

    [participant] = await wait_for(caller, 15, "the caller in the room")
    status, body = gateway.admin(
        "POST",
        f"/api/v1/rooms/transfert/participants/{participant['id']}/transfer",
        {"to": "sip:desk-42@transfer.example"},
    )
    assert status == 202, body
    output, _ = await asyncio.wait_for(phone.communicate(), 30)
    assert phone.returncode == 0, output.decode(errors="replace")[-1500:]
    await wait_for(lambda: not caller(), 10, "the transferred caller to leave the room")


@contextlib.contextmanager
def dns_server(*records: str) -> Iterator[int]:
    """dnsmasq on 127.0.0.1 and a free port, answering ``records`` (dnsmasq options) and
    NXDOMAIN for every other name under .test, asking nobody else; yields its port."""
    assert shutil.which("dnsmasq") or Path("/usr/sbin/dnsmasq").exists(), (
        "dnsmasq is not installed: run tests/setup-system.sh"
    )
    port = free_port(socket.SOCK_DGRAM)
    process = subprocess.Popen(
        [
            shutil.which("dnsmasq") or "/usr/sbin/dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            f"--port={port}",
            "--pid-file=",
            "--user=",
            "--local=/test/",
            "--log-facility=-",
            *records,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # ready once it answers a question
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                dns.resolver.resolve_at("127.0.0.1", "ready.test", "A", port=port, lifetime=0.5)
            except dns.resolver.NXDOMAIN:
                break
            except dns.exception.DNSException:
                assert time.monotonic() < deadline, "dnsmasq did not start"
        yield port
    finally:
        stop_process(process)


async def test_a_sip_domain_is_dialled_where_its_naptr_and_srv_records_say(
    tmp_path: Path,
) -> None:
    """RFC 3263 against a real DNS server: the NAPTR of voip.test names an SRV record found only
    through it, whose target and port are SIPp's; a domain with no records fails cleanly."""
    phone, sip_port = await callee("-sn", "uas")
    with (
        dns_server(
            "--naptr-record=voip.test,10,10,S,SIP+D2U,,_sip._udp.route.voip.test",
            f"--srv-host=_sip._udp.route.voip.test,pbx.voip.test,{sip_port},0,0",
            "--host-record=pbx.voip.test,127.0.0.1",
        ) as dns_port,
        running_gateway(tmp_path, extra_config=f'dns_servers = ["127.0.0.1:{dns_port}"]') as gw,
    ):
        gw.create_room("domaine")
        status, call = gw.admin("POST", "/api/v1/rooms/domaine/dial", {"to": "sip:alice@voip.test"})
        assert status == 202, call

        def calls() -> list[dict]:
            return gw.admin("GET", "/api/v1/rooms/domaine")[1]["calls"]

        await wait_for(lambda: [c for c in calls() if c["status"] == "answered"], 15, "an answer")
        assert gw.admin("DELETE", "/api/v1/rooms/domaine")[0] == 204
        output, _ = await asyncio.wait_for(phone.communicate(), 20)
        assert phone.returncode == 0, output.decode(errors="replace")[-1500:]  # INVITE, ACK, BYE

        gw.create_room("sans-dns")
        status, call = gw.admin(
            "POST", "/api/v1/rooms/sans-dns/dial", {"to": "sip:bob@absent.test"}
        )
        assert status == 202, call

        def room() -> dict:
            return gw.admin("GET", "/api/v1/rooms/sans-dns")[1]

        await wait_for(lambda: room()["calls"][0]["status"] == "failed", 15, "the failure")
        await wait_for(lambda: not room()["participants"], 15, "the callee to leave")
        text = gw.config_path.read_text()
        first = int(text.split("rtp_port_start = ")[1].split()[0])
        last = int(text.split("rtp_port_end = ")[1].split()[0])
        assert free_udp_block(last - first + 1, (first, last)) == first  # every RTP port free
        assert "Traceback" not in gw.log_text()


async def test_a_server_out_of_service_is_passed_over_for_the_next_srv_target(
    tmp_path: Path,
) -> None:
    """RFC 3263 4.3: the first SRV target answers 503, the call goes to the next one."""
    down, down_port = await callee("-sf", str(SCENARIOS / "callee_unavailable.xml"))
    phone, phone_port = await callee("-sn", "uas")
    with (
        dns_server(
            f"--srv-host=_sip._udp.voip.test,pbx1.voip.test,{down_port},0,0",
            f"--srv-host=_sip._udp.voip.test,pbx2.voip.test,{phone_port},10,0",
            "--host-record=pbx1.voip.test,127.0.0.1",
            "--host-record=pbx2.voip.test,127.0.0.1",
        ) as dns_port,
        running_gateway(tmp_path, extra_config=f'dns_servers = ["127.0.0.1:{dns_port}"]') as gw,
    ):
        gw.create_room("repli")
        status, call = gw.admin("POST", "/api/v1/rooms/repli/dial", {"to": "sip:alice@voip.test"})
        assert status == 202, call
        output, _ = await asyncio.wait_for(down.communicate(), 20)
        assert down.returncode == 0, output.decode(errors="replace")[-1500:]  # INVITE, 503, ACK

        def calls() -> list[dict]:
            return gw.admin("GET", "/api/v1/rooms/repli")[1]["calls"]

        await wait_for(lambda: [c for c in calls() if c["status"] == "answered"], 15, "an answer")
        assert gw.admin("DELETE", "/api/v1/rooms/repli")[0] == 204
        output, _ = await asyncio.wait_for(phone.communicate(), 20)
        assert phone.returncode == 0, output.decode(errors="replace")[-1500:]
