"""Links of rooms here to rooms in foreign systems (Visio, Matrix, partner gateways' rooms).

Protocol-neutral machinery: a ``LinkAdapter`` per target scheme (``visio:``) turns a stored target
into a live ``Link``; the ``LinkManager`` validates targets, keeps them in the store and in
``Room.links``, opens every stored link when the gateway starts, stops a room's links when the room is
deleted, and reports each link's ``LinkStatus`` for the admin API, the CLI and the hosts' web page.
A link that fails to open or start is shown as ``failed`` with a sentence; it never stops the gateway.

Callers of one spoke reach another spoke's rooms through here only: a dispatch rule whose room is a
link target (``visio:UUID``, ``matrix:!id:server``) sends a phone to the target's local room
(``link_room_id``: made on demand, linked live, ``LinkManager.enter``), past the foreign room's own
lobby when its adapter is an ``AdmittingAdapter``; ``LinkManager.release`` stops that link when its
last caller leaves.
``LinkTargets`` checks such targets before any plugin runs (configuration files, dispatch rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gateway.plugins import ProtocolPlugin, installed
from gateway.rooms import ROOM_ID_PATTERN, RoomClosed, RoomError

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger(__name__)


class LinkState(StrEnum):
    """Where a link stands; the value is what the admin API, the CLI and the hosts' page show."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RETRYING = "retrying"
    REFUSED = "refused"
    """The foreign side refused the link (a partner gateway that has not allow-listed us)."""
    STOPPED = "stopped"
    FAILED = "failed"


MAX_TARGET_LENGTH = 512
ENTER_SETTLE = 5.0
"""Seconds ``enter`` waits for a link it just opened to leave ``connecting`` (connected, or
refused by the foreign side) before letting the caller in; a link still trying after that lets
the caller wait in the local room while it retries."""
START_TIMEOUT = 10.0
"""Seconds a link's ``start()`` may take (it should return at once and connect in the background)."""
STOP_TIMEOUT = 10.0

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,31}")
_SCHEME_PREFIX = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31}):")
_CONTROL_OR_SPACE = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass
class LinkStatus:
    """Where one link stands, as shown by ``rondpoint room show`` and the hosts' page."""

    state: LinkState
    """A plain string of the same value is accepted and turned into the LinkState."""
    detail: str = ""
    """A human sentence; never a secret (no token, no API secret)."""
    since: float = 0.0
    """time.time() of the last state change."""
    attempts: int = 0
    """Consecutive failed attempts since the last "connected"."""
    remote_participants: int = 0
    packets_in: int = 0
    """RTP packets received from the foreign room so far."""
    packets_out: int = 0
    """RTP packets sent to the foreign room so far."""

    def __post_init__(self) -> None:
        self.state = LinkState(self.state)

    def to_wire(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "detail": self.detail,
            "since": int(self.since * 1000),
            "attempts": self.attempts,
            "remote_participants": self.remote_participants,
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
        }


class Link(Protocol):
    """One live link of one room to one foreign room."""

    target: str
    """Canonical, e.g. "visio:0b4c8f2e-...."."""

    def status(self) -> LinkStatus: ...

    async def start(self) -> None:
        """Return quickly; connect and retry in the background."""

    async def stop(self) -> None:
        """Leave the foreign room and remove its mirrored participants here."""

    async def forget(self) -> None:
        """The operator unlinked it or deleted the room: tell the foreign side (a partner gateway
        drops its end of the link); ``stop()`` follows. Not called at shutdown."""


class LinkAdapter(Protocol):
    """Turns targets of one scheme into links (protocols/visio for ``visio:``).

    Participants a link brings here from the foreign room carry ``origin`` equal to the scheme,
    unless the adapter is an ``AdmittingAdapter``, which names their origin itself."""

    scheme: str

    def normalize(self, target: str) -> str:
        """The canonical target, or ValueError with a clear sentence."""
        ...

    def open(self, room_id: str, target: str) -> Link: ...


