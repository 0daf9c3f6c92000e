"""Browsers for NetLab tests and benches: two headless Chromiums, one on the host and one inside the
namespace (through NetLab.chromium_launcher), started and closed together; the pages they open
(stats.js, the getStats sampler every page gets, and livekit-client's test page, served on the
host side)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM
from tests.gateway_process import ROOT, free_port
from tests.netlab.netns import NetLab
from tests.processes import installed

PAGES = Path(__file__).parent / "pages"
STATS_JS = PAGES / "stats.js"
LIVEKIT_CLIENT_SCRIPT = ROOT / "tests" / "livekit_client_npm.sh"


@dataclass
class Browsers:
    host: Any
    namespace: Any


@contextlib.contextmanager
def host_and_namespace(
    lab: NetLab, args: list[str], namespace_env: Mapping[str, str] | None = None
) -> Iterator[Browsers]:
    """Chromium with ARGS on the host and in LAB's namespace (there with NAMESPACE_ENV)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run 'make system-deps'")
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        host = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            namespace = pw.chromium.launch(
                executable_path=str(lab.chromium_launcher()),
                args=args,
                env=dict(namespace_env) if namespace_env is not None else None,
            )
            try:
                yield Browsers(host, namespace)
            finally:
                namespace.close()
        finally:
            host.close()


class _PageHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@contextlib.contextmanager
def serving_livekit_page(lab: NetLab) -> Iterator[str]:
    """tests/netlab/pages/livekit.html and livekit-client's bundle, served on the host side; the
    page's URL."""
    bundle = installed(LIVEKIT_CLIENT_SCRIPT, timeout=300)
    root = Path(ROOT / ".cache" / "netlab-livekit-page")
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_bytes((PAGES / "livekit.html").read_bytes())
    (root / "livekit-client.umd.js").write_bytes(bundle.read_bytes())
    handler = functools.partial(_PageHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((lab.host_ip, free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{lab.host_ip}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
