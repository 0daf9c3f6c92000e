"""Server-to-server federation (ORS federation part): signing keys now; links and relay later."""

from gateway.federation.keys import SigningKeys

__all__ = ["SigningKeys"]
