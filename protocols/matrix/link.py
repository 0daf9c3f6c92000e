"""The Matrix bridge: one room here and one Matrix room's call (Element Call) become one meeting.

A `MatrixLink` has two halves:

- the LiveKit half, protocols/livekit/bridge.py's `LiveKitBridge` in the focus's LiveKit room,
  named as the focus's token service names it (protocols/matrix/rooms.py): every Element Call
  member (``{user}:{device}``) becomes a participant here of origin ``matrix`` named by their name
  in the Matrix room; every person here is published as their ghost's device
  (``{ghost}:RONDPOINT``) once that ghost holds its call membership;
- the Matrix half, here: the bot joins the Matrix room (it must be invited), reads its state
  (power levels, encryption), and for each person here a ghost user joins the room and holds a
  MatrixRTC call membership (protocols/matrix/membership.py); ghosts leave with their person, take
  their name, ring the room when their join starts the call, and carry the room's chat both ways.

In an end-to-end encrypted Matrix room (m.room.encryption) the bridge is a declared participant of
the call (the bot says so in the room, once per call): protocols/matrix/e2ee.py gives each ghost
an Olm device and a media key, takes the members' keys in, and decrypts and re-encrypts the media
(LiveKit's frame encryption) as the LiveKit half carries it; protocols/matrix/megolm.py decrypts
the members' chat with the room keys they send the ghosts' devices and encrypts each ghost's chat
with a session of its own.

When the room cannot be bridged the link says why (state ``refused``) and, when the bot is in the
Matrix room, so does an ``m.notice`` there: never silence. Redactions are not followed (the chat
here has no deletion); an edit arrives as its fallback text ("* new text").

Raised hands and reactions cross as Element Call carries them (protocols/matrix/social.py): a
member's hand (an ``m.reaction`` "🖐️" on their membership event, lowered by redacting it) is their
participant's ``hand_raised_at`` here, read back when the link enters the room (a hand raised
before it, or before a restart of ours: the relations of each active membership, as the bot, a
page at a time until the member's hand, within READ_BACK_SECONDS); a ghost's person raising a
hand here makes the ghost send that reaction on its own membership, and redact it when the hand
goes down; a host here lowering a member's hand makes the bot redact the member's reaction when
the room's power levels let it (else it is lowered here only). Reactions cross both ways as
``io.element.call.reaction`` events, for the reactions we have (8.18), bounded on the way in by the
room's rate and on the way out by the same rate per ghost. They are sent in clear.

Both halves are reconciled, not replayed: a change (a room event here, a Matrix event, a LiveKit
update) syncs the person it is about against the current state, so a homeserver or LiveKit restart
ends with everyone once, on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from livekit.protocol import models

from gateway.links import LinkState, LinkStatus
from gateway.ratelimit import RateLimiter
from gateway.rooms import (
    ChatMessage,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantState,
    ParticipantUpdated,
    Reaction,
    RoomError,
)
from gateway.rooms.events import RoomEvent, Subscription
from gateway.rooms.manager import REACTION_BURST, REACTIONS_PER_SECOND
from gateway.rooms.model import Participant, Room
from gateway.rooms.names import display_name
from gateway.tasks import TaskSet
from protocols.livekit.bridge import BridgePolicy, BridgeSettings, LiveKitBridge, MirrorGrant
from protocols.livekit.signal import Participant as LkParticipant
from protocols.matrix import ids, social
from protocols.matrix.call_keys import CallEncryption
from protocols.matrix.client import MatrixError, MatrixUnavailable
from protocols.matrix.e2ee import CallMedia, announcement
from protocols.matrix.megolm import MegolmError, RoomChatEncryption
from protocols.matrix.membership import (
    CALL_MEMBER,
    RTC_NOTIFICATION,
    MembershipKeeper,
    end_leftovers,
    is_active,
    member_of,
    ring_content,
)
from protocols.matrix.olm import DecryptedEvent, OlmDevice, OlmError, pickle_key
from protocols.matrix.rooms import hashed_identity_of_membership, livekit_room_name

if TYPE_CHECKING:
    from gateway.server import Gateway
    from protocols.matrix.service import MatrixService

log = logging.getLogger(__name__)

MATRIX_ORIGIN = "matrix"
"""Origin of the participants the bridge brings here from the Matrix room's call."""
FIRST_RETRY = 0.5
REFUSED_RECHECK = 60.0
"""A refused link looks again this often (and at once when the bot is invited or the room's
power levels change)."""
STOP_SECONDS = 5.0
"""How long stopping waits for the ghosts to leave (the delayed leaves end the rest)."""
GHOST_RETRY_MAX = 30.0
MAX_CHAT_CHARS = 4000
FORBIDDEN_CALL = "this room does not allow Rondpoint's participants to join its call"
READ_BACK_SECONDS = 10.0
"""How long entering the room reads back the hands raised before (in the background: the link
bridges meanwhile); a hand not read by then shows when it is raised again."""
READ_BACK_PAGE = 50
"""Reactions read back per request: its member's hand, and others' reactions."""
READ_BACK_PAGES = 4
"""Pages read back per membership at most, newest first, until its member's hand is found: a
hand stays found behind others' reactions on the membership, up to this many pages of them."""
MAX_LOWERED = 1024
"""Hands lowered (redacted, or by a host here) remembered while hands are read back (a hand read
back and lowered meanwhile stays down)."""


