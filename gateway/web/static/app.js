// Rondpoint web client: home, pre-join, lobby, room and "you left" screens.
// Signalling: ORS v1 over one WebSocket (ors-client.js). Media: two RTCPeerConnections,
// "publish" (we offer, sendonly) and "subscribe" (the server offers, we answer).

import { OrsClient, OrsError } from "./ors-client.js";
import { lang, originLabel, t } from "./i18n.js";

const ROOM_RE = /^[a-z0-9][a-z0-9-]{2,63}$/;
const NAME_KEY = "rondpoint.name";
const MIC_KEY = "rondpoint.mic";
const CAM_KEY = "rondpoint.cam";
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

const app = {
  state: "loading",
  room: null,
  roomInfo: null,
  name: "",
  token: null,
  tokenFromHash: false,
  autojoin: params.get("autojoin") === "1",
  client: null,
  self: null,
  participants: new Map(), // id -> Participant (others, lobby ones included for hosts)
  removed: new Map(), // hosts: id -> Participant a host removed or denied, who may be let back in
  speaking: new Set(),
  // local media
  micTrack: null,
  camTrack: null,
  micOn: localStorage.getItem(MIC_KEY) !== "0",
  camOn: localStorage.getItem(CAM_KEY) !== "0",
  hasMic: false,
  hasCam: false,
  // publish side
  iceServers: [],
  pubPc: null,
  audioTx: null,
  videoTx: null,
  ownTracks: {}, // source -> Track (as the server announced it)
  // subscribe side
  subPc: null,
  subQueue: Promise.resolve(),
  subMids: new Map(), // mid -> {track_id, participant_id}
  audioEls: new Map(), // track_id -> <audio>
  sentHeights: new Map(), // track_id -> max_height sent
  unread: 0,
  joinedAt: 0,
  leaving: false,
  // room links (hosts): [{target, status}] and the schemes this gateway can link
  links: [],
  linkSchemes: [],
};

if (params.get("mic") === "0") app.micOn = false;
if (params.get("cam") === "0") app.camOn = false;

// ---------------------------------------------------------------- helpers

function applyI18n(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    el.title = t(el.dataset.i18nLabel);
  }
  for (const el of root.querySelectorAll("[data-i18n-aria]")) el.setAttribute("aria-label", t(el.dataset.i18nAria));
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

function icon(name, cls = "icon") {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", cls);
  svg.setAttribute("aria-hidden", "true");
  const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
  use.setAttribute("href", `#i-${name}`);
  svg.append(use);
  return svg;
}

function setIcon(button, name) {
  button.querySelector("use")?.setAttribute("href", `#i-${name}`);
}

function initials(name) {
  if (!/\p{L}/u.test(name || "")) return "☎"; // a phone number: no letters to take
  const parts = (name || "?").trim().split(/\s+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || "?").slice(0, 2);
  return s.toUpperCase();
}

/** A participant's name inside a sentence (a toast, a tooltip): a first-strong isolate, so a
 * right-to-left name neither reorders the sentence around it nor is reordered by it. Names reach
 * the page already without bidi controls (spec 7.1); elements showing a name alone use <bdi>. */
function isolated(name) {
  return `\u2068${name}\u2069`;
}

function toast(text, kind = "info") {
  const node = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : null, text });
  $("toasts").append(node);
  setTimeout(() => node.remove(), kind === "error" ? 8000 : 5000);
}

function problemText(err) {
  const code = err?.code || err?.problem?.code;
  if (code === "connection_failed") return t("err_connection");
  const known = t(`err_${code}`);
  if (known && known !== `err_${code}`) return known;
  return err?.problem?.detail || err?.message || t("err_generic");
}

function randomRoom() {
  const letters = "abcdefghijkmnopqrstuvwxyz";
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  const s = Array.from(bytes, (b) => letters[b % letters.length]).join("");
  return `${s.slice(0, 3)}-${s.slice(3, 7)}-${s.slice(7)}`;
}

