// The ORS session of the page (ors-client.js): the server's capabilities, a join token, joining
// (the lobby, then the room), the room's events kept in the state, reconnecting by itself after a
// lost connection (ORS 6.6, 6.7: resume within the grace, else join again as the same identity;
// reconnect.js decides when and how), and leaving.

import { OrsClient } from "./ors-client.js";
import { t } from "./i18n.js";
import {
  TOKEN_PROBLEMS,
  app,
  forgetToken,
  isolated,
  keepToken,
  keptToken,
  noteSpeakers,
  problemText,
  removeParticipant,
  trackMuted,
  trackPublished,
  tokenPlan,
  trackUnpublished,
  upsertParticipant,
} from "./state.js";
import {
  CLOSE_ABANDONED,
  afterClose,
  joinFailure,
  leftReason,
  lostConnection,
  nextStep,
  retryDelay,
  secondsLeft,
} from "./reconnect.js";
import { $, setState, toast } from "./ui.js";
import {
  attachRemoteTracks,
  closePub,
  onSubscribeOffer,
  ownMuteInFlight,
  publish,
  setCam,
  setMic,
  stopMedia,
  stopMeter,
  useSimulcast,
} from "./media.js";
import { closePanels, onChat, refreshLinks, renderAll, setUnread, showChatHistory } from "./panels.js";
import { onHandUpdate, onReaction, onUnmuteRequested, resetSocial } from "./social.js";
import { showSpeakers } from "./layout.js";

/** What this gateway can do (/.well-known/ors): for now whether it dials out. */
export async function discover() {
  try {
    const response = await fetch("/.well-known/ors");
    const document_ = await response.json();
    app.canDial = (document_.capabilities || []).includes("dial-out");
  } catch {
    app.canDial = false;
  }
}

/** Joins app.room as app.name with the join token the page keeps for the room (state.js,
 * tokenPlan), or a new one from the anonymous endpoint with PIN. Resolves with "" once in the
 * lobby or the room, else with the text saying why not. */
export async function join(pin, renew = false) {
  app.pin = pin; // kept in memory only: a reconnection that needs a new token asks it with the PIN
  let plan;
  try {
    plan = await takeToken(pin, renew);
  } catch (e) {
    return problemText(e);
  }
  try {
    await connect();
    return "";
  } catch (e) {
    cleanupSession();
    const badToken = TOKEN_PROBLEMS.includes(e?.code);
    if (badToken) {
      forgetToken(app.tokens, app.room);
      app.token = null;
    }
    // A kept token that no longer joins (made with a key the gateway dropped, or for a room it
    // forgot, whose socket is refused): once more with a new token, of the same identity if it can.
    if (plan.reuse && (badToken || e?.code === "connection_failed")) return join(pin, true);
    return problemText(e);
  }
}

/** Sets app.token: the token kept for the room while it lives (tokenPlan), else a new one from
 * the anonymous endpoint with PIN (of the same identity when the kept one was anonymous), kept
 * in its place. Returns the plan it followed; throws what the endpoint answered. */
async function takeToken(pin, renew) {
  const now = Date.now() / 1000;
  const plan = tokenPlan(keptToken(app.tokens, app.room, now), now, renew);
  if (plan.reuse) app.token = plan.reuse;
  else {
    const res = await newToken(pin, plan.renew);
    app.token = res.token;
    keepToken(app.tokens, app.room, res.token, res.expires_at, now);
  }
  return plan;
}

/** Whether join will reuse a kept token (then it needs no PIN). */
export function hasKeptToken() {
  const now = Date.now() / 1000;
  return tokenPlan(keptToken(app.tokens, app.room, now), now).reuse !== null;
}

async function newToken(pin, earlier) {
  const endpoint = new OrsClient({ room: app.room });
  try {
    return await endpoint.requestToken(app.name, pin, earlier);
  } catch (e) {
    // the endpoint does not take the earlier token back (spec 4.3 rule 7): a new identity, then
    if (earlier && (TOKEN_PROBLEMS.includes(e?.code) || e?.problem?.field === "/token")) {
      return endpoint.requestToken(app.name, pin);
    }
    throw e;
  }
}

