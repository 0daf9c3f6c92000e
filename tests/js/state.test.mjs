// The web page's state logic (gateway/web/static/state.js) under Node's test runner, no DOM: the
// participant list and track bookkeeping as the room's events (spec 9.x) leave them, avatars'
// initials, room names, and the texts of problems.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { translator } from "../../gateway/web/static/i18n.js";
import {
  ROOM_RE,
  initials,
  isHost,
  joinedList,
  lobbyList,
  micMuted,
  newAppState,
  normalizeRoom,
  operatorIssued,
  problemText,
  randomRoom,
  removeParticipant,
  trackMuted,
  trackPublished,
  trackUnpublished,
  upsertParticipant,
  videoOff,
} from "../../gateway/web/static/state.js";
import { jwt } from "./tokens.mjs";

const fr = translator("fr");
const en = translator("en");

function person(id, extra = {}) {
  return { id, name: id, origin: "ors", role: "member", state: "joined", joined_at: 0, tracks: [], ...extra };
}

function audio(id, participantId, extra = {}) {
  return { id, participant_id: participantId, kind: "audio", source: "microphone", muted: false, ...extra };
}

/** A page in a room as ME (a member unless said), with OTHERS already there. */
function inRoom(me = person("PA_me"), others = []) {
  const state = newAppState();
  state.state = "room";
  state.self = me;
  for (const p of others) state.participants.set(p.id, p);
  return state;
}

describe("the participant list", () => {
  test("lists the page's own participant first, then the others by arrival", () => {
    const state = inRoom(person("PA_me", { joined_at: 50 }), [
      person("PA_late", { joined_at: 30 }),
      person("PA_early", { joined_at: 10 }),
    ]);
    assert.deepEqual(
      joinedList(state).map((p) => p.id),
      ["PA_me", "PA_early", "PA_late"],
    );
  });

  test("someone joining is listed and announced", () => {
    const state = inRoom();
    assert.equal(upsertParticipant(state, person("PA_bruno", { joined_at: 5 }), true), "joined");
    assert.deepEqual(
      joinedList(state).map((p) => p.id),
      ["PA_me", "PA_bruno"],
    );
  });

  test("a guest knocking waits in the lobby list, not in the room's, until admitted", () => {
    const state = inRoom(person("PA_me", { role: "host" }));
    const guest = person("PA_guest", { state: "lobby" });
    assert.equal(upsertParticipant(state, guest, true), "waiting");
    assert.deepEqual(
      lobbyList(state).map((p) => p.id),
      ["PA_guest"],
    );
    assert.deepEqual(
      joinedList(state).map((p) => p.id),
      ["PA_me"],
    );

    assert.equal(upsertParticipant(state, { ...guest, state: "joined" }, false), "joined");
    assert.deepEqual(lobbyList(state), []);
    assert.deepEqual(
      joinedList(state).map((p) => p.id),
      ["PA_me", "PA_guest"],
    );
  });

  test("an update that changes no state is not announced again, and replaces the entry", () => {
    const state = inRoom(undefined, [person("PA_bruno")]);
    assert.equal(upsertParticipant(state, person("PA_bruno", { name: "Bruno M." }), false), "updated");
    assert.equal(state.participants.get("PA_bruno").name, "Bruno M.");
  });

  test("nobody is announced as joined to a page still in the lobby", () => {
    const state = inRoom();
    state.state = "lobby";
    assert.equal(upsertParticipant(state, person("PA_bruno"), true), "updated");
  });

  test("an update of the page's own participant keeps the tracks the page published", () => {
    const mic = audio("TR_mine", "PA_me");
    const state = inRoom(person("PA_me", { tracks: [mic] }));
    assert.equal(upsertParticipant(state, person("PA_me", { role: "host", tracks: [] }), false), "self");
    assert.equal(state.self.role, "host");
    assert.ok(isHost(state));
    assert.deepEqual(state.self.tracks, [mic]);
    assert.equal(state.participants.size, 0);
  });

  test("an event without a participant changes nothing", () => {
    const state = inRoom();
    assert.equal(upsertParticipant(state, undefined, true), null);
    assert.deepEqual(
      joinedList(state).map((p) => p.id),
      ["PA_me"],
    );
  });

  test("someone leaving is dropped from the list and from the speakers", () => {
    const state = inRoom(undefined, [person("PA_bruno"), person("PA_chloe")]);
    state.speaking.add("PA_bruno");
    assert.equal(removeParticipant(state, "PA_bruno", "left").id, "PA_bruno");
    assert.deepEqual(
      joinedList(state).map((p) => p.id),
      ["PA_me", "PA_chloe"],
    );
    assert.ok(!state.speaking.has("PA_bruno"));
    assert.equal(state.removed.size, 0);
  });

  test("a host keeps whom it removed or denied, to let them back in", () => {
    const state = inRoom(person("PA_me", { role: "host" }), [
      person("PA_bruno"),
      person("PA_guest", { state: "lobby" }),
      person("PA_chloe"),
    ]);
    removeParticipant(state, "PA_bruno", "removed");
    removeParticipant(state, "PA_guest", "denied");
    removeParticipant(state, "PA_chloe", "disconnected");
    assert.deepEqual([...state.removed.keys()], ["PA_bruno", "PA_guest"]);
  });

  test("a member does not keep a list of the removed", () => {
    const state = inRoom(undefined, [person("PA_bruno")]);
    removeParticipant(state, "PA_bruno", "removed");
    assert.equal(state.removed.size, 0);
  });

  test("a participant the page never saw leaving changes nothing", () => {
    const state = inRoom(undefined, [person("PA_bruno")]);
    assert.equal(removeParticipant(state, "PA_ghost", "left"), null);
    assert.equal(state.participants.size, 1);
  });
});

