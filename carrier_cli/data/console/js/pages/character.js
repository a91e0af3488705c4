// Character: the loaded definition, read-only, with the file's validation warnings.
import { api, q } from "../api.js";
import { append, errorBox, h } from "../dom.js";

function list(title, items) {
  return [h("h2", {}, `${title} (${items.length})`),
    items.length ? h("ul", { class: "lines" }, items.map((i) => h("li", {}, i))) : h("p", { class: "muted" }, "none")];
}

export async function render(root, [agentParam]) {
  const { agents } = await api("/v1/agents");
  const agent = agents.find((a) => a.name.toLowerCase() === (agentParam || "").toLowerCase()) || agents[0];
  if (!agent) { root.append(h("p", {}, "No character is served here.")); return; }
  const picker = h("select", { id: "char-agent", onchange: () => { location.hash = `#/character/${q(picker.value)}`; } },
    agents.map((a) => h("option", { value: a.name, selected: a.name === agent.name }, a.name)));
  append(root, [h("h1", {}, "Character"),
    agents.length > 1 ? h("div", {}, h("label", { for: "char-agent" }, "Character"), picker) : null]);
  let c;
  try { c = await api(`/v1/agents/${q(agent.name)}/character`); } catch (error) { root.append(errorBox(error)); return; }
  root.append(
    h("section", { class: "card", "aria-labelledby": "char-warnings" },
      h("h2", { id: "char-warnings" }, `Validation warnings (${c.warnings.length})`),
      c.warnings.length
        ? h("ul", { class: "lines warn" }, c.warnings.map((w) =>
            h("li", {}, `${c.file || "file"}${w.line ? ":" + w.line : ""}: ${w.path ? w.path + ": " : ""}${w.message}`)))
        : h("p", { class: "ok" }, "None: the file validates cleanly.")),
    h("section", { class: "card" },
      h("dl", { class: "facts" },
        h("dt", {}, "Name"), h("dd", {}, c.name),
        h("dt", {}, "Username"), h("dd", {}, c.username || "–"),
        h("dt", {}, "Model"), h("dd", {}, `${c.model.provider}:${c.model.large}` + (c.model.small ? ` (small: ${c.model.small})` : "")),
        h("dt", {}, "Temperature"), h("dd", {}, String(c.model.temperature)),
        h("dt", {}, "Max tokens"), h("dd", {}, String(c.model.max_tokens)),
        h("dt", {}, "Knowledge"), h("dd", {}, `${c.knowledge} entries`),
        h("dt", {}, "File"), h("dd", {}, c.file || "built in")),
      c.system ? [h("h2", {}, "System prompt"), h("pre", {}, c.system)] : null,
      list("Bio", c.bio), list("Lore", c.lore), list("Adjectives", c.adjectives), list("Topics", c.topics),
      list("Style (all)", c.style.all), list("Style (chat)", c.style.chat), list("Style (post)", c.style.post),
      h("h2", {}, `Message examples (${c.message_examples.length})`),
      c.message_examples.map((conversation) => h("ol", { class: "lines" },
        conversation.map((m) => h("li", {}, h("strong", {}, m.name), ": ", m.text)))),
      list("Post examples", c.post_examples)));
}
