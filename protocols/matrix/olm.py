"""Olm for a ghost's device: end-to-end encrypted to-device messages (Matrix spec, "End-to-End
Encryption", m.olm.v1.curve25519-aes-sha2), with vodozemac doing the cryptography.

One `OlmDevice` per (ghost user, device): its Olm account and sessions, pickled (encrypted with a
32-byte pickle key) into one text the store keeps (`matrix_devices`). Through the application
service acting as the ghost's device (MSC3202 device masquerading, `?user_id=&device_id=`), it:

- uploads its signed device keys, signed one-time keys and a fallback key (`/keys/upload`);
- looks up other devices' keys (`/keys/query`, self-signatures checked) and claims their
  one-time keys (`/keys/claim`, signatures checked) to open Olm sessions;
- encrypts a to-device event for a device as `m.room.encrypted` content, the plaintext carrying
  `sender`, `sender_device`, `recipient`, `recipient_keys`, `keys` (and MSC4147
  `sender_device_keys`) as the spec requires, and decrypts incoming ones (pre-key messages open
  a session; normal ones try the sessions with that sender key), checking those same fields.

Anything unknown or malformed raises `OlmError`, whose text is safe to log (no key material).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Protocol

import vodozemac

from protocols.matrix.client import MatrixError

log = logging.getLogger(__name__)

OLM_ALGORITHM = "m.olm.v1.curve25519-aes-sha2"
MEGOLM_ALGORITHM = "m.megolm.v1.aes-sha2"
SIGNED_CURVE25519 = "signed_curve25519"
PICKLE_VERSION = 1
SESSIONS_PER_DEVICE = 4  # newest first; older ones are forgotten
MAX_CIPHERTEXT = 64 * 1024


class OlmError(Exception):
    """An Olm message or key could not be used; the text never holds key material."""


class MatrixRequests(Protocol):
    """What an OlmDevice needs of the client (protocols.matrix.client.MatrixClient.request)."""

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        as_user: str | None = None,
        device_id: str | None = None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]: ...


class DevicePickles(Protocol):
    """Where device pickles are kept (protocols.matrix.store.MatrixStore, `matrix_devices`)."""

    def device_pickle(self, user_id: str, device_id: str) -> str | None: ...

    def put_device_pickle(self, user_id: str, device_id: str, pickle: str) -> None: ...


def pickle_key(secret: str) -> bytes:
    """The 32-byte key device pickles are encrypted with, from a secret of the configuration
    (the application service token): the store alone does not give the Olm keys away."""
    return hashlib.sha256(b"rondpoint matrix olm pickle\x00" + secret.encode()).digest()


def canonical_json(value: Any) -> bytes:
    """Matrix canonical JSON (sorted keys, no spaces, UTF-8) of a signed object, without its
    `signatures` and `unsigned` members."""
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in ("signatures", "unsigned")}
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def verify_signature(value: dict[str, Any], user_id: str, key_id: str, ed25519: str) -> bool:
    """True when `value` carries a valid signature of `user_id`'s `key_id` by key `ed25519`."""
    try:
        signature = value["signatures"][user_id][key_id]
        vodozemac.Ed25519PublicKey.from_base64(ed25519).verify_signature(
            canonical_json(value), vodozemac.Ed25519Signature.from_base64(signature)
        )
    except (KeyError, TypeError, ValueError):
        return False
    return True


