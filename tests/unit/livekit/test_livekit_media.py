"""protocols/livekit/media.py: what is done to packets on their way to LiveKit."""

from protocols.livekit.media import strip_empty_extension

HEADER = bytes.fromhex("80e1000100000064deadbeef")
PAYLOAD = b"\x90\x80\xc0\xe9vp8"


def test_an_extension_block_of_padding_only_is_removed() -> None:
    packet = bytes([0x90]) + HEADER[1:] + bytes.fromhex("bede0002") + bytes(8) + PAYLOAD
    assert strip_empty_extension(packet) == HEADER + PAYLOAD


def test_an_extension_block_with_an_element_is_kept() -> None:
    block = bytes.fromhex("bede0001") + bytes([0x10, 0x7F, 0, 0])  # audio level, then padding
    packet = bytes([0x90]) + HEADER[1:] + block + PAYLOAD
    assert strip_empty_extension(packet) == packet


def test_csrcs_are_kept_and_truncated_packets_left_alone() -> None:
    csrc = bytes.fromhex("00000007")
    packet = bytes([0x91]) + HEADER[1:] + csrc + bytes.fromhex("bede0001") + bytes(4) + PAYLOAD
    assert strip_empty_extension(packet) == bytes([0x81]) + HEADER[1:] + csrc + PAYLOAD
    broken = bytes([0x90]) + HEADER[1:] + bytes.fromhex("bede0009") + bytes(4)
    assert strip_empty_extension(broken) == broken
