"""The HTTP face of the gateway: ORS routes, admin API, operations endpoints and the web client."""

from gateway.http.app import create_app

__all__ = ["create_app"]
