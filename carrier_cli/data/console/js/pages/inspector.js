// Turn inspector: what one turn did (GET /v1/agents/{agent}/turns/{message_id}).
import { api, q } from "../api.js";
import { errorBox, fmtCost, fmtNumber, fmtTime, h } from "../dom.js";

export async function render(root, [agent, messageId]) {
  root.append(h("h1", {}, "Turn inspector"));
  if (!agent || !messageId) {
    root.append(h("p", {}, "Open a reply's “Inspect” link in the chat."));
    return;
  }
  let turn;
  try {
    turn = await api(`/v1/agents/${q(agent)}/turns/${q(messageId)}`);
  } catch (error) {
    root.append(errorBox(error));
    return;
  }
  const t = turn.totals;
  root.append(
    h("p", {}, h("a", { href: "#/chat", onclick: (event) => {
      if (history.length > 1) { event.preventDefault(); history.back(); } // to the room
    } }, "← Back to the chat")),
    h("section", { class: "card", "aria-labelledby": "turn-summary" },
      h("h2", { id: "turn-summary" }, "Summary"),
      h("dl", { class: "facts" },
        h("dt", {}, "Message"), h("dd", {}, h("code", {}, turn.message_id)),
        h("dt", {}, "Reply"), h("dd", {}, turn.reply_id ? h("code", {}, turn.reply_id) : "none"),
        h("dt", {}, "Started"), h("dd", {}, fmtTime(turn.started)),
        h("dt", {}, "Decision"), h("dd", {}, turn.decision || "–"),
        h("dt", {}, "Model calls"), h("dd", {}, String(t.calls)),
        h("dt", {}, "Tokens"), h("dd", { id: "turn-tokens" },
          `${fmtNumber(t.input_tokens)} in · ${fmtNumber(t.output_tokens)} out`),
        h("dt", {}, "Cost"), h("dd", {}, t.unpriced_calls && !t.cost_usd ? "unpriced" : fmtCost(t.cost_usd)))),
  );
  const timings = Object.entries(turn.timings || {});
  root.append(h("section", { class: "card", "aria-labelledby": "turn-timings" },
    h("h2", { id: "turn-timings" }, "Timings"),
    timings.length ? h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Stage"), h("th", { scope: "col", class: "num" }, "ms"))),
      h("tbody", {}, timings.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, v.toFixed(1)))))))
      : h("p", { class: "muted" }, "Stage timings are kept in memory for this server's last 50 turns.")));
  if (turn.prompts === "none") {
    root.append(h("p", { class: "muted" },
      "The prompts of this turn are no longer kept (older than this server's last 50 turns); " +
      "set log_prompts to store them with the usage records."));
  }
  turn.calls.forEach((call, index) => {
    const id = `call-${index}`;
    root.append(h("section", { class: "card call", "aria-labelledby": id },
      h("h2", { id }, `${call.purpose} · ${call.provider ? call.provider + ":" : ""}${call.model}`,
        call.attempt > 1 ? ` · attempt ${call.attempt}` : ""),
      h("p", { class: "muted" },
        [call.ms !== null ? `${call.ms.toFixed(0)} ms` : null,
         call.first_token_ms ? `first token ${call.first_token_ms.toFixed(0)} ms` : null,
         call.input_tokens !== null ? `${fmtNumber(call.input_tokens)} in / ${fmtNumber(call.output_tokens)} out tokens` : null,
         call.input_tokens !== null ? fmtCost(call.cost_usd) : null,
         call.outcome, call.failure ? `failed: ${call.failure}` : null].filter(Boolean).join(" · ")),
      call.system ? [h("h3", {}, "System prompt"), h("pre", { class: "system" }, call.system)] : null,
      h("h3", {}, "Rendered prompt"), h("pre", { class: "prompt" }, call.prompt ?? "(not kept)"),
      h("h3", {}, "Raw model output"), h("pre", { class: "output" }, call.output ?? "(none)")));
  });
}
