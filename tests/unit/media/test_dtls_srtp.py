"""DTLS 1.2 handshake with use_srtp and keying material export (RFC 5764), then SRTP round trips."""

import contextlib
import struct
import time

from OpenSSL import SSL

from gateway.media.dtls import DtlsCertificate, DtlsSession, DtlsState
from gateway.media.srtp import SrtpContext


def _pump(a: DtlsSession, b: DtlsSession, first: list[bytes]) -> None:
    to_b = first
    for _ in range(20):
        to_a: list[bytes] = []
        for datagram in to_b:
            to_a += b.receive(datagram)
        to_b = []
        for datagram in to_a:
            to_b += a.receive(datagram)
        if not to_a and not to_b:
            return


def _connected_pair() -> tuple[DtlsSession, DtlsSession]:
    server_cert, client_cert = DtlsCertificate(), DtlsCertificate()
    server = DtlsSession(server_cert, is_server=True)
    client = DtlsSession(client_cert, is_server=False)
    server.set_remote_fingerprint(*client_cert.fingerprint)
    client.set_remote_fingerprint(*server_cert.fingerprint)
    server.start()
    _pump(client, server, client.start())
    return server, client


def _rtp(seq: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq, 1000 + seq, ssrc) + b"payload-%d" % seq


def test_handshake_exports_matching_srtp_keys() -> None:
    server, client = _connected_pair()
    assert server.state is DtlsState.CONNECTED and client.state is DtlsState.CONNECTED
    assert server.keys is not None and client.keys is not None
    assert server.keys.local_key == client.keys.remote_key
    assert server.keys.remote_key == client.keys.local_key
    assert server.keys.local_key != server.keys.remote_key


def test_srtp_protects_in_both_directions_after_handshake() -> None:
    server, client = _connected_pair()
    assert server.keys and client.keys
    s, c = SrtpContext(server.keys), SrtpContext(client.keys)
    packet = _rtp(1)
    protected = c.protect_rtp(packet)
    assert protected != packet
    assert s.unprotect_rtp(protected) == packet
    rtcp = struct.pack("!BBHI", 0x81, 201, 1, 0x1234) + bytes(24)
    assert c.unprotect_rtcp(s.protect_rtcp(rtcp)) == rtcp


def test_fingerprint_mismatch_fails_the_session() -> None:
    server_cert, client_cert = DtlsCertificate(), DtlsCertificate()
    server = DtlsSession(server_cert, is_server=True)
    client = DtlsSession(client_cert, is_server=False)
    server.set_remote_fingerprint(*DtlsCertificate().fingerprint)  # not the client's
    client.set_remote_fingerprint(*server_cert.fingerprint)
    _pump(client, server, client.start())
    assert server.state is DtlsState.FAILED
    assert server.keys is None
    assert "fingerprint" in server.failure


def test_server_handshakes_with_a_plain_openssl_client_over_memory() -> None:
    server_cert = DtlsCertificate()
    client_cert = DtlsCertificate()
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.use_certificate(client_cert._cert)
    ctx.use_privatekey(client_cert._key)
    ctx.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
    ctx.set_verify(SSL.VERIFY_PEER, lambda *_: True)
    openssl_client = SSL.Connection(ctx, None)
    openssl_client.set_connect_state()
    server = DtlsSession(server_cert, is_server=True)
    server.set_remote_fingerprint(*client_cert.fingerprint)

    def client_step() -> bytes:
        with contextlib.suppress(SSL.WantReadError):
            openssl_client.do_handshake()
        out = b""
        while True:
            try:
                out += openssl_client.bio_read(65536)
            except SSL.WantReadError:
                return out

    flight = client_step()
    for _ in range(10):
        replies = server.receive(flight) if flight else []
        for reply in replies:
            openssl_client.bio_write(reply)
        flight = client_step()
        if server.connected and not flight:
            break
    assert server.state is DtlsState.CONNECTED
    assert openssl_client.get_selected_srtp_profile() == b"SRTP_AES128_CM_SHA1_80"
    material = openssl_client.export_keying_material(b"EXTRACTOR-dtls_srtp", 60)
    assert server.keys is not None
    assert server.keys.remote_key == material[0:16] + material[32:46]  # client write key + salt


def test_handshake_timer_retransmits_the_flight() -> None:
    client = DtlsSession(DtlsCertificate(), is_server=False)
    first = client.start()
    assert first
    timeout = client.get_timeout()
    assert timeout is not None and timeout > 0
    time.sleep(timeout + 0.05)
    again = client.handle_timeout()
    assert again and again[0][0] == first[0][0] == 22  # a handshake record again
