"""The page reconnects by itself (spec 6.6, 6.7), seen from the people in the meeting.

A gateway of this module's own, since one test restarts it. A network drop is real: the page is
opened through a TCP proxy that the test cuts (every connection through it reset, new ones
refused) and restores; the media does not go through the proxy, the signalling does. The other
page's view is read from what it received (its WebSocket frames, through Playwright) and from
what it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, Participant, browser_gateway
from tests.browser.test_web_client import (
    alice_makes_a_room,
    audio_packets,
    helene_hosts,
    new_room,
    role_of,
    wait_until,
)
from tests.gateway_process import RunningGateway, free_port

pytestmark = [pytest.mark.browser, pytest.mark.interop, pytest.mark.timeout(150)]

Opener = Callable[..., Participant]
SCREENSHOTS = ARTIFACTS / "screenshots"
NO_HOST = "No host is in the meeting yet; you will be let in when one arrives."
HOST_HERE = "A host is in the meeting and will let you in."


@pytest.fixture(scope="module")
def web_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """This module's gateway (the conftest's is shared by the whole suite: not one to restart)."""
    tmp = Path(tmp_path_factory.mktemp("reconnect-gateway"))
    with browser_gateway(tmp, "reconnect-gateway.log") as gateway:
        yield gateway


@dataclass
class CuttableProxy:
    """A TCP proxy on loopback to the gateway's HTTP port that a test can cut and restore."""

    target_port: int
    port: int = field(default_factory=free_port)
    cut: bool = False
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _open: set[asyncio.StreamWriter] = field(default_factory=set)
    _frozen: set[asyncio.StreamWriter] = field(default_factory=set)
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._accept, "127.0.0.1", self.port))

    def stop(self) -> None:
        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._open):
                writer.transport.abort()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        self._run(shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop.close()

    def _run(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(10)

    def drop(self) -> None:
        """The network goes: every connection reset, and new ones refused until restore()."""

        def cut_all() -> None:
            self.cut = True
            for writer in list(self._open):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(cut_all)

    def freeze(self) -> None:
        """The network goes silent for the connections open now: what they send is lost, with no
        close and no reset (a dead Wi-Fi); new connections go through."""
        self._loop.call_soon_threadsafe(lambda: self._frozen.update(self._open))

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "cut", False)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._open.difference_update((writer, up_writer))
            self._frozen.difference_update((writer, up_writer))
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if writer not in self._frozen:
                    writer.write(data)
                    await writer.drain()
        writer.transport.abort()  # one side gone: the other goes too, as a cut cable does


@pytest.fixture
def proxy(web_gateway: RunningGateway) -> Iterator[CuttableProxy]:
    port = int(web_gateway.base_url.rsplit(":", 1)[1])
    running = CuttableProxy(port)
    running.start()
    yield running
    running.stop()


def received_frames(p: Participant) -> list[dict[str, Any]]:
    """The ORS messages P's page receives from now on, on any of its WebSockets."""
    frames: list[dict[str, Any]] = []

    def on_socket(ws: Any) -> None:
        def on_frame(payload: str | bytes) -> None:
            with contextlib.suppress(ValueError, TypeError):
                frames.append(json.loads(payload))

        ws.on("framereceived", on_frame)

    p.page.on("websocket", on_socket)
    return frames


def about(frames: list[dict[str, Any]], pid: str) -> list[str]:
    """What FRAMES said of participant PID: the types, with `reconnecting` for updates."""
    said = []
    for m in frames:
        if m.get("participant_id") == pid:
            said.append(m["type"])
        elif m.get("participant", {}).get("id") == pid and m["type"].startswith("participant_"):
            reconnecting = m["participant"].get("reconnecting")
            said.append(f"{m['type']}:{'reconnecting' if reconnecting else 'back'}")
    return said


def reconnecting(p: Participant) -> Any:
    return p.page.evaluate("window.rondpoint.reconnecting")


def named(p: Participant, name: str) -> list[dict[str, Any]]:
    return [q for q in p.others() if q["name"] == name]


def track_ids(p: Participant, pid: str) -> set[str]:
    debug = p.page.evaluate("window.rondpoint._debug()")
    return {t["id"] for q in debug["participants"] if q["id"] == pid for t in q.get("tracks", [])}


def hears_more(listener: Participant, speaker_id: str, what: str) -> None:
    """LISTENER's inbound audio from SPEAKER_ID grows (getStats), now."""
    before = audio_packets(listener, speaker_id)
    wait_until(lambda: audio_packets(listener, speaker_id) > before + 20, 20, what)


def sees_more(viewer: Participant, pid: str, what: str) -> None:
    """VIEWER decodes more frames of PID's video (getStats), now."""

    def frames() -> int:
        return int(viewer.stats().get(pid, {}).get("video", {}).get("framesDecoded", 0))

    before = frames()
    wait_until(lambda: frames() > before + 10, 20, what)


def shot(p: Participant, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    p.page.screenshot(path=str(SCREENSHOTS / name))


def alice_behind_the_proxy(
    open_participant: Opener, proxy: CuttableProxy, prefix: str
) -> tuple[Participant, Participant]:
    """A new room, Alice in it through PROXY, Bruno straight to the gateway."""
    room = new_room(prefix)
    alice = open_participant(room, "Alice", base_url=proxy.url)
    alice.wait_state("room")
    bruno = open_participant(room, "Bruno")
    bruno.wait_state("room")
    return alice, bruno


def test_a_dropped_connection_comes_back_by_itself_as_the_same_participant(
    open_participant: Opener, proxy: CuttableProxy
) -> None:
    alice, bruno = alice_behind_the_proxy(open_participant, proxy, "coupure")
    seen_by_bruno = received_frames(bruno)  # Playwright sees the sockets opened from now on:
    bruno.page.reload()  # Bruno joins again, his page's socket watched
    bruno.wait_state("room")
    aid, bid = alice.id, bruno.id
    hears_more(bruno, aid, "Bruno to hear Alice")
    hears_more(alice, bid, "Alice to hear Bruno")
    tracks_before = track_ids(bruno, aid)
    assert len(tracks_before) == 2, tracks_before
    seen_by_bruno.clear()

    proxy.drop()
    banner = alice.page.get_by_test_id("reconnecting")
    banner.wait_for(state="visible", timeout=10_000)
    assert "Reconnecting…" in banner.inner_text()
    count = alice.page.get_by_test_id("reconnect-count")
    wait_until(lambda: count.inner_text().endswith(" s)"), 5, "the countdown")
    assert 0 < int(count.inner_text().strip("( s)")) <= 20  # the grace the gateway gave: 20 s
    assert alice.state() == "room"
    assert alice.page.get_by_test_id(f"tile-{bid}").is_visible()  # the page is kept
    # Bruno sees Alice reconnecting, on her tile and in the people panel
    wait_until(lambda: named(bruno, "Alice")[0]["reconnecting"], 10, "Bruno to see Alice away")
    badge = bruno.page.get_by_test_id(f"tile-{aid}").get_by_test_id("tile-reconnecting")
    assert badge.is_visible() and badge.inner_text() == "Reconnecting"
    bruno.page.get_by_test_id("participants-toggle").click()
    assert (
        bruno.page.get_by_test_id(f"person-{aid}")
        .get_by_test_id("person-reconnecting")
        .is_visible()
    )
    alice.page.wait_for_timeout(2000)  # a few failed attempts
    assert reconnecting(alice)["attempts"] >= 2
    shot(alice, "reconnecting.png")
    shot(bruno, "reconnecting-seen-by-the-other.png")

    proxy.restore()  # no click: the page comes back by itself
    wait_until(lambda: reconnecting(alice) is None, 15, "Alice to come back")
    assert alice.state() == "room" and alice.id == aid  # resumed: the same participant
    assert not banner.is_visible()
    wait_until(lambda: not named(bruno, "Alice")[0]["reconnecting"], 10, "Alice back for Bruno")
    assert [q["id"] for q in named(bruno, "Alice")] == [aid]
    assert bruno.page.locator(".tile").count() == 2
    # Bruno was never told of a leave or a second Alice: only that she was away, then back
    said = about(seen_by_bruno, aid)
    assert "participant_left" not in said and "participant_joined" not in said, said
    assert said[0] == "participant_updated:reconnecting" and "participant_updated:back" in said, (
        said
    )

    # new peer connections: Alice's tracks are published again, and audio flows both ways
    wait_until(
        lambda: len(track_ids(bruno, aid)) == 2 and not track_ids(bruno, aid) & tracks_before,
        15,
        "Alice's tracks republished",
    )
    hears_more(bruno, aid, "Bruno to hear Alice after the resume")
    hears_more(alice, bid, "Alice to hear Bruno after the resume")
    assert alice.page.get_by_test_id("mic-toggle").get_attribute("aria-pressed") == "false"


def test_after_a_gateway_restart_both_pages_come_back_and_the_creator_is_host_again(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, alice = alice_makes_a_room(open_participant, "redemarre")
    bruno = open_participant(room, "Bruno")
    bruno.wait_state("room")
    wait_until(lambda: role_of(bruno, "Alice") == "host", 10, "Bruno to see Alice host")
    # Bruno's microphone is off, and stays so
    bruno.page.get_by_test_id("mic-toggle").click()
    wait_until(lambda: named(alice, "Bruno")[0]["muted"], 10, "Alice to see Bruno muted")
    hears_more(bruno, alice.id, "Bruno to hear Alice")
    ids = {alice.id, bruno.id}

    web_gateway.restart()  # stopped (SIGTERM) and started again: same port, same data

    for p in (alice, bruno):
        wait_until(
            lambda p=p: reconnecting(p) is None and p.state() == "room", 30, f"{p.name} back"
        )
        assert not p.page.get_by_test_id("reconnecting").is_visible()
    # the gateway kept nobody: new participants, each listed once, the creator host again
    assert {alice.id, bruno.id}.isdisjoint(ids)
    wait_until(lambda: [q["id"] for q in named(bruno, "Alice")] == [alice.id], 10, "one Alice")
    wait_until(lambda: [q["id"] for q in named(alice, "Bruno")] == [bruno.id], 10, "one Bruno")
    assert role_of(alice, "Alice") == "host" and role_of(bruno, "Alice") == "host"
    assert role_of(bruno, "Bruno") == "guest"
    alice.page.get_by_test_id("participants-toggle").click()
    alice.page.get_by_test_id(f"remove-{bruno.id}").wait_for(state="visible", timeout=5_000)
    # media flows again (new peer connections to the new process), with the same choices
    hears_more(bruno, alice.id, "Bruno to hear Alice after the restart")
    sees_more(alice, bruno.id, "Alice to see Bruno after the restart")
    wait_until(lambda: named(alice, "Bruno")[0]["muted"], 10, "Bruno still muted")
    assert bruno.page.get_by_test_id("mic-toggle").get_attribute("aria-pressed") == "true"
    assert alice.page.get_by_test_id("rejoin").is_hidden()


def test_leaving_removal_and_a_deleted_room_do_not_reconnect(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room, host = helene_hosts(open_participant, web_gateway, "depart")
    bruno = open_participant(room, "Bruno")
    bruno.wait_state("room")
    host.page.get_by_test_id("participants-toggle").click()
    host.page.get_by_test_id(f"remove-{bruno.id}").click()
    host.page.get_by_test_id("confirm-ok").click()
    bruno.wait_state("left")

    host.page.get_by_test_id("leave").click()
    host.wait_state("left")

    chloe = open_participant(room, "Chloé")
    chloe.wait_state("room")
    status, _ = web_gateway.admin("DELETE", f"/api/v1/rooms/{room}")
    assert status == 204
    chloe.wait_state("left")

    chloe.page.wait_for_timeout(4000)  # long past the first attempts of a reconnection
    for p, title in ((bruno, "removed"), (host, "left"), (chloe, "ended")):
        assert p.state() == "left", p.name
        assert reconnecting(p) is None
        assert not p.page.get_by_test_id("reconnecting").is_visible()
        assert title in p.page.get_by_test_id("left-title").inner_text(), p.name
    status, _ = web_gateway.admin("GET", f"/api/v1/rooms/{room}")
    assert status == 404  # nobody made the room again by joining it


def test_the_lobby_says_whether_a_host_is_there(
    open_participant: Opener, web_gateway: RunningGateway
) -> None:
    room = new_room("salle-attente")
    web_gateway.create_room(room, lobby=True)
    guest = open_participant(room, "Gaspard")
    guest.wait_state("lobby")
    line = guest.page.get_by_test_id("lobby-hosts")
    wait_until(lambda: line.inner_text() == NO_HOST, 10, "the lobby to say no host is there")
    assert line.get_attribute("role") == "status"
    shot(guest, "lobby-no-host.png")

    token = web_gateway.token(room, "host-helene", "Hélène", role="host")
    host = open_participant(room, "Hélène", token=token)
    host.wait_state("room")
    wait_until(lambda: line.inner_text() == HOST_HERE, 10, "the lobby to say a host is there")

    host.page.get_by_test_id("leave").click()
    host.wait_state("left")
    wait_until(lambda: line.inner_text() == NO_HOST, 10, "the lobby to say the host went")
    assert guest.state() == "lobby"

    # French too
    guest_fr = open_participant(room, "Gaëlle", query="lang=fr")
    guest_fr.wait_state("lobby")
    wait_until(
        lambda: "Aucun organisateur" in guest_fr.page.get_by_test_id("lobby-hosts").inner_text(),
        10,
        "the French text",
    )


def test_a_silent_connection_is_found_out_by_its_pings_and_resumed(
    open_participant: Opener, proxy: CuttableProxy
) -> None:
    alice, bruno = alice_behind_the_proxy(open_participant, proxy, "silence")
    aid = alice.id
    hears_more(bruno, aid, "Bruno to hear Alice")
    seen_by_alice = received_frames(alice)

    proxy.freeze()  # no close, no reset: only the page's pings unanswered can tell
    # (Playwright hands the page's frames over while the test calls it: reconnecting() does)
    wait_until(
        lambda: (
            reconnecting(alice) is None
            and any(m["type"] == "joined" and m.get("resumed") for m in seen_by_alice)
        ),
        40,
        "Alice's page to resume on a new socket",
    )
    wait_until(lambda: reconnecting(alice) is None, 10, "Alice to be back")
    assert alice.state() == "room" and alice.id == aid
    assert [q["id"] for q in named(bruno, "Alice")] == [aid]
    hears_more(alice, bruno.id, "Alice to hear Bruno on her new connections")
    hears_more(bruno, aid, "Bruno to hear Alice on her new connections")


def screen_frames(viewer: Participant, pid: str) -> int:
    """Frames VIEWER decoded so far of PID's screen share (0 when it receives none)."""
    streams = viewer.page.evaluate("window.rondpoint.videoStreams()")
    return sum(
        int(s["framesDecoded"]) for s in streams if s["pid"] == pid and s["source"] == "screen"
    )


def test_a_screen_share_goes_on_after_a_reconnection_without_a_new_prompt(
    open_participant: Opener, proxy: CuttableProxy
) -> None:
    alice, bruno = alice_behind_the_proxy(open_participant, proxy, "partage")
    aid = alice.id
    # count the browser's capture prompts (getDisplayMedia calls)
    alice.page.evaluate(
        """() => {
          const md = navigator.mediaDevices, ask = md.getDisplayMedia.bind(md);
          window.__prompts = 0;
          md.getDisplayMedia = (...a) => { window.__prompts += 1; return ask(...a); };
        }"""
    )
    share = alice.page.get_by_test_id("share-toggle")
    share.click()
    bruno.page.get_by_test_id(f"screen-{aid}").wait_for(state="visible", timeout=15_000)
    wait_until(lambda: screen_frames(bruno, aid) > 5, 25, "Alice's share at Bruno's")
    tracks_before = track_ids(bruno, aid)

    proxy.drop()
    alice.page.get_by_test_id("reconnecting").wait_for(state="visible", timeout=10_000)
    alice.page.wait_for_timeout(1500)
    proxy.restore()
    wait_until(lambda: reconnecting(alice) is None, 20, "Alice to come back")
    assert alice.id == aid

    # the same capture, published again: new tracks at Bruno's, the share's frames arriving
    assert len(tracks_before) == 4  # microphone, camera, screen, and the fake screen's audio
    wait_until(
        lambda: len(track_ids(bruno, aid)) == 4 and not track_ids(bruno, aid) & tracks_before,
        15,
        "Alice's microphone, camera, screen and its sound published again",
    )
    bruno.page.get_by_test_id(f"screen-{aid}").wait_for(state="visible", timeout=15_000)
    wait_until(lambda: screen_frames(bruno, aid) > 5, 25, "the share at Bruno's again")
    before = screen_frames(bruno, aid)
    wait_until(lambda: screen_frames(bruno, aid) > before + 5, 15, "its frames to keep coming")
    assert share.get_attribute("aria-pressed") == "true"
    assert alice.page.evaluate("window.__prompts") == 1  # no second prompt to choose a screen

    # and it still stops with one click
    share.click()
    wait_until(
        lambda: bruno.page.get_by_test_id(f"screen-{aid}").count() == 0, 10, "no share at Bruno's"
    )