/** Opens a session and joins (with RESUME, the resume token of the session being resumed). */
async function connect(resume = null) {
  const client = new OrsClient({ room: app.room });
  app.client = client;
  app.leaving = false;
  client.on("joined", onJoined);
  client.on("lobby", onLobby);
  client.on("lobby_status", (m) => showHostsPresent(m.hosts_present));
  client.on("offer", (m) => {
    if (m.pc === "subscribe") app.subQueue = app.subQueue.then(() => onSubscribeOffer(m)).catch(console.error);
  });
  client.on("participant_joined", (m) => onParticipant(m.participant, true));
  client.on("participant_updated", (m) => onParticipant(m.participant, false));
  client.on("participant_left", onParticipantLeft);
  client.on("track_published", (m) => {
    if (trackPublished(app, m.track)) renderAll();
  });
  client.on("track_unpublished", (m) => {
    trackUnpublished(app, m.track_id, m.participant_id);
    renderAll();
  });
  client.on("track_muted", (m) => onTrackMuted(m.track_id, m.participant_id, m.muted));
  client.on("active_speakers", (m) => {
    noteSpeakers(app, (m.speakers || []).filter((s) => (s.level ?? 1) > 0).map((s) => s.participant_id));
    showSpeakers();
  });
  client.on("chat", (m) => onChat(m.message));
  client.on("reaction", onReaction);
  client.on("unmute_requested", onUnmuteRequested);
  client.on("error", (m) => toast(problemText(m), "error"));
  client.on("left", (m) => goLeft(m.reason || "left"));
  client.on("close", (ev) => connectionLost(client, ev.code));
  await client.connect(app.token, app.name, resume);
  startHeartbeat(client);
}

// ---------------------------------------------------------------- reconnecting (ORS 6.6, 6.7)
// The page keeps its screen (the tiles, the people, the chat) and its peer connections while it
// tries again: media may still flow on them until the server takes the new session's. A banner
// counts the server's grace down; Leave still leaves.

const PING_EVERY_MS = 10_000; // a silent connection (no pong) is a lost one (6.7 step 1)
const PONG_WITHIN_MS = 5_000;
const OFFLINE_PAUSE_MS = 5_000; // while the browser says it is offline; the `online` event ends it
let heartbeat = null;
let countdown = null;
let wake = null; // ends the pause before the next attempt at once (the browser is online again)

/** The `online` and `offline` events of the browser: offline, the page checks its connection at
 * once; online again, a reconnecting page tries at once. */
export function watchNetwork() {
  window.addEventListener("online", () => wake?.());
  window.addEventListener("offline", () => {
    if (app.client && !app.lost) checkAlive(app.client);
  });
}

function startHeartbeat(client) {
  clearInterval(heartbeat);
  heartbeat = setInterval(() => checkAlive(client), PING_EVERY_MS);
}

async function checkAlive(client) {
  if (app.client !== client) return clearInterval(heartbeat);
  try {
    await client.request("ping", {}, PONG_WITHIN_MS);
  } catch (e) {
    if (e?.code !== "timeout" || app.client !== client) return;
    client.close(CLOSE_ABANDONED, "no pong");
    connectionLost(client, CLOSE_ABANDONED);
  }
}

/** CLIENT's socket closed with CODE (or went silent): unless that was the end the person chose
 * (Leave; after `left` the page already shows why), reconnect. */
function connectionLost(client, code) {
  if (app.client !== client || app.lost || !(app.state === "room" || app.state === "lobby")) return;
  clearInterval(heartbeat);
  const action = afterClose(code, app.leaving);
  if (action === "left") return goLeft("left");
  app.client = null; // the old session: nothing more from it is ours
  // a guest in the lobby is not kept (6.6): it knocks again
  const resume = action === "resume" && app.state === "room" ? app.resume : null;
  app.lost = lostConnection(Date.now(), resume?.grace, resume?.token);
  if (action === "join") toast(t("reconnecting"));
  showReconnecting();
  retry(app.lost);
}

