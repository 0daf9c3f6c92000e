// Local and remote media: the camera and microphone (devices, level meter, the on/off buttons),
// the "publish" RTCPeerConnection (we offer, sendonly, simulcast layers for the camera) and the
// "subscribe" one (the server offers, we answer), and the remote tracks attached to the page.

import { t } from "./i18n.js";
import { CAM_KEY, MIC_KEY, app, deviceConstraint, problemText, remoteTracksOf } from "./state.js";
import { $, el, setIcon, toast } from "./ui.js";
import { renderTiles } from "./layout.js";
import { renderAll, renderPeople } from "./panels.js";

// ---------------------------------------------------------------- local media

/** The camera's constraints: the resolution asked (?res=) and, unless ANY_CAMERA, the camera
 * chosen (devices.js). */
export function videoConstraints(anyCamera = false) {
  const res = Number(app.params.get("res")) || 720;
  return {
    width: { ideal: Math.round((res * 16) / 9) },
    height: { ideal: res },
    frameRate: { ideal: 30 },
    ...(anyCamera ? {} : deviceConstraint(localStorage, "videoinput")),
  };
}

function audioConstraints() {
  const chosen = deviceConstraint(localStorage, "audioinput");
  return Object.keys(chosen).length ? chosen : true;
}

export async function acquireMedia() {
  // the devices chosen, else any (a chosen one unplugged since), else one of the two
  const attempts = [
    { audio: audioConstraints(), video: videoConstraints() },
    { audio: true, video: videoConstraints(true) },
    { audio: true, video: false },
    { audio: false, video: videoConstraints(true) },
  ];
  for (const c of attempts) {
    try {
      const s = await navigator.mediaDevices.getUserMedia(c);
      app.micTrack = s.getAudioTracks()[0] || null;
      app.camTrack = s.getVideoTracks()[0] || null;
      app.hasMic = !!app.micTrack;
      app.hasCam = !!app.camTrack;
      if (!c.audio || !c.video) toast(t("err_media"), "error");
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

export function stopMedia() {
  app.micTrack?.stop();
  app.camTrack?.stop();
  app.micTrack = null;
  app.camTrack = null;
  stopMeter();
}

// The microphone's level meters (the pre-join screen's, the settings dialog's): every
// [role=meter] box with a .meter-bar, its aria-valuenow (0 to 100) said a few times a second.
let meter = null;
const METER_SAY_MS = 250;

/** Starts (or restarts, on the current microphone) the level meters. */
export function startMeter() {
  stopMeter();
  if (!app.micTrack || !window.AudioContext) return;
  try {
    const ctx = new AudioContext();
    const src = ctx.createMediaStreamSource(new MediaStream([app.micTrack]));
    const an = ctx.createAnalyser();
    an.fftSize = 512;
    src.connect(an);
    const buf = new Uint8Array(an.fftSize);
    let said = 0;
    const tick = (now) => {
      if (!meter) return;
      an.getByteTimeDomainData(buf);
      let peak = 0;
      for (const v of buf) peak = Math.max(peak, Math.abs(v - 128));
      const level = app.micOn ? Math.round(Math.min(100, (peak / 64) * 100)) : 0;
      const say = now - said > METER_SAY_MS;
      if (say) said = now;
      for (const box of document.querySelectorAll("[role=meter]")) {
        box.querySelector(".meter-bar").style.width = `${level}%`;
        if (say) box.setAttribute("aria-valuenow", String(level));
      }
      meter.raf = requestAnimationFrame(tick);
    };
    meter = { ctx, raf: requestAnimationFrame(tick) };
  } catch (e) {
    console.warn("meter", e);
  }
}

export function meterRunning() {
  return meter !== null;
}

export function stopMeter() {
  if (!meter) return;
  cancelAnimationFrame(meter.raf);
  meter.ctx.close().catch(() => {});
  meter = null;
}

/** The microphone and camera buttons (pre-join and room) and the preview, after a change. Each
 * button is a toggle named after what pressing it does from on, "Turn off microphone": pressed
 * (aria-pressed true) when the device is off, its name the same in both states. */
export function updateMediaButtons() {
  const pairs = [
    [$("pre-mic"), $("mic-toggle"), app.micOn, app.hasMic, "mic", t("mic_off_toggle")],
    [$("pre-cam"), $("camera-toggle"), app.camOn, app.hasCam, "cam", t("cam_off_toggle")],
  ];
  for (const [pre, ctrl, on, has, ic, label] of pairs) {
    for (const b of [pre, ctrl]) {
      b.classList.toggle("off", !on);
      b.setAttribute("aria-pressed", on ? "false" : "true");
      b.setAttribute("aria-label", label);
      b.title = label;
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
  updateShareButton();
  if (app.self) renderTiles();
}

/** Whether this browser can share a screen (phones cannot: no getDisplayMedia). */
export function canShareScreen() {
  return typeof navigator !== "undefined" && typeof navigator.mediaDevices?.getDisplayMedia === "function";
}

/** The control bar's "Share screen" button (screenshare.js): shown where the browser can share,
 * pressed while it does. */
export function updateShareButton() {
  const b = $("share-toggle");
  b.hidden = !canShareScreen();
  b.setAttribute("aria-pressed", app.screenTrack ? "true" : "false");
  b.classList.toggle("on", !!app.screenTrack);
}

/** Tells the room that our track TR is MUTED or not (ORS 8.6). The room echoes it in
 * `track_muted` before its `ok`: while a request of ours is in flight, a `track_muted` of that
 * track is ours (`ownMuteInFlight`), not a host's, even when the user has toggled again since. */
function sendMute(tr, muted) {
  tr.muted = muted;
  app.muteInFlight.set(tr.id, (app.muteInFlight.get(tr.id) || 0) + 1);
  app.client
    .request("mute", { track_id: tr.id, muted })
    .catch((e) => toast(problemText(e), "error"))
    .finally(() => {
      const left = (app.muteInFlight.get(tr.id) || 1) - 1;
      if (left) app.muteInFlight.set(tr.id, left);
      else app.muteInFlight.delete(tr.id);
    });
}

/** Whether a `track_muted` of our track TRACK_ID may be the echo of our own `mute` request. */
export function ownMuteInFlight(trackId) {
  return app.muteInFlight.has(trackId);
}

export async function setMic(on) {
  if (!app.hasMic) return;
  app.micOn = on;
  localStorage.setItem(MIC_KEY, on ? "1" : "0");
  if (app.micTrack) app.micTrack.enabled = on;
  updateMediaButtons(); // the button answers at once; the sender follows
  // No media flows while muted: the sender has no track at all.
  if (app.audioTx) await app.audioTx.sender.replaceTrack(on ? app.micTrack : null).catch(console.warn);
  const tr = app.ownTracks.microphone;
  if (tr && app.client) {
    sendMute(tr, !on);
  }
  updateMediaButtons();
  renderPeople();
}

export async function setCam(on) {
  if (!app.hasCam) return;
  app.camOn = on;
  localStorage.setItem(CAM_KEY, on ? "1" : "0");
  updateMediaButtons();
  if (on) {
    if (!app.camTrack) {
      try {
        const s = await navigator.mediaDevices
          .getUserMedia({ video: videoConstraints() })
          .catch(() => navigator.mediaDevices.getUserMedia({ video: videoConstraints(true) }));
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
    sendMute(tr, !app.camOn);
  }
  updateMediaButtons();
}

// ---------------------------------------------------------------- publishing

export function useSimulcast() {
  if (app.params.get("simulcast") === "0") return false;
  return typeof RTCRtpSender !== "undefined" && "getParameters" in RTCRtpSender.prototype;
}

/** The simulcast layers of a camera of HEIGHT x WIDTH: three from 540 p, two from 360 p, none
 * below (one plain stream). Each layer's ceiling (bits/s) is livekit-client's VideoPresets
 * h180/h360/h720, what Visio publishes; the 180 p layer stays within what a 300 kbit/s link
 * carries beside the voice. */
export function simulcastLayers(height, width = Math.round((height * 16) / 9)) {
  const all = [
    { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 160_000 },
    { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 450_000 },
    { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_700_000 },
  ];
  const layers = height >= 540 ? all : height >= 360 ? all.slice(1) : [];
  return layers.map((l) => ({
    ...l,
    width: Math.round(width / l.scaleResolutionDownBy),
    height: Math.round(height / l.scaleResolutionDownBy),
  }));
}

function cameraLayers() {
  const s = app.camTrack?.getSettings?.() || {};
  const h = s.height || Number(app.params.get("res")) || 720;
  return simulcastLayers(h, s.width || undefined);
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

/** The publish connection, made when the page has none yet (no microphone and no camera, then a
 * screen share). */
export function ensurePubPc() {
  if (!app.pubPc) app.pubPc = newPc("publish");
  return app.pubPc;
}

export async function publish(simulcast) {
  if (!app.hasMic && !app.hasCam && !app.screenTrack) return;
  const pc = ensurePubPc();
  if (app.hasMic) {
    app.audioTx = pc.addTransceiver(app.micOn ? app.micTrack : "audio", { direction: "sendonly" });
  }
  app.cameraLayers = [];
  if (app.hasCam) {
    const init = { direction: "sendonly" };
    const layers = simulcast ? cameraLayers() : [];
    if (layers.length > 1) {
      init.sendEncodings = layers.map(({ rid, scaleResolutionDownBy, maxBitrate }) => ({
        rid,
        scaleResolutionDownBy,
        maxBitrate,
      }));
      app.cameraLayers = layers.map(({ rid, width, height }) => ({ rid, width, height }));
    }
    app.videoTx = pc.addTransceiver(app.camOn && app.camTrack ? app.camTrack : "video", init);
  }
  addScreenTransceivers(pc); // a share kept through a reconnection goes out again with the rest
  await negotiatePublish();
  // Tell the room what is muted from the start.
  if (app.ownTracks.microphone && !app.micOn) {
    app.client.request("mute", { track_id: app.ownTracks.microphone.id, muted: true }).catch(console.warn);
  }
  if (app.ownTracks.camera && !app.camOn) {
    app.client.request("mute", { track_id: app.ownTracks.camera.id, muted: true }).catch(console.warn);
  }
}

/** The `tracks` of a publish offer: every sending transceiver of the page, with its source (spec
 * 10.4: every offer lists them all, the ones already published too). */
function sendingTracks() {
  const tracks = [];
  const sources = [
    [app.audioTx, "microphone"],
    [app.videoTx, "camera"],
    [app.screenTx, "screen"],
    [app.screenAudioTx, "screen_audio"],
  ];
  for (const [tx, source] of sources) {
    if (!tx || tx.mid == null) continue;
    const tr = { mid: tx.mid, source };
    if (tx === app.videoTx && app.cameraLayers.length) tr.simulcast = app.cameraLayers;
    tracks.push(tr);
  }
  return tracks;
}

/** Offers the publish connection as it is now (spec 10.4: first, and again after a track is added
 * or removed), one offer at a time, and keeps the tracks the server answers with. */
export function negotiatePublish() {
  const run = async () => {
    const pc = app.pubPc;
    if (!pc || !app.client) return;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const sdp = pc.localDescription.sdp;
    let reply;
    try {
      reply = await app.client.request("offer", { pc: "publish", sdp, tracks: sendingTracks() });
    } catch (e) {
      // refused: the server changed nothing (spec 8.2), nor does the connection
      if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" }).catch(() => {});
      throw e;
    }
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    app.ownTracks = {};
    for (const tr of reply.tracks || []) {
      const source = tr.source || (tr.mid === app.audioTx?.mid ? "microphone" : "camera");
      app.ownTracks[source] = tr;
    }
    if (app.self) app.self.tracks = Object.values(app.ownTracks);
    renderAll();
  };
  const done = app.pubQueue.then(run);
  app.pubQueue = done.catch(() => {});
  return done;
}

/** The screen share's tracks (when sharing) on PC, each on a sending transceiver of its own. */
export function addScreenTransceivers(pc) {
  if (app.screenTrack) app.screenTx = pc.addTransceiver(app.screenTrack, { direction: "sendonly" });
  if (app.screenAudioTrack) app.screenAudioTx = pc.addTransceiver(app.screenAudioTrack, { direction: "sendonly" });
}

/** Closes the publish connection. The screen share ends with it, unless KEEPSHARE (a
 * reconnection, or a publish tried again without simulcast) and its capture still runs: then
 * the next publish() sends it again, with no new prompt from the browser. */
export function closePub({ keepShare = false } = {}) {
  app.pubPc?.close();
  app.pubPc = null;
  app.audioTx = null;
  app.videoTx = null;
  app.ownTracks = {};
  app.pubQueue = Promise.resolve();
  app.screenTx = null;
  app.screenAudioTx = null;
  if (!(keepShare && app.screenTrack?.readyState === "live")) {
    app.screenTrack?.stop();
    app.screenAudioTrack?.stop();
    app.screenTrack = null;
    app.screenAudioTrack = null;
  }
  updateShareButton();
}

// ---------------------------------------------------------------- subscribing

export async function onSubscribeOffer(m) {
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

/** Plays every live remote audio track in an <audio> of its own, picks the video of each
 * participant's camera tile (its camera rather than another video) and keeps its screen shares
 * for their own tiles, then renders the tiles. */
export function attachRemoteTracks() {
  if (!app.subPc) return;
  const liveAudio = new Set();
  const videoFor = new Map(); // pid -> MediaStreamTrack (camera preferred)
  const screens = new Map(); // track_id -> {track, pid}
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
      const meta = remoteTracksOf(app, info.participant_id).find((x) => x.id === info.track_id);
      if (meta?.source === "screen") screens.set(info.track_id, { track, pid: info.participant_id });
      else if (!videoFor.has(info.participant_id) || meta?.source === "camera") {
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
  app.remoteScreens = screens;
  renderTiles();
}
