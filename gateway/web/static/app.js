// Rondpoint web client, the page's entry: home, pre-join, lobby, room and "you left" screens.
// Signalling: ORS v1 over one WebSocket (ors-client.js, connection.js). Media: two
// RTCPeerConnections (media.js), "publish" (we offer, sendonly) and "subscribe" (the server
// offers, we answer). This module wires the page's controls, starts it, and gives the browser
// tests `window.rondpoint`.

import { lang, setLang, t } from "./i18n.js";
import {
  LAYOUT_KEY,
  ROOM_RE,
  TOKEN_KEY,
  app,
  isHost,
  keepToken,
  mediaWanted,
  memoryStorage,
  micMuted,
  problemText,
} from "./state.js";
import { $, applyI18n, setState, toast } from "./ui.js";
import { layoutGrid, setLayout, stageState, updateLayoutButton, watchPageVisibility } from "./layout.js";
import { toggleScreenShare } from "./screenshare.js";
import { setCam, setMic, updateMediaButtons } from "./media.js";
import { closePanels, linksRequest, refreshLinks, renderAll, renderPeople, togglePanel } from "./panels.js";
import { discover, leave, showLeftTitle, watchNetwork } from "./connection.js";
import { isReconnecting } from "./reconnect.js";
import { request, wireSocial } from "./social.js";
import { autojoin, renderFacts, showHome, showPrejoin } from "./screens.js";
import { mountPickers, openSettings, watchDevices } from "./devices.js";
import { openInvite } from "./invite.js";
import { wireKeyboard } from "./keyboard.js";

// ---------------------------------------------------------------- language

/** Switches the page to LANGUAGE at once: every text, the <html lang>, the screen's title; kept
 * for the next visit, and ?lang= dropped from the address so that a reload keeps the choice. */
function switchLanguage(language) {
  if (!setLang(language)) return;
  const url = new URL(location.href);
  if (url.searchParams.has("lang")) {
    url.searchParams.delete("lang");
    app.params.delete("lang");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }
  applyI18n();
  $("lang-select").value = lang;
  updateMediaButtons();
  if (app.state === "loading") return;
  setState(app.state); // the window's title
  if (app.state === "prejoin") renderFacts();
  if (app.state === "left") showLeftTitle();
  if (app.self) renderAll();
}

// ---------------------------------------------------------------- wiring

