"""protocols/livekit/data.py: chat text streams out, text streams and legacy chat in.

The Python SDK's encoder lives in its Rust core and is only reachable through a connected room
(`LocalParticipant.send_text` needs the FFI participant handle), so the packet shapes here are
checked field by field against what the SDK sources build (rust-sdks
livekit-data-stream/src/outgoing/{manager,raw_stream}.rs; client-sdk-js
src/room/data-stream/outgoing/{OutgoingDataStreamManager,header-utils}.ts), and
tests/interop/test_livekit_data.py compares them with the packets the real SDK sends.
"""

from __future__ import annotations

import json
import random
import zlib

import pytest
from livekit.protocol import models
from livekit.rtc import data_stream as sdk_data_stream

from protocols.livekit.data import (
    CHAT_TOPIC,
    CHAT_TOPICS,
    LEGACY_CHAT_TOPIC,
    STREAM_CHUNK_SIZE,
    ReceivedText,
    TextStreamAssembler,
    chat_packets,
    is_chat,
    legacy_chat_packet,
    split_utf8,
)

SENDER = "visio-alice"


def feed_all(
    assembler: TextStreamAssembler,
    packets: list[models.DataPacket],
    now: float = 0.0,
    sid: str = "",
) -> list[ReceivedText]:
    out: list[ReceivedText] = []
    for packet in packets:
        if sid:
            packet = clone(packet)
            packet.participant_sid = sid
        out += assembler.feed(packet, now)
    return out


def clone(packet: models.DataPacket) -> models.DataPacket:
    copy = models.DataPacket()
    copy.CopyFrom(packet)
    return copy


def header(
    stream_id: str = "s1",
    *,
    topic: str = CHAT_TOPIC,
    total: int | None = None,
    identity: str = SENDER,
    inline: bytes | None = None,
    compression: models.DataStream.CompressionType = models.DataStream.NONE,
    byte_stream: bool = False,
) -> models.DataPacket:
    h = models.DataStream.Header(
        stream_id=stream_id, timestamp=1_700_000_000_000, topic=topic, compression=compression
    )
    if byte_stream:
        h.mime_type = "application/octet-stream"
        h.byte_header.name = "file.bin"
    else:
        h.mime_type = "text/plain"
        h.text_header.operation_type = models.DataStream.CREATE
    if total is not None:
        h.total_length = total
    if inline is not None:
        h.inline_content = inline
    return models.DataPacket(participant_identity=identity, stream_header=h)


def chunk(stream_id: str, index: int, content: bytes, identity: str = SENDER) -> models.DataPacket:
    return models.DataPacket(
        participant_identity=identity,
        stream_chunk=models.DataStream.Chunk(
            stream_id=stream_id, chunk_index=index, content=content
        ),
    )


def trailer(stream_id: str, reason: str = "", identity: str = SENDER) -> models.DataPacket:
    return models.DataPacket(
        participant_identity=identity,
        stream_trailer=models.DataStream.Trailer(stream_id=stream_id, reason=reason),
    )


def legacy(payload: bytes, topic: str = LEGACY_CHAT_TOPIC) -> models.DataPacket:
    return models.DataPacket(
        participant_identity=SENDER,
        user=models.UserPacket(participant_identity=SENDER, payload=payload, topic=topic),
    )


def deflate_raw(data: bytes) -> bytes:
    """What CompressionStream('deflate-raw') and async-compression's DeflateEncoder produce."""
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


# -- sending: the wire shape --------------------------------------------------------------------


def test_chunk_size_is_the_sdks() -> None:
    assert STREAM_CHUNK_SIZE == sdk_data_stream.STREAM_CHUNK_SIZE == 15_000


