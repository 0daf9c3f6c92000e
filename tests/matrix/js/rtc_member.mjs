// A Matrix user in a MatrixRTC call, driven by a test: matrix-js-sdk (from tests/matrix_js.sh) joins
// a room and its call the way Element Call does (client.matrixRTC.getRoomSession(room) and
// joinRTCSession with a LiveKit transport), reports the call's memberships as they change, sends
// and reads room messages, and gets its LiveKit token from a focus's /sfu/get with an OpenID token.
//
// Protocol (tests/matrix/jsclient.py): one JSON object per line.
//   stdin:  {"id": N, "cmd": NAME, ...arguments}
//   stdout: {"id": N, "ok": true, "result": ...} | {"id": N, "ok": false, "error": TEXT}
//           and events {"event": NAME, ...} at any time:
//           "memberships" {room, memberships: [{user_id, device_id, event_id, membership_id,
//             rtc_backend_identity (the LiveKit identity), created_ts, focus_active, foci_preferred, content}]}
//           "message" {room, event_id, sender, type, content} (an encrypted one again once decrypted)
//           "membership_status" {room, status}
//           "media_key" {room, identity (LiveKit), user_id, device_id, key (base64), index}: a
//             media key the session manages (rtc_join manage_media_keys), ours included
// Commands: login, join, rtc_transports, rtc_join, rtc_leave, memberships, send_text, send,
//   messages, state, openid, sfu_get, get_token, close. Everything the SDK logs goes to stderr.
// Run from the folder of tests/matrix_js.sh (NODE_PATH is not enough for ES modules): the Python
// wrapper passes the module's path in MATRIX_JS_SDK.

import { createInterface } from "node:readline";

// First: the SDK's logging off stdout, Node 20 shims, the SDK's folder (tests/matrix/js/sdk.mjs).
import { loadSdk } from "./sdk.mjs";

const sdk = await loadSdk("index.js");
const { MatrixRTCSessionEvent } = await loadSdk("matrixrtc/index.js");
const { logger } = await loadSdk("logger.js");
const { computeRtcIdentityRaw } = await loadSdk("matrixrtc/membershipData/rtc.js");
logger.setLevel(process.env.MATRIX_JS_LOG_LEVEL || "info");

const MEMBER_EVENT = "org.matrix.msc3401.call.member";
let client = null;
const sessions = new Map(); // room id -> MatrixRTCSession

