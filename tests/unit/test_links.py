"""LinkManager (gateway/links.py) with a fake adapter: validation, persistence, restart, stop, failures,
and callers sent to a linked foreign room (the local room made and linked on demand, named after
the target or its digest and kept for the gateway, the foreign lobby asked, the link released by
the last caller)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.links import (
    ADMITTED,
    Admission,
    AdmissionOutcome,
    AdmissionRefused,
    LinkError,
    LinkManager,
    LinkStatus,
    LinkTargets,
    check_target,
    link_room_id,
)
from gateway.plugins import ProtocolPlugin
from gateway.rooms import ROOM_ID_PATTERN, ParticipantState, Role, RoomError
from gateway.server import Gateway
from protocols.matrix.targets import normalize_target as normalize_matrix_target
from protocols.visio.plugin import plugin as visio_plugin

ROOM_UUID = "0b4c8f2e-5d1a-4c3b-9e7f-1a2b3c4d5e6f"


class FakeLink:
    def __init__(self, adapter: FakeAdapter, room_id: str, target: str) -> None:
        self.adapter = adapter
        self.room_id = room_id
        self.target = target
        self.state = "connecting"
        self.since = time.time()

    def status(self) -> LinkStatus:
        return LinkStatus(self.state, "", self.since, 0, 2 if self.state == "connected" else 0)

    async def start(self) -> None:
        self.adapter.started.append((self.room_id, self.target))
        if self.adapter.fail_start:
            raise RuntimeError("the LiveKit server refused the token")
        if self.adapter.hang_start:
            await asyncio.sleep(3600)
        self.state = self.adapter.start_state

    async def stop(self) -> None:
        self.adapter.stopped.append((self.room_id, self.target))
        self.state = "stopped"


class FakeAdapter:
    scheme = "visio"

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.stopped: list[tuple[str, str]] = []
        self.opened: list[FakeLink] = []
        self.fail_start = False
        self.fail_open = False
        self.hang_start = False
        self.start_state = "connected"
        """What a started link reports ("refused": the foreign room turned us away)."""

    def normalize(self, target: str) -> str:
        rest = target.split(":", 1)[1]
        try:
            return f"visio:{uuid.UUID(rest)}"
        except ValueError:
            raise ValueError("a Visio room is visio: followed by the room's UUID") from None

    def open(self, room_id: str, target: str) -> FakeLink:
        if self.fail_open:
            raise OSError("cannot open")
        link = FakeLink(self, room_id, target)
        self.opened.append(link)
        return link


def make_gateway(data_dir: Path) -> Gateway:
    """A gateway that knows only Visio's link scheme (other plugins may be installed for tests)."""
    config = Config()
    config.server.data_dir = str(data_dir)
    config.sip.enabled = False
    config.rooms.demo_room = ""
    gateway = Gateway(config)
    gateway.links.set_hints(visio_plugin.link_schemes)
    return gateway


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def test_link_persists_and_a_new_gateway_opens_it_at_start(data_dir: Path) -> None:
    gateway = make_gateway(data_dir)
    adapter = FakeAdapter()
    gateway.links.register(adapter)
    await gateway.links.start()
    room = gateway.rooms.create("conseil")
    status = await gateway.links.link("conseil", f"VISIO:{ROOM_UUID.upper()}")
    target = f"visio:{ROOM_UUID}"
    assert status.state == "connected"
    assert room.links == [target]
    assert room.to_wire()["links"] == [target]  # the ORS wire keeps plain strings
    assert adapter.started == [("conseil", target)]
    [(shown, live)] = gateway.links.links("conseil")
    assert (shown, live.state, live.remote_participants) == (target, "connected", 2)
    await gateway.links.stop()
    assert adapter.stopped == [("conseil", target)]
    assert gateway.store.get_room("conseil").links == [target]  # stop keeps the store
    gateway.store.close()

    restarted = make_gateway(data_dir)
    again = FakeAdapter()
    restarted.links.register(again)
    await restarted.links.start()
    assert again.started == [("conseil", target)]
    assert restarted.rooms.get("conseil").links == [target]
    assert restarted.links.links("conseil")[0][1].state == "connected"
    await restarted.links.stop()
    restarted.store.close()


