"""LiveKit chat on the data channel, sans-I/O: text streams out, text streams and legacy chat in.

What it is for: the Visio bridge (issue 4) carries chat both ways. Visio's web client
(@livekit/components-core `setupChat`, behind components-react `useChat`) sends each message as
a LiveKit *text stream* on topic `lk.chat`, and reads text streams on that topic; older clients
used a *legacy* user packet on topic `lk-chat-topic` whose payload is JSON
`{"id", "timestamp", "message"}` (components-core still sends it after every text stream, with
`"ignoreLegacy": true` when the server is newer than 1.8.2, and skips such packets on receipt).
This module builds the packets of a text stream (`chat_packets`) and reassembles the ones it is
fed (`TextStreamAssembler`); the WebRTC leg (`protocols.livekit.rtc`) moves the packets.

Protocol followed: LiveKit data streams as in `livekit_models.proto` of livekit/protocol (the
`livekit-protocol` package: `DataPacket.stream_header / stream_chunk / stream_trailer`,
`DataStream.Header / TextHeader / Chunk / Trailer`), sent the way `sendText` sends them in
livekit/client-sdk-js 2.21 (`src/room/data-stream/outgoing/OutgoingDataStreamManager.ts`,
`header-utils.ts`) and in the Rust core of the Python SDK (livekit/rust-sdks
`livekit-data-stream/src/outgoing/{manager,raw_stream}.rs`), to a recipient that does not
advertise "data streams v2" (ClientInfo.client_protocol < 2), which is what we are:

- header packet: `stream_id` (a UUID), `timestamp` (ms since the epoch), `topic`,
  `mime_type` "text/plain", `total_length` = the UTF-8 byte length, `attributes`,
  `text_header` with `operation_type` CREATE (version 0, no reply, no attachment),
  `compression` NONE, no `inline_content`;
- chunk packets: `chunk_index` 0, 1, 2... with at most 15 000 bytes of UTF-8 each, cut before a
  continuation byte so no code point is split (JS `splitUtf8`, Rust `utf8_aware_chunks`: both
  readers decode each chunk on its own);
- trailer packet: the `stream_id`, empty `reason`.
Every packet carries `participant_identity` (the Rust SDK sets it; livekit-server overwrites it
with the sender's identity anyway) and the same `destination_identities` (as the JS SDK does).

The receiving side also accepts what a v2 sender may send (a single header packet with
`inline_content`, and `compression` DEFLATE_RAW on inline content or chunks), the legacy
`lk-chat-topic` JSON packets, and the `DataPacket.chat_message` field (livekit-client's
deprecated `sendChatMessage`). Nothing a remote sends makes it raise: bad input is dropped and
counted (`TextStreamAssembler.dropped`), with bounds on text size, open streams per sender and
overall, and idle time.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from livekit.protocol import models

log = logging.getLogger(__name__)

CHAT_TOPIC = "lk.chat"
"""Topic of chat text streams (components-core `DataTopic.CHAT`)."""
LEGACY_CHAT_TOPIC = "lk-chat-topic"
"""Topic of legacy chat user packets, JSON {id, timestamp, message} (`LegacyDataTopic.CHAT`)."""
CHAT_TOPICS = frozenset({CHAT_TOPIC, LEGACY_CHAT_TOPIC})

TEXT_MIME_TYPE = "text/plain"
STREAM_CHUNK_SIZE = 15_000
"""Largest chunk content, in bytes: `STREAM_CHUNK_SIZE_BYTES` of the JS and Rust SDKs."""

DEFAULT_MAX_TEXT_BYTES = 64 * 1024
DEFAULT_MAX_STREAMS_PER_SENDER = 16
DEFAULT_MAX_STREAMS = 64
DEFAULT_STREAM_TIMEOUT = 30.0
_REMEMBERED = 1024
"""How many finished streams / delivered messages are remembered (trailers after an early
completion, legacy duplicates of a text stream)."""

_OPERATIONS = {
    models.DataStream.CREATE: "create",
    models.DataStream.UPDATE: "update",
    models.DataStream.DELETE: "delete",
    models.DataStream.REACTION: "reaction",
}


@dataclass(frozen=True)
class ReceivedText:
    """One complete text message from a remote participant."""

    stream_id: str
    """The text stream's id; for legacy and chat_message packets, the message's `id`. Chat
    clients treat a second message with the same (sender, id) as an edit of the first."""
    sender_identity: str
    topic: str
    text: str
    timestamp_ms: int
    attributes: dict[str, str] = field(default_factory=dict)
    operation: str = "create"
    """"create", "update", "delete" or "reaction" (TextHeader.operation_type)."""
    reply_to_stream_id: str = ""
    transport: str = "text_stream"
    """"text_stream", "legacy_packet" (lk-chat-topic JSON) or "chat_message"."""


def is_chat(received: ReceivedText) -> bool:
    """True for a chat message: topic `lk.chat` or the legacy `lk-chat-topic`."""
    return received.topic in CHAT_TOPICS


def split_utf8(data: bytes, size: int) -> list[bytes]:
    """Cut UTF-8 bytes into pieces of at most SIZE bytes, never inside a code point.

    The algorithm of client-sdk-js `splitUtf8` and rust-sdks `Utf8AwareChunks`: when more than
    SIZE bytes remain, step back from index SIZE over continuation bytes (10xxxxxx) and cut there.
    """
    if size < 4:
        raise ValueError("chunk size must be at least 4 bytes (the longest UTF-8 sequence)")
    chunks: list[bytes] = []
    start = 0
    end = len(data)
    while end - start > size:
        cut = start + size
        while cut > start and (data[cut] & 0xC0) == 0x80:
            cut -= 1
        if cut == start:  # not UTF-8 (a run of continuation bytes): cut where the size says
            cut = start + size
        chunks.append(data[start:cut])
        start = cut
    if start < end:
        chunks.append(data[start:])
    return chunks


def chat_packets(
    text: str,
    *,
    sender_identity: str,
    topic: str = CHAT_TOPIC,
    message_id: str | None = None,
    timestamp_ms: int | None = None,
    chunk_size: int = STREAM_CHUNK_SIZE,
    attributes: Mapping[str, str] | None = None,
    destination_identities: Sequence[str] = (),
) -> list[models.DataPacket]:
    """The packets of one text stream carrying TEXT, as the SDKs' `sendText` sends them to a
    recipient without data streams v2: one header, the chunks (none for an empty text), one
    trailer. Send them in order on the reliable channel.

    MESSAGE_ID becomes the stream id (a new UUID when None): chat clients use it as the message id.
    TIMESTAMP_MS defaults to now.
    """
    data = text.encode("utf-8")
    chunks = split_utf8(data, chunk_size)
    stream_id = message_id if message_id is not None else str(uuid.uuid4())
    timestamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    destinations = list(destination_identities)

    def packet(**value: Any) -> models.DataPacket:
        return models.DataPacket(
            kind=models.DataPacket.RELIABLE,
            participant_identity=sender_identity,
            destination_identities=destinations,
            **value,
        )

    header = models.DataStream.Header(
        stream_id=stream_id,
        timestamp=timestamp,
        topic=topic,
        mime_type=TEXT_MIME_TYPE,
        total_length=len(data),
        attributes=dict(attributes or {}),
        text_header=models.DataStream.TextHeader(operation_type=models.DataStream.CREATE),
        compression=models.DataStream.NONE,
    )
    packets = [packet(stream_header=header)]
    for index, content in enumerate(chunks):
        chunk = models.DataStream.Chunk(stream_id=stream_id, chunk_index=index, content=content)
        packets.append(packet(stream_chunk=chunk))
    packets.append(packet(stream_trailer=models.DataStream.Trailer(stream_id=stream_id)))
    return packets


def legacy_chat_packet(
    text: str,
    *,
    sender_identity: str,
    message_id: str,
    timestamp_ms: int | None = None,
    ignore_legacy: bool = True,
) -> models.DataPacket:
    """The legacy chat packet components-core sends after each text stream: a reliable user
    packet on `lk-chat-topic` with JSON {"id","timestamp","message","ignoreLegacy"}. With
    IGNORE_LEGACY (what components-core sets on a server newer than 1.8.2) current clients skip
    it and only clients that predate text streams show it; use MESSAGE_ID = the stream's id."""
    timestamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    body: dict[str, Any] = {"id": message_id, "timestamp": timestamp, "message": text}
    if ignore_legacy:
        body["ignoreLegacy"] = True
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return models.DataPacket(
        kind=models.DataPacket.RELIABLE,
        participant_identity=sender_identity,
        user=models.UserPacket(
            participant_identity=sender_identity, payload=payload, topic=LEGACY_CHAT_TOPIC
        ),
    )