class AdmissionOutcome(StrEnum):
    """What the foreign room's lobby decided about a caller (the value is logged)."""

    ACCEPTED = "accepted"
    DENIED = "denied"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class Admission:
    """A foreign room's answer to a caller who asked to enter it."""

    outcome: AdmissionOutcome
    detail: str = ""
    """A sentence safe to log (never a token or a cookie)."""

    @property
    def accepted(self) -> bool:
        return self.outcome is AdmissionOutcome.ACCEPTED


ADMITTED = Admission(AdmissionOutcome.ACCEPTED)
"""The answer when the foreign room has no lobby for the caller."""


@runtime_checkable
class AdmittingAdapter(LinkAdapter, Protocol):
    """A LinkAdapter whose foreign rooms decide themselves who enters (Visio's lobby): callers the
    hub sends there (``LinkManager.enter``) ask first. An adapter without these hooks lets every
    caller in, and its mirrored participants' origin is its scheme."""

    origin: str
    """Origin of the participants its links mirror here (they keep no on-demand link alive)."""

    async def admit(
        self, target: str, display_name: str, play_waiting: Callable[[], float]
    ) -> Admission:
        """Ask the foreign room to let ``display_name`` in; ``ADMITTED`` when no lobby applies.
        ``play_waiting`` starts the waiting prompt and returns its length in seconds; call it
        again while the caller keeps waiting. LinkError when the foreign room cannot be asked
        (the caller is then not let in: a lobby is never bypassed on failure)."""
        ...


class LinkError(RoomError):
    """A link operation refused; ``code`` is one of the codes below, ``status`` its HTTP status."""

    STATUSES = {
        "invalid_link": 400,
        "link_scheme_unavailable": 400,
        "link_exists": 409,
        "link_not_found": 404,
        "link_failed": 502,
        "link_unavailable": 503,
        "admission_refused": 403,
    }

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code, detail, self.STATUSES.get(code, 400))


class AdmissionRefused(LinkError):
    """The foreign room's lobby did not let the caller in (``admission.outcome`` says why)."""

    def __init__(self, admission: Admission) -> None:
        super().__init__(
            "admission_refused",
            admission.detail or f"the foreign room's lobby answered {admission.outcome.value}",
        )
        self.admission = admission


def split_target(target: str, known: str) -> tuple[str, str]:
    """The lowercase scheme of a stripped link target and the target written with it, or
    ValueError saying what is wrong with its shape (``known``: the schemes to suggest)."""
    if len(target) > MAX_TARGET_LENGTH:
        raise ValueError(f"a link target has at most {MAX_TARGET_LENGTH} characters")
    if _CONTROL_OR_SPACE.search(target):
        raise ValueError("a link target has no spaces or control characters")
    match = _SCHEME_PREFIX.match(target)
    if match is None or len(target) == match.end():
        raise ValueError(
            f"a link target is SCHEME:ROOM, e.g. visio:VISIO_ROOM_UUID; known schemes: {known}"
        )
    scheme = match.group(1).lower()
    return scheme, scheme + target[match.end() - 1 :]


LOCAL_ROOM_DIGEST_LENGTH = 16
"""Lowercase hex characters of the SHA-256 digest naming a target's local room when the target's
own text is no room name (``matrix:!id:server`` gives ``matrix-`` and 16 of them)."""
_NOT_IN_ROOM_NAME = re.compile(r"[^a-z0-9-]")
_DIGEST = re.compile(f"[0-9a-f]{{{LOCAL_ROOM_DIGEST_LENGTH}}}")


def _room_scheme(scheme: str) -> str:
    """A scheme as the start of a room name (``+`` and ``.`` are not in room names)."""
    return _NOT_IN_ROOM_NAME.sub("-", scheme.lower())


