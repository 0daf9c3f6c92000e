"""Chat text streams (protocols/livekit/data.py) through a real livekit-server, both ways.

LiveKit's official Python SDK (`livekit`, Rust core) plays the Visio user: its `send_text` on
`lk.chat` is reassembled by our participant (protocols/livekit/rtc.py `on_data` feeding a
`TextStreamAssembler`), and our `chat_packets`, sent with `send_data`, reach its
`register_text_stream_handler("lk.chat", ...)` with the exact text and our identity. The packets
the SDK sent are also compared, field by field, with the ones `chat_packets` builds for the same
text: the cross-check of our encoder against the SDK's own, which cannot run without a room.

Our participant advertises no "data streams v2" (ClientInfo.client_protocol 0), so the SDK sends
it the v1 form (header, chunks, trailer; no inline content, no compression), as it would to any
older client: the form we send too.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from livekit import rtc
from livekit.protocol import models

from protocols.livekit.data import (
    CHAT_TOPIC,
    STREAM_CHUNK_SIZE,
    ReceivedText,
    TextStreamAssembler,
    chat_packets,
    is_chat,
)
from tests.interop.livekit_fixtures import RunningLiveKit
from tests.interop.livekit_peers import our_participant, sdk_room

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(40),
    # livekit-server's --dev secret is "secret", shorter than PyJWT recommends for HS256.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

SHORT = "bonjour é 👋"
LONG = "a" * 14_998 + "👋" + "é" * 9_000 + " fin 👋"
"""Three chunks on the wire, the emoji right on the first border."""


async def sdk_sees(sdk: rtc.Room, identity: str, timeout: float = 10.0) -> None:
    """Wait until the SDK knows IDENTITY: before that it would judge an empty room eligible for
    inline, compressed streams, and might not attribute packets to anyone."""
    deadline = time.monotonic() + timeout
    while identity not in {p.identity for p in sdk.remote_participants.values()}:
        if time.monotonic() > deadline:
            raise AssertionError(f"the SDK never saw {identity!r}")
        await asyncio.sleep(0.05)


def wire_shape(packets: list[models.DataPacket]) -> list[tuple[object, ...]]:
    """What must agree between two encoders of the same text: everything but the stream id, the
    timestamp, and the identity the server asserts."""
    shape: list[tuple[object, ...]] = []
    for packet in packets:
        which = packet.WhichOneof("value")
        if which == "stream_header":
            h = packet.stream_header
            shape.append(
                (
                    which,
                    h.topic,
                    h.mime_type,
                    h.total_length if h.HasField("total_length") else None,
                    h.WhichOneof("content_header"),
                    h.text_header.operation_type,
                    h.text_header.version,
                    h.text_header.reply_to_stream_id,
                    list(h.text_header.attached_stream_ids),
                    h.compression,
                    h.HasField("inline_content"),
                    h.encryption_type,
                    dict(h.attributes),
                )
            )
        elif which == "stream_chunk":
            c = packet.stream_chunk
            shape.append((which, c.chunk_index, c.content, c.version, c.HasField("iv")))
        elif which == "stream_trailer":
            t = packet.stream_trailer
            shape.append((which, t.reason, dict(t.attributes)))
        else:
            shape.append((which,))
    return shape


async def test_sdk_send_text_is_reassembled_by_us(
    livekit_server: RunningLiveKit, loopback_only: None
) -> None:
    room = str(uuid.uuid4())
    assembler = TextStreamAssembler()
    raw: list[models.DataPacket] = []
    received: asyncio.Queue[ReceivedText] = asyncio.Queue()

    def on_data(packet: models.DataPacket) -> None:
        raw.append(packet)
        for message in assembler.feed(packet, time.monotonic()):
            received.put_nowait(message)

    async with our_participant(livekit_server, room, "rondpoint-chat-1") as ours:
        ours.on_data = on_data
        async with sdk_room(livekit_server, room, "visio-alice") as sdk:
            await sdk_sees(sdk, "rondpoint-chat-1")
            sdk_packets: list[list[models.DataPacket]] = []
            for text in (SHORT, LONG):
                before = len(raw)
                info = await sdk.local_participant.send_text(text, topic=CHAT_TOPIC)
                message = await asyncio.wait_for(received.get(), 10)
                assert message.text == text
                assert message.sender_identity == "visio-alice"
                assert message.topic == CHAT_TOPIC and is_chat(message)
                assert message.stream_id == info.stream_id
                assert message.timestamp_ms == info.timestamp
                assert message.operation == "create"
                await asyncio.sleep(0.2)  # the trailer, after an early completion by length
                sdk_packets.append([p for p in raw[before:] if p.WhichOneof("value") != "user"])

    assert assembler.dropped == 0 and assembler.open_streams == 0
    # The SDK's packets, field by field, against ours for the same text.
    for text, packets in zip((SHORT, LONG), sdk_packets, strict=True):
        ours_packets = chat_packets(text, sender_identity="visio-alice")
        assert wire_shape(packets) == wire_shape(ours_packets)
        assert all(p.participant_identity == "visio-alice" for p in packets)
        stream_ids = {p.stream_header.stream_id for p in packets[:1]}
        stream_ids |= {p.stream_chunk.stream_id for p in packets if p.HasField("stream_chunk")}
        stream_ids |= {p.stream_trailer.stream_id for p in packets[-1:]}
        assert len(stream_ids) == 1
    # wire_shape compared the chunks byte for byte: the SDK cut LONG where we do.
    sizes = [len(p.stream_chunk.content) for p in sdk_packets[1] if p.HasField("stream_chunk")]
    assert sizes == [14_998, STREAM_CHUNK_SIZE, len(LONG.encode()) - 14_998 - STREAM_CHUNK_SIZE]


async def test_our_chat_packets_reach_the_sdk_text_handler(
    livekit_server: RunningLiveKit, loopback_only: None
) -> None:
    room = str(uuid.uuid4())
    got: asyncio.Queue[tuple[str, str, rtc.TextStreamInfo]] = asyncio.Queue()
    readers: set[asyncio.Task[None]] = set()

    async with sdk_room(livekit_server, room, "visio-bob") as sdk:

        async def read(reader: rtc.TextStreamReader, identity: str) -> None:
            got.put_nowait((await reader.read_all(), identity, reader.info))

        def on_stream(reader: rtc.TextStreamReader, identity: str) -> None:
            task = asyncio.create_task(read(reader, identity))
            readers.add(task)
            task.add_done_callback(readers.discard)

        sdk.register_text_stream_handler(CHAT_TOPIC, on_stream)
        async with our_participant(livekit_server, room, "rondpoint-chat-2") as ours:
            await sdk_sees(sdk, "rondpoint-chat-2")
            for n, text in enumerate((SHORT, LONG)):
                message_id = f"rondpoint-{uuid.uuid4()}"
                packets = chat_packets(
                    text,
                    sender_identity=ours.identity,
                    message_id=message_id,
                    attributes={"rondpoint.origin": "sip"},
                )
                for packet in packets:
                    await ours.send_data(packet)
                body, identity, info = await asyncio.wait_for(got.get(), 10)
                assert body == text, f"message {n}"
                assert identity == "rondpoint-chat-2"
                assert info.stream_id == message_id
                assert info.topic == CHAT_TOPIC
                assert info.mime_type == "text/plain"
                assert info.size == len(text.encode())
                assert info.timestamp == packets[0].stream_header.timestamp
                assert info.attributes == {"rondpoint.origin": "sip"}