describe("tracks", () => {
  test("a microphone published unmuted shows the person unmuted; muted, muted", () => {
    const state = inRoom(undefined, [person("PA_bruno")]);
    const bruno = () => state.participants.get("PA_bruno");
    assert.ok(micMuted(state, bruno()), "no microphone at all is muted");
    assert.ok(trackPublished(state, audio("TR_a", "PA_bruno")));
    assert.ok(!micMuted(state, bruno()));

    assert.equal(trackMuted(state, "TR_a", "PA_bruno", true).muted, true);
    assert.ok(micMuted(state, bruno()));
    trackMuted(state, "TR_a", "PA_bruno", false);
    assert.ok(!micMuted(state, bruno()));
  });

  test("a track published again replaces the first, not doubles it", () => {
    const state = inRoom(undefined, [person("PA_bruno")]);
    trackPublished(state, audio("TR_a", "PA_bruno"));
    trackPublished(state, audio("TR_a", "PA_bruno", { muted: true }));
    assert.equal(state.participants.get("PA_bruno").tracks.length, 1);
    assert.ok(micMuted(state, state.participants.get("PA_bruno")));
  });

  test("a shared screen's audio does not make a muted microphone look open", () => {
    const state = inRoom(undefined, [
      person("PA_bruno", {
        tracks: [audio("TR_mic", "PA_bruno", { muted: true }), audio("TR_scr", "PA_bruno", { source: "screen_audio" })],
      }),
    ]);
    assert.ok(micMuted(state, state.participants.get("PA_bruno")));
  });

  test("an unpublished microphone leaves the person muted", () => {
    const state = inRoom(undefined, [person("PA_bruno", { tracks: [audio("TR_a", "PA_bruno")] })]);
    trackUnpublished(state, "TR_a", "PA_bruno");
    assert.deepEqual(state.participants.get("PA_bruno").tracks, []);
    assert.ok(micMuted(state, state.participants.get("PA_bruno")));
  });

  test("tracks of the page's own participant are kept on it", () => {
    const state = inRoom();
    assert.ok(trackPublished(state, audio("TR_mine", "PA_me")));
    assert.equal(trackMuted(state, "TR_mine", "PA_me", true).muted, true);
    assert.equal(state.self.tracks.length, 1);
  });

  test("events about unknown participants or tracks change nothing", () => {
    const state = inRoom(undefined, [person("PA_bruno")]);
    assert.equal(trackPublished(state, audio("TR_x", "PA_ghost")), false);
    assert.equal(trackPublished(state, undefined), false);
    assert.equal(trackMuted(state, "TR_nope", "PA_bruno", true), null);
    trackUnpublished(state, "TR_nope", "PA_ghost");
    assert.deepEqual(state.participants.get("PA_bruno").tracks, []);
  });

  test("the page's own microphone follows its switch, not its tracks", () => {
    const state = inRoom();
    state.hasMic = true;
    state.micOn = true;
    assert.ok(!micMuted(state, state.self));
    state.micOn = false;
    assert.ok(micMuted(state, state.self));
    state.micOn = true;
    state.hasMic = false;
    assert.ok(micMuted(state, state.self), "no microphone is a muted one");
  });

  test("a tile shows video only for an unmuted video track that arrived", () => {
    const video = { id: "TR_v", participant_id: "PA_bruno", kind: "video", source: "camera", muted: false };
    const state = inRoom(undefined, [person("PA_bruno", { tracks: [video] })]);
    const bruno = state.participants.get("PA_bruno");
    assert.ok(videoOff(state, bruno), "not received yet");
    state.remoteVideo.set("PA_bruno", { track: {}, track_id: "TR_v" });
    assert.ok(!videoOff(state, bruno));
    video.muted = true;
    assert.ok(videoOff(state, bruno));
  });
});

