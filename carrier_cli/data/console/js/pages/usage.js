// Usage: tokens and cost per day as a bar chart (all calls, or one character or model),
// and the totals per character or model (GET /v1/usage).
import { api } from "../api.js";
import { clear, errorBox, field, fmtCost, fmtNumber, h } from "../dom.js";

export async function render(root) {
  const since = h("select", {}, [["7d", "7 days"], ["30d", "30 days"], ["62d", "62 days"]]
    .map(([v, l]) => h("option", { value: v, selected: v === "30d" }, l)));
  const by = h("select", {}, ["character", "model"].map((v) => h("option", { value: v }, v)));
  const only = h("select", {}, h("option", { value: "" }, "everything"));
  const measure = h("select", {}, [["tokens", "tokens"], ["cost", "cost"]].map(([v, l]) => h("option", { value: v }, l)));
  const chart = h("div", { id: "usage-chart" });
  const table = h("div", { id: "usage-table" });
  root.append(h("h1", {}, "Usage"),
    h("form", { class: "card row", "aria-label": "Usage filters" },
      field("Since", since, "usage-since"), field("Group by", by, "usage-by"),
      field("Chart of", only, "usage-only"), field("Measure", measure, "usage-measure")),
    h("section", { class: "card", "aria-labelledby": "usage-chart-title" },
      h("h2", { id: "usage-chart-title" }, "Per day"), chart),
    h("section", { class: "card", "aria-labelledby": "usage-table-title" },
      h("h2", { id: "usage-table-title" }, "Totals"), table));

  async function load() {
    const params = new URLSearchParams({ by: by.value, since: since.value });
    if (only.value) params.append(by.value, only.value);
    let usage;
    try { usage = await api(`/v1/usage?${params}`); } catch (error) {
      clear(chart).append(errorBox(error)); clear(table); return;
    }
    const keep = only.value;
    clear(only).append(h("option", { value: "" }, "everything"),
      ...usage.rows.map((r) => h("option", { value: r.key, selected: r.key === keep }, r.key)));
    // every UTC day of the period, quiet ones as zeros, so the bars sit on a time axis
    const known = new Map(usage.days.map((d) => [d.key, d]));
    const days = [];
    const span = parseInt(since.value, 10);
    for (let i = span - 1; i >= 0; i--) {
      const key = new Date(Date.now() - i * 86400000).toISOString().slice(0, 10);
      days.push(known.get(key) || { key, calls: 0, input_tokens: 0, output_tokens: 0, cost_usd: 0 });
    }
    usage.days = days;
    const value = (d) => measure.value === "cost" ? d.cost_usd : d.input_tokens + d.output_tokens;
    const top = Math.max(1e-9, ...usage.days.map(value));
    const any = usage.days.some((d) => d.calls);
    clear(chart).append(any
      ? h("div", { class: "chart", role: "img", "aria-label":
          `${measure.value} per day: ` + usage.days.map((d) => `${d.key} ${value(d)}`).join(", ") },
          usage.days.map((d) => {
            const bar = h("span", { title: `${d.key}: ${fmtNumber(d.input_tokens + d.output_tokens)} tokens, ${fmtCost(d.cost_usd)}` });
            bar.style.height = `${(100 * value(d)) / top}%`;
            return h("div", { class: "col" }, bar);
          }))
      : h("p", { class: "muted" }, "No model calls recorded in this period."));
    if (any) chart.append(h("p", { class: "muted" }, `${usage.days[0].key} … ${usage.days[usage.days.length - 1].key}; highest ${measure.value === "cost" ? fmtCost(top) : fmtNumber(top) + " tokens"}`));
    const cols = ["", "calls", "input tokens", "output tokens", "cost"];
    const row = (r) => h("tr", {}, h("th", { scope: "row" }, r.key), h("td", { class: "num" }, fmtNumber(r.calls)),
      h("td", { class: "num" }, fmtNumber(r.input_tokens)), h("td", { class: "num" }, fmtNumber(r.output_tokens)),
      h("td", { class: "num" }, fmtCost(r.cost_usd) + (r.unpriced_calls ? ` (+${r.unpriced_calls} unpriced)` : "")));
    clear(table).append(h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, cols.map((c, i) => h("th", { scope: "col", class: i ? "num" : "" }, c)))),
      h("tbody", {}, usage.rows.map(row)), h("tfoot", {}, row(usage.total)))));
  }
  for (const control of [since, by, only, measure]) {
    control.addEventListener("change", () => { if (control === by) only.value = ""; load(); });
  }
  await load();
}
