// Chat: pick a character and a room, read its history, follow it live over the
// WebSocket, send with Enter (Shift+Enter: a new line) and watch the reply stream in.
import { api, can, q, session } from "../api.js";
import { socket } from "../socket.js";
import { clear, errorBox, fmtTime, h } from "../dom.js";
import { renderMarkdown } from "../markdown.js";
import { status } from "../main.js";

const HISTORY = 50;
const LAST_ROOM = "carrier.room";

function newRoomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function render(root, [agentParam, roomParam]) {
  const { agents } = await api("/v1/agents");
  if (!agents.length) { root.append(h("p", {}, "No character is served here.")); return; }
  const agent = agents.find((a) => a.name.toLowerCase() === (agentParam || "").toLowerCase()) || agents[0];
  const room = roomParam || sessionStorage.getItem(`${LAST_ROOM}.${agent.name}`) || newRoomKey();
  sessionStorage.setItem(`${LAST_ROOM}.${agent.name}`, room);

  const agentSelect = h("select", { id: "agent", onchange: () => go(agentSelect.value, "") },
    agents.map((a) => h("option", { value: a.name, selected: a.name === agent.name }, a.name)));
  const roomSelect = h("select", { id: "room" });
  const log = h("ol", { class: "log", id: "log", "aria-label": "Messages", "aria-live": "polite",
    tabindex: "0" });
  const thinking = h("p", { class: "thinking", id: "thinking", "aria-live": "polite" });
  const textarea = h("textarea", { id: "message", rows: "2", maxlength: "32000",
    placeholder: can("chat") ? `Message ${agent.name} (Enter sends, Shift+Enter: new line)`
                             : "This key is read-only", disabled: !can("chat") });
  const send = h("button", { type: "submit", disabled: !can("chat") }, "Send");
  const form = h("form", { class: "composer", "aria-label": "Send a message" },
    h("label", { for: "message", class: "skip" }, "Message"), textarea, send);
  const conn = h("span", { class: "conn muted", id: "conn" });

  root.append(h("section", { class: "chat", "aria-labelledby": "chat-title" },
    h("div", { class: "row chat-pickers" },
      h("div", {}, h("label", { for: "agent" }, "Character"), agentSelect),
      h("div", {}, h("label", { for: "room" }, "Room"), roomSelect),
      h("button", { type: "button", class: "secondary", id: "new-room",
        onclick: () => go(agent.name, newRoomKey()) }, "New room")),
    h("h1", { id: "chat-title" }, `${agent.name} · `, h("span", { class: "muted" }, room), " ", conn),
    can("chat") ? null : h("p", { class: "error", role: "note" },
      "This key is read-only (scope read): you can follow rooms, not send messages. " +
      "Sign in with a chat or admin key to talk."),
    log, thinking, form));

  function go(name, key) { location.hash = `#/chat/${q(name)}/${q(key || newRoomKey())}`; }

  // rooms for the picker (the current one first if it is new)
  api(`/v1/agents/${q(agent.name)}/rooms?limit=100`).then(({ rooms }) => {
    const options = rooms.map((r) => ({ value: r.source === "api" ? r.key : r.id,
      label: `${r.name || r.key}${r.source === "api" ? "" : ` (${r.source})`}` }));
    if (!options.some((o) => o.value === room)) options.unshift({ value: room, label: `${room} (new)` });
    clear(roomSelect).append(...options.map((o) =>
      h("option", { value: o.value, selected: o.value === room }, o.label)));
  }).catch(() => roomSelect.append(h("option", { value: room, selected: true }, room)));
  roomSelect.addEventListener("change", () => go(agent.name, roomSelect.value));

  const shown = new Map(); // message id -> li
  const streams = new Map(); // reply id -> {li, text}
  let roomId = null;
  let waiting = 0;
  let counter = 0;

  const nearBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  function place(li) {
    const stick = nearBottom();
    log.append(li);
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function bubble(id, sender, when, mine) {
    const meta = h("div", { class: "meta" }, h("strong", {}, sender), h("time", {}, fmtTime(when)));
    const body = h("div", { class: "body" });
    const li = h("li", { class: `msg${mine ? " mine" : ""}`, "data-id": id || "" }, meta, body);
    return { li, meta, body };
  }

  function setBody(li, text, markdown) {
    const body = li.querySelector(".body");
    if (markdown) { body.classList.remove("plain"); body.replaceChildren(renderMarkdown(text)); }
    else { body.classList.add("plain"); body.textContent = text; }
  }

  function inspectLink(meta, id) {
    if (meta.querySelector(".inspect")) return;
    meta.append(h("a", { class: "inspect", href: `#/inspect/${q(agent.name)}/${q(id)}`,
      title: "Prompt, raw output, timings, tokens and cost" }, "Inspect"));
  }

  function showMessage(message, before = null) {
    const fromAgent = message.sender && message.sender.agent;
    let li = shown.get(message.id);
    const stream = streams.get(message.id);
    if (!li && stream) { li = stream.li; streams.delete(message.id); li.classList.remove("streaming"); }
    if (!li) {
      const mine = !fromAgent && message.sender && message.sender.key === session.keyName;
      const name = (message.sender && message.sender.name) || (fromAgent ? agent.name : "someone");
      const made = bubble(message.id, name + (message.source && message.source !== "api" ? ` · ${message.source}` : ""),
        message.created, mine);
      li = made.li;
      if (before) log.insertBefore(li, before); else place(li);
    }
    shown.set(message.id, li);
    li.dataset.id = message.id;
    setBody(li, message.text, fromAgent);
    if (fromAgent && message.in_reply_to) inspectLink(li.querySelector(".meta"), message.id);
  }

  function token(data) {
    if (shown.has(data.reply_id)) return;
    let stream = streams.get(data.reply_id);
    if (!stream) {
      const made = bubble(data.reply_id, agent.name, new Date().toISOString(), false);
      made.li.classList.add("streaming");
      stream = { li: made.li, text: "", frame: 0 };
      streams.set(data.reply_id, stream);
      place(made.li);
      thinking.textContent = `${agent.name} is writing…`;
    }
    stream.text += data.text;
    if (!stream.frame) {
      stream.frame = requestAnimationFrame(() => {
        stream.frame = 0;
        const stick = nearBottom();
        setBody(stream.li, stream.text, true);
        if (stick) log.scrollTop = log.scrollHeight;
      });
    }
  }

  function inlineError(error) {
    place(h("li", { class: "msg" }, errorBox(error)));
  }

  function idle() { if (waiting <= 0) { waiting = 0; thinking.textContent = ""; } }

  const off = socket.on((frame) => {
    if (frame.type === "connection") {
      conn.textContent = frame.state === "open" ? "" : frame.state === "reconnecting" ? "reconnecting…" : "offline";
      if (frame.state !== "open") {
        for (const stream of streams.values()) stream.li.classList.remove("streaming");
        thinking.textContent = "";
      }
      return;
    }
    if (frame.type === "subscribed" && frame.agent.toLowerCase() === agent.name.toLowerCase()
        && (frame.room.key === room || frame.room.id === room)) {
      roomId = frame.room.id;
      log.dataset.state = "live"; // the room's events reach this page from here on
      return;
    }
    if (frame.type === "error") {
      if (frame.client_id && frame.client_id.startsWith("console-")) { waiting -= 1; idle(); }
      inlineError(frame);
      return;
    }
    if (frame.room !== roomId) return;
    if (frame.type === "replayed") {
      if (frame.count) status(`Caught up: ${frame.count} missed message${frame.count === 1 ? "" : "s"}`);
      if (frame.truncated) inlineError({ message: frame.message });
    } else if (frame.type === "message.created") {
      showMessage(frame.data.message);
    } else if (frame.type === "reply.token") {
      token(frame.data);
    } else if (frame.type === "reply.completed") {
      const reply = frame.data.reply;
      if (reply && reply.id) {
        const stream = streams.get(reply.id);
        if (stream) { stream.li.classList.remove("streaming"); setBody(stream.li, reply.text, true); }
      }
      if (frame.client_id) waiting -= 1;
      idle();
    } else if (frame.type === "typing") {
      if (frame.data.state === "start") thinking.textContent = `${agent.name} is thinking…`;
      else idle();
    } else if (frame.type === "agent.error") {
      if (frame.client_id) waiting -= 1;
      idle();
      const error = frame.data.error || {};
      inlineError({ message: `${agent.name} could not reply: ${error.message || error.type || "error"}`,
        hint: "The message is stored; send again to retry." });
    }
  });

  function olderButton(cursor) {
    const button = h("button", { type: "button", class: "secondary", id: "older" }, "Load older messages");
    const item = h("li", { class: "older" }, button);
    log.prepend(item);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const page = await api(`/v1/agents/${q(agent.name)}/rooms/${q(room)}/messages?limit=${HISTORY}&before=${q(cursor)}`);
        let first = item.nextSibling;
        for (const message of page.messages) { showMessage(message, first); first = shown.get(message.id); }
        item.remove();
        if (page.next) olderButton(page.next);
      } catch (error) { button.disabled = false; item.append(errorBox(error)); }
    });
  }

  // The composer works from the moment it is on screen: an Enter pressed while the
  // history is still on its way (a slow server, a long room) is sent once the room is
  // followed, so its reply is not missed, and never becomes a stray new line.
  let followed;
  const following = new Promise((resolve) => { followed = resolve; });

  async function submit() {
    const text = textarea.value;
    if (!text.trim() || !can("chat")) return;
    const clientId = `console-${++counter}`;
    textarea.value = "";
    waiting += 1;
    thinking.textContent = `${agent.name} is thinking…`;
    await following;
    try {
      socket.send({ type: "message", agent: agent.name, room, text, client_id: clientId });
    } catch (error) {
      waiting -= 1;
      idle();
      if (!textarea.value) textarea.value = text; // not sent: the text is the operator's
      inlineError(error);
      return;
    }
    textarea.focus();
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  if (can("chat")) textarea.focus();

  // history, then follow the room from its newest message on
  let since = null;
  try {
    const page = await api(`/v1/agents/${q(agent.name)}/rooms/${q(room)}/messages?limit=${HISTORY}`);
    for (const message of page.messages.slice().reverse()) showMessage(message);
    since = page.messages.length ? page.messages[0].id : null;
    if (page.next) olderButton(page.next);
  } catch (error) {
    if (error.status !== 404) inlineError(error);
  }
  log.scrollTop = log.scrollHeight;
  const sub = socket.subscribe(agent.name, room, since);
  followed();

  return () => { off(); socket.unsubscribe(sub.agent, sub.room); };
}
