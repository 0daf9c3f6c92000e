"""protocols/livekit/rtc.py: which LiveKit participant and track each m-line of a subscriber offer
carries (its a=msid stream id), read with the project's one SDP parser."""

from protocols.livekit.rtc import media_stream_ids

OFFER = """v=0
o=- 4215775240449105457 1701 IN IP4 0.0.0.0
s=-
t=0 0
a=group:BUNDLE 0 1 2
a=msid-semantic:WMS *
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 0.0.0.0
a=ice-ufrag:GxCmWqRcPVuaXbUz
a=ice-pwd:uIYmeoVXxyqHyuSKJBnAuNRvWDjPwgUH
a=setup:actpass
a=mid:0
a=sctp-port:5000
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=mid:1
a=sendonly
a=msid:PA_7hVqz9Lk|TR_AMkw3sJ2 TR_AMkw3sJ2
a=rtpmap:111 opus/48000/2
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=mid:2
a=sendonly
a=msid:PA_Q2zn8Yd|TR_VCx9bK1 TR_VCx9bK1
a=rtpmap:96 VP8/90000
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
m=audio 0 UDP/TLS/RTP/SAVPF 111
a=mid:3
a=inactive
a=rtpmap:111 opus/48000/2
"""


def test_each_sending_m_line_gives_its_mid_and_msid_stream_id() -> None:
    assert media_stream_ids(OFFER) == {
        "1": "PA_7hVqz9Lk|TR_AMkw3sJ2",
        "2": "PA_Q2zn8Yd|TR_VCx9bK1",
    }


def test_crlf_line_ends_read_alike() -> None:
    assert media_stream_ids(OFFER.replace("\n", "\r\n")) == media_stream_ids(OFFER)


def test_an_m_line_without_a_mid_is_left_out() -> None:
    offer = OFFER.replace("a=mid:2\n", "")
    assert media_stream_ids(offer) == {"1": "PA_7hVqz9Lk|TR_AMkw3sJ2"}


def test_an_unreadable_sdp_gives_no_streams() -> None:
    assert media_stream_ids("not an SDP") == {}
    assert media_stream_ids(OFFER.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus")) == {}
