"""The gateway's diallers: which plugin calls a target, chosen by the target's scheme.

A room dials through here (admin API, ORS ``dial``), never through a protocol by name; a target
without a scheme (``0612345678``, ``+33612345678``) is a ``tel:`` number.
"""

from __future__ import annotations

import re

from gateway.plugins import DialError, DialledCall, Dialler

NUMBER_SCHEME = "tel"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def scheme_of(target: str) -> str:
    """The lowercase scheme of ``target``, ``tel`` for a bare number."""
    scheme, colon, _ = target.strip().partition(":")
    if not colon:
        return NUMBER_SCHEME
    return scheme.lower()


class Diallers:
    """The diallers of the running plugins."""

    def __init__(self) -> None:
        self._diallers: list[Dialler] = []

    def register(self, dialler: Dialler) -> None:
        """Make ``dialler.schemes`` callable; ValueError when another dialler has one of them."""
        for scheme in dialler.schemes:
            if not _SCHEME.fullmatch(scheme):
                raise ValueError(f"not a valid dialling scheme: {scheme!r}")
            if scheme.lower() in self.schemes():
                raise ValueError(f"two diallers for the scheme {scheme!r}")
        self._diallers.append(dialler)

    def schemes(self) -> list[str]:
        """The schemes this gateway can call now (none: it cannot dial out)."""
        return sorted({scheme.lower() for d in self._diallers for scheme in d.schemes})

    def dial(self, room_id: str, target: str, route: str | None) -> DialledCall:
        """Call ``target`` into the room through the dialler of its scheme; DialError when no
        dialler takes it (the message never echoes the target), or from the dialler."""
        return self._dialler_of(target).dial(room_id, target, route)

    def calls_of(self, room_id: str) -> list[dict[str, object]]:
        """Every dialler's calls of the room."""
        return [call for dialler in self._diallers for call in dialler.calls_of(room_id)]

    def transfer(self, participant_id: str, target: str) -> None:
        """Send a participant's call elsewhere through the dialler that owns it; DialError when
        none does."""
        for dialler in self._diallers:
            if dialler.owns(participant_id):
                dialler.transfer(participant_id, target)
                return
        raise DialError("that participant is not on a phone call here")

    def _dialler_of(self, target: str) -> Dialler:
        scheme = scheme_of(target)
        for dialler in self._diallers:
            if scheme in (s.lower() for s in dialler.schemes):
                return dialler
        schemes = [f"{s}:" for s in self.schemes()]
        if not schemes:
            raise DialError("this gateway cannot dial out")
        listed = schemes[0] if len(schemes) == 1 else f"{', '.join(schemes[:-1])} or {schemes[-1]}"
        number = ", nor a number" if NUMBER_SCHEME in self.schemes() else ""
        raise DialError(f"the target is not a {listed} URI{number}")
