"""SIP session timers: Session-Expires / Min-SE negotiation, refresh and expiry times (RFC 4028).

A pure object per dialog. It answers "what do I put in my request / 2xx", "must I answer 422", and
"what should happen at time t" (refresh now, or give up and send BYE); the caller owns the clock
and asks `next_deadline()` when to call `due()` again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from .message import Request, Response

UAC = "uac"
UAS = "uas"
TIMER_OPTION_TAG = "timer"
# RFC 4028 section 4: Min-SE can never be below 90 s; 1800 s is the recommended interval.
MIN_SE_FLOOR = 90
DEFAULT_SESSION_EXPIRES = 1800


@dataclass(frozen=True)
class SessionExpires:
    """A Session-Expires value: `delta-seconds [;refresher=uac|uas]` (RFC 4028 section 4)."""

    delta_seconds: int
    refresher: str | None = None

    @staticmethod
    def parse(value: str) -> SessionExpires:
        delta, *params = (part.strip() for part in value.split(";"))
        if not delta.isdigit():
            raise ValueError(f"bad Session-Expires {value!r}")
        refresher = None
        for param in params:
            name, _, param_value = param.partition("=")
            if name.strip().lower() == "refresher":
                refresher = param_value.strip().lower()
                if refresher not in (UAC, UAS):
                    raise ValueError(f"bad refresher in Session-Expires {value!r}")
        return SessionExpires(int(delta), refresher)

    def __str__(self) -> str:
        if self.refresher:
            return f"{self.delta_seconds};refresher={self.refresher}"
        return str(self.delta_seconds)


def parse_min_se(value: str) -> int:
    """The delta-seconds of a Min-SE value (parameters ignored, RFC 4028 section 5)."""
    delta = value.split(";", 1)[0].strip()
    if not delta.isdigit():
        raise ValueError(f"bad Min-SE {value!r}")
    return int(delta)


def _supports_timer(message: Request | Response) -> bool:
    tags = message.headers.get_all("Supported") + message.headers.get_all("Require")
    return any(tag.strip().lower() == TIMER_OPTION_TAG for tag in tags)


@dataclass(frozen=True)
class IntervalTooSmall:
    """Answer the request 422 Session Interval Too Small with these headers (RFC 4028 section 6)."""

    min_se: int
    status: int = 422
    reason: str = "Session Interval Too Small"

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [("Min-SE", str(self.min_se))]


@dataclass(frozen=True)
class Refresh:
    """Send a session refresh (re-INVITE or UPDATE with `request_headers()`) now."""


@dataclass(frozen=True)
class Expire:
    """The session timed out without a refresh: send BYE (RFC 4028 section 10)."""


class SessionTimer:
    """Session-timer state of one dialog, from our side.

    `refresher` is negotiated per refresh transaction ("uac" = whoever sent the request);
    `local_refresher` says whether that is us. `prefer_local_refresher` is our choice when the
    peer supports timers but leaves the refresher to us: by default we refresh ourselves, so a
    call never depends on a peer that forgets to.
    """

    def __init__(
        self,
        *,
        session_expires: int = DEFAULT_SESSION_EXPIRES,
        min_se: int = MIN_SE_FLOOR,
        prefer_local_refresher: bool = True,
    ) -> None:
        if min_se < MIN_SE_FLOOR:
            raise ValueError(f"Min-SE must be at least {MIN_SE_FLOOR} s")
        if session_expires < min_se:
            raise ValueError("Session-Expires must be at least Min-SE")
        self.session_expires = session_expires
        self.min_se = min_se
        self.prefer_local_refresher = prefer_local_refresher
        # The smallest interval the peer accepts (raised by a 422).
        self._peer_min_se = MIN_SE_FLOOR
        self.interval: int | None = None
        self.refresher: str | None = None
        self.local_refresher = False
        self.refreshed_at: float | None = None
        self._refresh_requested = False
        self._pending: tuple[int, str, bool] | None = None

    # -- as the sender of an INVITE / UPDATE ----------------------------------------------------

    def request_headers(self) -> list[tuple[str, str]]:
        """Headers for an initial INVITE or a session refresh we send (RFC 4028 section 7.1, 7.4)."""
        floor = max(self.min_se, self._peer_min_se)
        delta = max(self.interval or self.session_expires, floor)
        # On a refresh we keep refreshing if we were the refresher; initially the peer may choose.
        refresher = UAC if self.interval is not None and self.local_refresher else None
        return [
            ("Supported", TIMER_OPTION_TAG),
            ("Session-Expires", str(SessionExpires(delta, refresher))),
            ("Min-SE", str(floor)),
        ]

    def on_422(self, response: Response) -> bool:
        """A 422 came back: raise our interval to its Min-SE. True if a retry can succeed."""
        value = response.headers.get("Min-SE")
        if value is None:
            return False
        try:
            wanted = parse_min_se(value)
        except ValueError:
            return False
        floor = max(self.min_se, self._peer_min_se)
        last_sent = max(self.interval or self.session_expires, floor)
        if wanted <= last_sent:
            return False  # we already asked for that much: retrying cannot help
        self._peer_min_se = max(self._peer_min_se, wanted)
        return True

    def on_2xx(self, response: Response, now: float) -> None:
        """The 2xx to our INVITE / UPDATE: adopt its interval and refresher (RFC 4028 section 7.2)."""
        value = response.headers.get("Session-Expires")
        if value is None:
            self._stop()
            return
        try:
            session_expires = SessionExpires.parse(value)
        except ValueError:
            self._stop()
            return
        # A 2xx must name the refresher; if it does not, we refresh rather than risk a dead call.
        refresher = session_expires.refresher or UAC
        self._start(session_expires.delta_seconds, refresher, refresher == UAC, now)

    # -- as the receiver of an INVITE / UPDATE --------------------------------------------------

    def answer_request(self, request: Request) -> IntervalTooSmall | list[tuple[str, str]]:
        """What to answer an INVITE / UPDATE: a 422, or the headers to put in our 2xx.

        Call `response_sent(now)` once that 2xx is sent; the session clock starts then.
        """
        peer_supports = _supports_timer(request)
        requested_min_se = MIN_SE_FLOOR
        min_se_value = request.headers.get("Min-SE")
        if min_se_value is not None:
            with contextlib.suppress(ValueError):
                requested_min_se = max(MIN_SE_FLOOR, parse_min_se(min_se_value))
        value = request.headers.get("Session-Expires")
        requested: SessionExpires | None = None
        if value is not None:
            try:
                requested = SessionExpires.parse(value)
            except ValueError:
                requested = None
        if requested is not None:
            if requested.delta_seconds < self.min_se:
                return IntervalTooSmall(self.min_se)
            # We may shorten the interval, never below either side's Min-SE (section 9).
            delta = min(
                requested.delta_seconds,
                max(self.session_expires, requested_min_se, self.min_se),
            )
        else:
            # The peer asked for no timer; we run one anyway (section 9 allows it).
            delta = max(self.session_expires, requested_min_se)
        if not peer_supports:
            refresher = UAS
        elif requested is not None and requested.refresher is not None:
            refresher = requested.refresher
        else:
            refresher = UAS if self.prefer_local_refresher else UAC
        self._pending = (delta, refresher, refresher == UAS)
        headers = [("Session-Expires", str(SessionExpires(delta, refresher)))]
        if peer_supports:
            headers.append(("Require", TIMER_OPTION_TAG))
        return headers

    def response_sent(self, now: float) -> None:
        """The 2xx built from `answer_request` went out: the session interval starts now."""
        if self._pending is None:
            return
        delta, refresher, local = self._pending
        self._pending = None
        self._start(delta, refresher, local, now)

    # -- the clock ------------------------------------------------------------------------------

    def _start(self, interval: int, refresher: str, local: bool, now: float) -> None:
        self.interval = interval
        self.refresher = refresher
        self.local_refresher = local
        self.refreshed_at = now
        self._refresh_requested = False

    def _stop(self) -> None:
        self.interval = None
        self.refresher = None
        self.local_refresher = False
        self.refreshed_at = None
        self._refresh_requested = False

    @property
    def refresh_at(self) -> float | None:
        """When we send a refresh: half the interval after the last one (section 10)."""
        if self.interval is None or self.refreshed_at is None or not self.local_refresher:
            return None
        return self.refreshed_at + self.interval / 2

    @property
    def expires_at(self) -> float | None:
        """When we give up and send BYE: interval - min(32, interval / 3) after the last refresh."""
        if self.interval is None or self.refreshed_at is None:
            return None
        return self.refreshed_at + self.interval - min(32.0, self.interval / 3)

    def next_deadline(self) -> float | None:
        """The next time `due` has something to say, or None when no session timer runs."""
        refresh_at = self.refresh_at
        if refresh_at is not None and not self._refresh_requested:
            return refresh_at
        return self.expires_at

    def due(self, now: float) -> Refresh | Expire | None:
        """What should happen at `now`. A Refresh is returned once per interval."""
        expires_at = self.expires_at
        if expires_at is None:
            return None
        if now >= expires_at:
            return Expire()
        refresh_at = self.refresh_at
        if refresh_at is not None and now >= refresh_at and not self._refresh_requested:
            self._refresh_requested = True
            return Refresh()
        return None