def test_chat_packets_wire_shape_matches_the_sdks() -> None:
    text = "é" * 9000  # 18 000 bytes of UTF-8: two chunks
    packets = chat_packets(
        text,
        sender_identity="rondpoint-bob",
        message_id="0b4c8f2e-aaaa-4bbb-8ccc-000000000001",
        timestamp_ms=1_754_000_000_123,
        attributes={"rondpoint.origin": "sip"},
        destination_identities=["visio-alice"],
    )
    assert [p.WhichOneof("value") for p in packets] == [
        "stream_header",
        "stream_chunk",
        "stream_chunk",
        "stream_trailer",
    ]
    for packet in packets:
        # raw_stream.rs: kind Reliable, participant_identity = the sender on every packet;
        # OutgoingDataStreamManager.ts: destination identities on every packet.
        assert packet.kind == models.DataPacket.RELIABLE
        assert packet.participant_identity == "rondpoint-bob"
        assert list(packet.destination_identities) == ["visio-alice"]
        assert not packet.HasField("encrypted_packet")
        # What goes on the data channel parses back to the same packet.
        assert models.DataPacket.FromString(packet.SerializeToString()) == packet

    h = packets[0].stream_header
    assert h.stream_id == "0b4c8f2e-aaaa-4bbb-8ccc-000000000001"
    assert h.timestamp == 1_754_000_000_123
    assert h.topic == "lk.chat"
    assert h.mime_type == "text/plain"  # TEXT_MIME_TYPE / sendText's mimeType
    assert h.HasField("total_length") and h.total_length == 18_000  # pre-compression UTF-8 size
    assert dict(h.attributes) == {"rondpoint.origin": "sip"}
    assert h.WhichOneof("content_header") == "text_header"
    assert h.text_header.operation_type == models.DataStream.CREATE
    assert h.text_header.version == 0
    assert h.text_header.reply_to_stream_id == ""
    assert list(h.text_header.attached_stream_ids) == []
    assert not h.text_header.generated
    assert h.compression == models.DataStream.NONE
    assert not h.HasField("inline_content")  # v1: what a non-v2 recipient is sent
    assert h.encryption_type == models.Encryption.NONE

    chunks = [p.stream_chunk for p in packets[1:3]]
    assert [c.chunk_index for c in chunks] == [0, 1]
    assert all(c.stream_id == h.stream_id for c in chunks)
    assert [len(c.content) for c in chunks] == [15_000, 3_000]
    assert all(c.version == 0 and not c.HasField("iv") for c in chunks)
    assert b"".join(c.content for c in chunks).decode() == text

    t = packets[3].stream_trailer
    assert t.stream_id == h.stream_id and t.reason == "" and dict(t.attributes) == {}


def test_chat_packets_defaults() -> None:
    packets = chat_packets("salut", sender_identity="rondpoint-x")
    h = packets[0].stream_header
    assert len(h.stream_id) == 36 and h.stream_id.count("-") == 4  # a UUID, as both SDKs use
    assert h.timestamp > 1_700_000_000_000
    assert h.topic == CHAT_TOPIC
    assert list(packets[0].destination_identities) == []
    assert chat_packets("x", sender_identity="a")[0].stream_header.stream_id != h.stream_id


def test_empty_text_is_a_header_and_a_trailer() -> None:
    packets = chat_packets("", sender_identity="a", message_id="m")
    assert [p.WhichOneof("value") for p in packets] == ["stream_header", "stream_trailer"]
    assert packets[0].stream_header.HasField("total_length")
    assert packets[0].stream_header.total_length == 0
    [received] = feed_all(TextStreamAssembler(), packets)
    assert received.text == ""


@pytest.mark.parametrize(
    ("data", "size", "expected"),
    [
        (b"aaaa\xc3\xa9", 5, [b"aaaa", b"\xc3\xa9"]),  # é would straddle the border
        (b"aaa\xf0\x9f\x91\x8b", 4, [b"aaa", b"\xf0\x9f\x91\x8b"]),  # 👋
        (b"aaa\xf0\x9f\x91\x8bb", 6, [b"aaa", b"\xf0\x9f\x91\x8bb"]),
        (b"abcdefgh", 4, [b"abcd", b"efgh"]),
        (b"abcd", 4, [b"abcd"]),
        (b"", 4, []),
    ],
)
def test_split_utf8_vectors(data: bytes, size: int, expected: list[bytes]) -> None:
    # The vectors follow client-sdk-js splitUtf8 / rust-sdks Utf8AwareChunks step by step.
    assert split_utf8(data, size) == expected


