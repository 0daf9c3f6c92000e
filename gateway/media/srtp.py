"""SRTP/SRTCP protection with libsrtp sessions keyed by DTLS-SRTP (RFC 3711, RFC 5764, RFC 7714)."""

from __future__ import annotations

import pylibsrtp

from .dtls import SrtpKeys

SrtpError = pylibsrtp.Error


class SrtpContext:
    """One inbound and one outbound libsrtp session for a transport (any SSRC)."""

    __slots__ = ("_rx", "_tx", "protect_rtp", "protect_rtcp", "unprotect_rtp", "unprotect_rtcp")

    def __init__(self, keys: SrtpKeys) -> None:
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
        self._rx = pylibsrtp.Session(rx_policy)
        self._tx = pylibsrtp.Session(tx_policy)
        # Bound methods cached: these run once per packet.
        self.protect_rtp = self._tx.protect
        self.protect_rtcp = self._tx.protect_rtcp
        self.unprotect_rtp = self._rx.unprotect
        self.unprotect_rtcp = self._rx.unprotect_rtcp