async function retry(lost) {
  while (app.lost === lost) {
    await pause(navigator.onLine === false ? OFFLINE_PAUSE_MS : retryDelay(lost.attempts));
    if (app.lost !== lost) return;
    const step = nextStep(lost, Date.now());
    if (step === "give_up") return goLeft("disconnected");
    if (navigator.onLine === false) continue;
    lost.attempts += 1;
    try {
      await rejoinOnce(lost, step === "resume" ? lost.resumeToken : null);
      return; // joined or in the lobby: onJoined or onLobby ended the reconnection
    } catch (e) {
      if (app.lost !== lost) return;
      const failed = app.client;
      app.client = null;
      failed?.close(CLOSE_ABANDONED);
      const what = joinFailure(e?.code);
      if (what === "stop") return goLeft(leftReason(e.code));
      if (what === "new_token") lost.renew = true;
      console.info(`reconnecting: attempt ${lost.attempts} failed (${e?.code})`);
    }
  }
}

/** One attempt: the kept join token (a new one of the same identity when it is near its end or
 * was refused), then a session that joins, with RESUME when it has one. */
async function rejoinOnce(lost, resume) {
  await takeToken(app.pin || "", lost.renew);
  lost.renew = false; // a renewal always takes a new token
  await connect(resume);
}

function pause(ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      if (wake === done) wake = null;
      resolve();
    };
    const timer = setTimeout(done, ms);
    wake = done;
  });
}

function showReconnecting() {
  $("reconnect-banner").hidden = false;
  const tick = () => {
    const left = app.lost ? secondsLeft(app.lost, Date.now()) : 0;
    $("reconnect-count").textContent = left ? t("reconnecting_seconds", left) : "";
  };
  tick();
  clearInterval(countdown);
  countdown = setInterval(tick, 1000);
  renderAll();
}

/** The reconnection is over: the session came back (REPLY, its `joined` or `lobby`), or the page
 * left (no REPLY). The old peer connections go: the server has the new session's (6.6). */
function endReconnecting(reply) {
  const was = app.lost;
  app.lost = null;
  wake?.();
  clearInterval(countdown);
  $("reconnect-banner").hidden = true;
  if (!was || !reply) return;
  dropPeerConnections({ keepShare: true });
  if (reply.type === "joined") {
    if (!reply.resumed) app.joinedAt = Date.now();
    toast(t("reconnected"));
  }
}

/** Closes the peer connections and forgets the media on them; KEEPSHARE: see closePub. */
function dropPeerConnections({ keepShare = false } = {}) {
  closePub({ keepShare });
  app.subPc?.close();
  app.subPc = null;
  app.subQueue = Promise.resolve();
  app.subMids.clear();
  for (const a of app.audioEls.values()) a.remove();
  app.audioEls.clear();
  app.sentHeights.clear();
  app.sentSubscribed.clear();
  app.remoteVideo = new Map();
  app.remoteScreens = new Map();
}

// ---------------------------------------------------------------- the lobby and the room

// A host's page that reloads leaves the lobby without a host for a moment (9.2): the lobby says
// "no host yet" only after this long without one.
const NO_HOST_AFTER_MS = 3000;
let noHostTimer = null;

/** Tells a guest in the lobby whether a host is in the meeting (9.2 `hosts_present`, 9.18). */
function showHostsPresent(present) {
  clearTimeout(noHostTimer);
  const line = $("lobby-hosts");
  if (present) {
    line.textContent = t("lobby_host_here");
    line.dataset.hosts = "present";
  } else {
    noHostTimer = setTimeout(() => {
      line.textContent = t("lobby_no_host");
      line.dataset.hosts = "absent";
    }, NO_HOST_AFTER_MS);
  }
}

function onLobby(m) {
  endReconnecting(m);
  app.self = m.participant;
  if (m.room?.id) app.room = m.room.id;
  $("lobby-room").textContent = app.room;
  $("lobby-hosts").textContent = "";
  delete $("lobby-hosts").dataset.hosts;
  if (typeof m.hosts_present === "boolean") showHostsPresent(m.hosts_present);
  setState("lobby");
  $("lobby-cancel").focus();
}

