// The page's arithmetic of video (gateway/web/static/layout.js, media.js): the grid of tiles, the
// simulcast layer a tile asks for, and the layers a camera sends.
import assert from "node:assert/strict";
import { test } from "node:test";

import { bestGrid, layerHeight } from "../../gateway/web/static/layout.js";
import { simulcastLayers } from "../../gateway/web/static/media.js";

test("tiles take the grid where they are largest", () => {
  assert.equal(bestGrid(1, 1280, 720).cols, 1);
  assert.equal(bestGrid(2, 1280, 720).cols, 2); // side by side on a wide stage
  assert.equal(bestGrid(2, 400, 900).cols, 1); // one above the other on a tall one
  assert.equal(bestGrid(4, 1280, 720).cols, 2);
  const { w } = bestGrid(9, 1280, 720);
  assert.ok(w > 0 && w <= (1280 - 2 * 12) / 3);
});

test("a tile asks for the smallest layer that covers it, else the largest", () => {
  assert.equal(layerHeight([180, 360, 720], 150), 180);
  assert.equal(layerHeight([720, 180, 360], 300), 360);
  assert.equal(layerHeight([180, 360, 720], 390), 360, "10% slack");
  assert.equal(layerHeight([180, 360, 720], 2000), 720);
  assert.equal(layerHeight([0, 0], 100), null);
});

test("a camera sends three layers from 540 p, two from 360 p, one stream below", () => {
  assert.deepEqual(
    simulcastLayers(720).map(({ rid, width, height }) => [rid, width, height]),
    [
      ["q", 320, 180],
      ["h", 640, 360],
      ["f", 1280, 720],
    ],
  );
  assert.deepEqual(
    simulcastLayers(360, 480).map(({ rid, width, height }) => [rid, width, height]),
    [
      ["h", 240, 180],
      ["f", 480, 360],
    ],
  );
  assert.deepEqual(simulcastLayers(240), []);
});
