"""Dialogs (RFC 3261 section 12): creation from both sides, in-dialog requests, CSeq order, targets."""

import pytest

from protocols.sip.dialog import (
    TIMER_2XX,
    TIMER_2XX_TIMEOUT,
    Dialog,
    DialogId,
    DialogState,
    SuccessRetransmission,
    incoming_dialog_id,
    response_dialog_id,
)
from protocols.sip.message import Request, Response, make_response, parse_message
from protocols.sip.transaction import NO_ACK, CancelTimer, Send, StartTimer, Terminated

GATEWAY_CONTACT = "<sip:gw@198.51.100.1:5060>"


def parse(lines: list[str]):
    return parse_message(("\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n").encode())


def our_invite() -> Request:
    message = parse(
        [
            "INVITE sip:bob@example.com SIP/2.0",
            "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKgw1",
            "Max-Forwards: 70",
            "From: Rondpoint <sip:room@rondpoint.example>;tag=gwtag",
            "To: Bob <sip:bob@example.com>",
            "Call-ID: out-1@rondpoint.example",
            "CSeq: 10 INVITE",
            f"Contact: {GATEWAY_CONTACT}",
        ]
    )
    assert isinstance(message, Request)
    return message


def their_answer(
    invite: Request, status: int = 200, contact="<sip:bob@192.0.2.20:5062>"
) -> Response:
    response = make_response(invite, status, to_tag="bobtag")
    response.headers.add("Record-Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>")
    response.headers.add("Contact", contact)
    return response


def their_invite(*extra: str) -> Request:
    message = parse(
        [
            "INVITE sip:room@rondpoint.example SIP/2.0",
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds",
            "Max-Forwards: 70",
            "Record-Route: <sip:p1.example.com;lr>",
            "Record-Route: <sip:p2.example.com;lr>",
            "From: Alice <sip:alice@example.com>;tag=alicetag",
            "To: <sip:room@rondpoint.example>",
            "Call-ID: in-1@example.com",
            "CSeq: 314159 INVITE",
            "Contact: <sip:alice@192.0.2.10>",
            *extra,
        ]
    )
    assert isinstance(message, Request)
    return message


def uas_dialog() -> tuple[Request, Dialog]:
    invite = their_invite()
    ok = make_response(invite, 200, to_tag="gwtag")
    ok.headers.add("Contact", GATEWAY_CONTACT)
    return invite, Dialog.as_uas(invite, ok)


def in_dialog(method: str, cseq: int, *extra: str) -> Request:
    message = parse(
        [
            f"{method} sip:gw@198.51.100.1:5060 SIP/2.0",
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKin" + str(cseq),
            "From: Alice <sip:alice@example.com>;tag=alicetag",
            "To: <sip:room@rondpoint.example>;tag=gwtag",
            "Call-ID: in-1@example.com",
            f"CSeq: {cseq} {method}",
            *extra,
        ]
    )
    assert isinstance(message, Request)
    return message


# -- UAC side (12.1.2) ------------------------------------------------------------------------


def test_uac_dialog_state_from_2xx():
    invite = our_invite()
    dialog = Dialog.as_uac(invite, their_answer(invite))
    assert dialog.id == DialogId("out-1@rondpoint.example", "gwtag", "bobtag")
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.local_seq == 10
    assert dialog.remote_seq is None
    assert dialog.remote_target == "sip:bob@192.0.2.20:5062"
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert dialog.secure is False


def test_uac_bye_follows_route_set_with_next_cseq():
    invite = our_invite()
    dialog = Dialog.as_uac(invite, their_answer(invite))
    bye = dialog.create_request("BYE", via="SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKbye")
    assert bye.method == "BYE"
    assert bye.uri == "sip:bob@192.0.2.20:5062"
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert bye.headers.get("CSeq") == "11 BYE"
    assert bye.headers.get("Call-ID") == "out-1@rondpoint.example"
    assert bye.headers.get("From") == '"Rondpoint" <sip:room@rondpoint.example>;tag=gwtag'
    assert bye.headers.get("To") == '"Bob" <sip:bob@example.com>;tag=bobtag'
    assert bye.headers.get("Via") == "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKbye"
    assert bye.headers.get("Contact") is None
    assert bye.headers.get("Max-Forwards") == "70"


def test_cseq_increments_per_request():
    invite = our_invite()
    dialog = Dialog.as_uac(invite, their_answer(invite))
    numbers = [dialog.create_request(m).headers.get("CSeq") for m in ("INFO", "UPDATE", "BYE")]
    assert numbers == ["11 INFO", "12 UPDATE", "13 BYE"]


def test_ack_for_2xx_repeats_the_invite_cseq_number():
    invite = our_invite()
    dialog = Dialog.as_uac(invite, their_answer(invite))
    ack = dialog.create_ack()
    assert ack.headers.get("CSeq") == "10 ACK"
    assert ack.uri == "sip:bob@192.0.2.20:5062"
    assert ack.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert dialog.create_request("BYE").headers.get("CSeq") == "11 BYE"  # ACK used no number


