// A small client of the Open Room Signalling protocol (ORS v1).
// No dependencies; usable from any page. One OrsClient = one WebSocket = one participant.
//
//   const c = new OrsClient({ base: location.origin, room: "demo" });
//   c.on("participant_joined", (m) => ...);
//   const reply = await c.connect(token, name);   // resolves with `joined` or `lobby`
//   await c.request("chat", { text: "hello" });
//
// Every request carries an `id`; `request()` resolves with the direct reply
// (`joined`, `lobby`, `answer`, `pong`, `ok`) or rejects with an OrsError holding the problem.

export class OrsError extends Error {
  constructor(problem) {
    super(problem?.detail || problem?.title || problem?.code || "error");
    this.problem = problem || {};
    this.code = this.problem.code || "internal";
    this.status = this.problem.status || 0;
  }
}

export class OrsClient {
  constructor({ base = location.origin, room, apiBase = "/ors/v1" } = {}) {
    this.base = base.replace(/\/$/, "");
    this.apiBase = apiBase;
    this.room = room;
    this.ws = null;
    this._seq = 0;
    this._pending = new Map();
    this._handlers = new Map();
    this.closed = false;
  }

  // --- HTTP -------------------------------------------------------------

  static async problemFrom(resp) {
    let problem = null;
    try {
      problem = await resp.json();
    } catch {
      /* not JSON */
    }
    if (!problem || typeof problem !== "object") problem = {};
    problem.status = problem.status || resp.status;
    if (!problem.code) {
      problem.code =
        { 400: "invalid_message", 401: "token_invalid", 403: "forbidden", 404: "room_not_found", 429: "rate_limited" }[
          resp.status
        ] || "internal";
    }
    return problem;
  }

  /** fetch(), with a network failure (no answer at all) as an OrsError `connection_failed`. */
  static async fetch(url, init) {
    try {
      return await fetch(url, init);
    } catch (e) {
      throw new OrsError({ code: "connection_failed", detail: `${e?.message || e}` });
    }
  }

  async roomInfo() {
    const resp = await OrsClient.fetch(`${this.base}${this.apiBase}/rooms/${encodeURIComponent(this.room)}`, {
      headers: { Accept: "application/json" },
    });
    if (!resp.ok) throw new OrsError(await OrsClient.problemFrom(resp));
    return resp.json();
  }

  /** A join token from the anonymous endpoint (spec 4.3); EARLIER, a token it gave for this room
   * and not expired, makes the new one keep its identity. */
  async requestToken(name, pin, earlier) {
    const body = { name };
    if (pin) body.pin = pin;
    if (earlier) body.token = earlier;
    const resp = await OrsClient.fetch(`${this.base}${this.apiBase}/rooms/${encodeURIComponent(this.room)}/tokens`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    if (!resp.ok) throw new OrsError(await OrsClient.problemFrom(resp));
    return resp.json();
  }

  // --- events -----------------------------------------------------------

  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this._handlers.get(type)?.delete(fn);
  }

  _emit(type, msg) {
    for (const key of [type, "*"]) {
      for (const fn of this._handlers.get(key) || []) {
        try {
          fn(msg);
        } catch (e) {
          console.error("ORS handler for", type, "failed:", e);
        }
      }
    }
  }

  // --- WebSocket --------------------------------------------------------

  wsUrl() {
    const u = new URL(this.base);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.pathname = `${this.apiBase}/rooms/${encodeURIComponent(this.room)}/ws`;
    u.search = "";
    u.hash = "";
    return u.toString();
  }

  /** Opens the socket and sends `join` (with RESUME, the `resume_token` of an earlier `joined`:
   * spec 6.6); resolves with the `joined` or `lobby` reply. */
  connect(token, name, resume) {
    return new Promise((resolve, reject) => {
      let opened = false;
      const ws = new WebSocket(this.wsUrl());
      this.ws = ws;
      ws.onopen = () => {
        opened = true;
        const join = { token };
        if (name) join.name = name;
        if (resume) join.resume = resume;
        this.request("join", join).then(resolve, reject);
      };
      ws.onmessage = (ev) => this._onMessage(ev.data);
      ws.onerror = () => {
        if (!opened) reject(new OrsError({ code: "connection_failed", detail: "WebSocket connection failed" }));
      };
      ws.onclose = (ev) => {
        this.closed = true;
        for (const [, p] of this._pending) {
          p.reject(new OrsError({ code: "connection_closed", detail: "Connection closed" }));
        }
        this._pending.clear();
        if (!opened) reject(new OrsError({ code: "connection_failed", detail: "WebSocket connection failed" }));
        this._emit("close", { code: ev.code, reason: ev.reason });
      };
    });
  }

  _onMessage(data) {
    if (this.closed) return; // closed by this side: what still arrives is for nobody
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn("ORS: ignoring a frame that is not JSON");
      return;
    }
    if (!msg || typeof msg.type !== "string") return;
    if (msg.reply_to && this._pending.has(msg.reply_to)) {
      const p = this._pending.get(msg.reply_to);
      this._pending.delete(msg.reply_to);
      if (msg.type === "error") p.reject(new OrsError(msg.problem));
      else p.resolve(msg);
      // Replies that are also state (joined, lobby, answer) are emitted too.
      if (msg.type === "error" || msg.type === "ok" || msg.type === "pong") return;
    }
    this._emit(msg.type, msg);
  }

  /** Sends a message without waiting for a reply. */
  send(type, payload = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify({ type, ...payload }));
    return true;
  }

  /** Sends a request with an id; resolves with its direct reply, rejects on `error`. */
  request(type, payload = {}, timeoutMs = 15000) {
    const id = `c${++this._seq}`;
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new OrsError({ code: "not_connected", detail: "Not connected" }));
        return;
      }
      const timer = setTimeout(() => {
        if (this._pending.delete(id)) reject(new OrsError({ code: "timeout", detail: `No reply to ${type}` }));
      }, timeoutMs);
      this._pending.set(id, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.ws.send(JSON.stringify({ type, id, ...payload }));
    });
  }

  /** Closes the socket; 1000 (normal closure) says the client is done, any other CODE (4000 to
   * 4999) that it gives up on this connection and may resume its participant (spec 6.6). */
  close(code = 1000, reason = "") {
    this.closed = true;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(code, reason);
  }
}
