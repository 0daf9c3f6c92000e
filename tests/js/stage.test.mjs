// The stage's choices (gateway/web/static/state.js, layout.js): a tile per video (screen shares
// beside cameras), which tile is large in speaker view or when pinned, the geometry of speaker
// view and of a phone's grid, and the simulcast layer each tile then asks for.
import assert from "node:assert/strict";
import { test } from "node:test";

import { bestGrid, gridLayout, layerHeight } from "../../gateway/web/static/layout.js";
import {
  MIN_TILE_WIDTH,
  SHARES_SHOWN,
  largeTile,
  newAppState,
  noteSpeakers,
  speakerRects,
  stageTiles,
} from "../../gateway/web/static/state.js";

function room() {
  const state = newAppState();
  state.state = "room";
  state.self = { id: "me", name: "Moi", state: "joined", tracks: [] };
  const video = (id, source) => ({ id, kind: "video", source, muted: false });
  state.participants.set("a", { id: "a", name: "Ana", state: "joined", joined_at: 1, tracks: [video("ta", "camera")] });
  state.participants.set("v", {
    id: "v",
    name: "Visio",
    origin: "visio",
    state: "joined",
    joined_at: 2,
    tracks: [video("tv", "camera"), video("ts", "screen"), { id: "tsa", kind: "audio", source: "screen_audio" }],
  });
  state.participants.set("l", { id: "l", name: "Lobby", state: "lobby", tracks: [] });
  return state;
}

const keys = (tiles) => tiles.map((x) => x.key);

test("a screen share is a tile of its own beside its owner's camera", () => {
  const state = room();
  assert.deepEqual(keys(stageTiles(state)), ["me", "a", "v", "v:ts"]);
  assert.equal(stageTiles(state)[3].source, "screen");
  assert.equal(stageTiles(state)[3].trackId, "ts");
  state.screenTrack = {}; // the page shares its own screen
  assert.deepEqual(keys(stageTiles(state)), ["me", "me:screen", "a", "v", "v:ts"]);
});

test("a participant publishing many screen tracks gets no more than SHARES_SHOWN tiles", () => {
  const state = room();
  const many = Array.from({ length: 50 }, (_, i) => ({ id: `s${i}`, kind: "video", source: "screen" }));
  state.participants.get("a").tracks.push(...many);
  const shares = stageTiles(state).filter((x) => x.pid === "a" && x.source === "screen");
  assert.deepEqual(keys(shares), ["a:s0", "a:s1"].slice(0, SHARES_SHOWN));
});

test("the large tile: pinned first, then a share, the last speaker, the first other", () => {
  const state = room();
  const tiles = stageTiles(state);
  const opts = { layout: "speaker", pinned: null, lastSpeaker: null, selfId: "me" };
  assert.equal(largeTile(tiles, { ...opts, layout: "grid" }), null, "a grid has no large tile");
  assert.equal(largeTile(tiles, { ...opts, layout: "grid", pinned: "a" }), "a", "a pin makes one");
  assert.equal(largeTile(tiles, opts), "v:ts", "a share takes the large place");
  assert.equal(largeTile(tiles, { ...opts, pinned: "me" }), "me", "unless a tile is pinned");
  assert.equal(largeTile(tiles, { ...opts, pinned: "gone" }), "v:ts", "a pin of a tile that went is none");
  const cameras = tiles.filter((x) => x.source === "camera");
  assert.equal(largeTile(cameras, opts), "a", "nobody spoke yet: the first other");
  assert.equal(largeTile(cameras, { ...opts, lastSpeaker: "v" }), "v");
  assert.equal(largeTile([cameras[0]], opts), null, "alone: no stage to share");
  // one's own share comes after another's
  const mine = [...cameras, { key: "me:screen", pid: "me", source: "screen" }];
  assert.equal(largeTile(mine, opts), "me:screen");
  assert.equal(largeTile([...mine, { key: "a:s", pid: "a", source: "screen" }], opts), "a:s");
});

test("the last speaker is another participant, kept while nobody speaks", () => {
  const state = room();
  noteSpeakers(state, ["me", "a"]);
  assert.deepEqual([...state.speaking], ["me", "a"]);
  assert.equal(state.lastSpeaker, "a");
  noteSpeakers(state, ["me"]);
  assert.equal(state.lastSpeaker, "a", "the page itself never takes the large tile");
  noteSpeakers(state, []);
  assert.equal(state.speaking.size, 0);
  assert.equal(state.lastSpeaker, "a");
});

test("speaker view: a large tile above a strip, the large one on the high layer", () => {
  const { large, strip } = speakerRects(3, 1248, 640);
  assert.equal(strip.length, 3);
  for (const r of strip) {
    assert.ok(r.w >= MIN_TILE_WIDTH && r.w <= 240, r);
    assert.ok(r.y >= large.y + large.h, "the strip is under the large tile");
    assert.ok(Math.abs(r.h - (r.w * 9) / 16) < 0.01);
  }
  assert.ok(strip[1].x >= strip[0].x + strip[0].w, "side by side");
  assert.ok(large.x >= 0 && large.x + large.w <= 1248 + 0.01 && large.h > 400, large);
  const layers = [180, 360, 720];
  assert.equal(layerHeight(layers, large.h), 720);
  assert.equal(layerHeight(layers, strip[0].h), 180);
  // alone on the stage, the large tile fills it
  const only = speakerRects(0, 1280, 720).large;
  assert.deepEqual([only.w, only.h], [1280, 720]);
});

test("on a phone, no tile is narrower than 150 px: the strip and the grid scroll instead", () => {
  const { large, strip } = speakerRects(5, 374, 640);
  assert.ok(large.w <= 374 && large.w > 300, large);
  for (const r of strip) assert.ok(r.w >= MIN_TILE_WIDTH, r);
  for (const n of [3, 6, 12, 30]) {
    const { cols, w } = gridLayout(n, 374, 640);
    assert.ok(w >= MIN_TILE_WIDTH, `${n} tiles: ${w}`);
    assert.ok(cols * w + (cols - 1) * 12 <= 374 + 0.01, `${n} tiles fit across`);
  }
  assert.equal(gridLayout(30, 374, 640).cols, 2, "many people: two columns, scrolled");
  assert.deepEqual(gridLayout(4, 1280, 720), bestGrid(4, 1280, 720), "a desktop keeps bestGrid");
});
