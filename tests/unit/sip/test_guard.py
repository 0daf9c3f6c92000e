"""The SIP guard: failures counted per address, or per trunk caller, and the bans they lead to."""

from __future__ import annotations

from protocols.sip import transport
from protocols.sip.transport import Guard, trunk_caller_key


def test_a_trunk_callers_failures_ban_that_caller_not_the_trunks_address() -> None:
    guard = Guard(failures_before_ban=10)
    guard.trusted = lambda host: host == "192.0.2.10"
    banned: list[str] = []
    guard.on_ban = banned.append
    caller = trunk_caller_key("operateur", "0611111111")
    for _ in range(11):
        guard.failure(caller, "room PIN")
    assert banned == [caller]
    assert guard.banned(caller)
    assert not guard.banned(trunk_caller_key("operateur", "0622222222"))
    assert guard.admits("192.0.2.10")


def test_an_address_is_banned_after_its_failures() -> None:
    guard = Guard(failures_before_ban=10)
    for _ in range(11):
        guard.failure("203.0.113.9", "room PIN")
    assert not guard.admits("203.0.113.9")


def test_bans_are_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(transport, "MAX_BANS", 5)
    guard = Guard(failures_before_ban=1)
    for number in range(20):
        key = trunk_caller_key("operateur", f"06{number:08}")
        guard.failure(key, "room PIN")
        guard.failure(key, "room PIN")
    keys = [trunk_caller_key("operateur", f"06{number:08}") for number in range(20)]
    assert [guard.banned(key) for key in keys] == [False] * 15 + [True] * 5  # the oldest made room
