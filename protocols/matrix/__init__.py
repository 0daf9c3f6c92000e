"""Matrix: rooms here linked to Matrix rooms, their Element Call (MatrixRTC on LiveKit) calls and chat."""
