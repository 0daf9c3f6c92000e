"""The application-service registration the homeserver is given (YAML), made from ``[matrix]``.

Matrix Application Service API, "Registration"; the ephemeral and to-device flags are
MSC2409's (``de.sorunome.msc2409.push_ephemeral``) and MSC3202's (device masquerading). Written
by hand: every value is a scalar in single quotes, so no YAML library is needed.
"""

from __future__ import annotations

import re

from protocols.matrix.config import MatrixConfig


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def user_namespace(config: MatrixConfig) -> str:
    """The regex of the ghosts' user ids: ``@{prefix}.*:{server_name}``, both escaped."""
    return f"@{re.escape(config.user_prefix)}.*:{re.escape(config.server_name)}"


def registration_yaml(config: MatrixConfig, base_url: str) -> str:
    """The registration file's text; ``base_url`` is the gateway's public base URL."""
    lines = [
        f"id: {_quoted(config.as_id)}",
        f"url: {_quoted(config.appservice_url_for(base_url))}",
        f"as_token: {_quoted(config.as_token)}",
        f"hs_token: {_quoted(config.hs_token)}",
        f"sender_localpart: {_quoted(config.sender_localpart)}",
        "rate_limited: false",
        "receive_ephemeral: true",
        "de.sorunome.msc2409.push_ephemeral: true",
        "org.matrix.msc3202: true",
        "namespaces:",
        "  users:",
        "    - exclusive: true",
        f"      regex: {_quoted(user_namespace(config))}",
        "  aliases: []",
        "  rooms: []",
    ]
    return "\n".join(lines) + "\n"
