// The join tokens the page keeps per room (gateway/web/static/state.js): reused while valid, so a
// reload or "Rejoin" is the same identity (a host stays a host, spec 2.4); renewed through the
// anonymous endpoint close to their expiry, giving the kept one back (spec 4.3); bounded.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  TOKENS_KEPT,
  TOKEN_KEY,
  TOKEN_RENEW_SECONDS,
  forgetToken,
  keepToken,
  keptToken,
  memoryStorage,
  tokenPlan,
} from "../../gateway/web/static/state.js";
import { jwt } from "./tokens.mjs";

const NOW = 1_767_000_000;
const anonymous = jwt({ sub: "guest-abc", exp: NOW + 6 * 3600, ors: { anonymous: true, role: "host" } });
const issued = jwt({ sub: "helene", exp: NOW + 600, ors: { role: "host" } });

describe("kept tokens", () => {
  test("a token kept for a room is found again for that room only", () => {
    const storage = memoryStorage();
    keepToken(storage, "salle-a", anonymous, NOW + 100, NOW);
    assert.deepEqual(keptToken(storage, "salle-a", NOW), { token: anonymous, expiresAt: NOW + 100, anonymous: true });
    assert.equal(keptToken(storage, "salle-b", NOW), null);
  });

  test("an expired token is not found", () => {
    const storage = memoryStorage();
    keepToken(storage, "salle-a", anonymous, NOW + 100, NOW);
    assert.equal(keptToken(storage, "salle-a", NOW + 100), null);
  });

  test("without an expiry given, the token's own exp is kept", () => {
    const storage = memoryStorage();
    keepToken(storage, "salle-a", issued, 0, NOW);
    assert.deepEqual(keptToken(storage, "salle-a", NOW), { token: issued, expiresAt: NOW + 600, anonymous: false });
  });

  test("a later token for the room replaces the earlier one", () => {
    const storage = memoryStorage();
    keepToken(storage, "salle-a", issued, 0, NOW);
    keepToken(storage, "salle-a", anonymous, NOW + 200, NOW);
    assert.equal(keptToken(storage, "salle-a", NOW).token, anonymous);
    assert.equal(storage.length, 1);
  });

  test("a forgotten token is gone", () => {
    const storage = memoryStorage();
    keepToken(storage, "salle-a", anonymous, NOW + 100, NOW);
    forgetToken(storage, "salle-a");
    assert.equal(keptToken(storage, "salle-a", NOW), null);
  });

  test("a tab keeps the tokens of at most TOKENS_KEPT rooms, dropping the expired and the oldest", () => {
    const storage = memoryStorage();
    storage.setItem("rondpoint.name", "Alice"); // the page's other keys stay
    keepToken(storage, "gone", anonymous, NOW + 1, NOW);
    for (let i = 0; i < TOKENS_KEPT + 5; i++) keepToken(storage, `salle-${i}`, anonymous, NOW + 10 + i, NOW + 2);
    const rooms = [];
    for (let i = 0; i < storage.length; i++) if (storage.key(i).startsWith(TOKEN_KEY)) rooms.push(storage.key(i));
    assert.equal(rooms.length, TOKENS_KEPT);
    assert.equal(keptToken(storage, "gone", NOW), null);
    assert.equal(keptToken(storage, "salle-0", NOW + 2), null);
    assert.ok(keptToken(storage, `salle-${TOKENS_KEPT + 4}`, NOW + 2));
    assert.equal(storage.getItem("rondpoint.name"), "Alice");
  });

  test("what is not a kept token under the key is ignored", () => {
    const storage = memoryStorage();
    storage.setItem(`${TOKEN_KEY}salle-a`, "{not json");
    assert.equal(keptToken(storage, "salle-a", NOW), null);
    storage.setItem(`${TOKEN_KEY}salle-a`, JSON.stringify({ token: 12, expiresAt: "later" }));
    assert.equal(keptToken(storage, "salle-a", NOW), null);
    keepToken(storage, "salle-b", anonymous, NOW + 100, NOW); // and does not stop keeping others
    assert.ok(keptToken(storage, "salle-b", NOW));
  });

  test("a storage that refuses (private browsing, quota) keeps nothing and throws nothing", () => {
    const refusing = {
      length: 0,
      key: () => null,
      getItem: () => {
        throw new Error("SecurityError");
      },
      setItem: () => {
        throw new Error("QuotaExceededError");
      },
      removeItem: () => {
        throw new Error("SecurityError");
      },
    };
    keepToken(refusing, "salle-a", anonymous, NOW + 100, NOW);
    assert.equal(keptToken(refusing, "salle-a", NOW), null);
    forgetToken(refusing, "salle-a");
  });
});

describe("the token a join uses", () => {
  const kept = { token: anonymous, expiresAt: NOW + 3600, anonymous: true };

  test("a kept token with time to live is reused: no new token is asked", () => {
    assert.deepEqual(tokenPlan(kept, NOW), { reuse: anonymous, renew: undefined });
  });

  test("close to its expiry it is renewed, given back to the endpoint to keep its identity", () => {
    const ending = { ...kept, expiresAt: NOW + TOKEN_RENEW_SECONDS };
    assert.deepEqual(tokenPlan(ending, NOW), { reuse: null, renew: anonymous });
  });

  test("a renewal asked for (the kept token no longer joins) gives it back too", () => {
    assert.deepEqual(tokenPlan(kept, NOW, true), { reuse: null, renew: anonymous });
  });

  test("an operator's token is reused, but never sent to the anonymous endpoint", () => {
    const operator = { token: issued, expiresAt: NOW + 600, anonymous: false };
    assert.deepEqual(tokenPlan(operator, NOW), { reuse: issued, renew: undefined });
    assert.deepEqual(tokenPlan({ ...operator, expiresAt: NOW + 30 }, NOW), { reuse: null, renew: undefined });
  });

  test("without a kept token, a new one of a new identity", () => {
    assert.deepEqual(tokenPlan(null, NOW), { reuse: null, renew: undefined });
  });
});