def test_ack_after_reinvite_carries_the_reinvite_cseq():
    invite = our_invite()
    dialog = Dialog.as_uac(invite, their_answer(invite))
    dialog.create_request("INFO")
    reinvite = dialog.create_request("INVITE", body=b"v=0\r\n", content_type="application/sdp")
    assert reinvite.headers.get("CSeq") == "12 INVITE"
    assert reinvite.headers.get("Contact") == GATEWAY_CONTACT
    assert reinvite.headers.get("Content-Type") == "application/sdp"
    assert dialog.create_ack().headers.get("CSeq") == "12 ACK"


def test_dialog_refuses_to_build_cancel():
    invite = our_invite()
    dialog = Dialog.as_uac(invite, their_answer(invite))
    with pytest.raises(ValueError):
        dialog.create_request("CANCEL")


def test_early_dialog_is_confirmed_by_2xx_with_recomputed_route_set():
    invite = our_invite()
    ringing = make_response(invite, 180, to_tag="bobtag")
    ringing.headers.add("Contact", "<sip:bob@192.0.2.20>")
    dialog = Dialog.as_uac(invite, ringing)
    assert dialog.state is DialogState.EARLY
    assert dialog.route_set == []
    dialog.receive_response(their_answer(invite, contact="<sip:bob@192.0.2.21>"))
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert dialog.remote_target == "sip:bob@192.0.2.21"


def test_2xx_to_target_refresh_updates_remote_target():
    invite = our_invite()
    dialog = Dialog.as_uac(invite, their_answer(invite))
    update = dialog.create_request("UPDATE")
    ok = make_response(update, 200)
    ok.headers.add("Contact", "<sip:bob@192.0.2.99>")
    dialog.receive_response(ok)
    assert dialog.remote_target == "sip:bob@192.0.2.99"


@pytest.mark.parametrize("status", [408, 481])
def test_408_or_481_to_in_dialog_request_ends_the_dialog(status):
    invite = our_invite()
    dialog = Dialog.as_uac(invite, their_answer(invite))
    dialog.receive_response(make_response(dialog.create_request("INFO"), status))
    assert dialog.state is DialogState.TERMINATED


def test_strict_route_becomes_request_uri_and_target_goes_last():
    invite = our_invite()
    response = make_response(invite, 200, to_tag="bobtag")
    response.headers.add("Record-Route", "<sip:p1.example.com;lr>, <sip:strict.example.com>")
    response.headers.add("Contact", "<sip:bob@192.0.2.20>")
    dialog = Dialog.as_uac(invite, response)
    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:strict.example.com"
    assert bye.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:bob@192.0.2.20>"]


def test_response_dialog_id_matches_uac_dialog():
    invite = our_invite()
    answer = their_answer(invite)
    assert response_dialog_id(answer) == Dialog.as_uac(invite, answer).id


# -- UAS side (12.1.1) ------------------------------------------------------------------------


def test_uas_dialog_state_from_request():
    invite, dialog = uas_dialog()
    assert dialog.id == DialogId("in-1@example.com", "gwtag", "alicetag")
    assert dialog.remote_seq == 314159
    assert dialog.local_seq is None
    assert dialog.remote_target == "sip:alice@192.0.2.10"
    assert dialog.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert dialog.local_contact == GATEWAY_CONTACT


def test_uas_bye_uses_route_set_in_request_order():
    _, dialog = uas_dialog()
    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:alice@192.0.2.10"
    assert bye.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert bye.headers.get("From") == "<sip:room@rondpoint.example>;tag=gwtag"
    assert bye.headers.get("To") == '"Alice" <sip:alice@example.com>;tag=alicetag'
    assert bye.headers.get("CSeq") == "1 BYE"


def test_uas_dialog_is_early_for_a_provisional():
    invite = their_invite()
    ringing = make_response(invite, 180, to_tag="gwtag")
    assert Dialog.as_uas(invite, ringing).state is DialogState.EARLY


def test_uas_dialog_needs_a_contact_and_our_tag():
    invite = their_invite()
    with pytest.raises(ValueError):
        Dialog.as_uas(invite, make_response(invite, 200))
    no_contact = parse(
        [
            "INVITE sip:room@rondpoint.example SIP/2.0",
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx",
            "From: <sip:alice@example.com>;tag=a",
            "To: <sip:room@rondpoint.example>",
            "Call-ID: c",
            "CSeq: 1 INVITE",
        ]
    )
    with pytest.raises(ValueError):
        Dialog.as_uas(no_contact, make_response(no_contact, 200, to_tag="t"))


