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
    roomNew: false, // the pre-join screen found no such room (joining creates it)
    name: "",
    token: null, // the join token of the session
    tokens: memoryStorage(), // where the page keeps its join tokens per room: sessionStorage when it may
    autojoin: false,
    canDial: false,
    client: null,
    self: null,
    participants: new Map(), // id -> Participant (others, lobby ones included for hosts)
    removed: new Map(), // hosts: id -> Participant a host removed or denied, who may be let back in
    speaking: new Set(),
    lobbySeen: new Set(), // ids of the lobby the people panel has opened for
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
    muteInFlight: new Map(), // track id -> our `mute` requests not answered yet
    // subscribe side
    subPc: null,
    subQueue: Promise.resolve(),
    subMids: new Map(), // mid -> {track_id, participant_id}
    audioEls: new Map(), // track_id -> <audio>
    remoteVideo: new Map(), // participant id -> {track: MediaStreamTrack, track_id} shown on its tile
    sentHeights: new Map(), // track_id -> max_height sent
    sentSubscribed: new Map(), // track_id -> `subscribed` sent (none sent: subscribed, spec 8.7)
    offscreen: new Set(), // keys of the tiles scrolled out of the stage (layout.js watchTiles)
    unread: 0,
    joinedAt: 0,
    leaving: false,
    // reconnecting (connection.js, reconnect.js): the latest `joined`'s {token, grace} to resume
    // with, the lost connection being retried (lostConnection), the PIN typed to join (memory only)
    resume: null,
    lost: null,
    pin: "",
    // room links (hosts): [{target, status}] and the schemes this gateway can link
    links: [],
    linkSchemes: [],
    // the stage: screen share, layouts (stageTiles, largeTile)
    screenTrack: null, // the page's own screen share (getDisplayMedia), while it shares
    screenAudioTrack: null, // the tab or system audio shared with it, if any
    screenTx: null,
    screenAudioTx: null,
    cameraLayers: [], // the simulcast layers the camera was offered with, offered again as they were
    pubQueue: Promise.resolve(), // publish offers one after the other (spec 10.4 step 5)
    remoteScreens: new Map(), // track_id -> {track: MediaStreamTrack, pid}: remote screen shares received
    layout: "grid", // "grid" or "speaker"
    pinned: null, // the key of the pinned tile (stageTiles), or null
    lastSpeaker: null, // the participant id who spoke last (not this page), for speaker view
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

/** Whether P's camera tile shows initials rather than video (a screen share has a tile of its own). */
export function videoOff(state, p) {
  if (p.id === state.self?.id) return !(state.camOn && state.camTrack);
  const video = (p.tracks || []).filter((x) => x.kind === "video" && x.source !== "screen");
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

/** Up to two characters for NAME's avatar: the first letter (or digit) of its first and last
 * words, or the first two of its only word. A part in brackets ("Dupont (DINUM)") and what is
 * neither a letter nor a digit (punctuation, emoji) are left out; a name with no letter is a
 * phone number ("☎"), unless it is emoji only (its first emoji). */
export function initials(name) {
  const text = (name || "").normalize("NFC").trim();
  if (!/\p{L}/u.test(text)) return /\p{Extended_Pictographic}/u.test(text) ? firstGrapheme(text) : "☎";
  const bare = text.replace(/\([^)]*\)|\[[^\]]*\]|\{[^}]*\}/g, " ");
  const words = (/\p{L}/u.test(bare) ? bare : text)
    .split(/\s+/)
    .map((word) => word.match(/\p{L}\p{M}*|\p{N}/gu) || [])
    .filter((chars) => chars.length);
  const picked = words.length > 1 ? [words[0][0], words[words.length - 1][0]] : words[0].slice(0, 2);
  return picked.join("").toUpperCase();
}

