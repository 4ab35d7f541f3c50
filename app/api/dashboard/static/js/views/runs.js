// Runs: counts by status, filters (status, workflow, trigger, time range), a search (an
// id's start, a part of a workflow's name or of an error, or name=value for a variable:
// GET /runs?q=), keyset pagination, and a live refresh every few seconds while the page
// is visible.
// The filters live in the hash (#/runs?status=failed&workflow=etl), so a filtered list
// is a permalink.

import {api} from "../api.js";
import {badge, between, fill, fmtDuration, h, keepFocus, table, when} from "../dom.js";

const STATUSES = ["pending", "running", "succeeded", "failed", "cancelled"];
export const REFRESH_MS = 3000;
const PAGE = 25;

function toUnix(local) {
  return local ? new Date(local).getTime() / 1000 : undefined;
}

export async function renderRuns(main, route) {
  const q = route.query;
  const filters = {status: q.get("status") || "", workflow: q.get("workflow") || "",
                   trigger: q.get("trigger") || "", from: q.get("from") || "",
                   to: q.get("to") || "", q: q.get("q") || ""};
  const cursors = [null]; // the cursor of each page seen: "Newer" goes back one
  let page = 0;
  let timer = null;

  const countsEl = h("div", {class: "counts", id: "run-counts", "aria-label": "Runs by status"});
  const listEl = h("div", {id: "runs-list"});
  const pager = h("div", {class: "actions"});
  const refreshed = h("span", {class: "muted", id: "refreshed"});

  function go(changes) {
    const next = {...filters, ...changes};
    const params = new URLSearchParams(Object.entries(next).filter(([, v]) => v));
    location.hash = `#/runs${params.size ? `?${params}` : ""}`;
  }

  const field = (name, label, attrs = {}) => h("label", {}, label,
    h("input", {name, value: filters[name], ...attrs}));
  const statusSelect = h("select", {name: "status"},
    h("option", {value: ""}, "any"),
    STATUSES.map((s) => h("option", {value: s, selected: s === filters.status}, s)));
  const search = h("input", {type: "search", name: "q", id: "run-search", value: filters.q,
                             placeholder: "id, workflow, error or name=value",
                             "aria-label": "Search runs"});
  const form = h("form", {class: "card row", id: "run-filters", onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(form);
    go({status: data.get("status"), workflow: data.get("workflow").trim(),
        trigger: data.get("trigger").trim(), from: data.get("from"), to: data.get("to")});
  }},
  h("label", {}, "Status", statusSelect),
  field("workflow", "Workflow", {list: "workflow-names", placeholder: "any"}),
  h("datalist", {id: "workflow-names"}),
  field("trigger", "Trigger", {placeholder: "api, schedule:<id>, …"}),
  field("from", "Created from", {type: "datetime-local"}),
  field("to", "Created before", {type: "datetime-local"}),
  h("button", {type: "submit"}, "Filter"),
  h("button", {type: "button", class: "secondary", onclick: () => go(
    {status: "", workflow: "", trigger: "", from: "", to: "", q: ""})}, "Clear"));
  const searchForm = h("form", {class: "row search", id: "run-search-form", role: "search",
                                 onsubmit: (event) => {
    event.preventDefault();
    go({q: search.value.trim()});
  }}, search, h("button", {type: "submit", class: "secondary"}, "Search"));

  const query = () => ({
    workflow: filters.workflow, trigger: filters.trigger,
    created_after: toUnix(filters.from), created_before: toUnix(filters.to),
    q: filters.q,
  });

  async function load() {
    const [counts, listing] = await Promise.all([
      api("GET", "/runs/counts", {query: query()}),
      api("GET", "/runs", {query: {...query(), status: filters.status || undefined,
                                  limit: PAGE, cursor: cursors[page] || undefined}}),
    ]);
    // Redrawn every few seconds: the keyboard keeps its place (same count, link, button).
    keepFocus(countsEl, () => fill(countsEl, STATUSES.map((s) => h("button", {
      type: "button", class: "count", "aria-pressed": String(filters.status === s),
      dataset: {status: s}, onclick: () => go({status: filters.status === s ? "" : s}),
    }, h("b", {}, String(counts.counts[s] ?? 0)), s)),
    h("div", {class: "count", dataset: {status: "total"}}, h("b", {}, String(counts.total)), "total")),
    (el) => el.dataset.status ? `[data-status="${CSS.escape(el.dataset.status)}"]` : null);
    keepFocus(listEl, () => fill(listEl, table([
      {title: "Run", cell: (r) => h("a", {href: `#/runs/${encodeURIComponent(r.run_id)}`}, r.run_id)},
      {title: "Workflow", cell: (r) => h("a", {href: `#/workflows/${encodeURIComponent(r.workflow)}`},
                                         `${r.workflow} v${r.version}`)},
      {title: "Status", cell: (r) => badge(r.status)},
      {title: "Trigger", cell: (r) => r.trigger},
      {title: "Started", cell: (r) => when(r.started_at || r.created_at)},
      {title: "Duration", cell: (r) => fmtDuration(between(r.started_at, r.finished_at))},
    ], listing.runs, {
      empty: filters.q ? `No run matches “${filters.q}”.` : "No runs match.",
      onclick: (r) => { location.hash = `#/runs/${encodeURIComponent(r.run_id)}`; },
      rowAttrs: (r) => ({dataset: {run: r.run_id, status: r.status}}),
    })), (el) => el.getAttribute("href") ? `a[href="${CSS.escape(el.getAttribute("href"))}"]` : null);
    cursors[page + 1] = listing.next_cursor;
    keepFocus(pager, () => fill(pager,
      h("button", {type: "button", class: "secondary", id: "runs-newer", disabled: page === 0,
                   onclick: () => { page -= 1; load(); }}, "← Newer"),
      h("span", {class: "muted"}, `Page ${page + 1}`),
      h("button", {type: "button", class: "secondary", id: "runs-older",
                   disabled: !listing.next_cursor,
                   onclick: () => { page += 1; load(); }}, "Older →")), (el) => el.id ? `#${el.id}` : null);
    refreshed.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }

  fill(main, h("h1", {}, "Runs"), countsEl, searchForm, form,
    h("p", {}, refreshed), listEl, pager);
  api("GET", "/workflows").then((found) => {
    fill(form.querySelector("#workflow-names"),
      found.workflows.map((w) => h("option", {value: w.name})));
  }).catch(() => {});
  await load();
  let stopped = false;
  const tick = () => {
    timer = setTimeout(async () => {
      if (document.visibilityState === "visible") await load().catch(() => {});
      if (!stopped) tick();
    }, REFRESH_MS);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
