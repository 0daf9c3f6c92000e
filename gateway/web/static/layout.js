// The room's tiles: one per joined participant's camera and one per screen share, laid out in the
// largest 16:9 grid that fits the stage or in speaker view (one large tile above a strip), a pin
// on each tile, and the simulcast layer each remote video is subscribed to, from its tile's height.

import { originLabel, t } from "./i18n.js";
import {
  LAYOUT_KEY,
  MIN_TILE_WIDTH,
  app,
  handRaised,
  initials,
  isolated,
  joinedList,
  largeTile,
  micMuted,
  originGroup,
  remoteTracksOf,
  speakerRects,
  stageTiles,
  subscribedChanges,
  videoOff,
  wantedVideos,
} from "./state.js";
import { isReconnecting } from "./reconnect.js";
import { $, el, icon, setIcon } from "./ui.js";

const GAP = 12; // px between tiles, as style.css has it

/** The grid of N 16:9 tiles in a WIDTH x HEIGHT stage with the largest tiles: {cols, w}. */
export function bestGrid(n, width, height, gap = GAP) {
  let best = { cols: 1, w: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const cw = (width - gap * (cols - 1)) / cols;
    const ch = (height - gap * (rows - 1)) / rows;
    const w = Math.min(cw, (ch * 16) / 9);
    if (w > best.w) best = { cols, w };
  }
  return best;
}

/** The simulcast layer height to ask for a tile PX device pixels high: the smallest of HEIGHTS
 * that covers it (10% slack), else the largest one; null when there is no layer. */
export function layerHeight(heights, px) {
  const sorted = heights.filter(Boolean).sort((a, b) => a - b);
  if (!sorted.length) return null;
  return sorted.find((x) => x >= px * 0.9) || sorted[sorted.length - 1];
}

/** The grid of N tiles in a WIDTH x HEIGHT stage: bestGrid, unless its tiles would be narrower
 * than MIN; then as many columns of MIN or more as fit, and the stage scrolls down. */
export function gridLayout(n, width, height, gap = GAP, min = MIN_TILE_WIDTH) {
  const best = bestGrid(n, width, height, gap);
  if (best.w >= Math.min(min, width)) return best;
  const cols = Math.max(1, Math.min(n, Math.floor((width + gap) / (min + gap))));
  return { cols, w: Math.min(width, (width - gap * (cols - 1)) / cols) };
}

function makeTile(tile) {
  const video = el("video", { autoplay: true, playsinline: true, muted: true });
  video.muted = true;
  const screen = tile.source === "screen";
  const node = el(
    "div",
    {
      class: screen ? "tile tile-screen" : "tile",
      role: "listitem",
      "data-pid": tile.pid,
      "data-key": tile.key,
      "data-source": tile.source,
      "data-testid": screen ? `screen-${tile.pid}` : `tile-${tile.pid}`,
    },
    video,
    el("div", { class: "avatar", "aria-hidden": "true" }, el("span")),
    el("div", { class: "tile-reactions", "aria-hidden": "true" }),
    el("div", { class: "tile-hand", "data-testid": "tile-hand", title: t("hand_raised"), "aria-hidden": "true" }, icon("hand")),
    el(
      "div",
      { class: "tile-label" },
      el("span", { class: "tile-muted", title: t("muted") }, icon("mic-off")),
      el("span", { class: "tile-name" }),
      el("span", { class: "origin" }),
      el("span", { class: "tile-reconnecting", "data-testid": "tile-reconnecting", hidden: true }),
    ),
    el(
      "button",
      {
        type: "button",
        class: "tile-pin",
        "data-testid": "tile-pin",
        "aria-pressed": "false",
        onclick: () => {
          app.pinned = app.pinned === tile.key ? null : tile.key;
          renderTiles();
        },
      },
      icon("pin"),
    ),
  );
  watchTile(node);
  return node;
}

/** The tiles of the stage (state.js stageTiles): one per participant's camera (its initials when
 * it has no video) and one per screen share, then their layout. */
