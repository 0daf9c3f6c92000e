// The room's tiles: one per joined participant, laid out in the largest 16:9 grid that fits the
// stage, and the simulcast layer each remote video is subscribed to, from its tile's height.

import { originLabel, t } from "./i18n.js";
import { app, handRaised, initials, joinedList, micMuted, originGroup, remoteTracksOf, videoOff } from "./state.js";
import { isReconnecting } from "./reconnect.js";
import { $, el, icon } from "./ui.js";

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

function makeTile(p) {
  const video = el("video", { autoplay: true, playsinline: true, muted: true });
  video.muted = true;
  const tile = el(
    "div",
    { class: "tile", role: "listitem", "data-pid": p.id, "data-testid": `tile-${p.id}` },
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
  );
  return tile;
}

export function renderTiles() {
  const grid = $("grid");
  if (app.state !== "room") return;
  const list = joinedList(app);
  const keep = new Set(list.map((p) => p.id));
  for (const tile of [...grid.children]) if (!keep.has(tile.dataset.pid)) tile.remove();
  list.forEach((p, i) => {
    let tile = grid.querySelector(`[data-pid="${CSS.escape(p.id)}"]`);
    if (!tile) tile = makeTile(p);
    if (grid.children[i] !== tile) grid.insertBefore(tile, grid.children[i] || null);
    const self = p.id === app.self?.id;
    const muted = micMuted(app, p);
    const off = videoOff(app, p);
    tile.classList.toggle("self", self);
    tile.classList.toggle("muted", muted);
    tile.classList.toggle("no-video", off);
    tile.classList.toggle("speaking", app.speaking.has(p.id));
    tile.dataset.muted = muted ? "true" : "false";
    const reconnecting = isReconnecting(app, p);
    tile.classList.toggle("reconnecting", reconnecting);
    const away = tile.querySelector(".tile-reconnecting");
    away.hidden = !reconnecting;
    away.textContent = reconnecting ? t("reconnecting_badge") : "";
    const label = `${p.name}${self ? ` (${t("you")})` : ""}`;
    // rebuilt only when it changes: a render per room event must not detach the name a screen
    // reader (or a test) is reading
    const nameLabel = tile.querySelector(".tile-name");
    const you = self ? ` (${t("you")})` : "";
    if (nameLabel.querySelector("bdi")?.textContent !== p.name || nameLabel.textContent !== p.name + you) {
      nameLabel.replaceChildren(el("bdi", { text: p.name }), you);
    }
    tile.querySelector(".avatar span").textContent = initials(p.name);
    // the origin badge only for people not in a browser: on every tile it would be noise
    const browser = originGroup(p.origin) === "ors";
    const badge = tile.querySelector(".origin");
    badge.hidden = browser;
    badge.textContent = originLabel(p.origin);
    badge.className = `origin origin-${(p.origin || "ors").split(":")[0]}`;
    badge.title = p.origin?.startsWith("federation:") ? p.origin.slice(11) : originLabel(p.origin);
    const hand = handRaised(p);
    tile.classList.toggle("hand-raised", hand);
    tile.querySelector(".tile-hand").hidden = !hand;
    const said = [label, browser ? "" : originLabel(p.origin), hand ? t("hand_raised") : "", muted ? t("muted") : "", reconnecting ? t("reconnecting_badge") : ""];
    tile.setAttribute("aria-label", said.filter(Boolean).join(", "));
    const video = tile.querySelector("video");
    const want = self ? (app.camOn ? app.camTrack : null) : app.remoteVideo.get(p.id)?.track || null;
    const have = video.srcObject?.getVideoTracks()[0] || null;
    if (want !== have) video.srcObject = want ? new MediaStream([want]) : null;
    tile.dataset.trackId = self ? "" : app.remoteVideo.get(p.id)?.track_id || "";
  });
  $("alone").hidden = list.length > 1;
  layoutGrid();
}

export function layoutGrid() {
  const grid = $("grid");
  const n = grid.children.length;
  if (!n) return;
  const W = grid.clientWidth;
  const H = grid.clientHeight;
  if (!W || !H) return;
  const best = bestGrid(n, W, H);
  grid.style.setProperty("--cols", best.cols);
  const w = Math.max(120, Math.floor(best.w) - 1);
  for (const tile of grid.children) {
    tile.style.width = `${w}px`;
    tile.style.height = `${Math.floor((w * 9) / 16)}px`;
  }
  scheduleSubscriptions();
}

let subTimer = null;
function scheduleSubscriptions() {
  clearTimeout(subTimer);
  subTimer = setTimeout(sendSubscriptions, 600);
}

function sendSubscriptions() {
  if (!app.client || app.state !== "room") return;
  for (const tile of $("grid").children) {
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
    app.client.request("subscription", { track_id: trackId, max_height: h }).catch((e) => console.warn(e));
  }
}
