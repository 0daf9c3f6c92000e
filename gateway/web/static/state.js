// The page's state and the pure logic on it: the participants and their tracks as the room's
// events leave them, names, rooms, tokens and problem texts. No DOM and no browser API at import,
// and the functions take the state as an argument, so Node's test runner imports and tests this
// module as it is (tests/js/).

import { t } from "./i18n.js";

export const ROOM_RE = /^[a-z0-9][a-z0-9-]{2,63}$/;
export const NAME_KEY = "rondpoint.name";
export const MIC_KEY = "rondpoint.mic";
export const CAM_KEY = "rondpoint.cam";

/** A fresh page state: nobody in a room, no media, no session. */
export function newAppState() {
  return {
    state: "loading",
    params: new URLSearchParams(), // the page's query string (autojoin, name, pin, mic, cam, res...)
    room: null,
    roomInfo: null,
    name: "",
    token: null,
    tokenFromHash: false,
    autojoin: false,
    canDial: false,
    client: null,
    self: null,
    participants: new Map(), // id -> Participant (others, lobby ones included for hosts)
    removed: new Map(), // hosts: id -> Participant a host removed or denied, who may be let back in
    speaking: new Set(),
    lobbyShown: false,
    lastReason: null,
    // local media
    micTrack: null,
    camTrack: null,
    micOn: true,
    camOn: true,
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
    remoteVideo: new Map(), // participant id -> {track: MediaStreamTrack, track_id} shown on its tile
    sentHeights: new Map(), // track_id -> max_height sent
    unread: 0,
    joinedAt: 0,
    leaving: false,
    // room links (hosts): [{target, status}] and the schemes this gateway can link
    links: [],
    linkSchemes: [],
  };
}

/** The page's one state, shared by its modules. */
export const app = newAppState();

/** Whether the microphone and camera start on: the last choice kept in STORED (localStorage),
 * unless the query string PARAMS says `mic=0` or `cam=0`. */
export function mediaWanted(params, stored) {
  return {
    micOn: stored.getItem(MIC_KEY) !== "0" && params.get("mic") !== "0",
    camOn: stored.getItem(CAM_KEY) !== "0" && params.get("cam") !== "0",
  };
}

// ---------------------------------------------------------------- participants and tracks

/** Stores a participant from `participant_joined` (IS_NEW) or `participant_updated`. Returns what
 * to tell the person: "self" (its own entry changed), "waiting" (someone knocks at the lobby),
 * "joined" (someone entered the room), "updated", or null when there is no participant. */
export function upsertParticipant(state, p, isNew) {
  if (!p) return null;
  if (state.self && p.id === state.self.id) {
    state.self = { ...state.self, ...p, tracks: state.self.tracks };
    return "self";
  }
  const before = state.participants.get(p.id);
  state.participants.set(p.id, p);
  if (isNew || before?.state !== p.state) {
    if (p.state === "lobby") return "waiting";
    if (p.state === "joined" && state.state === "room") return "joined";
  }
  return "updated";
}

/** Drops a participant on `participant_left`; a host keeps the ones it removed or denied so it can
 * let them back in. Returns the participant that left, or null if it was unknown. */
export function removeParticipant(state, participantId, reason) {
  const p = state.participants.get(participantId);
  if (!p) return null;
  state.participants.delete(participantId);
  state.speaking.delete(participantId);
  if (isHost(state) && (reason === "removed" || reason === "denied")) state.removed.set(p.id, p);
  return p;
}

function owner(state, participantId) {
  return participantId === state.self?.id ? state.self : state.participants.get(participantId);
}

/** Adds (or replaces) a track on its owner from `track_published`; false if the owner is unknown. */
export function trackPublished(state, track) {
  if (!track) return false;
  const p = owner(state, track.participant_id);
  if (!p) return false;
  p.tracks = (p.tracks || []).filter((x) => x.id !== track.id).concat([track]);
  return true;
}

