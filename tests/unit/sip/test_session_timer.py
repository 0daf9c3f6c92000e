"""Session timers (RFC 4028): negotiation, 422, refresher roles, refresh and give-up times."""

import pytest

from protocols.sip.message import parse_message
from protocols.sip.session_timer import (
    Expire,
    IntervalTooSmall,
    Refresh,
    SessionExpires,
    SessionTimer,
)


def invite(*headers: str):
    lines = [
        "INVITE sip:room@rondpoint.example SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds",
        "Max-Forwards: 70",
        "From: <sip:alice@example.com>;tag=1928301774",
        "To: <sip:room@rondpoint.example>",
        "Call-ID: a84b4c76e66710@pc33.example.com",
        "CSeq: 314159 INVITE",
        "Contact: <sip:alice@192.0.2.10>",
        *headers,
        "Content-Length: 0",
    ]
    return parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())


def response(status: int, *headers: str):
    lines = [
        f"SIP/2.0 {status} Whatever",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKgw1",
        "From: <sip:room@rondpoint.example>;tag=gw",
        "To: <sip:bob@example.com>;tag=bob",
        "Call-ID: out-1@rondpoint.example",
        "CSeq: 1 INVITE",
        *headers,
        "Content-Length: 0",
    ]
    return parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())


def header_dict(headers):
    return {name: value for name, value in headers}


def test_session_expires_parse_and_format_round_trip():
    value = SessionExpires.parse("1800;refresher=uas")
    assert value == SessionExpires(1800, "uas")
    assert str(value) == "1800;refresher=uas"
    assert SessionExpires.parse("90") == SessionExpires(90, None)


def test_session_expires_refuses_garbage():
    with pytest.raises(ValueError):
        SessionExpires.parse("soon")
    with pytest.raises(ValueError):
        SessionExpires.parse("1800;refresher=proxy")


def test_interval_below_min_se_gets_422_with_our_min_se():
    timer = SessionTimer(session_expires=1800, min_se=300)
    answer = timer.answer_request(invite("Supported: timer", "Session-Expires: 120"))
    assert isinstance(answer, IntervalTooSmall)
    assert answer.status == 422
    assert answer.headers == [("Min-SE", "300")]


def test_interval_at_min_se_is_accepted():
    timer = SessionTimer(session_expires=1800, min_se=300)
    answer = timer.answer_request(invite("Supported: timer", "Session-Expires: 300"))
    assert header_dict(answer)["Session-Expires"].startswith("300;")


def test_requested_refresher_is_honoured_and_timer_required():
    timer = SessionTimer()
    answer = timer.answer_request(invite("Supported: timer", "Session-Expires: 1800;refresher=uac"))
    assert header_dict(answer) == {"Session-Expires": "1800;refresher=uac", "Require": "timer"}
    timer.response_sent(0.0)
    assert timer.local_refresher is False


def test_uac_without_timer_support_leaves_refreshing_to_us():
    timer = SessionTimer(session_expires=1200)
    answer = timer.answer_request(invite())
    assert header_dict(answer) == {"Session-Expires": "1200;refresher=uas"}
    timer.response_sent(0.0)
    assert timer.local_refresher is True
    assert timer.refresher == "uas"


def test_unnamed_refresher_is_ours_by_default():
    timer = SessionTimer()
    answer = timer.answer_request(invite("Supported: timer", "Session-Expires: 1800"))
    assert header_dict(answer)["Session-Expires"] == "1800;refresher=uas"


def test_unnamed_refresher_goes_to_peer_when_we_prefer():
    timer = SessionTimer(prefer_local_refresher=False)
    answer = timer.answer_request(invite("Supported: timer", "Session-Expires: 1800"))
    assert header_dict(answer)["Session-Expires"] == "1800;refresher=uac"


def test_uas_shortens_long_interval_but_not_below_requests_min_se():
    timer = SessionTimer(session_expires=600)
    answer = timer.answer_request(
        invite("Supported: timer", "Session-Expires: 7200", "Min-SE: 900")
    )
    assert header_dict(answer)["Session-Expires"].startswith("900;")


