// The page's reconnection logic (gateway/web/static/reconnect.js): what a close means, the pauses
// between attempts, resume then join then giving up, the countdown, and refused joins.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CLOSE_TOO_SLOW,
  DELAYS_MS,
  MAX_ATTEMPTS,
  REJOIN_SECONDS,
  afterClose,
  isReconnecting,
  joinFailure,
  leftReason,
  lostConnection,
  nextStep,
  retryDelay,
  secondsLeft,
} from "../../gateway/web/static/reconnect.js";

const T0 = 1_767_226_800_000;

test("a close resumes, but not after Leave, and a page that fell behind joins anew", () => {
  assert.equal(afterClose(1006, false), "resume"); // the network dropped
  assert.equal(afterClose(1012, false), "resume"); // the gateway restarts
  assert.equal(afterClose(1000, false), "resume"); // closed without `left`: still not the person's choice
  assert.equal(afterClose(1006, true), "left");
  assert.equal(afterClose(CLOSE_TOO_SLOW, false), "join");
});

test("the pauses grow from at once to at most 5 s, shortened by the jitter only", () => {
  assert.equal(retryDelay(0, () => 0.99), 0);
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 30].map((n) => retryDelay(n, () => 0)),
    [0, 500, 1000, 2000, 4000, 5000, 5000],
  );
  for (let n = 1; n < 50; n++) {
    const delay = retryDelay(n);
    const base = DELAYS_MS[Math.min(n, DELAYS_MS.length - 1)];
    assert.ok(delay <= base && delay >= base * 0.8 && delay <= 5000, `${n}: ${delay}`);
  }
  assert.equal(retryDelay(3, () => 0.5), 1800);
});

test("within the grace the page resumes, after it joins, and a minute later it gives up", () => {
  const lost = lostConnection(T0, 20, "resume-secret");
  assert.equal(nextStep(lost, T0), "resume");
  assert.equal(nextStep(lost, T0 + 19_999), "resume");
  assert.equal(nextStep(lost, T0 + 20_000), "join");
  assert.equal(nextStep(lost, T0 + (20 + REJOIN_SECONDS) * 1000 - 1), "join");
  assert.equal(nextStep(lost, T0 + (20 + REJOIN_SECONDS) * 1000), "give_up");
  lost.attempts = MAX_ATTEMPTS;
  assert.equal(nextStep(lost, T0 + 1000), "give_up");
});

test("with nothing to resume the page joins at once, and shows no countdown", () => {
  const lost = lostConnection(T0, 20, null); // a server without resume, or a "too slow" close
  assert.equal(lost.grace, 0);
  assert.equal(nextStep(lost, T0), "join");
  assert.equal(secondsLeft(lost, T0), 0);
  assert.equal(nextStep(lostConnection(T0, undefined, "secret"), T0), "join");
});

test("the countdown counts the grace down in whole seconds, rounded up, and stops at 0", () => {
  const lost = lostConnection(T0, 20, "secret");
  assert.equal(secondsLeft(lost, T0), 20);
  assert.equal(secondsLeft(lost, T0 + 500), 20);
  assert.equal(secondsLeft(lost, T0 + 1000), 19);
  assert.equal(secondsLeft(lost, T0 + 19_001), 1);
  assert.equal(secondsLeft(lost, T0 + 20_000), 0);
  assert.equal(secondsLeft(lost, T0 + 90_000), 0);
});

test("a refused join asks a new token, tries again, or stops on the left screen", () => {
  for (const code of ["token_invalid", "token_expired", "token_wrong_room"]) assert.equal(joinFailure(code), "new_token");
  for (const code of ["removed", "forbidden", "room_not_found", "pin_required", "pin_incorrect"]) {
    assert.equal(joinFailure(code), "stop");
  }
  for (const code of ["connection_failed", "connection_closed", "timeout", "room_full", "rate_limited", "internal", undefined]) {
    assert.equal(joinFailure(code), "retry");
  }
  assert.equal(leftReason("removed"), "removed");
  assert.equal(leftReason("room_not_found"), "room_closed");
  assert.equal(leftReason("forbidden"), "disconnected");
});

test("a participant shows reconnecting when its server says so; the page's own while it reconnects", () => {
  const state = { self: { id: "p_me" }, lost: null };
  assert.equal(isReconnecting(state, { id: "p_bob", reconnecting: true }), true);
  assert.equal(isReconnecting(state, { id: "p_bob", reconnecting: false }), false);
  assert.equal(isReconnecting(state, { id: "p_bob" }), false);
  assert.equal(isReconnecting(state, { id: "p_me", reconnecting: true }), false);
  state.lost = lostConnection(T0, 20, "secret");
  assert.equal(isReconnecting(state, { id: "p_me" }), true);
  assert.equal(isReconnecting(state, null), false);
});