async def test_unlink_stops_the_link_and_forgets_it(data_dir: Path) -> None:
    gateway = make_gateway(data_dir)
    adapter = FakeAdapter()
    gateway.links.register(adapter)
    room = gateway.rooms.create("conseil")
    await gateway.links.link("conseil", f"visio:{ROOM_UUID}")
    await gateway.links.unlink("conseil", f"visio:{ROOM_UUID.upper()}")
    assert adapter.stopped == [("conseil", f"visio:{ROOM_UUID}")]
    assert room.links == [] and gateway.store.get_room("conseil").links == []
    assert gateway.links.links("conseil") == []
    with pytest.raises(LinkError) as refused:
        await gateway.links.unlink("conseil", f"visio:{ROOM_UUID}")
    assert (refused.value.code, refused.value.status) == ("link_not_found", 404)
    gateway.store.close()


async def test_deleting_a_room_stops_its_links(data_dir: Path) -> None:
    gateway = make_gateway(data_dir)
    adapter = FakeAdapter()
    gateway.links.register(adapter)
    await gateway.links.start()
    gateway.rooms.create("conseil")
    gateway.rooms.create("autre")
    await gateway.links.link("conseil", f"visio:{ROOM_UUID}")
    other = str(uuid.uuid4())
    await gateway.links.link("autre", f"visio:{other}")
    gateway.rooms.delete("conseil")  # announced on the bus as RoomClosed
    async with asyncio.timeout(5):
        while not adapter.stopped:
            await asyncio.sleep(0.01)
    assert adapter.stopped == [("conseil", f"visio:{ROOM_UUID}")]
    assert gateway.links.live("conseil", f"visio:{ROOM_UUID}") is None
    assert gateway.links.live("autre", f"visio:{other}") is not None
    await gateway.links.stop()
    gateway.store.close()


async def test_a_failing_adapter_gives_a_failed_status_and_keeps_the_link(data_dir: Path) -> None:
    gateway = make_gateway(data_dir)
    adapter = FakeAdapter()
    adapter.fail_start = True
    gateway.links.register(adapter)
    gateway.rooms.create("conseil")
    status = await gateway.links.link("conseil", f"visio:{ROOM_UUID}")
    assert status.state == "failed" and status.attempts == 1
    assert "could not start" in status.detail and "refused the token" in status.detail
    assert adapter.stopped == [("conseil", f"visio:{ROOM_UUID}")]  # cleaned up after the failure
    assert gateway.rooms.get("conseil").links == [f"visio:{ROOM_UUID}"]
    assert gateway.links.links("conseil")[0][1].state == "failed"
    # the room keeps working, and the link can be removed
    await gateway.links.unlink("conseil", f"visio:{ROOM_UUID}")

    adapter.fail_start = False
    adapter.fail_open = True
    status = await gateway.links.link("conseil", f"visio:{ROOM_UUID}")
    assert status.state == "failed" and "could not be opened" in status.detail
    gateway.store.close()


