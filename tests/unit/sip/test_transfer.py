"""Blind transfer out of a room (protocols/sip/transfer.py): the REFER's headers and the
transferee's progress read from the NOTIFYs' message/sipfrag (RFC 3515, RFC 3420)."""

from __future__ import annotations

from protocols.sip.transfer import BlindTransfer


def test_the_refer_names_the_target_and_the_referrer() -> None:
    transfer = BlindTransfer("sip:accueil@example.org")
    assert transfer.refer_headers("<sip:rondpoint@192.0.2.1:5060>") == [
        ("Refer-To", "<sip:accueil@example.org>"),
        ("Referred-By", "<sip:rondpoint@192.0.2.1:5060>"),
    ]
    assert (transfer.status, transfer.active) == ("requested", True)


def test_a_provisional_status_changes_nothing_and_a_2xx_ends_the_call() -> None:
    transfer = BlindTransfer("sip:accueil@example.org")
    assert not transfer.notified(b"SIP/2.0 100 Trying\r\n")
    assert transfer.status == "requested"
    assert transfer.notified(b"SIP/2.0 200 OK\r\n")
    assert (transfer.status, transfer.active) == ("transferred", True)


def test_a_failed_transferee_call_ends_the_transfer_not_the_call() -> None:
    transfer = BlindTransfer("sip:accueil@example.org")
    assert not transfer.notified(b"SIP/2.0 486 Busy Here\n")
    assert (transfer.status, transfer.active) == ("failed (486)", False)


def test_a_body_that_is_no_status_line_is_ignored() -> None:
    transfer = BlindTransfer("sip:accueil@example.org")
    assert not transfer.notified(b"")
    assert not transfer.notified(b"SIP/2.0 OK")
    assert (transfer.status, transfer.active) == ("requested", True)


def test_a_refused_refer_ends_the_transfer() -> None:
    transfer = BlindTransfer("sip:accueil@example.org")
    transfer.refused(603)
    assert (transfer.status, transfer.active) == ("refused (603)", False)
