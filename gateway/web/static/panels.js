// The room's side panels: people (grouped by origin, raised hands first; with the lobby, the
// removed, a phone to call and the room's links for hosts, and the host actions on a person) and
// chat (links clickable, the history of a late joiner, the unread count).

import { OrsClient, OrsError } from "./ors-client.js";
import { lang, originLabel, t } from "./i18n.js";
import {
  app,
  chatParts,
  groupByOrigin,
  handRaised,
  initials,
  isHost,
  isolated,
  joinedList,
  liveMicTrack,
  lobbyList,
  micMuted,
  operatorIssued,
  originGroup,
  problemText,
  unreadAfter,
} from "./state.js";
import { isReconnecting } from "./reconnect.js";
import { $, confirmAction, el, icon, toast } from "./ui.js";
import { layoutGrid, renderTiles } from "./layout.js";
import { renderHand, request } from "./social.js";

/** The tiles and the people panel, after a change in the room. */
export function renderAll() {
  renderTiles();
  renderPeople();
  renderHand();
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
    // in the browser: its section says so
    originGroup(p.origin) === "ors"
      ? null
      : el("span", { class: `origin origin-${p.origin.split(":")[0]}`, text: originLabel(p.origin), title: p.origin }),
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
            request("admit", { participant_id: p.id }),
          ),
          // declining a knock (spec 8.11, `remove` of a guest in the lobby): no question asked,
          // as admitting is none; the guest is listed under "Removed" to be let back in
          actionButton("btn-tertiary", `remove-${p.id}`, t("decline_name", p.name), t("decline"), () =>
            request("remove", { participant_id: p.id }),
          ),
        )
      : null;
    return row(`person-${p.id}`, p, meta, actions);
  }
  const muted = micMuted(app, p);
  const hand = handRaised(p);
  const said = [hand ? t("hand_raised") : "", muted ? t("muted") : ""];
  const icons = el(
    "span",
    { class: "person-icons", "aria-label": said.filter(Boolean).join(", ") },
    hand ? el("span", { class: "hand-icon", "data-testid": `hand-${p.id}`, title: t("hand_raised") }, icon("hand")) : null,
    icon(muted ? "mic-off" : "mic", `icon${muted ? " is-muted" : ""}`),
  );
  const actions = host && p.id !== app.self?.id ? hostTools(p, muted, hand) : null;
  return row(`person-${p.id}`, p, meta, icons, actions);
}

/** A host's tools on P, another joined participant: lower its hand, mute its microphone or ask it
 * to unmute, make it a co-host or take the role back, remove it. Asking to unmute and the roles
 * are for participants of this page's protocol only (ORS 8.15, 8.19); a partner's participant's
 * hand is lowered at its home too (8.17, 14.7). */
function hostTools(p, muted, hand) {
  const ors = originGroup(p.origin) === "ors";
  const pid = { participant_id: p.id };
  const mic = liveMicTrack(p);
  const tools = [];
  if (hand) {
    tools.push(
      actionButton("btn-tertiary", `lower-hand-${p.id}`, t("lower_hand_name", p.name), t("lower_hand"), () =>
        request("hand", { ...pid, raised: false }),
      ),
    );
  }
  if (!muted && mic) {
    tools.push(
      actionButton("btn-tertiary", `mute-${p.id}`, t("mute_name", p.name), t("mute"), () =>
        request("mute", { track_id: mic, muted: true }),
      ),
    );
  } else if (muted && ors) {
    const ask = async () => {
      if (await request("unmute_request", { ...pid, kind: "audio" })) toast(t("asked_unmute", isolated(p.name)));
    };
    tools.push(actionButton("btn-tertiary", `ask-unmute-${p.id}`, t("ask_unmute_name", p.name), t("ask_unmute"), ask));
  }
  if (ors) {
    const cohost = p.role === "host";
    tools.push(
      actionButton(
        "btn-tertiary",
        `${cohost ? "remove-cohost" : "make-cohost"}-${p.id}`,
        t(cohost ? "remove_cohost_name" : "make_cohost_name", p.name),
        t(cohost ? "remove_cohost" : "make_cohost"),
        () => request("set_role", { ...pid, role: cohost ? "member" : "host" }),
      ),
    );
  }
  // a word, in red, and a question first: not the × that closes the panel a row above
  const remove = async () => {
    const name = isolated(p.name);
    if (await confirmAction(t("remove_title", name), t("remove_text"), t("remove"))) request("remove", pid);
  };
  tools.push(
    actionButton("btn-tertiary btn-danger-text", `remove-${p.id}`, t("remove_name", p.name), t("remove"), remove),
  );
  return el("span", { class: "person-actions" }, ...tools);
}

