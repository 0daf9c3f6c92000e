// The screens before the room: home (start or join a meeting) and pre-join (name, PIN, camera
// and microphone check), and joining straight from a link with ?autojoin=1.

import { OrsClient, OrsError } from "./ors-client.js";
import { t } from "./i18n.js";
import { NAME_KEY, ROOM_RE, app, keptToken, normalizeRoom, randomRoom, tokenName } from "./state.js";
import { $, el, setState } from "./ui.js";
import { acquireMedia, updateMediaButtons } from "./media.js";
import { hasKeptToken, join } from "./connection.js";
import { fillDevicePickers } from "./devices.js";

export function showHome() {
  app.room = null;
  setState("home");
  const name = $("home-name");
  name.value = localStorage.getItem(NAME_KEY) || "";
  const go = (room) => {
    if (name.value.trim()) localStorage.setItem(NAME_KEY, name.value.trim());
    location.assign(`/r/${encodeURIComponent(room)}`);
  };
  $("home-create").onclick = () => go(randomRoom());
  $("home-form").onsubmit = (ev) => {
    ev.preventDefault();
    const input = $("home-room");
    const room = normalizeRoom(input.value);
    if (!ROOM_RE.test(room)) {
      input.setAttribute("aria-invalid", "true");
      $("home-error").textContent = t("room_invalid");
      input.focus();
      return;
    }
    go(room);
  };
  $("home-room").oninput = () => {
    $("home-room").removeAttribute("aria-invalid");
    $("home-error").textContent = "";
  };
  (name.value ? $("home-room") : name).focus();
}

async function loadRoomInfo() {
  app.roomNew = false;
  try {
    app.roomInfo = await new OrsClient({ room: app.room }).roomInfo();
  } catch (e) {
    app.roomInfo = null;
    app.roomNew = e instanceof OrsError && e.code === "room_not_found";
  }
  renderFacts();
  $("pin-field").hidden = !(app.roomInfo?.policy?.pin && !hasKeptToken());
}

/** The pre-join screen's facts about the room (loadRoomInfo), in the page's language of now. */
export function renderFacts() {
  const info = app.roomInfo;
  const facts = [];
  if (info) facts.push(t("participants_count", info.participants ?? 0));
  if (info?.policy?.pin) facts.push(t("room_pin"));
  if (info?.policy?.lobby) facts.push(t("room_lobby"));
  if (app.roomNew) facts.push(t("room_new"));
  $("prejoin-facts").replaceChildren(...facts.map((text) => el("li", { text })));
}

/** The name to offer: the one typed before on this page, else the name in the join token the
 * page has for the room, else the last name used. */
function offeredName() {
  const kept = keptToken(app.tokens, app.room, Date.now() / 1000);
  return app.name || tokenName(kept?.token) || localStorage.getItem(NAME_KEY) || "";
}

/** The pre-join screen, with ERROR said under the form (why the last attempt to join failed). */
export async function showPrejoin(error = "") {
  setState("prejoin");
  $("prejoin-room").textContent = app.room;
  const name = $("prejoin-name");
  name.value = offeredName();
  $("prejoin-error").textContent = error;
  $("prejoin-join").disabled = false;
  $("prejoin-join").textContent = t("join_meeting");
  if (!app.micTrack && !app.camTrack) await acquireMedia();
  updateMediaButtons();
  fillDevicePickers();
  loadRoomInfo();
  $("prejoin-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const n = name.value.trim();
    if (!n) {
      name.setAttribute("aria-invalid", "true");
      $("prejoin-error").textContent = t("name_required");
      name.focus();
      return;
    }
    name.removeAttribute("aria-invalid");
    app.name = n;
    localStorage.setItem(NAME_KEY, n);
    $("prejoin-error").textContent = "";
    $("prejoin-join").disabled = true;
    $("prejoin-join").textContent = t("joining");
    const failed = await join($("prejoin-pin").value.trim());
    if (failed) await showPrejoin(failed);
  };
  if (!name.value) name.focus();
  else $("prejoin-join").focus();
}

/** Joins without the pre-join screen (?autojoin=1, with ?name= and ?pin=): links that put a
 * person straight into the room, and the browser tests. */
export async function autojoin() {
  app.name = app.params.get("name") || offeredName() || "Guest";
  $("prejoin-room").textContent = app.room;
  if (!app.micTrack && !app.camTrack) await acquireMedia();
  updateMediaButtons();
  const failed = await join(app.params.get("pin") || "");
  if (failed) await showPrejoin(failed);
}