function normalizeRoom(input) {
  let v = (input || "").trim();
  const m = v.match(/\/r\/([^/?#]+)/);
  if (m) v = decodeURIComponent(m[1]);
  return v.toLowerCase().replace(/\s+/g, "-");
}

function setState(state) {
  app.state = state;
  document.body.dataset.state = state;
  for (const s of ["home", "prejoin", "lobby", "room", "left"]) $(`screen-${s}`).hidden = s !== state;
  $("topbar-room").hidden = !(app.room && (state === "room" || state === "lobby" || state === "prejoin"));
  $("topbar-room-name").textContent = app.room ? `/r/${app.room}` : "";
  const titles = {
    home: t("home_title"),
    prejoin: `${app.room} · ${t("prejoin_title")}`,
    lobby: `${app.room} · ${t("lobby_title")}`,
    room: `${app.room}`,
    left: `${app.room}`,
  };
  document.title = `${titles[state] || ""} — Rondpoint`;
}

// ---------------------------------------------------------------- local media

function videoConstraints() {
  const res = Number(params.get("res")) || 720;
  return { width: { ideal: Math.round((res * 16) / 9) }, height: { ideal: res }, frameRate: { ideal: 30 } };
}

async function acquireMedia() {
  const attempts = [
    { audio: true, video: videoConstraints() },
    { audio: true, video: false },
    { audio: false, video: videoConstraints() },
  ];
  for (const c of attempts) {
    try {
      const s = await navigator.mediaDevices.getUserMedia(c);
      app.micTrack = s.getAudioTracks()[0] || null;
      app.camTrack = s.getVideoTracks()[0] || null;
      app.hasMic = !!app.micTrack;
      app.hasCam = !!app.camTrack;
      if (c !== attempts[0]) toast(t("err_media"), "error");
      break;
    } catch (e) {
      console.warn("getUserMedia", c, "failed:", e);
    }
  }
  if (!app.hasMic && !app.hasCam) {
    toast(t("err_media"), "error");
  }
  if (app.micTrack) app.micTrack.enabled = app.micOn;
  if (app.camTrack && !app.camOn) {
    app.camTrack.stop();
    app.camTrack = null;
  }
  startMeter();
}

function stopMedia() {
  app.micTrack?.stop();
  app.camTrack?.stop();
  app.micTrack = null;
  app.camTrack = null;
  stopMeter();
}

let meter = null;
function startMeter() {
  stopMeter();
  if (!app.micTrack || !window.AudioContext) return;
  try {
    const ctx = new AudioContext();
    const src = ctx.createMediaStreamSource(new MediaStream([app.micTrack]));
    const an = ctx.createAnalyser();
    an.fftSize = 512;
    src.connect(an);
    const buf = new Uint8Array(an.fftSize);
    const bar = $("pre-meter");
    const tick = () => {
      if (!meter) return;
      an.getByteTimeDomainData(buf);
      let peak = 0;
      for (const v of buf) peak = Math.max(peak, Math.abs(v - 128));
      bar.style.width = app.micOn ? `${Math.min(100, (peak / 64) * 100)}%` : "0";
      meter.raf = requestAnimationFrame(tick);
    };
    meter = { ctx, raf: requestAnimationFrame(tick) };
  } catch (e) {
    console.warn("meter", e);
  }
}

function stopMeter() {
  if (!meter) return;
  cancelAnimationFrame(meter.raf);
  meter.ctx.close().catch(() => {});
  meter = null;
}

function updateMediaButtons() {
  const pairs = [
    [$("pre-mic"), $("mic-toggle"), app.micOn, app.hasMic, "mic", "mic_on", "mic_off"],
    [$("pre-cam"), $("camera-toggle"), app.camOn, app.hasCam, "cam", "cam_on", "cam_off"],
  ];
  for (const [pre, ctrl, on, has, ic, labelOn, labelOff] of pairs) {
    for (const b of [pre, ctrl]) {
      b.classList.toggle("off", !on);
      b.setAttribute("aria-pressed", on ? "false" : "true");
      b.setAttribute("aria-label", on ? t(labelOn) : t(labelOff));
      b.title = on ? t(labelOn) : t(labelOff);
      b.disabled = !has;
      setIcon(b, on ? ic : `${ic}-off`);
    }
  }
  // preview
  const v = $("preview-video");
  if (app.camTrack && app.camOn) {
    if (v.srcObject?.getVideoTracks()[0] !== app.camTrack) v.srcObject = new MediaStream([app.camTrack]);
    $("preview-off").hidden = true;
  } else {
    v.srcObject = null;
    $("preview-off").hidden = false;
    $("preview-off-text").textContent = app.hasCam ? t("camera_off") : t("no_camera");
  }
  if (app.self) renderTiles();
}

async function setMic(on) {
  if (!app.hasMic) return;
  app.micOn = on;
  localStorage.setItem(MIC_KEY, on ? "1" : "0");
  if (app.micTrack) app.micTrack.enabled = on;
  updateMediaButtons(); // the button answers at once; the sender follows
  // No media flows while muted: the sender has no track at all.
  if (app.audioTx) await app.audioTx.sender.replaceTrack(on ? app.micTrack : null).catch(console.warn);
  const tr = app.ownTracks.microphone;
  if (tr && app.client) {
    tr.muted = !on;
    app.client.request("mute", { track_id: tr.id, muted: !on }).catch((e) => toast(problemText(e), "error"));
  }
  updateMediaButtons();
  renderPeople();
}

async function setCam(on) {
  if (!app.hasCam) return;
  app.camOn = on;
  localStorage.setItem(CAM_KEY, on ? "1" : "0");
  updateMediaButtons();
  if (on) {
    if (!app.camTrack) {
      try {
        const s = await navigator.mediaDevices.getUserMedia({ video: videoConstraints() });
        app.camTrack = s.getVideoTracks()[0];
      } catch (e) {
        console.warn(e);
        app.camOn = false;
        toast(t("err_media"), "error");
      }
    }
  } else if (app.camTrack) {
    app.camTrack.stop(); // the camera light goes off
    app.camTrack = null;
  }
  if (app.videoTx) await app.videoTx.sender.replaceTrack(app.camOn ? app.camTrack : null).catch(console.warn);
  const tr = app.ownTracks.camera;
  if (tr && app.client) {
    tr.muted = !app.camOn;
    app.client.request("mute", { track_id: tr.id, muted: !app.camOn }).catch((e) => toast(problemText(e), "error"));
  }
  updateMediaButtons();
}

// ---------------------------------------------------------------- home

function showHome() {
  app.room = null;
  setState("home");
  const name = $("home-name");
  name.value = localStorage.getItem(NAME_KEY) || "";
  const go = (room) => {
    if (name.value.trim()) localStorage.setItem(NAME_KEY, name.value.trim());
    location.assign(`/r/${encodeURIComponent(room)}`);
  };
  $("home-create").onclick = () => go(randomRoom());
  $("home-form").onsubmit = (ev) => {
    ev.preventDefault();
    const input = $("home-room");
    const room = normalizeRoom(input.value);
    if (!ROOM_RE.test(room)) {
      input.setAttribute("aria-invalid", "true");
      $("home-error").textContent = t("room_invalid");
      input.focus();
      return;
    }
    go(room);
  };
  $("home-room").oninput = () => {
    $("home-room").removeAttribute("aria-invalid");
    $("home-error").textContent = "";
  };
  (name.value ? $("home-room") : name).focus();
}

// ---------------------------------------------------------------- pre-join

async function loadRoomInfo() {
  const facts = $("prejoin-facts");
  facts.replaceChildren();
  try {
    app.roomInfo = await new OrsClient({ room: app.room }).roomInfo();
    const info = app.roomInfo;
    facts.append(el("li", { text: t("participants_count", info.participants ?? 0) }));
    if (info.policy?.pin) facts.append(el("li", { text: t("room_pin") }));
    if (info.policy?.lobby) facts.append(el("li", { text: t("room_lobby") }));
  } catch (e) {
    app.roomInfo = null;
    if (e instanceof OrsError && e.code === "room_not_found") facts.append(el("li", { text: t("room_new") }));
  }
  $("pin-field").hidden = !(app.roomInfo?.policy?.pin && !app.token);
}

async function showPrejoin(error = "") {
  setState("prejoin");
  $("prejoin-room").textContent = app.room;
  const name = $("prejoin-name");
  name.value = app.name || localStorage.getItem(NAME_KEY) || "";
  $("prejoin-error").textContent = error;
  $("prejoin-join").disabled = false;
  $("prejoin-join").textContent = t("join_meeting");
  if (!app.micTrack && !app.camTrack) await acquireMedia();
  updateMediaButtons();
  loadRoomInfo();
  $("prejoin-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const n = name.value.trim();
    if (!n) {
      name.setAttribute("aria-invalid", "true");
      $("prejoin-error").textContent = t("name_required");
      name.focus();
      return;
    }
    name.removeAttribute("aria-invalid");
    app.name = n;
    localStorage.setItem(NAME_KEY, n);
    $("prejoin-error").textContent = "";
    $("prejoin-join").disabled = true;
    $("prejoin-join").textContent = t("joining");
    await join($("prejoin-pin").value.trim());
  };
  if (!name.value) name.focus();
  else $("prejoin-join").focus();
}

async function join(pin) {
  try {
    if (!app.token) {
      const res = await new OrsClient({ room: app.room }).requestToken(app.name, pin);
      app.token = res.token;
    }
  } catch (e) {
    return showPrejoin(problemText(e));
  }
  try {
    await connect();
  } catch (e) {
    const code = e?.code;
    if (["token_invalid", "token_expired", "token_wrong_room"].includes(code)) app.token = null;
    cleanupSession();
    return showPrejoin(problemText(e));
  }
}

// ---------------------------------------------------------------- session

async function connect() {
  const client = new OrsClient({ room: app.room });
  app.client = client;
  app.leaving = false;
  client.on("joined", onJoined);
  client.on("lobby", onLobby);
  client.on("offer", (m) => {
    if (m.pc === "subscribe") app.subQueue = app.subQueue.then(() => onSubscribeOffer(m)).catch(console.error);
  });
  client.on("participant_joined", (m) => upsertParticipant(m.participant, true));
  client.on("participant_updated", (m) => upsertParticipant(m.participant, false));
  client.on("participant_left", onParticipantLeft);
  client.on("track_published", (m) => onTrackPublished(m.track));
  client.on("track_unpublished", (m) => onTrackUnpublished(m.track_id, m.participant_id));
  client.on("track_muted", (m) => onTrackMuted(m.track_id, m.participant_id, m.muted));
  client.on("active_speakers", (m) => {
    app.speaking = new Set((m.speakers || []).filter((s) => (s.level ?? 1) > 0).map((s) => s.participant_id));
    for (const tile of $("grid").children) tile.classList.toggle("speaking", app.speaking.has(tile.dataset.pid));
  });
  client.on("chat", (m) => onChat(m.message));
  client.on("error", (m) => toast(m.problem?.detail || m.problem?.title || t("err_generic"), "error"));
  client.on("left", (m) => goLeft(m.reason || "left"));
  client.on("close", (ev) => {
    if (app.client !== client || !(app.state === "room" || app.state === "lobby")) return;
    if (ev.code === CLOSE_TOO_SLOW) reconnect();
    else goLeft("disconnected");
  });
  await client.connect(app.token, app.name);
}

// The server closed the session because this page fell behind the room's events (ORS 6.4, e.g. a
// tab that was frozen in the background): join again with the same token, as a new participant.
const CLOSE_TOO_SLOW = 4008;

async function reconnect() {
  cleanupSession();
  toast(t("reconnecting"));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  if (app.state !== "room" && app.state !== "lobby") return; // the person left meanwhile
  try {
    await connect();
  } catch (e) {
    console.warn("rejoining failed:", e);
    goLeft("disconnected");
  }
}

function onLobby(m) {
  app.self = m.participant;
  if (m.room?.id) app.room = m.room.id;
  $("lobby-room").textContent = app.room;
  setState("lobby");
  $("lobby-cancel").focus();
}

async function onJoined(m) {
  app.self = m.participant;
  app.participants.clear();
  for (const p of m.participants || []) if (p.id !== app.self.id) app.participants.set(p.id, p);
  app.iceServers = m.ice_servers || [];
  app.joinedAt = Date.now();
  setState("room");
  stopMeter();
  renderAll();
  refreshLinks();
  $("main").focus(); // announce the new screen; keep Enter away from the leave button
  const client = app.client;
  if (!app.pubPc) {
    try {
      await publish(useSimulcast());
    } catch (e) {
      if (app.client !== client) return; // this session ended meanwhile (a reconnection): not ours
      console.warn("publish with simulcast failed, retrying without:", e);
      closePub();
      try {
        await publish(false);
      } catch (e2) {
        console.error("publish failed:", e2);
        toast(problemText(e2), "error");
      }
    }
  }
}

function useSimulcast() {
  if (params.get("simulcast") === "0") return false;
  return typeof RTCRtpSender !== "undefined" && "getParameters" in RTCRtpSender.prototype;
}

function simulcastLayers() {
  const s = app.camTrack?.getSettings?.() || {};
  const h = s.height || Number(params.get("res")) || 720;
  const w = s.width || Math.round((h * 16) / 9);
  // Each layer's ceiling (bits/s): livekit-client's VideoPresets h180/h360/h720, what Visio
  // publishes; the 180p layer stays within what a 300 kbit/s link carries beside the voice.
  const all = [
    { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 160_000 },
    { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 450_000 },
    { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_700_000 },
  ];
  const layers = h >= 540 ? all : h >= 360 ? all.slice(1) : [];
  return layers.map((l) => ({
    ...l,
    width: Math.round(w / l.scaleResolutionDownBy),
    height: Math.round(h / l.scaleResolutionDownBy),
  }));
}

function newPc(kind) {
  const pc = new RTCPeerConnection({ iceServers: app.iceServers, bundlePolicy: "max-bundle" });
  pc.onicecandidate = (e) => {
    if (e.candidate?.candidate) {
      app.client?.send("candidate", {
        pc: kind,
        candidate: e.candidate.candidate,
        sdp_mid: e.candidate.sdpMid ?? undefined,
        sdp_mline_index: e.candidate.sdpMLineIndex ?? undefined,
      });
    }
  };
  pc.onconnectionstatechange = () => console.info(`${kind} pc:`, pc.connectionState);
  return pc;
}

async function publish(simulcast) {
  if (!app.hasMic && !app.hasCam) return;
  const pc = newPc("publish");
  app.pubPc = pc;
  const tracks = [];
  if (app.hasMic) {
    app.audioTx = pc.addTransceiver(app.micOn ? app.micTrack : "audio", { direction: "sendonly" });
  }
  let layers = [];
  if (app.hasCam) {
    const init = { direction: "sendonly" };
    layers = simulcast ? simulcastLayers() : [];
    if (layers.length > 1) {
      init.sendEncodings = layers.map(({ rid, scaleResolutionDownBy, maxBitrate }) => ({
        rid,
        scaleResolutionDownBy,
        maxBitrate,
      }));
    } else layers = [];
    app.videoTx = pc.addTransceiver(app.camOn && app.camTrack ? app.camTrack : "video", init);
  }
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  if (app.audioTx) tracks.push({ mid: app.audioTx.mid, source: "microphone" });
  if (app.videoTx) {
    const tr = { mid: app.videoTx.mid, source: "camera" };
    if (layers.length) tr.simulcast = layers.map(({ rid, width, height }) => ({ rid, width, height }));
    tracks.push(tr);
  }
  const reply = await app.client.request("offer", { pc: "publish", sdp: pc.localDescription.sdp, tracks });
  await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
  app.ownTracks = {};
  for (const tr of reply.tracks || []) {
    const source = tr.source || (tr.mid === app.audioTx?.mid ? "microphone" : "camera");
    app.ownTracks[source] = tr;
  }
  // Tell the room what is muted from the start.
  if (app.ownTracks.microphone && !app.micOn) {
    app.client.request("mute", { track_id: app.ownTracks.microphone.id, muted: true }).catch(console.warn);
  }
  if (app.ownTracks.camera && !app.camOn) {
    app.client.request("mute", { track_id: app.ownTracks.camera.id, muted: true }).catch(console.warn);
  }
  if (app.self) app.self.tracks = Object.values(app.ownTracks);
  renderAll();
}

function closePub() {
  app.pubPc?.close();
  app.pubPc = null;
  app.audioTx = null;
  app.videoTx = null;
  app.ownTracks = {};
}

async function onSubscribeOffer(m) {
  if (!app.client) return;
  if (!app.subPc) {
    app.subPc = newPc("subscribe");
    app.subPc.ontrack = () => attachRemoteTracks();
  }
  app.subMids = new Map((m.tracks || []).map((x) => [String(x.mid), x]));
  await app.subPc.setRemoteDescription({ type: "offer", sdp: m.sdp });
  const answer = await app.subPc.createAnswer();
  await app.subPc.setLocalDescription(answer);
  app.client
    .request("answer", { pc: "subscribe", sdp: app.subPc.localDescription.sdp })
    .catch((e) => toast(problemText(e), "error"));
  attachRemoteTracks();
}

function remoteTracksOf(pid) {
  const p = app.participants.get(pid);
  return p?.tracks || [];
}

function attachRemoteTracks() {
  if (!app.subPc) return;
  const liveAudio = new Set();
  const videoFor = new Map(); // pid -> MediaStreamTrack (camera preferred)
  for (const tx of app.subPc.getTransceivers()) {
    const info = tx.mid != null ? app.subMids.get(String(tx.mid)) : null;
    if (!info || tx.stopped || tx.currentDirection === "inactive") continue;
    const track = tx.receiver.track;
    if (!track) continue;
    if (track.kind === "audio") {
      liveAudio.add(info.track_id);
      let a = app.audioEls.get(info.track_id);
      if (!a) {
        a = el("audio", { autoplay: true, "data-track": info.track_id, "data-pid": info.participant_id });
        $("audio-sink").append(a);
        app.audioEls.set(info.track_id, a);
      }
      if (a.srcObject?.getAudioTracks()[0] !== track) {
        a.srcObject = new MediaStream([track]);
        a.play().catch(() => {});
      }
    } else {
      const meta = remoteTracksOf(info.participant_id).find((x) => x.id === info.track_id);
      if (!videoFor.has(info.participant_id) || meta?.source === "camera") {
        videoFor.set(info.participant_id, { track, track_id: info.track_id });
      }
    }
  }
  for (const [id, a] of app.audioEls) {
    if (!liveAudio.has(id)) {
      a.srcObject = null;
      a.remove();
      app.audioEls.delete(id);
    }
  }
  app.remoteVideo = videoFor;
  renderTiles();
}

function upsertParticipant(p, isNew) {
  if (!p) return;
  if (app.self && p.id === app.self.id) {
    app.self = { ...app.self, ...p, tracks: app.self.tracks };
    renderAll();
    return;
  }
  const before = app.participants.get(p.id);
  app.participants.set(p.id, p);
  if (isNew || before?.state !== p.state) {
    if (p.state === "lobby") toast(t("waiting_toast", isolated(p.name)));
    else if (p.state === "joined" && app.state === "room") toast(t("joined_toast", isolated(p.name)));
  }
  renderAll();
  attachRemoteTracks();
}

function onParticipantLeft(m) {
  const p = app.participants.get(m.participant_id);
  if (!p) return;
  app.participants.delete(m.participant_id);
  app.speaking.delete(m.participant_id);
  if (isHost() && (m.reason === "removed" || m.reason === "denied")) app.removed.set(p.id, p);
  if (p.state === "joined") toast(t("left_toast", isolated(p.name)));
  renderAll();
}

function onTrackPublished(track) {
  if (!track) return;
  const p = track.participant_id === app.self?.id ? app.self : app.participants.get(track.participant_id);
  if (!p) return;
  p.tracks = (p.tracks || []).filter((x) => x.id !== track.id).concat([track]);
  renderAll();
}

function onTrackUnpublished(trackId, pid) {
  const p = pid === app.self?.id ? app.self : app.participants.get(pid);
  if (p) p.tracks = (p.tracks || []).filter((x) => x.id !== trackId);
  renderAll();
}

function onTrackMuted(trackId, pid, muted) {
  const p = pid === app.self?.id ? app.self : app.participants.get(pid);
  const tr = p?.tracks?.find((x) => x.id === trackId);
  if (tr) tr.muted = muted;
  // A host muted us: reflect it locally so no media flows.
  if (pid === app.self?.id && muted) {
    if (app.ownTracks.microphone?.id === trackId && app.micOn) setMic(false);
    if (app.ownTracks.camera?.id === trackId && app.camOn) setCam(false);
  }
  renderAll();
}

function micMuted(p) {
  if (p.id === app.self?.id) return !app.micOn || !app.hasMic;
  const audio = (p.tracks || []).filter((x) => x.kind === "audio" && x.source !== "screen_audio");
  return audio.length === 0 || audio.every((x) => x.muted);
}

function videoOff(p) {
  if (p.id === app.self?.id) return !(app.camOn && app.camTrack);
  const video = (p.tracks || []).filter((x) => x.kind === "video");
  if (!video.length || video.every((x) => x.muted)) return true;
  return !app.remoteVideo?.has(p.id);
}

// ---------------------------------------------------------------- rendering

function joinedList() {
  const others = [...app.participants.values()]
    .filter((p) => p.state !== "lobby")
    .sort((a, b) => (a.joined_at || 0) - (b.joined_at || 0));
  return app.self ? [app.self, ...others] : others;
}

function renderAll() {
  renderTiles();
  renderPeople();
}

function makeTile(p) {
  const video = el("video", { autoplay: true, playsinline: true, muted: true });
  video.muted = true;
  const tile = el(
    "div",
    { class: "tile", role: "listitem", "data-pid": p.id, "data-testid": `tile-${p.id}` },
    video,
    el("div", { class: "avatar", "aria-hidden": "true" }, el("span")),
    el(
      "div",
      { class: "tile-label" },
      el("span", { class: "tile-muted", title: t("muted") }, icon("mic-off")),
      el("span", { class: "tile-name" }),
      el("span", { class: "origin" }),
    ),
  );
  return tile;
}

function renderTiles() {
  const grid = $("grid");
  if (app.state !== "room") return;
  const list = joinedList();
  const keep = new Set(list.map((p) => p.id));
  for (const tile of [...grid.children]) if (!keep.has(tile.dataset.pid)) tile.remove();
  list.forEach((p, i) => {
    let tile = grid.querySelector(`[data-pid="${CSS.escape(p.id)}"]`);
    if (!tile) tile = makeTile(p);
    if (grid.children[i] !== tile) grid.insertBefore(tile, grid.children[i] || null);
    const self = p.id === app.self?.id;
    const muted = micMuted(p);
    const off = videoOff(p);
    tile.classList.toggle("self", self);
    tile.classList.toggle("muted", muted);
    tile.classList.toggle("no-video", off);
    tile.classList.toggle("speaking", app.speaking.has(p.id));
    tile.dataset.muted = muted ? "true" : "false";
    const label = `${p.name}${self ? ` (${t("you")})` : ""}`;
    // rebuilt only when it changes: a render per room event must not detach the name a screen
    // reader (or a test) is reading
    const nameLabel = tile.querySelector(".tile-name");
    const you = self ? ` (${t("you")})` : "";
    if (nameLabel.querySelector("bdi")?.textContent !== p.name || nameLabel.textContent !== p.name + you) {
      nameLabel.replaceChildren(el("bdi", { text: p.name }), you);
    }
    tile.querySelector(".avatar span").textContent = initials(p.name);
    const badge = tile.querySelector(".origin");
    badge.textContent = originLabel(p.origin);
    badge.className = `origin origin-${(p.origin || "ors").split(":")[0]}`;
    badge.title = p.origin?.startsWith("federation:") ? p.origin.slice(11) : originLabel(p.origin);
    tile.setAttribute("aria-label", `${label}, ${originLabel(p.origin)}${muted ? `, ${t("muted")}` : ""}`);
    const video = tile.querySelector("video");
    const want = self ? (app.camOn ? app.camTrack : null) : app.remoteVideo?.get(p.id)?.track || null;
    const have = video.srcObject?.getVideoTracks()[0] || null;
    if (want !== have) video.srcObject = want ? new MediaStream([want]) : null;
    tile.dataset.trackId = self ? "" : app.remoteVideo?.get(p.id)?.track_id || "";
  });
  $("alone").hidden = list.length > 1;
  layoutGrid();
}

function layoutGrid() {
  const grid = $("grid");
  const n = grid.children.length;
  if (!n) return;
  const W = grid.clientWidth;
  const H = grid.clientHeight;
  if (!W || !H) return;
  const gap = 12;
  let best = { cols: 1, w: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const cw = (W - gap * (cols - 1)) / cols;
    const ch = (H - gap * (rows - 1)) / rows;
    const w = Math.min(cw, (ch * 16) / 9);
    if (w > best.w) best = { cols, w };
  }
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
    const meta = remoteTracksOf(tile.dataset.pid).find((x) => x.id === trackId);
    if (!meta?.simulcast?.length) continue;
    // The smallest layer that covers the tile (10% slack), else the largest one.
    const px = tile.clientHeight * (window.devicePixelRatio || 1) * 0.9;
    const heights = meta.simulcast.map((l) => l.height || 0).filter(Boolean).sort((a, b) => a - b);
    if (!heights.length) continue;
    const h = heights.find((x) => x >= px) || heights[heights.length - 1];
    const prev = app.sentHeights.get(trackId);
    if (prev === h) continue;
    app.sentHeights.set(trackId, h);
    app.client.request("subscription", { track_id: trackId, max_height: h }).catch((e) => console.warn(e));
  }
}

// A host who made the room anonymously (its token says ors.anonymous) may not dial or link:
// the gateway refuses it (403), so the page does not offer it.
function operatorIssued() {
  try {
    const part = (app.token || "").split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).ors?.anonymous !== true;
  } catch {
    return false;
  }
}

function isHost() {
  return app.self?.role === "host";
}

function personRow(p, { lobby = false } = {}) {
  const self = p.id === app.self?.id;
  const meta = el(
    "span",
    { class: "person-meta" },
    el("span", {
      class: `origin origin-${(p.origin || "ors").split(":")[0]}`,
      text: originLabel(p.origin),
      title: p.origin,
    }),
    el("span", { text: t(p.role || "member") }),
  );
  const row = el(
    "li",
    { class: "person", "data-testid": `person-${p.id}` },
    el("span", { class: "person-avatar", "aria-hidden": "true", text: initials(p.name) }),
    el(
      "span",
      { class: "person-main" },
      el("span", { class: "person-name" }, el("bdi", { text: p.name }), self ? ` (${t("you")})` : null),
      meta,
    ),
  );
  if (lobby) {
    if (isHost()) {
      row.append(
        el(
          "span",
          { class: "person-actions" },
          el("button", {
            type: "button",
            class: "btn btn-primary btn-sm",
            "data-testid": `admit-${p.id}`,
            "aria-label": t("admit_name", p.name),
            text: t("admit"),
            onclick: () => hostAction("admit", p.id),
          }),
          el("button", {
            type: "button",
            class: "btn btn-tertiary btn-sm",
            "data-testid": `remove-${p.id}`,
            "aria-label": t("remove_name", p.name),
            text: t("remove"),
            onclick: () => hostAction("remove", p.id),
          }),
        ),
      );
    }
  } else {
    const icons = el("span", { class: "person-icons" });
    const muted = micMuted(p);
    const micIcon = icon(muted ? "mic-off" : "mic", `icon${muted ? " is-muted" : ""}`);
    icons.append(micIcon);
    icons.setAttribute("aria-label", muted ? t("muted") : "");
    row.append(icons);
    if (isHost() && !self) {
      row.append(
        el("button", {
          type: "button",
          class: "icon-btn",
          "data-testid": `remove-${p.id}`,
          "aria-label": t("remove_name", p.name),
          title: t("remove_name", isolated(p.name)),
          onclick: () => hostAction("remove", p.id),
        }),
      );
      row.lastChild.append(icon("close"));
    }
  }
  return row;
}

// Removed stays removed (ORS 8.11) until a host lets the person back in: `admit` with its old id.
function removedRow(p) {
  return el(
    "li",
    { class: "person", "data-testid": `removed-${p.id}` },
    el("span", { class: "person-avatar", "aria-hidden": "true", text: initials(p.name) }),
    el("span", { class: "person-main" }, el("span", { class: "person-name" }, el("bdi", { text: p.name }))),
    el(
      "span",
      { class: "person-actions" },
      el("button", {
        type: "button",
        class: "btn btn-tertiary btn-sm",
        "data-testid": `let-back-${p.id}`,
        "aria-label": t("let_back_name", p.name),
        text: t("let_back"),
        onclick: async () => {
          try {
            await app.client.request("admit", { participant_id: p.id });
            app.removed.delete(p.id);
            renderPeople();
          } catch (e) {
            toast(problemText(e), "error");
          }
        },
      }),
    ),
  );
}

function renderPeople() {
  if (!app.self) return;
  const joined = joinedList();
  const lobby = [...app.participants.values()].filter((p) => p.state === "lobby");
  $("people-list").replaceChildren(...joined.map((p) => personRow(p)));
  $("lobby-list").replaceChildren(...lobby.map((p) => personRow(p, { lobby: true })));
  $("lobby-section").hidden = !(isHost() && lobby.length);
  $("removed-list").replaceChildren(...[...app.removed.values()].map(removedRow));
  $("removed-section").hidden = !(isHost() && app.removed.size);
  $("dial-form").hidden = !(isHost() && app.canDial && operatorIssued());
  $("people-count").textContent = `(${joined.length})`;
  $("people-badge").textContent = String(joined.length);
  const lb = $("lobby-badge");
  lb.hidden = !(isHost() && lobby.length);
  lb.textContent = String(lobby.length);
  // A waiting guest is something a host must see: open the panel once.
  if (isHost() && lobby.length && !app.lobbyShown) {
    app.lobbyShown = true;
    openPanel("people");
  }
  if (!lobby.length) app.lobbyShown = false;
}

// ---------------------------------------------------------------- room links (hosts)
// ORS has no link messages: a host's page uses /rooms/{room}/links with its own join token.

async function linksRequest(method, suffix = "", body = undefined) {
  const headers = { Authorization: `Bearer ${app.token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(`/rooms/${encodeURIComponent(app.room)}/links${suffix}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) throw new OrsError(await OrsClient.problemFrom(resp));
  return resp.status === 204 ? null : resp.json();
}

async function refreshLinks() {
  if (app.state !== "room" || !isHost() || !app.token) {
    $("links-section").hidden = true;
    return;
  }
  try {
    const r = await linksRequest("GET");
    app.links = r.links || [];
    app.linkSchemes = r.schemes || [];
  } catch (e) {
    console.warn("links:", e);
    return;
  }
  renderLinks();
}

function linkRow(link) {
  const st = link.status || {};
  const state = el("span", {
    class: `link-state state-${st.state}`,
    "data-testid": "link-state",
    "data-state": st.state,
    text: t(`link_${st.state}`) + (st.remote_participants ? ` · ${t("link_remote", st.remote_participants)}` : ""),
  });
  return el(
    "li",
    { class: "link-row", "data-testid": "link-row", "data-target": link.target },
    el(
      "span",
      { class: "link-main" },
      el("span", { class: "link-target", text: link.target, title: link.target }),
      state,
      st.detail && st.state !== "connected" ? el("span", { class: "link-detail", text: st.detail }) : null,
    ),
    el("button", {
      type: "button",
      class: "btn btn-tertiary btn-sm",
      "data-testid": "unlink",
      "aria-label": t("unlink_target", link.target),
      text: t("unlink"),
      onclick: () => unlinkTarget(link.target),
    }),
  );
}

function renderLinks() {
  const show = app.state === "room" && isHost() && (app.linkSchemes.length > 0 || app.links.length > 0);
  $("links-section").hidden = !show;
  if (!show) return;
  $("link-form").hidden = app.linkSchemes.length === 0 || !operatorIssued();
  $("links-empty").hidden = app.links.length > 0;
  $("links-list").replaceChildren(...app.links.map(linkRow));
}

async function unlinkTarget(target) {
  try {
    await linksRequest("DELETE", `/${encodeURIComponent(target)}`);
    toast(t("unlinked", target));
  } catch (e) {
    toast(problemText(e), "error");
  }
  await refreshLinks();
}

async function hostAction(type, pid) {
  try {
    await app.client.request(type, { participant_id: pid });
  } catch (e) {
    toast(problemText(e), "error");
  }
}

// ---------------------------------------------------------------- panels & chat

function openPanel(which) {
  for (const w of ["people", "chat"]) {
    const open = w === which && $(`panel-${w}`).hidden;
    $(`panel-${w}`).hidden = !open;
    $(`toggle-${w}`).setAttribute("aria-expanded", open ? "true" : "false");
  }
  if (which === "people" && !$("panel-people").hidden) refreshLinks();
  if (which === "chat" && !$("panel-chat").hidden) {
    app.unread = 0;
    $("chat-badge").hidden = true;
    $("chat-input").focus();
  }
  requestAnimationFrame(layoutGrid);
}

function closePanels() {
  for (const w of ["people", "chat"]) {
    $(`panel-${w}`).hidden = true;
    $(`toggle-${w}`).setAttribute("aria-expanded", "false");
  }
  requestAnimationFrame(layoutGrid);
}

function onChat(msg) {
  if (!msg) return;
  $("chat-empty").hidden = true;
  const mine = msg.from === app.self?.id;
  const time = new Date(msg.ts || Date.now()).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
  const node = el(
    "div",
    { class: `msg${mine ? " mine" : ""}`, "data-testid": "chat-message" },
    el("span", { class: "msg-head" }, el("strong", { dir: "auto", text: mine ? t("you_label") : msg.from_name || "?" }), time),
    el("span", { class: "msg-text", text: msg.text }),
  );
  const log = $("chat-log");
  log.append(node);
  log.scrollTop = log.scrollHeight;
  if ($("panel-chat").hidden && !mine) {
    app.unread += 1;
    $("chat-badge").hidden = false;
    $("chat-badge").textContent = String(app.unread);
  }
}

// ---------------------------------------------------------------- leaving

function cleanupSession() {
  const c = app.client;
  app.client = null;
  c?.close();
  closePub();
  app.subPc?.close();
  app.subPc = null;
  app.subQueue = Promise.resolve();
  app.subMids.clear();
  for (const a of app.audioEls.values()) a.remove();
  app.audioEls.clear();
  app.sentHeights.clear();
  app.remoteVideo = new Map();
  app.participants.clear();
  app.removed.clear();
  app.speaking.clear();
  app.self = null;
  $("grid").replaceChildren();
  app.links = [];
  app.linkSchemes = [];
  $("links-section").hidden = true;
  $("chat-log").replaceChildren($("chat-empty"));
  $("chat-empty").hidden = false;
  app.unread = 0;
  $("chat-badge").hidden = true;
  closePanels();
}

function goLeft(reason) {
  if (app.state === "left") return;
  cleanupSession();
  stopMedia();
  app.lastReason = reason;
  if (!app.tokenFromHash) app.token = null; // a fresh token next time (a new one is cheap)
  $("left-title").textContent = t(`left_${reason}`) || t("left_left");
  $("left-room").textContent = app.room;
  $("rejoin").hidden = reason === "removed" || reason === "denied";
  setState("left");
  ($("rejoin").hidden ? $("left-title") : $("rejoin")).focus?.();
}

async function leave() {
  if (!app.client) return goLeft("left");
  app.leaving = true;
  app.client.send("leave", {});
  setTimeout(() => goLeft("left"), 1500); // the server closes right after `left`; don't wait for ever
}

// ---------------------------------------------------------------- wiring

function wire() {
  applyI18n();
  $("pre-mic").onclick = () => setMic(!app.micOn);
  $("pre-cam").onclick = () => setCam(!app.camOn);
  $("mic-toggle").onclick = () => setMic(!app.micOn);
  $("camera-toggle").onclick = () => setCam(!app.camOn);
  $("leave").onclick = leave;
  $("lobby-cancel").onclick = leave;
  $("toggle-people").onclick = () => openPanel("people");
  $("toggle-chat").onclick = () => openPanel("chat");
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
    if (app.state === "room" && isHost() && !$("panel-people").hidden) refreshLinks();
  }, 5000);
  $("copy-link").onclick = async () => {
    try {
      await navigator.clipboard.writeText(`${location.origin}/r/${app.room}`);
      toast(t("link_copied"));
    } catch {
      prompt(t("copy_link"), `${location.origin}/r/${app.room}`);
    }
  };
  $("rejoin").onclick = async () => {
    if (app.autojoin) return autojoin();
    await showPrejoin();
  };
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && app.state === "room") closePanels();
  });
  window.addEventListener("resize", () => requestAnimationFrame(layoutGrid));
  if (window.ResizeObserver) new ResizeObserver(() => layoutGrid()).observe($("grid"));
  window.addEventListener("pagehide", () => app.client?.send("leave", {}));
  setInterval(() => {
    if (app.state !== "room") return;
    const s = Math.floor((Date.now() - app.joinedAt) / 1000);
    const mm = String(Math.floor(s / 60)).padStart(2, "0");
    const ss = String(s % 60).padStart(2, "0");
    const now = new Date().toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
    $("room-clock").textContent = `${now} · ${mm}:${ss}`;
  }, 1000);
}

