"""Transactions (RFC 3261 section 17, RFC 6026): timers, retransmissions, matching, CANCEL."""

import pytest

from protocols.sip.message import Request, Response, make_response, parse_message
from protocols.sip.transaction import (
    COMPLETED,
    NO_ACK,
    TIMEOUT,
    TRANSPORT_ERROR,
    CancelTimer,
    Deliver,
    Send,
    StartTimer,
    State,
    Terminated,
    TimerSettings,
    TransactionLayer,
    make_cancel,
    server_key,
)

PEER = ("192.0.2.10", 5060)
GATEWAY_VIA = "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKgw{n};rport"


def request(
    method: str, branch: str = "z9hG4bK74bf9", cseq: int = 1, via: str | None = None
) -> Request:
    via = via or f"SIP/2.0/UDP 192.0.2.10:5060;branch={branch}"
    lines = [
        f"{method} sip:room@rondpoint.example SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        "From: Alice <sip:alice@example.com>;tag=9fxced76sl",
        "To: <sip:room@rondpoint.example>",
        "Call-ID: 3848276298220188511@example.com",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:alice@192.0.2.10>",
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def outgoing(method: str, n: int = 1) -> Request:
    return request(method, via=GATEWAY_VIA.format(n=n))


def answer(req: Request, status: int, to_tag: str | None = "gw") -> Response:
    return make_response(req, status, to_tag=to_tag if status != 100 else None)


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def sent(actions):
    return [a.message for a in of(actions, Send)]


def started(actions):
    return {a.name: a.seconds for a in of(actions, StartTimer)}


def cancelled(actions):
    return {a.name for a in of(actions, CancelTimer)}


def terminated(actions):
    return [a.reason for a in of(actions, Terminated)]


def delivered(actions):
    return [a.message for a in of(actions, Deliver)]


# -- client INVITE (17.1.1) -------------------------------------------------------------------


def start_invite(reliable=False):
    layer = TransactionLayer(reliable=reliable)
    invite = outgoing("INVITE")
    key, actions = layer.send_request(invite, PEER)
    return layer, invite, key, actions


def test_client_invite_sends_and_starts_timers_a_and_b():
    layer, invite, key, actions = start_invite()
    assert sent(actions) == [invite]
    assert of(actions, Send)[0].destination == PEER
    assert started(actions) == {"A": 0.5, "B": 32.0}
    assert layer.client(key).state is State.CALLING


def test_client_invite_timer_a_doubles_without_cap():
    layer, invite, key, _ = start_invite()
    intervals = []
    for _ in range(5):
        actions = layer.timer_fired(key, "A")
        assert sent(actions) == [invite]
        intervals.append(started(actions)["A"])
    assert intervals == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_client_invite_timer_b_times_out():
    layer, _, key, _ = start_invite()
    actions = layer.timer_fired(key, "B")
    assert terminated(actions) == [TIMEOUT]
    assert "A" in cancelled(actions)
    assert layer.client(key) is None


def test_client_invite_over_tcp_has_no_timer_a():
    _, _, _, actions = start_invite(reliable=True)
    assert started(actions) == {"B": 32.0}


def test_client_invite_provisional_stops_retransmissions():
    layer, invite, key, _ = start_invite()
    ringing = answer(invite, 180)
    actions = layer.receive(ringing, PEER)
    assert delivered(actions) == [ringing]
    assert cancelled(actions) == {"A", "B"}
    assert layer.client(key).state is State.PROCEEDING
    assert layer.timer_fired(key, "A") == []


def test_client_invite_error_response_is_acked_with_same_branch():
    layer, invite, key, _ = start_invite()
    busy = answer(invite, 486)
    actions = layer.receive(busy, PEER)
    assert delivered(actions) == [busy]
    (ack,) = sent(actions)
    assert ack.method == "ACK"
    assert ack.uri == invite.uri
    assert ack.headers.get_all("Via") == invite.headers.get_all("Via")[:1]
    assert ack.headers.get("CSeq") == "1 ACK"
    assert ack.headers.get("To") == busy.headers.get("To")
    assert ack.headers.get("From") == invite.headers.get("From")
    assert started(actions) == {"D": 32.0}
    assert layer.client(key).state is State.COMPLETED


def test_client_invite_retransmitted_error_is_acked_again_not_delivered():
    layer, invite, key, _ = start_invite()
    busy = answer(invite, 486)
    first_ack = sent(layer.receive(busy, PEER))[0]
    actions = layer.receive(answer(invite, 486), PEER)
    assert sent(actions) == [first_ack]
    assert delivered(actions) == []


def test_client_invite_timer_d_terminates():
    layer, invite, key, _ = start_invite()
    layer.receive(answer(invite, 603), PEER)
    assert terminated(layer.timer_fired(key, "D")) == [COMPLETED]
    assert len(layer) == 0


def test_client_invite_error_over_tcp_terminates_at_once():
    layer, invite, key, _ = start_invite(reliable=True)
    actions = layer.receive(answer(invite, 486), PEER)
    assert [m.method for m in sent(actions)] == ["ACK"]
    assert terminated(actions) == [COMPLETED]
    assert layer.client(key) is None


def test_client_invite_2xx_enters_accepted_with_timer_m():
    layer, invite, key, _ = start_invite()
    ok = answer(invite, 200)
    actions = layer.receive(ok, PEER)
    assert delivered(actions) == [ok]
    assert sent(actions) == []  # the TU acknowledges a 2xx, not the transaction
    assert started(actions) == {"M": 32.0}
    assert layer.client(key).state is State.ACCEPTED


def test_client_invite_2xx_retransmissions_reach_the_tu_while_accepted():
    layer, invite, key, _ = start_invite()
    layer.receive(answer(invite, 200), PEER)
    again = answer(invite, 200)
    assert delivered(layer.receive(again, PEER)) == [again]
    assert terminated(layer.timer_fired(key, "M")) == [COMPLETED]
    assert layer.receive(answer(invite, 200), PEER) == []  # stray now: dropped


def test_client_invite_2xx_from_second_fork_is_delivered():
    layer, invite, _, _ = start_invite()
    layer.receive(answer(invite, 200, to_tag="fork1"), PEER)
    other = answer(invite, 200, to_tag="fork2")
    assert delivered(layer.receive(other, PEER)) == [other]


def test_response_with_unknown_branch_is_dropped():
    layer, invite, _, _ = start_invite()
    stray = answer(outgoing("INVITE", n=99), 200)
    assert layer.receive(stray, PEER) == []


def test_response_matches_on_cseq_method_too():
    layer = TransactionLayer(reliable=False)
    invite = outgoing("INVITE")
    invite_key, _ = layer.send_request(invite, PEER)
    cancel = make_cancel(invite)
    cancel_key, _ = layer.send_request(cancel, PEER)
    assert invite_key != cancel_key
    ok_cancel = answer(cancel, 200)
    actions = layer.receive(ok_cancel, PEER)
    assert [a.key for a in of(actions, Deliver)] == [cancel_key]
    assert layer.client(invite_key).state is State.CALLING


def test_make_cancel_copies_the_invite_identity():
    invite = outgoing("INVITE")
    cancel = make_cancel(invite)
    assert cancel.method == "CANCEL"
    assert cancel.uri == invite.uri
    assert cancel.headers.get_all("Via") == invite.headers.get_all("Via")[:1]
    assert cancel.headers.get("CSeq") == "1 CANCEL"
    for name in ("From", "To", "Call-ID"):
        assert cancel.headers.get(name) == invite.headers.get(name)


def test_ack_for_2xx_is_sent_outside_any_transaction():
    layer = TransactionLayer(reliable=False)
    ack = outgoing("ACK", n=2)
    key, actions = layer.send_request(ack, PEER)
    assert key is None
    assert sent(actions) == [ack]
    assert len(layer) == 0


# -- client non-INVITE (17.1.2) ---------------------------------------------------------------


def start_bye(reliable=False):
    layer = TransactionLayer(reliable=reliable)
    bye = outgoing("BYE")
    key, actions = layer.send_request(bye, PEER)
    return layer, bye, key, actions


def test_client_non_invite_timer_e_doubles_up_to_t2():
    layer, bye, key, actions = start_bye()
    assert started(actions) == {"E": 0.5, "F": 32.0}
    intervals = []
    for _ in range(6):
        fired = layer.timer_fired(key, "E")
        assert sent(fired) == [bye]
        intervals.append(started(fired)["E"])
    assert intervals == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_client_non_invite_timer_e_is_t2_once_proceeding():
    layer, bye, key, _ = start_bye()
    layer.receive(answer(bye, 100), PEER)
    assert layer.client(key).state is State.PROCEEDING
    assert started(layer.timer_fired(key, "E")) == {"E": 4.0}


def test_client_non_invite_timer_f_times_out():
    layer, _, key, _ = start_bye()
    actions = layer.timer_fired(key, "F")
    assert terminated(actions) == [TIMEOUT]
    assert "E" in cancelled(actions)


def test_client_non_invite_final_then_timer_k():
    layer, bye, key, _ = start_bye()
    ok = answer(bye, 200)
    actions = layer.receive(ok, PEER)
    assert delivered(actions) == [ok]
    assert cancelled(actions) == {"E", "F"}
    assert started(actions) == {"K": 5.0}
    assert delivered(layer.receive(answer(bye, 200), PEER)) == []  # absorbed in Completed
    assert terminated(layer.timer_fired(key, "K")) == [COMPLETED]


def test_client_non_invite_over_tcp_no_e_and_k_is_zero():
    layer, bye, key, actions = start_bye(reliable=True)
    assert started(actions) == {"F": 32.0}
    actions = layer.receive(answer(bye, 200), PEER)
    assert terminated(actions) == [COMPLETED]
    assert layer.client(key) is None


def test_custom_timer_values_scale_every_timer():
    layer = TransactionLayer(reliable=False, timers=TimerSettings(t1=0.1, t2=0.4, t4=1.0))
    key, actions = layer.send_request(outgoing("OPTIONS"), PEER)
    assert started(actions) == {"E": 0.1, "F": pytest.approx(6.4)}


def test_transport_error_terminates_client_transaction():
    layer, _, key, _ = start_bye()
    actions = layer.transport_error(key)
    assert terminated(actions) == [TRANSPORT_ERROR]
    assert cancelled(actions) == {"E", "F"}
    assert layer.client(key) is None


# -- server INVITE (17.2.1) -------------------------------------------------------------------


def receive_invite(reliable=False, trying_delay=0.2):
    layer = TransactionLayer(reliable=reliable, timers=TimerSettings(trying_delay=trying_delay))
    invite = request("INVITE")
    actions = layer.receive(invite, PEER)
    (deliver,) = of(actions, Deliver)
    return layer, invite, deliver.key, actions


def test_new_invite_is_delivered_and_100_trying_is_scheduled():
    layer, invite, key, actions = receive_invite()
    assert delivered(actions) == [invite]
    assert started(actions) == {"Trying": 0.2}
    assert sent(actions) == []
    (trying,) = sent(layer.timer_fired(key, "Trying"))
    assert trying.status == 100
    assert trying.headers.get("Via") == invite.headers.get("Via")


def test_100_trying_is_skipped_when_tu_answers_within_200ms():
    layer, invite, key, _ = receive_invite()
    actions = layer.send_response(key, answer(invite, 180))
    assert "Trying" in cancelled(actions)
    assert layer.timer_fired(key, "Trying") == []


def test_100_trying_immediately_when_delay_is_zero():
    _, _, _, actions = receive_invite(trying_delay=0)
    assert [m.status for m in sent(actions)] == [100]


def test_retransmitted_invite_gets_last_provisional_and_is_not_delivered():
    layer, invite, key, _ = receive_invite()
    ringing = answer(invite, 180)
    layer.send_response(key, ringing)
    actions = layer.receive(request("INVITE"), PEER)
    assert sent(actions) == [ringing]
    assert delivered(actions) == []


def test_retransmitted_invite_before_any_response_gets_100():
    layer, _, key, _ = receive_invite()
    actions = layer.receive(request("INVITE"), PEER)
    assert [m.status for m in sent(actions)] == [100]
    assert "Trying" in cancelled(actions)
    assert delivered(actions) == []


def test_server_invite_error_retransmitted_with_timer_g_capped_at_t2():
    layer, invite, key, _ = receive_invite()
    busy = answer(invite, 486)
    actions = layer.send_response(key, busy)
    assert sent(actions) == [busy]
    assert started(actions) == {"G": 0.5, "H": 32.0}
    intervals = []
    for _ in range(5):
        fired = layer.timer_fired(key, "G")
        assert sent(fired) == [busy]
        intervals.append(started(fired)["G"])
    assert intervals == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_retransmitted_invite_gets_the_final_response_again():
    layer, invite, key, _ = receive_invite()
    busy = answer(invite, 486)
    layer.send_response(key, busy)
    assert sent(layer.receive(request("INVITE"), PEER)) == [busy]


def test_ack_for_error_response_confirms_and_is_absorbed():
    layer, invite, key, _ = receive_invite()
    layer.send_response(key, answer(invite, 404))
    actions = layer.receive(request("ACK"), PEER)
    assert delivered(actions) == []
    assert cancelled(actions) == {"G", "H"}
    assert started(actions) == {"I": 5.0}
    assert layer.server(key).state is State.CONFIRMED
    assert layer.receive(request("ACK"), PEER) == []  # a retransmitted ACK too
    assert terminated(layer.timer_fired(key, "I")) == [COMPLETED]
    assert len(layer) == 0


def test_timer_h_without_ack_terminates_with_no_ack_reason():
    layer, invite, key, _ = receive_invite()
    layer.send_response(key, answer(invite, 486))
    actions = layer.timer_fired(key, "H")
    assert terminated(actions) == [NO_ACK]
    assert "G" in cancelled(actions)
    assert layer.server(key) is None


def test_server_invite_over_tcp_no_timer_g_and_i_is_zero():
    layer, invite, key, _ = receive_invite(reliable=True)
    actions = layer.send_response(key, answer(invite, 486))
    assert started(actions) == {"H": 32.0}
    actions = layer.receive(request("ACK"), PEER)
    assert terminated(actions) == [COMPLETED]


def test_server_invite_2xx_enters_accepted_with_timer_l():
    layer, invite, key, _ = receive_invite()
    ok = answer(invite, 200)
    actions = layer.send_response(key, ok)
    assert sent(actions) == [ok]
    assert started(actions) == {"L": 32.0}
    assert layer.server(key).state is State.ACCEPTED
    assert layer.timer_fired(key, "G") == []  # the transaction never retransmits a 2xx


def test_accepted_absorbs_invite_retransmissions_and_passes_tu_2xx_retransmissions():
    layer, invite, key, _ = receive_invite()
    ok = answer(invite, 200)
    layer.send_response(key, ok)
    assert layer.receive(request("INVITE"), PEER) == []
    assert sent(layer.send_response(key, ok)) == [ok]
    assert terminated(layer.timer_fired(key, "L")) == [COMPLETED]


def test_ack_for_2xx_goes_to_the_tu():
    layer, invite, key, _ = receive_invite()
    layer.send_response(key, answer(invite, 200))
    ack = request("ACK", branch="z9hG4bKnewbranch")
    actions = layer.receive(ack, PEER)
    assert delivered(actions) == [ack]
    assert of(actions, Deliver)[0].key is None


def test_ack_for_error_is_matched_by_branch_and_sent_by_not_other_host():
    layer, invite, key, _ = receive_invite()
    layer.send_response(key, answer(invite, 486))
    foreign = request("ACK", via="SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK74bf9")
    actions = layer.receive(foreign, ("203.0.113.9", 5060))
    assert delivered(actions) == [foreign]
    assert layer.server(key).state is State.COMPLETED


def test_responses_go_to_rport_source_when_asked():
    layer = TransactionLayer(reliable=False)
    invite = request("INVITE", via="SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKnat;rport")
    actions = layer.receive(invite, ("203.0.113.7", 40000))
    key = of(actions, Deliver)[0].key
    (send,) = of(layer.send_response(key, answer(invite, 180)), Send)
    assert send.destination == ("203.0.113.7", 40000)
    via = send.message.headers.get_all("Via")[0]
    assert "received=203.0.113.7" in via
    assert "rport=40000" in via


def test_responses_go_to_received_address_and_via_port_without_rport():
    layer = TransactionLayer(reliable=False)
    invite = request("INVITE", via="SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKnat")
    actions = layer.receive(invite, ("203.0.113.7", 40000))
    key = of(actions, Deliver)[0].key
    (send,) = of(layer.send_response(key, answer(invite, 180)), Send)
    assert send.destination == ("203.0.113.7", 5070)


def test_rfc2543_ack_without_magic_cookie_matches_its_invite():
    layer = TransactionLayer(reliable=False)
    old_via = "SIP/2.0/UDP 192.0.2.10:5060;branch=oldstyle1"
    invite = request("INVITE", via=old_via)
    key = of(layer.receive(invite, PEER), Deliver)[0].key
    layer.send_response(key, answer(invite, 486))
    actions = layer.receive(request("ACK", via=old_via), PEER)
    assert delivered(actions) == []
    assert layer.server(key).state is State.CONFIRMED


# -- server non-INVITE (17.2.2) ---------------------------------------------------------------


def receive_options(reliable=False):
    layer = TransactionLayer(reliable=reliable)
    options = request("OPTIONS", branch="z9hG4bKopt")
    actions = layer.receive(options, PEER)
    return layer, options, of(actions, Deliver)[0].key, actions


def test_server_non_invite_absorbs_retransmission_while_trying():
    layer, options, key, actions = receive_options()
    assert delivered(actions) == [options]
    assert sent(actions) == []
    assert layer.receive(request("OPTIONS", branch="z9hG4bKopt"), PEER) == []


def test_server_non_invite_resends_provisional_then_final():
    layer, options, key, _ = receive_options()
    trying = answer(options, 100)
    layer.send_response(key, trying)
    assert sent(layer.receive(request("OPTIONS", branch="z9hG4bKopt"), PEER)) == [trying]
    ok = answer(options, 200)
    actions = layer.send_response(key, ok)
    assert started(actions) == {"J": 32.0}
    assert sent(layer.receive(request("OPTIONS", branch="z9hG4bKopt"), PEER)) == [ok]
    assert layer.send_response(key, answer(options, 500)) == []  # one final only


def test_server_non_invite_timer_j_terminates():
    layer, options, key, _ = receive_options()
    layer.send_response(key, answer(options, 200))
    assert terminated(layer.timer_fired(key, "J")) == [COMPLETED]
    # the same branch now starts a new transaction
    assert len(delivered(layer.receive(request("OPTIONS", branch="z9hG4bKopt"), PEER))) == 1


def test_server_non_invite_over_tcp_j_is_zero():
    layer, options, key, _ = receive_options(reliable=True)
    actions = layer.send_response(key, answer(options, 200))
    assert terminated(actions) == [COMPLETED]
    assert layer.server(key) is None


def test_requests_with_same_branch_but_other_method_are_separate():
    layer, _, key, _ = receive_options()
    actions = layer.receive(request("INFO", branch="z9hG4bKopt"), PEER)
    assert [m.method for m in delivered(actions)] == ["INFO"]
    assert of(actions, Deliver)[0].key != key


# -- CANCEL (9.2) -----------------------------------------------------------------------------


def test_cancel_is_answered_200_and_delivered_against_the_invite():
    layer, invite, invite_key, _ = receive_invite()
    layer.send_response(invite_key, answer(invite, 180, to_tag="tag180"))
    cancel = request("CANCEL")
    actions = layer.receive(cancel, PEER)
    (ok,) = sent(actions)
    assert ok.status == 200
    assert ok.headers.get("CSeq") == "1 CANCEL"
    assert "tag=tag180" in ok.headers.get("To")
    (deliver,) = of(actions, Deliver)
    assert deliver.message is cancel
    assert deliver.key == invite_key
    # the TU answers the INVITE 487; its ACK then completes the INVITE transaction
    terminated_487 = answer(invite, 487, to_tag="tag180")
    assert sent(layer.send_response(deliver.key, terminated_487)) == [terminated_487]
    layer.receive(request("ACK"), PEER)
    assert layer.server(invite_key).state is State.CONFIRMED


def test_cancel_matching_nothing_gets_481():
    layer = TransactionLayer(reliable=False)
    actions = layer.receive(request("CANCEL", branch="z9hG4bKnothing"), PEER)
    assert [m.status for m in sent(actions)] == [481]
    assert delivered(actions) == []


def test_cancel_after_final_response_gets_200_but_no_delivery():
    layer, invite, invite_key, _ = receive_invite()
    layer.send_response(invite_key, answer(invite, 200))
    actions = layer.receive(request("CANCEL"), PEER)
    assert [m.status for m in sent(actions)] == [200]
    assert delivered(actions) == []


def test_retransmitted_cancel_gets_the_same_200():
    layer, invite, invite_key, _ = receive_invite()
    first = sent(layer.receive(request("CANCEL"), PEER))
    again = layer.receive(request("CANCEL"), PEER)
    assert sent(again) == first
    assert delivered(again) == []


def test_server_key_of_cancel_and_ack_relate_to_invite():
    invite_key = server_key(request("INVITE"))
    assert server_key(request("ACK")) == invite_key
    assert server_key(request("CANCEL")).method == "CANCEL"
    assert server_key(request("CANCEL")).branch == invite_key.branch


def test_stale_timer_after_termination_is_ignored():
    layer, invite, key, _ = receive_invite()
    layer.send_response(key, answer(invite, 486))
    layer.receive(request("ACK"), PEER)
    assert layer.timer_fired(key, "G") == []
    assert layer.timer_fired(key, "H") == []
