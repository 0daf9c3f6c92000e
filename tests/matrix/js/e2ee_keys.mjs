// A Matrix user with end-to-end encryption (matrix-js-sdk's Rust crypto) exchanging MatrixRTC
// media keys the way Element Call does: matrix-js-sdk's own ToDeviceKeyTransport (the key
// transport of its RTCEncryptionManager) sends `io.element.call.encryption_keys` Olm-encrypted
// with client.encryptAndSendToDevice, and reports the keys it receives and accepts.
//
// Protocol (tests/matrix/jsclient.py): one JSON object per line.
//   stdin:  {"id": N, "cmd": NAME, ...arguments}
//   stdout: {"id": N, "ok": true, "result": ...} | {"id": N, "ok": false, "error": TEXT}
//           and events {"event": "key", user_id, device_id, member_id, key, index}
// Commands:
//   login {homeserver_url, user_id, access_token, device_id} -> {curve25519, ed25519}
//   devices {user_id} -> [{device_id, curve25519, ed25519}] (asks the homeserver)
//   listen {room_id, member_id}: start the transport (received keys become "key" events)
//   send_key {room_id, member_id, key, index, targets: [{user_id, device_id}]}
//   close
// Run from the folder of tests/matrix_js.sh; MATRIX_JS_SDK is the module's path.

import { createInterface } from "node:readline";

import { loadSdk } from "./sdk.mjs";

const sdk = await loadSdk("index.js");
const { ToDeviceKeyTransport } = await loadSdk("matrixrtc/ToDeviceKeyTransport.js");
const { KeyTransportEvents } = await loadSdk("matrixrtc/IKeyTransport.js");
const { logger } = await loadSdk("logger.js");
logger.setLevel(process.env.MATRIX_JS_LOG_LEVEL || "info");

let client = null;
const transports = new Map(); // room id -> ToDeviceKeyTransport

const emit = (object) => process.stdout.write(JSON.stringify(object) + "\n");
const statistics = () => ({
  counters: { roomEventEncryptionKeysSent: 0, roomEventEncryptionKeysReceived: 0 },
  totals: { roomEventEncryptionKeysReceivedTotalAge: 0 },
});

function transportFor(roomId, memberId) {
  let transport = transports.get(roomId);
  if (!transport) {
    const membership = { userId: client.getUserId(), deviceId: client.getDeviceId(), memberId };
    transport = new ToDeviceKeyTransport(membership, roomId, client, statistics());
    transports.set(roomId, transport);
  }
  return transport;
}

const commands = {
  async login({ homeserver_url, user_id, access_token, device_id }) {
    client = sdk.createClient({
      baseUrl: homeserver_url, userId: user_id, accessToken: access_token, deviceId: device_id,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    const prepared = new Promise((resolve) => {
      client.on(sdk.ClientEvent.Sync, (state) => {
        if (state === "PREPARED" || state === "SYNCING") resolve();
      });
    });
    await client.startClient({ initialSyncLimit: 1 });
    await prepared;
    const keys = await client.getCrypto().getOwnDeviceKeys();
    return { curve25519: keys.curve25519, ed25519: keys.ed25519 };
  },

  async devices({ user_id }) {
    const map = await client.getCrypto().getUserDeviceInfo([user_id], true);
    return [...(map.get(user_id)?.values() ?? [])].map((d) => ({
      device_id: d.deviceId,
      curve25519: d.getIdentityKey(),
      ed25519: d.getFingerprint(),
    }));
  },

  async listen({ room_id, member_id }) {
    const transport = transportFor(room_id, member_id);
    transport.on(KeyTransportEvents.ReceivedKeys, (membership, key, index) => {
      emit({
        event: "key", user_id: membership.userId, device_id: membership.deviceId,
        member_id: membership.memberId, key, index,
      });
    });
    transport.start();
    return true;
  },

  async send_key({ room_id, member_id, key, index, targets }) {
    const members = targets.map((t) => ({ userId: t.user_id, deviceId: t.device_id }));
    await transportFor(room_id, member_id).sendKey(key, index, members);
    return true;
  },

  async close() {
    for (const transport of transports.values()) transport.stop();
    client?.stopClient();
    setTimeout(() => process.exit(0), 50);
    return true;
  },
};

const input = createInterface({ input: process.stdin });
input.on("line", async (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    return;
  }
  const { id, cmd, ...args } = request;
  try {
    const handler = commands[cmd];
    if (!handler) throw new Error(`unknown command ${cmd}`);
    emit({ id, ok: true, result: (await handler(args)) ?? null });
  } catch (error) {
    emit({ id, ok: false, error: String(error?.stack ?? error) });
  }
});
input.on("close", () => process.exit(0));