function wire() {
  mountPickers();
  applyI18n();
  $("lang-select").value = lang;
  $("lang-select").onchange = (ev) => switchLanguage(ev.target.value);
  $("settings-open").onclick = openSettings;
  $("invite-open").onclick = openInvite;
  wireKeyboard();
  watchDevices();
  $("pre-mic").onclick = () => setMic(!app.micOn);
  $("pre-cam").onclick = () => setCam(!app.camOn);
  $("mic-toggle").onclick = () => setMic(!app.micOn);
  $("camera-toggle").onclick = () => setCam(!app.camOn);
  $("share-toggle").onclick = toggleScreenShare;
  $("layout-toggle").onclick = () => setLayout(app.layout === "speaker" ? "grid" : "speaker");
  updateLayoutButton();
  $("leave").onclick = leave;
  $("lobby-cancel").onclick = leave;
  $("toggle-people").onclick = () => togglePanel("people");
  $("toggle-chat").onclick = () => togglePanel("chat");
  $("admit-all").onclick = () => request("admit_all", {});
  wireSocial();
  for (const b of document.querySelectorAll("[data-close-panel]")) b.onclick = closePanels;
  $("chat-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text || !app.client) return;
    input.value = "";
    try {
      await app.client.request("chat", { text });
    } catch (e) {
      input.value = text;
      toast(problemText(e), "error");
    }
  };
  $("dial-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const input = $("dial-input");
    const to = input.value.trim();
    if (!to || !app.client) return;
    try {
      await app.client.request("dial", { to });
      input.value = "";
      toast(t("dialling", to));
    } catch (e) {
      toast(problemText(e), "error");
    }
  };
  $("link-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const input = $("link-input");
    const target = input.value.trim();
    if (!target || app.state !== "room") return;
    try {
      const linked = await linksRequest("POST", "", { target });
      input.value = "";
      toast(t("linked", linked.target));
    } catch (e) {
      toast(problemText(e), "error");
    }
    await refreshLinks();
  };
  // A link's state changes on its own (connecting, retrying...): refresh while hosts look at it.
  setInterval(() => {
    if (app.state === "room" && isHost(app) && !$("panel-people").hidden) refreshLinks();
  }, 5000);
  $("rejoin").onclick = async () => {
    if (app.autojoin) return autojoin();
    await showPrejoin();
  };
  document.addEventListener("keydown", (ev) => {
    // Escape in a dialog closes the dialog only
    if (ev.key === "Escape" && app.state === "room" && !document.querySelector("dialog[open]")) closePanels();
  });
  window.addEventListener("resize", () => requestAnimationFrame(layoutGrid));
  if (window.ResizeObserver) new ResizeObserver(() => layoutGrid()).observe($("grid"));
  window.addEventListener("pagehide", () => app.client?.send("leave", {}));
  watchNetwork();
  watchPageVisibility();
  setInterval(() => {
    if (app.state !== "room") return;
    const s = Math.floor((Date.now() - app.joinedAt) / 1000);
    const mm = String(Math.floor(s / 60)).padStart(2, "0");
    const ss = String(s % 60).padStart(2, "0");
    const now = new Date().toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
    $("room-clock").textContent = `${now} · ${mm}:${ss}`;
  }, 1000);
}

// ---------------------------------------------------------------- test hooks

/** Each track the subscribe connection receives ({track_id, participant_id}), its kind and the
 * sums of its inbound-rtp stats (getStats) the tests read. */
async function receivedStats() {
  const out = [];
  for (const tx of app.subPc?.getTransceivers() || []) {
    const info = tx.mid != null ? app.subMids.get(String(tx.mid)) : null;
    if (!info || tx.currentDirection === "inactive") continue;
    const sums = { packetsReceived: 0, framesReceived: 0, framesDecoded: 0 };
    (await tx.receiver.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp") for (const k of Object.keys(sums)) sums[k] += s[k] || 0;
    });
    out.push({ info, kind: tx.receiver.track?.kind, ...sums });
  }
  return out;
}

