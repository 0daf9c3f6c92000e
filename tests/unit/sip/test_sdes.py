"""SDES-SRTP in the phone offer/answer (RFC 4568): keys parsed, answered with our own, policy."""

from __future__ import annotations

import base64

import pytest

from protocols.sip.offer_answer import SdpError, make_answer, read_offer
from protocols.sip.sdes import parse_crypto

KEY = base64.b64encode(bytes(range(30))).decode()
SAVP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/SAVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20\r\n"
)
AVP = SAVP.replace("RTP/SAVP", "RTP/AVP").split("a=crypto")[0]


def test_a_crypto_line_is_parsed_and_odd_ones_are_skipped() -> None:
    crypto = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20")
    assert crypto is not None and crypto.key == bytes(range(30)) and crypto.tag == 1
    assert parse_crypto(f"1 F8_128_HMAC_SHA1_80 inline:{KEY}") is None  # suite we do not use
    assert parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4") is None  # MKI
    assert parse_crypto("1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=") is None  # short key


def test_an_srtp_offer_is_answered_on_savp_with_our_own_key() -> None:
    offer = read_offer(SAVP)
    assert offer.crypto is not None
    answer = make_answer(offer, "127.0.0.1", 20000, 1, 1, local_crypto=offer.crypto.answer())
    assert "m=audio 20000 RTP/SAVP 8 101" in answer
    line = next(line for line in answer.splitlines() if line.startswith("a=crypto:1 "))
    ours = parse_crypto(line.removeprefix("a=crypto:"))
    assert ours is not None and ours.suite == "AES_CM_128_HMAC_SHA1_80"
    assert ours.key != offer.crypto.key  # each direction has its own key


@pytest.mark.parametrize(
    ("sdp", "policy", "accepted"),
    [
        (SAVP, "required", True),
        (AVP, "required", False),
        (SAVP, "off", False),
        (AVP, "off", True),
        (SAVP, "optional", True),
        (AVP, "optional", True),
    ],
)
def test_the_trunks_srtp_policy_decides(sdp: str, policy: str, accepted: bool) -> None:
    if accepted:
        assert read_offer(sdp, policy).codec.name == "PCMA"
    else:
        with pytest.raises(SdpError, match="this trunk takes"):
            read_offer(sdp, policy)
