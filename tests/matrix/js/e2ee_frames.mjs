// Runs livekit-client's own E2EE worker (dist/livekit-client.e2ee.worker.mjs) in Node 20 and
// encrypts / decrypts media frames with it, for tests/unit/matrix/test_frame_crypto*.py.
//
// The worker is driven through the messages livekit-client's E2eeManager posts to it (init,
// setKey, enable, ratchetRequest, setSifTrailer, encode, decode), with the key options Element
// Call's MatrixKeyProvider uses (ratchet window 10, key ring 256, keys imported as HKDF material
// from raw bytes). Frames are plain objects shaped like RTCEncodedAudioFrame (no `type`) and
// RTCEncodedVideoFrame (`type` "key"/"delta", VP8 mime type).
//
// Usage: node e2ee_frames.mjs WORKER_MJS < job.json > result.json
// job: {sif_trailer?: b64,
//       participants: [{identity, keys: [{index, key: b64}], ratchets: [index]}],
//       encode: [{identity, codec, frames: [{data: b64, keyframe, ssrc, timestamp}]}],
//       decode: [{identity, codec, frames: [{data: b64, keyframe}]}]}
// result: {encode: [[b64]], decode: [[b64 | null]], ratchets: [{identity, index, chain_key}],
//          errors: [string]}
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const workerPath = process.argv[2];
const job = JSON.parse(readFileSync(0, "utf8"));
const b64 = (bytes) => Buffer.from(bytes).toString("base64");
const unb64 = (text) => new Uint8Array(Buffer.from(text, "base64"));

const posted = [];
globalThis.self = globalThis;
globalThis.onmessage = null;
globalThis.postMessage = (message) => posted.push(message);
globalThis.RTCEncodedAudioFrame = class RTCEncodedAudioFrame {};
globalThis.RTCEncodedVideoFrame = class RTCEncodedVideoFrame {};
await import(pathToFileURL(workerPath).href);
const send = (kind, data) => globalThis.onmessage({ data: { kind, data } });
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

function frameOf(codec, spec, id) {
  const data = unb64(spec.data).buffer;
  const metadata = { synchronizationSource: spec.ssrc ?? 0, payloadType: 96 };
  if (codec === "opus") {
    const frame = new RTCEncodedAudioFrame();
    Object.assign(frame, { id, data, timestamp: spec.timestamp ?? 0 });
    frame.getMetadata = () => metadata;
    return frame;
  }
  const frame = new RTCEncodedVideoFrame();
  Object.assign(frame, {
    id, data, timestamp: spec.timestamp ?? 0, type: spec.keyframe ? "key" : "delta",
  });
  frame.getMetadata = () => ({ ...metadata, mimeType: `video/${codec.toUpperCase()}` });
  return frame;
}

let trackCount = 0;
async function transform(kind, group) {
  const trackId = `track-${++trackCount}`;
  const frames = group.frames.map((spec, id) => frameOf(group.codec, spec, id));
  const out = new Array(frames.length).fill(null);
  let finished;
  const done = new Promise((resolve) => { finished = resolve; });
  const readableStream = new ReadableStream({
    start(controller) {
      for (const frame of frames) controller.enqueue(frame);
      controller.close();
    },
  });
  const writableStream = new WritableStream({
    write(frame) { out[frame.id] = b64(new Uint8Array(frame.data)); },
    close() { finished(); },
  });
  send(kind, {
    participantIdentity: group.identity, trackId, readableStream, writableStream,
    codec: group.codec === "opus" ? undefined : group.codec, hasPacketTrailer: false,
  });
  await done;
  return out;
}

send("init", {
  loglevel: "silent",
  keyProviderOptions: {
    sharedKey: false, ratchetSalt: "LKFrameEncryptionKey", ratchetWindowSize: 10,
    failureTolerance: 10, keyringSize: 256, keySize: 128,
  },
});
if (job.sif_trailer) send("setSifTrailer", { trailer: unb64(job.sif_trailer) });
for (const participant of job.participants) {
  for (const { index, key } of participant.keys) {
    const material = await crypto.subtle.importKey("raw", unb64(key), "HKDF", false, [
      "deriveBits", "deriveKey",
    ]);
    send("setKey", {
      participantIdentity: participant.identity, isPublisher: false, key: material,
      keyIndex: index, updateCurrentKeyIndex: true,
    });
  }
  for (const index of participant.ratchets ?? []) {
    send("ratchetRequest", { participantIdentity: participant.identity, keyIndex: index });
    await settle(); // the worker runs ratchets unqueued: one at a time, or they merge
  }
  send("enable", { enabled: true, participantIdentity: participant.identity });
}
await settle();
const result = { encode: [], decode: [], ratchets: [], errors: [] };
for (const group of job.encode ?? []) result.encode.push(await transform("encode", group));
for (const group of job.decode ?? []) result.decode.push(await transform("decode", group));
await settle();
for (const message of posted) {
  if (message.kind === "ratchetKey") {
    result.ratchets.push({
      identity: message.data.participantIdentity, index: message.data.keyIndex,
      chain_key: b64(new Uint8Array(message.data.ratchetResult.chainKey)),
    });
  } else if (message.kind === "error") {
    result.errors.push(String(message.data.error?.message ?? message.data.error));
  }
}
process.stdout.write(JSON.stringify(result));