/** Drops a track from its owner on `track_unpublished`. */
export function trackUnpublished(state, trackId, participantId) {
  const p = owner(state, participantId);
  if (p) p.tracks = (p.tracks || []).filter((x) => x.id !== trackId);
}

/** Marks a track muted or not on `track_muted`; returns the track, or null if unknown. */
export function trackMuted(state, trackId, participantId, muted) {
  const tr = owner(state, participantId)?.tracks?.find((x) => x.id === trackId);
  if (!tr) return null;
  tr.muted = muted;
  return tr;
}

export function remoteTracksOf(state, participantId) {
  return state.participants.get(participantId)?.tracks || [];
}

/** Whether P's microphone is off: the page's own switch for itself, else its audio tracks. */
export function micMuted(state, p) {
  if (p.id === state.self?.id) return !state.micOn || !state.hasMic;
  const audio = (p.tracks || []).filter((x) => x.kind === "audio" && x.source !== "screen_audio");
  return audio.length === 0 || audio.every((x) => x.muted);
}

/** Whether P's tile shows initials rather than video. */
export function videoOff(state, p) {
  if (p.id === state.self?.id) return !(state.camOn && state.camTrack);
  const video = (p.tracks || []).filter((x) => x.kind === "video");
  if (!video.length || video.every((x) => x.muted)) return true;
  return !state.remoteVideo?.has(p.id);
}

/** The page's own participant first, then the others in the room (not the lobby) by arrival. */
export function joinedList(state) {
  const others = [...state.participants.values()]
    .filter((p) => p.state !== "lobby")
    .sort((a, b) => (a.joined_at || 0) - (b.joined_at || 0));
  return state.self ? [state.self, ...others] : others;
}

export function lobbyList(state) {
  return [...state.participants.values()].filter((p) => p.state === "lobby");
}

export function isHost(state) {
  return state.self?.role === "host";
}

// ---------------------------------------------------------------- names, rooms, tokens, problems

export function initials(name) {
  if (!/\p{L}/u.test(name || "")) return "☎"; // a phone number: no letters to take
  const parts = (name || "?").trim().split(/\s+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || "?").slice(0, 2);
  return s.toUpperCase();
}

/** A participant's name inside a sentence (a toast, a tooltip): a first-strong isolate, so a
 * right-to-left name neither reorders the sentence around it nor is reordered by it. Names reach
 * the page already without bidi controls (spec 7.1); elements showing a name alone use <bdi>. */
export function isolated(name) {
  return `\u2068${name}\u2069`;
}

/** A room name from what a person typed: a name, or a room link of this page. */
export function normalizeRoom(input) {
  let v = (input || "").trim();
  const m = v.match(/\/r\/([^/?#]+)/);
  if (m) v = decodeURIComponent(m[1]);
  return v.toLowerCase().replace(/\s+/g, "-");
}

/** A room name such as "abc-defg-hij" from ten random BYTES. */
export function randomRoom(bytes = crypto.getRandomValues(new Uint8Array(10))) {
  const letters = "abcdefghijkmnopqrstuvwxyz";
  const s = Array.from(bytes, (b) => letters[b % letters.length]).join("");
  return `${s.slice(0, 3)}-${s.slice(3, 7)}-${s.slice(7)}`;
}

/** Whether TOKEN was issued by the operator rather than the anonymous token endpoint (its grant
 * says ors.anonymous): a host who made the room anonymously may not dial or link; the gateway
 * refuses it (403), so the page does not offer it. */
export function operatorIssued(token) {
  try {
    const part = (token || "").split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).ors?.anonymous !== true;
  } catch {
    return false;
  }
}

/** The text to show for an error ERR (an OrsError, or anything thrown), in the language of TR. */
export function problemText(err, tr = t) {
  const code = err?.code || err?.problem?.code;
  if (code === "connection_failed") return tr("err_connection");
  const known = tr(`err_${code}`);
  if (known && known !== `err_${code}`) return known;
  return err?.problem?.detail || err?.message || tr("err_generic");
}
