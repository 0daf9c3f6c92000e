// The page's reconnection after a lost connection (ORS 6.6 and 6.7), its pure logic: what a close
// means, when to try again and with what (a resume or a plain join), when to give up, and what
// the page shows meanwhile. connection.js does it; no DOM and no browser API here, so Node's test
// runner tests it (tests/js/reconnect.test.mjs).

/** The pauses before each attempt, ms (spec 6.7: at once, then 0.5 s, 1 s, 2 s, at most 5 s). */
export const DELAYS_MS = [0, 500, 1000, 2000, 4000, 5000];
/** Each pause but the first is shortened by up to this share, at random: pages that lost the same
 * gateway do not all knock again in the same instant. */
const JITTER = 0.2;
/** After the grace, the page joins without `resume` this long (s), then gives up (spec 6.7 step 5). */
export const REJOIN_SECONDS = 60;
/** And it never makes more attempts than this, however short the pauses. */
export const MAX_ATTEMPTS = 40;

// ORS close codes (6.4): the page fell behind the room's events; its participant has left.
export const CLOSE_TOO_SLOW = 4008;
// The close code of a socket the page gives up on (no pong): anything but 1000, which would tell
// the server the page is done and make it drop the participant at once (6.6).
export const CLOSE_ABANDONED = 4000;

/** What to do when the socket of a session in the lobby or the room closed with CODE, LEAVING
 * when the person pressed Leave (and `left` did not come first): "left" (show the left screen),
 * "join" (the participant is gone: join again at once, without resume), or "resume". */
export function afterClose(code, leaving) {
  if (leaving) return "left";
  if (code === CLOSE_TOO_SLOW) return "join";
  return "resume";
}

/** A lost connection at SINCE (ms since the epoch): the server's GRACE (s, from `joined`) and the
 * RESUME_TOKEN to give back, or null when there is nothing to resume. */
export function lostConnection(since, grace, resumeToken) {
  return { since, grace: resumeToken ? grace || 0 : 0, resumeToken: resumeToken || null, attempts: 0, renew: false };
}

/** The next attempt for LOST at NOW (ms): "resume" within the grace, "join" after it (or with
 * nothing to resume) for REJOIN_SECONDS more, then "give_up"; "give_up" too after MAX_ATTEMPTS. */
export function nextStep(lost, now) {
  const elapsed = (now - lost.since) / 1000;
  if (lost.attempts >= MAX_ATTEMPTS || elapsed >= lost.grace + REJOIN_SECONDS) return "give_up";
  if (lost.resumeToken && elapsed < lost.grace) return "resume";
  return "join";
}

/** The pause before attempt number ATTEMPT (0 the first), ms, with RANDOM in [0, 1). */
export function retryDelay(attempt, random = Math.random) {
  const base = DELAYS_MS[Math.min(attempt, DELAYS_MS.length - 1)];
  return Math.round(base * (1 - JITTER * random()));
}

/** The seconds left of LOST's grace at NOW (ms), rounded up: the countdown the page shows; 0 once
 * the grace is over (or there was none). */
export function secondsLeft(lost, now) {
  return Math.max(0, Math.ceil(lost.grace - (now - lost.since) / 1000));
}

/** What a refused join or token request (problem CODE, spec 4.3, 8.1 and 12) means while
 * reconnecting: "new_token" (the join token itself: ask a new one of the same identity), "stop"
 * (trying again will not let the page in: removed, forbidden, the room is gone, the PIN changed),
 * else "retry" (the network, the server restarting, a full room that a kept participant may
 * leave, a rate limit). */
export function joinFailure(code) {
  if (["token_invalid", "token_expired", "token_wrong_room"].includes(code)) return "new_token";
  if (["removed", "forbidden", "room_not_found", "pin_required", "pin_incorrect"].includes(code)) return "stop";
  return "retry";
}

/** The reason of the left screen when a join refused with CODE ends the reconnection. */
export function leftReason(code) {
  return { removed: "removed", room_not_found: "room_closed" }[code] || "disconnected";
}

/** Whether P shows as reconnecting in STATE: another participant whose server says so (7.1
 * `reconnecting`), or the page's own while it reconnects. */
export function isReconnecting(state, p) {
  if (!p) return false;
  if (p.id === state.self?.id) return Boolean(state.lost);
  return p.reconnecting === true;
}
