// Keyboard shortcuts of the page, listed in its "Keyboard shortcuts" dialog (opened by ?): the
// microphone, the camera, the hand, the chat, the people, the invite dialog. None fires while
// the person types (an input, a select, a text area) or while a dialog is open; Escape closes a
// dialog (the browser's own) or the open panel (app.js).

import { t } from "./i18n.js";
import { app } from "./state.js";
import { $, el } from "./ui.js";

const IN_ROOM = ["room"];
const WITH_MEDIA = ["prejoin", "room"];

// keys: what the dialog shows; aria: the same for assistive technology (aria-keyshortcuts on the
// buttons of ids); match: the keydown that fires it; button: what it presses.
const SHORTCUTS = [
  {
    keys: ["M", "Ctrl+D"],
    aria: "M Control+D",
    ids: ["mic-toggle", "pre-mic"],
    label: "shortcut_mic",
    states: WITH_MEDIA,
    match: (ev) => plain(ev, "m") || ctrl(ev, "d"),
    button: () => $(app.state === "room" ? "mic-toggle" : "pre-mic"),
  },
  {
    keys: ["V", "Ctrl+E"],
    aria: "V Control+E",
    ids: ["camera-toggle", "pre-cam"],
    label: "shortcut_cam",
    states: WITH_MEDIA,
    match: (ev) => plain(ev, "v") || ctrl(ev, "e"),
    button: () => $(app.state === "room" ? "camera-toggle" : "pre-cam"),
  },
  {
    keys: ["H"],
    aria: "H",
    ids: ["hand-toggle"],
    label: "shortcut_hand",
    states: IN_ROOM,
    match: (ev) => plain(ev, "h"),
    button: () => $("hand-toggle"),
  },
  {
    keys: ["C"],
    aria: "C",
    ids: ["toggle-chat"],
    label: "shortcut_chat",
    states: IN_ROOM,
    match: (ev) => plain(ev, "c"),
    button: () => $("toggle-chat"),
  },
  {
    keys: ["P"],
    aria: "P",
    ids: ["toggle-people"],
    label: "shortcut_people",
    states: IN_ROOM,
    match: (ev) => plain(ev, "p"),
    button: () => $("toggle-people"),
  },
  {
    keys: ["I"],
    label: "shortcut_invite",
    states: ["prejoin", "lobby", "room"],
    match: (ev) => plain(ev, "i"),
    button: () => $("invite-open"),
  },
  {
    keys: ["?"],
    label: "shortcut_help",
    states: ["home", "prejoin", "lobby", "room", "left"],
    match: (ev) => ev.key === "?" && !ev.ctrlKey && !ev.metaKey && !ev.altKey,
    run: () => openShortcuts(), // from every screen, not only the room's button
  },
];

function plain(ev, key) {
  return ev.key.toLowerCase() === key && !ev.ctrlKey && !ev.metaKey && !ev.altKey && !ev.shiftKey;
}

function ctrl(ev, key) {
  return ev.key.toLowerCase() === key && (ev.ctrlKey || ev.metaKey) && !ev.altKey && !ev.shiftKey;
}

/** Whether the keydown EV is typing: in a field, a select, a text area or an editable element. */
function typing(ev) {
  const target = ev.target;
  if (!target || target === document.body) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

function onKeydown(ev) {
  if (ev.defaultPrevented || ev.repeat || typing(ev) || document.querySelector("dialog[open]")) return;
  const shortcut = SHORTCUTS.find((s) => s.states.includes(app.state) && s.match(ev));
  if (shortcut?.run) {
    ev.preventDefault();
    shortcut.run();
    return;
  }
  const button = shortcut?.button();
  if (!button || button.disabled || button.closest("[hidden]")) return;
  ev.preventDefault(); // Ctrl+D and Ctrl+E are the browser's otherwise
  button.click();
}

/** The shortcuts dialog, drawn in the page's language of now. */
function openShortcuts() {
  const dialog = $("shortcuts-dialog");
  if (dialog.open) return;
  const rows = SHORTCUTS.map((s) =>
    el(
      "tr",
      {},
      el("th", { scope: "row" }, ...s.keys.flatMap((k, i) => [i ? " / " : "", el("kbd", { text: k })])),
      el("td", { text: t(s.label) }),
    ),
  );
  rows.push(el("tr", {}, el("th", { scope: "row" }, el("kbd", { text: "Esc" })), el("td", { text: t("shortcut_close") })));
  $("shortcuts-list").replaceChildren(...rows);
  dialog.showModal();
}

export function wireKeyboard() {
  for (const { aria, ids = [] } of SHORTCUTS) for (const id of ids) $(id)?.setAttribute("aria-keyshortcuts", aria);
  document.addEventListener("keydown", onKeydown);
  $("shortcuts-open").onclick = openShortcuts;
}
