"""DTLS 1.2 over memory BIOs with use_srtp and SRTP keying material export (RFC 6347, RFC 5764)."""

from __future__ import annotations

import contextlib
import datetime
import hmac
import secrets
from dataclasses import dataclass
from enum import Enum

import pylibsrtp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

_MTU = 1200
_READ_SIZE = 4096


@dataclass(frozen=True)
class SrtpProfile:
    """One DTLS-SRTP protection profile (RFC 5764 section 4.1.2, RFC 7714 section 14.2)."""

    openssl_name: bytes
    libsrtp_profile: int
    key_length: int
    salt_length: int


SRTP_AES128_CM_SHA1_80 = SrtpProfile(
    b"SRTP_AES128_CM_SHA1_80", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14
)
SRTP_AEAD_AES_128_GCM = SrtpProfile(
    b"SRTP_AEAD_AES_128_GCM", pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12
)


def _available_profiles() -> list[SrtpProfile]:
    profiles = []
    for profile in (SRTP_AEAD_AES_128_GCM, SRTP_AES128_CM_SHA1_80):
        try:
            pylibsrtp.Policy(srtp_profile=profile.libsrtp_profile)
        except pylibsrtp.Error:  # libsrtp built without GCM
            continue
        profiles.append(profile)
    return profiles


SRTP_PROFILES = _available_profiles()


def format_fingerprint(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


class DtlsCertificate:
    """A self-signed ECDSA P-256 certificate, made once per relay, and the SSL context using it."""

    def __init__(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, secrets.token_hex(8))])
        now = datetime.datetime.now(tz=datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        self._key = key
        self._cert = cert
        self.fingerprint_sha256 = format_fingerprint(cert.fingerprint(hashes.SHA256()))
        self.context = self._make_context()

    @property
    def fingerprint(self) -> tuple[str, str]:
        """(hash function, value) as in an SDP a=fingerprint line."""
        return "sha-256", self.fingerprint_sha256

    def _make_context(self) -> SSL.Context:
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU)
        # Peers use self-signed certificates; identity is the SDP fingerprint, checked after the handshake.
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_args: True)
        ctx.use_certificate(self._cert)
        ctx.use_privatekey(self._key)
        ctx.set_cipher_list(b"HIGH:!CAMELLIA:!aNULL")
        ctx.set_tlsext_use_srtp(b":".join(p.openssl_name for p in SRTP_PROFILES))
        return ctx


