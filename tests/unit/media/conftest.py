"""The media tests' shared fixture: the relay's packet path."""

from __future__ import annotations

import pytest

import bench.srtp_client
from gateway.media import native


@pytest.fixture(params=["native", "python"])
def packet_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The relay's packet path for the test: the native fast path (skipped when not built) or
    the pure-Python one; the lean peers keep every sample they receive."""
    if request.param == "native" and not native.available():
        pytest.skip("the native extension is not built (pip install -e . with libsrtp2-dev)")
    monkeypatch.setattr(native, "enabled", request.param == "native")
    monkeypatch.setattr(bench.srtp_client, "_SAMPLES_KEPT", 10_000)
    return str(request.param)
