"""Rondpoint gateway: the protocol-neutral core and the process."""
