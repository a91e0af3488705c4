// The REST API, with the key from sessionStorage (never a URL or a cookie).

const KEY = "carrier.key";

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
    this.hint = error.hint || null;
    this.fields = error.fields || null;
  }
}

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  },
  scope: null,
  keyName: null,
  agents: [],
};

export function can(scope) {
  const order = { read: 1, chat: 2, admin: 3 };
  return (order[session.scope] || 0) >= order[scope];
}

export async function api(path, { method = "GET", body, form, key } = {}) {
  const headers = { Authorization: `Bearer ${key || session.key}` };
  let payload;
  if (form) {
    payload = form;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  } catch (exc) {
    throw Object.assign(new ApiError(0, { error: {
      code: "offline", message: "The server did not answer.",
      hint: "Is `carrier serve` running? The page retries when you try again." } }), { cause: exc });
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    if (response.status === 401 && !key) window.dispatchEvent(new CustomEvent("carrier:unauthorized"));
    throw new ApiError(response.status, data);
  }
  return data;
}

export const q = encodeURIComponent;
