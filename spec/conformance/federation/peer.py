"""The partner gateway the federation conformance suite plays (spec/ors-v1.md section 14).

Written from the specification alone, with no code of the gateway under test:

- ``Identity``: the suite's name, its Ed25519 signing keys (RFC 8032, published as a JWKS,
  RFC 7517/8037) and its TLS certificate, kept in a folder so that an operator can trust them once;
- ``PartnerServer``: its HTTPS server on loopback, in a thread of its own: discovery
  (``/.well-known/ors``, RFC 8615), keys, and the federation endpoints the target calls, each
  request's signature checked as 14.3 says and every body checked against spec/schemas;
- ``Target``: signed requests to the gateway under test (14.3), and its discovery and keys.

Run it alone to show an operator what to allow-list before running the suite:
``python -m spec.conformance.federation.peer --home DIR --host 127.0.0.1 --port 9443``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import hashlib
import http.client
import ipaddress
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
TOKEN_TYPE = "ors-federation+jwt"
FEDERATION_PATH = "/ors/v1/federation"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def body_sha256(body: bytes) -> str:
    return b64url(hashlib.sha256(body).digest())


def random_id(prefix: str = "", length: int = 20) -> str:
    return prefix + secrets.token_urlsafe(length)[:length]


# schemas ------------------------------------------------------------------------------------------


def _registry() -> Registry:
    schemas = [json.loads(p.read_text()) for p in SCHEMAS.glob("*.json") if p.name != "index.json"]
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)


REGISTRY = _registry()


def schema_errors(schema_file: str, instance: Any) -> list[str]:
    """The JSON pointers at which ``instance`` breaks ``schema_file`` (empty when valid)."""
    schema = json.loads((SCHEMAS / schema_file).read_text())
    validator = Draft202012Validator(schema, registry=REGISTRY)
    return ["/" + "/".join(map(str, e.absolute_path)) for e in validator.iter_errors(instance)]


# identity -----------------------------------------------------------------------------------------


def key_id(public_raw: bytes) -> str:
    """A key's ``kid``: derived from the key, so that a kid never names another key (14.2)."""
    return "conf-" + b64url(hashlib.sha256(public_raw).digest()[:9])


def _pem_key(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    ca: bool,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


@dataclass
class SigningKey:
    kid: str
    private: Ed25519PrivateKey

    @property
    def x(self) -> str:
        raw = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return b64url(raw)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the raw public key, hex (14.2: what operators compare out of band)."""
        return hashlib.sha256(base64.urlsafe_b64decode(self.x + "=")).hexdigest()

    def jwk(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": self.x}


@dataclass
class Identity:
    """The suite's name, address, TLS files and signing keys; made once in ``home``, then reused."""

    name: str
    host: str
    port: int
    home: Path
    cert_path: Path
    key_path: Path
    ca_path: Path | None
    keys: list[SigningKey]
    """Published keys; the first signs."""

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def signing(self) -> SigningKey:
        return self.keys[0]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**k.jwk(), "use": "sig", "alg": "EdDSA"} for k in self.keys]}

    def new_key(self) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return SigningKey(key_id(raw), private)

    def keep_signing_key(self) -> None:
        """Keeps the key that signs now in ``home``: after a rotation the next run signs with
        it, never again with a key the target has retired."""
        (self.home / "signing-key.pem").write_bytes(_pem_key(self.signing.private))

    @classmethod
    def load(
        cls,
        home: Path,
        name: str,
        host: str,
        port: int,
        cert_path: Path | None = None,
        key_path: Path | None = None,
    ) -> Identity:
        """The identity kept in ``home``, made on first use: an Ed25519 key, and unless
        ``cert_path`` and ``key_path`` are given, a CA (``home/ca.pem``, for the target to trust)
        and a certificate for ``name`` and ``host`` issued by it."""
        home.mkdir(parents=True, exist_ok=True)
        signing_path = home / "signing-key.pem"
        if not signing_path.exists():
            signing_path.write_bytes(_pem_key(Ed25519PrivateKey.generate()))
            signing_path.chmod(0o600)
        private = serialization.load_pem_private_key(signing_path.read_bytes(), password=None)
        assert isinstance(private, Ed25519PrivateKey)
        public_raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        kid = key_id(public_raw)
        ca_path: Path | None = None
        if cert_path is None or key_path is None:
            ca_path, cert_path, key_path = cls._tls_files(home, name, host)
        return cls(name, host, port, home, cert_path, key_path, ca_path, [SigningKey(kid, private)])

    @staticmethod
    def _tls_files(home: Path, name: str, host: str) -> tuple[Path, Path, Path]:
        ca_path, cert_path, key_path = home / "ca.pem", home / "cert.pem", home / "key.pem"
        if ca_path.exists() and cert_path.exists() and key_path.exists():
            return ca_path, cert_path, key_path
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ORS conformance suite CA")])
        ca = _certificate("ORS conformance suite CA", ca_key.public_key(), ca_name, ca_key, True)
        server_key = ec.generate_private_key(ec.SECP256R1())
        san: list[x509.GeneralName] = [x509.DNSName(name)]
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            san.append(x509.DNSName(host))
        cert = _certificate(name, server_key.public_key(), ca_name, ca_key, False, san)
        ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(server_key))
        key_path.chmod(0o600)
        return ca_path, cert_path, key_path


