"""matrix: link targets: a room id or an alias, refused otherwise with a sentence."""

from __future__ import annotations

import pytest

from protocols.matrix.targets import is_alias, matrix_room, normalize_target


@pytest.mark.parametrize(
    ("target", "canonical"),
    [
        ("matrix:!AbCdEf:example.org", "matrix:!AbCdEf:example.org"),
        (" MATRIX:!AbCdEf:hs.test:8448 ", "matrix:!AbCdEf:hs.test:8448"),
        ("matrix:#team-room:example.org", "matrix:#team-room:example.org"),
        (
            "matrix:!tjd0kJhuP2rBj4T9wTm4yKWY8yXGgXqNTtI3Ag6Sm3k",
            "matrix:!tjd0kJhuP2rBj4T9wTm4yKWY8yXGgXqNTtI3Ag6Sm3k",
        ),
    ],
)
def test_a_room_id_or_an_alias_is_a_target(target: str, canonical: str) -> None:
    assert normalize_target(target) == canonical


@pytest.mark.parametrize(
    "target",
    [
        "visio:!a:b",
        "matrix:",
        "matrix:room",
        "matrix:!nohost",
        "matrix:@anna:hs.test",
        "matrix:#a b:x",
    ],
)
def test_anything_else_is_refused_with_a_sentence(target: str) -> None:
    with pytest.raises(ValueError, match="matrix:!"):
        normalize_target(target)


def test_aliases_are_told_apart() -> None:
    assert is_alias(matrix_room("matrix:#a:b.c"))
    assert not is_alias(matrix_room("matrix:!a:b.c"))
