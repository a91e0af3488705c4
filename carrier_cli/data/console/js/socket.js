// One WebSocket to /v1/ws for the whole console: the key goes as a subprotocol (never in
// the URL), rooms are followed with `subscribe`, and after a drop (a server restart,
// a network change) it reconnects with backoff and subscribes again with `since` = the
// last message seen in each room, so the server replays what was missed.

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 5000];
const FATAL = new Set([1008, 4401, 4429]); // a key problem: reconnecting cannot help

export class Socket {
  constructor() {
    this.ws = null;
    this.key = null;
    this.listeners = new Set();
    this.rooms = new Map(); // "agent|room" -> {agent, room, since}
    this.attempt = 0;
    this.stopped = true;
    this.timer = null;
    this.state = "closed";
  }

  on(listener) { this.listeners.add(listener); return () => this.listeners.delete(listener); }

  emit(frame) { for (const listener of [...this.listeners]) listener(frame); }

  setState(state) { this.state = state; this.emit({ type: "connection", state }); }

  /** Connect; resolves with the `authenticated` frame, rejects with {code, message, hint}. */
  connect(key) {
    this.key = key;
    this.stopped = false;
    this.everOpened = false;
    return this.open();
  }

  open() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
    return new Promise((resolve, reject) => {
      let settled = false;
      let lastError = null;
      const ws = new WebSocket(url, ["carrier.v1", this.key]);
      this.ws = ws;
      ws.onmessage = (event) => {
        let frame;
        try { frame = JSON.parse(event.data); } catch { return; }
        if (frame.type === "authenticated") {
          this.attempt = 0;
          this.everOpened = true;
          settled = true;
          this.setState("open");
          for (const sub of this.rooms.values()) this.sendSubscribe(sub);
          resolve(frame);
          return;
        }
        if (frame.type === "error" && !settled) lastError = frame;
        if (frame.type === "subscribed") this.bind(frame);
        if (frame.type === "message.created" && frame.data && frame.data.message) {
          this.seen(frame.agent, frame.room, frame.data.message.id);
        }
        this.emit(frame);
      };
      ws.onclose = (event) => {
        if (this.ws !== ws) return; // closed by us, or replaced
        this.ws = null;
        const fatal = FATAL.has(event.code);
        if (!settled) {
          settled = true;
          reject({ ...(lastError || {
            code: "unreachable", message: "Could not reach the server's WebSocket.",
            hint: "Is `carrier serve` running and reachable at this address?" }),
            closeCode: event.code });
        }
        if (fatal && this.everOpened) this.emit({ type: "signed-out", code: event.code });
        if (fatal || this.stopped || !this.everOpened) {
          this.stopped = true;
          this.setState("closed");
          return;
        }
        this.schedule();
      };
    });
  }

  schedule() {
    this.setState("reconnecting");
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { if (!this.stopped) this.open().catch(() => {}); }, delay);
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.rooms.clear();
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(1000); }
    this.setState("closed");
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      throw { code: "disconnected", message: "Not connected to the server right now.",
              hint: "The console reconnects by itself; send again in a moment." };
    }
    this.ws.send(JSON.stringify(frame));
  }

  sendSubscribe(sub) {
    const frame = { type: "subscribe", agent: sub.agent, room: sub.room };
    if (sub.since) frame.since = sub.since;
    try { this.send(frame); } catch { /* sent again on reconnect */ }
  }

  /** Follow a room; `since`: the last message already shown (the server replays after it). */
  subscribe(agent, room, since) {
    const sub = { agent, room, since: since || null, roomId: null };
    this.rooms.set(`${agent}|${room}`, sub);
    this.sendSubscribe(sub);
    return sub;
  }

  unsubscribe(agent, room) {
    const sub = this.rooms.get(`${agent}|${room}`);
    if (!sub) return;
    this.rooms.delete(`${agent}|${room}`);
    try { this.send({ type: "unsubscribe", agent, room }); } catch { /* gone anyway */ }
  }

  bind(frame) {
    const name = String(frame.agent).toLowerCase();
    for (const sub of this.rooms.values()) {
      if (sub.agent.toLowerCase() === name &&
          (sub.room === frame.room.key || sub.room === frame.room.id)) sub.roomId = frame.room.id;
    }
  }

  /** Remember the newest message of a room (by room id), for `since` on a reconnect. */
  seen(agent, roomId, messageId) {
    for (const sub of this.rooms.values()) {
      if (sub.roomId === roomId) sub.since = messageId;
    }
  }
}

export const socket = new Socket();
