"""Blind transfer out of a room (RFC 3515 REFER, RFC 5589): the REFER's headers, and the
transferee's progress as its NOTIFYs report it (a message/sipfrag status line, RFC 3420)."""

from __future__ import annotations


class BlindTransfer:
    """One REFER we sent to a phone. ``status``: requested, transferred, ``failed (NNN)`` (the
    transferee's call failed) or ``refused (NNN)`` (the phone refused the REFER); ``active``
    until it failed or was refused, while the phone's NOTIFYs about it are welcome."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.status = "requested"
        self.active = True

    def refer_headers(self, referred_by: str) -> list[tuple[str, str]]:
        """Refer-To and Referred-By (RFC 3892) for the REFER."""
        return [("Refer-To", f"<{self.target}>"), ("Referred-By", referred_by)]

    def notified(self, sipfrag: bytes) -> bool:
        """A NOTIFY's body (RFC 3515 2.4.5); True when the transferee's call succeeded, so that
        ours ends."""
        line = sipfrag.decode("utf-8", "replace").strip().split("\r\n")[0].split("\n")[0]
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return False
        status = int(parts[1])
        if 200 <= status < 300:
            self.status = "transferred"
            return True
        if status >= 300:
            self.status = f"failed ({status})"
            self.active = False
        return False

    def refused(self, status: int) -> None:
        """The phone answered the REFER with ``status`` (300 or more)."""
        self.status = f"refused ({status})"
        self.active = False
