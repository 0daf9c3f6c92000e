"""A baresip softphone driven over ctrl_tcp, for interop tests: dial, answer, DTMF, hang up, recording.

baresip 1.0.0 (Debian bookworm) runs with a config directory of its own, no audio device: the
``aufile`` module plays a WAV as its microphone and the ``sndfile`` filter records what it
receives (``dump-*-dec.wav``) and what it sends (``dump-*-enc.wav``). Commands go to ``ctrl_tcp``
as netstring-framed JSON (``{"command": ..., "params": ..., "token": ...}``); the ``menu``
module provides the commands themselves (``dial``, ``hangup``, ``sndcode``...). Responses and
call events (``CALL_RINGING``, ``CALL_ESTABLISHED``, ``CALL_CLOSED``...) come back on the same
connection.

Usage::

    async with Baresip(tmp_path, tone_hz=1000.0) as phone:
        await phone.dial("sip:room@127.0.0.1:5060")
        await phone.wait_event("CALL_ESTABLISHED")
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import socket
import threading
import wave
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from tests.gateway_process import free_port

T = TypeVar("T")

RATE = 8000
"""G.711's rate: aufile insists that its WAV matches the source rate, set to this in the config."""


def write_tone(path: Path, frequency: float, seconds: float, amplitude: int = 8000) -> Path:
    """A mono 16-bit WAV holding a sine; long, because a call ends when aufile's file does."""
    t = np.arange(round(seconds * RATE)) / RATE
    samples = np.round(amplitude * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(samples.tobytes())
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono int16 samples (the first channel) and the sample rate of a WAV."""
    with wave.open(str(path), "rb") as f:
        channels, rate = f.getnchannels(), f.getframerate()
        samples = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    return samples[::channels].astype(np.int16), rate


def _free_sip_port() -> int:
    """A port free for UDP and TCP, with the next one free too (baresip's TLS listens there)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        if port >= 65535:
            continue
        try:
            for candidate, kind in itertools.product(
                (port, port + 1), (socket.SOCK_DGRAM, socket.SOCK_STREAM)
            ):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free SIP port pair for baresip")


class Baresip:
    """One baresip process with its own config directory under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        tone_hz: float = 1000.0,
        tone_seconds: float = 60.0,
        codecs: str = "PCMA",
        user: str = "baresip",
        answermode: str = "auto",
        lifetime: int = 120,
        mediaenc: str = "",
    ) -> None:
        self.workdir = workdir
        self.config_dir = workdir / "config"
        self.recordings = workdir / "recordings"
        self.tone_hz = tone_hz
        self.tone_seconds = tone_seconds
        self.codecs = codecs
        self.user = user
        self.answermode = answermode
        self.lifetime = lifetime
        self.mediaenc = mediaenc
        """e.g. "srtp-mand": SRTP with SDES keys (RFC 4568), and nothing else."""
        """baresip quits by itself after this many seconds (-t), should a test leave it behind."""
        self.sip_port = _free_sip_port()
        self.ctrl_port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.log_path = workdir / "baresip.log"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._responses: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tokens = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        """Every event received, in order, for assertions and failure messages."""

    @property
    def uri(self) -> str:
        """Where to call this phone."""
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    # set-up ------------------------------------------------------------------------------------
    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.recordings.mkdir(parents=True, exist_ok=True)
        tone = write_tone(self.workdir / "tone.wav", self.tone_hz, self.tone_seconds)
        rtp_start = (
            10000 + (self.sip_port % 100) * 100
        )  # below the ephemeral range, apart from the gateways
        (self.config_dir / "config").write_text(
            "poll_method\tepoll\n"
            f"sip_listen\t127.0.0.1:{self.sip_port}\n"
            "call_local_timeout\t30\n"
            "call_max_calls\t4\n"
            f"audio_source\taufile,{tone}\n"
            # no audio device: the sndfile filter records, the player is a module that never loads
            "audio_player\tnone,none\n"
            "audio_alert\tnone,none\n"
            f"ausrc_srate\t{RATE}\n"
            f"auplay_srate\t{RATE}\n"
            "ausrc_channels\t1\n"
            "auplay_channels\t1\n"
            "audio_level\tno\n"
            f"rtp_ports\t{rtp_start}-{rtp_start + 99}\n"
            "rtcp_mux\tno\n"
            "jitter_buffer_delay\t1-10\n"
            "dns_server\t127.0.0.1:53\n"
            "net_interface\t127.0.0.1\n"
            "module_path\t/usr/lib/baresip/modules\n"
            "module\tg711.so\n"
            "module\taufile.so\n"
            "module\tsndfile.so\n" + ("module\tsrtp.so\n" if self.mediaenc else "") + ""
            "module_tmp\taccount.so\n"
            "module_app\tmenu.so\n"
            "module_app\tctrl_tcp.so\n"
            f"ctrl_tcp_listen\t127.0.0.1:{self.ctrl_port}\n"
            f"snd_path\t{self.recordings}\n"
            "ringback_disabled\tyes\n"
            "menu_bell\tno\n"
            "statmode_default\toff\n"
        )
        (self.config_dir / "accounts").write_text(
            f"<sip:{self.user}@127.0.0.1>;regint=0;audio_codecs={self.codecs};"
            f"answermode={self.answermode}"
            + (f";mediaenc={self.mediaenc}" if self.mediaenc else "")
            + "\n"
        )
        (self.config_dir / "contacts").write_text("")

    async def start(self, timeout: float = 10.0) -> None:
        executable = shutil.which("baresip")
        assert executable, "baresip is not installed: run 'make system-deps'"
        self.write_config()
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.process = await asyncio.create_subprocess_exec(
                executable,
                "-f",
                str(self.config_dir),
                "-v",
                "-s",
                "-t",
                str(self.lifetime),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.workdir,
            )
        finally:
            os.close(log)
        async with asyncio.timeout(timeout):
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"baresip exited: {self.log_tail()}")
                try:
                    self._reader, self._writer = await asyncio.open_connection(
                        "127.0.0.1", self.ctrl_port
                    )
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        self._read_task = asyncio.create_task(self._read_loop())

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._read_task
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def __aenter__(self) -> Baresip:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # ctrl_tcp ----------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                length = await self._reader.readuntil(b":")
                payload = await self._reader.readexactly(int(length[:-1]))
                if await self._reader.readexactly(1) != b",":
                    raise ValueError("ctrl_tcp: a netstring without its ','")
                message = json.loads(payload)
                if message.get("event"):
                    self.events.append(message)
                    self._events.put_nowait(message)
                elif message.get("response"):
                    future = self._responses.pop(str(message.get("token")), None)
                    if future is not None and not future.done():
                        future.set_result(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    async def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Send a command; its response ({"ok": ..., "data": ...}), an AssertionError if not ok."""
        assert self._writer is not None, "baresip is not started"
        token = str(next(self._tokens))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._responses[token] = future
        payload = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._writer.write(b"%d:%s," % (len(payload), payload))
        await self._writer.drain()
        response = await asyncio.wait_for(future, timeout)
        assert response.get("ok"), f"baresip refused {command} {params}: {response}"
        return response

    async def wait_event(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next event of type ``kind`` (events before it are skipped, kept in ``events``)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await self._events.get()
                    if event.get("type") == kind:
                        return event
        except TimeoutError:
            seen = [e.get("type") for e in self.events]
            raise AssertionError(
                f"baresip: no {kind} within {timeout} s (events: {seen})\n{self.log_tail()}"
            ) from None

    # the phone ---------------------------------------------------------------------------------
    async def dial(self, uri: str) -> None:
        await self.command("dial", uri)

    async def hangup(self) -> None:
        await self.command("hangup")

    async def send_digits(self, digits: str, gap: float = 0.3) -> None:
        """RFC 4733 events, one ``sndcode`` per digit; the gap lets each event end first."""
        for digit in digits:
            await self.command("sndcode", digit)
            await asyncio.sleep(gap)

    def recording(self, direction: str = "dec") -> tuple[np.ndarray, int]:
        """What baresip received (``dec``) or sent (``enc``) in its last call, from sndfile."""
        files = sorted(
            self.recordings.glob(f"dump-*-{direction}.wav"), key=lambda p: p.stat().st_mtime
        )
        assert files, f"sndfile wrote no {direction} recording in {self.recordings}"
        return read_wav(files[-1])


class BaresipInThread:
    """A Baresip driven from synchronous tests (Playwright's sync API): its own event loop in a thread.

    ``with BaresipInThread(tmp_path) as phone: phone.run(phone.baresip.dial(uri))``
    """

    def __init__(self, workdir: Path, **options: Any) -> None:
        self.baresip = Baresip(workdir, **options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="baresip", daemon=True)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __enter__(self) -> BaresipInThread:
        self.thread.start()
        try:
            self.run(self.baresip.start())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.run(self.baresip.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