export function renderTiles() {
  const grid = $("grid");
  if (app.state !== "room") return;
  const tiles = stageTiles(app);
  const keep = new Set(tiles.map((x) => x.key));
  for (const node of [...grid.children]) {
    if (keep.has(node.dataset.key)) continue;
    tileObserver?.unobserve(node);
    app.offscreen.delete(node.dataset.key);
    node.remove();
  }
  if (app.pinned && !keep.has(app.pinned)) app.pinned = null;
  tiles.forEach((tile, i) => {
    let node = grid.querySelector(`[data-key="${CSS.escape(tile.key)}"]`);
    if (!node) node = makeTile(tile);
    if (grid.children[i] !== node) grid.insertBefore(node, grid.children[i] || null);
    const p = tile.pid === app.self?.id ? app.self : app.participants.get(tile.pid);
    const label = tile.source === "screen" ? renderScreenTile(node, tile, p) : renderCameraTile(node, p);
    const pinned = app.pinned === tile.key;
    const pin = node.querySelector(".tile-pin");
    pin.setAttribute("aria-pressed", pinned ? "true" : "false");
    pin.setAttribute("aria-label", t(pinned ? "unpin_tile" : "pin_tile", isolated(label)));
    pin.title = pin.getAttribute("aria-label");
    node.classList.toggle("pinned", pinned);
  });
  $("alone").hidden = joinedList(app).length > 1;
  layoutGrid();
}

/** The name on a tile, rebuilt only when it changes: a render per room event must not detach
 * the name a screen reader (or a test) is reading. SUFFIX is " (you)", " (screen)" or "". */
function setTileName(node, name, suffix) {
  const nameLabel = node.querySelector(".tile-name");
  if (nameLabel.querySelector("bdi")?.textContent !== name || nameLabel.textContent !== name + suffix) {
    nameLabel.replaceChildren(el("bdi", { text: name }), suffix);
  }
}

/** The origin badge of P's tile, only for people not in a browser (on every tile it would be
 * noise); returns what a screen reader says of it, "" for a browser. */
function setOrigin(node, p) {
  const browser = originGroup(p.origin) === "ors";
  const badge = node.querySelector(".origin");
  badge.hidden = browser;
  badge.textContent = originLabel(p.origin);
  badge.className = `origin origin-${(p.origin || "ors").split(":")[0]}`;
  badge.title = p.origin?.startsWith("federation:") ? p.origin.slice(11) : originLabel(p.origin);
  return browser ? "" : originLabel(p.origin);
}

function showVideo(node, want) {
  const video = node.querySelector("video");
  const have = video.srcObject?.getVideoTracks()[0] || null;
  if (want !== have) video.srcObject = want ? new MediaStream([want]) : null;
}

/** Fills a participant's camera tile; returns its short label (the name, " (you)"). */
function renderCameraTile(node, p) {
  const self = p.id === app.self?.id;
  const muted = micMuted(app, p);
  const off = videoOff(app, p);
  node.classList.toggle("self", self);
  node.classList.toggle("muted", muted);
  node.classList.toggle("no-video", off);
  node.classList.toggle("speaking", app.speaking.has(p.id));
  node.dataset.muted = muted ? "true" : "false";
  const you = self ? ` (${t("you")})` : "";
  setTileName(node, p.name, you);
  node.querySelector(".avatar span").textContent = initials(p.name);
  const origin = setOrigin(node, p);
  const hand = handRaised(p);
  node.classList.toggle("hand-raised", hand);
  node.querySelector(".tile-hand").hidden = !hand;
  const reconnecting = isReconnecting(app, p);
  node.classList.toggle("reconnecting", reconnecting);
  const away = node.querySelector(".tile-reconnecting");
  away.hidden = !reconnecting;
  away.textContent = reconnecting ? t("reconnecting_badge") : "";
  const said = [p.name + you, origin, hand ? t("hand_raised") : "", muted ? t("muted") : ""];
  if (reconnecting) said.push(t("reconnecting_badge"));
  node.setAttribute("aria-label", said.filter(Boolean).join(", "));
  showVideo(node, self ? (app.camOn ? app.camTrack : null) : app.remoteVideo.get(p.id)?.track || null);
  node.dataset.trackId = self ? "" : app.remoteVideo.get(p.id)?.track_id || "";
  return p.name + you;
}

