// Stored workflows: the catalog (latest version, state, last run, next scheduled run),
// and one workflow: a run form built from its declared variables, its text as written,
// its versions with a side-by-side diff and restore (a restore stores the old text as
// a new version), enable/disable, rename and delete.

import {api, can} from "../api.js";
import {badge, fill, h, table, toast, when} from "../dom.js";
import {sideBySide} from "../diff.js";

const enc = encodeURIComponent;

export async function renderWorkflows(main) {
  const [{workflows}, {schedules}] = await Promise.all([api("GET", "/workflows"),
                                                        api("GET", "/schedules")]);
  const next = new Map();
  for (const s of schedules) {
    if (!s.enabled || !s.next_run_at) continue;
    const prev = next.get(s.workflow);
    if (!prev || s.next_run_at < prev) next.set(s.workflow, s.next_run_at);
  }
  const last = new Map();
  await Promise.all(workflows.map(async (w) => {
    const page = await api("GET", "/runs", {query: {workflow: w.name, limit: 1}});
    if (page.runs.length) last.set(w.name, page.runs[0]);
  }));
  fill(main, h("h1", {}, "Workflows"), table([
    {title: "Workflow", cell: (w) => h("a", {href: `#/workflows/${enc(w.name)}`}, w.name)},
    {title: "Version", cell: (w) => String(w.version)},
    {title: "State", cell: (w) => w.enabled ? "enabled" : "disabled"},
    {title: "Last run", cell: (w) => {
      const run = last.get(w.name);
      return run ? h("span", {}, badge(run.status), " ",
                     h("a", {href: `#/runs/${enc(run.run_id)}`}, when(run.created_at))) : "—";
    }},
    {title: "Next scheduled", cell: (w) => when(next.get(w.name))},
    {title: "Updated", cell: (w) => when(w.updated_at)},
  ], workflows, {
    empty: "No stored workflow yet: store one with chordflow workflows create, or POST /api/v1/workflows.",
    onclick: (w) => { location.hash = `#/workflows/${enc(w.name)}`; },
    rowAttrs: (w) => ({dataset: {workflow: w.name}}),
  }));
}

/** A form input for a declared variable, typed by its default value. */
function variableInput(name, value) {
  const id = `var-${name}`;
  let input;
  if (typeof value === "boolean") {
    input = h("input", {type: "checkbox", id, name, checked: value, dataset: {type: "boolean"}});
  } else if (typeof value === "number") {
    input = h("input", {type: "number", id, name, value: String(value), step: "any", dataset: {type: "number"}});
  } else if (typeof value === "string") {
    input = h("input", {type: "text", id, name, value, dataset: {type: "string"}});
  } else {
    input = h("textarea", {id, name, dataset: {type: "json"}}, JSON.stringify(value ?? null, null, 2));
  }
  return h("label", {for: id}, `${name} (${input.dataset.type})`, input);
}

function readVariable(input) {
  switch (input.dataset.type) {
    case "boolean": return input.checked;
    case "number": return Number(input.value);
    case "string": return input.value;
    default: return JSON.parse(input.value);
  }
}

/** The variables a document declares: canonical ``variables``, or a dialect's
 *  ``base_context`` (the DAG engine's), with their defaults. */
export function declaredVariables(document) {
  const inner = document?.workflow_json && typeof document.workflow_json === "object"
    ? document.workflow_json : document;
  return inner?.variables || inner?.base_context || {};
}