async def _settled(link: Link, timeout: float = ENTER_SETTLE) -> LinkStatus:
    """The link's status once it has left ``connecting``, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    status = link.status()
    while status.state is LinkState.CONNECTING and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        status = link.status()
    return status


def link_room_id(target: str) -> str:
    """The local room a canonical target's callers join, for every target: ``SCHEME-REST`` when
    that is a room name (``visio:UUID`` gives ``visio-UUID``), else ``SCHEME-`` and the first 16
    lowercase hex characters of the SHA-256 digest of the canonical target (``matrix:!id:server``
    gives ``matrix-`` and a digest: Matrix room ids and aliases are no room names). Stable over
    restarts and gateways; ``+`` and ``.`` of a scheme become ``-``."""
    scheme, _, rest = target.partition(":")
    room_id = f"{scheme}-{rest}"
    if ROOM_ID_PATTERN.fullmatch(room_id):
        return room_id
    digest = hashlib.sha256(target.encode()).hexdigest()[:LOCAL_ROOM_DIGEST_LENGTH]
    return f"{_room_scheme(scheme)}-{digest}"


class LinkTargets:
    """Link targets as the installed plugins define them, whether or not the plugins run: the
    canonical form of a target written in a configuration file or a dispatch rule, and which room
    names are the local rooms of such targets (made by the gateway only)."""

    def __init__(self, normalizers: Mapping[str, Callable[[str], str] | None]) -> None:
        """``normalizers``: scheme to its canonical form (None: the target as written)."""
        self._normalizers = {scheme.lower(): check for scheme, check in normalizers.items()}

    @classmethod
    def of(cls, plugins: Iterable[ProtocolPlugin]) -> LinkTargets:
        """The targets of the plugins' ``link_schemes``, checked by their ``normalize_target``."""
        return cls(
            {
                scheme: plugin.normalize_target
                for plugin in plugins
                for scheme in plugin.link_schemes
            }
        )

    @classmethod
    def installed(cls) -> LinkTargets:
        """The targets of every plugin installed in this Python environment."""
        return cls.of(installed())

    def schemes(self) -> list[str]:
        return sorted(self._normalizers)

    def canonical(self, target: str) -> str:
        """The canonical form of ``target``; ValueError with a sentence for the operator."""
        scheme, written = split_target(target.strip(), ", ".join(self.schemes()) or "none")
        if scheme not in self._normalizers:
            raise ValueError(
                f"'{scheme}:' is not a link scheme of an installed plugin; "
                f"known schemes: {', '.join(self.schemes()) or 'none'}"
            )
        normalize = self._normalizers[scheme]
        return normalize(written) if normalize is not None else written

    def room_id(self, target: str) -> str:
        """The local room of ``target`` (canonical or not); ValueError when it is no target."""
        return link_room_id(self.canonical(target))

    def is_room_id(self, room_id: str) -> bool:
        """Whether ``room_id`` is the local room of a target, reached only through the target:
        ``visio-UUID`` (a target's own text), or ``SCHEME-`` and 16 lowercase hex characters (the
        digest naming the local room of a target whose text is no room name, such as
        ``matrix:!id:server``; every such name is kept for the gateway, whatever it digests).
        Other names, even ``visio-salle`` or ``matrix-salle``, are ordinary rooms."""
        for scheme in self._normalizers:
            prefix = _room_scheme(scheme) + "-"
            if room_id.startswith(prefix) and _DIGEST.fullmatch(room_id[len(prefix) :]):
                return True
            if room_id.startswith(scheme + "-"):
                target = f"{scheme}:{room_id[len(scheme) + 1 :]}"
                with contextlib.suppress(ValueError):
                    if link_room_id(self.canonical(target)) == room_id:
                        return True
        return False


def check_target(target: str, plugins: Iterable[ProtocolPlugin]) -> str:
    """The canonical form of a link target that callers are sent to, as written in a configuration
    file (checked before any plugin runs) by the installed ``plugins``; ValueError with a sentence
    when it is no such target."""
    return LinkTargets.of(plugins).canonical(target)