function emit(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

function describe(membership) {
  // matrixEvent is private in the typings; plain JS reads it (the event as the SDK parsed it).
  const content = membership.matrixEvent?.getContent() ?? {};
  return {
    user_id: membership.userId,
    device_id: membership.deviceId,
    event_id: membership.eventId,
    membership_id: membership.membershipID,
    rtc_backend_identity: membership.rtcBackendIdentity,
    created_ts: membership.createdTs(),
    focus_active: content.focus_active ?? null,
    foci_preferred: content.foci_preferred ?? null,
    content,
  };
}

async function waitFor(check, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function needClient() {
  if (!client) throw new Error("not logged in (send login first)");
  return client;
}

function roomOf(roomId) {
  const room = needClient().getRoom(roomId);
  if (!room) throw new Error(`not in room ${roomId}`);
  return room;
}

function sessionOf(roomId) {
  let session = sessions.get(roomId);
  if (!session) {
    session = client.matrixRTC.getRoomSession(roomOf(roomId));
    session.on(MatrixRTCSessionEvent.MembershipsChanged, (_old, now) =>
      emit({ event: "memberships", room: roomId, memberships: now.map(describe) }),
    );
    session.on("status_changed", (_old, status) =>
      emit({ event: "membership_status", room: roomId, status }),
    );
    session.on(MatrixRTCSessionEvent.EncryptionKeyChanged, (key, index, member, identity) =>
      emit({
        event: "media_key", room: roomId, identity, user_id: member.userId,
        device_id: member.deviceId, key: Buffer.from(key).toString("base64"), index,
      }),
    );
    sessions.set(roomId, session);
  }
  return session;
}

// The homeserver's MatrixRTC transports (MSC4143), as Element Call discovers its focus.
async function rtcTransports() {
  const path = "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports";
  const reply = await needClient().http.authedRequest("GET", path, undefined, undefined, {
    prefix: "",
  });
  return reply.rtc_transports ?? [];
}

async function focusUrl(given) {
  if (given) return given;
  const livekit = (await rtcTransports()).find((t) => t.type === "livekit" && t.livekit_service_url);
  if (!livekit) throw new Error("no focus_url given and the homeserver advertises no livekit transport");
  return livekit.livekit_service_url;
}

async function openidToken() {
  return await needClient().getOpenIdToken();
}

const commands = {
  // {homeserver_url, user_id, password, device_id?} or {homeserver_url, user_id, access_token,
  // device_id}, crypto=false (matrix-js-sdk's Rust crypto, in memory): logs in (a new device
  // unless device_id), syncs; -> {user_id, device_id}
  async login({ homeserver_url, user_id, password, access_token, device_id, crypto = false }) {
    let credentials = { accessToken: access_token, userId: user_id, deviceId: device_id };
    if (!access_token) {
      const anonymous = sdk.createClient({ baseUrl: homeserver_url });
      const reply = await anonymous.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: user_id },
        password,
        device_id,
        initial_device_display_name: "rondpoint test (matrix-js-sdk)",
      });
      credentials = { accessToken: reply.access_token, userId: reply.user_id, deviceId: reply.device_id };
    }
    client = sdk.createClient({ baseUrl: homeserver_url, ...credentials });
    if (crypto) await client.initRustCrypto({ useIndexedDB: false });
    const report = (event, roomId) => {
      const type = event.getType();
      if (type === MEMBER_EVENT) return; // reported as memberships
      emit({
        event: "message",
        room: roomId,
        event_id: event.getId(),
        sender: event.getSender(),
        type,
        state_key: event.getStateKey() ?? null,
        content: event.getContent(),
      });
    };
    client.on(sdk.RoomEvent.Timeline, (event, room, toStartOfTimeline) => {
      if (toStartOfTimeline || !room) return;
      report(event, room.roomId);
    });
    // an encrypted event again once decrypted (its clear type and content)
    client.on(sdk.MatrixEventEvent.Decrypted, (event) => {
      if (!event.isDecryptionFailure() && event.getRoomId()) report(event, event.getRoomId());
    });
    const prepared = new Promise((resolve, reject) => {
      client.on(sdk.ClientEvent.Sync, (state, _previous, data) => {
        if (state === "PREPARED" || state === "SYNCING") resolve();
        if (state === "ERROR" && !client.isInitialSyncComplete()) reject(data?.error ?? new Error("sync failed"));
      });
    });
    await client.startClient({ initialSyncLimit: 20 });
    await prepared;
    return { user_id: client.getUserId(), device_id: client.getDeviceId() };
  },

  // {room} (id or alias): joins, waits for the room in sync -> {room_id}
  async join({ room }) {
    const joined = await needClient().joinRoom(room);
    await waitFor(
      () => client.getRoom(joined.roomId)?.getMyMembership() === "join",
      `the join of ${joined.roomId} in sync`,
    );
    return { room_id: joined.roomId };
  },

  // {room, focus_url?, intent="video", multi_sfu=true, notification=null ("ring"|"notification"),
  // manage_media_keys=false (E2EE as Element Call: media keys over Olm to-device, "media_key" events)}:
  // joins the room's call (focus_url: default the homeserver's first livekit transport); resolves when our membership is in the session -> {membership}
  async rtc_join({
    room, focus_url, intent = "video", multi_sfu = true, notification = null,
    manage_media_keys = false,
  }) {
    const session = sessionOf(room);
    const service = await focusUrl(focus_url);
    const transport = { type: "livekit", livekit_service_url: service, livekit_alias: room };
    const me = { userId: client.getUserId(), deviceId: client.getDeviceId() };
    me.memberId = `${me.userId}:${me.deviceId}`;
    const config = { callIntent: intent };
    if (manage_media_keys) config.manageMediaKeys = true; // matrix-js-sdk's default otherwise
    if (notification) config.notificationType = notification;
    // Element Call: its own focus as the multi-SFU transport; older clients: preferred foci only.
    if (multi_sfu) session.joinRTCSession(me, [], transport, config);
    else session.joinRTCSession(me, [transport], undefined, config);
    let failure = null;
    const onError = (error) => (failure = error);
    session.once(MatrixRTCSessionEvent.MembershipManagerError, onError);
    const mine = await waitFor(() => {
      if (failure) throw new Error(`the membership manager failed: ${failure}`);
      return session.memberships.find((m) => m.userId === me.userId && m.deviceId === me.deviceId);
    }, "our own membership in the session").finally(() =>
      session.off(MatrixRTCSessionEvent.MembershipManagerError, onError),
    );
    return { membership: describe(mine) };
  },

  // {room}: leaves the call (membership {} and the delayed leave cancelled) -> {left}
  async rtc_leave({ room }) {
    const left = await sessionOf(room).leaveRoomSession(10000);
    return { left };
  },

  // {room} -> {memberships: [...]}: the session's current memberships
  async memberships({ room }) {
    return { memberships: sessionOf(room).memberships.map(describe) };
  },

  // {room, text, msgtype="m.text"} -> {event_id}
  async send_text({ room, text, msgtype = "m.text" }) {
    const reply = await needClient().sendEvent(room, "m.room.message", { msgtype, body: text });
    return { event_id: reply.event_id };
  },

  // {room, type, content} -> {event_id}
  async send({ room, type, content }) {
    const reply = await needClient().sendEvent(room, type, content);
    return { event_id: reply.event_id };
  },

  // {room} -> {messages: [{event_id, sender, type, content}]} from the live timeline, oldest first
  async messages({ room }) {
    const events = roomOf(room).getLiveTimeline().getEvents();
    return {
      messages: events
        .filter((e) => e.getType() === "m.room.message")
        .map((e) => ({ event_id: e.getId(), sender: e.getSender(), type: e.getType(), content: e.getContent() })),
    };
  },

  // {room, type, state_key=""} -> {content} (null when missing) from the synced room state
  async state({ room, type, state_key = "" }) {
    const state = roomOf(room).getLiveTimeline().getState(sdk.EventTimeline.FORWARDS);
    const event = state?.getStateEvents(type, state_key);
    return { content: event ? event.getContent() : null };
  },

  // {} -> {transports}: the homeserver's MatrixRTC transports
  async rtc_transports() {
    return { transports: await rtcTransports() };
  },

  // {} -> the OpenID token {access_token, token_type, matrix_server_name, expires_in}
  async openid() {
    return await openidToken();
  },

  // {room, focus_url?, openid_token?}: POST {focus_url}/sfu/get as Element Call does ->
  // {status, body} (body: {url, jwt} on success; errors are returned, not thrown)
  async sfu_get({ room, focus_url, openid_token }) {
    const token = openid_token ?? (await openidToken());
    const service = await focusUrl(focus_url);
    const response = await fetch(`${service.replace(/\/$/, "")}/sfu/get`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ room, openid_token: token, device_id: client.getDeviceId() }),
    });
    const text = await response.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      body = { raw: text };
    }
    return { status: response.status, body };
  },

  // {room, focus_url?, openid_token?, member_id?}: POST {focus_url}/get_token (MSC4195) with the
  // body Element Call sends (src/livekit/openIDSFU.ts getLiveKitJWTWithDelayDelegation); member_id:
  // default our membership's memberId in the room's session, else {user}:{device} ->
  // {status, body, member_id, rtc_backend_identity (the SDK's hash of user, device, member id)}
  async get_token({ room, focus_url, openid_token, member_id }) {
    const token = openid_token ?? (await openidToken());
    const service = await focusUrl(focus_url);
    const userId = client.getUserId();
    const deviceId = client.getDeviceId();
    const mine = sessions
      .get(room)
      ?.memberships.find((m) => m.userId === userId && m.deviceId === deviceId);
    const memberId = member_id ?? mine?.memberId ?? `${userId}:${deviceId}`;
    const response = await fetch(`${service.replace(/\/$/, "")}/get_token`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        room_id: room,
        slot_id: "m.call#ROOM",
        openid_token: token,
        member: { id: memberId, claimed_user_id: userId, claimed_device_id: deviceId },
      }),
    });
    const text = await response.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      body = { raw: text };
    }
    const identity = await computeRtcIdentityRaw(userId, deviceId, memberId);
    return { status: response.status, body, member_id: memberId, rtc_backend_identity: identity };
  },

  // {}: leaves every call, stops the client; the process exits after the reply
  async close() {
    for (const session of sessions.values()) {
      if (session.isJoined()) await session.leaveRoomSession(5000).catch(() => false);
      await session.stop?.();
    }
    client?.stopClient();
    return {};
  },
};

