"""Our LiveKit frame encryption against livekit-client's own E2EE worker, run in Node 20.

livekit-client (pinned, from npm via tests/livekit_client_npm.sh) encrypts Opus and VP8 frames
with Element Call's key options (tests/matrix/js/e2ee_frames.mjs); we decrypt them, including
frames of a sender that ratcheted its key twice. We encrypt frames and livekit-client decrypts
them, including one we ratcheted; a frame with a wrong tag is dropped by it. The same checks run
without Node on the committed vectors (tests/unit/matrix/test_frame_crypto.py); run this module
as a script to write those vectors again:

    .venv/bin/python -m tests.matrix.test_e2ee_frames
"""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import pytest

from protocols.matrix.frame_crypto import FrameCryptor, KeyRing
from tests.gateway_process import ROOT
from tests.processes import installed

INSTALL_SCRIPT = ROOT / "tests" / "livekit_client_npm.sh"
DRIVER = ROOT / "tests" / "matrix" / "js" / "e2ee_frames.mjs"
VECTORS = ROOT / "tests" / "unit" / "matrix" / "frame_crypto_vectors.json"
LIVEKIT_CLIENT_VERSION = "2.23.0"

ANNA = "@anna:hs.test:ANNADEVICE"  # one key at index 0
BRUNO = "@bruno:hs.test:BRUNODEVICE"  # key at index 5, ratcheted twice before sending
GHOST = "@rondpoint_p__abc:hs.test:RONDPOINT"  # ours, key at index 3
ANNA_KEY = bytes(range(16))
BRUNO_KEY = bytes(range(100, 116))
GHOST_KEY = bytes(range(200, 216))

# Real-looking frames: Opus TOC bytes, the VP8 key frame LiveKit injects (RFC 6386 header), and
# a delta frame; lengths around the clear-header sizes (1, 3, 10 bytes).
OPUS_FRAMES = [bytes([0xF8]) + bytes(range(1, 80)), bytes([0x78, 0x01, 0x02]), bytes([0xFC])]
VP8_KEY = (
    bytes.fromhex("1002009d012a080008000047088585888584880202000c0d6000feffab5080")
    + bytes(range(256)) * 4
)
VP8_DELTA = bytes([0x31, 0x02, 0x00]) + bytes(range(90))
VP8_SHORT_DELTA = bytes([0x31, 0x02, 0x00, 0x07])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _frames() -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    for i, data in enumerate(OPUS_FRAMES):
        frames.append(
            {
                "codec": "opus",
                "keyframe": False,
                "ssrc": 0x11223344,
                "timestamp": 960 * (i + 1),
                "plain": data,
            }
        )
    for i, (data, key) in enumerate(
        [(VP8_KEY, True), (VP8_DELTA, False), (VP8_SHORT_DELTA, False)]
    ):
        frames.append(
            {
                "codec": "vp8",
                "keyframe": key,
                "ssrc": 0xDEADBEEF,
                "timestamp": 4_294_960_000 + i,
                "plain": data,
            }
        )
    return frames


def _group(identity: str, codec: str, frames: list[dict[str, Any]], field: str) -> dict[str, Any]:
    return {
        "identity": identity,
        "codec": codec,
        "frames": [
            {
                "data": b64(f[field]),
                "keyframe": f["keyframe"],
                "ssrc": f["ssrc"],
                "timestamp": f["timestamp"],
            }
            for f in frames
            if f["codec"] == codec
        ],
    }


def run_livekit_client(job: dict[str, Any]) -> dict[str, Any]:
    """The driver's result for `job`, with livekit-client installed first when missing."""
    bundle = installed(
        INSTALL_SCRIPT, timeout=600, env={"LIVEKIT_CLIENT_VERSION": LIVEKIT_CLIENT_VERSION}
    )
    worker = bundle.parent / "livekit-client.e2ee.worker.mjs"
    done = subprocess.run(
        ["node", str(DRIVER), str(worker)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def livekit_vectors() -> dict[str, Any]:
    """Frames livekit-client encrypted, and ours it decrypted, as the JSON fixture stores them."""
    frames = _frames()
    ours = FrameCryptor(KeyRing())
    ours.keys.set_key(GHOST_KEY, 3)
    ours.keys.ratchet_key(3)  # livekit-client holds the unratcheted key: it must ratchet
    for f in frames:
        f["ours"] = ours.encrypt_frame(
            f["plain"], f["codec"], f["keyframe"], f["ssrc"], f["timestamp"]
        )
    tampered = bytearray(frames[0]["ours"])
    tampered[3] ^= 0x01
    job = {
        "participants": [
            {"identity": ANNA, "keys": [{"index": 0, "key": b64(ANNA_KEY)}]},
            {"identity": BRUNO, "keys": [{"index": 5, "key": b64(BRUNO_KEY)}], "ratchets": [5, 5]},
            {"identity": GHOST, "keys": [{"index": 3, "key": b64(GHOST_KEY)}]},
        ],
        "encode": [
            _group(who, codec, frames, "plain")
            for who in (ANNA, BRUNO)
            for codec in ("opus", "vp8")
        ],
        "decode": [_group(GHOST, codec, frames, "ours") for codec in ("opus", "vp8")]
        + [
            {
                "identity": GHOST,
                "codec": "opus",
                "frames": [{"data": b64(bytes(tampered)), "keyframe": False}],
            }
        ],
    }
    result = run_livekit_client(job)
    theirs = []
    for group, encrypted in zip(job["encode"], result["encode"], strict=True):
        for spec, data in zip(group["frames"], encrypted, strict=True):
            theirs.append(
                {"identity": group["identity"], "codec": group["codec"], **spec, "encrypted": data}
            )
    decrypted = [d for group in result["decode"][:2] for d in group]
    ours_listed = [
        {
            "identity": GHOST,
            "codec": f["codec"],
            "keyframe": f["keyframe"],
            "ssrc": f["ssrc"],
            "timestamp": f["timestamp"],
            "data": b64(f["plain"]),
            "encrypted": b64(f["ours"]),
            "livekit_decrypted": d,
        }
        for f, d in zip(
            [f for c in ("opus", "vp8") for f in frames if f["codec"] == c],
            decrypted,
            strict=True,
        )
    ]
    return {
        "livekit_client": LIVEKIT_CLIENT_VERSION,
        "keys": {
            ANNA: {"0": b64(ANNA_KEY)},
            BRUNO: {"5": b64(BRUNO_KEY)},
            GHOST: {"3": b64(GHOST_KEY)},
        },
        "theirs": theirs,
        "ours": ours_listed,
        "ours_ratcheted": {"identity": GHOST, "index": 3, "steps": 1},
        "tampered": {"data": b64(bytes(tampered)), "livekit_decrypted": result["decode"][2][0]},
        "ratchets": result["ratchets"],
        "errors": result["errors"],
    }


@pytest.mark.interop
@pytest.mark.timeout(600)
def test_frames_both_ways_with_livekit_client() -> None:
    from tests.unit.matrix.test_frame_crypto import check_vectors

    check_vectors(livekit_vectors())


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(livekit_vectors(), indent=1) + "\n")
    print(VECTORS)