class _BrokenLink:
    """Stands for a link that could not be opened or started: ``failed``, with the reason."""

    def __init__(self, target: str, detail: str, attempts: int = 1) -> None:
        self.target = target
        self._status = LinkStatus(LinkState.FAILED, detail, time.time(), attempts)

    def status(self) -> LinkStatus:
        return self._status

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def forget(self) -> None:
        return None


def _reason(error: BaseException) -> str:
    """A short sentence for an adapter's exception (the adapter must keep secrets out of it)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    name = type(error).__name__
    return f"{name}: {text[:200]}" if text else name


class LinkManager:
    """Every link of every room: validation, persistence, live links and their status."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._adapters: dict[str, LinkAdapter] = {}
        self._hints: dict[str, str] = {}
        """Schemes installed plugins link, with what to configure when they do not run."""
        self._live: dict[tuple[str, str], Link] = {}
        self._watcher: asyncio.Task[None] | None = None

    # adapters ---------------------------------------------------------------------------
    def register(self, adapter: LinkAdapter) -> None:
        """Make ``adapter.scheme:`` targets linkable (replaces an adapter of the same scheme)."""
        scheme = adapter.scheme.lower()
        if not _SCHEME.fullmatch(scheme):
            raise ValueError(f"not a valid link scheme: {adapter.scheme!r}")
        self._adapters[scheme] = adapter

    def set_hints(self, hints: Mapping[str, str]) -> None:
        """Schemes installed plugins could link, each with what an operator must configure for
        ``scheme:`` targets to work when no adapter of that scheme is registered."""
        self._hints = {scheme.lower(): hint for scheme, hint in hints.items()}

    def schemes(self) -> list[str]:
        """The schemes that can be linked on this gateway now."""
        return sorted(self._adapters)

    def normalize(self, target: object) -> str:
        """The canonical form of ``target``; LinkError (invalid_link or link_scheme_unavailable)."""
        if not isinstance(target, str) or not target.strip():
            raise LinkError(
                "invalid_link", "the link target is a string like visio:VISIO_ROOM_UUID"
            )
        known = sorted(set(self._hints) | set(self._adapters))
        try:
            scheme, written = split_target(target.strip(), ", ".join(known))
        except ValueError as error:
            raise LinkError("invalid_link", str(error)) from None
        adapter = self._adapters.get(scheme)
        if adapter is None:
            if scheme in self._hints:
                raise LinkError("link_scheme_unavailable", self._hints[scheme])
            raise LinkError(
                "invalid_link",
                f"'{scheme}:' is not a link scheme this gateway knows; "
                f"known schemes: {', '.join(known)}",
            )
        try:
            canonical = adapter.normalize(written)
        except ValueError as error:
            raise LinkError("invalid_link", str(error) or f"not a valid {scheme}: target") from None
        return canonical

    # lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Open every stored link of every room (after a restart), and follow room deletions."""
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_rooms())
        for record in self.gateway.store.list_rooms():
            for target in record.links:
                await self._ensure_live(record.id, target)

    async def stop(self) -> None:
        """Stop every live link (gateway shutdown); the store keeps them for the next start."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        live = list(self._live.items())
        self._live.clear()
        await asyncio.gather(*(self._stop_link(room, link) for (room, _), link in live))

    async def close_room(self, room_id: str) -> None:
        """Stop and forget the links of a room that is being deleted (idempotent)."""
        keys = [key for key in self._live if key[0] == room_id]
        links = [self._live.pop(key) for key in keys]
        await asyncio.gather(*(self._forget_link(room_id, link) for link in links))
        await asyncio.gather(*(self._stop_link(room_id, link) for link in links))

    async def _watch_rooms(self) -> None:
        subscription = self.gateway.bus.subscribe()
        try:
            async for event in subscription:
                if isinstance(event, RoomClosed):
                    await self.close_room(event.room_id)
        finally:
            subscription.close()

    # operations ---------------------------------------------------------------------------
    async def link(self, room_id: str, target: object) -> LinkStatus:
        """Link a room: validate, persist (store and Room.links), open and start; the status."""
        room = self.gateway.rooms.get(room_id)
        canonical = self.normalize(target)
        if canonical in room.links:
            raise LinkError("link_exists", f"room '{room_id}' is already linked to {canonical}")
        self.gateway.store.add_link(room_id, canonical)
        room.links.append(canonical)
        log.info("room linked", extra={"room": room_id, "target": canonical})
        link = await self._ensure_live(room_id, canonical)
        return link.status()

    async def unlink(self, room_id: str, target: str) -> None:
        """Stop the link and forget it (store and Room.links); LinkError 404 if there is none."""
        room = self.gateway.rooms.get(room_id)
        found = self._find(room.links, target)
        if found is None:
            raise LinkError("link_not_found", f"room '{room_id}' has no link to {target}")
        link = self._live.pop((room_id, found), None)
        if link is not None:
            await self._forget_link(room_id, link)
            await self._stop_link(room_id, link)
        self.gateway.store.remove_link(room_id, found)
        with contextlib.suppress(ValueError):
            room.links.remove(found)
        log.info("room unlinked", extra={"room": room_id, "target": found})

    async def ensure(self, room_id: str, target: str, persist: bool = True) -> Link:
        """The live link of ``room_id`` to ``target``, opened and started if need be (idempotent).

        ``persist=False`` links the live room only (the store does not keep it over a restart).
        """
        room = self.gateway.rooms.get(room_id)
        canonical = self.normalize(target)
        live = self._live.get((room_id, canonical))
        if live is not None:
            return live
        if canonical not in room.links:
            room.links.append(canonical)
        if persist:
            self.gateway.store.add_link(room_id, canonical)
        return await self._ensure_live(room_id, canonical)

    async def enter(self, target: str, display_name: str, play_waiting: Callable[[], float]) -> str:
        """Take a caller to a foreign room: its local room (``link_room_id``), made on demand
        (with a lobby of its own: web visitors who find it by name wait for a host here instead
        of slipping into the foreign meeting) and linked live with ``persist=False`` (the first
        caller opens the foreign meeting; no stored link keeps it open after a restart), then
        past the foreign room's lobby (``AdmittingAdapter.admit``). Returns the local room's id.

        LinkError when the target cannot be linked or its link failed; AdmissionRefused (a
        LinkError) when the foreign room's lobby keeps the caller out."""
        canonical = self.normalize(target)
        adapter = self._adapters[canonical.split(":", 1)[0]]
        room_id = link_room_id(canonical)
        rooms = self.gateway.rooms
        if not rooms.exists(room_id):
            with contextlib.suppress(RoomError):  # room_exists: another caller made it just now
                rooms.create(room_id, lobby=True, internal=True)
        link = await self.ensure(room_id, canonical, persist=False)
        status = await _settled(link)
        if status.state in (LinkState.FAILED, LinkState.REFUSED):
            # A refused link (a Matrix room that has not invited us) would leave the caller alone.
            raise LinkError("link_failed", f"the link of {room_id} {status.state}: {status.detail}")
        if isinstance(adapter, AdmittingAdapter):
            admission = await adapter.admit(canonical, display_name, play_waiting)
            if not admission.accepted:
                raise AdmissionRefused(admission)
        return room_id

    async def release(self, room_id: str, target: str, callers_pending: int) -> bool:
        """Stop the on-demand link of a local room (``enter``) when no one from this side is in
        the room any more and no other caller is on the way (``callers_pending``); a link a host
        stored is left alone. True when the link was stopped."""
        rooms = self.gateway.rooms
        if callers_pending or not rooms.exists(room_id):
            return False
        scheme = target.split(":", 1)[0].lower()
        adapter = self._adapters.get(scheme)
        origin = adapter.origin if isinstance(adapter, AdmittingAdapter) else scheme
        room = rooms.get(room_id)
        if any(p.origin != origin for p in room.participants.values()):
            return False
        record = self.gateway.store.get_room(room_id)
        if record is not None and target in record.links:
            return False  # linked on purpose (rondpoint link): not ours to stop
        try:
            await self.unlink(room_id, target)
        except RoomError:
            return False
        log.info("linked room released by its last caller", extra={"room": room_id})
        return True

    def statuses(self) -> list[tuple[str, LinkStatus]]:
        """(scheme, status) of every live link, for the metrics."""
        return [
            (target.split(":", 1)[0], link.status()) for (_, target), link in self._live.items()
        ]

    def links(self, room_id: str) -> list[tuple[str, LinkStatus]]:
        """The room's links with their live status ("stopped" when not running)."""
        room = self.gateway.rooms.get(room_id)
        shown: list[tuple[str, LinkStatus]] = []
        for target in room.links:
            link = self._live.get((room_id, target))
            if link is None:
                shown.append((target, LinkStatus(LinkState.STOPPED, "the link is not running")))
                continue
            try:
                shown.append((target, link.status()))
            except Exception as error:
                log.exception("a link failed to report its status", extra={"room": room_id})
                shown.append((target, LinkStatus(LinkState.FAILED, _reason(error), time.time())))
        return shown

    def live(self, room_id: str, target: str) -> Link | None:
        """The live link of a room to a canonical target, if it runs."""
        return self._live.get((room_id, target))

    # internals ----------------------------------------------------------------------------
    def _find(self, targets: list[str], target: str) -> str | None:
        if target in targets:
            return target
        with contextlib.suppress(LinkError):
            canonical = self.normalize(target)
            if canonical in targets:
                return canonical
        return None

    async def _ensure_live(self, room_id: str, target: str) -> Link:
        """Open and start a link; any failure gives a ``failed`` stand-in, never an exception."""
        key = (room_id, target)
        live = self._live.get(key)
        if live is not None:
            return live
        scheme = target.split(":", 1)[0].lower()
        adapter = self._adapters.get(scheme)
        if adapter is None:
            detail = self._hints.get(scheme, f"'{scheme}:' links are not available on this gateway")
            broken = _BrokenLink(target, detail)
            self._live[key] = broken
            log.warning("a stored link cannot start", extra={"room": room_id, "target": target})
            return broken
        try:
            link = adapter.open(room_id, target)
        except Exception as error:
            log.exception("a link could not be opened", extra={"room": room_id, "target": target})
            broken = _BrokenLink(target, f"the link could not be opened ({_reason(error)})")
            self._live[key] = broken
            return broken
        self._live[key] = link
        try:
            await asyncio.wait_for(link.start(), START_TIMEOUT)
        except Exception as error:
            if isinstance(error, TimeoutError):
                reason = f"the link did not start within {START_TIMEOUT:g} s"
            else:
                reason = f"the link could not start ({_reason(error)})"
            log.error(
                "a link failed to start: %s",
                reason,
                exc_info=not isinstance(error, TimeoutError),
                extra={"room": room_id, "target": target},
            )
            await self._stop_link(room_id, link)
            broken = _BrokenLink(target, reason)
            if self._live.get(key) is link:
                self._live[key] = broken
            return broken
        return link

    async def _forget_link(self, room_id: str, link: Link) -> None:
        forget = getattr(link, "forget", None)  # links written before forget() have nothing to say
        if forget is None:
            return
        try:
            await asyncio.wait_for(forget(), STOP_TIMEOUT)
        except Exception:
            log.exception(
                "a link failed to tell its foreign side",
                extra={"room": room_id, "target": link.target},
            )

    async def _stop_link(self, room_id: str, link: Link) -> None:
        try:
            await asyncio.wait_for(link.stop(), STOP_TIMEOUT)
        except Exception:
            log.exception(
                "a link failed to stop cleanly", extra={"room": room_id, "target": link.target}
            )
