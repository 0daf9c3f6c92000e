"""Chromium with a camera that films noise: every frame new, so the encoder spends what its target
allows and a layer costs what a real camera's would (the fake camera's default picture needs far
less than a congestion test's goals)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.browser.conftest import launched_chromium


def noise_video(path: Path, *, grey: bool = False, frames: int = 8) -> Path:
    """A 1280x720 Y4M of random frames at PATH; GREY keeps the luma at 128 +- 40 (what a maximal
    noise picture would overspend at maintain-resolution)."""
    rng = random.Random(720)
    table = bytes(88 + b % 81 for b in range(256)) if grey else None
    with open(path, "wb") as out:
        out.write(b"YUV4MPEG2 W1280 H720 F30:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            luma = rng.randbytes(1280 * 720)
            if table is not None:
                luma = luma.translate(table)
            out.write(b"FRAME\n" + luma + bytes([128]) * (2 * 640 * 360))
    return path


@contextlib.contextmanager
def chromium_filming(video: Path) -> Iterator[Any]:
    """A headless Chromium (playwright Browser) whose fake camera plays VIDEO."""
    with launched_chromium(f"--use-file-for-fake-video-capture={video}") as browser:
        yield browser
