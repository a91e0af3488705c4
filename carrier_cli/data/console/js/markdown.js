// Markdown to sanitised DOM: marked renders, DOMPurify keeps only inert HTML (no script,
// no event handler attribute, no javascript: URL, no form or frame). The page's
// Content-Security-Policy (no inline script) is the second line of defence.
import { marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";

marked.setOptions({ gfm: true, breaks: true, async: false });

const PURIFY = {
  USE_PROFILE: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
  FORBID_ATTR: ["style"],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
  if (node.tagName === "IMG") {
    // Only same-origin or data: images would load anyway (CSP); say so for others.
    const src = node.getAttribute("src") || "";
    if (!src.startsWith("data:image/") && !src.startsWith("/")) {
      node.replaceWith(document.createTextNode(`[image: ${node.getAttribute("alt") || src}]`));
    }
  }
});

export function renderMarkdown(text) {
  const html = marked.parse(String(text ?? ""));
  return DOMPurify.sanitize(html, PURIFY);
}