def test_split_utf8_never_splits_a_code_point() -> None:
    rng = random.Random(4)
    alphabet = ["a", "é", "€", "👋", "ß", "日", "\u0301"]
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        size = rng.randrange(4, 20)
        pieces = split_utf8(text.encode(), size)
        assert b"".join(pieces) == text.encode()
        assert all(0 < len(p) <= size for p in pieces)
        for piece in pieces:
            piece.decode("utf-8")  # strict: each chunk is decoded on its own by the readers


def test_split_utf8_rejects_tiny_sizes() -> None:
    with pytest.raises(ValueError):
        split_utf8(b"abc", 3)


def test_legacy_chat_packet_is_components_cores_json() -> None:
    packet = legacy_chat_packet(
        "bonjour é", sender_identity="a", message_id="m1", timestamp_ms=1700000000000
    )
    assert packet.user.topic == LEGACY_CHAT_TOPIC
    # JSON.stringify({id, timestamp, message, ignoreLegacy}) of components-core chat.ts
    assert (
        packet.user.payload
        == (
            '{"id":"m1","timestamp":1700000000000,"message":"bonjour é","ignoreLegacy":true}'
        ).encode()
    )


# -- receiving: round trips ---------------------------------------------------------------------


def test_round_trip() -> None:
    packets = chat_packets(
        "bonjour é 👋",
        sender_identity=SENDER,
        message_id="m-1",
        timestamp_ms=1_754_000_000_000,
        attributes={"k": "v"},
    )
    assembler = TextStreamAssembler()
    received = feed_all(assembler, packets)
    assert received == [
        ReceivedText(
            stream_id="m-1",
            sender_identity=SENDER,
            topic="lk.chat",
            text="bonjour é 👋",
            timestamp_ms=1_754_000_000_000,
            attributes={"k": "v"},
        )
    ]
    assert is_chat(received[0])
    assert assembler.dropped == 0 and assembler.open_streams == 0


def test_round_trip_through_bytes() -> None:
    packets = chat_packets("par octets", sender_identity=SENDER, message_id="m")
    assembler = TextStreamAssembler()
    out: list[ReceivedText] = []
    for packet in packets:
        out += assembler.feed(packet.SerializeToString(), 0.0)
    assert [r.text for r in out] == ["par octets"]


@pytest.mark.parametrize("chunk_size", [4, 5, 6, 7, 13, 15_000])
def test_multi_chunk_non_ascii_across_borders(chunk_size: int) -> None:
    text = ("é👋" + "a" * 3 + "€") * 50 + "fin 👋"
    packets = chat_packets(text, sender_identity=SENDER, chunk_size=chunk_size)
    if chunk_size < 100:
        assert len(packets) > 10
    assembler = TextStreamAssembler()
    assert [r.text for r in feed_all(assembler, packets)] == [text]
    assert assembler.dropped == 0


def test_multi_chunk_default_size_with_an_emoji_on_the_border() -> None:
    text = "a" * 14_998 + "👋" + "é" * 10_000 + "z"
    packets = chat_packets(text, sender_identity=SENDER)
    chunks = [p.stream_chunk.content for p in packets if p.HasField("stream_chunk")]
    assert len(chunks[0]) == 14_998  # the emoji's 4 bytes did not fit: cut before it
    assert all(len(c) <= STREAM_CHUNK_SIZE for c in chunks)
    assert [r.text for r in feed_all(TextStreamAssembler(), packets)] == [text]


def test_trailer_completes_a_stream_without_total_length() -> None:
    assembler = TextStreamAssembler()
    out = feed_all(
        assembler, [header("s"), chunk("s", 0, b"sans "), chunk("s", 1, b"taille"), trailer("s")]
    )
    assert [r.text for r in out] == ["sans taille"]
    assert assembler.dropped == 0


def test_total_length_reached_completes_and_the_trailer_is_quiet() -> None:
    assembler = TextStreamAssembler()
    assert assembler.feed(header("s", total=5), 0) == []
    [received] = assembler.feed(chunk("s", 0, b"12345"), 0)
    assert received.text == "12345"
    assert assembler.feed(trailer("s"), 0) == []
    assert assembler.dropped == 0 and assembler.open_streams == 0


