"""The ``rondpoint serve`` process: opens the gateway, serves its HTTP application, prints the
banner, and stops both on SIGINT or SIGTERM.

The layers below know nothing of this one: gateway/server.py is the gateway without HTTP, and
gateway/http/app.py the application for a gateway it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from pathlib import Path

from aiohttp import web

from gateway.config import Config
from gateway.http.app import create_app
from gateway.plugins import PluginError
from gateway.server import Gateway, banner
from gateway.store import StoreError

# the start and stop lines keep the logger name they have always had: operators filter on it
log = logging.getLogger("gateway.server")

HTTP_REQUEST_HEAD_SECONDS = 15.0
"""aiohttp's keep-alive timer runs from a connection's opening and from each response, and closes
the connection if no complete request head has arrived when it fires: the deadline on a slow
client's headers (a slowloris), and on an idle keep-alive connection. Bodies: gateway/http/app.py."""


class StartupError(Exception):
    """The gateway cannot start; the message is one line for the operator naming the file (or
    setting) and the problem."""


def _tls_context(config: Config) -> ssl.SSLContext | None:
    """The HTTPS context, or StartupError naming the setting and file that cannot be used."""
    if not config.http.tls_cert:
        return None
    for key, path in (
        ("http.tls_cert", config.http.tls_cert),
        ("http.tls_key", config.http.tls_key),
    ):
        try:
            Path(path).read_bytes()
        except OSError as error:
            raise StartupError(f"{key} {path}: {error.strerror or error}") from None
    ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ssl_context.load_cert_chain(config.http.tls_cert, config.http.tls_key)
    except ssl.SSLError as error:
        raise StartupError(
            f"http.tls_cert {config.http.tls_cert} and http.tls_key {config.http.tls_key}: "
            f"not a PEM certificate chain and its private key ({error.reason or error})"
        ) from None
    return ssl_context


def _open_gateway(config: Config) -> Gateway:
    try:
        return Gateway(config)
    except StoreError as error:
        raise StartupError(str(error)) from None
    except OSError as error:
        where = error.filename or config.data_path
        if str(where) == str(config.data_path):
            problem = "not a directory" if _data_is_file(config) else error.strerror or error
            raise StartupError(f"server.data_dir {where}: {problem}") from None
        raise StartupError(f"{where}: {error.strerror or error}") from None


def _data_is_file(config: Config) -> bool:
    return config.data_path.exists() and not config.data_path.is_dir()


async def serve(config: Config) -> None:
    ssl_context = _tls_context(config)
    gateway = _open_gateway(config)
    try:
        await gateway.start()
    except PluginError as error:
        raise StartupError(str(error)) from None
    app = create_app(gateway)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, keepalive_timeout=HTTP_REQUEST_HEAD_SECONDS
    )
    await runner.setup()
    site = web.TCPSite(runner, config.http.host, config.http.port, ssl_context=ssl_context)
    await site.start()
    print(banner(gateway, gateway.relay.port), flush=True)
    log.info(
        "gateway started", extra={"http_port": config.http.port, "media_port": gateway.relay.port}
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("gateway stopping")
    await gateway.stop()
    await runner.cleanup()