# signing ------------------------------------------------------------------------------------------


def sign(
    identity: Identity,
    audience: str,
    method: str,
    path: str,
    body: bytes,
    key: SigningKey | None = None,
    header: dict[str, Any] | None = None,
    algorithm: str = "EdDSA",
    claims: dict[str, Any] | None = None,
) -> str:
    """A signed-request token (14.3); ``claims`` override or (as None) drop the standard ones."""
    key = key or identity.signing
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": identity.name,
        "aud": audience,
        "method": method,
        "path": path,
        "body_sha256": body_sha256(body),
        "iat": now,
        "exp": now + 60,
        "jti": random_id(length=24),
    }
    payload.update(claims or {})
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": key.kid, "typ": TOKEN_TYPE, **(header or {})}
    secret: Any = key.private if algorithm == "EdDSA" else b"x" * 32
    return jwt.encode(payload, secret, algorithm=algorithm, headers=headers)


# the target -------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()


@dataclass
class Target:
    """The gateway under test, reached over verified TLS."""

    url: str
    ssl_context: ssl.SSLContext
    discovery: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.discovery["server"])

    @property
    def federation_base(self) -> str:
        return str(self.discovery["api_base"]).rstrip("/") + "/federation"

    def federation_path(self, tail: str) -> str:
        """The request target of ``{federation base}{tail}`` as sent on the request line."""
        return urllib.parse.urlsplit(self.federation_base).path + tail

    def load_discovery(self) -> dict[str, Any]:
        response = self.get(self.url.rstrip("/") + "/.well-known/ors")
        assert response.status == 200, response
        self.discovery = response.json
        return self.discovery

    def get(self, url: str) -> Response:
        return self.request("GET", url)

    def request(
        self, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port or 443, context=self.ssl_context, timeout=15
        )
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(method, target, body=body or None, headers=headers or {})
            answer = connection.getresponse()
            return Response(
                answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
            )
        finally:
            connection.close()

    def call(
        self,
        identity: Identity,
        method: str,
        tail: str,
        body: Any = None,
        raw: bytes | None = None,
        token: str | None = None,
        authorization: str | None = None,
        key: SigningKey | None = None,
        header: dict[str, Any] | None = None,
        algorithm: str = "EdDSA",
        claims: dict[str, Any] | None = None,
    ) -> Response:
        """A federation request to ``{federation base}{tail}``, signed by ``identity`` unless
        ``token`` or ``authorization`` (the whole header, "" for none) is given; ``claims``
        override the token's (None drops one)."""
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        path = self.federation_path(tail)
        headers = {"Content-Type": "application/json"} if data else {}
        if authorization is None:
            token = token or sign(
                identity, self.name, method, path, data, key, header, algorithm, claims
            )
            authorization = f"Bearer {token}"
        if authorization:
            headers["Authorization"] = authorization
        origin = urllib.parse.urlsplit(self.federation_base)
        return self.request(method, f"{origin.scheme}://{origin.netloc}{path}", data, headers)


