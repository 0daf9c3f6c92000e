"""ICE agents: the ICE-lite responder (RFC 8445 section 2.5) and a small controlling full agent
with aggressive nomination and consent freshness, for relay links between gateways (RFC 8445, RFC 7675)."""

from __future__ import annotations

import secrets
import string
from collections import OrderedDict
from dataclasses import dataclass

from . import stun

_ICE_CHARS = string.ascii_letters + string.digits + "+/"


def random_ice_string(length: int) -> str:
    """An ice-char string (RFC 8839 section 5.4): ufrag >= 4 chars, pwd >= 22 chars."""
    return "".join(secrets.choice(_ICE_CHARS) for _ in range(length))


def local_ufrag_of(message: stun.StunMessage) -> str | None:
    """The receiving agent's ufrag, the part of USERNAME before the colon."""
    username = message.username
    if not username or ":" not in username:
        return None
    return username.split(":", 1)[0]


@dataclass(frozen=True)
class CheckResult:
    """A valid connectivity check: the response to send and whether the peer nominated this pair."""

    response: bytes
    nominated: bool


class IceLiteAgent:
    """The lite side of one ICE session; it never sends checks, it only answers them."""

    def __init__(self, ufrag: str | None = None, pwd: str | None = None) -> None:
        self.local_ufrag = ufrag or random_ice_string(8)
        self.local_pwd = pwd or random_ice_string(24)
        self._key = self.local_pwd.encode("ascii")
        self.remote_ufrag: str | None = None
        self.remote_pwd: str | None = None

    def set_remote(self, ufrag: str, pwd: str) -> None:
        self.remote_ufrag = ufrag
        self.remote_pwd = pwd

    def handle_request(
        self, data: bytes, message: stun.StunMessage, addr: tuple[str, int]
    ) -> CheckResult | None:
        """Validate a Binding request addressed to us; None means drop it silently."""
        if message.message_type != stun.BINDING_REQUEST:
            return None
        username = message.username
        if not username or ":" not in username:
            return None
        local, remote = username.split(":", 1)
        if local != self.local_ufrag:
            return None
        if self.remote_ufrag is not None and remote != self.remote_ufrag:
            return None
        if not stun.verify_message_integrity(data, self._key):
            return None
        if not stun.verify_fingerprint(data):
            return None
        response = stun.binding_success(message.transaction_id, addr, self._key)
        return CheckResult(response, message.has(stun.ATTR_USE_CANDIDATE))


Address = tuple[str, int]

CHECK_INTERVAL = 0.05  # a connectivity check round every 50 ms until one succeeds
CHECK_TIMEOUT = 10.0  # no success after this long: the agent has failed
CONSENT_INTERVAL = 5.0  # RFC 7675 section 5.1: a consent check about every 5 s
CONSENT_TIMEOUT = 30.0  # RFC 7675 section 5.1: no response for 30 s, consent is lost
MAX_PENDING = 64  # transactions awaiting a response, oldest forgotten first


class IceControllingAgent(IceLiteAgent):
    """The controlling full agent of one session, sans-I/O (RFC 8445 section 8.1.1, RFC 7675).

    Every check carries USE-CANDIDATE (aggressive nomination) and ICE-CONTROLLING with the
    agent's tie-breaker; the first pair whose check succeeds is selected. After that a consent
    check goes to the selected address every CONSENT_INTERVAL; without a valid response for
    CONSENT_TIMEOUT the consent is lost. The owner sends what `due` returns, routes Binding
    responses to `handle_response`, and forgets the transactions `take_expired` hands back.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tie_breaker = secrets.randbits(64)
        self.remote_candidates: list[Address] = []
        self.selected: Address | None = None
        self.failed = False
        self.consent_lost = False
        self._started = -1.0
        self._next_send = 0.0
        self._last_response = 0.0
        self._pending: OrderedDict[bytes, Address] = OrderedDict()
        self._expired: list[bytes] = []

    def start(self, candidates: list[Address], now: float) -> None:
        """Begin checking these remote candidates (a new start forgets a previous selection)."""
        self.remote_candidates = list(candidates)
        self.selected = None
        self.failed = self.consent_lost = False
        self._started = self._next_send = now
        self._expired.extend(self._pending)
        self._pending.clear()

    def stop(self) -> None:
        """No more checks; every awaited transaction is handed to take_expired."""
        self._started = -1.0
        self._expired.extend(self._pending)
        self._pending.clear()

    @property
    def checking(self) -> bool:
        return self._started >= 0 and self.selected is None and not self.failed

    def next_delay(self, now: float) -> float | None:
        """Seconds until `due` has something to do, or None when the agent is idle for good."""
        if self._started < 0 or self.failed or self.consent_lost:
            return None
        return max(self._next_send - now, 0.0)

    def due(self, now: float) -> list[tuple[bytes, bytes, Address]]:
        """The (transaction id, request, address) to send now; marks failure and consent loss."""
        if self._started < 0 or self.failed or self.consent_lost or now < self._next_send:
            return []
        if self.remote_ufrag is None or self.remote_pwd is None:
            return []
        if self.selected is None:
            if now - self._started >= CHECK_TIMEOUT:
                self.failed = True
                return []
            targets = self.remote_candidates
            self._next_send = now + CHECK_INTERVAL
        else:
            if now - self._last_response >= CONSENT_TIMEOUT:
                self.consent_lost = True
                return []
            targets = [self.selected]
            self._next_send = now + CONSENT_INTERVAL
        out = []
        username = f"{self.remote_ufrag}:{self.local_ufrag}"
        for address in targets:
            transaction_id = secrets.token_bytes(12)
            request = stun.binding_request(
                username,
                self.remote_pwd,
                use_candidate=True,
                controlling=True,
                tie_breaker=self.tie_breaker,
                transaction_id=transaction_id,
            )
            self._pending[transaction_id] = address
            while len(self._pending) > MAX_PENDING:
                self._expired.append(self._pending.popitem(last=False)[0])
            out.append((transaction_id, request, address))
        return out

    def take_expired(self) -> list[bytes]:
        """Transaction ids no response is awaited for any more."""
        expired, self._expired = self._expired, []
        return expired

    def handle_response(
        self, data: bytes, message: stun.StunMessage, addr: Address, now: float
    ) -> bool:
        """A Binding response to one of our checks; True when it selects a pair (the first time).

        A response counts only from the address its request went to (RFC 8445 section 7.2.5.2.1,
        symmetric addresses), with the remote password's MESSAGE-INTEGRITY and a FINGERPRINT.
        """
        sent_to = self._pending.get(message.transaction_id)
        if sent_to is None or sent_to != addr or self.remote_pwd is None:
            return False
        if message.message_type != stun.BINDING_SUCCESS:
            del self._pending[message.transaction_id]
            self._expired.append(message.transaction_id)
            return False
        if not stun.verify_message_integrity(data, self.remote_pwd.encode("utf-8")):
            return False
        if not stun.verify_fingerprint(data):
            return False
        del self._pending[message.transaction_id]
        self._expired.append(message.transaction_id)
        if self.consent_lost or self.failed:
            return False
        self._last_response = now
        if self.selected is not None:
            return False
        self.selected = addr
        self._next_send = now + CONSENT_INTERVAL
        return True