async def test_a_start_that_never_returns_is_cut_short(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.links.START_TIMEOUT", 0.05)
    gateway = make_gateway(data_dir)
    adapter = FakeAdapter()
    adapter.hang_start = True
    gateway.links.register(adapter)
    gateway.rooms.create("conseil")
    status = await gateway.links.link("conseil", f"visio:{ROOM_UUID}")
    assert status.state == "failed" and "did not start within" in status.detail
    gateway.store.close()


async def test_stored_links_without_their_adapter_show_failed_with_the_reason(
    data_dir: Path,
) -> None:
    gateway = make_gateway(data_dir)
    gateway.rooms.create("conseil")
    gateway.store.add_link("conseil", f"visio:{ROOM_UUID}")
    gateway.rooms._live.clear()
    await gateway.links.start()  # no adapter registered: [visio] url is empty
    [(target, status)] = gateway.links.links("conseil")
    assert target == f"visio:{ROOM_UUID}" and status.state == "failed"
    assert "[visio] url" in status.detail
    await gateway.links.stop()
    gateway.store.close()


@pytest.mark.parametrize(
    ("target", "code", "words"),
    [
        ("", "invalid_link", "visio:VISIO_ROOM_UUID"),
        (42, "invalid_link", "visio:VISIO_ROOM_UUID"),
        ("no-scheme", "invalid_link", "known schemes: visio"),
        ("visio:", "invalid_link", "known schemes: visio"),
        ("ftp:server/room", "invalid_link", "known schemes: visio"),
        (f"visio: {ROOM_UUID}", "invalid_link", "no spaces"),
        ("visio:" + "a" * 600, "invalid_link", "at most 512"),
        ("visio:not-a-uuid", "invalid_link", "the room's UUID"),
    ],
)
async def test_bad_targets_are_refused_and_change_nothing(
    data_dir: Path, target: object, code: str, words: str
) -> None:
    gateway = make_gateway(data_dir)
    gateway.links.register(FakeAdapter())
    room = gateway.rooms.create("conseil")
    with pytest.raises(LinkError) as refused:
        await gateway.links.link("conseil", target)
    assert refused.value.code == code and refused.value.status == 400
    assert words in refused.value.detail
    assert room.links == [] and gateway.store.get_room("conseil").links == []
    gateway.store.close()


async def test_visio_without_its_adapter_says_what_to_configure(data_dir: Path) -> None:
    gateway = make_gateway(data_dir)
    gateway.rooms.create("conseil")
    with pytest.raises(LinkError) as refused:
        await gateway.links.link("conseil", f"visio:{ROOM_UUID}")
    assert refused.value.code == "link_scheme_unavailable" and refused.value.status == 400
    assert "[visio] url" in refused.value.detail
    assert gateway.store.get_room("conseil").links == []
    gateway.store.close()


async def test_duplicates_and_unknown_rooms_are_refused(data_dir: Path) -> None:
    gateway = make_gateway(data_dir)
    adapter = FakeAdapter()
    gateway.links.register(adapter)
    gateway.rooms.create("conseil")
    await gateway.links.link("conseil", f"visio:{ROOM_UUID}")
    with pytest.raises(LinkError) as refused:
        await gateway.links.link("conseil", f"visio:{ROOM_UUID.upper()}")
    assert (refused.value.code, refused.value.status) == ("link_exists", 409)
    assert len(adapter.opened) == 1
    with pytest.raises(Exception) as missing:
        await gateway.links.link("nowhere", f"visio:{ROOM_UUID}")
    assert getattr(missing.value, "code", None) == "room_not_found"
    gateway.store.close()


async def test_ensure_is_idempotent_and_may_skip_the_store(data_dir: Path) -> None:
    gateway = make_gateway(data_dir)
    adapter = FakeAdapter()
    gateway.links.register(adapter)
    room = gateway.rooms.create("conseil")
    first = await gateway.links.ensure("conseil", f"visio:{ROOM_UUID}", persist=False)
    second = await gateway.links.ensure("conseil", f"visio:{ROOM_UUID}")
    assert first is second and len(adapter.opened) == 1
    assert room.links == [f"visio:{ROOM_UUID}"]
    assert gateway.store.get_room("conseil").links == []  # persist=False, then already live
    gateway.store.close()


def test_link_status_wire_shape() -> None:
    status = LinkStatus("retrying", "LiveKit closed the socket", 1700000000.5, 3, 1, 42, 7)
    assert status.to_wire() == {
        "state": "retrying",
        "detail": "LiveKit closed the socket",
        "since": 1700000000500,
        "attempts": 3,
        "remote_participants": 1,
        "packets_in": 42,
        "packets_out": 7,
    }


def test_register_refuses_a_bad_scheme(data_dir: Path) -> None:
    gateway = make_gateway(data_dir)
    adapter = FakeAdapter()
    adapter.scheme = "not a scheme"
    with pytest.raises(ValueError):
        gateway.links.register(adapter)
    assert isinstance(gateway.links, LinkManager) and gateway.links.schemes() == []
    gateway.store.close()


LOCAL = f"visio-{ROOM_UUID}"
TARGET = f"visio:{ROOM_UUID}"


async def test_the_first_caller_makes_and_links_the_room_and_the_last_releases_it(
    data_dir: Path,
) -> None:
    gateway = make_gateway(data_dir)
    adapter = FakeAdapter()
    gateway.links.register(adapter)
    await gateway.links.start()
    try:
        room = gateway.rooms.get(await gateway.links.enter(TARGET, "Phone ••• 42", lambda: 0.0))
        assert room.id == LOCAL and room.policy.lobby  # web visitors wait for a host here
        assert adapter.started == [(LOCAL, TARGET)]
        assert room.links == [TARGET]
        assert gateway.store.get_room(LOCAL).links == []  # not stored: no bridge after restart
        again = gateway.rooms.get(await gateway.links.enter(TARGET, "Phone ••• 07", lambda: 0.0))
        assert again is room and len(adapter.opened) == 1  # idempotent

        caller = gateway.rooms.add_participant(room, "Phone ••• 42", Role.GUEST, "sip", lobby=False)
        assert caller.state is ParticipantState.JOINED
        gateway.rooms.add_participant(room, "Visio user", Role.GUEST, "visio", lobby=False)
        assert not await gateway.links.release(LOCAL, TARGET, 0)
        gateway.rooms.remove_participant(room, caller.id)
        assert not await gateway.links.release(LOCAL, TARGET, 1)
        assert await gateway.links.release(LOCAL, TARGET, 0)
        assert adapter.stopped == [(LOCAL, TARGET)] and room.links == []

        await gateway.links.link(LOCAL, TARGET)  # a host links it on purpose: left alone
        assert not await gateway.links.release(LOCAL, TARGET, 0)
    finally:
        await gateway.links.stop()
        gateway.store.close()


async def test_no_visio_bridge_is_a_clear_error(data_dir: Path) -> None:
    gateway = make_gateway(data_dir)
    try:
        with pytest.raises(LinkError, match="Visio bridge"):
            await gateway.links.enter(TARGET, "Phone", lambda: 0.0)
    finally:
        gateway.store.close()


async def test_a_failed_link_keeps_the_caller_out(data_dir: Path) -> None:
    gateway = make_gateway(data_dir)
    adapter = FakeAdapter()
    adapter.fail_start = True
    gateway.links.register(adapter)
    try:
        with pytest.raises(LinkError, match="refused the token") as refused:
            await gateway.links.enter(TARGET, "Phone", lambda: 0.0)
        assert refused.value.code == "link_failed"
    finally:
        gateway.store.close()


class FakeLobbyAdapter(FakeAdapter):
    """A foreign system whose rooms have a lobby (as Visio's do), deciding ``outcome``."""

    origin = "visio"

    def __init__(self, outcome: AdmissionOutcome) -> None:
        super().__init__()
        self.outcome = outcome
        self.asked: list[tuple[str, str, float]] = []

    async def admit(
        self, target: str, display_name: str, play_waiting: Callable[[], float]
    ) -> Admission:
        self.asked.append((target, display_name, play_waiting()))
        if self.outcome is AdmissionOutcome.ACCEPTED:
            return ADMITTED
        return Admission(self.outcome, "a host said no")


async def test_the_foreign_lobby_admits_or_refuses_the_caller(data_dir: Path) -> None:
    gateway = make_gateway(data_dir)
    lobby = FakeLobbyAdapter(AdmissionOutcome.ACCEPTED)
    gateway.links.register(lobby)
    try:
        assert (
            await gateway.links.enter(f"VISIO:{ROOM_UUID.upper()}", "Phone", lambda: 1.5) == LOCAL
        )
        assert lobby.asked == [(TARGET, "Phone", 1.5)]  # the waiting prompt was started
        lobby.outcome = AdmissionOutcome.DENIED
        with pytest.raises(AdmissionRefused) as refused:
            await gateway.links.enter(TARGET, "Phone", lambda: 1.5)
        assert refused.value.admission.outcome.value == "denied"
        assert isinstance(refused.value, LinkError) and "said no" in refused.value.detail
    finally:
        await gateway.links.stop()
        gateway.store.close()


def visio_targets() -> LinkTargets:
    return LinkTargets({"visio": FakeAdapter().normalize})


def test_local_rooms_of_link_targets() -> None:
    targets = visio_targets()
    assert link_room_id(TARGET) == LOCAL
    assert targets.room_id(f"VISIO:{ROOM_UUID.upper()}") == LOCAL
    assert targets.is_room_id(LOCAL)
    assert not targets.is_room_id("visio-salle")  # an ordinary room whose name starts with visio-
    assert not targets.is_room_id(f"matrix-{ROOM_UUID}")


MATRIX_TARGET = "matrix:!AbCdEf:hs.test"


def digest_room(target: str, scheme: str) -> str:
    return f"{scheme}-{hashlib.sha256(target.encode()).hexdigest()[:16]}"


def test_a_target_whose_text_is_no_room_name_has_a_digested_local_room() -> None:
    local = link_room_id(MATRIX_TARGET)
    assert local == digest_room(MATRIX_TARGET, "matrix") == link_room_id(MATRIX_TARGET)
    assert link_room_id("matrix:!abcdef:hs.test") != local  # Matrix room ids are case-sensitive
    assert link_room_id("matrix:#salle:hs.test") == digest_room("matrix:#salle:hs.test", "matrix")
    assert link_room_id("ors:salle@partner.test") == digest_room("ors:salle@partner.test", "ors")
    assert link_room_id("a+b.c:!x") == digest_room("a+b.c:!x", "a-b-c")  # + and . are no room name
    long_target = "matrix:!" + "x" * 240 + ":hs.test"
    for target in [MATRIX_TARGET, long_target, "echo:!room:example.org", "x:Y", "x:"]:
        assert ROOM_ID_PATTERN.fullmatch(link_room_id(target)), target


def test_digested_local_rooms_are_the_gateways_only() -> None:
    targets = LinkTargets({"matrix": normalize_matrix_target, "visio": FakeAdapter().normalize})
    local = link_room_id(MATRIX_TARGET)
    assert targets.room_id(f" MATRIX:{MATRIX_TARGET[7:]}") == local
    assert targets.is_room_id(local)
    assert targets.is_room_id(link_room_id("matrix:#salle:hs.test"))
    assert targets.is_room_id(LOCAL)
    assert targets.is_room_id("visio-0123456789abcdef")  # every SCHEME-16 hex name is kept
    for ordinary in ["matrix-salle", "matrix-0123456789abcde", "matrix-0123456789abcdeff", "salle"]:
        assert not targets.is_room_id(ordinary), ordinary


async def test_a_user_cannot_make_a_digested_local_room(data_dir: Path) -> None:
    gateway = make_gateway(data_dir)
    targets = LinkTargets({"matrix": normalize_matrix_target})
    gateway.rooms.reserve(targets.is_room_id, "phone callers of a linked meeting")
    local = link_room_id(MATRIX_TARGET)
    try:
        with pytest.raises(RoomError) as refused:
            gateway.rooms.create(local)
        assert refused.value.status == 403 and not gateway.rooms.exists(local)
        gateway.rooms.create("matrix-salle")  # an ordinary name stays free
    finally:
        gateway.store.close()


class FakeMatrixAdapter(FakeAdapter):
    """A scheme whose targets are no room names and whose foreign room has no lobby."""

    scheme = "matrix"

    def normalize(self, target: str) -> str:
        return normalize_matrix_target(target)


async def test_callers_of_a_matrix_target_enter_its_digested_room_and_the_last_releases_it(
    data_dir: Path,
) -> None:
    gateway = make_gateway(data_dir)
    adapter = FakeMatrixAdapter()
    gateway.links.register(adapter)
    await gateway.links.start()
    local = link_room_id(MATRIX_TARGET)
    try:
        room = gateway.rooms.get(await gateway.links.enter(MATRIX_TARGET, "Phone", lambda: 0.0))
        assert room.id == local and room.links == [MATRIX_TARGET] and room.policy.lobby
        assert adapter.started == [(local, MATRIX_TARGET)]
        caller = gateway.rooms.add_participant(room, "Phone ••• 42", Role.GUEST, "sip", lobby=False)
        gateway.rooms.add_participant(room, "Anna", Role.GUEST, "matrix", lobby=False)
        assert not await gateway.links.release(local, MATRIX_TARGET, 0)
        gateway.rooms.remove_participant(room, caller.id)
        assert await gateway.links.release(local, MATRIX_TARGET, 0)  # Matrix people keep no link
        assert adapter.stopped == [(local, MATRIX_TARGET)] and room.links == []
    finally:
        await gateway.links.stop()
        gateway.store.close()


async def test_a_caller_is_turned_away_when_the_foreign_room_refuses_the_link(
    data_dir: Path,
) -> None:
    """Not left alone in a local room whose link the Matrix room refused (no invite)."""
    gateway = make_gateway(data_dir)
    adapter = FakeMatrixAdapter()
    adapter.start_state = "refused"
    gateway.links.register(adapter)
    await gateway.links.start()
    local = link_room_id(MATRIX_TARGET)
    try:
        with pytest.raises(LinkError) as refused:
            await gateway.links.enter(MATRIX_TARGET, "Phone", lambda: 0.0)
        assert refused.value.code == "link_failed" and "refused" in str(refused.value)
        assert gateway.rooms.get(local).participants == {}
        assert await gateway.links.release(local, MATRIX_TARGET, 0)  # the caller's hang-up
        assert gateway.rooms.get(local).links == []
    finally:
        await gateway.links.stop()
        gateway.store.close()


def test_configuration_files_check_targets_with_the_installed_plugins() -> None:
    visio = ProtocolPlugin(
        "visio", "Visio", link_schemes={"visio": "..."}, normalize_target=FakeAdapter().normalize
    )
    assert check_target(f" VISIO:{ROOM_UUID.upper()}", [visio]) == TARGET
    for target, words in [
        ("visio:salle", "UUID"),
        ("visio:", "SCHEME:ROOM"),
        (f"matrix:{ROOM_UUID}", "known schemes: visio"),
    ]:
        with pytest.raises(ValueError, match=words):
            check_target(target, [visio])