def test_trailer_attributes_are_merged() -> None:
    packets = [header("s"), chunk("s", 0, b"x"), trailer("s")]
    packets[0].stream_header.attributes["a"] = "1"
    packets[2].stream_trailer.attributes["b"] = "2"
    [received] = feed_all(TextStreamAssembler(), packets)
    assert received.attributes == {"a": "1", "b": "2"}


def test_interleaved_streams_of_two_senders() -> None:
    a = chat_packets("de alice", sender_identity="alice", message_id="same", chunk_size=4)
    b = chat_packets("de bob", sender_identity="bob", message_id="same", chunk_size=4)
    assembler = TextStreamAssembler()
    out: list[ReceivedText] = []
    for pa, pb in zip(a, b, strict=False):
        out += assembler.feed(pa, 0) + assembler.feed(pb, 0)
    for rest in a[len(b) :]:
        out += assembler.feed(rest, 0)
    assert sorted((r.sender_identity, r.text) for r in out) == [
        ("alice", "de alice"),
        ("bob", "de bob"),
    ]


def test_operation_and_reply_are_reported() -> None:
    packet = header("s")
    packet.stream_header.text_header.operation_type = models.DataStream.REACTION
    packet.stream_header.text_header.reply_to_stream_id = "m-0"
    [received] = feed_all(
        TextStreamAssembler(), [packet, chunk("s", 0, "👍".encode()), trailer("s")]
    )
    assert received.operation == "reaction" and received.reply_to_stream_id == "m-0"


def test_stream_keyed_by_sid_when_the_server_sets_it() -> None:
    # An agent may send a header on behalf of a participant (livekit-server keeps that identity
    # on the header) while its chunks carry the agent's identity; the sid is the real sender.
    packets = [header("s", identity="user"), chunk("s", 0, b"hi", identity="agent")]
    packets.append(trailer("s", identity="agent"))
    [received] = feed_all(TextStreamAssembler(), packets, sid="PA_agent")
    assert received.sender_identity == "user" and received.text == "hi"


# -- receiving: data streams v2 (inline, deflate-raw) ---------------------------------------


def test_inline_single_packet_stream() -> None:
    data = "en ligne é".encode()
    [received] = feed_all(TextStreamAssembler(), [header("s", total=len(data), inline=data)])
    assert received.text == "en ligne é"


def test_inline_deflate_raw() -> None:
    data = ("compressé " * 200).encode()
    packet = header(
        "s", total=len(data), inline=deflate_raw(data), compression=models.DataStream.DEFLATE_RAW
    )
    [received] = feed_all(TextStreamAssembler(), [packet])
    assert received.text == data.decode()


def test_chunked_deflate_raw() -> None:
    data = ("chunks compressés 👋 " * 500).encode()
    compressed = deflate_raw(data)
    pieces = [compressed[i : i + 100] for i in range(0, len(compressed), 100)]
    packets = [header("s", total=len(data), compression=models.DataStream.DEFLATE_RAW)]
    packets += [chunk("s", i, piece) for i, piece in enumerate(pieces)]
    packets.append(trailer("s"))
    assembler = TextStreamAssembler()
    assert [r.text for r in feed_all(assembler, packets)] == [data.decode()]
    assert assembler.dropped == 0


def test_decompression_bomb_is_dropped() -> None:
    bomb = deflate_raw(b"\0" * 20_000_000)
    assert len(bomb) < 30_000
    assembler = TextStreamAssembler()
    out = feed_all(assembler, [header("s", inline=bomb, compression=models.DataStream.DEFLATE_RAW)])
    assert out == [] and assembler.dropped == 1
    packets = [header("t", compression=models.DataStream.DEFLATE_RAW), chunk("t", 0, bomb)]
    assert feed_all(assembler, [*packets, trailer("t")]) == []
    assert assembler.dropped == 2 and assembler.open_streams == 0


def test_invalid_deflate_is_dropped() -> None:
    assembler = TextStreamAssembler()
    packet = header("s", inline=b"\xff\xfe not deflate", compression=models.DataStream.DEFLATE_RAW)
    assert feed_all(assembler, [packet]) == []
    assert assembler.dropped == 1