describe("initials", () => {
  // [what it shows, names and their initials]
  const cases = [
    ["first and last words' first letters", ["Alice Martin", "AM"], ["jean-marc de la Tour", "JT"], ["Élodie  Ørsted", "ÉØ"]],
    ["one word gives its first two letters", ["Alice", "AL"], ["王小明", "王小"]],
    [
      "a part in brackets is not taken for a word (not 'D(')",
      ["Dupont (DINUM)", "DU"],
      ["Marie Curie (DINUM)", "MC"],
      ["Marie Curie [invitée]", "MC"],
      ["(DINUM)", "DI"],
      ["Anne (DGFiP) Roux", "AR"],
    ],
    ["emoji and punctuation are not letters", ["🎉 Alice Martin", "AM"], ["Alice 🎉", "AL"], ["«Alice» !Martin", "AM"]],
    ["a name of emoji only keeps its first emoji whole", ["👍🏽 🎉", "👍🏽"], ["👨‍👩‍👧", "👨‍👩‍👧"]],
    ["a decomposed accent stays on its letter", ["e\u0301mile zola", "ÉZ"]],
    ["a phone number (no letter) is a phone", ["+33 6 12 34 56 78", "☎"], ["0612", "☎"]],
    ["a phone caller's masked name keeps its digits", ["Phone ••• 42", "P4"]],
    ["right-to-left names", ["שרה כהן", "שכ"]],
  ];
  for (const [what, ...names] of cases) {
    test(what, () => {
      for (const [name, expected] of names) assert.equal(initials(name), expected, name);
    });
  }
});

describe("room names", () => {
  test("what a person types or pastes becomes a room name", () => {
    assert.equal(normalizeRoom("  Comité Budget  "), "comité-budget");
    assert.equal(normalizeRoom("https://gw.example.org/r/cabinet-meeting?x=1"), "cabinet-meeting");
    assert.equal(normalizeRoom(""), "");
  });

  test("a random room name is a valid one", () => {
    for (let i = 0; i < 20; i++) assert.match(randomRoom(), ROOM_RE);
    assert.equal(randomRoom(new Uint8Array(10)), "aaa-aaaa-aaa");
  });
});

describe("tokens", () => {
  test("a token of the anonymous endpoint is not the operator's", () => {
    assert.ok(!operatorIssued(jwt({ sub: "guest-x", ors: { anonymous: true } })));
    assert.ok(operatorIssued(jwt({ sub: "alice", ors: { role: "host" } })));
    assert.ok(!operatorIssued("not a token"));
    assert.ok(!operatorIssued(null));
  });
});

describe("problem texts", () => {
  test("a known code has its own text, in the page's language", () => {
    const err = { code: "pin_incorrect", problem: { code: "pin_incorrect", detail: "the PIN is not correct" } };
    assert.equal(problemText(err, en), "Wrong PIN. Check it with the organiser.");
    assert.equal(problemText(err, fr), "Code incorrect. Vérifiez-le auprès de l’organisateur.");
  });

  test("a problem as the server sends it (an `error` message) is read too", () => {
    const message = { type: "error", problem: { code: "forbidden", detail: "hosts only" } };
    assert.equal(problemText(message, fr), "Vous n’avez pas le droit de faire cela.");
  });

  test("an unknown code falls back to a translated generic text, not the server's English", () => {
    const err = { code: "something_new", message: "the server said this in English", problem: { detail: "English" } };
    assert.equal(problemText(err, fr), "Une erreur est survenue.");
    assert.equal(problemText(err, en), "Something went wrong.");
    assert.equal(problemText(new TypeError("x is undefined"), fr), "Une erreur est survenue.");
    assert.equal(problemText(undefined, fr), "Une erreur est survenue.");
  });

  test("the client's own connection problems say to check the connection", () => {
    for (const code of ["connection_failed", "connection_closed", "not_connected", "timeout"]) {
      assert.equal(problemText({ code }, fr), "Impossible de joindre le serveur. Vérifiez votre connexion.", code);
    }
  });
});
