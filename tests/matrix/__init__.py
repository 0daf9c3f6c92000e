"""Tests of the Matrix bridge against real peers: Synapse, matrix-js-sdk, livekit-server, Chromium."""
