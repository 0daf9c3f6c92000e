// Screen share from the page: getDisplayMedia's video (and the tab's or system's audio when the
// browser gives it) published on the publish connection as tracks of their own, sources `screen`
// and `screen_audio` (spec 7.2, 10.4 step 3); stopping, from the button or the browser's own
// "Stop sharing", unpublishes them (8.5) and renegotiates. A share outlives a reconnection: its
// capture is kept and published again on the new connection (media.js closePub, publish).

import { t } from "./i18n.js";
import { app, problemText } from "./state.js";
import { toast } from "./ui.js";
import { addScreenTransceivers, ensurePubPc, negotiatePublish, updateShareButton } from "./media.js";
import { renderAll } from "./panels.js";

export function toggleScreenShare() {
  return app.screenTrack ? stopScreenShare() : startScreenShare();
}

let starting = false;

async function startScreenShare() {
  if (starting || app.screenTrack || !app.client || app.state !== "room") return;
  starting = true;
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: true });
  } catch (e) {
    console.warn("getDisplayMedia", e);
    toast(t(e?.name === "NotAllowedError" ? "err_screen_denied" : "err_screen"), "error");
    return;
  } finally {
    starting = false;
  }
  const video = stream.getVideoTracks()[0];
  if (!video || !app.client || app.state !== "room") {
    for (const track of stream.getTracks()) track.stop();
    return;
  }
  video.contentHint = "detail"; // text stays sharp; the frame rate gives way first
  app.screenTrack = video;
  app.screenAudioTrack = stream.getAudioTracks()[0] || null;
  // the browser's own "Stop sharing" (or the shared window closing) ends the track
  video.addEventListener("ended", () => {
    if (app.screenTrack === video) stopScreenShare();
  });
  addScreenTransceivers(ensurePubPc());
  updateShareButton();
  renderAll();
  try {
    await negotiatePublish();
  } catch (e) {
    console.warn("publishing the screen failed:", e);
    toast(problemText(e), "error");
    if (app.screenTrack === video) await stopScreenShare();
  }
}

async function stopScreenShare() {
  if (!app.screenTrack) return;
  for (const track of [app.screenTrack, app.screenAudioTrack]) track?.stop();
  for (const tx of [app.screenTx, app.screenAudioTx]) {
    try {
      tx?.stop();
    } catch (e) {
      console.warn(e); // the connection is closed already
    }
  }
  app.screenTrack = null;
  app.screenAudioTrack = null;
  app.screenTx = null;
  app.screenAudioTx = null;
  updateShareButton();
  renderAll();
  const client = app.client;
  if (!client) return;
  await app.pubQueue; // an offer publishing the share may still be on its way: its answer names the tracks
  const ids = [app.ownTracks.screen?.id, app.ownTracks.screen_audio?.id].filter(Boolean);
  for (const id of ids) await client.request("unpublish", { track_id: id }).catch((e) => console.warn(e));
  if (app.client === client) await negotiatePublish().catch((e) => console.warn("renegotiating", e));
}