# -- receiving: legacy chat ------------------------------------------------------------------


def test_legacy_json_chat() -> None:
    payload = json.dumps({"id": "L1", "timestamp": 1700000000001, "message": "ancien é"})
    assembler = TextStreamAssembler()
    [received] = assembler.feed(legacy(payload.encode()), 0)
    assert received == ReceivedText(
        stream_id="L1",
        sender_identity=SENDER,
        topic=LEGACY_CHAT_TOPIC,
        text="ancien é",
        timestamp_ms=1700000000001,
        transport="legacy_packet",
    )
    assert is_chat(received)


def test_legacy_marked_ignore_legacy_is_skipped() -> None:
    packet = legacy_chat_packet("dup", sender_identity=SENDER, message_id="m")
    assembler = TextStreamAssembler()
    assert assembler.feed(packet, 0) == []
    assert assembler.dropped == 0


def test_legacy_duplicate_of_a_text_stream_is_skipped() -> None:
    assembler = TextStreamAssembler()
    assert len(feed_all(assembler, chat_packets("x", sender_identity=SENDER, message_id="m"))) == 1
    packet = legacy_chat_packet("x", sender_identity=SENDER, message_id="m", ignore_legacy=False)
    assert assembler.feed(packet, 0) == []


def test_chat_message_field() -> None:
    packet = models.DataPacket(
        participant_identity=SENDER,
        chat_message=models.ChatMessage(id="c1", timestamp=5, message="via ChatMessage"),
    )
    [received] = TextStreamAssembler().feed(packet, 0)
    assert (received.stream_id, received.text, received.topic, received.transport) == (
        "c1",
        "via ChatMessage",
        CHAT_TOPIC,
        "chat_message",
    )
    edit = clone(packet)
    edit.chat_message.edit_timestamp = 6
    assert TextStreamAssembler().feed(edit, 0)[0].operation == "update"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2]",
        b'{"id": "x"}',
        b'{"message": 42}',
        b"[" * 100_000,
        json.dumps({"message": "x" * 200_000}).encode(),
    ],
)
def test_legacy_garbage_is_dropped(payload: bytes) -> None:
    assembler = TextStreamAssembler()
    assert assembler.feed(legacy(payload), 0) == []
    assert assembler.dropped == 1


def test_legacy_odd_fields_are_tolerated() -> None:
    payload = json.dumps({"id": 7, "timestamp": "now", "message": "ok"}).encode()
    [received] = TextStreamAssembler().feed(legacy(payload), 0)
    assert (received.text, received.stream_id, received.timestamp_ms) == ("ok", "", 0)


def test_user_packet_on_another_topic_is_not_chat() -> None:
    assembler = TextStreamAssembler()
    assert assembler.feed(legacy(b'{"message": "x"}', topic="lobby"), 0) == []
    assert assembler.dropped == 0


# -- receiving: bad input ----------------------------------------------------------------------


def test_oversized_announced_total_is_dropped() -> None:
    assembler = TextStreamAssembler(max_text_bytes=1000)
    packets = chat_packets("x" * 1001, sender_identity=SENDER, chunk_size=100)
    assert feed_all(assembler, packets) == []
    # The header counts once; its chunks and trailer then belong to no stream.
    assert assembler.dropped == len(packets) and assembler.open_streams == 0


def test_oversized_without_total_is_dropped_once() -> None:
    assembler = TextStreamAssembler(max_text_bytes=1000)
    packets = [header("s")] + [chunk("s", i, b"y" * 100) for i in range(20)] + [trailer("s")]
    assert feed_all(assembler, packets) == []
    assert assembler.dropped == 1 and assembler.open_streams == 0


def test_default_limit_is_64_kib() -> None:
    assembler = TextStreamAssembler()
    ok = chat_packets("a" * 65536, sender_identity=SENDER)
    assert len(feed_all(assembler, ok)) == 1
    assert feed_all(assembler, chat_packets("a" * 65537, sender_identity=SENDER)) == []
    assert assembler.dropped >= 1


