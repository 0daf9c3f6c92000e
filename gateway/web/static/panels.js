// The room's side panels: people (with the lobby, the removed, a phone to call and the room's
// links for hosts, and the host actions on a person) and chat.

import { OrsClient, OrsError } from "./ors-client.js";
import { lang, originLabel, t } from "./i18n.js";
import { app, initials, isHost, isolated, joinedList, lobbyList, micMuted, operatorIssued, problemText } from "./state.js";
import { isReconnecting } from "./reconnect.js";
import { $, confirmAction, el, icon, toast } from "./ui.js";
import { layoutGrid, renderTiles } from "./layout.js";

/** The tiles and the people panel, after a change in the room. */
export function renderAll() {
  renderTiles();
  renderPeople();
}

// ---------------------------------------------------------------- people

/** A button of a person's row: KIND (btn-primary, btn-tertiary...), its test id, what a screen
 * reader says (LABEL, naming the person), its TEXT, and what it does. */
function actionButton(kind, testId, label, text, onclick) {
  return el("button", { type: "button", class: `btn btn-sm ${kind}`, "data-testid": testId, "aria-label": label, text, onclick });
}

/** A row of the people panel: the person's initials and name (and META under it), then MORE. */
function row(testId, p, meta, ...more) {
  const self = p.id === app.self?.id;
  return el(
    "li",
    { class: "person", "data-testid": testId },
    el("span", { class: "person-avatar", "aria-hidden": "true", text: initials(p.name) }),
    el(
      "span",
      { class: "person-main" },
      el("span", { class: "person-name" }, el("bdi", { text: p.name }), self ? ` (${t("you")})` : null),
      meta,
    ),
    ...more,
  );
}

function personRow(p, { lobby = false } = {}) {
  const meta = el(
    "span",
    { class: "person-meta" },
    el("span", {
      class: `origin origin-${(p.origin || "ors").split(":")[0]}`,
      text: originLabel(p.origin),
      title: p.origin,
    }),
    el("span", { text: t(p.role || "member") }),
    isReconnecting(app, p)
      ? el("span", { class: "person-reconnecting", "data-testid": "person-reconnecting", text: t("reconnecting_badge") })
      : null,
  );
  const host = isHost(app);
  if (lobby) {
    const actions = host
      ? el(
          "span",
          { class: "person-actions" },
          actionButton("btn-primary", `admit-${p.id}`, t("admit_name", p.name), t("admit"), () =>
            hostAction("admit", p.id),
          ),
          // declining a knock (spec 8.11, `remove` of a guest in the lobby): no question asked,
          // as admitting is none; the guest is listed under "Removed" to be let back in
          actionButton("btn-tertiary", `remove-${p.id}`, t("decline_name", p.name), t("decline"), () =>
            hostAction("remove", p.id),
          ),
        )
      : null;
    return row(`person-${p.id}`, p, meta, actions);
  }
  const muted = micMuted(app, p);
  const icons = el(
    "span",
    { class: "person-icons", "aria-label": muted ? t("muted") : "" },
    icon(muted ? "mic-off" : "mic", `icon${muted ? " is-muted" : ""}`),
  );
  // a word, in red, and a question first: not the × that closes the panel a row above
  const remove = async () => {
    const name = isolated(p.name);
    if (await confirmAction(t("remove_title", name), t("remove_text"), t("remove"))) hostAction("remove", p.id);
  };
  const actions =
    host && p.id !== app.self?.id
      ? el(
          "span",
          { class: "person-actions" },
          actionButton("btn-tertiary btn-danger-text", `remove-${p.id}`, t("remove_name", p.name), t("remove"), remove),
        )
      : null;
  return row(`person-${p.id}`, p, meta, icons, actions);
}

// Removed stays removed (ORS 8.11) until a host lets the person back in: `admit` with its old id.
function removedRow(p) {
  const letBack = async () => {
    try {
      await app.client.request("admit", { participant_id: p.id });
      app.removed.delete(p.id);
      renderPeople();
    } catch (e) {
      toast(problemText(e), "error");
    }
  };
  return row(
    `removed-${p.id}`,
    p,
    null,
    el(
      "span",
      { class: "person-actions" },
      actionButton("btn-tertiary", `let-back-${p.id}`, t("let_back_name", p.name), t("let_back"), letBack),
    ),
  );
}

export function renderPeople() {
  if (!app.self) return;
  const host = isHost(app);
  const joined = joinedList(app);
  const lobby = lobbyList(app);
  $("people-list").replaceChildren(...joined.map((p) => personRow(p)));
  $("lobby-list").replaceChildren(...lobby.map((p) => personRow(p, { lobby: true })));
  $("lobby-section").hidden = !(host && lobby.length);
  $("removed-list").replaceChildren(...[...app.removed.values()].map(removedRow));
  $("removed-section").hidden = !(host && app.removed.size);
  $("dial-form").hidden = !(host && app.canDial && operatorIssued(app.token));
  $("people-count").textContent = `(${joined.length})`;
  $("people-badge").textContent = String(joined.length);
  const lb = $("lobby-badge");
  lb.hidden = !(host && lobby.length);
  lb.textContent = String(lobby.length);
  // A guest who knocks is something a host must see: the panel opens (or stays open) for each
  // new one, never closes for one.
  const knocking = lobby.some((p) => !app.lobbySeen.has(p.id));
  app.lobbySeen = new Set(lobby.map((p) => p.id));
  if (host && knocking) showPanel("people");
}

