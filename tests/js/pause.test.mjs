// Videos nobody sees (gateway/web/static/state.js wantedVideos, subscribedChanges): a tile
// scrolled out of the stage or a page in the background pauses its video (spec 8.7 `subscribed`),
// never speaker view's large tile, each change sent once.
import assert from "node:assert/strict";
import { test } from "node:test";

import { subscribedChanges, wantedVideos } from "../../gateway/web/static/state.js";

const tiles = [
  { trackId: "", visible: true, large: false }, // the page's own camera: nothing received
  { trackId: "ta", visible: true, large: false },
  { trackId: "tb", visible: false, large: false },
  { trackId: "ts", visible: false, large: true }, // speaker view's large tile, scrolled away
];

test("a tile out of view is paused, a visible one and the large one are not", () => {
  assert.deepEqual([...wantedVideos(tiles, false)], [
    ["ta", true],
    ["tb", false],
    ["ts", true],
  ]);
});

test("a hidden page pauses every video, the large one too", () => {
  assert.deepEqual([...wantedVideos(tiles, true)], [
    ["ta", false],
    ["tb", false],
    ["ts", false],
  ]);
});

test("a track on two tiles is forwarded when one of them is seen", () => {
  const two = [
    { trackId: "t", visible: true, large: false },
    { trackId: "t", visible: false, large: false },
  ];
  assert.deepEqual([...wantedVideos(two, false)], [["t", true]]);
  assert.deepEqual([...wantedVideos([...two].reverse(), false)], [["t", true]]);
});

test("only changes are sent; a track never sent is subscribed already", () => {
  const sent = new Map();
  const wanted = wantedVideos(tiles, false);
  assert.deepEqual(subscribedChanges(wanted, sent), [["tb", false]]);
  sent.set("tb", false);
  assert.deepEqual(subscribedChanges(wanted, sent), []);
  // the tab goes to the background, then comes back
  const hidden = subscribedChanges(wantedVideos(tiles, true), sent);
  assert.deepEqual(hidden, [
    ["ta", false],
    ["ts", false],
  ]);
  for (const [id, on] of hidden) sent.set(id, on);
  assert.deepEqual(subscribedChanges(wantedVideos(tiles, false), sent), [
    ["ta", true],
    ["ts", true],
  ]);
  // scrolled into view
  const scrolled = tiles.map((x) => ({ ...x, visible: true }));
  assert.deepEqual(subscribedChanges(wantedVideos(scrolled, false), new Map([["tb", false]])), [["tb", true]]);
});

test("a video received on no tile (a third screen share) is paused, audio is never", () => {
  assert.deepEqual([...wantedVideos(tiles, false, ["ta", "ts", "t3"])], [
    ["ta", true],
    ["tb", false],
    ["ts", true],
    ["t3", false],
  ]);
  assert.deepEqual([...wantedVideos([], true)], []); // audio tracks are never given
});
