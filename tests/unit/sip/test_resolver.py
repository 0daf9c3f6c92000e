"""RFC 3263 server location (protocols/sip/resolver.py), with DNS records as input."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from protocols.sip.config import dns_server_address
from protocols.sip.resolver import Hop, Naptr, Srv, locate, naptr_services, srv_order
from protocols.sip.uri import SipUri

ALL = ("udp", "tcp", "tls")


@dataclass
class Records:
    """A zone in memory; ``asked`` lists the questions, in order."""

    naptrs: dict[str, list[Naptr]] = field(default_factory=dict)
    srvs: dict[str, list[Srv]] = field(default_factory=dict)
    hosts: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def naptr(self, name: str) -> list[Naptr]:
        self.asked.append(f"NAPTR {name}")
        return self.naptrs.get(name, [])

    async def srv(self, name: str) -> list[Srv]:
        self.asked.append(f"SRV {name}")
        return self.srvs.get(name, [])

    async def addresses(self, name: str) -> list[str]:
        self.asked.append(f"A {name}")
        return self.hosts.get(name, [])


def run_locate(uri: str, zone: Records, supported: tuple[str, ...] = ALL) -> list[Hop]:
    return asyncio.run(locate(SipUri.parse(uri), supported, zone))


def test_naptr_then_srv_then_address() -> None:
    zone = Records(
        naptrs={
            "voip.test": [
                Naptr(20, 10, "s", "SIP+D2U", "_sip._udp.voip.test."),
                Naptr(10, 10, "s", "SIP+D2T", "_sip._tcp.voip.test."),
            ]
        },
        srvs={"_sip._tcp.voip.test": [Srv(0, 0, 5070, "pbx.voip.test.")]},
        hosts={"pbx.voip.test": ["192.0.2.7"]},
    )
    hops = run_locate("sip:alice@voip.test", zone)
    assert hops == [Hop("tcp", "192.0.2.7", 5070)]
    assert zone.asked[:3] == ["NAPTR voip.test", "SRV _sip._tcp.voip.test", "A pbx.voip.test"]


def test_naptr_services_we_cannot_use_are_skipped() -> None:
    records = [
        Naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.voip.test."),
        Naptr(20, 10, "s", "SIP+D2S", "_sip._sctp.voip.test."),
        Naptr(30, 10, "s", "SIP+D2U", "_sip._udp.voip.test."),
        Naptr(40, 10, "a", "SIP+D2T", "pbx.voip.test."),
    ]
    assert naptr_services(records, ["udp", "tcp"]) == [("udp", "_sip._udp.voip.test")]


def test_without_naptr_each_transport_is_asked_by_srv() -> None:
    zone = Records(
        srvs={"_sip._udp.voip.test": [Srv(0, 0, 5062, "pbx.voip.test")]},
        hosts={"pbx.voip.test": ["192.0.2.7"]},
    )
    assert run_locate("sip:alice@voip.test", zone) == [Hop("udp", "192.0.2.7", 5062)]
    assert "SRV _sip._tcp.voip.test" in zone.asked


def test_without_srv_the_host_is_used_on_the_default_port() -> None:
    zone = Records(hosts={"voip.test": ["192.0.2.9"]})
    assert run_locate("sip:alice@voip.test", zone) == [Hop("udp", "192.0.2.9", 5060)]
    assert run_locate("sips:alice@voip.test", zone) == [Hop("tls", "192.0.2.9", 5061)]


def test_sips_uses_tls_only() -> None:
    zone = Records(
        naptrs={"voip.test": [Naptr(10, 10, "s", "SIP+D2U", "_sip._udp.voip.test.")]},
        srvs={
            "_sip._udp.voip.test": [Srv(0, 0, 5060, "pbx.voip.test")],
            "_sips._tcp.voip.test": [Srv(0, 0, 5061, "pbx.voip.test")],
        },
        hosts={"pbx.voip.test": ["192.0.2.7"]},
    )
    assert run_locate("sips:alice@voip.test", zone) == [Hop("tls", "192.0.2.7", 5061)]
    assert run_locate("sips:alice@voip.test", zone, ("udp", "tcp")) == []


def test_an_explicit_port_or_address_skips_naptr_and_srv() -> None:
    zone = Records(hosts={"voip.test": ["192.0.2.9"]})
    assert run_locate("sip:alice@voip.test:5080", zone) == [Hop("udp", "192.0.2.9", 5080)]
    assert zone.asked == ["A voip.test"]
    assert run_locate("sip:alice@192.0.2.1;transport=tcp", Records()) == [
        Hop("tcp", "192.0.2.1", 5060)
    ]
    assert run_locate("sip:alice@[2001:db8::1]:5070", Records()) == [
        Hop("udp", "2001:db8::1", 5070)
    ]


def test_a_transport_parameter_asks_only_that_transport() -> None:
    zone = Records(
        srvs={"_sip._tcp.voip.test": [Srv(0, 0, 5070, "pbx.voip.test")]},
        hosts={"pbx.voip.test": ["192.0.2.7"]},
    )
    assert run_locate("sip:alice@voip.test;transport=tcp", zone) == [Hop("tcp", "192.0.2.7", 5070)]
    assert zone.asked[0] == "SRV _sip._tcp.voip.test"


def test_a_domain_with_no_records_has_no_hop() -> None:
    assert run_locate("sip:alice@nowhere.test", Records()) == []


def test_srv_by_priority_then_weight() -> None:
    records = [
        Srv(20, 0, 5060, "backup.test"),
        Srv(10, 90, 5060, "big.test"),
        Srv(10, 10, 5060, "small.test"),
        Srv(5, 0, 5060, "."),  # "not offered here"
    ]
    rng = random.Random(7)
    firsts = Counter(srv_order(records, rng)[0].target for _ in range(1000))
    assert set(firsts) == {"big.test", "small.test"}
    assert firsts["big.test"] > 4 * firsts["small.test"]
    assert [r.target for r in srv_order(records, rng)][-1] == "backup.test"
    assert len(srv_order(records, rng)) == 3


def test_the_name_servers_are_configured_as_addresses(tmp_path: Path) -> None:
    path = tmp_path / "rondpoint.toml"
    path.write_text('[sip]\ndns_servers = ["127.0.0.1:5353", "192.0.2.53", "[::1]:53"]\n')
    assert load_config(path).sip.dns_servers == ["127.0.0.1:5353", "192.0.2.53", "[::1]:53"]
    assert [dns_server_address(s) for s in load_config(path).sip.dns_servers] == [
        ("127.0.0.1", 5353),
        ("192.0.2.53", 53),
        ("::1", 53),
    ]
    for wrong in ('["ns.example.org"]', '["127.0.0.1:0"]', '"127.0.0.1"', "[53]"):
        path.write_text(f"[sip]\ndns_servers = {wrong}\n")
        with pytest.raises(ConfigError, match="sip.dns_servers"):
            load_config(path)
