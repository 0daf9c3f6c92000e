// The invite dialog: the meeting's link with a Copy button and, for a participant inside the
// room, how a phone dials in (numbers, SIP addresses) and the room's PIN, as the gateway says
// them (ORS dial-in, spec 4.5; the gateway tells them only to a participant who has joined).

import { t } from "./i18n.js";
import { app, problemText } from "./state.js";
import { $, el, toast } from "./ui.js";

function roomUrl() {
  return `${location.origin}/r/${app.room}`;
}

async function copyLink() {
  try {
    await navigator.clipboard.writeText(roomUrl());
    toast(t("link_copied"));
  } catch {
    $("invite-url").select(); // the person copies it by hand
  }
}

const DIAL_IN_TIMEOUT_MS = 10_000; // the dialog shows the link meanwhile, and after

/** GET /ors/v1/rooms/{room}/dial-in with the session's join token: the answer, or null. */
async function dialIn() {
  const response = await fetch(`/ors/v1/rooms/${encodeURIComponent(app.room)}/dial-in`, {
    headers: { Authorization: `Bearer ${app.token}` },
    signal: AbortSignal.timeout(DIAL_IN_TIMEOUT_MS),
  });
  const body = await response.json().catch(() => null);
  if (response.ok) return body;
  // a gateway without the resource (404 not a problem) says nothing; a refusal is said
  if (body?.code) toast(problemText(body), "error");
  return null;
}

// What a dial-in link may open: a phone number, or a SIP address (never javascript: and the like).
const SAFE_LINK = /^(tel:\+?[0-9]+|sips?:[^\s"<>]+)$/;

function fill(list, entries, scheme) {
  list.replaceChildren(
    ...entries.map((entry) => {
      const href = `${scheme}${entry}`;
      return el("li", {}, el("a", { class: "mono", href: SAFE_LINK.test(href) ? href : null, text: entry }));
    }),
  );
  list.parentElement.hidden = entries.length === 0;
}

function showDialIn(info) {
  const numbers = info?.numbers || [];
  const uris = info?.sip_uris || [];
  const pin = info?.pin || "";
  $("invite-pin").textContent = pin;
  $("invite-pin-section").hidden = !pin;
  fill($("invite-numbers"), numbers, "tel:");
  fill($("invite-sip"), uris, "");
  $("invite-phone").hidden = numbers.length + uris.length === 0;
  $("invite-phone-pin-value").textContent = pin;
  $("invite-phone-pin").hidden = !pin;
}

export async function openInvite() {
  const dialog = $("invite-dialog");
  if (dialog.open || !app.room) return;
  $("invite-url").value = roomUrl();
  $("invite-copy").onclick = copyLink;
  showDialIn(null);
  dialog.showModal();
  if (app.state !== "room" || !app.token) return; // the lobby and the pre-join screen: the link only
  try {
    const info = await dialIn();
    if (dialog.open) showDialIn(info);
  } catch (e) {
    console.warn("dial-in", e);
  }
}
