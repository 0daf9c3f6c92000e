// The room's social side (issue 14): the page's own raised hand (ORS 8.17), the reactions menu and
// the reactions floating over the sender's tile (8.18, 9.19), the host's toast for a raised hand,
// and a host's request to unmute (8.19, 9.20), which only the person's click answers.

import { t } from "./i18n.js";
import { REACTIONS, app, handRaised, handWentUp, isHost, isolated, problemText } from "./state.js";
import { $, el, toast } from "./ui.js";
import { setCam, setMic } from "./media.js";

/** Each allowed reaction's name (i18n key), for screen readers and tooltips. */
const REACTION_NAMES = {
  "👍": "reaction_thumbs_up",
  "👏": "reaction_applause",
  "😂": "reaction_laughter",
  "❤️": "reaction_love",
  "🎉": "reaction_celebration",
  "😮": "reaction_surprise",
  "🙏": "reaction_thanks",
  "🤔": "reaction_thinking",
};
const REACTION_SHOWN_MS = 4000; // how long a reaction floats over its tile
const REACTIONS_PER_TILE = 5; // floating at once over one tile: the oldest goes first
const UNMUTE_ASKED_MS = 60_000; // a host's request to unmute stays on screen this long at most
let unmuteTimer = null;

export function wireSocial() {
  $("hand-toggle").onclick = () => request("hand", { raised: !handRaised(app.self) });
  $("reactions-toggle").onclick = () => showReactionsMenu($("reactions-menu").hidden);
  $("reactions-menu").replaceChildren(
    ...REACTIONS.map((emoji, i) =>
      el("button", {
        type: "button",
        class: "reaction-btn",
        role: "menuitem",
        "data-testid": `reaction-${i}`,
        "aria-label": t(REACTION_NAMES[emoji]),
        title: t(REACTION_NAMES[emoji]),
        text: emoji,
        onclick: () => sendReaction(emoji),
      }),
    ),
  );
  $("reactions-menu").addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    ev.stopPropagation();
    showReactionsMenu(false);
    $("reactions-toggle").focus();
  });
  // a click elsewhere closes the menu, as Escape does
  document.addEventListener("click", (ev) => {
    if (!$("reactions-menu").hidden && !ev.target.closest?.(".reactions-wrap")) showReactionsMenu(false);
  });
  $("unmute-accept").onclick = () => {
    const dialog = $("unmute-dialog");
    dialog.close();
    if (dialog.dataset.kind === "video") setCam(true);
    else setMic(true);
  };
  $("unmute-dismiss").onclick = () => $("unmute-dialog").close();
  // the person turned the microphone or camera on with its own button: the question is answered
  for (const [button, kind] of [
    ["mic-toggle", "audio"],
    ["camera-toggle", "video"],
  ]) {
    $(button).addEventListener("click", () => {
      if ($("unmute-dialog").dataset.kind === kind && $("unmute-dialog").open) $("unmute-dialog").close();
    });
  }
}

function showReactionsMenu(open) {
  $("reactions-menu").hidden = !open;
  $("reactions-toggle").setAttribute("aria-expanded", String(open));
  if (open) $("reactions-menu").querySelector("button")?.focus();
}

/** The hand button as the page's own participant has it. */
export function renderHand() {
  const up = handRaised(app.self);
  $("hand-toggle").setAttribute("aria-pressed", String(up));
  $("hand-toggle").classList.toggle("on", up);
}

/** Sends a request of the page's session; a refusal is a translated toast. */
export async function request(type, body) {
  try {
    await app.client?.request(type, body);
    return true;
  } catch (e) {
    toast(problemText(e), "error");
    return false;
  }
}

async function sendReaction(emoji) {
  showReactionsMenu(false);
  try {
    await app.client?.request("reaction", { emoji });
  } catch (e) {
    toast(e?.code === "rate_limited" ? t("err_reaction_rate_limited") : problemText(e), "error");
  }
}

/** A participant's update (BEFORE, then P): hosts hear of a hand going up. */
export function onHandUpdate(before, p) {
  if (isHost(app) && p.id !== app.self?.id && handWentUp(before, p)) toast(t("hand_toast", isolated(p.name)));
}

/** `reaction` (9.19): floats over the sender's tile for a few seconds, and is said politely. */
export function onReaction(m) {
  const name = REACTION_NAMES[m.emoji];
  if (!name) return; // a reaction of a later version: ignored (9.19)
  const p = m.participant_id === app.self?.id ? app.self : app.participants.get(m.participant_id);
  if (!p) return;
  const tile = $("grid").querySelector(`[data-pid="${CSS.escape(p.id)}"]`);
  const layer = tile?.querySelector(".tile-reactions");
  if (layer) {
    while (layer.children.length >= REACTIONS_PER_TILE) layer.firstChild.remove();
    const float = el("span", { class: "reaction-float", "data-testid": "reaction-float", text: m.emoji });
    layer.append(float);
    setTimeout(() => float.remove(), REACTION_SHOWN_MS);
  }
  const who = p.id === app.self?.id ? t("you_label") : p.name;
  $("reactions-live").textContent = t("reaction_from", isolated(who), t(name));
}

/** `unmute_requested` (9.20): asks the person, who unmutes with a click or not; never by itself. */
export function onUnmuteRequested(m) {
  const video = m.kind === "video";
  if (video ? app.camOn : app.micOn) return; // already on
  const dialog = $("unmute-dialog");
  dialog.dataset.kind = video ? "video" : "audio";
  $("unmute-title").textContent = t(video ? "camera_asked" : "unmute_asked");
  $("unmute-accept").textContent = t(video ? "camera_on" : "unmute");
  if (!dialog.open) dialog.show();
  $("unmute-accept").focus();
  clearTimeout(unmuteTimer);
  unmuteTimer = setTimeout(() => dialog.open && dialog.close(), UNMUTE_ASKED_MS);
}

/** The session ended: no menu, no question left open. */
export function resetSocial() {
  showReactionsMenu(false);
  if ($("unmute-dialog").open) $("unmute-dialog").close();
  $("reactions-live").textContent = "";
}
