"""Display names as they enter a room, from any system (spec 7.1): the one sanitiser, and the one
terminal-safe rendering for the CLI.

Names come from strangers (an ORS ``join``, a token's ``name`` claim, a SIP ``From``, a Visio
participant) and reach other people's pages and the operator's terminal. ``display_name`` keeps
what a person may be called in any script and removes what changes how other text is shown:

- the text is NFC-normalised, and a lone surrogate (JSON ``"\\ud800"``) becomes U+FFFD;
- control characters (Unicode Cc: C0, DEL, C1, so ANSI escape sequences lose their ESC) are
  dropped, except that tab, line breaks and the line and paragraph separators become spaces;
- format characters (Cf) are dropped: the bidi embeddings, overrides and isolates (U+202A-U+202E,
  U+2066-U+2069), the marks LRM, RLM and ALM, zero-width spaces, soft hyphens, BOMs, tags. Only
  ZWNJ and ZWJ (U+200C, U+200D) stay, and only inside a word (between two characters that are
  not spaces): Persian, Indic scripts and emoji sequences need them;
- every run of white space becomes one space, and the ends are trimmed;
- at most ``MAX_NAME_CHARS`` (64) code points are kept.

An empty result means nothing displayable was given; the caller refuses it (ORS) or uses its
fallback (a phone number, a token's subject).
"""

from __future__ import annotations

import unicodedata

MAX_NAME_CHARS = 64
_JOINERS = frozenset("\u200c\u200d")
_REPLACEMENT = "\ufffd"


def display_name(raw: str, limit: int = MAX_NAME_CHARS) -> str:
    """``raw`` as a room shows it (module docstring); ``""`` if nothing displayable remains."""
    text = "".join(_REPLACEMENT if 0xD800 <= ord(c) <= 0xDFFF else c for c in raw)
    text = unicodedata.normalize("NFC", text)
    kept: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace() or category in ("Zl", "Zp"):
            kept.append(" ")
        elif category == "Cc" or (category == "Cf" and char not in _JOINERS):
            continue
        else:
            kept.append(char)
    words = "".join(kept).split()
    name = " ".join(_joiners_inside(word) for word in words)
    name = name[:limit]
    while name and (name[-1] in _JOINERS or name[-1] == " "):  # cut inside a word, or at a space
        name = name[:-1]
    return name


def _joiners_inside(word: str) -> str:
    """``word`` without a ZWJ/ZWNJ at its start or end or next to another joiner."""
    out: list[str] = []
    for char in word:
        if char in _JOINERS and (not out or out[-1] in _JOINERS):
            continue
        out.append(char)
    while out and out[-1] in _JOINERS:
        out.pop()
    return "".join(out)


def terminal_safe(text: str) -> str:
    """``text`` for a terminal: every character that is not printable (controls, format and bidi
    characters, surrogates, unassigned code points) shown as ``\\uXXXX`` (``\\UXXXXXXXX`` above
    U+FFFF), so that stored or foreign text can neither drive the terminal nor fail to encode."""
    return "".join(
        c if c.isprintable() else (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        for c in text
    )
