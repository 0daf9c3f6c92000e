"""The one error the core catches from a telephony adapter (protocols/sip) when dialling out."""


class DialError(ValueError):
    """The target cannot be dialled (a bad URI, no trunk for a number, no free port)."""