/** Fills a screen share's tile; returns its short label ("<name> (screen)"). */
function renderScreenTile(node, tile, p) {
  const self = p.id === app.self?.id;
  const track = self ? app.screenTrack : app.remoteScreens.get(tile.trackId)?.track || null;
  const suffix = ` (${t("screen_suffix")})`;
  setTileName(node, p.name, suffix);
  node.querySelector(".avatar span").textContent = initials(p.name);
  node.classList.toggle("no-video", !track);
  node.querySelector(".tile-hand").hidden = true; // a hand is the person's: on their camera tile
  const origin = setOrigin(node, p);
  node.setAttribute("aria-label", [p.name + suffix, origin].filter(Boolean).join(", "));
  showVideo(node, track);
  node.dataset.trackId = tile.trackId || "";
  return p.name + suffix;
}

/** Marks who speaks (active_speakers, spec 9.11) with a ring on their camera tile; speaker view
 * follows the one who spoke last. */
export function showSpeakers() {
  for (const node of $("grid").children) {
    node.classList.toggle("speaking", node.dataset.source === "camera" && app.speaking.has(node.dataset.pid));
  }
  if (app.layout === "speaker" && !app.pinned) layoutGrid();
}

/** Lays the tiles out: a grid of equal tiles, or (speaker view, or a pinned tile) one large tile
 * above a strip of small ones. Then the subscriptions follow the tiles' sizes. */
export function layoutGrid() {
  const grid = $("grid");
  const n = grid.children.length;
  if (!n) return;
  const W = grid.clientWidth;
  const H = grid.clientHeight;
  if (!W || !H) return;
  const tiles = [...grid.children].map(({ dataset }) => ({ key: dataset.key, pid: dataset.pid, source: dataset.source }));
  const large = largeTile(tiles, {
    layout: app.layout,
    pinned: app.pinned,
    lastSpeaker: app.lastSpeaker,
    selfId: app.self?.id,
  });
  grid.classList.toggle("stage-speaker", large !== null);
  if (large === null) {
    const best = gridLayout(n, W, H);
    grid.style.setProperty("--cols", best.cols);
    const w = Math.floor(best.w) - 1;
    for (const node of grid.children) {
      node.classList.remove("large");
      node.style.left = node.style.top = "";
      node.style.width = `${w}px`;
      node.style.height = `${Math.floor((w * 9) / 16)}px`;
    }
  } else {
    const rects = speakerRects(n - 1, W, H);
    let i = 0;
    for (const node of grid.children) {
      const isLarge = node.dataset.key === large;
      const r = isLarge ? rects.large : rects.strip[i++];
      node.classList.toggle("large", isLarge);
      node.style.left = `${Math.floor(r.x)}px`;
      node.style.top = `${Math.floor(r.y)}px`;
      node.style.width = `${Math.floor(r.w)}px`;
      node.style.height = `${Math.floor(r.h)}px`;
    }
  }
  for (const node of grid.children) node.classList.toggle("small", node.clientWidth < 240);
  scheduleSubscriptions();
}

/** Switches between the grid and speaker view, and remembers the choice in STORAGE. */
export function setLayout(layout, storage = localStorage) {
  app.layout = layout === "speaker" ? "speaker" : "grid";
  try {
    storage.setItem(LAYOUT_KEY, app.layout);
  } catch {
    /* refused: the choice lasts this page */
  }
  updateLayoutButton();
  layoutGrid();
}

