// Memory: semantic search with scores, filters by kind and room, the newest memories,
// add a fact (about a sender, or in a room) and delete (admin scope).
import { api, can, q } from "../api.js";
import { clear, errorBox, field, fmtTime, h } from "../dom.js";
import { status } from "../main.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const KINDS = ["", "message", "fact", "document", "fragment", "lore"];

export async function render(root) {
  const { agents } = await api("/v1/agents");
  let agent = agents[0] && agents[0].name;
  if (!agent) { root.append(h("p", {}, "No character is served here.")); return; }

  const agentSelect = h("select", {}, agents.map((a) => h("option", { value: a.name }, a.name)));
  const query = h("input", { type: "search", placeholder: "What to look for (empty: the newest)" });
  const kind = h("select", {}, KINDS.map((k) => h("option", { value: k }, k || "any kind")));
  const room = h("select", {}, h("option", { value: "" }, "any room"));
  const about = h("input", { type: "text", maxlength: "200",
    placeholder: "a sender.id, or an entity id" });
  const results = h("div", { id: "memory-results", "aria-live": "polite" });
  const search = h("form", { class: "card", role: "search", "aria-label": "Search memories" },
    h("div", { class: "row" },
      field("Character", agentSelect, "mem-agent"),
      field("Search", query, "mem-q"),
      field("Kind", kind, "mem-kind"),
      field("Room", room, "mem-room"),
      field("About", about, "mem-about"),
      h("button", { type: "submit" }, "Search")));

  const addKind = h("select", {}, ["fact", "lore", "document"].map((k) => h("option", { value: k }, k)));
  const addText = h("textarea", { rows: "3", maxlength: "500000", required: true });
  const addSender = h("input", { type: "text", maxlength: "200",
    placeholder: "facts: the sender.id of the person it is about (optional)" });
  const addResult = h("div", { "aria-live": "polite" });
  const add = h("form", { class: "card", "aria-labelledby": "mem-add-title" },
    h("h2", { id: "mem-add-title" }, "Add a memory"),
    h("div", { class: "row" }, field("Kind", addKind, "mem-add-kind"), field("About sender", addSender, "mem-add-sender")),
    field("Text", addText, "mem-add-text"),
    h("button", { type: "submit" }, "Add"), addResult);

  root.append(h("h1", {}, "Memory"), search, results,
    can("admin") ? add : h("p", { class: "muted" }, "Adding and deleting memories needs an admin key."));

  async function loadRooms() {
    clear(room).append(h("option", { value: "" }, "any room"));
    try {
      const { rooms } = await api(`/v1/agents/${q(agent)}/rooms?limit=100`);
      for (const r of rooms) room.append(h("option", { value: r.id }, `${r.name || r.key} (${r.source})`));
    } catch { /* the filter stays "any room" */ }
  }

  function item(memory) {
    const li = h("li", { "data-id": memory.id },
      h("div", { class: "meta" },
        memory.score !== undefined ? h("span", { class: "score", title: "cosine similarity" }, memory.score.toFixed(3)) : null, " ",
        h("span", { class: "badge" }, memory.kind), " ",
        memory.entity_id ? h("button", { type: "button", class: "link entity",
          title: "Show the memories from or about this person",
          onclick: () => { about.value = memory.entity_id; run(); } },
          `entity ${memory.entity_id.slice(0, 8)}`) : null, " ",
        h("span", { class: "muted" }, fmtTime(memory.created)), " ",
        can("admin") ? h("button", { type: "button", class: "link delete",
          "aria-label": `Delete memory ${memory.id.slice(0, 8)}`,
          onclick: (event) => remove(memory, li, event.currentTarget) }, "Delete") : null),
      h("div", { class: "text" }, memory.text));
    return li;
  }

  async function remove(memory, li, button) {
    if (!button.dataset.armed) { // a second press confirms (no modal dialog)
      button.dataset.armed = "1";
      button.textContent = "Press again to delete";
      return;
    }
    try {
      const { deleted } = await api(`/v1/agents/${q(agent)}/memories/${q(memory.id)}`, { method: "DELETE" });
      li.remove();
      status(`Deleted ${deleted} memor${deleted === 1 ? "y" : "ies"}`);
    } catch (error) { li.append(errorBox(error)); }
  }

  // Only the newest search renders: the first listing, still on its way when the operator
  // searches, must not replace the hits (nor a slow search a newer one).
  let latest = 0;

  async function run() {
    const mine = ++latest;
    const params = new URLSearchParams();
    if (kind.value) params.append("kind", kind.value);
    if (room.value) params.append("room", room.value);
    const person = about.value.trim();
    if (person) params.append(UUID.test(person) ? "entity" : "sender", person);
    clear(results).append(h("p", { class: "muted" }, "Searching…"));
    try {
      let items;
      if (query.value.trim()) {
        params.append("q", query.value.trim());
        params.append("k", "20");
        items = (await api(`/v1/agents/${q(agent)}/memories/search?${params}`)).hits;
      } else {
        params.append("limit", "30");
        items = (await api(`/v1/agents/${q(agent)}/memories?${params}`)).memories;
      }
      if (mine !== latest) return;
      clear(results).append(items.length
        ? h("ul", { class: "hits card" }, items.map(item))
        : h("p", { class: "muted" }, "No memories match."));
    } catch (error) { if (mine === latest) clear(results).append(errorBox(error)); }
  }

  search.addEventListener("submit", (event) => { event.preventDefault(); run(); });
  agentSelect.addEventListener("change", async () => { agent = agentSelect.value; await loadRooms(); run(); });
  add.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { kind: addKind.value, text: addText.value };
    if (addSender.value.trim() && addKind.value === "fact") body.sender = addSender.value.trim();
    clear(addResult);
    try {
      const added = await api(`/v1/agents/${q(agent)}/memories`, { method: "POST", body });
      addResult.append(h("p", { class: "ok" }, added.created ? "Added." : "Already stored."));
      addText.value = "";
      run();
    } catch (error) { addResult.append(errorBox(error)); }
  });
  await loadRooms();
  await run();
}