def _legacy_timestamp(value: object) -> int:
    """A JSON timestamp in ms, or 0 when it is not a sensible number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value) if 0 <= value < 2**63 else 0


@dataclass
class _Stream:
    sender_identity: str
    topic: str
    timestamp_ms: int
    attributes: dict[str, str]
    total_length: int | None
    operation: str
    reply_to: str
    skip: bool
    """A stream we do not keep (byte stream, topic not wanted): its packets are consumed quietly."""
    inflater: Any  # zlib decompressobj for DEFLATE_RAW streams, else None
    last_progress: float
    next_index: int = 0
    data: bytearray = field(default_factory=bytearray)


class TextStreamAssembler:
    """Reassembles LiveKit text streams (and legacy chat packets) from the DataPackets it is fed.

    `feed(packet, now)` returns the messages that packet completed; `now` is a monotonic clock in
    seconds. Streams are keyed by (sender, stream id), the sender being the packet's
    `participant_sid` (which livekit-server always sets to the real sender) or, when empty,
    its `participant_identity`: a participant cannot write into another's stream.

    Bounds: a text of more than MAX_TEXT_BYTES (announced, inline, received or decompressed) is
    dropped; a header beyond MAX_STREAMS_PER_SENDER open streams of its sender or MAX_STREAMS
    overall is dropped; a stream with no packet for STREAM_TIMEOUT seconds is dropped at the next
    `feed` or `expire`. Also dropped: chunks and trailers of unknown streams, duplicate chunks,
    a stream with a missing chunk, a trailer with a reason (aborted), an incomplete stream,
    undecodable compression, encrypted packets, unparsable packets and legacy payloads. Each
    counts one in `dropped`. Invalid UTF-8 is replaced (U+FFFD), never raised.

    TOPICS, when given, is the set of topics kept (e.g. `CHAT_TOPICS`); streams on other topics
    and byte streams are consumed without being buffered, and are not counted as dropped.
    """

    def __init__(
        self,
        *,
        topics: Collection[str] | None = None,
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
        max_streams_per_sender: int = DEFAULT_MAX_STREAMS_PER_SENDER,
        max_streams: int = DEFAULT_MAX_STREAMS,
        stream_timeout: float = DEFAULT_STREAM_TIMEOUT,
    ) -> None:
        self.topics = frozenset(topics) if topics is not None else None
        self.max_text_bytes = max_text_bytes
        self.max_streams_per_sender = max_streams_per_sender
        self.max_streams = max_streams
        self.stream_timeout = stream_timeout
        self.dropped = 0
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._per_sender: dict[str, int] = {}
        self._finished: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._delivered: OrderedDict[tuple[str, str], None] = OrderedDict()

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def feed(self, packet: models.DataPacket | bytes, now: float) -> list[ReceivedText]:
        """Take one DataPacket (or its serialized bytes); return the messages it completes."""
        self.expire(now)
        try:
            if isinstance(packet, bytes | bytearray | memoryview):
                parsed = models.DataPacket()
                parsed.ParseFromString(bytes(packet))
                packet = parsed
            return self._feed(packet, now)
        except DecodeError:
            self.dropped += 1
            return []
        except Exception:
            # Defence in depth: no path below should raise on remote input; if one does, the
            # packet is dropped and the data channel lives on.
            log.warning("data packet dropped: unexpected error", exc_info=True)
            self.dropped += 1
            return []

    def expire(self, now: float) -> int:
        """Drop the streams idle for more than the timeout; return how many were dropped."""
        stale = [
            key
            for key, stream in self._streams.items()
            if now - stream.last_progress > self.stream_timeout
        ]
        counted = 0
        for key in stale:
            if not self._streams[key].skip:
                counted += 1
            self._close(key)
        self.dropped += counted
        return counted

    def forget_sender(self, sender: str) -> int:
        """Drop the open streams of SENDER (a sid or identity key: a participant who left), as the
        SDKs abort them; return how many were dropped (counted in `dropped`)."""
        keys = [key for key in self._streams if key[0] == sender]
        counted = sum(1 for key in keys if not self._streams[key].skip)
        for key in keys:
            self._close(key)
        self.dropped += counted
        return counted

    # -- internals --------------------------------------------------------------------------

    def _feed(self, packet: models.DataPacket, now: float) -> list[ReceivedText]:
        which = packet.WhichOneof("value")
        sender = packet.participant_sid or packet.participant_identity
        if which == "stream_header":
            return self._header(packet.stream_header, sender, packet.participant_identity, now)
        if which == "stream_chunk":
            return self._chunk(packet.stream_chunk, sender, now)
        if which == "stream_trailer":
            return self._trailer(packet.stream_trailer, sender)
        if which == "user":
            return self._legacy(packet.user, packet.participant_identity)
        if which == "chat_message":
            return self._chat_message(packet.chat_message, packet.participant_identity)
        if which == "encrypted_packet":
            self.dropped += 1  # end-to-end encrypted data: we hold no key
        return []

    def _wanted(self, topic: str) -> bool:
        return self.topics is None or topic in self.topics

    def _header(
        self, header: models.DataStream.Header, sender: str, identity: str, now: float
    ) -> list[ReceivedText]:
        key = (sender, header.stream_id)
        if not header.stream_id or key in self._streams:
            self.dropped += 1
            return []
        skip = header.WhichOneof("content_header") != "text_header" or not self._wanted(
            header.topic
        )
        total = header.total_length if header.HasField("total_length") else None
        if not skip:
            if header.encryption_type != models.Encryption.NONE:
                self.dropped += 1
                return []
            if header.compression not in (models.DataStream.NONE, models.DataStream.DEFLATE_RAW):
                self.dropped += 1
                return []
            if total is not None and total > self.max_text_bytes:
                self.dropped += 1
                return []
        compressed = header.compression == models.DataStream.DEFLATE_RAW
        text_header = header.text_header
        stream = _Stream(
            sender_identity=identity,
            topic=header.topic,
            timestamp_ms=header.timestamp,
            attributes=dict(header.attributes),
            total_length=total,
            operation=_OPERATIONS.get(text_header.operation_type, "create"),
            reply_to=text_header.reply_to_stream_id,
            skip=skip,
            inflater=zlib.decompressobj(wbits=-15) if compressed and not skip else None,
            last_progress=now,
        )
        if header.HasField("inline_content"):
            # Data streams v2, single packet: the whole payload is in the header.
            if skip:
                return []
            if not self._append(stream, header.inline_content) or not self._finish_inflate(stream):
                self.dropped += 1
                return []
            if stream.total_length is not None and len(stream.data) != stream.total_length:
                self.dropped += 1
                return []
            return [self._deliver(stream, header.stream_id)]
        if (
            self._per_sender.get(sender, 0) >= self.max_streams_per_sender
            or len(self._streams) >= self.max_streams
        ):
            if not skip:
                self.dropped += 1
            return []
        self._streams[key] = stream
        self._per_sender[sender] = self._per_sender.get(sender, 0) + 1
        return []

    def _chunk(self, chunk: models.DataStream.Chunk, sender: str, now: float) -> list[ReceivedText]:
        key = (sender, chunk.stream_id)
        stream = self._streams.get(key)
        if stream is None:
            if key not in self._finished:
                self.dropped += 1
            return []
        stream.last_progress = now
        if stream.skip:
            return []
        if chunk.chunk_index < stream.next_index:  # a duplicate (replayed) chunk
            self.dropped += 1
            return []
        if chunk.chunk_index > stream.next_index or chunk.HasField("iv"):
            # A missing chunk can never be recovered; an iv means per-chunk encryption.
            self._fail(key)
            return []
        stream.next_index += 1
        if not self._append(stream, chunk.content):
            self._fail(key)
            return []
        if stream.total_length is not None and len(stream.data) >= stream.total_length:
            if len(stream.data) > stream.total_length or not self._finish_inflate(stream):
                self._fail(key)
                return []
            self._close(key, finished=True)
            return [self._deliver(stream, chunk.stream_id)]
        return []

    def _trailer(self, trailer: models.DataStream.Trailer, sender: str) -> list[ReceivedText]:
        key = (sender, trailer.stream_id)
        stream = self._streams.get(key)
        if stream is None:
            if key in self._finished:
                self._finished.pop(key, None)
            else:
                self.dropped += 1
            return []
        if stream.skip:
            self._close(key)
            return []
        if trailer.reason or not self._finish_inflate(stream):
            self._fail(key)
            return []
        if stream.total_length is not None and len(stream.data) != stream.total_length:
            self._fail(key)
            return []
        stream.attributes.update(trailer.attributes)
        self._close(key)
        return [self._deliver(stream, trailer.stream_id)]

    def _append(self, stream: _Stream, content: bytes) -> bool:
        """Add CONTENT (decompressed when the stream is); False when the text gets too large or
        the compressed data is invalid."""
        if stream.inflater is not None:
            room = self.max_text_bytes - len(stream.data) + 1
            try:
                out = stream.inflater.decompress(content, room)
            except zlib.error:
                return False
            if stream.inflater.unconsumed_tail:
                return False  # more than the limit would come out
            content = out
        stream.data += content
        return len(stream.data) <= self.max_text_bytes

    def _finish_inflate(self, stream: _Stream) -> bool:
        if stream.inflater is None:
            return True
        try:
            rest = stream.inflater.flush()
        except zlib.error:
            return False
        stream.inflater = None
        stream.data += rest
        return len(stream.data) <= self.max_text_bytes

    def _deliver(self, stream: _Stream, stream_id: str) -> ReceivedText:
        received = ReceivedText(
            stream_id=stream_id,
            sender_identity=stream.sender_identity,
            topic=stream.topic,
            text=bytes(stream.data).decode("utf-8", errors="replace"),
            timestamp_ms=stream.timestamp_ms,
            attributes=stream.attributes,
            operation=stream.operation,
            reply_to_stream_id=stream.reply_to,
        )
        self._remember(self._delivered, (stream.sender_identity, stream_id))
        return received

    def _fail(self, key: tuple[str, str]) -> None:
        self.dropped += 1
        self._close(key, finished=True)

    def _close(self, key: tuple[str, str], *, finished: bool = False) -> None:
        if self._streams.pop(key, None) is None:
            return
        left = self._per_sender.get(key[0], 1) - 1
        if left > 0:
            self._per_sender[key[0]] = left
        else:
            self._per_sender.pop(key[0], None)
        if finished:
            # Its later chunks and trailer are expected: consume them quietly.
            self._remember(self._finished, key)

    @staticmethod
    def _remember(memory: OrderedDict[tuple[str, str], None], key: tuple[str, str]) -> None:
        memory[key] = None
        memory.move_to_end(key)
        while len(memory) > _REMEMBERED:
            memory.popitem(last=False)

    def _legacy(self, user: models.UserPacket, identity: str) -> list[ReceivedText]:
        if user.topic != LEGACY_CHAT_TOPIC or not self._wanted(LEGACY_CHAT_TOPIC):
            return []  # some other application's data, not ours to judge
        identity = identity or user.participant_identity
        if len(user.payload) > self.max_text_bytes * 2 + 1024:  # JSON escaping may double it
            self.dropped += 1
            return []
        try:
            body = json.loads(user.payload.decode("utf-8", errors="replace"))
        except (ValueError, RecursionError):
            self.dropped += 1
            return []
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            self.dropped += 1
            return []
        if body.get("ignoreLegacy") is True:
            return []  # the same message came as a text stream
        message: str = body["message"]
        if len(message.encode("utf-8", errors="replace")) > self.max_text_bytes:
            self.dropped += 1
            return []
        message_id = body.get("id")
        message_id = message_id if isinstance(message_id, str) else user.id
        timestamp_ms = _legacy_timestamp(body.get("timestamp"))
        if message_id and (identity, message_id) in self._delivered:
            return []  # a duplicate of a text stream already delivered
        self._remember(self._delivered, (identity, message_id))
        return [
            ReceivedText(
                stream_id=message_id,
                sender_identity=identity,
                topic=LEGACY_CHAT_TOPIC,
                text=message,
                timestamp_ms=timestamp_ms,
                transport="legacy_packet",
            )
        ]

    def _chat_message(self, chat: models.ChatMessage, identity: str) -> list[ReceivedText]:
        if not self._wanted(CHAT_TOPIC):
            return []
        if len(chat.message.encode("utf-8", errors="replace")) > self.max_text_bytes:
            self.dropped += 1
            return []
        if (
            chat.id
            and (identity, chat.id) in self._delivered
            and not chat.HasField("edit_timestamp")
        ):
            return []
        self._remember(self._delivered, (identity, chat.id))
        if chat.deleted:
            operation = "delete"
        elif chat.HasField("edit_timestamp"):
            operation = "update"
        else:
            operation = "create"
        return [
            ReceivedText(
                stream_id=chat.id,
                sender_identity=identity,
                topic=CHAT_TOPIC,
                text=chat.message,
                timestamp_ms=chat.timestamp,
                operation=operation,
                transport="chat_message",
            )
        ]
