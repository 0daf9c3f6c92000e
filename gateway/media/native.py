"""The optional native fast path (gateway/media/_fastpath.c), or None for the pure-Python path.

The extension is built by `pip install -e .` when libsrtp2-dev and a C compiler are present.
Set RONDPOINT_NATIVE=0 to run on the pure-Python path anyway. `fastpath()` is read when a
session is created, so a test can switch paths with `monkeypatch.setattr(native, "enabled", ...)`.
"""

from __future__ import annotations

import os
from types import ModuleType

import pylibsrtp
import pylibsrtp._binding

_module: ModuleType | None = None
try:
    from . import _fastpath  # type: ignore[attr-defined]

    # The extension calls the libsrtp that pylibsrtp bundles (OpenSSL-backed), so both paths
    # share one SRTP implementation.
    _fastpath.configure(pylibsrtp.Error, pylibsrtp._binding.__file__)
    _module = _fastpath
except ImportError:  # not built, or no usable libsrtp: the pure-Python path
    _module = None

MODULE = _module  # what the router builds routes with, once a transport has an Ingress

enabled = _module is not None and os.environ.get("RONDPOINT_NATIVE", "1") not in (
    "0",
    "false",
    "no",
    "off",
)


def available() -> bool:
    return _module is not None


def fastpath() -> ModuleType | None:
    """The native module when it is built and enabled, else None."""
    return _module if enabled else None