def test_too_many_streams_per_sender() -> None:
    assembler = TextStreamAssembler(max_streams_per_sender=16)
    for i in range(16):
        assert assembler.feed(header(f"s{i}"), 0) == []
    assert assembler.dropped == 0
    assert assembler.feed(header("s16"), 0) == []
    assert assembler.dropped == 1
    # The refused stream's chunks are unknown; another sender is not affected.
    assert feed_all(assembler, [chunk("s16", 0, b"x"), trailer("s16")]) == []
    other = chat_packets("autre", sender_identity="bob")
    assert [r.text for r in feed_all(assembler, other)] == ["autre"]
    # A finished stream frees its slot.
    assert [r.text for r in feed_all(assembler, [chunk("s0", 0, b"ok"), trailer("s0")])] == ["ok"]
    assert feed_all(assembler, [header("s17")]) == []
    assert assembler.dropped == 3


def test_too_many_streams_overall() -> None:
    assembler = TextStreamAssembler(max_streams=4)
    for i in range(4):
        assembler.feed(header("s", identity=f"p{i}"), 0)
    assert assembler.feed(header("s", identity="p4"), 0) == []
    assert assembler.dropped == 1 and assembler.open_streams == 4


def test_stalled_stream_times_out() -> None:
    assembler = TextStreamAssembler(stream_timeout=30.0)
    assembler.feed(header("s"), 100.0)
    assembler.feed(chunk("s", 0, b"partial"), 110.0)
    assert assembler.expire(139.0) == 0  # progress 29 s ago: still alive
    # the next feed, 31 s after the last progress, drops it before handling its own packet
    assert assembler.feed(chunk("s", 1, b" rest"), 141.0) == []
    assert assembler.feed(trailer("s"), 141.0) == []
    assert assembler.open_streams == 0 and assembler.dropped == 3


def test_expire_returns_what_it_dropped() -> None:
    assembler = TextStreamAssembler()
    assembler.feed(header("a"), 0)
    assembler.feed(header("b"), 20)
    assert assembler.expire(31) == 1
    assert assembler.expire(51) == 1
    assert assembler.dropped == 2 and assembler.open_streams == 0


def test_forget_sender() -> None:
    assembler = TextStreamAssembler()
    assembler.feed(header("a"), 0)
    assembler.feed(header("b", identity="other"), 0)
    assert assembler.forget_sender(SENDER) == 1
    assert assembler.open_streams == 1


def test_chunk_for_unknown_stream_is_dropped() -> None:
    assembler = TextStreamAssembler()
    assert assembler.feed(chunk("nope", 0, b"x"), 0) == []
    assert assembler.feed(trailer("nope"), 0) == []
    assert assembler.dropped == 2


def test_another_sender_cannot_write_into_a_stream() -> None:
    assembler = TextStreamAssembler()
    assembler.feed(header("s", identity="alice"), 0)
    assert assembler.feed(chunk("s", 0, b"intrus", identity="mallory"), 0) == []
    assert assembler.feed(trailer("s", identity="mallory"), 0) == []
    assert assembler.dropped == 2
    out = feed_all(
        assembler, [chunk("s", 0, b"vrai", identity="alice"), trailer("s", identity="alice")]
    )
    assert [r.text for r in out] == ["vrai"]


def test_out_of_order_chunk_drops_the_stream() -> None:
    assembler = TextStreamAssembler()
    packets = [header("s"), chunk("s", 1, b"b"), chunk("s", 0, b"a"), trailer("s")]
    assert feed_all(assembler, packets) == []
    assert assembler.dropped == 1 and assembler.open_streams == 0


def test_duplicate_chunk_is_ignored() -> None:
    assembler = TextStreamAssembler()
    packets = [header("s"), chunk("s", 0, b"a"), chunk("s", 0, b"a"), chunk("s", 1, b"b")]
    out = feed_all(assembler, [*packets, trailer("s")])
    assert [r.text for r in out] == ["ab"] and assembler.dropped == 1


def test_aborted_stream_is_dropped() -> None:
    assembler = TextStreamAssembler()
    out = feed_all(assembler, [header("s"), chunk("s", 0, b"a"), trailer("s", reason="cancelled")])
    assert out == [] and assembler.dropped == 1


