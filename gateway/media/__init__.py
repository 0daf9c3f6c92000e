"""The media relay: ICE-lite + DTLS-SRTP endpoints on one UDP port, RTP forwarding, RTCP, simulcast (DESIGN.md)."""
