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
  if (app.self) renderTiles();
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
    tr.muted = !on;
    app.client.request("mute", { track_id: tr.id, muted: !on }).catch((e) => toast(problemText(e), "error"));
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
    tr.muted = !app.camOn;
    app.client.request("mute", { track_id: tr.id, muted: !app.camOn }).catch((e) => toast(problemText(e), "error"));
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

export async function publish(simulcast) {
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
    layers = simulcast ? cameraLayers() : [];
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

export function closePub() {
  app.pubPc?.close();
  app.pubPc = null;
  app.audioTx = null;
  app.videoTx = null;
  app.ownTracks = {};
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

/** Plays every live remote audio track in an <audio> of its own and picks the video of each
 * participant's tile (its camera rather than another video), then renders the tiles. */
export function attachRemoteTracks() {
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
      const meta = remoteTracksOf(app, info.participant_id).find((x) => x.id === info.track_id);
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
