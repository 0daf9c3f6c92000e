"""The SIP service running on each gateway, for the SIP admin routes (none when [sip] is off).

Kept apart from plugin.py, which starts the service, so that admin.py reads it without importing
the plugin that mounts admin.py.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.server import Gateway
    from protocols.sip.service import SipService

_services: weakref.WeakKeyDictionary[Gateway, SipService] = weakref.WeakKeyDictionary()


def running_service(gateway: Gateway) -> SipService | None:
    """The gateway's SIP service, None when [sip] turned it off or it could not start."""
    return _services.get(gateway)


def set_running_service(gateway: Gateway, service: SipService | None) -> None:
    """Record the gateway's SIP service once started; None once stopped."""
    if service is None:
        _services.pop(gateway, None)
    else:
        _services[gateway] = service
