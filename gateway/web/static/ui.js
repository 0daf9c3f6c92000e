// Small DOM helpers of the page: elements by id, element and icon builders, toasts, the
// translated labels, and which screen is showing. Nothing here touches the DOM at import.

import { lang, t } from "./i18n.js";
import { app } from "./state.js";

export const $ = (id) => document.getElementById(id);

/** Fills every element marked data-i18n, data-i18n-label, data-i18n-aria or
 * data-i18n-placeholder under ROOT with its text in the page's language. */
export function applyI18n(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    el.title = t(el.dataset.i18nLabel);
  }
  for (const el of root.querySelectorAll("[data-i18n-aria]")) el.setAttribute("aria-label", t(el.dataset.i18nAria));
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}

/** el("button", {class, text, onclick, "aria-label": ...}, ...children): text is always text
 * (never HTML); attributes that are undefined, null or false are left out. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

/** An icon of the page's sprite (index.html, symbols #i-NAME). */
export function icon(name, cls = "icon") {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", cls);
  svg.setAttribute("aria-hidden", "true");
  const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
  use.setAttribute("href", `#i-${name}`);
  svg.append(use);
  return svg;
}

export function setIcon(button, name) {
  button.querySelector("use")?.setAttribute("href", `#i-${name}`);
}

export function toast(text, kind = "info") {
  const node = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : null, text });
  $("toasts").append(node);
  setTimeout(() => node.remove(), kind === "error" ? 8000 : 5000);
}

/** Shows the screen of STATE (home, prejoin, lobby, room, left) and titles the page after it. */
export function setState(state) {
  app.state = state;
  document.body.dataset.state = state;
  for (const s of ["home", "prejoin", "lobby", "room", "left"]) $(`screen-${s}`).hidden = s !== state;
  $("topbar-room").hidden = !(app.room && (state === "room" || state === "lobby" || state === "prejoin"));
  $("topbar-room-name").textContent = app.room ? `/r/${app.room}` : "";
  const titles = {
    home: t("home_title"),
    prejoin: `${app.room} · ${t("prejoin_title")}`,
    lobby: `${app.room} · ${t("lobby_title")}`,
    room: `${app.room}`,
    left: `${app.room}`,
  };
  document.title = `${titles[state] || ""} — Rondpoint`;
}

/** Asks in the page's dialog (index.html #confirm-dialog) before an action: TITLE, TEXT, and the
 * button that does it, ACTION. Resolves true for that button; false for Cancel or Escape. */
export function confirmAction(title, text, action) {
  const dialog = $("confirm-dialog");
  if (dialog.open) return Promise.resolve(false); // one question at a time
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
}
