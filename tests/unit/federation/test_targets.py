"""ors:ROOM@SERVER targets: their shape, and the adapter's refusals (a server that is not a peer,
this server itself), each with a sentence an operator can act on."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from gateway.federation.adapter import FederationAdapter
from gateway.federation.store import Peer
from gateway.federation.targets import normalize_target, split_target


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("ors:cabinet@de.example", "ors:cabinet@de.example"),
        ("ORS:cabinet@DE.Example.", "ors:cabinet@de.example"),
        ("ors:salle-1@localhost", "ors:salle-1@localhost"),
    ],
)
def test_canonical_targets(written: str, canonical: str) -> None:
    assert normalize_target(written) == canonical
    assert split_target(canonical)[0] in canonical


@pytest.mark.parametrize(
    "written",
    [
        "ors:cabinet",
        "ors:@de.example",
        "ors:Cabinet@de.example",
        "ors:ca@de.example",
        "ors:cabinet@de_example",
        "ors:cabinet@-de.example",
        "ors:cabinet@de..example",
        "ors:cabinet@127.0.0.12",  # a peer is a name (peer add refuses addresses too)
        "ors:cabinet@" + "a" * 254,
        "visio:cabinet@de.example",
        "ors:cabinet@user@de.example",
    ],
)
def test_malformed_targets_are_refused_with_the_shape(written: str) -> None:
    with pytest.raises(ValueError, match="ors:ROOM@SERVER"):
        normalize_target(written)


class Peers:
    def peer(self, name: str) -> Peer | None:
        return Peer(name) if name == "de.example" else None


def adapter() -> FederationAdapter:
    service: Any = SimpleNamespace(server_name="fr.example", store=Peers())
    return FederationAdapter(service)


def test_the_adapter_links_peers_only_and_never_itself() -> None:
    assert adapter().normalize("ors:cabinet@DE.example") == "ors:cabinet@de.example"
    with pytest.raises(ValueError, match="rondpoint peer add it.example"):
        adapter().normalize("ors:cabinet@it.example")
    with pytest.raises(ValueError, match="this gateway"):
        adapter().normalize("ors:cabinet@fr.example")