async function hostAction(type, pid) {
  try {
    await app.client.request(type, { participant_id: pid });
  } catch (e) {
    toast(problemText(e), "error");
  }
}

// ---------------------------------------------------------------- room links (hosts)
// ORS has no link messages: a host's page uses /rooms/{room}/links with its own join token.

export async function linksRequest(method, suffix = "", body = undefined) {
  const headers = { Authorization: `Bearer ${app.token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await OrsClient.fetch(`/rooms/${encodeURIComponent(app.room)}/links${suffix}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) throw new OrsError(await OrsClient.problemFrom(resp));
  return resp.status === 204 ? null : resp.json();
}

export async function refreshLinks() {
  if (app.state !== "room" || !isHost(app) || !app.token) {
    $("links-section").hidden = true;
    return;
  }
  try {
    const r = await linksRequest("GET");
    app.links = r.links || [];
    app.linkSchemes = r.schemes || [];
  } catch (e) {
    console.warn("links:", e);
    return;
  }
  renderLinks();
}

function linkRow(link) {
  const st = link.status || {};
  const state = el("span", {
    class: `link-state state-${st.state}`,
    "data-testid": "link-state",
    "data-state": st.state,
    text: t(`link_${st.state}`) + (st.remote_participants ? ` · ${t("link_remote", st.remote_participants)}` : ""),
  });
  return el(
    "li",
    { class: "link-row", "data-testid": "link-row", "data-target": link.target },
    el(
      "span",
      { class: "link-main" },
      el("span", { class: "link-target", text: link.target, title: link.target }),
      state,
      st.detail && st.state !== "connected" ? el("span", { class: "link-detail", text: st.detail }) : null,
    ),
    actionButton("btn-tertiary", "unlink", t("unlink_target", link.target), t("unlink"), () => unlinkTarget(link.target)),
  );
}

function renderLinks() {
  const show = app.state === "room" && isHost(app) && (app.linkSchemes.length > 0 || app.links.length > 0);
  $("links-section").hidden = !show;
  if (!show) return;
  $("link-form").hidden = app.linkSchemes.length === 0 || !operatorIssued(app.token);
  $("links-empty").hidden = app.links.length > 0;
  $("links-list").replaceChildren(...app.links.map(linkRow));
}

async function unlinkTarget(target) {
  try {
    await linksRequest("DELETE", `/${encodeURIComponent(target)}`);
    toast(t("unlinked", target));
  } catch (e) {
    toast(problemText(e), "error");
  }
  await refreshLinks();
}

// ---------------------------------------------------------------- panels & chat

/** Opens panel WHICH ("people" or "chat"), closing the other; an open panel stays open. */
export function showPanel(which) {
  const opening = $(`panel-${which}`).hidden;
  for (const w of ["people", "chat"]) {
    $(`panel-${w}`).hidden = w !== which;
    $(`toggle-${w}`).setAttribute("aria-expanded", w === which ? "true" : "false");
  }
  if (!opening) return;
  if (which === "people") refreshLinks();
  if (which === "chat") {
    app.unread = 0;
    $("chat-badge").hidden = true;
    $("chat-input").focus();
  }
  requestAnimationFrame(layoutGrid);
}

/** A panel's button: opens it, or closes it when it is open. */
export function togglePanel(which) {
  if ($(`panel-${which}`).hidden) showPanel(which);
  else closePanels();
}

export function closePanels() {
  for (const w of ["people", "chat"]) {
    $(`panel-${w}`).hidden = true;
    $(`toggle-${w}`).setAttribute("aria-expanded", "false");
  }
  requestAnimationFrame(layoutGrid);
}

export function onChat(msg) {
  if (!msg) return;
  // each message once, by its id: a reconnected page adds from `joined.chat` only what it missed
  if (msg.id && $("chat-log").querySelector(`[data-msg-id="${CSS.escape(msg.id)}"]`)) return;
  $("chat-empty").hidden = true;
  const mine = msg.from === app.self?.id;
  const time = new Date(msg.ts || Date.now()).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
  const node = el(
    "div",
    { class: `msg${mine ? " mine" : ""}`, "data-testid": "chat-message", "data-msg-id": msg.id },
    el("span", { class: "msg-head" }, el("strong", { dir: "auto", text: mine ? t("you_label") : msg.from_name || "?" }), time),
    el("span", { class: "msg-text", text: msg.text }),
  );
  const log = $("chat-log");
  log.append(node);
  log.scrollTop = log.scrollHeight;
  if ($("panel-chat").hidden && !mine) {
    app.unread += 1;
    $("chat-badge").hidden = false;
    $("chat-badge").textContent = String(app.unread);
  }
}
