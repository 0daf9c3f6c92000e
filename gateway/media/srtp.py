"""SRTP/SRTCP protection with libsrtp sessions keyed by DTLS-SRTP (RFC 3711, RFC 5764, RFC 7714)."""

from __future__ import annotations

from typing import Any

import pylibsrtp

from . import native
from .dtls import SrtpKeys

SrtpError = pylibsrtp.Error


class SrtpContext:
    """One inbound and one outbound libsrtp session for a transport (any SSRC).

    With the native fast path (gateway/media/native.py) the sessions are the extension's own
    libsrtp sessions, which its Ingress and Egress use directly; otherwise pylibsrtp's.
    """

    __slots__ = (
        "_rx",
        "_tx",
        "native",
        "protect_rtp",
        "protect_rtcp",
        "unprotect_rtp",
        "unprotect_rtcp",
    )

    def __init__(self, keys: SrtpKeys) -> None:
        fast = native.fastpath()
        self.native: Any = None
        rx: Any = None
        tx: Any = None
        if fast is not None:
            try:
                rx = fast.Session(keys.remote_key, keys.profile.libsrtp_profile, True, 1024, False)
                # Retransmissions (NACK answered from history) repeat sequence numbers on purpose.
                tx = fast.Session(keys.local_key, keys.profile.libsrtp_profile, False, 1024, True)
            except SrtpError:  # e.g. a profile the system libsrtp lacks: pylibsrtp then
                rx = tx = None
            else:
                self.native = fast
        if rx is None or tx is None:
            rx_policy = pylibsrtp.Policy(
                key=keys.remote_key,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                srtp_profile=keys.profile.libsrtp_profile,
            )
            rx_policy.window_size = 1024
            tx_policy = pylibsrtp.Policy(
                key=keys.local_key,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=keys.profile.libsrtp_profile,
            )
            # Retransmissions (NACK answered from history) repeat sequence numbers on purpose.
            tx_policy.allow_repeat_tx = True
            tx_policy.window_size = 1024
            rx = pylibsrtp.Session(rx_policy)
            tx = pylibsrtp.Session(tx_policy)
        self._rx = rx
        self._tx = tx
        # Bound methods cached: these run once per packet.
        self.protect_rtp = tx.protect
        self.protect_rtcp = tx.protect_rtcp
        self.unprotect_rtp = rx.unprotect
        self.unprotect_rtcp = rx.unprotect_rtcp

    def ingress(self) -> Any:
        """A native Ingress on the inbound session (fast path), or None."""
        return None if self.native is None else self.native.Ingress(self._rx)

    def egress(self) -> Any:
        """A native Egress on the outbound session (fast path), or None."""
        return None if self.native is None else self.native.Egress(self._tx)
