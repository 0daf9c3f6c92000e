"""SIP user agent core, sans-I/O in the style of h11 (RFC 3261): messages, transactions, dialogs, digest."""