def _unpadded(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unbase64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as error:
        raise OlmError("ciphertext is not base64") from error


@dataclass(frozen=True)
class PeerDevice:
    """Another device's identity keys, from a checked `/keys/query` answer."""

    user_id: str
    device_id: str
    curve25519: str
    ed25519: str


@dataclass(frozen=True)
class DecryptedEvent:
    """A to-device event after Olm decryption; `sender` and `sender_key` are authenticated by
    the Olm session, `sender_device` and `sender_ed25519` are as the sender claims them."""

    sender: str
    sender_key: str
    sender_device: str | None
    sender_ed25519: str
    type: str
    content: dict[str, Any]


def parse_device_keys(user_id: str, device_id: str, keys: Any) -> PeerDevice | None:
    """The device of a `/keys/query` entry when it names itself right, supports Olm and is
    signed by its own ed25519 key; None otherwise."""
    if not isinstance(keys, dict):
        return None
    if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        return None
    if OLM_ALGORITHM not in (keys.get("algorithms") or []):
        return None
    identity = keys.get("keys")
    if not isinstance(identity, dict):
        return None
    curve = identity.get(f"curve25519:{device_id}")
    ed = identity.get(f"ed25519:{device_id}")
    if not isinstance(curve, str) or not isinstance(ed, str):
        return None
    if not verify_signature(keys, user_id, f"ed25519:{device_id}", ed):
        return None
    return PeerDevice(user_id, device_id, curve, ed)


async def ensure_device(client: MatrixRequests, user_id: str, device_id: str) -> None:
    """Make sure the homeserver knows `user_id`'s device `device_id` (masquerading needs it):
    when missing, an application-service login (`m.login.application_service`) creates it."""
    path = f"/_matrix/client/v3/devices/{urllib.parse.quote(device_id, safe='')}"
    try:
        await client.request("GET", path, as_user=user_id)
        return
    except MatrixError as error:
        if error.status != 404:
            raise
    await client.request(
        "POST",
        "/_matrix/client/v3/login",
        {
            "type": "m.login.application_service",
            "identifier": {"type": "m.id.user", "user": user_id},
            "device_id": device_id,
            "initial_device_display_name": "Rondpoint",
        },
    )


def load_device(store: DevicePickles, user_id: str, device_id: str, key: bytes) -> OlmDevice:
    """The stored device, or a new one when none is stored or the pickle cannot be read (its
    keys then differ from those the homeserver has: logged)."""
    text = store.device_pickle(user_id, device_id)
    if text is not None:
        try:
            return OlmDevice.from_pickle(user_id, device_id, text, key)
        except OlmError:
            log.warning(
                "the Olm device %s of %s cannot be read; a new one is made", device_id, user_id
            )
    return OlmDevice(user_id, device_id)


def save_device(store: DevicePickles, device: OlmDevice, key: bytes) -> None:
    """Keep the device (after anything that changes it: uploads, sessions, decryption)."""
    store.put_device_pickle(device.user_id, device.device_id, device.pickle(key))


@dataclass
class OlmDevice:
    """The Olm account and sessions of one ghost device."""

    user_id: str
    device_id: str
    account: vodozemac.Account = field(default_factory=vodozemac.Account)
    sessions: dict[str, list[vodozemac.Session]] = field(default_factory=dict)  # by curve key
    device_keys_published: bool = False
    one_time_keys_used: int = 0
    """One-time keys consumed by incoming sessions since this object was made: top them up
    (`upload_keys`) when it grows."""
    _peers: dict[tuple[str, str], PeerDevice] = field(default_factory=dict, repr=False)

    # persistence ------------------------------------------------------------------------
    def pickle(self, pickle_key: bytes) -> str:
        """Account and sessions as one text, encrypted with the 32-byte `pickle_key`."""
        return json.dumps(
            {
                "version": PICKLE_VERSION,
                "account": self.account.pickle(pickle_key),
                "device_keys_published": self.device_keys_published,
                "sessions": {
                    key: [s.pickle(pickle_key) for s in sessions]
                    for key, sessions in self.sessions.items()
                },
            }
        )

    @classmethod
    def from_pickle(cls, user_id: str, device_id: str, text: str, pickle_key: bytes) -> OlmDevice:
        """The device `pickle` wrote; OlmError when the text or the key is wrong."""
        try:
            data = json.loads(text)
            if data.get("version") != PICKLE_VERSION:
                raise OlmError("unknown Olm pickle version")
            account = vodozemac.Account.from_pickle(data["account"], pickle_key)
            sessions = {
                key: [vodozemac.Session.from_pickle(p, pickle_key) for p in pickles]
                for key, pickles in data.get("sessions", {}).items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise OlmError("the Olm pickle cannot be read with this key") from error
        return cls(user_id, device_id, account, sessions, bool(data.get("device_keys_published")))

    # identity -----------------------------------------------------------------------------
    @property
    def curve25519(self) -> str:
        return str(self.account.curve25519_key.to_base64())

    @property
    def ed25519(self) -> str:
        return str(self.account.ed25519_key.to_base64())

    def sign(self, value: dict[str, Any]) -> dict[str, Any]:
        """`value` with this device's signature added."""
        signature = self.account.sign(canonical_json(value)).to_base64()
        signatures = dict(value.get("signatures", {}))
        signatures.setdefault(self.user_id, {})
        signatures[self.user_id] = {
            **signatures[self.user_id],
            f"ed25519:{self.device_id}": signature,
        }
        return {**value, "signatures": signatures}

    def device_keys(self) -> dict[str, Any]:
        """The signed device keys object of `/keys/upload`."""
        return self.sign(
            {
                "user_id": self.user_id,
                "device_id": self.device_id,
                "algorithms": [OLM_ALGORITHM, MEGOLM_ALGORITHM],
                "keys": {
                    f"curve25519:{self.device_id}": self.curve25519,
                    f"ed25519:{self.device_id}": self.ed25519,
                },
            }
        )

    # the homeserver ------------------------------------------------------------------------
    async def upload_keys(self, client: MatrixRequests, server_count: int | None = None) -> int:
        """Publish device keys (first time), one-time keys up to half the account's maximum and a
        fallback key; returns the homeserver's count of our unused one-time keys. Persist the
        device (`pickle`) after it: published keys are marked so."""
        if server_count is None:
            counts = await self._request(client, "POST", "/_matrix/client/v3/keys/upload", {})
            server_count = int(counts.get("one_time_key_counts", {}).get(SIGNED_CURVE25519, 0))
        wanted = self.account.max_number_of_one_time_keys // 2 - server_count
        body: dict[str, Any] = {}
        if not self.device_keys_published:
            body["device_keys"] = self.device_keys()
        if wanted > 0:
            self.account.generate_one_time_keys(wanted)
        one_time = {
            f"{SIGNED_CURVE25519}:{key_id}": self.sign({"key": key.to_base64()})
            for key_id, key in self.account.one_time_keys.items()
        }
        if one_time:
            body["one_time_keys"] = one_time
        # (fallback keys are missing from vodozemac's type stubs)
        fallback = self.account.fallback_key  # type: ignore[attr-defined]
        if not self.device_keys_published and not fallback:
            self.account.generate_fallback_key()  # type: ignore[attr-defined]
            fallback = self.account.fallback_key  # type: ignore[attr-defined]
        if fallback:
            body["fallback_keys"] = {
                f"{SIGNED_CURVE25519}:{key_id}": self.sign(
                    {"key": key.to_base64(), "fallback": True}
                )
                for key_id, key in fallback.items()
            }
        if not body:
            return server_count
        answer = await self._request(client, "POST", "/_matrix/client/v3/keys/upload", body)
        self.account.mark_keys_as_published()
        self.device_keys_published = True
        return int(answer.get("one_time_key_counts", {}).get(SIGNED_CURVE25519, 0))

    async def query_devices(
        self, client: MatrixRequests, user_ids: list[str]
    ) -> dict[str, dict[str, PeerDevice]]:
        """The checked devices of `user_ids` (a device failing its checks is left out)."""
        answer = await self._request(
            client,
            "POST",
            "/_matrix/client/v3/keys/query",
            {"device_keys": {user: [] for user in user_ids}},
        )
        found: dict[str, dict[str, PeerDevice]] = {}
        listed = answer.get("device_keys")
        for user_id in user_ids:
            devices = listed.get(user_id) if isinstance(listed, dict) else None
            if not isinstance(devices, dict):
                continue
            for device_id, keys in devices.items():
                device = parse_device_keys(user_id, device_id, keys)
                if device is not None:
                    found.setdefault(user_id, {})[device_id] = device
                    self._peers[(user_id, device_id)] = device
        return found

    async def ensure_sessions(self, client: MatrixRequests, devices: list[PeerDevice]) -> None:
        """Open an Olm session with each device that has none (claiming a one-time key)."""
        missing = [d for d in devices if not self.sessions.get(d.curve25519)]
        if not missing:
            return
        claim: dict[str, dict[str, str]] = {}
        for device in missing:
            claim.setdefault(device.user_id, {})[device.device_id] = SIGNED_CURVE25519
        answer = await self._request(
            client, "POST", "/_matrix/client/v3/keys/claim", {"one_time_keys": claim}
        )
        claimed = answer.get("one_time_keys")
        for device in missing:
            keys = (claimed or {}).get(device.user_id, {}).get(device.device_id, {})
            for key_id, key in keys.items() if isinstance(keys, dict) else ():
                if not key_id.startswith(f"{SIGNED_CURVE25519}:") or not isinstance(key, dict):
                    continue
                if not verify_signature(
                    key, device.user_id, f"ed25519:{device.device_id}", device.ed25519
                ):
                    continue
                try:
                    session = self.account.create_outbound_session(
                        vodozemac.Curve25519PublicKey.from_base64(device.curve25519),
                        vodozemac.Curve25519PublicKey.from_base64(key["key"]),
                    )
                except (ValueError, KeyError, TypeError):
                    continue
                self._keep(device.curve25519, session)
                break

    async def send_encrypted(
        self,
        client: MatrixRequests,
        event_type: str,
        contents: dict[PeerDevice, dict[str, Any]],
        txn_id: str,
    ) -> list[PeerDevice]:
        """Send each device its content Olm-encrypted (opening sessions first); returns the
        devices left out because no session could be opened."""
        await self.ensure_sessions(client, list(contents))
        messages: dict[str, dict[str, dict[str, Any]]] = {}
        left_out = []
        for device, content in contents.items():
            if not self.sessions.get(device.curve25519):
                left_out.append(device)
                continue
            messages.setdefault(device.user_id, {})[device.device_id] = self.encrypt(
                device, event_type, content
            )
        if messages:
            path = f"/_matrix/client/v3/sendToDevice/m.room.encrypted/{urllib.parse.quote(txn_id)}"
            await self._request(client, "PUT", path, {"messages": messages})
        return left_out

    async def _request(
        self, client: MatrixRequests, method: str, path: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return await client.request(
            method, path, body, as_user=self.user_id, device_id=self.device_id
        )

    # encryption ---------------------------------------------------------------------------
    def _keep(self, sender_key: str, session: vodozemac.Session) -> None:
        kept = [s for s in self.sessions.get(sender_key, []) if s.session_id != session.session_id]
        self.sessions[sender_key] = [session, *kept][:SESSIONS_PER_DEVICE]

    def encrypt(
        self, device: PeerDevice, event_type: str, content: dict[str, Any]
    ) -> dict[str, Any]:
        """`m.room.encrypted` content carrying the event to `device` (needs a session)."""
        sessions = self.sessions.get(device.curve25519)
        if not sessions:
            raise OlmError(f"no Olm session with {device.user_id} {device.device_id}")
        payload = {
            "type": event_type,
            "content": content,
            "sender": self.user_id,
            "sender_device": self.device_id,
            "keys": {"ed25519": self.ed25519},
            "recipient": device.user_id,
            "recipient_keys": {"ed25519": device.ed25519},
            "sender_device_keys": self.device_keys(),
        }
        message_type, ciphertext = sessions[0].encrypt(json.dumps(payload).encode()).to_parts()
        return {
            "algorithm": OLM_ALGORITHM,
            "sender_key": self.curve25519,
            "ciphertext": {
                device.curve25519: {"type": message_type, "body": _unpadded(ciphertext)}
            },
        }

    def decrypt(self, event: dict[str, Any]) -> DecryptedEvent:
        """The to-device `m.room.encrypted` event decrypted and checked; OlmError otherwise."""
        content = event.get("content")
        sender = event.get("sender")
        if event.get("type") != "m.room.encrypted" or not isinstance(content, dict):
            raise OlmError("not an encrypted to-device event")
        if content.get("algorithm") != OLM_ALGORITHM:
            raise OlmError(f"unsupported algorithm {str(content.get('algorithm'))[:80]!r}")
        sender_key = content.get("sender_key")
        ciphertexts = content.get("ciphertext")
        if not isinstance(sender, str) or not isinstance(sender_key, str):
            raise OlmError("sender or sender_key missing")
        if not isinstance(ciphertexts, dict) or not isinstance(
            ciphertexts.get(self.curve25519), dict
        ):
            raise OlmError("not encrypted for this device")
        mine = ciphertexts[self.curve25519]
        message_type, body = mine.get("type"), mine.get("body")
        if message_type not in (0, 1) or not isinstance(body, str) or len(body) > MAX_CIPHERTEXT:
            raise OlmError("malformed Olm message")
        plaintext = self._decrypt(sender_key, message_type, _unbase64(body))
        return self._checked(sender, sender_key, plaintext)

    def _decrypt(self, sender_key: str, message_type: int, ciphertext: bytes) -> bytes:
        try:
            message = vodozemac.AnyOlmMessage.from_parts(message_type, ciphertext)
        except ValueError as error:
            raise OlmError("malformed Olm message") from error
        pre_key = message.to_pre_key() if message_type == 0 else None
        for session in self.sessions.get(sender_key, []):
            if pre_key is not None and not session.session_matches(pre_key):
                continue
            try:
                plaintext = session.decrypt(message)
            except ValueError:
                continue
            self._keep(sender_key, session)
            return plaintext
        if pre_key is None:
            raise OlmError("no Olm session decrypts this message (the sender must start anew)")
        try:
            identity = vodozemac.Curve25519PublicKey.from_base64(sender_key)
            session, plaintext = self.account.create_inbound_session(identity, pre_key)
        except ValueError as error:
            raise OlmError("the pre-key message does not open a session") from error
        self.one_time_keys_used += 1
        self._keep(sender_key, session)
        return plaintext

    def _checked(self, sender: str, sender_key: str, plaintext: bytes) -> DecryptedEvent:
        try:
            payload = json.loads(plaintext)
        except ValueError as error:
            raise OlmError("the decrypted payload is not JSON") from error
        if not isinstance(payload, dict):
            raise OlmError("the decrypted payload is not an object")
        if payload.get("sender") != sender:
            raise OlmError("the payload's sender is not the event's sender")
        if payload.get("recipient") != self.user_id:
            raise OlmError("the payload is for another user")
        if (payload.get("recipient_keys") or {}).get("ed25519") != self.ed25519:
            raise OlmError("the payload is for another device")
        ed25519 = (payload.get("keys") or {}).get("ed25519")
        event_type, content = payload.get("type"), payload.get("content")
        if not isinstance(ed25519, str) or not isinstance(event_type, str):
            raise OlmError("the payload lacks keys or type")
        if not isinstance(content, dict):
            raise OlmError("the payload lacks content")
        device = payload.get("sender_device")
        return DecryptedEvent(
            sender,
            sender_key,
            device if isinstance(device, str) else None,
            ed25519,
            event_type,
            content,
        )

    async def start_anew(self, client: MatrixRequests, device: PeerDevice, txn_id: str) -> bool:
        """After a message no session decrypts: open a new session with `device` and send it an
        `m.dummy` event, so that it answers on the new one (the spec's recovery from wedged Olm
        sessions). True when the event went out."""
        self.sessions.pop(device.curve25519, None)
        left_out = await self.send_encrypted(client, "m.dummy", {device: {}}, txn_id)
        return not left_out

    async def sender_device(self, client: MatrixRequests, event: DecryptedEvent) -> PeerDevice:
        """The sender's device: the one of the sender's devices whose curve25519 key is the one
        the Olm session proves (and named `sender_device`, when the payload names one), its
        ed25519 key the one the payload claims. OlmError when there is none."""

        def find() -> PeerDevice | None:
            for (user_id, device_id), device in self._peers.items():
                if (
                    user_id == event.sender
                    and device.curve25519 == event.sender_key
                    and event.sender_device in (None, device_id)
                ):
                    return device
            return None

        device = find()
        if device is None:
            await self.query_devices(client, [event.sender])
            device = find()
        if device is None:
            raise OlmError(f"no device of {event.sender} has this message's sender key")
        if device.ed25519 != event.sender_ed25519:
            raise OlmError(f"the keys of {event.sender} {device.device_id} do not match")
        return device