def test_sips_request_uri_makes_a_secure_dialog():
    invite = their_invite()
    invite.uri = "sips:room@rondpoint.example"
    ok = make_response(invite, 200, to_tag="gwtag")
    assert Dialog.as_uas(invite, ok).secure is True


def test_in_order_request_is_accepted_and_advances_remote_cseq():
    _, dialog = uas_dialog()
    assert dialog.receive_request(in_dialog("INFO", 314160)) is None
    assert dialog.remote_seq == 314160


def test_out_of_order_cseq_gets_500():
    _, dialog = uas_dialog()
    dialog.receive_request(in_dialog("INFO", 314170))
    answer = dialog.receive_request(in_dialog("INFO", 314165))
    assert answer is not None
    assert answer.status == 500
    assert answer.headers.get("CSeq") == "314165 INFO"
    assert dialog.remote_seq == 314170


def test_ack_is_not_checked_against_cseq_order():
    _, dialog = uas_dialog()
    dialog.receive_request(in_dialog("INFO", 314160))
    assert dialog.receive_request(in_dialog("ACK", 314159)) is None


def test_target_refresh_replaces_remote_target():
    _, dialog = uas_dialog()
    dialog.receive_request(in_dialog("INVITE", 314160, "Contact: <sip:alice@203.0.113.5:5070>"))
    assert dialog.remote_target == "sip:alice@203.0.113.5:5070"
    dialog.receive_request(in_dialog("UPDATE", 314161, "Contact: <sip:alice@203.0.113.6>"))
    assert dialog.remote_target == "sip:alice@203.0.113.6"


def test_non_refresh_request_keeps_remote_target():
    _, dialog = uas_dialog()
    dialog.receive_request(in_dialog("INFO", 314160, "Contact: <sip:alice@203.0.113.5>"))
    assert dialog.remote_target == "sip:alice@192.0.2.10"


def test_rejected_refresh_does_not_change_target():
    _, dialog = uas_dialog()
    dialog.receive_request(in_dialog("INFO", 314170))
    dialog.receive_request(in_dialog("INVITE", 314160, "Contact: <sip:mallory@203.0.113.5>"))
    assert dialog.remote_target == "sip:alice@192.0.2.10"


def test_bye_ends_the_dialog():
    _, dialog = uas_dialog()
    assert dialog.receive_request(in_dialog("BYE", 314160)) is None
    assert dialog.state is DialogState.TERMINATED


def test_incoming_dialog_id_matches_uas_dialog():
    _, dialog = uas_dialog()
    request = in_dialog("BYE", 314160)
    assert incoming_dialog_id(request) == dialog.id
    assert dialog.matches(request)
    other = in_dialog("BYE", 314160)
    other.headers.set("From", "<sip:alice@example.com>;tag=someoneelse")
    assert not dialog.matches(other)


# -- 2xx retransmission until ACK (13.3.1.4) --------------------------------------------------


def retransmission(reliable=False):
    invite, dialog = uas_dialog()
    ok = make_response(invite, 200, to_tag="gwtag")
    return ok, SuccessRetransmission(ok, ("192.0.2.10", 5060), dialog.id, reliable=reliable)


def test_2xx_is_sent_and_retransmitted_doubling_up_to_t2():
    ok, job = retransmission()
    actions = job.start()
    assert [a.message for a in actions if isinstance(a, Send)] == [ok]
    assert {a.name: a.seconds for a in actions if isinstance(a, StartTimer)} == {
        TIMER_2XX: 0.5,
        TIMER_2XX_TIMEOUT: 32.0,
    }
    intervals = []
    for _ in range(5):
        fired = job.timer_fired(TIMER_2XX)
        assert [a.message for a in fired if isinstance(a, Send)] == [ok]
        intervals += [a.seconds for a in fired if isinstance(a, StartTimer)]
    assert intervals == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_ack_stops_2xx_retransmission():
    _, job = retransmission()
    job.start()
    actions = job.ack_received()
    assert {a.name for a in actions if isinstance(a, CancelTimer)} == {TIMER_2XX, TIMER_2XX_TIMEOUT}
    assert job.timer_fired(TIMER_2XX) == []
    assert job.timer_fired(TIMER_2XX_TIMEOUT) == []


def test_missing_ack_ends_with_no_ack_so_the_tu_sends_bye():
    _, job = retransmission()
    job.start()
    actions = job.timer_fired(TIMER_2XX_TIMEOUT)
    assert [a.reason for a in actions if isinstance(a, Terminated)] == [NO_ACK]
    assert [a.key for a in actions if isinstance(a, Terminated)] == [job.key]
    assert job.timer_fired(TIMER_2XX) == []


def test_2xx_over_tcp_is_not_retransmitted_but_still_times_out():
    _, job = retransmission(reliable=True)
    actions = job.start()
    assert [a.name for a in actions if isinstance(a, StartTimer)] == [TIMER_2XX_TIMEOUT]