class DtlsState(Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class SrtpKeys:
    """Keys for both directions as exported after the handshake (RFC 5764 section 4.2)."""

    profile: SrtpProfile
    local_key: bytes  # key || salt that this side uses to protect
    remote_key: bytes  # key || salt that the peer protects with


class DtlsSession:
    """Sans-I/O DTLS endpoint: feed datagrams in, collect datagrams to send, ask for the timer."""

    def __init__(self, certificate: DtlsCertificate, is_server: bool = True) -> None:
        self.is_server = is_server
        self.state = DtlsState.NEW
        self.remote_fingerprint: tuple[str, str] | None = None
        self.failure: str = ""
        self.keys: SrtpKeys | None = None
        self._peer_digests: dict[str, str] = {}
        self._handshake_done = False
        self._ssl = SSL.Connection(certificate.context, None)
        self._ssl.set_ciphertext_mtu(_MTU)
        if is_server:
            self._ssl.set_accept_state()
        else:
            self._ssl.set_connect_state()

    @property
    def connected(self) -> bool:
        return self.state is DtlsState.CONNECTED

    def set_remote_fingerprint(self, algorithm: str, value: str) -> None:
        """The fingerprint from the peer's SDP; a finished handshake is verified now."""
        self.remote_fingerprint = (algorithm.lower(), value.upper())
        if self._handshake_done and self.state is DtlsState.CONNECTING:
            self._verify_and_finish()

    def start(self) -> list[bytes]:
        """Begin the handshake (the client sends its first flight; the server just waits)."""
        if self.state is DtlsState.NEW:
            self.state = DtlsState.CONNECTING
            if not self.is_server:
                self._step()
        return self._drain()

    def receive(self, data: bytes) -> list[bytes]:
        """Feed one DTLS record datagram; returns datagrams to send."""
        if self.state in (DtlsState.FAILED, DtlsState.CLOSED):
            return []
        if self.state is DtlsState.NEW:
            self.state = DtlsState.CONNECTING
        self._ssl.bio_write(data)
        if not self._handshake_done:
            self._step()
        else:
            # Application data is not used (no SCTP); read to process alerts and retransmitted Finished.
            try:
                self._ssl.recv(_READ_SIZE)
            except SSL.ZeroReturnError:
                self.state = DtlsState.CLOSED
            except SSL.WantReadError:
                pass
            except SSL.Error:
                pass
        return self._drain()

    def get_timeout(self) -> float | None:
        """Seconds until handle_timeout() must be called, or None when no timer is running."""
        if self._handshake_done or self.state is not DtlsState.CONNECTING:
            return None
        timeout = self._ssl.DTLSv1_get_timeout()
        return None if timeout is None else float(timeout)

    def handle_timeout(self) -> list[bytes]:
        """Retransmit the last flight if OpenSSL's timer expired."""
        if self._handshake_done or self.state is not DtlsState.CONNECTING:
            return []
        self._ssl.DTLSv1_handle_timeout()
        return self._drain()

    def close(self) -> list[bytes]:
        """Send close_notify."""
        if self.state is DtlsState.CONNECTED:
            with contextlib.suppress(SSL.Error):
                self._ssl.shutdown()
        self.state = DtlsState.CLOSED
        return self._drain()

    def _step(self) -> None:
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            return
        except SSL.Error as exc:
            self.state = DtlsState.FAILED
            self.failure = f"DTLS handshake failed: {exc}"
            return
        self._handshake_done = True
        cert = self._ssl.get_peer_certificate()
        if cert is None:
            self.state = DtlsState.FAILED
            self.failure = "DTLS peer sent no certificate"
            return
        crypto_cert = cert.to_cryptography()
        self._peer_digests = {
            "sha-256": format_fingerprint(crypto_cert.fingerprint(hashes.SHA256())),
            "sha-384": format_fingerprint(crypto_cert.fingerprint(hashes.SHA384())),
            "sha-512": format_fingerprint(crypto_cert.fingerprint(hashes.SHA512())),
            "sha-1": format_fingerprint(crypto_cert.fingerprint(hashes.SHA1())),  # noqa: S303
        }
        if self.remote_fingerprint is not None:
            self._verify_and_finish()

    def _verify_and_finish(self) -> None:
        assert self.remote_fingerprint is not None
        algorithm, value = self.remote_fingerprint
        actual = self._peer_digests.get(algorithm, "")
        if not actual or not hmac.compare_digest(actual, value):
            self.state = DtlsState.FAILED
            self.failure = "DTLS peer certificate does not match the SDP fingerprint"
            return
        self.keys = self._export_keys()
        self.state = DtlsState.CONNECTED if self.keys is not None else DtlsState.FAILED

    def _export_keys(self) -> SrtpKeys | None:
        selected = self._ssl.get_selected_srtp_profile()
        profile = next((p for p in SRTP_PROFILES if p.openssl_name == selected), None)
        if profile is None:
            self.failure = "DTLS peer negotiated no usable SRTP profile"
            return None
        size = 2 * (profile.key_length + profile.salt_length)
        material = self._ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", size)
        k, s = profile.key_length, profile.salt_length
        client = material[0:k] + material[2 * k : 2 * k + s]
        server = material[k : 2 * k] + material[2 * k + s : 2 * k + 2 * s]
        if self.is_server:
            return SrtpKeys(profile, local_key=server, remote_key=client)
        return SrtpKeys(profile, local_key=client, remote_key=server)

    def _drain(self) -> list[bytes]:
        # The memory BIO loses datagram boundaries: split the records and pack them into datagrams.
        pending = bytearray()
        while True:
            try:
                data = self._ssl.bio_read(_READ_SIZE)
            except SSL.Error:
                break
            if not data:
                break
            pending += data
        out: list[bytes] = []
        datagram = bytearray()
        pos = 0
        while pos + 13 <= len(pending):
            end = pos + 13 + (pending[pos + 11] << 8 | pending[pos + 12])
            if datagram and len(datagram) + end - pos > _MTU:
                out.append(bytes(datagram))
                datagram = bytearray()
            datagram += pending[pos:end]
            pos = end
        if datagram:
            out.append(bytes(datagram))
        return out
