"""The Matrix plugin's tables: transactions remembered (the latest 1000), ghosts' names, the
memberships we hold, the ghosts' Olm account pickles."""

from __future__ import annotations

from pathlib import Path

from gateway.store import open_store
from protocols.matrix.plugin import plugin
from protocols.matrix.store import KEPT_TRANSACTIONS, MatrixStore, Membership


def store(tmp_path: Path) -> MatrixStore:
    return MatrixStore(open_store(tmp_path / "db.sqlite", [plugin]))


def test_a_transaction_is_remembered(tmp_path: Path) -> None:
    matrix = store(tmp_path)
    assert not matrix.seen_transaction("t1")
    matrix.add_transaction("t1")
    matrix.add_transaction("t1")
    assert matrix.seen_transaction("t1")


def test_only_the_latest_transactions_are_kept() -> None:
    matrix = MatrixStore(open_store(":memory:", [plugin]))
    for number in range(KEPT_TRANSACTIONS + 5):
        matrix.add_transaction(f"t{number}", now=float(number))
    assert not matrix.seen_transaction("t4")
    assert matrix.seen_transaction("t5")
    assert matrix.seen_transaction(f"t{KEPT_TRANSACTIONS + 4}")


def test_ghost_names_and_memberships_survive_a_reopen(tmp_path: Path) -> None:
    matrix = store(tmp_path)
    assert matrix.ghost_name("@rondpoint_a:hs.test") is None
    matrix.put_ghost("@rondpoint_a:hs.test", "Anna")
    matrix.put_membership(Membership("!r:hs.test", "@rondpoint_a:hs.test", "RONDPOINT", "d1"))
    matrix.put_membership(Membership("!r:hs.test", "@rondpoint_a:hs.test", "RONDPOINT", "d2"))
    matrix.put_device_pickle("@rondpoint_a:hs.test", "RONDPOINT", "pickled")
    again = store(tmp_path)
    assert again.ghost_name("@rondpoint_a:hs.test") == "Anna"
    assert again.memberships("!r:hs.test") == [
        Membership("!r:hs.test", "@rondpoint_a:hs.test", "RONDPOINT", "d2")
    ]
    assert again.device_pickle("@rondpoint_a:hs.test", "RONDPOINT") == "pickled"
    again.remove_membership("!r:hs.test", "@rondpoint_a:hs.test", "RONDPOINT")
    assert again.memberships() == []