window.rondpoint = {
  get state() {
    return app.state;
  },
  get room() {
    return app.room;
  },
  get selfId() {
    return app.self?.id || null;
  },
  /** While the page reconnects: {attempts, resume} (resume: whether it still has one to try). */
  get reconnecting() {
    return app.lost ? { attempts: app.lost.attempts, resume: Boolean(app.lost.resumeToken) } : null;
  },
  participants() {
    const all = app.self ? [app.self, ...app.participants.values()] : [...app.participants.values()];
    return all.map((p) => ({
      id: p.id,
      name: p.name,
      origin: p.origin,
      hand_raised_at: p.hand_raised_at ?? null,
      role: p.role,
      state: p.state,
      self: p.id === app.self?.id,
      muted: micMuted(app, p),
      reconnecting: isReconnecting(app, p),
    }));
  },
  /** The stage's tiles and layout (layout.js stageState). */
  stage: stageState,
  /** Per received video track: its owner, source and frames decoded so far. */
  async videoStreams() {
    return (await receivedStats())
      .filter((x) => x.kind === "video")
      .map(({ info, framesDecoded }) => {
        const meta = (app.participants.get(info.participant_id)?.tracks || []).find((x) => x.id === info.track_id);
        return { pid: info.participant_id, track: info.track_id, source: meta?.source || "", framesDecoded };
      });
  },
  /** What arrives per track received, audio too: [{pid, track, kind, packets, frames}], for the
   * tests of paused videos. */
  async inbound() {
    return (await receivedStats()).map(({ info, kind, packetsReceived, framesReceived }) => ({
      pid: info.participant_id,
      track: info.track_id,
      kind,
      packets: packetsReceived,
      frames: framesReceived,
    }));
  },
  _debug() {
    return {
      participants: [...app.participants.values()],
      tiles: [...$("grid").children].map((t) => ({ pid: t.dataset.pid, track: t.dataset.trackId, h: t.clientHeight })),
      sent: [...app.sentHeights],
      subscribed: [...app.sentSubscribed],
      pubAnswer: app.pubPc?.remoteDescription?.sdp,
      subOffer: app.subPc?.remoteDescription?.sdp,
    };
  },
  /** The tracks the publish connection sends now (devices.js swaps them): {audio, video}. */
  senders() {
    const track = (tx) => (tx?.sender.track ? { id: tx.sender.track.id, label: tx.sender.track.label } : null);
    return { audio: track(app.audioTx), video: track(app.videoTx) };
  },
  async _outbound() {
    const out = [];
    if (!app.pubPc) return out;
    (await app.pubPc.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp" || s.type === "remote-inbound-rtp" || (s.type === "candidate-pair" && s.nominated))
        out.push(s);
    });
    return out;
  },
  async stats() {
    const out = {};
    const pc = app.subPc;
    if (!pc) return out;
    for (const tx of pc.getTransceivers()) {
      const info = tx.mid != null ? app.subMids.get(String(tx.mid)) : null;
      if (!info) continue;
      const entry = (out[info.participant_id] ||= {
        audio: { packets: 0, level: 0, energy: 0, bytes: 0 },
        video: { packets: 0, framesDecoded: 0, bytes: 0, width: 0, height: 0 },
      });
      const report = await tx.receiver.getStats();
      report.forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        const kind = s.kind || s.mediaType || tx.receiver.track?.kind;
        if (kind === "audio") {
          entry.audio.packets += s.packetsReceived || 0;
          entry.audio.bytes += s.bytesReceived || 0;
          entry.audio.level = Math.max(entry.audio.level, s.audioLevel || 0);
          entry.audio.energy += s.totalAudioEnergy || 0;
        } else if (kind === "video") {
          entry.video.packets += s.packetsReceived || 0;
          entry.video.bytes += s.bytesReceived || 0;
          entry.video.framesDecoded += s.framesDecoded || 0;
          entry.video.width = Math.max(entry.video.width, s.frameWidth || 0);
          entry.video.height = Math.max(entry.video.height, s.frameHeight || 0);
        }
      });
    }
    return out;
  },
};

// ---------------------------------------------------------------- start

/** This tab's sessionStorage for the join tokens the page keeps, or memory where it is refused. */
function sessionTokens() {
  try {
    const storage = window.sessionStorage;
    storage.getItem(TOKEN_KEY);
    return storage;
  } catch {
    return memoryStorage();
  }
}

function start() {
  app.params = new URLSearchParams(location.search);
  app.autojoin = app.params.get("autojoin") === "1";
  Object.assign(app, mediaWanted(app.params, localStorage));
  app.layout = localStorage.getItem(LAYOUT_KEY) === "speaker" ? "speaker" : "grid";
  wire();
  discover().then(() => renderPeople());
  const m = location.pathname.match(/^\/r\/([^/]+)\/?$/);
  if (!m) return showHome();
  const room = decodeURIComponent(m[1]);
  if (!ROOM_RE.test(room)) {
    showHome();
    $("home-room").value = room;
    $("home-error").textContent = t("room_invalid");
    return;
  }
  app.room = room;
  app.tokens = sessionTokens();
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    // Kept, and out of the address bar (and of screenshots and shared links): a reload still has it.
    keepToken(app.tokens, room, hash.get("token"), 0, Date.now() / 1000);
    history.replaceState(null, "", location.pathname + location.search);
  }
  if (app.autojoin) {
    setState("prejoin");
    autojoin();
  } else showPrejoin();
}

start();