# the suite's server --------------------------------------------------------------------------


@dataclass
class Received:
    """One request the target sent to the suite, and what was wrong with it (None: nothing)."""

    method: str
    path: str
    body: Any
    fault: str | None
    status: int = 200
    """What the suite answered (a failure it made on purpose: 503)."""
    at: float = field(default_factory=time.monotonic)


class PartnerServer:
    """The suite's HTTPS server, on a thread with its own event loop."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.target: Target | None = None
        self.target_keys: dict[str, Ed25519PublicKey] = {}
        self.received: list[Received] = []
        self.links: dict[str, dict[str, Any]] = {}
        """link_id -> link body, for links the target asked for (POST /links to the suite)."""
        self.answer_links = True
        self.fail_transactions = 0
        """How many of the next transactions to answer 503, to see them retried (14.5)."""
        self._seen_jti: set[str] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    # lifecycle
    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(15)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/.well-known/ors", self._discovery)
        app.router.add_get("/ors/v1/keys", self._keys)
        app.router.add_post(FEDERATION_PATH + "/links", self._link)
        app.router.add_delete(FEDERATION_PATH + "/links/{link_id}", self._unlink)
        app.router.add_put(FEDERATION_PATH + "/transactions/{txn_id}", self._transaction)
        app.router.add_post(FEDERATION_PATH + "/links/{link_id}/media", self._media)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.identity.cert_path, self.identity.key_path)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.identity.host, self.identity.port, ssl_context=context
        )
        await site.start()
        if self.identity.port == 0:
            self.identity.port = int(self._runner.addresses[0][1])

    # what the target sent
    def requests(self, method: str = "", path_part: str = "") -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.received
                if (not method or r.method == method) and path_part in r.path
            ]

    def transactions(self) -> list[Received]:
        """The transactions the suite accepted (200)."""
        return [
            r for r in self.requests("PUT", "/transactions/") if r.fault is None and r.status == 200
        ]

    def events(self) -> list[dict[str, Any]]:
        return [e for t in self.transactions() for e in t.body.get("events", [])]

    # handlers
    async def _discovery(self, request: web.Request) -> web.Response:
        url = self.identity.url
        return web.json_response(
            {
                "server": self.identity.name,
                "versions": ["1"],
                "api_base": f"{url}/ors/v1",
                "keys_url": f"{url}/ors/v1/keys",
                "websocket_url_template": url.replace("https", "wss", 1)
                + "/ors/v1/rooms/{room}/ws",
                "capabilities": ["federation"],
            }
        )

    async def _keys(self, request: web.Request) -> web.Response:
        return web.json_response(self.identity.jwks())

    async def _checked(self, request: web.Request, schema_file: str | None) -> Received:
        """The request, recorded, once its signature (14.3) and body's schema are checked."""
        data = await request.read()
        fault = await asyncio.to_thread(self._signature_fault, request, data)
        body: Any = None
        if data:
            try:
                body = json.loads(data)
            except ValueError:
                fault = fault or "the body is not JSON"
        if fault is None and schema_file is not None:
            errors = schema_errors(schema_file, body)
            if errors:
                fault = f"{schema_file}: invalid at {errors[0]}"
        record = Received(request.method, request.raw_path, body, fault)
        with self._lock:
            self.received.append(record)
        if fault is not None:
            raise web.HTTPUnauthorized(
                text=json.dumps(
                    {
                        "type": "urn:ors:error:signature_invalid",
                        "title": "Invalid signature",
                        "status": 401,
                        "detail": f"the conformance suite refused this request: {fault}",
                        "code": "signature_invalid",
                    }
                ),
                content_type="application/problem+json",
            )
        return record

    def _signature_fault(self, request: web.Request, data: bytes) -> str | None:
        target = self.target
        if target is None:
            return "the suite does not know the target yet"
        authorization = request.headers.get("Authorization", "")
        if not authorization.startswith("Bearer "):
            return "no Authorization: Bearer header"
        token = authorization.removeprefix("Bearer ")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return "the token is not a JWS"
        if header.get("alg") != "EdDSA" or header.get("typ") != TOKEN_TYPE:
            return f"header alg/typ are {header.get('alg')!r}/{header.get('typ')!r}"
        kid = header.get("kid")
        if kid not in self.target_keys:
            self.fetch_target_keys()
        key = self.target_keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            return f"kid {kid!r} is not in the target's JWKS"
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                audience=self.identity.name,
                issuer=target.name,
                leeway=30,
                options={"require": ["iss", "aud", "iat", "exp", "jti"]},
            )
        except jwt.PyJWTError as error:
            return f"the token does not verify: {error}"
        expected = {
            "method": request.method,
            "path": request.raw_path,
            "body_sha256": body_sha256(data),
        }
        for claim, value in expected.items():
            if claims.get(claim) != value:
                return f"claim {claim} is {claims.get(claim)!r}, the request's is {value!r}"
        if not 0 < claims["exp"] - claims["iat"] <= 60:
            return "exp - iat is not within 60 s"
        if schema_errors("federation.request-claims.json", claims):
            return "the claims break federation.request-claims.json"
        with self._lock:
            if claims["jti"] in self._seen_jti:
                return "jti reused"
            self._seen_jti.add(claims["jti"])
        return None

    def fetch_target_keys(self) -> None:
        assert self.target is not None
        response = self.target.get(str(self.target.discovery["keys_url"]))
        keys: dict[str, Ed25519PublicKey] = {}
        if response.status == 200:
            for jwk in response.json.get("keys", []):
                raw = base64.urlsafe_b64decode(str(jwk.get("x", "")) + "==")
                keys[str(jwk.get("kid"))] = Ed25519PublicKey.from_public_bytes(raw)
        self.target_keys = keys

    async def _link(self, request: web.Request) -> web.Response:
        body = (await self._checked(request, "federation.link-request.json")).body
        if not self.answer_links:
            raise web.HTTPServiceUnavailable()
        link = {**body, "state": "connected"}
        self.links[body["link_id"]] = link
        return web.json_response(link)

    async def _unlink(self, request: web.Request) -> web.Response:
        await self._checked(request, None)
        self.links.pop(request.match_info["link_id"], None)
        return web.Response(status=204)

    async def _transaction(self, request: web.Request) -> web.Response:
        record = await self._checked(request, "federation.transaction.json")
        with self._lock:
            if self.fail_transactions > 0:
                self.fail_transactions -= 1
                record.status = 503
                raise web.HTTPServiceUnavailable(text="the conformance suite fails this on purpose")
        return web.json_response({})

    async def _media(self, request: web.Request) -> web.Response:
        await self._checked(request, "federation.media-offer.json")
        raise web.HTTPNotImplemented(text="the conformance suite does not answer media offers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, type=Path, help="folder of the suite's identity")
    parser.add_argument("--name", default="conformance.test", help="the suite's server name")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9443)
    args = parser.parse_args()
    identity = Identity.load(args.home, args.name, args.host, args.port)
    server = PartnerServer(identity)
    server.start()
    print(f"serving {identity.name} at {identity.url} (Ctrl-C to stop)")
    print(f"trust its CA: {identity.ca_path}")
    print(f"allow-list it: rondpoint peer add {identity.name} --url {identity.url}")
    for key in identity.keys:
        print(f"its key {key.kid}: sha-256 {key.fingerprint}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
