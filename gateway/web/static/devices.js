// Choosing the camera and the microphone: the pickers of the pre-join screen and of the room's
// settings dialog (every <select data-device="videoinput|audioinput">), filled from
// enumerateDevices once the page may use the devices (labels come with the permission); the
// choice kept by deviceId in localStorage (state.js DEVICE_KEYS, read again by media.js). In the
// room a new device's track replaces the old one on its sender (RTCRtpSender.replaceTrack): no
// renegotiation, and the others keep receiving.

import { t } from "./i18n.js";
import { DEVICE_KEYS, app, deviceOptions } from "./state.js";
import { $, el, toast } from "./ui.js";
import { meterRunning, startMeter, stopMeter, updateMediaButtons, videoConstraints } from "./media.js";

/** Puts the pickers of index.html's template into every [data-devices=PREFIX] box, first in it,
 * with ids (and test ids) PREFIX-cam-select and PREFIX-mic-select. Before applyI18n. */
export function mountPickers() {
  for (const box of document.querySelectorAll("[data-devices]")) {
    const pickers = $("device-pickers").content.cloneNode(true);
    for (const select of pickers.querySelectorAll("select")) {
      const id = `${box.dataset.devices}-${select.dataset.name}-select`;
      select.id = id;
      select.dataset.testid = id;
      select.previousElementSibling.htmlFor = id;
    }
    box.prepend(pickers);
  }
}

function currentDevice(kind) {
  const track = kind === "videoinput" ? app.camTrack : app.micTrack;
  return track?.getSettings?.().deviceId || localStorage.getItem(DEVICE_KEYS[kind]) || "";
}

/** Fills every device picker of the page with the devices there are now, the one in use chosen. */
export async function fillDevicePickers() {
  let devices = [];
  try {
    devices = (await navigator.mediaDevices?.enumerateDevices?.()) || [];
  } catch (e) {
    console.warn("enumerateDevices", e);
  }
  for (const select of document.querySelectorAll("select[data-device]")) {
    const kind = select.dataset.device;
    const options = deviceOptions(devices, kind);
    select.replaceChildren(...options.map((o) => el("option", { value: o.value, text: o.label })));
    select.disabled = options.length === 0;
    const current = currentDevice(kind);
    if (options.some((o) => o.value === current)) select.value = current;
    select.onchange = () => switchDevice(kind, select.value);
  }
}

/** Uses the device DEVICE_ID for KIND from now on, and keeps the choice. A camera that is off is
 * only chosen: it opens when it is turned on (media.js setCam). */
async function switchDevice(kind, deviceId) {
  try {
    localStorage.setItem(DEVICE_KEYS[kind], deviceId);
  } catch {
    /* storage refused: the choice lasts as long as the page */
  }
  const video = kind === "videoinput";
  if (video && !app.camOn) return fillDevicePickers();
  try {
    const stream = await navigator.mediaDevices.getUserMedia(
      video
        ? { video: { ...videoConstraints(), deviceId: { exact: deviceId } } }
        : { audio: { deviceId: { exact: deviceId } } },
    );
    const track = video ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
    const old = video ? app.camTrack : app.micTrack;
    if (video) {
      app.camTrack = track;
      app.hasCam = true;
    } else {
      track.enabled = app.micOn;
      app.micTrack = track;
      app.hasMic = true;
    }
    // A muted microphone's sender has no track (media.js setMic): it gets the new one when turned on.
    const sender = (video ? app.videoTx : app.audioTx)?.sender;
    if (sender && (video ? app.camOn : app.micOn)) await sender.replaceTrack(track);
    if (old && old !== track) old.stop();
    if (!video && meterRunning()) startMeter();
    updateMediaButtons();
  } catch (e) {
    console.warn("switching device", kind, e);
    toast(t("err_device"), "error");
  }
  await fillDevicePickers();
}

/** The room's settings dialog: the same pickers, with the microphone's meter while it is open. */
export function openSettings() {
  const dialog = $("settings-dialog");
  if (dialog.open) return;
  fillDevicePickers();
  startMeter();
  dialog.addEventListener(
    "close",
    () => {
      if (app.state === "room") stopMeter();
    },
    { once: true },
  );
  dialog.showModal();
}

/** Keeps the pickers up to date when a device is plugged in or out. */
export function watchDevices() {
  navigator.mediaDevices?.addEventListener?.("devicechange", () => fillDevicePickers());
}
