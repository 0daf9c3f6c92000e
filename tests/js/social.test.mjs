// The pure logic of the room's social side (state.js): raised hands in the order they went up,
// the people panel's groups by origin, links in chat text, the unread count.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  REACTIONS,
  chatParts,
  groupByOrigin,
  handRaised,
  handWentUp,
  handsFirst,
  liveMicTrack,
  originGroup,
  unreadAfter,
} from "../../gateway/web/static/state.js";

const person = (id, origin = "ors", hand = null) => ({ id, origin, hand_raised_at: hand });

test("raised hands come first, in the order they went up; the others keep their order", () => {
  const list = [person("a"), person("b", "ors", 300), person("c"), person("d", "ors", 100), person("e", "sip")];
  assert.deepEqual(
    handsFirst(list).map((p) => p.id),
    ["d", "b", "a", "c", "e"],
  );
});

test("an absent hand_raised_at (an older server) is a hand down", () => {
  assert.equal(handRaised({ id: "x" }), false);
  assert.equal(handRaised(person("x", "ors", 0)), true);
  assert.equal(handWentUp({ id: "x" }, person("x", "ors", 5)), true);
  assert.equal(handWentUp(person("x", "ors", 5), person("x", "ors", 5)), false);
  assert.equal(handWentUp(person("x", "ors", 5), person("x")), false);
  assert.equal(handWentUp(undefined, person("x", "ors", 5)), true);
});

test("origins fall in the people panel's groups", () => {
  for (const [origin, group] of [
    ["ors", "ors"],
    [undefined, "ors"],
    ["sip", "sip"],
    ["visio", "visio"],
    ["matrix", "matrix"],
    ["federation:partner.example", "federation"],
    ["h323", "other"],
  ]) {
    assert.equal(originGroup(origin), group, origin);
  }
});

test("groups come in the panel's order, only the non-empty ones, hands first in each", () => {
  const list = [
    person("me"),
    person("phone", "sip"),
    person("fed", "federation:b.example", 50),
    person("bob", "ors", 20),
    person("fed2", "federation:c.example"),
  ];
  assert.deepEqual(
    groupByOrigin(list).map(({ group, people }) => [group, people.map((p) => p.id)]),
    [
      ["ors", ["bob", "me"]],
      ["sip", ["phone"]],
      ["federation", ["fed", "fed2"]],
    ],
  );
  assert.deepEqual(groupByOrigin([]), []);
});

test("chat text: http and https links, the sentence's punctuation left out", () => {
  assert.deepEqual(chatParts("see https://example.org/a?b=1#c, and http://x.example."), [
    { text: "see " },
    { text: "https://example.org/a?b=1#c", href: "https://example.org/a?b=1#c" },
    { text: ", and " },
    { text: "http://x.example", href: "http://x.example/" },
    { text: "." },
  ]);
  assert.deepEqual(chatParts("(https://a.example/x)"), [
    { text: "(" },
    { text: "https://a.example/x", href: "https://a.example/x" },
    { text: ")" },
  ]);
});

test("chat text: nothing but http(s) becomes a link", () => {
  for (const text of [
    "javascript:alert(1)",
    "JAVASCRIPT:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "<a href=\"https://x.example\">x</a>".replace("https://x.example", "javascript:x"),
    "ftp://files.example/a",
    "vbscript:msgbox",
    "https://",
    "plain words",
    "",
  ]) {
    assert.ok(
      chatParts(text).every((p) => p.href === undefined),
      text,
    );
    assert.equal(
      chatParts(text)
        .map((p) => p.text)
        .join(""),
      text,
    );
  }
  // a link's href is always http(s), whatever surrounds it
  for (const p of chatParts("javascript:alert('https://evil.example') https://ok.example")) {
    if (p.href !== undefined) assert.match(p.href, /^https?:\/\//);
  }
});

test("unread: someone else's live message while the chat is closed", () => {
  const msg = { from: "p_other" };
  assert.equal(unreadAfter(2, msg, "p_me", false), 3);
  assert.equal(unreadAfter(2, msg, "p_me", true), 2);
  assert.equal(unreadAfter(2, { from: "p_me" }, "p_me", false), 2);
  assert.equal(unreadAfter(2, msg, "p_me", false, true), 2); // the history is not news
});

test("the eight reactions of ORS 8.18, the heart with its variation selector", () => {
  assert.equal(REACTIONS.length, 8);
  assert.ok(REACTIONS.includes("\u2764\uFE0F"));
});

test("the microphone track a host can mute: an audio track that is on", () => {
  const tracks = [
    { id: "v", kind: "video", muted: false },
    { id: "s", kind: "audio", source: "screen_audio", muted: false },
    { id: "m", kind: "audio", source: "microphone", muted: false },
  ];
  assert.equal(liveMicTrack({ tracks }), "m");
  assert.equal(liveMicTrack({ tracks: tracks.map((x) => ({ ...x, muted: x.id === "m" })) }), null);
  assert.equal(liveMicTrack({}), null);
});