def test_incomplete_stream_is_dropped() -> None:
    assembler = TextStreamAssembler()
    out = feed_all(assembler, [header("s", total=10), chunk("s", 0, b"abc"), trailer("s")])
    assert out == [] and assembler.dropped == 1


def test_more_than_total_length_is_dropped() -> None:
    assembler = TextStreamAssembler()
    out = feed_all(assembler, [header("s", total=2), chunk("s", 0, b"abc"), trailer("s")])
    assert out == [] and assembler.dropped == 1


def test_duplicate_header_is_dropped() -> None:
    assembler = TextStreamAssembler()
    assembler.feed(header("s"), 0)
    assert assembler.feed(header("s"), 0) == [] and assembler.dropped == 1


def test_invalid_utf8_is_replaced() -> None:
    out = feed_all(
        TextStreamAssembler(), [header("s"), chunk("s", 0, b"ok \xff\xc3"), trailer("s")]
    )
    assert [r.text for r in out] == ["ok \ufffd\ufffd"]


def test_byte_stream_is_ignored_quietly() -> None:
    assembler = TextStreamAssembler()
    packets = [header("f", byte_stream=True), chunk("f", 0, b"\x89PNG"), trailer("f")]
    assert feed_all(assembler, packets) == []
    assert assembler.dropped == 0 and assembler.open_streams == 0


def test_wrong_topic() -> None:
    packets = chat_packets("pas du chat", sender_identity=SENDER, topic="lk.transcription")
    [received] = feed_all(TextStreamAssembler(), packets)
    assert not is_chat(received)
    filtered = TextStreamAssembler(topics=CHAT_TOPICS)
    assert feed_all(filtered, packets) == []
    assert filtered.dropped == 0 and filtered.open_streams == 0


def test_encrypted_packets_are_dropped() -> None:
    assembler = TextStreamAssembler()
    packet = models.DataPacket(
        encrypted_packet=models.EncryptedPacket(encrypted_value=b"\x01\x02", iv=b"0" * 12)
    )
    assert assembler.feed(packet, 0) == []
    gcm = header("s")
    gcm.stream_header.encryption_type = models.Encryption.GCM
    assert assembler.feed(gcm, 0) == []
    assert assembler.dropped == 2


def test_unknown_compression_is_dropped() -> None:
    assembler = TextStreamAssembler()
    packet = header("s")
    # a future value, kept as an unknown enum number
    packet.stream_header.compression = 7  # type: ignore[assignment]
    assert assembler.feed(packet.SerializeToString(), 0) == []
    assert assembler.dropped == 1


def test_empty_stream_id_is_dropped() -> None:
    assembler = TextStreamAssembler()
    assert assembler.feed(header(""), 0) == [] and assembler.dropped == 1


@pytest.mark.parametrize(
    "garbage", [b"\xff\xff\xff\xff", b"\x0a\x05hello", b"\x6a\x80\x80\x80\x80\x80\x80", b"\x00"]
)
def test_garbage_bytes(garbage: bytes) -> None:
    assembler = TextStreamAssembler()
    assert assembler.feed(garbage, 0) == []


def test_fuzzed_packets_never_raise() -> None:
    rng = random.Random(42)
    valid = [
        p.SerializeToString()
        for text in ["bonjour é 👋", "x" * 40, ""]
        for p in chat_packets(text, sender_identity=SENDER, message_id="m", chunk_size=5)
    ]
    valid.append(
        legacy_chat_packet("l", sender_identity=SENDER, message_id="l").SerializeToString()
    )
    assembler = TextStreamAssembler()
    for i in range(5000):
        data = bytearray(rng.choice(valid))
        for _ in range(rng.randrange(1, 4)):
            if data and rng.random() < 0.7:
                data[rng.randrange(len(data))] = rng.randrange(256)
            else:
                data[rng.randrange(len(data) + 1) :] = rng.randbytes(rng.randrange(8))
        for received in assembler.feed(bytes(data), i * 0.01):
            assert isinstance(received.text, str)
    assert assembler.open_streams <= assembler.max_streams