const lines = createInterface({ input: process.stdin });
// An error's stack and its causes' (undici's "fetch failed" says why only in its cause: the
// code, ECONNREFUSED, UND_ERR_SOCKET...).
function described(error) {
  const parts = [String(error?.stack ?? error)];
  for (let cause = error?.cause; cause && parts.length < 5; cause = cause.cause) {
    parts.push(`caused by: ${cause.code ?? ""} ${cause.stack ?? cause}`);
  }
  return parts.join("\n");
}

let closing = false;
for await (const line of lines) {
  if (!line.trim()) continue;
  let request;
  try {
    request = JSON.parse(line);
  } catch (e) {
    emit({ id: null, ok: false, error: `not JSON: ${e}` });
    continue;
  }
  const { id, cmd, ...args } = request;
  const handler = commands[cmd];
  if (!handler) {
    emit({ id, ok: false, error: `unknown command ${cmd}` });
    continue;
  }
  // Commands run concurrently (a long rtc_join must not block a messages query).
  handler(args).then(
    (result) => emit({ id, ok: true, result: result ?? {} }),
    (error) => emit({ id, ok: false, error: described(error) }),
  ).finally(() => {
    if (cmd === "close") {
      closing = true;
      setTimeout(() => process.exit(0), 50);
    }
  });
}
if (!closing) {
  await commands.close().catch(() => {});
  process.exit(0);
}