async function autojoin() {
  app.name = params.get("name") || localStorage.getItem(NAME_KEY) || "Guest";
  $("prejoin-room").textContent = app.room;
  if (!app.micTrack && !app.camTrack) await acquireMedia();
  updateMediaButtons();
  await join(params.get("pin") || "");
}

// ---------------------------------------------------------------- test hooks

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
  participants() {
    const all = app.self ? [app.self, ...app.participants.values()] : [...app.participants.values()];
    return all.map((p) => ({
      id: p.id,
      name: p.name,
      origin: p.origin,
      role: p.role,
      state: p.state,
      self: p.id === app.self?.id,
      muted: micMuted(p),
    }));
  },
  _debug() {
    return {
      participants: [...app.participants.values()],
      tiles: [...$("grid").children].map((t) => ({ pid: t.dataset.pid, track: t.dataset.trackId, h: t.clientHeight })),
      sent: [...app.sentHeights],
      pubAnswer: app.pubPc?.remoteDescription?.sdp,
      subOffer: app.subPc?.remoteDescription?.sdp,
    };
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

async function discover() {
  try {
    const response = await fetch("/.well-known/ors");
    const document_ = await response.json();
    app.canDial = (document_.capabilities || []).includes("dial-out");
  } catch {
    app.canDial = false;
  }
}

function start() {
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
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    app.token = hash.get("token");
    app.tokenFromHash = true;
    // Keep the token out of the address bar (and of screenshots and shared links).
    history.replaceState(null, "", location.pathname + location.search);
  }
  if (app.autojoin) {
    setState("prejoin");
    autojoin();
  } else showPrejoin();
}

start();