/** The joined people, a section per origin with its count (only the origins present). */
function peopleGroups(joined) {
  return groupByOrigin(joined).map(({ group, people }) =>
    el(
      "section",
      { class: "people-group", "data-testid": `people-group-${group}`, "data-group": group },
      el(
        "h3",
        { class: "section-title" },
        t(`group_${group}`),
        " ",
        el("span", { class: "count", "data-testid": "group-count", text: `(${people.length})` }),
      ),
      el("ul", { class: "people" }, ...people.map((p) => personRow(p))),
    ),
  );
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
  $("people-list").replaceChildren(...peopleGroups(joined));
  $("lobby-list").replaceChildren(...lobby.map((p) => personRow(p, { lobby: true })));
  $("lobby-section").hidden = !(host && lobby.length);
  $("admit-all").hidden = !(host && lobby.length >= 2);
  $("admit-all").setAttribute("aria-label", t("admit_all_label", lobby.length));
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
    setUnread(0);
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

const CHAT_SHOWN = 500; // messages the chat panel keeps; the oldest go first

/** The unread count N on the chat button: its badge, and its name for screen readers. */
export function setUnread(n) {
  app.unread = n;
  $("chat-badge").hidden = n === 0;
  $("chat-badge").textContent = String(n);
  $("toggle-chat").setAttribute("aria-label", n ? t("chat_unread", n) : t("chat"));
}

/** A chat message's text: its http(s) links as links opening a new tab, the rest as text. */
function chatText(text) {
  return chatParts(text).map((part) =>
    part.href === undefined
      ? document.createTextNode(part.text)
      : el("a", { href: part.href, target: "_blank", rel: "noopener noreferrer", text: part.text }),
  );
}

/** Shows the chat message MSG (9.12); EARLIER for the history a late joiner receives (9.1). */
export function onChat(msg, earlier = false) {
  const log = $("chat-log");
  if (!msg || (msg.id && log.querySelector(`[data-mid="${CSS.escape(msg.id)}"]`))) return; // shown already
  $("chat-empty").hidden = true;
  const mine = msg.from === app.self?.id;
  const time = new Date(msg.ts || Date.now()).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
  const node = el(
    "div",
    { class: `msg${mine ? " mine" : ""}${earlier ? " earlier" : ""}`, "data-testid": "chat-message", "data-mid": msg.id },
    el("span", { class: "msg-head" }, el("strong", { dir: "auto", text: mine ? t("you_label") : msg.from_name || "?" }), time),
    el("span", { class: "msg-text", dir: "auto" }, ...chatText(msg.text)),
  );
  log.append(node);
  const shown = log.querySelectorAll(".msg");
  for (let i = 0; i < shown.length - CHAT_SHOWN; i++) shown[i].remove();
  log.scrollTop = log.scrollHeight;
  setUnread(unreadAfter(app.unread, msg, app.self?.id, !$("panel-chat").hidden, earlier));
}

/** The room's last messages (`joined.chat`, 9.1), under a heading saying they came before. */
export function showChatHistory(messages) {
  const log = $("chat-log");
  const shown = (msg) => msg?.id && log.querySelector(`[data-mid="${CSS.escape(msg.id)}"]`);
  // a page that resumed or joined again has seen some already: a heading only for what it missed
  const list = (Array.isArray(messages) ? messages : []).filter((msg) => msg && !shown(msg));
  if (!list.length) return;
  log.append(el("p", { class: "chat-earlier", "data-testid": "chat-earlier", text: t("earlier_messages") }));
  for (const msg of list) onChat(msg, true);
}
