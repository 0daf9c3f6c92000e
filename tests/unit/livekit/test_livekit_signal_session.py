"""The sans-I/O LiveKit signalling session (protocols/livekit/signal.py) on hand-made messages."""

from __future__ import annotations

import pytest
from livekit.protocol import models, rtc

from protocols.livekit.signal import (
    Joined,
    Left,
    ParticipantsChanged,
    PongReceived,
    Resumed,
    SignalProtocolError,
    SignalSession,
    Unhandled,
    decode_response,
    rtc_url,
    validate_url,
)

ACTIVE = models.ParticipantInfo.ACTIVE
DISCONNECTED = models.ParticipantInfo.DISCONNECTED


def info(sid: str, identity: str, state: int = ACTIVE, version: int = 1) -> models.ParticipantInfo:
    return models.ParticipantInfo(
        sid=sid, identity=identity, name=identity.title(), state=state, version=version
    )  # type: ignore[arg-type]


def frame(**fields: object) -> bytes:
    return rtc.SignalResponse(**fields).SerializeToString()  # type: ignore[arg-type]


def joined_session() -> SignalSession:
    session = SignalSession()
    join = rtc.JoinResponse(
        room=models.Room(name="room-1", sid="RM_1"),
        participant=info("PA_me", "me"),
        other_participants=[info("PA_a", "alice")],
        server_version="1.13.5",
        ping_interval=5,
        ping_timeout=15,
    )
    [event] = session.receive(frame(join=join))
    assert isinstance(event, Joined)
    return session


def test_urls() -> None:
    url = rtc_url("ws://127.0.0.1:7880", "T.K.N")
    assert url.startswith("ws://127.0.0.1:7880/rtc?access_token=T.K.N&protocol=16&auto_subscribe=1")
    assert rtc_url("https://lk.example/", "t").startswith("wss://lk.example/rtc?")
    assert validate_url("wss://lk.example", "t").startswith("https://lk.example/rtc/validate?")
    with pytest.raises(ValueError):
        rtc_url("ftp://x", "t")


def test_join() -> None:
    session = joined_session()
    assert session.joined is not None
    assert (session.joined.room_name, session.joined.room_sid) == ("room-1", "RM_1")
    assert session.joined.participant.identity == "me"
    assert [p.identity for p in session.joined.other_participants] == ["alice"]
    assert set(session.participants) == {"PA_a"}
    assert session.joined.ping_interval == 5


def test_participant_update_join_change_leave() -> None:
    session = joined_session()
    update = rtc.ParticipantUpdate(
        participants=[info("PA_b", "bob"), info("PA_me", "me", version=2)]
    )
    [changed] = session.receive(frame(update=update))
    assert isinstance(changed, ParticipantsChanged)
    assert [(p.identity, p.name, p.kind) for p in changed.updated] == [("bob", "Bob", "standard")]
    assert session.local is not None and session.local.version == 2  # our own entry, not a remote

    stale = rtc.ParticipantUpdate(participants=[info("PA_b", "bob", DISCONNECTED, version=0)])
    assert session.receive(frame(update=stale)) == []
    assert "PA_b" in session.participants

    gone = rtc.ParticipantUpdate(participants=[info("PA_b", "bob", DISCONNECTED, version=3)])
    [changed] = session.receive(frame(update=gone))
    assert isinstance(changed, ParticipantsChanged)
    assert [p.identity for p in changed.left] == ["bob"] and not changed.updated
    assert set(session.participants) == {"PA_a"}


def test_ping_pong_and_leave() -> None:
    session = joined_session()
    request = rtc.SignalRequest()
    request.ParseFromString(session.ping(1234, rtt_ms=7))
    assert request.WhichOneof("message") == "ping_req"
    assert (request.ping_req.timestamp, request.ping_req.rtt) == (1234, 7)
    [pong] = session.receive(frame(pong_resp=rtc.Pong(last_ping_timestamp=1234, timestamp=99)))
    assert pong == PongReceived(1234, 99)

    request.ParseFromString(session.leave())
    assert request.WhichOneof("message") == "leave"
    assert request.leave.reason == models.DisconnectReason.CLIENT_INITIATED

    leave = rtc.LeaveRequest(reason=models.DisconnectReason.ROOM_DELETED)
    [left] = session.receive(frame(leave=leave))
    assert left == Left(reason="ROOM_DELETED", action="DISCONNECT", can_reconnect=False)


def test_media_messages_pass_through() -> None:
    session = joined_session()
    offer = rtc.SessionDescription(type="offer", sdp="v=0\r\n", id=1)
    [event] = session.receive(frame(offer=offer))
    assert isinstance(event, Unhandled) and event.kind == "offer"
    assert event.message.offer.sdp == "v=0\r\n"


def test_bad_input() -> None:
    with pytest.raises(SignalProtocolError, match="undecodable"):
        decode_response(b"\xff\xff\xff\xff")
    with pytest.raises(SignalProtocolError, match="empty"):
        SignalSession().receive(b"")
    with pytest.raises(SignalProtocolError, match="before join"):
        SignalSession().receive(frame(update=rtc.ParticipantUpdate()))
    session = joined_session()
    with pytest.raises(SignalProtocolError, match="second join"):
        session.receive(frame(join=rtc.JoinResponse()))


def test_a_resumed_session_keeps_its_room_and_takes_reconnect() -> None:
    lost = joined_session()
    resumed = SignalSession(lost)
    assert resumed.joined == lost.joined and resumed.local == lost.local
    assert set(resumed.participants) == {"PA_a"}
    [event] = resumed.receive(frame(reconnect=rtc.ReconnectResponse()))
    assert isinstance(event, Resumed)
    with pytest.raises(SignalProtocolError, match="did not resume"):
        resumed.receive(frame(reconnect=rtc.ReconnectResponse()))  # only once
    with pytest.raises(SignalProtocolError, match="did not resume"):
        joined_session().receive(frame(reconnect=rtc.ReconnectResponse()))
    with pytest.raises(SignalProtocolError, match="second join"):
        SignalSession(lost).receive(frame(join=rtc.JoinResponse()))  # the server forgot us


def test_participant_tracks_and_their_mute_state_are_read() -> None:
    session = joined_session()
    track = models.TrackInfo(
        sid="TR_v", type=models.TrackType.VIDEO, source=models.TrackSource.SCREEN_SHARE, muted=True
    )
    alice = info("PA_a", "alice", version=2)
    alice.tracks.append(track)
    [changed] = session.receive(frame(update=rtc.ParticipantUpdate(participants=[alice])))
    assert isinstance(changed, ParticipantsChanged)
    [tracks] = [p.tracks for p in changed.updated]
    assert [(t.sid, t.kind, t.source, t.muted) for t in tracks] == [
        ("TR_v", "video", "screen_share", True)
    ]
