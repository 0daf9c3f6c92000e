"""Dial-in over TCP and TLS (RFC 3261 18, RFC 5630): the open-room call of SIPp on each transport.

Debian's SIPp is built without OpenSSL (``-t l1`` refuses to start), so for TLS the test puts a
small TLS bridge in front of the gateway: SIPp speaks TCP to the bridge, the bridge speaks TLS
(certificate made here, verified against it) to the gateway's TLS port.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.gateway_process import RunningGateway, free_port, running_gateway
from tests.interop.sipp_tools import PCAPS, phones, run_sipp, wait_until

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not PCAPS.exists(), reason="Debian sip-tester (SIPp pcaps) not installed"),
]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test.rondpoint.local")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "sip.crt", directory / "sip.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningGateway, int, Path]]:
    directory = Path(tmp_path_factory.mktemp("gateway"))
    cert, key = _self_signed(directory)
    tls_port = free_port()
    extra = f'tls_port = {tls_port}\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    with running_gateway(directory, extra_config=extra) as running:
        yield running, tls_port, cert


class TlsBridge:
    """TCP on one side, TLS to the gateway on the other; remembers the TLS versions it used."""

    def __init__(self, tls_port: int, cafile: Path) -> None:
        self.tls_port = tls_port
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.versions: list[str] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1", self.tls_port, ssl=self.context, server_hostname="127.0.0.1"
        )
        tls = up_writer.get_extra_info("ssl_object")
        self.versions.append(tls.version() if tls is not None else "none")

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def bridge(
    tls_gateway: tuple[RunningGateway, int, Path],
) -> AsyncIterator[tuple[int, TlsBridge]]:
    _, tls_port, cert = tls_gateway
    relay = TlsBridge(tls_port, cert)
    server = await asyncio.start_server(relay._serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, relay
        server.close()


async def test_dial_in_over_tcp(tls_gateway: tuple[RunningGateway, int, Path]) -> None:
    gateway, _, _ = tls_gateway
    gateway.create_room("salle-tcp")
    call = asyncio.create_task(
        run_sipp(gateway.sip_port, "call.xml", "salle-tcp", "-d", "3000", transport="t1")
    )
    phone = await wait_until(lambda: phones(gateway, "salle-tcp"), 10, "no phone joined over TCP")
    assert isinstance(phone, list) and phone[0]["origin"] == "sip"
    run = await call
    run.assert_passed()
    assert "Via: SIP/2.0/TCP" in run.messages
    assert "transport=tcp" in run.messages.split("SIP/2.0 200 OK", 1)[1].split("\n\n")[0].lower()
    await wait_until(lambda: not phones(gateway, "salle-tcp"), 5, "BYE over TCP did not end it")


async def test_dial_in_over_tls(
    tls_gateway: tuple[RunningGateway, int, Path], bridge: tuple[int, TlsBridge]
) -> None:
    gateway, _, _ = tls_gateway
    port, relay = bridge
    gateway.create_room("salle-tls")
    call = asyncio.create_task(
        run_sipp(port, "call.xml", "salle-tls", "-d", "3000", transport="t1")
    )
    phone = await wait_until(lambda: phones(gateway, "salle-tls"), 10, "no phone joined over TLS")
    assert isinstance(phone, list) and phone[0]["origin"] == "sip"
    run = await call
    run.assert_passed()
    assert relay.versions and all(v in ("TLSv1.2", "TLSv1.3") for v in relay.versions)
    assert "transport=tls" in run.messages.split("SIP/2.0 200 OK", 1)[1].split("\n\n")[0].lower()
    await wait_until(lambda: not phones(gateway, "salle-tls"), 5, "BYE over TLS did not end it")


def test_tls_port_refuses_plain_tcp(tls_gateway: tuple[RunningGateway, int, Path]) -> None:
    """A cleartext SIP request on the TLS port gets no SIP answer."""
    _, tls_port, _ = tls_gateway
    with socket.create_connection(("127.0.0.1", tls_port), timeout=3) as sock:
        sock.sendall(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
        try:
            reply = sock.recv(100)
        except (TimeoutError, ConnectionError):
            reply = b""
    assert not reply.startswith(b"SIP/2.0")