def notice_body(text: str) -> str:
    """A notice as the room reads it: a sentence that names Rondpoint."""
    body = text if text.startswith("Rondpoint") else f"Rondpoint: {text}"
    return body if body.endswith((".", "!", "?")) else f"{body}."


def not_invited(bot_user_id: str) -> str:
    return f"invite {bot_user_id} to the room"


BridgeFactory = Callable[["Gateway", str, BridgeSettings, BridgePolicy], LiveKitBridge]
"""Makes the LiveKit half (tests give a fake)."""


class _Refused(Exception):
    """The Matrix room cannot be bridged now; ``notice``: the bot is in the room to say so."""

    def __init__(self, reason: str, *, notice: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.notice = notice


def _level(value: Any, default: int) -> int:
    """A power level as m.room.power_levels gives it (an integer), else DEFAULT."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _user_level(power_levels: Mapping[str, Any], user_id: str) -> int:
    users = power_levels.get("users")
    users = users if isinstance(users, dict) else {}
    return _level(users.get(user_id), _level(power_levels.get("users_default"), 0))


def power_problem(power_levels: Mapping[str, Any] | None, bot_user_id: str) -> str:
    """Why the room's power levels keep ghosts out of its call ("" when they do not): ghosts
    (at the users' default level) must send call memberships, and the bot must invite them."""
    if power_levels is None:
        return ""  # no power levels: everyone may do everything (spec, m.room.power_levels)
    events = power_levels.get("events")
    events = events if isinstance(events, dict) else {}
    users_default = _level(power_levels.get("users_default"), 0)
    needed = _level(events.get(CALL_MEMBER), _level(power_levels.get("state_default"), 50))
    bot = _user_level(power_levels, bot_user_id)
    if users_default < needed or bot < _level(power_levels.get("invite"), 0):
        return FORBIDDEN_CALL
    return ""


def may_redact(power_levels: Mapping[str, Any] | None, user_id: str) -> bool:
    """Whether USER_ID may redact others' events in the room: its level reaches ``redact`` (50
    when unset). Power levels not read yet (None): it may try, and the homeserver decides."""
    if power_levels is None:
        return True
    return _user_level(power_levels, user_id) >= _level(power_levels.get("redact"), 50)


def chat_text(content: Mapping[str, Any]) -> str:
    """What a Matrix message says in our chat: text and notices as they are, an emote as
    "* body", an edit as its fallback body; "" for anything else (images, files)."""
    body = content.get("body")
    if not isinstance(body, str):
        return ""
    msgtype = content.get("msgtype")
    if msgtype == "m.emote":
        body = f"* {body}"
    elif msgtype not in ("m.text", "m.notice"):
        return ""
    return body.strip()[:MAX_CHAT_CHARS]


@dataclass
class _Ghost:
    """A person from here, present in the Matrix room as a ghost user holding a membership."""

    participant_id: str
    user_id: str
    name: str = ""
    joined: bool = False
    keeper: MembershipKeeper | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    retry: float = 0.0
    retrying: bool = False
    hand: tuple[str, str] | None = None
    """(membership event id, reaction event id) of the ghost's raised hand in the Matrix room."""


class _Policy:
    """What the LiveKit bridge needs to know of Matrix (a protocols.livekit ``BridgePolicy``)."""

    origin = MATRIX_ORIGIN

    def __init__(self, link: MatrixLink) -> None:
        self.link = link

    def is_ours(self, identity: str) -> bool:
        """Ours (the bridge, ghosts), or not a member of the Matrix call: a hashed identity
        (``/get_token``) no call membership of the room names is not brought here until one
        does."""
        user_id = self.link.user_of(identity)
        return user_id is None or self.link.is_ours(user_id)

    def mirror_identity(self, participant: Participant) -> str:
        return ids.livekit_identity(self.link.ghost_user_id(participant.id), ids.GHOST_DEVICE)

    def mirror_grant(self, participant: Participant) -> MirrorGrant:
        attributes = {"rondpoint.origin": participant.origin}
        if participant.origin == "sip":
            return MirrorGrant(participant.name, "sip", attributes)
        return MirrorGrant(participant.name, "standard", attributes)

    def remote_name(self, info: LkParticipant) -> str:
        return self.link.matrix_name(info.identity, info.name)

    def remote_address(self, info: LkParticipant) -> str:
        return self.link.user_of(info.identity) or info.identity

    def remote_hand(self, info: LkParticipant) -> float | None:
        return self.link.hand_of(info.identity)

    def lower_hand(self, info: LkParticipant) -> dict[str, str] | None:
        self.link.lower_hand(info.identity)
        return None  # a member's hand is their Matrix reaction, not a LiveKit attribute

    def reaction_from(self, packet: models.DataPacket) -> str | None:
        return None  # Element Call's reactions are Matrix events (MatrixLink)

    def reaction_packet(self, emoji: str, identity: str) -> models.DataPacket | None:
        return None

    def wants_mirror(self, participant: Participant) -> bool:
        ghost = self.link.ghosts.get(participant.id)
        media = self.link.media
        return (
            ghost is not None
            and ghost.joined
            and ghost.keeper is not None
            and ghost.keeper.held
            and (media is None or media.ready(ghost.user_id))
        )


class MatrixLink:
    """The link of one room here to one Matrix room; see the module docstring."""

    def __init__(
        self,
        gateway: Gateway,
        service: MatrixService,
        room_id: str,
        matrix_room: str,
        *,
        bridge_factory: BridgeFactory = LiveKitBridge,
    ) -> None:
        self.gateway = gateway
        self.bridge_factory = bridge_factory
        self.service = service
        self.config = service.config
        self.room_id = room_id
        self.matrix_room = matrix_room
        """The room as the target names it: an id, or an alias until resolved."""
        self.matrix_room_id = "" if matrix_room.startswith("#") else matrix_room
        self.target = f"matrix:{matrix_room}"
        self.bot_user_id = ids.bot_user_id(self.config.sender_localpart, self.config.server_name)
        self.focus_url = service.focus_url
        self.ghosts: dict[str, _Ghost] = {}
        """Participant id here -> its ghost."""
        self._status = LinkStatus(LinkState.CONNECTING, "starting", time.time())
        self._bridge: LiveKitBridge | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks = TaskSet()
        self._events: Subscription | None = None
        self._unlisten: Any = None
        self._entered = False
        self._trouble: asyncio.Future[str] | None = None
        self._changed = asyncio.Event()
        self._names: dict[str, str] = {}
        """Matrix user id -> display name in the room (joined members)."""
        self._power_levels: dict[str, Any] | None = None
        self._encrypted = False
        self._members: dict[str, str] = {}
        """State key -> user id of the room's active call memberships."""
        self._hashed: dict[str, tuple[str, str]] = {}
        """State key -> (``/get_token`` LiveKit identity, user id) of the active memberships."""
        self._member_events: dict[str, str] = {}
        """Event id -> state key of the active call memberships (what hands and reactions
        relate to)."""
        self._hands: dict[str, tuple[str, float]] = {}
        """State key -> (reaction event id, seconds since the epoch) of the members' raised
        hands, seen since the link entered the room or read back then."""
        self._lowered: set[str] | None = None
        """Hands (event ids) that went down while hands are read back (None when they are
        not)."""
        self._reactions_out = RateLimiter(
            REACTIONS_PER_SECOND * 60, burst=REACTION_BURST, max_keys=1024
        )
        """Reactions a ghost sends, at the rate a participant here may send them."""
        self._ringing = False
        self._noticed = ""
        self.media: CallMedia | None = None
        """The call's end-to-end encryption, in an encrypted room."""
        self.chat_crypto: RoomChatEncryption | None = None
        """The chat's end-to-end encryption (Megolm), in an encrypted room."""
        self._announced = False
        self._unlisten_to_device: Any = None

    # --- the Link protocol --------------------------------------------------------------------

    def status(self) -> LinkStatus:
        if self._entered and self._bridge is not None:
            bridge = self._bridge.status()
            if bridge.state is LinkState.CONNECTED:
                return dataclasses.replace(bridge, detail="in the Matrix room's call")
            return dataclasses.replace(bridge, detail=f"LiveKit: {bridge.detail}")
        return self._status

    async def start(self) -> None:
        if self._task is None:
            self._unlisten = self.service.listen(self._on_matrix_event)
            self._unlisten_to_device = self.service.listen_to_device(self._on_to_device)
            self._task = asyncio.create_task(self._run(), name=f"matrix-link-{self.room_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._unlisten_to_device is not None:
            self._unlisten_to_device()
            self._unlisten_to_device = None
        await self._leave_call()
        self._set(LinkState.STOPPED, "unlinked")

    async def forget(self) -> None:
        """Nothing to tell Matrix: ``stop()`` ends the ghosts; the bot stays in the room, so that
        linking it again needs no new invite (and another room here may link it too)."""

    # --- identities ---------------------------------------------------------------------------

    def is_ours(self, user_id: str) -> bool:
        return ids.is_ours(
            user_id,
            sender_localpart=self.config.sender_localpart,
            user_prefix=self.config.user_prefix,
            server_name=self.config.server_name,
        )

    def ghost_user_id(self, participant_id: str) -> str:
        return ids.ghost_user_id(self.config.user_prefix, participant_id, self.config.server_name)

    def user_of(self, identity: str) -> str | None:
        """The Matrix user id of a LiveKit identity: ``{user}:{device}`` (``/sfu/get``), or the
        hashed identity (``/get_token``) of one of the room's active call memberships."""
        split = ids.split_identity(identity)
        if split is not None:
            return split[0]
        return next((user for hashed, user in self._hashed.values() if hashed == identity), None)

    def member_identity(self, identity: str) -> str:
        """The ``{user}:{device}`` a LiveKit identity stands for (a hashed one: of the active
        call membership it is the identity of); its member's media keys are filed by it."""
        for key, (hashed, user) in self._hashed.items():
            member = member_of({"type": CALL_MEMBER, "state_key": key, "sender": user})
            if hashed == identity and member is not None:
                return ids.livekit_identity(*member)
        return identity

    def hand_of(self, identity: str) -> float | None:
        """When the Matrix member a LiveKit identity stands for raised their hand, None if it is
        down."""
        key = self._hand_key(identity)
        return self._hands[key][1] if key is not None else None

    def _hand_key(self, identity: str) -> str | None:
        """The membership (state key) of the raised hand of the Matrix member IDENTITY stands
        for, None if it is down."""
        member = self.member_identity(identity)
        for key in self._hands:
            user = self._members.get(key, "")
            found = member_of({"type": CALL_MEMBER, "state_key": key, "sender": user})
            if found is not None and ids.livekit_identity(*found) == member:
                return key
        return None

    def lower_hand(self, identity: str) -> None:
        """A host here lowered the hand of the Matrix member IDENTITY stands for: it stays down
        here until they raise it again, and the bot redacts their "🖐️" reaction, which lowers it
        in Element Call too, when the room's power levels let the bot redact others' events;
        else it stays raised in the Matrix room, and the log says why."""
        key = self._hand_key(identity)
        if key is None:
            return
        event_id, _ = self._hands.pop(key)
        self._note_lowered(event_id)
        if not may_redact(self._power_levels, self.bot_user_id):
            log.info(
                "a hand lowered here stays raised in %s: %s may not redact others' events",
                self.matrix_room_id,
                self.bot_user_id,
            )
            return
        self._spawn(self._redact_hand(event_id))

    async def _redact_hand(self, event_id: str) -> None:
        try:
            await self.service.client.redact(
                self.matrix_room_id, event_id, as_user=self.bot_user_id
            )
        except MatrixError as error:
            log.info("a hand lowered here stays raised in %s: %s", self.matrix_room_id, error)

    def matrix_name(self, identity: str, livekit_name: str = "") -> str:
        """A Matrix member's name as this room shows names: their display name in the Matrix
        room, else their LiveKit name, else their user id's localpart."""
        user_id = self.user_of(identity) or identity
        parts = ids.split_user_id(user_id)
        localpart = parts[0] if parts else identity
        for name in (self._names.get(user_id, ""), livekit_name, localpart):
            shown = display_name(name)
            if shown:
                return shown
        return "Matrix"

    # --- supervision --------------------------------------------------------------------------

    def _set(self, state: LinkState, detail: str = "") -> None:
        if state != self._status.state or detail != self._status.detail:
            log.info("link %s of room %s: %s %s", self.target, self.room_id, state, detail)
        self._status = LinkStatus(state, detail, time.time(), self._status.attempts)

    def _room(self) -> Room | None:
        try:
            return self.gateway.rooms.get(self.room_id)
        except RoomError:
            return None

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coroutine)

    def _break(self, reason: str) -> None:
        if self._trouble is not None and not self._trouble.done():
            self._trouble.set_result(reason)

    async def _run(self) -> None:
        delay = FIRST_RETRY
        while True:
            try:
                await self._enter()
            except asyncio.CancelledError:
                raise
            except _Refused as refusal:
                self._status.attempts += 1
                self._set(LinkState.REFUSED, refusal.reason)
                if refusal.notice:
                    await self._notice(refusal.reason)
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), REFUSED_RECHECK)
                continue
            except Exception as error:  # the homeserver failed, or a bug: report and retry
                if not isinstance(error, MatrixError):
                    log.exception("Matrix link %s failed", self.target)
                reason = str(error) if isinstance(error, MatrixError) else "internal error"
                self._status.attempts += 1
                self._set(LinkState.RETRYING, f"{reason}; next attempt in {delay:g} s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, float(self.config.reconnect_max_seconds))
                continue
            delay = FIRST_RETRY
            self._status.attempts = 0
            self._noticed = ""
            self._set(LinkState.CONNECTED, "in the Matrix room")
            try:
                reason = await self._in_room()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the link: report it, leave, enter again
                log.exception("Matrix link %s failed", self.target)
                reason = "internal error"
            log.info("link %s of room %s: %s", self.target, self.room_id, reason)
            await self._leave_call()
            if reason == "internal error":
                await asyncio.sleep(float(self.config.reconnect_max_seconds))

    async def _enter(self) -> None:
        """The bot in the Matrix room, its state read, bridging allowed; else _Refused."""
        client = self.service.client
        room = self.matrix_room
        if room.startswith("#"):
            try:
                room = await client.resolve_alias(room)
            except MatrixUnavailable:
                raise
            except MatrixError:
                raise _Refused(f"no Matrix room has the alias {room}", notice=False) from None
            self.matrix_room_id = room
        try:
            self.matrix_room_id = await client.join(room, as_user=self.bot_user_id)
        except MatrixUnavailable:
            raise
        except MatrixError as error:
            log.info("the bot cannot join %s: %s", room, error)
            raise _Refused(not_invited(self.bot_user_id), notice=False) from None
        self._read_state(await client.room_state(self.matrix_room_id, as_user=self.bot_user_id))
        # Memberships held before (a restart, or ghosts whose person left while the homeserver
        # was down) end now; the people here get theirs again below.
        for ended in await end_leftovers(
            client, self.service.store, matrix_room_id=self.matrix_room_id
        ):
            with contextlib.suppress(MatrixError):
                await self.service.ghosts.leave(self.matrix_room_id, ended.user_id)
        problem = self._problem()
        if problem:
            raise _Refused(problem, notice=True)

    def _problem(self) -> str:
        return power_problem(self._power_levels, self.bot_user_id)

    async def _notice(self, text: str) -> None:
        """Say it once in the Matrix room (again only when the reason changes)."""
        if text == self._noticed or not self.matrix_room_id:
            return
        try:
            await self.service.client.send(
                self.matrix_room_id,
                "m.room.message",
                {"msgtype": "m.notice", "body": notice_body(text)},
                as_user=self.bot_user_id,
            )
            self._noticed = text
        except MatrixError as error:
            log.warning("notice not sent to %s: %s", self.matrix_room_id, error)

    async def _in_room(self) -> str:
        """Bridge until something makes it stop (the bot left, the room now forbids it)."""
        self._trouble = asyncio.get_running_loop().create_future()
        self._entered = True
        self._events = self.gateway.bus.subscribe(self.room_id)
        self._spawn(self._follow_room())
        if self._encrypted and self.media is None:
            keys = CallEncryption(
                self.service.client,
                self.service.store,
                pickle_key(self.config.as_token),
                self.matrix_room_id,
            )
            self.media = CallMedia(
                keys, lambda text: self._spawn(self._notice(text)), self.member_identity
            )
            self.chat_crypto = RoomChatEncryption(self.service.client, self.matrix_room_id)
            keys.on_decrypted = self._on_olm_event
            self._sync_call_keys()
        if self._bridge is None:
            self._bridge = self.bridge_factory(
                self.gateway, self.room_id, self._settings(), _Policy(self)
            )
            await self._bridge.start()
        self._spawn(self._read_back_hands())
        room = self._room()
        for participant in list(room.participants.values()) if room is not None else []:
            self._schedule_ghost(participant.id)
        return await self._trouble

    async def _read_back_hands(self) -> None:
        """The hands the room's members raised before the link entered it, as if seen live:
        each active membership's annotations (_read_back_hand; at most the room's capacity of
        memberships), within READ_BACK_SECONDS."""
        memberships = [
            (event_id, key)
            for event_id, key in self._member_events.items()
            if not self.is_ours(self._members.get(key, ""))
        ][: self.gateway.rooms.max_participants]
        self._lowered = set()
        try:
            async with asyncio.timeout(READ_BACK_SECONDS):
                for event_id, key in memberships:
                    if self._member_events.get(event_id) != key:
                        continue  # ended meanwhile
                    await self._read_back_hand(event_id, key)
        except TimeoutError:
            log.info("hands of %s not all read back in %g s", self.target, READ_BACK_SECONDS)
        finally:
            self._lowered = None

    async def _read_back_hand(self, event_id: str, key: str) -> None:
        """The hand on the membership EVENT_ID (state key KEY), read back a page at a time, newest
        first, until its member's is found (at most READ_BACK_PAGES pages)."""
        page: str | None = None
        for _ in range(READ_BACK_PAGES):
            try:
                events, page = await self.service.client.relations(
                    self.matrix_room_id,
                    event_id,
                    "m.annotation",
                    social.REACTION,
                    limit=READ_BACK_PAGE,
                    page=page,
                    as_user=self.bot_user_id,
                )
            except MatrixError as error:
                log.info("hands on %s not read back: %s", event_id, error)
                return
            for hand in social.hands_in(events, event_id):
                if self._lowered is not None and hand["event_id"] not in self._lowered:
                    self._on_call_social(hand)
            if key in self._hands or page is None:
                return

    def _settings(self) -> BridgeSettings:
        return BridgeSettings(
            url=self.config.livekit_ws_url,
            api_key=self.config.livekit_api_key,
            api_secret=self.config.livekit_api_secret,
            livekit_room=livekit_room_name(self.config, self.matrix_room_id),
            bridge_identity=ids.livekit_identity(self.bot_user_id, f"bridge-{self.room_id}"),
            target=self.target,
            reconnect_max_seconds=self.config.reconnect_max_seconds,
            chat=False,
            media=self.media,
        )

    async def _leave_call(self) -> None:
        """Everything the link took, given back: tasks, ghosts (their memberships ended, the
        Matrix room left), the LiveKit half (its participants here removed)."""
        self._entered = False
        await self._tasks.cancel()
        if self._events is not None:
            self._events.close()
            self._events = None
        ghosts = list(self.ghosts.values())
        if ghosts:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(self._end_ghost(g) for g in ghosts), return_exceptions=True),
                    STOP_SECONDS,
                )
        self.ghosts.clear()  # only now: a stop cancelling this ends the same ghosts again
        if self._bridge is not None:
            bridge, self._bridge = self._bridge, None
            with contextlib.suppress(Exception):
                await bridge.stop()
        if self.media is not None:
            media, self.media = self.media, None
            await media.close()
        self.chat_crypto = None
        self._announced = False

    # --- people here -> ghosts in the Matrix room ---------------------------------------------

    async def _follow_room(self) -> None:
        assert self._events is not None
        async for event in self._events:
            self._on_room_event(event)

    def _on_room_event(self, event: RoomEvent) -> None:
        if isinstance(event, ParticipantJoined | ParticipantUpdated | ParticipantLeft):
            self._schedule_ghost(event.participant.id)
        elif isinstance(event, ChatMessage) and event.to is None:
            ghost = self.ghosts.get(event.sender.id)
            if ghost is not None and ghost.joined:
                self._spawn(self._send_chat(ghost, event.text))
        elif isinstance(event, Reaction):
            ghost = self.ghosts.get(event.participant_id)
            keeper = ghost.keeper if ghost is not None else None
            if ghost is None or keeper is None or not keeper.held or not keeper.event_id:
                return
            if self._reactions_out.allow(ghost.user_id):
                content = social.call_reaction_content(keeper.event_id, event.emoji)
                self._spawn(self._send_as(ghost, social.CALL_REACTION, content))

    def _from_matrix(self) -> set[str]:
        """Participant ids here that this link brought from the Matrix room."""
        return set(self._bridge.identities().values()) if self._bridge is not None else set()

    def _wanted(self, participant: Participant | None) -> bool:
        return (
            self._entered
            and participant is not None
            and participant.state is ParticipantState.JOINED
            and participant.id not in self._from_matrix()
        )

    def _schedule_ghost(self, participant_id: str) -> None:
        if not self._entered:
            return
        room = self._room()
        participant = room.participants.get(participant_id) if room is not None else None
        ghost = self.ghosts.get(participant_id)
        if ghost is None:
            if not self._wanted(participant):
                return
            if len(self.ghosts) >= self.gateway.rooms.max_participants:
                log.warning("link %s: no ghost for %s (room capacity)", self.target, participant_id)
                return
            ghost = _Ghost(participant_id, self.ghost_user_id(participant_id))
            self.ghosts[participant_id] = ghost
        self._spawn(self._sync_ghost(ghost))

    async def _sync_ghost(self, ghost: _Ghost) -> None:
        async with ghost.lock:
            try:
                await self._sync_ghost_locked(ghost)
                ghost.retry = 0.0
            except MatrixError as error:
                ghost.retry = min(max(ghost.retry * 2, 1.0), GHOST_RETRY_MAX)
                log.warning(
                    "ghost of %s: %s; again in %g s", ghost.participant_id, error, ghost.retry
                )
                if not ghost.retrying:
                    ghost.retrying = True
                    self._spawn(self._retry_ghost(ghost))

    async def _retry_ghost(self, ghost: _Ghost) -> None:
        try:
            await asyncio.sleep(ghost.retry)
        finally:
            ghost.retrying = False
        if self.ghosts.get(ghost.participant_id) is ghost:
            self._schedule_ghost(ghost.participant_id)

    async def _sync_ghost_locked(self, ghost: _Ghost) -> None:
        room = self._room()
        participant = room.participants.get(ghost.participant_id) if room is not None else None
        if participant is None or not self._wanted(participant):
            if self.ghosts.get(ghost.participant_id) is ghost:
                del self.ghosts[ghost.participant_id]
            if self._bridge is not None:
                self._bridge.resync()
            await self._end_ghost_locked(ghost)
            return
        ghosts = self.service.ghosts
        if ghost.name != participant.name:
            await ghosts.ensure(ghost.user_id, participant.name)
            ghost.name = participant.name
        if not ghost.joined:
            await ghosts.join(self.matrix_room_id, ghost.user_id)
            ghost.joined = True
        if ghost.keeper is None:
            if self.media is not None:
                await self.media.add_ghost(ghost.user_id)  # its device and key come first
            ghost.keeper = MembershipKeeper(
                self.service.client,
                self.service.store,
                self.matrix_room_id,
                ghost.user_id,
                ids.GHOST_DEVICE,
                self.focus_url,
                intent="audio" if participant.origin == "sip" else "video",
                on_held=lambda event_id: self._on_held(ghost, event_id),
            )
            ghost.keeper.start()
        await self._sync_hand(ghost, participant)

    async def _sync_hand(self, ghost: _Ghost, participant: Participant) -> None:
        """The ghost's hand in the Matrix room as its person's here: raised on its membership
        event (again when the membership is new), redacted when lowered."""
        keeper = ghost.keeper
        membership = keeper.event_id if keeper is not None and keeper.held else ""
        raised = participant.hand_raised_at is not None and bool(membership)
        if ghost.hand is not None and (not raised or ghost.hand[0] != membership):
            hand, ghost.hand = ghost.hand, None
            if hand[0] == membership:  # an ended membership took its hand with it
                await self.service.client.redact(
                    self.matrix_room_id, hand[1], as_user=ghost.user_id
                )
        if raised and ghost.hand is None:
            event_id = await self.service.client.send(
                self.matrix_room_id,
                social.REACTION,
                social.hand_content(membership),
                as_user=ghost.user_id,
            )
            ghost.hand = (membership, event_id)

    async def _end_ghost(self, ghost: _Ghost) -> None:
        """The ghost's membership ended and the ghost out of the Matrix room."""
        async with ghost.lock:
            await self._end_ghost_locked(ghost)

    async def _end_ghost_locked(self, ghost: _Ghost) -> None:
        keeper, ghost.keeper = ghost.keeper, None
        ghost.hand = None  # its membership ends, and the hand with it
        if keeper is not None:
            await keeper.leave()
        if self.media is not None:
            self.media.remove_ghost(ghost.user_id)
        if self.chat_crypto is not None:
            self.chat_crypto.forget_ghost(ghost.user_id)
        if ghost.joined:
            ghost.joined = False
            try:
                await self.service.ghosts.leave(self.matrix_room_id, ghost.user_id)
            except MatrixError as error:
                log.info("ghost %s stays in the Matrix room: %s", ghost.user_id, error)

    def _on_held(self, ghost: _Ghost, event_id: str) -> None:
        """A ghost's membership is in place: its LiveKit participant may come; it rings the room
        when it starts the call."""
        if self._bridge is not None:
            self._bridge.resync()
        assert ghost.keeper is not None
        if ghost.hand is None or ghost.hand[0] != event_id:
            self._schedule_ghost(ghost.participant_id)  # its person's hand on this membership
        others = [key for key in self._members if key != ghost.keeper.state_key]
        self._members[ghost.keeper.state_key] = ghost.user_id
        if not others and not self._ringing:
            self._ringing = True
            self._spawn(self._ring(ghost, event_id))
        if self.media is not None and not self._announced:
            self._announced = True
            people = sum(1 for g in self.ghosts.values() if g.keeper is not None)
            self._spawn(self._notice(announcement(people, self.room_id)))

    async def _ring(self, ghost: _Ghost, event_id: str) -> None:
        content = ring_content(event_id, now_ms=int(time.time() * 1000))
        try:
            await self.service.client.send(
                self.matrix_room_id, RTC_NOTIFICATION, content, as_user=ghost.user_id
            )
        except MatrixError as error:
            log.info("ring of %s not sent: %s", self.matrix_room_id, error)

    async def _send_as(self, ghost: _Ghost, kind: str, content: dict[str, Any]) -> None:
        try:
            await self.service.client.send(
                self.matrix_room_id, kind, content, as_user=ghost.user_id
            )
        except MatrixError as error:
            log.warning("%s to %s not sent: %s", kind, self.matrix_room_id, error)

    async def _send_chat(self, ghost: _Ghost, text: str) -> None:
        kind, content = "m.room.message", {"msgtype": "m.text", "body": text}
        try:
            if self.chat_crypto is not None:  # an encrypted room: as Megolm from the ghost
                device = self.media.keys.device(ghost.user_id) if self.media else None
                if device is None:
                    log.warning("chat to %s not sent: no device for its ghost", self.target)
                    return
                members = [user for user in self._names if not self.is_ours(user)]
                content = await self.chat_crypto.encrypt(device, members, kind, content)
                kind = "m.room.encrypted"
            await self.service.client.send(
                self.matrix_room_id, kind, content, as_user=ghost.user_id
            )
        except MatrixError as error:
            log.warning("chat to %s not sent: %s", self.matrix_room_id, error)

    # --- the Matrix room -> here --------------------------------------------------------------

    def _read_state(self, state: list[dict[str, Any]]) -> None:
        self._names.clear()
        self._members.clear()
        self._hashed.clear()
        self._member_events.clear()
        self._hands.clear()
        self._power_levels = None
        self._encrypted = False
        for event in state:
            self._apply_state(event)

    def _apply_state(self, event: Mapping[str, Any]) -> None:
        kind, key = event.get("type"), event.get("state_key")
        content = event.get("content")
        content = content if isinstance(content, dict) else {}
        if kind == "m.room.member" and isinstance(key, str):
            if content.get("membership") == "join":
                name = content.get("displayname")
                self._names[key] = name if isinstance(name, str) and name.strip() else ""
            else:
                self._names.pop(key, None)
        elif kind == "m.room.power_levels" and key == "":
            self._power_levels = content
        elif kind == "m.room.encryption" and key == "":
            self._encrypted = bool(content.get("algorithm"))
        elif kind == CALL_MEMBER and isinstance(key, str):
            member = member_of(event)
            self._hashed.pop(key, None)
            self._hands.pop(key, None)  # a new membership has no hand (Element Call's rule)
            for old in [e for e, k in self._member_events.items() if k == key]:
                del self._member_events[old]
            if member is not None and is_active(content):
                self._members[key] = member[0]
                event_id = event.get("event_id")
                if isinstance(event_id, str):
                    self._member_events[event_id] = key
                hashed = hashed_identity_of_membership(member[0], content)
                if hashed is not None:
                    self._hashed[key] = (hashed, member[0])
            else:
                self._members.pop(key, None)
                if not self._members:
                    self._ringing = False
                    self._announced = False  # the call ended: the next one is announced again

    async def _on_matrix_event(self, event: dict[str, Any]) -> None:
        """One room event from the homeserver (the service's transactions, in order)."""
        room_id = event.get("room_id")
        kind = event.get("type")
        if room_id != self.matrix_room_id:
            if (
                kind == "m.room.member"
                and event.get("state_key") == self.bot_user_id
                and self._status.state is LinkState.REFUSED
                and (room_id == self.matrix_room or not self.matrix_room_id)
            ):
                self._changed.set()  # invited: try again now
            return
        if "state_key" in event:
            self._on_matrix_state(event)
        elif kind == "m.room.encrypted":
            self._on_encrypted(event)
        elif kind == "m.room.redaction":
            self._on_redaction(event)
        else:
            self._on_timeline(event)

    def _on_timeline(self, event: dict[str, Any]) -> None:
        """A message, a raised hand or a call reaction (in clear, or decrypted)."""
        kind = event.get("type")
        if kind == "m.room.message":
            self._on_matrix_message(event)
        elif kind in (social.REACTION, social.CALL_REACTION):
            self._on_call_social(event)

    def _membership_of(self, event: Mapping[str, Any], target: str | None) -> str | None:
        """The state key of the active membership TARGET, when the event's sender holds it."""
        key = self._member_events.get(target) if target is not None else None
        sender = event.get("sender")
        if key is None or self._members.get(key) != sender or self.is_ours(str(sender)):
            return None
        return key

    def _on_call_social(self, event: dict[str, Any]) -> None:
        """A member raised their hand, or reacted: so do they here."""
        content = event.get("content")
        if not isinstance(content, dict):
            return
        if event.get("type") == social.REACTION:
            key = self._membership_of(event, social.hand_target(content))
            event_id = event.get("event_id")
            if key is None or not isinstance(event_id, str) or key in self._hands:
                return
            self._hands[key] = (event_id, min(social.sent_at(event) or time.time(), time.time()))
            if self._bridge is not None:
                self._bridge.resync()
            return
        key = self._membership_of(event, social.reaction_target(content))
        emoji = social.reaction_of(content)
        room = self._room()
        if key is None or emoji is None or room is None or self._bridge is None:
            return
        member = member_of({"type": CALL_MEMBER, "state_key": key, "sender": self._members[key]})
        for identity, participant_id in self._bridge.identities().items():
            if member is not None and self.member_identity(identity) == ids.livekit_identity(
                *member
            ):
                with contextlib.suppress(RoomError):  # beyond the room's rate: dropped
                    self.gateway.rooms.react(room, participant_id, emoji)
                return

    def _on_redaction(self, event: dict[str, Any]) -> None:
        """A member's raised hand redacted: their hand goes down here."""
        redacts = event.get("redacts")
        content = event.get("content")
        if not isinstance(redacts, str) and isinstance(content, dict):
            redacts = content.get("redacts")  # room version 11
        if isinstance(redacts, str):
            self._note_lowered(redacts)
        for key, (event_id, _) in list(self._hands.items()):
            if event_id == redacts:
                del self._hands[key]
                if self._bridge is not None:
                    self._bridge.resync()

    def _note_lowered(self, event_id: str) -> None:
        """While hands are read back, the hand EVENT_ID went down (redacted, or lowered by a host
        here): a page read before then does not raise it again."""
        lowered = self._lowered
        if lowered is not None and len(lowered) < MAX_LOWERED:
            lowered.add(event_id)

    def _on_matrix_state(self, event: dict[str, Any]) -> None:
        kind, key = event.get("type"), event.get("state_key")
        self._apply_state(event)
        if kind == "m.room.member":
            membership = (event.get("content") or {}).get("membership")
            if key == self.bot_user_id:
                if membership == "invite":
                    self._changed.set()
                elif membership in ("leave", "ban"):
                    self._break(f"the bot is out of the Matrix room ({membership})")
            elif isinstance(key, str) and self.is_ours(key):
                ghost = next((g for g in self.ghosts.values() if g.user_id == key), None)
                if ghost is not None and membership in ("leave", "ban") and ghost.joined:
                    ghost.joined = False  # kicked: joins again (the sync invites it back)
                    self._schedule_ghost(ghost.participant_id)
            elif self._bridge is not None:
                self._bridge.resync()  # a Matrix member's name may have changed
        elif kind in ("m.room.power_levels", "m.room.encryption"):
            if self._status.state is LinkState.REFUSED:
                self._changed.set()
            elif self._entered and self._problem():
                self._break(self._problem())  # entering again refuses, with the notice
            elif self._entered and self._encrypted and self.media is None:
                self._break("the room is now encrypted")  # entering again sets up E2EE
        elif kind == CALL_MEMBER and isinstance(key, str):
            self._sync_call_keys()
            if self._bridge is not None:
                self._bridge.resync()  # a member with a hashed identity may come or go
            ghost = next(
                (
                    g
                    for g in self.ghosts.values()
                    if g.keeper is not None and g.keeper.state_key == key
                ),
                None,
            )
            if ghost is not None and ghost.keeper is not None and key not in self._members:
                ghost.keeper.vanished()

    def _sync_call_keys(self) -> None:
        """The call's other members to the media keys (ours shared with joiners, rotated)."""
        if self.media is not None:
            others = {k: u for k, u in self._members.items() if not self.is_ours(u)}
            self._spawn(self.media.members_changed(others))

    async def _on_to_device(self, event: dict[str, Any]) -> None:
        """A to-device event (the service's transactions): to one of this link's ghosts, it may
        bring a member's media key."""
        to_user = event.get("to_user_id")
        if self.media is not None and any(g.user_id == to_user for g in self.ghosts.values()):
            await self.media.on_to_device(event)

    async def _on_olm_event(self, device: OlmDevice, event: DecryptedEvent) -> None:
        """An Olm-decrypted to-device event of a ghost's device: a member's room key lets the
        chat events waiting for it through."""
        if self.chat_crypto is None:
            return
        try:
            released = await self.chat_crypto.take_room_key(device, event)
        except (MegolmError, OlmError, MatrixError) as error:
            log.info("room key from %s refused: %s", event.sender, error)
            return
        for inner in released:
            self._on_timeline(inner)

    def _on_encrypted(self, event: dict[str, Any]) -> None:
        """An encrypted room event: its chat, once decrypted (later when its key comes)."""
        if self.chat_crypto is None or self.is_ours(str(event.get("sender"))):
            return
        try:
            inner = self.chat_crypto.decrypt(event)
        except MegolmError as error:
            log.info("encrypted event from %s not decrypted: %s", event.get("sender"), error)
            return
        if inner is not None:
            self._on_timeline(inner)

    def _on_matrix_message(self, event: dict[str, Any]) -> None:
        sender = event.get("sender")
        content = event.get("content")
        if not isinstance(sender, str) or not isinstance(content, dict) or self.is_ours(sender):
            return
        text = chat_text(content)
        room = self._room()
        if not text or room is None or self._bridge is None:
            return
        for identity, participant_id in self._bridge.identities().items():
            if self.user_of(identity) == sender:
                with contextlib.suppress(RoomError):
                    self.gateway.rooms.chat(room, participant_id, text)
                return