def test_clock_starts_only_when_the_2xx_is_sent():
    timer = SessionTimer()
    timer.answer_request(invite("Supported: timer", "Session-Expires: 1800;refresher=uac"))
    assert timer.next_deadline() is None
    timer.response_sent(100.0)
    assert timer.next_deadline() == 100.0 + 1800 - 32


def test_uac_request_headers_offer_timer():
    headers = header_dict(SessionTimer(session_expires=1800, min_se=120).request_headers())
    assert headers == {"Supported": "timer", "Session-Expires": "1800", "Min-SE": "120"}


def test_uac_retries_after_422_with_peer_min_se():
    timer = SessionTimer(session_expires=600)
    assert timer.on_422(response(422, "Min-SE: 1000")) is True
    headers = header_dict(timer.request_headers())
    assert headers["Session-Expires"] == "1000"
    assert headers["Min-SE"] == "1000"


def test_uac_gives_up_on_422_asking_for_no_more_than_it_sent():
    timer = SessionTimer(session_expires=1800)
    assert timer.on_422(response(422, "Min-SE: 1800")) is False
    assert timer.on_422(response(422)) is False


def test_uac_adopts_2xx_interval_and_refresher():
    timer = SessionTimer()
    timer.on_2xx(response(200, "Session-Expires: 900;refresher=uas", "Require: timer"), 0.0)
    assert timer.interval == 900
    assert timer.local_refresher is False
    timer.on_2xx(response(200, "Session-Expires: 900;refresher=uac"), 0.0)
    assert timer.local_refresher is True


def test_2xx_without_session_expires_means_no_timer():
    timer = SessionTimer()
    timer.on_2xx(response(200), 0.0)
    assert timer.next_deadline() is None
    assert timer.due(10_000.0) is None


def test_refresher_refreshes_at_half_interval_once():
    timer = SessionTimer()
    timer.on_2xx(response(200, "Session-Expires: 1800;refresher=uac"), 1000.0)
    assert timer.next_deadline() == 1900.0
    assert timer.due(1899.9) is None
    assert timer.due(1900.0) == Refresh()
    assert timer.due(1901.0) is None
    # the refresh went unanswered: give up before the session expires
    assert timer.next_deadline() == 1000.0 + 1800 - 32
    assert timer.due(2768.0) == Expire()


def test_successful_refresh_restarts_the_interval():
    timer = SessionTimer()
    timer.on_2xx(response(200, "Session-Expires: 1800;refresher=uac"), 0.0)
    assert timer.due(900.0) == Refresh()
    timer.on_2xx(response(200, "Session-Expires: 1800;refresher=uac"), 901.0)
    assert timer.next_deadline() == 1801.0
    assert timer.due(1801.0) == Refresh()


def test_non_refresher_gives_up_at_interval_minus_32_seconds():
    timer = SessionTimer()
    timer.on_2xx(response(200, "Session-Expires: 1800;refresher=uas"), 0.0)
    assert timer.refresh_at is None
    assert timer.next_deadline() == 1768.0
    assert timer.due(1767.9) is None
    assert timer.due(1768.0) == Expire()


def test_short_interval_gives_up_a_third_early():
    timer = SessionTimer()
    timer.on_2xx(response(200, "Session-Expires: 90;refresher=uas"), 0.0)
    assert timer.expires_at == 60.0


def test_peer_refresh_received_restarts_the_clock():
    timer = SessionTimer()
    timer.answer_request(invite("Supported: timer", "Session-Expires: 1800;refresher=uac"))
    timer.response_sent(0.0)
    timer.answer_request(invite("Supported: timer", "Session-Expires: 1800;refresher=uac"))
    timer.response_sent(1000.0)
    assert timer.next_deadline() == 2768.0
    assert timer.due(1768.0) is None


def test_our_refresh_request_keeps_us_refresher():
    timer = SessionTimer()
    timer.on_2xx(response(200, "Session-Expires: 1200;refresher=uac"), 0.0)
    assert header_dict(timer.request_headers())["Session-Expires"] == "1200;refresher=uac"


def test_min_se_below_90_is_refused():
    with pytest.raises(ValueError):
        SessionTimer(min_se=60)
