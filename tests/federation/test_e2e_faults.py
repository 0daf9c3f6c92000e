"""Faults between two partner gateways, fr and de, linked in one room with someone on each side.

A crash (``kill -9`` of de, then a restart) and a cut network (an iptables rule dropping every
packet between 127.0.0.11 and 127.0.0.12): the link says so (``retrying``), de's people leave fr
after the grace, and everything comes back by itself, with nobody listed twice and the tones heard
again. Heartbeats and the grace are short here (``FEDERATION_CONFIG``) to keep the test short.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.federation.harness import CLIENT_ADDRESS, PartnerGateway, Partners, Person, wait_until

pytestmark = [pytest.mark.interop, pytest.mark.timeout(150)]

GATEWAYS = ("fr", "de")
HEARTBEAT_SECONDS = 2
GRACE_SECONDS = 5
FEDERATION_CONFIG = f"heartbeat_seconds = {HEARTBEAT_SECONDS}\ngrace_seconds = {GRACE_SECONDS}\n"
ANNA_HZ = 440.0
DIRK_HZ = 550.0
CHAIN = "RONDPOINT-FED-TEST"


@pytest.fixture(scope="module")
def room(partners: Partners) -> str:
    fr, de = partners["fr"], partners["de"]
    name = f"faults-{secrets.token_hex(3)}"
    fr.create_room(name)
    de.create_room(name)
    partners.peer_add(fr, de)
    partners.peer_add(de, fr)
    partners.link_connected(fr, name, de, name)
    return name


async def wait_names(gateway: PartnerGateway, room: str, names: list[str], timeout: float) -> None:
    await asyncio.to_thread(
        wait_until,
        lambda: gateway.names(room) == sorted(names),
        timeout,
        f"{gateway.name} to list exactly {sorted(names)}",
        last=lambda: gateway.participants(room),
    )


async def wait_state(
    partners: Partners, a: str, room: str, b: str, state: str, timeout: float
) -> None:
    await asyncio.to_thread(
        partners.wait_link_state, partners[a], room, partners[b], room, state, timeout
    )


async def meet(
    fr: PartnerGateway, de: PartnerGateway, room: str, anna: Person, dirk: Person
) -> None:
    """Anna (on fr) and Dirk (on de) are listed once on both gateways and hear each other."""
    await wait_names(fr, room, ["Anna", "Dirk"], 20)
    await wait_names(de, room, ["Anna", "Dirk"], 20)
    await anna.wait_hearing(ids(fr, room)["Dirk"], DIRK_HZ)
    await dirk.wait_hearing(ids(de, room)["Anna"], ANNA_HZ)


def ids(gateway: PartnerGateway, room: str) -> dict[str, str]:
    return {p["name"]: p["id"] for p in gateway.participants(room)}


async def test_a_crashed_partner_comes_back_without_duplicates_and_media_flows_again(
    partners: Partners, room: str, loopback_ice: None
) -> None:
    fr, de = partners["fr"], partners["de"]
    anna = await Person.join(fr, room, "Anna", ANNA_HZ)
    dirk = await Person.join(de, room, "Dirk", DIRK_HZ)
    try:
        await wait_names(fr, room, ["Anna", "Dirk"], 20)
        await anna.wait_hearing(ids(fr, room)["Dirk"], DIRK_HZ)

        de.kill9()
        await dirk.leave()  # his gateway is gone
        await asyncio.to_thread(de.restart)
        await wait_state(partners, "fr", room, "de", "connected", 60)
        await wait_state(partners, "de", room, "fr", "connected", 30)
        # The Dirk of before the crash is gone from fr: the restarted de has nobody yet.
        await wait_names(fr, room, ["Anna"], 30)
        await wait_names(de, room, ["Anna"], 30)

        dirk = await Person.join(de, room, "Dirk", DIRK_HZ)
        await meet(fr, de, room, anna, dirk)
    finally:
        await anna.leave()
        await dirk.leave()
    await wait_names(fr, room, [], 20)
    await wait_names(de, room, [], 20)


def iptables(*args: str) -> None:
    subprocess.run(["iptables", "-w", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def network_cut(a: PartnerGateway, b: PartnerGateway) -> Iterator[None]:
    """Every packet between ``a`` and ``b`` dropped: their media (bound to their addresses) and
    their HTTPS requests to each other (from whatever source address, except the tests' own
    ``CLIENT_ADDRESS``). The rules go, with their chain, however the block ends."""
    remove_chain()  # one a killed run left behind
    iptables("-N", CHAIN)
    try:
        iptables("-I", "OUTPUT", "-j", CHAIN)
        for x, y in ((a, b), (b, a)):
            iptables("-A", CHAIN, "-s", x.host, "-d", y.host, "-j", "DROP")
            iptables(
                "-A", CHAIN, "-p", "tcp", "-d", y.host, "--dport", str(y.port),
                "!", "-s", CLIENT_ADDRESS, "-j", "DROP",
            )  # fmt: skip
        yield
    finally:
        remove_chain()


def remove_chain() -> None:
    for rule in (("-D", "OUTPUT", "-j", CHAIN), ("-F", CHAIN), ("-X", CHAIN)):
        with contextlib.suppress(subprocess.CalledProcessError):
            iptables(*rule)


async def test_a_cut_network_shows_retrying_drops_the_partners_people_and_heals(
    partners: Partners, room: str, loopback_ice: None
) -> None:
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        pytest.skip("cutting the network between two loopback addresses needs root and iptables")
    fr, de = partners["fr"], partners["de"]
    await wait_state(partners, "fr", room, "de", "connected", 30)
    anna = await Person.join(fr, room, "Anna", ANNA_HZ)
    dirk = await Person.join(de, room, "Dirk", DIRK_HZ)
    try:
        await wait_names(fr, room, ["Anna", "Dirk"], 20)
        await wait_names(de, room, ["Anna", "Dirk"], 20)
        await anna.wait_hearing(ids(fr, room)["Dirk"], DIRK_HZ)

        with network_cut(fr, de):
            # three missed heartbeats, then the grace
            await wait_state(partners, "fr", room, "de", "retrying", 6 * HEARTBEAT_SECONDS + 10)
            await wait_state(partners, "de", room, "fr", "retrying", 6 * HEARTBEAT_SECONDS + 10)
            await wait_names(fr, room, ["Anna"], GRACE_SECONDS + 15)
            await wait_names(de, room, ["Dirk"], GRACE_SECONDS + 15)
            assert fr.link_status(room, f"ors:{room}@{de.name}")["state"] == "retrying"

        await wait_state(partners, "fr", room, "de", "connected", 45)
        await wait_state(partners, "de", room, "fr", "connected", 30)
        await meet(fr, de, room, anna, dirk)
    finally:
        await anna.leave()
        await dirk.leave()
