// The console's shell: sign in, the hash router, the header. Pages are modules under
// pages/, each `render(container, params)` returning an optional cleanup function.
import { api, ApiError, session } from "./api.js";
import { socket } from "./socket.js";
import { h, clear } from "./dom.js";

const PAGES = {
  chat: () => import("./pages/chat.js"),
  inspect: () => import("./pages/inspector.js"),
  memory: () => import("./pages/memory.js"),
  character: () => import("./pages/character.js"),
  instagram: () => import("./pages/instagram.js"),
  usage: () => import("./pages/usage.js"),
};

const $ = (id) => document.getElementById(id);
let cleanup = null;
let rendering = 0;

export function status(text, ms = 3000) {
  const el = $("status");
  el.textContent = text;
  el.hidden = !text;
  clearTimeout(status.timer);
  if (text && ms) status.timer = setTimeout(() => { el.hidden = true; }, ms);
}

function signInError(error) {
  const el = $("signin-error");
  clear(el).append(error.message || String(error));
  if (error.hint) el.append(h("br"), h("span", { class: "muted" }, error.hint));
  el.hidden = false;
}

async function signIn(key) {
  $("signin-error").hidden = true;
  try {
    await api("/v1/agents", { key });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      throw { message: "That API key is not valid: it is wrong, incomplete or revoked.",
              hint: "Paste the whole key (it starts with crr_), or create one with `carrier api-keys create NAME`." };
    }
    throw error;
  }
  const hello = await socket.connect(key);
  session.key = key;
  session.scope = hello.scope;
  session.keyName = hello.key_name;
  session.agents = hello.agents || [];
  showShell();
}

function showShell() {
  $("signin").hidden = true;
  $("page").hidden = false;
  $("nav").hidden = false;
  $("who").hidden = false;
  const label = `${session.keyName || "local"} · ${session.scope}`;
  $("who-name").textContent = label;
  $("who-name").title = session.scope === "read"
    ? "Read-only key: browse only; chatting needs scope chat, changing memory admin." : "";
  route();
}

function signOut(message) {
  socket.close();
  session.key = null;
  session.scope = null;
  if (cleanup) { cleanup(); cleanup = null; }
  $("page").hidden = true;
  clear($("page"));
  $("nav").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  if (message) signInError(message);
  $("key").value = "";
  $("key").focus();
}

async function route() {
  if (!session.scope) return;
  const parts = (location.hash.replace(/^#\/?/, "") || "chat").split("/").map(decodeURIComponent);
  const name = PAGES[parts[0]] ? parts[0] : "chat";
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const ticket = ++rendering;
  if (cleanup) { cleanup(); cleanup = null; }
  const container = clear($("page"));
  const module = await PAGES[name]();
  if (ticket !== rendering) return;
  cleanup = (await module.render(container, parts.slice(1))) || null;
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · Carrier console`;
}

function start() {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    if (!key) { signInError({ message: "Paste an API key first." }); return; }
    const button = event.target.querySelector("button");
    button.disabled = true;
    try { await signIn(key); } catch (error) { signInError(error); $("key").select(); }
    finally { button.disabled = false; }
  });
  $("sign-out").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);
  window.addEventListener("carrier:unauthorized", () =>
    signOut({ message: "The server no longer accepts this key (revoked?). Sign in again." }));
  socket.on((frame) => {
    if (frame.type === "signed-out") {
      signOut({ message: "The server refused this key on reconnecting (revoked?). Sign in again." });
    } else if (frame.type === "connection") {
      if (frame.state === "reconnecting") status("Connection lost: reconnecting…", 0);
      else if (frame.state === "open" && session.scope) status("Connected", 1500);
    }
  });
  const saved = session.key;
  if (saved) {
    signIn(saved).catch((error) => { session.key = null; signInError(error); });
  } else {
    $("key").focus();
  }
}

start();
