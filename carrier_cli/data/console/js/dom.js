// Building DOM without innerHTML: every string becomes a text node, so nothing a model,
// a memory or another client wrote is ever parsed as markup (Markdown goes through
// markdown.js, which sanitises).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** An inline error: the message, and the hint on its own line. */
export function errorBox(error) {
  const box = h("div", { class: "error", role: "alert" }, error.message || String(error));
  if (error.hint) box.append(h("div", { class: "muted" }, error.hint));
  return box;
}

export function fmtNumber(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en");
}

export function fmtCost(usd) {
  if (usd === null || usd === undefined) return "unpriced";
  return "$" + Number(usd).toFixed(usd < 0.01 ? 6 : 4);
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleString();
}

export function field(label, control, id) {
  control.id = id;
  return h("div", {}, h("label", { for: id }, label), control);
}
