"""The echo plugin's registration object: what it gives the gateway (gateway/plugins.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, Metric

from gateway.plugins import ProtocolPlugin, Running
from rondpoint_echo.admin import add_commands, admin_app
from rondpoint_echo.calls import MIGRATIONS, CallLog, EchoDialler
from rondpoint_echo.config import EchoConfig
from rondpoint_echo.links import SCHEME, EchoAdapter, normalize_target

if TYPE_CHECKING:
    from gateway.server import Gateway


async def start(gateway: Gateway) -> Running | None:
    """Runs the plugin on a started gateway, unless ``[echo] enabled = false``."""
    config: EchoConfig = gateway.config.echo
    if not config.enabled:
        return None
    dialler = EchoDialler(gateway, CallLog(gateway.store.connection))

    def metrics() -> Iterator[Metric]:
        yield CounterMetricFamily(
            "rondpoint_echo_calls", "echo: calls dialled since the start", value=dialler.dialled
        )

    return Running(
        stop=dialler.stop,
        banner=lambda: f"echo:NAME links and calls, greeting {config.greeting!r}",
        link_adapters=[EchoAdapter(gateway, config.greeting)],
        diallers=[dialler],
        metrics=metrics,
    )


plugin = ProtocolPlugin(
    name="echo",
    summary="echo:NAME links and calls that add a participant NAME (the example plugin)",
    config=EchoConfig,
    migrations=MIGRATIONS,
    link_schemes={SCHEME: "echo: needs the echo plugin on: [echo] enabled = true"},
    normalize_target=normalize_target,
    admin=admin_app,
    cli=add_commands,
    start=start,
)
