// The ORS session of the page (ors-client.js): the server's capabilities, a join token, joining
// (the lobby, then the room), the room's events kept in the state, reconnecting after a "too
// slow" close, and leaving.

import { OrsClient } from "./ors-client.js";
import { t } from "./i18n.js";
import {
  TOKEN_PROBLEMS,
  app,
  forgetToken,
  isolated,
  keepToken,
  keptToken,
  problemText,
  removeParticipant,
  trackMuted,
  trackPublished,
  tokenPlan,
  trackUnpublished,
  upsertParticipant,
} from "./state.js";
import { $, setState, toast } from "./ui.js";
import {
  attachRemoteTracks,
  closePub,
  onSubscribeOffer,
  publish,
  setCam,
  setMic,
  stopMedia,
  stopMeter,
  useSimulcast,
} from "./media.js";
import { closePanels, onChat, refreshLinks, renderAll, setUnread, showChatHistory } from "./panels.js";
import { onHandUpdate, onReaction, onUnmuteRequested, resetSocial } from "./social.js";

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
  const now = Date.now() / 1000;
  const plan = tokenPlan(keptToken(app.tokens, app.room, now), now, renew);
  if (plan.reuse) app.token = plan.reuse;
  else {
    try {
      const res = await newToken(pin, plan.renew);
      app.token = res.token;
      keepToken(app.tokens, app.room, res.token, res.expires_at, now);
    } catch (e) {
      return problemText(e);
    }
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

async function connect() {
  const client = new OrsClient({ room: app.room });
  app.client = client;
  app.leaving = false;
  client.on("joined", onJoined);
  client.on("lobby", onLobby);
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
    app.speaking = new Set((m.speakers || []).filter((s) => (s.level ?? 1) > 0).map((s) => s.participant_id));
    for (const tile of $("grid").children) tile.classList.toggle("speaking", app.speaking.has(tile.dataset.pid));
  });
  client.on("chat", (m) => onChat(m.message));
  client.on("reaction", onReaction);
  client.on("unmute_requested", onUnmuteRequested);
  client.on("error", (m) => toast(problemText(m), "error"));
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
  if (pid === app.self?.id && muted) {
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
  const title = t(`left_${reason}`);
  $("left-title").textContent = title === `left_${reason}` ? t("left_left") : title;
  $("left-room").textContent = app.room;
  $("rejoin").hidden = reason === "removed" || reason === "denied";
  setState("left");
  ($("rejoin").hidden ? $("left-title") : $("rejoin")).focus?.();
}

export async function leave() {
  if (!app.client) return goLeft("left");
  app.leaving = true;
  app.client.send("leave", {});
  setTimeout(() => goLeft("left"), 1500); // the server closes right after `left`; don't wait for ever
}