async function onJoined(m) {
  endReconnecting(m);
  clearTimeout(noHostTimer);
  app.resume = m.resume_token ? { token: m.resume_token, grace: m.resume_grace || 0 } : null;
  app.self = m.participant;
  app.participants.clear();
  for (const p of m.participants || []) if (p.id !== app.self.id) app.participants.set(p.id, p);
  app.iceServers = m.ice_servers || [];
  if (!app.joinedAt) app.joinedAt = Date.now();
  setState("room");
  stopMeter();
  renderAll();
  showChatHistory(m.chat);
  refreshLinks();
  $("main").focus(); // announce the new screen; keep Enter away from the leave button
  const client = app.client;
  if (!app.pubPc) {
    try {
      await publish(useSimulcast());
    } catch (e) {
      if (app.client !== client) return; // this session ended meanwhile (a reconnection): not ours
      console.warn("publish with simulcast failed, retrying without:", e);
      closePub({ keepShare: true });
      try {
        await publish(false);
      } catch (e2) {
        console.error("publish failed:", e2);
        toast(problemText(e2), "error");
      }
    }
  }
}

function onParticipant(p, isNew) {
  const before = p && (p.id === app.self?.id ? app.self : app.participants.get(p.id));
  const change = upsertParticipant(app, p, isNew);
  if (!change) return;
  if (change === "waiting") toast(t("waiting_toast", isolated(p.name)));
  else if (change === "joined") toast(t("joined_toast", isolated(p.name)));
  else if (change === "updated") onHandUpdate(before, p);
  renderAll();
  if (change !== "self") attachRemoteTracks();
}

function onParticipantLeft(m) {
  const p = removeParticipant(app, m.participant_id, m.reason);
  if (!p) return;
  if (p.state === "joined") toast(t("left_toast", isolated(p.name)));
  renderAll();
}

function onTrackMuted(trackId, pid, muted) {
  trackMuted(app, trackId, pid, muted);
  // A host muted us: reflect it locally so no media flows.
  if (pid === app.self?.id && muted && !ownMuteInFlight(trackId)) {
    if (app.ownTracks.microphone?.id === trackId && app.micOn) {
      setMic(false);
      toast(t("muted_by_host"));
    }
    if (app.ownTracks.camera?.id === trackId && app.camOn) {
      setCam(false);
      toast(t("camera_off_by_host"));
    }
  }
  renderAll();
}

// ---------------------------------------------------------------- leaving

function cleanupSession() {
  const c = app.client;
  app.client = null;
  c?.close();
  clearInterval(heartbeat);
  clearTimeout(noHostTimer);
  endReconnecting(null);
  app.resume = null;
  app.joinedAt = 0;
  dropPeerConnections();
  app.pinned = null;
  app.lastSpeaker = null;
  app.participants.clear();
  app.removed.clear();
  app.lobbySeen.clear();
  app.speaking.clear();
  app.self = null;
  $("grid").replaceChildren();
  app.links = [];
  app.linkSchemes = [];
  $("links-section").hidden = true;
  $("chat-log").replaceChildren($("chat-empty"));
  $("chat-empty").hidden = false;
  setUnread(0);
  resetSocial();
  closePanels();
}

function goLeft(reason) {
  if (app.state === "left") return;
  cleanupSession();
  stopMedia();
  app.lastReason = reason;
  // "Rejoin" joins with the token the page keeps (join): the same identity, a host still a host.
  showLeftTitle();
  $("left-room").textContent = app.room;
  $("rejoin").hidden = reason === "removed" || reason === "denied";
  setState("left");
  ($("rejoin").hidden ? $("left-title") : $("rejoin")).focus?.();
}

/** The "you left" screen's title for app.lastReason, in the page's language of now. */
export function showLeftTitle() {
  const reason = app.lastReason;
  const title = t(`left_${reason}`);
  $("left-title").textContent = title === `left_${reason}` ? t("left_left") : title;
}

export async function leave() {
  if (!app.client || app.lost) return goLeft("left");
  app.leaving = true;
  app.client.send("leave", {});
  setTimeout(() => goLeft("left"), 1500); // the server closes right after `left`; don't wait for ever
}
