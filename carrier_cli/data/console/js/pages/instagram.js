// Instagram: the journal, the publishing quota as a bar, and a form that posts an image
// with a caption (admin scope), following its steps live by polling its status_url.
import { api, can } from "../api.js";
import { clear, errorBox, field, fmtTime, h } from "../dom.js";

const STEPS = ["prepared", "uploaded", "container_created", "container_finished", "publishing", "published"];
const POLL_MS = 400;
const POLL_LIMIT = 450; // 3 minutes of polling at most

export async function render(root) {
  const quota = h("div", { id: "ig-quota" });
  const journal = h("div", { id: "ig-journal" });
  const file = h("input", { type: "file", accept: "image/jpeg,image/png,image/webp", required: true });
  const caption = h("textarea", { rows: "3", maxlength: "2200" });
  const progress = h("div", { id: "ig-progress", "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-labelledby": "ig-form-title" },
    h("h2", { id: "ig-form-title" }, "Post an image"),
    field("Image", file, "ig-file"), field("Caption", caption, "ig-caption"),
    h("button", { type: "submit" }, "Publish"), progress);
  root.append(h("h1", {}, "Instagram"),
    h("section", { class: "card", "aria-labelledby": "ig-quota-title" },
      h("h2", { id: "ig-quota-title" }, "Publishing quota"), quota),
    can("admin") ? form : h("p", { class: "muted" }, "Posting needs an admin key."),
    h("section", { class: "card", "aria-labelledby": "ig-journal-title" },
      h("h2", { id: "ig-journal-title" }, "Journal"), journal));
  let stopped = false;

  async function loadQuota() {
    try {
      const limit = await api("/v1/instagram/limit");
      const used = Math.min(limit.quota_usage, limit.quota_total);
      const pct = limit.quota_total ? Math.round((100 * used) / limit.quota_total) : 0;
      const bar = h("div", { class: "bar", role: "progressbar", "aria-valuemin": "0",
        "aria-valuemax": String(limit.quota_total), "aria-valuenow": String(used),
        "aria-label": "Posts published in the window" }, h("span", {}));
      bar.firstChild.style.width = `${pct}%`; // CSSOM, not an inline style attribute (CSP)
      clear(quota).append(bar, h("p", {},
        `${limit.quota_usage} of ${limit.quota_total} posts in the last ${Math.round(limit.quota_duration / 3600)} h; ` +
        `${limit.remaining} left` + (limit.next_free_slot ? `; next free slot ${fmtTime(limit.next_free_slot)}` : "")));
    } catch (error) { clear(quota).append(errorBox(error)); }
  }

  async function loadJournal() {
    try {
      const { posts } = await api("/v1/instagram/posts?limit=20");
      clear(journal).append(posts.length ? h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["#", "Kind", "Status", "Step", "Media id", "Link", "Caption", "Error", "Created"]
          .map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, posts.map((p) => h("tr", { "data-post": String(p.post_id) },
          h("td", {}, String(p.post_id)), h("td", {}, p.kind), h("td", {}, p.status), h("td", {}, p.step),
          h("td", {}, p.media_id || "–"),
          h("td", {}, p.permalink && /^https:\/\//.test(p.permalink)
            ? h("a", { href: p.permalink, rel: "noopener noreferrer", target: "_blank" }, "open") : "–"),
          h("td", {}, p.caption), h("td", { class: p.error ? "error" : "" }, p.error || ""),
          h("td", {}, fmtTime(p.created_at)))))))
        : h("p", { class: "muted" }, "No posts yet."));
    } catch (error) { clear(journal).append(errorBox(error)); }
  }

  function steps(post) {
    const reached = STEPS.indexOf(post.step);
    return h("ol", { class: "steps", "aria-label": "Progress" }, STEPS.map((s, i) =>
      h("li", { class: post.status === "failed" && i === reached + 1 ? "failed" : i <= reached ? "done" : "" }, s)));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(progress);
    if (!file.files.length) { progress.append(errorBox({ message: "Choose an image first." })); return; }
    const body = new FormData();
    body.append("media", file.files[0]);
    body.append("caption", caption.value);
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const accepted = await api("/v1/instagram/posts", { method: "POST", form: body });
      progress.append(h("p", {}, `Post ${accepted.post_id}: ${accepted.status}`));
      for (let i = 0; i < POLL_LIMIT && !stopped; i++) {
        const post = await api(accepted.status_url);
        clear(progress).append(h("p", { id: "ig-state" }, `Post ${post.post_id}: ${post.status}`), steps(post));
        if (post.status === "failed") { progress.append(errorBox({ message: post.error || "Publishing failed." })); break; }
        if (post.status === "published" && !post.publishing) {
          if (post.permalink) progress.append(h("p", {}, h("a", { href: post.permalink, target: "_blank", rel: "noopener noreferrer" }, post.permalink)));
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
      loadJournal();
      loadQuota();
    } catch (error) {
      progress.append(errorBox(error));
    } finally { button.disabled = false; }
  });

  await Promise.all([loadQuota(), loadJournal()]);
  return () => { stopped = true; };
}
