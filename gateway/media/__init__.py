"""The packet plane: ICE-lite + DTLS-SRTP endpoints on one UDP port, RTP forwarding, RTCP, simulcast.

Import from the modules themselves (`relay.MediaRelay`, `endpoint.WebRtcEndpoint`, `sdp`, `rtp`,
`router`): this file imports nothing, so reading an SDP or an RTP header does not load the DTLS,
SRTP and audio stacks.
"""
