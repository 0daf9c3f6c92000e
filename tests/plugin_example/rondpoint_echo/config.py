"""The ``[echo]`` section of the gateway's configuration file."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import ConfigError

MAX_GREETING = 32


@dataclass
class EchoConfig:
    """``[echo]``: every field has a default, so a file without the section runs the plugin."""

    enabled: bool = True
    """False: the plugin is installed but does nothing (no echo: links or dials)."""
    greeting: str = "Echo"
    """The display-name prefix of a linked room's participant: "Echo alice" for echo:alice."""

    def validate(self, where: str) -> None:
        """ConfigError naming the key, e.g. "rondpoint.toml: 'echo.greeting' must not be empty"."""
        if not self.greeting.strip():
            raise ConfigError(f"{where}: 'echo.greeting' must not be empty")
        if len(self.greeting) > MAX_GREETING:
            raise ConfigError(f"{where}: 'echo.greeting' has at most {MAX_GREETING} characters")