export async function renderWorkflow(main, route) {
  const name = route.parts[1];
  const base = `/workflows/${enc(name)}`;
  const [stored, versions] = await Promise.all([api("GET", base), api("GET", `${base}/versions`)]);
  const latest = stored.version;
  let shown = latest;

  const head = h("div", {});
  const text = h("pre", {class: "light", id: "workflow-text"});
  const textTitle = h("h2", {});
  const diffBox = h("div", {id: "diff"});
  const fromSel = h("select", {"aria-label": "From version", id: "diff-from"});
  const toSel = h("select", {"aria-label": "To version", id: "diff-to"});
  for (const v of versions.versions) {
    fromSel.append(h("option", {value: v.version, selected: v.version === Math.max(latest - 1, 1)}, `v${v.version}`));
    toSel.append(h("option", {value: v.version, selected: v.version === latest}, `v${v.version}`));
  }

  async function showVersion(n) {
    shown = n;
    const version = await api("GET", `${base}/versions/${n}`);
    textTitle.textContent = `Version ${n} as written (${version.format})`;
    text.textContent = version.text;
  }

  async function showDiff() {
    const diff = await api("GET", `${base}/diff`, {query: {from: fromSel.value, to: toSel.value}});
    const s = diff.summary;
    fill(diffBox,
      h("p", {class: "muted"}, diff.identical ? "The two versions have the same content." :
        `Added: ${s.added.join(", ") || "—"}; removed: ${s.removed.join(", ") || "—"}; changed: `
        + `${s.changed.map((c) => `${c.step} (${c.fields.join(", ")})`).join("; ") || "—"}`
        + (s.workflow_fields.length ? `; workflow fields: ${s.workflow_fields.join(", ")}` : "")),
      sideBySide(diff.diff, `v${diff.from_version}`, `v${diff.to_version}`));
  }

  async function restore(n) {
    if (!confirm(`Store version ${n} of ${name} as a new version?`)) return;
    try {
      const version = await api("GET", `${base}/versions/${n}`);
      const saved = version.format === "yaml"
        ? await api("PUT", base, {yaml: version.text})
        : await api("PUT", base, {body: version.document});
      toast(`Version ${n} restored as version ${saved.version}`);
      await renderWorkflow(main, route);
    } catch (error) {
      toast(`Restore failed: ${error.message}`, true);
    }
  }

  async function change(label, fn) {
    try {
      const result = await fn();
      toast(label);
      return result;
    } catch (error) {
      toast(`${label} failed: ${error.message}`, true);
      return null;
    }
  }

  const authorActions = can("author") ? h("div", {class: "actions", id: "workflow-actions"},
    h("button", {type: "button", class: "secondary", id: stored.enabled ? "disable" : "enable",
                 onclick: async () => {
                   if (await change(stored.enabled ? "Disabled" : "Enabled", () =>
                     api("POST", `${base}/${stored.enabled ? "disable" : "enable"}`))) {
                     await renderWorkflow(main, route);
                   }
                 }}, stored.enabled ? "Disable" : "Enable"),
    h("button", {type: "button", class: "secondary", id: "rename", onclick: async () => {
      const to = prompt(`Rename ${name} to`, name);
      if (!to || to === name) return;
      if (await change("Renamed", () => api("POST", `${base}/rename`, {body: {new_name: to}}))) {
        location.hash = `#/workflows/${enc(to)}`;
      }
    }}, "Rename"),
    h("button", {type: "button", class: "danger", id: "delete", onclick: async () => {
      if (!confirm(`Delete ${name}? Its versions and runs are kept.`)) return;
      if (await change("Deleted", () => api("DELETE", base))) location.hash = "#/workflows";
    }}, "Delete")) : null;

  const runForm = can("operator") ? (() => {
    const declared = declaredVariables(stored.document);
    const inputs = Object.entries(declared).map(([k, v]) => variableInput(k, v));
    const message = h("p", {class: "error-text", role: "alert"});
    const form = h("form", {class: "card", id: "run-form", onsubmit: async (event) => {
      event.preventDefault();
      message.textContent = "";
      const variables = {};
      try {
        for (const input of form.querySelectorAll("[data-type]")) {
          const value = readVariable(input);
          if (JSON.stringify(value) !== JSON.stringify(declared[input.name])) variables[input.name] = value;
        }
      } catch (error) {
        message.textContent = `A variable is not valid JSON: ${error.message}`;
        return;
      }
      try {
        const created = await api("POST", `${base}/runs`, {body: {variables}});
        location.hash = `#/runs/${enc(created.run_id)}`;
      } catch (error) {
        const details = error.body?.errors?.map((e) => `${e.field || e.step || ""}: ${e.message}`);
        message.textContent = details?.length ? details.join("; ") : error.message;
      }
    }},
    h("h2", {}, "Run"),
    inputs.length ? h("div", {class: "row"}, inputs) : h("p", {class: "muted"}, "No declared variables."),
    h("p", {}, h("button", {type: "submit", disabled: !stored.enabled, id: "start-run"},
                 stored.enabled ? `Run ${name}` : "Disabled: enable it to run")),
    message);
    return form;
  })() : null;

  fill(head, h("h1", {}, name, " ", h("span", {class: "muted"}, `v${latest}`), " ",
               stored.enabled ? "" : badge("cancelled")),
    h("dl", {class: "kv card"},
      h("dt", {}, "Created"), h("dd", {}, when(stored.created_at), ` by ${stored.created_by || "?"}`),
      h("dt", {}, "Updated"), h("dd", {}, when(stored.updated_at)),
      h("dt", {}, "Digest"), h("dd", {}, stored.digest),
      h("dt", {}, "Runs"), h("dd", {}, h("a", {href: `#/runs?workflow=${enc(name)}`}, "every run of it"))));

  const versionsTable = table([
    {title: "Version", cell: (v) => `v${v.version}${v.version === latest ? " (latest)" : ""}`},
    {title: "Stored", cell: (v) => when(v.created_at)},
    {title: "By", cell: (v) => v.created_by || "—"},
    {title: "", cell: (v) => h("span", {class: "actions"},
      h("button", {type: "button", class: "secondary", onclick: () => showVersion(v.version)}, "View"),
      can("author") && v.version !== latest
        ? h("button", {type: "button", class: "secondary", dataset: {restore: String(v.version)},
                       onclick: () => restore(v.version)}, "Restore") : null)},
  ], [...versions.versions].reverse());

  fill(main, head, authorActions, runForm, textTitle, text,
    h("h2", {id: "versions-title"}, "Versions"), versionsTable,
    h("h2", {}, "Compare"),
    h("div", {class: "row"}, fromSel, "→", toSel,
      h("button", {type: "button", class: "secondary", id: "show-diff", onclick: showDiff}, "Diff")),
    diffBox);
  await showVersion(shown);
  if (versions.versions.length > 1) await showDiff();
}