export function updateLayoutButton() {
  const b = $("layout-toggle");
  const speaker = app.layout === "speaker";
  b.setAttribute("aria-pressed", speaker ? "true" : "false");
  setIcon(b, speaker ? "speaker-view" : "grid-view");
}

/** What the stage shows, for the browser tests: the layout, and each tile's key, person,
 * source, size, whether it is large, pinned or speaking. */
export function stageState() {
  return {
    layout: app.layout,
    pinned: app.pinned,
    tiles: [...$("grid").children].map((node) => {
      const box = node.getBoundingClientRect();
      return {
        key: node.dataset.key,
        pid: node.dataset.pid,
        source: node.dataset.source,
        track: node.dataset.trackId,
        w: box.width,
        h: box.height,
        large: node.classList.contains("large"),
        pinned: node.classList.contains("pinned"),
        speaking: node.classList.contains("speaking"),
        playing: (node.querySelector("video")?.videoWidth || 0) > 0,
      };
    }),
  };
}

let subTimer = null;
/** Sends the subscriptions after DELAY ms (600: a layout settles, several resizes make one). */
export function scheduleSubscriptions(delay = 600) {
  clearTimeout(subTimer);
  subTimer = setTimeout(sendSubscriptions, delay);
}

/** Says to the server what each remote video's tile needs (spec 8.7 `subscription`), each change
 * once: `subscribed` (paused while nobody can see it: state.js wantedVideos) and the simulcast
 * layer its height calls for (`max_height`). */
function sendSubscriptions() {
  if (!app.client || app.state !== "room") return;
  const nodes = [...$("grid").children];
  const wanted = wantedVideos(
    nodes.map((node) => ({
      trackId: node.dataset.trackId,
      visible: !app.offscreen.has(node.dataset.key),
      large: node.classList.contains("large"),
    })),
    document.visibilityState === "hidden",
    [...app.remoteScreens.keys(), ...[...app.remoteVideo.values()].map((x) => x.track_id)],
  );
  const messages = new Map(); // track_id -> the members of its `subscription`
  for (const [trackId, subscribed] of subscribedChanges(wanted, app.sentSubscribed)) {
    app.sentSubscribed.set(trackId, subscribed);
    messages.set(trackId, { subscribed });
  }
  for (const tile of nodes) {
    const trackId = tile.dataset.trackId;
    if (!trackId) continue;
    const meta = remoteTracksOf(app, tile.dataset.pid).find((x) => x.id === trackId);
    if (!meta?.simulcast?.length) continue;
    const h = layerHeight(
      meta.simulcast.map((l) => l.height || 0),
      tile.clientHeight * (window.devicePixelRatio || 1),
    );
    if (h === null) continue;
    const prev = app.sentHeights.get(trackId);
    if (prev === h) continue;
    app.sentHeights.set(trackId, h);
    messages.set(trackId, { ...messages.get(trackId), max_height: h });
  }
  for (const [trackId, members] of messages) {
    app.client.request("subscription", { track_id: trackId, ...members }).catch((e) => console.warn(e));
  }
}

// A tile scrolled out of the stage (the phone's grid and speaker view's strip scroll), or every
// tile while the tab is in the background: its video is paused at the server (spec 8.7), which
// saves the subscriber's bandwidth and the gateway's, as LiveKit's adaptiveStream and Jitsi do.
let tileObserver = null;

function watchTile(node) {
  if (!tileObserver && window.IntersectionObserver) {
    tileObserver = new IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          if (entry.isIntersecting) app.offscreen.delete(entry.target.dataset.key);
          else app.offscreen.add(entry.target.dataset.key);
        }
        scheduleSubscriptions(100);
      },
      { root: $("grid"), threshold: 0 },
    );
  }
  tileObserver?.observe(node);
}

/** Pauses every remote video while the page is hidden, resumes the visible ones when it shows. */
export function watchPageVisibility() {
  document.addEventListener("visibilitychange", () => scheduleSubscriptions(0));
}
