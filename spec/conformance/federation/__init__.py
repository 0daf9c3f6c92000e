"""The server-to-server (federation) conformance suite: it plays a partner gateway (spec/ors-v1.md section 14)."""