function firstGrapheme(text) {
  if (typeof Intl.Segmenter === "function") {
    for (const { segment } of new Intl.Segmenter(undefined, { granularity: "grapheme" }).segment(text)) {
      if (segment.trim()) return segment;
    }
  }
  return [...text][0];
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

/** The claims of a JWT (its payload, not verified: the server verifies), or null. */
export function tokenClaims(token) {
  try {
    const part = (token || "").split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/** Whether TOKEN was issued by the operator rather than the anonymous token endpoint (its grant
 * says ors.anonymous): a host who made the room anonymously may not dial or link; the gateway
 * refuses it (403), so the page does not offer it. */
export function operatorIssued(token) {
  const claims = tokenClaims(token);
  return claims !== null && claims.ors?.anonymous !== true;
}

// A page keeps the join token it has for a room (in sessionStorage: this tab only, gone with it)
// and joins with it again, after a reload or with "Rejoin", while it is valid: the same identity,
// so a host stays a host (spec 2.4). Close to its expiry it asks the token endpoint for a new one
// and gives it the kept one, which keeps the identity (spec 4.3).
export const TOKEN_KEY = "rondpoint.token."; // + the room's name
export const TOKEN_RENEW_SECONDS = 60; // a kept token with less to live is renewed, not reused
export const TOKENS_KEPT = 20; // rooms whose token one tab keeps; the ones nearest expiry go first

/** A Storage (getItem, setItem, removeItem, key, length) in memory: where sessionStorage is refused. */
export function memoryStorage() {
  const items = new Map();
  return {
    get length() {
      return items.size;
    },
    key: (i) => [...items.keys()][i] ?? null,
    getItem: (k) => (items.has(k) ? items.get(k) : null),
    setItem: (k, v) => void items.set(k, String(v)),
    removeItem: (k) => void items.delete(k),
  };
}

function readKept(storage, key) {
  try {
    const kept = JSON.parse(storage.getItem(key));
    if (kept && typeof kept.token === "string" && typeof kept.expiresAt === "number") return kept;
  } catch {
    /* not ours, or not JSON */
  }
  return null;
}

/** The token kept in STORAGE for ROOM if it has not expired at NOW (seconds since the epoch):
 * {token, expiresAt, anonymous}, or null. */
export function keptToken(storage, room, now) {
  const kept = readKept(storage, TOKEN_KEY + room);
  return kept && kept.expiresAt > now ? kept : null;
}

/** Keeps TOKEN for ROOM in STORAGE until EXPIRES_AT (seconds since the epoch; when 0, its `exp`,
 * else an hour: the server has the last word), dropping the expired ones and those past TOKENS_KEPT. */
export function keepToken(storage, room, token, expiresAt, now) {
  const entry = {
    token,
    expiresAt: expiresAt || tokenClaims(token)?.exp || now + 3600,
    anonymous: tokenClaims(token)?.ors?.anonymous === true,
  };
  try {
    const others = [];
    for (let i = 0; i < storage.length; i++) {
      const key = storage.key(i);
      if (key?.startsWith(TOKEN_KEY) && key !== TOKEN_KEY + room) others.push([key, readKept(storage, key)]);
    }
    const dropped = others
      .sort(([, a], [, b]) => (b?.expiresAt || 0) - (a?.expiresAt || 0))
      .filter(([, kept], i) => !(kept?.expiresAt > now) || i >= TOKENS_KEPT - 1);
    for (const [key] of dropped) storage.removeItem(key);
    storage.setItem(TOKEN_KEY + room, JSON.stringify(entry));
  } catch {
    /* storage full or refused: the page asks the endpoint next time */
  }
}

export function forgetToken(storage, room) {
  try {
    storage.removeItem(TOKEN_KEY + room);
  } catch {
    /* refused: nothing was kept */
  }
}

/** How to get a join token from the one KEPT for the room (keptToken) at NOW: {reuse} it while it
 * has more than TOKEN_RENEW_SECONDS to live (unless RENEW), else ask the endpoint, giving it back
 * ({renew}) when the endpoint made it, so the new token keeps its identity. */
export function tokenPlan(kept, now, renew = false) {
  if (kept && !renew && kept.expiresAt - now > TOKEN_RENEW_SECONDS) return { reuse: kept.token, renew: undefined };
  return { reuse: null, renew: kept?.anonymous ? kept.token : undefined };
}

/** The problems of a join token itself (spec 5.4): a new token is the remedy. */
export const TOKEN_PROBLEMS = ["token_invalid", "token_expired", "token_wrong_room"];

// The client's own problems with its connection (ors-client.js), said as one.
const CONNECTION_PROBLEMS = ["connection_failed", "connection_closed", "not_connected", "timeout"];

/** The text to show for an error ERR (an OrsError, a problem, anything thrown) in the language
 * of TR: the code's own text, else a generic one, never the server's English `detail`. */
export function problemText(err, tr = t) {
  const code = err?.code || err?.problem?.code;
  if (CONNECTION_PROBLEMS.includes(code)) return tr("err_connection");
  const key = `err_${code}`;
  const known = tr(key);
  return known !== key ? known : tr("err_generic");
}

// ---------------------------------------------------------------- hands, reactions, chat, origins
// (issue 14, the room's social side: panels.js, social.js)

/** The reactions ORS allows (spec 8.18), in the order the page's menu shows them. */
export const REACTIONS = ["👍", "👏", "😂", "❤️", "🎉", "😮", "🙏", "🤔"];

/** Whether P's hand is up (an absent `hand_raised_at`, from an older server, is down: spec 7.1). */
export function handRaised(p) {
  return typeof p?.hand_raised_at === "number";
}

/** LIST with the raised hands first, in the order they went up, then the others as they were. */
export function handsFirst(list) {
  const up = list.filter(handRaised).sort((a, b) => a.hand_raised_at - b.hand_raised_at);
  return [...up, ...list.filter((p) => !handRaised(p))];
}

/** Whether an update of P (BEFORE, then AFTER) is its hand going up. */
export function handWentUp(before, after) {
  return !handRaised(before) && handRaised(after);
}

/** The people panel's groups, in its order: the key of each, and the origins it holds. */
export const ORIGIN_GROUPS = ["ors", "sip", "visio", "matrix", "federation", "other"];

/** The group of ORIGIN (spec 7.1): `federation:<server>` is "federation", an unknown system "other". */
export function originGroup(origin) {
  const o = origin || "ors";
  if (o.startsWith("federation:")) return "federation";
  return ORIGIN_GROUPS.includes(o) ? o : "other";
}

/** LIST split by origin group, in ORIGIN_GROUPS order, each with its raised hands first; only
 * the groups that have someone: [{group, people}]. */
export function groupByOrigin(list) {
  return ORIGIN_GROUPS.map((group) => ({
    group,
    people: handsFirst(list.filter((p) => originGroup(p.origin) === group)),
  })).filter((g) => g.people.length);
}

// A link in a chat message: http or https only, up to the first space; the punctuation that ends
// a sentence is not part of it.
const LINK_RE = /\bhttps?:\/\/[^\s<>"]+/gi;
const LINK_TAIL_RE = /[.,;:!?'")\]}]+$/;

/** TEXT as its parts, in order: {text} for plain text and {text, href} for an http(s) link
 * (href the URL as the browser parses it). Nothing else becomes a link (javascript:, data:...). */
export function chatParts(text) {
  const parts = [];
  let last = 0;
  const plain = (s) => {
    if (!s) return;
    if (parts.length && parts[parts.length - 1].href === undefined) parts[parts.length - 1].text += s;
    else parts.push({ text: s });
  };
  for (const m of (text || "").matchAll(LINK_RE)) {
    const link = m[0].replace(LINK_TAIL_RE, "");
    let href = null;
    try {
      const url = new URL(link);
      if ((url.protocol === "http:" || url.protocol === "https:") && url.hostname) href = url.href;
    } catch {
      /* not a URL: text */
    }
    if (!href) continue;
    plain(text.slice(last, m.index));
    parts.push({ text: link, href });
    last = m.index + link.length;
  }
  plain((text || "").slice(last));
  return parts;
}

/** The unread count after MSG arrives: one more when someone else wrote it while the chat panel
 * is closed (CHAT_OPEN false); a message of the history (EARLIER) is not news. */
export function unreadAfter(unread, msg, selfId, chatOpen, earlier = false) {
  return !earlier && !chatOpen && msg?.from !== selfId ? unread + 1 : unread;
}

/** The id of P's microphone track that is on (to mute it), or null. */
export function liveMicTrack(p) {
  return (p.tracks || []).find((x) => x.kind === "audio" && x.source !== "screen_audio" && !x.muted)?.id ?? null;
}

// ---------------------------------------------------------------- the stage: tiles and layouts

export const LAYOUT_KEY = "rondpoint.layout";
export const MIN_TILE_WIDTH = 150; // px: no tile is narrower, on a phone too (the stage scrolls)
export const STRIP_TILE_WIDTH = 240; // px: the widest tile of speaker view's strip
// Screen shares shown per participant: a browser or a Visio user shares one screen; the gateway
// does not bound the tracks one participant publishes, so the page bounds the tiles they make.
export const SHARES_SHOWN = 2;

/** The stage's tiles, one per video: for each participant of joinedList its camera tile (key: its
 * id, shown with initials when there is no video), then one per screen share it publishes, up to
 * SHARES_SHOWN (key: "<id>:<track id>", the page's own share "<id>:screen"). Each is
 * {key, pid, source, trackId}. */
export function stageTiles(state) {
  const tiles = [];
  for (const p of joinedList(state)) {
    tiles.push({ key: p.id, pid: p.id, source: "camera", trackId: null });
    if (p.id === state.self?.id) {
      if (state.screenTrack) tiles.push({ key: `${p.id}:screen`, pid: p.id, source: "screen", trackId: null });
      continue;
    }
    const shares = (p.tracks || []).filter((tr) => tr.kind === "video" && tr.source === "screen");
    for (const tr of shares.slice(0, SHARES_SHOWN)) {
      tiles.push({ key: `${p.id}:${tr.id}`, pid: p.id, source: "screen", trackId: tr.id });
    }
  }
  return tiles;
}

/** Keeps the speakers of `active_speakers` (participant ids, loudest first): who speaks now, and
 * who spoke last among the others, whom speaker view keeps large while nobody speaks. */
export function noteSpeakers(state, ids) {
  state.speaking = new Set(ids);
  const other = ids.find((id) => id !== state.self?.id);
  if (other) state.lastSpeaker = other;
}

/** The key of the large tile among TILES (stageTiles), or null for a plain grid: the pinned tile,
 * in any layout; in speaker view, else a screen share (another's before the page's own), else the
 * one who spoke last (not the page itself), else the first other participant. */
export function largeTile(tiles, { layout, pinned, lastSpeaker, selfId }) {
  if (pinned && tiles.some((x) => x.key === pinned)) return pinned;
  if (layout !== "speaker" || tiles.length < 2) return null;
  const shares = tiles.filter((x) => x.source === "screen");
  const share = shares.find((x) => x.pid !== selfId) || shares[0];
  if (share) return share.key;
  if (lastSpeaker && tiles.some((x) => x.key === lastSpeaker)) return lastSpeaker;
  return (tiles.find((x) => x.pid !== selfId) || tiles[0]).key;
}

/** Speaker view in a WIDTH x HEIGHT stage: the large 16:9 tile, and under it a strip of N small
 * tiles, each MIN to STRIP_TILE_WIDTH wide and at most a quarter of the stage high (the strip
 * scrolls sideways when they do not fit), both centred. Rects are {x, y, w, h} in px. */
export function speakerRects(n, width, height, gap = 12, min = MIN_TILE_WIDTH) {
  let sw = 0;
  let sh = 0;
  if (n > 0) {
    sw = Math.min(STRIP_TILE_WIDTH, Math.max(min, (width - gap * (n - 1)) / n), width);
    sh = (sw * 9) / 16;
    if (sh > height / 4) {
      sh = Math.max(height / 4, (Math.min(min, width) * 9) / 16);
      sw = (sh * 16) / 9;
    }
  }
  const below = n > 0 ? sh + gap : 0;
  const lw = Math.max(0, Math.min(width, ((height - below) * 16) / 9));
  const lh = (lw * 9) / 16;
  // the large tile and the strip together, centred up and down (a phone's tall stage)
  const large = { x: (width - lw) / 2, y: Math.max(0, (height - lh - below) / 2), w: lw, h: lh };
  const total = n * sw + Math.max(0, n - 1) * gap;
  const x0 = Math.max(0, (width - total) / 2);
  const y = large.y + lh + gap;
  const strip = Array.from({ length: n }, (_, i) => ({ x: x0 + i * (sw + gap), y, w: sw, h: sh }));
  return { large, strip };
}

// ---------------------------------------------------------------- devices and names (pre-join)

/** Where the page keeps the camera and the microphone chosen (their deviceId), by device kind. */
export const DEVICE_KEYS = { audioinput: "rondpoint.mic.device", videoinput: "rondpoint.cam.device" };

/** The getUserMedia constraint asking for the device of KIND kept in STORED (localStorage), an
 * `exact` one (an `ideal` deviceId loses to an ideal resolution in Chromium): the caller asks
 * again without it when that device is gone; {} when none was chosen. */
export function deviceConstraint(stored, kind) {
  let id = null;
  try {
    id = stored.getItem(DEVICE_KEYS[kind]);
  } catch {
    /* storage refused: the browser's default device */
  }
  return id ? { deviceId: { exact: id } } : {};
}

/** The options of a picker of KIND from enumerateDevices' DEVICES: {value: deviceId, label}; a
 * device without a label (no permission yet) is "Camera 2", "Microphone 1"... in the language of TR. */
export function deviceOptions(devices, kind, tr = t) {
  return devices
    .filter((d) => d.kind === kind && d.deviceId)
    .map((d, i) => ({ value: d.deviceId, label: d.label || tr(kind === "videoinput" ? "camera_n" : "microphone_n", i + 1) }));
}

/** The display name a join TOKEN carries (its `name` claim), or "". */
export function tokenName(token) {
  const name = tokenClaims(token)?.name;
  return typeof name === "string" ? name.trim() : "";
}

// ---------------------------------------------------------------- videos nobody sees (h14-pause)

/** Whether each remote video of TILES ({trackId, visible, large}) should be forwarded to this page
 * (spec 8.7 `subscribed`): not while the page is HIDDEN (a tab in the background), nor when its
 * tile is scrolled out of the stage, unless it is the large tile of speaker view. A track on
 * several tiles is forwarded when one of them needs it; a video of RECEIVED (track ids) on no
 * tile (a person's shares beyond SHARES_SHOWN) is not. Audio has no tile and is never paused.
 * Returns a Map track_id -> subscribed. */
export function wantedVideos(tiles, hidden, received = []) {
  const wanted = new Map();
  for (const tile of tiles) {
    if (!tile.trackId) continue;
    const seen = !hidden && (tile.visible || tile.large);
    wanted.set(tile.trackId, seen || wanted.get(tile.trackId) === true);
  }
  for (const id of received) if (!wanted.has(id)) wanted.set(id, false);
  return wanted;
}

/** The `subscribed` changes to send: [track_id, subscribed] for each track of WANTED (wantedVideos)
 * whose value differs from what SENT remembers; a track nothing was sent for is subscribed (the
 * server's default), so it needs a message only to be paused. */
export function subscribedChanges(wanted, sent) {
  return [...wanted].filter(([id, on]) => (sent.get(id) ?? true) !== on);
}
