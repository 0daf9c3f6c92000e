"""Registering the gateway to a trunk provider (RFC 3261 section 10), as a digest client (RFC 7616).

Refreshes before the binding expires, answers 401/407 challenges with the trunk's credentials,
and backs off (30 s doubling to 10 min) when the registrar refuses or does not answer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING

from protocols.sip.digest import DigestError, answer_challenge, choose_challenge
from protocols.sip.message import CSeq, Headers, Request, Response
from protocols.sip.store import Trunk
from protocols.sip.transaction import new_tag

if TYPE_CHECKING:
    from protocols.sip.service import SipService
    from protocols.sip.transport import SipTransport

log = logging.getLogger(__name__)

REQUESTED_EXPIRES = 3600
BACKOFF_START = 30.0
BACKOFF_MAX = 600.0


def refresh_delay(expires: int) -> float:
    """When to refresh a binding granted for ``expires`` seconds: well before it lapses."""
    return max(1.0, min(expires * 0.8, expires - 30.0) if expires > 60 else expires * 0.8)


class Registration:
    def __init__(self, service: SipService, transport: SipTransport, trunk: Trunk) -> None:
        self.service = service
        self.transport = transport
        self.trunk = trunk
        host, _, port = trunk.address.partition(":")
        self.destination = (host, int(port or 5060))
        self.call_id = f"{secrets.token_hex(12)}@rondpoint"
        self.from_tag = new_tag()
        self.cseq = 0
        self.status = "pending"
        self.expires_in = 0
        self._backoff = BACKOFF_START
        self._answered_nonce = ""
        self._handle: asyncio.TimerHandle | None = None

    @property
    def aor(self) -> str:
        return f"sip:{self.trunk.username}@{self.trunk.address.partition(':')[0]}"

    def start(self) -> None:
        self.send()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.status = "stopped"

    def send(self, authorization: tuple[str, str] | None = None) -> None:
        self.cseq += 1
        headers = Headers()
        headers.add("Via", self.service.via(self.transport))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{self.aor}>;tag={self.from_tag}")
        headers.add("To", f"<{self.aor}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", str(CSeq(self.cseq, "REGISTER")))
        headers.add("Contact", self.service.contact(self.transport))
        headers.add("Expires", str(REQUESTED_EXPIRES))
        if authorization is not None:
            headers.add(*authorization)
        registrar = f"sip:{self.trunk.address.partition(':')[0]}"
        self.transport.send_request(Request("REGISTER", registrar, headers), self.destination)
        self._schedule(32.0 + 1.0, self._timed_out)  # timer F has run out by then

    def response(self, response: Response) -> None:
        status = response.status
        if status < 200:
            return
        if status in (401, 407):
            header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            try:
                challenge = choose_challenge(response.headers.get_all(header))
                nonce = (
                    challenge.split("nonce=", 1)[1].split(",")[0] if "nonce=" in challenge else ""
                )
                if (
                    nonce
                    and nonce == self._answered_nonce
                    and "stale=true" not in challenge.lower()
                ):
                    raise DigestError("the registrar refused our credentials")
                self._answered_nonce = nonce
                registrar = f"sip:{self.trunk.address.partition(':')[0]}"
                value = answer_challenge(
                    challenge, "REGISTER", registrar, self.trunk.username, self.trunk.password
                )
            except DigestError:
                self._failed(f"authentication refused ({status})")
                return
            self.send(("Authorization" if status == 401 else "Proxy-Authorization", value))
            return
        if 200 <= status < 300:
            self.expires_in = self._granted(response)
            self.status = "registered"
            self._backoff = BACKOFF_START
            self._answered_nonce = ""
            log.info(
                "registered to trunk", extra={"trunk": self.trunk.name, "expires": self.expires_in}
            )
            self._schedule(refresh_delay(self.expires_in), self.send)
            return
        self._failed(f"refused ({status})")

    def _granted(self, response: Response) -> int:
        for contact in response.headers.get_all("Contact"):
            for param in contact.split(";")[1:]:
                name, _, value = param.partition("=")
                if name.strip().lower() == "expires" and value.strip().isdigit():
                    return int(value)
        value = response.headers.get("Expires") or ""
        return int(value) if value.strip().isdigit() else REQUESTED_EXPIRES

    def _timed_out(self) -> None:
        self._failed("no answer")

    def _failed(self, why: str) -> None:
        self.status = f"failed: {why}"
        log.warning(
            "trunk registration failed", extra={"trunk": self.trunk.name, "retry_in": self._backoff}
        )
        self._schedule(self._backoff, self.send)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _schedule(self, delay: float, action: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = asyncio.get_running_loop().call_later(delay, action)  # type: ignore[arg-type]
