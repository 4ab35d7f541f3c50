// Admin: API keys (create: the key is shown once; revoke) and the audit log with
// filters (action, who) and older pages.

import {api} from "../api.js";
import {fill, h, table, toast, when} from "../dom.js";

const ROLES = ["viewer", "operator", "author", "admin"];
const AUDIT_PAGE = 100;

export async function renderAdmin(main) {
  const keysEl = h("div", {id: "keys"});
  const shown = h("div", {id: "new-key"});
  const auditEl = h("div", {id: "audit"});
  let before = null;
  const pages = [];

  async function loadKeys() {
    const keys = await api("GET", "/keys");
    fill(keysEl, table([
      {title: "Id", cell: (k) => k.key_id},
      {title: "Name", cell: (k) => k.name},
      {title: "Role", cell: (k) => k.role},
      {title: "Created", cell: (k) => when(k.created_at)},
      {title: "Revoked", cell: (k) => k.revoked_at ? when(k.revoked_at) : h("button", {
        type: "button", class: "danger", dataset: {revoke: k.key_id}, onclick: async () => {
          if (!confirm(`Revoke key ${k.name} (${k.key_id})? Its clients are refused within seconds.`)) return;
          try {
            await api("DELETE", `/keys/${encodeURIComponent(k.key_id)}`);
            toast("Revoked");
            await loadKeys();
          } catch (error) {
            toast(`Revoke failed: ${error.message}`, true);
          }
        }}, "Revoke")},
    ], keys));
  }

  const name = h("input", {name: "name", required: true, placeholder: "ci-bot"});
  const role = h("select", {name: "role"}, ROLES.map((r) => h("option", {value: r}, r)));
  const createForm = h("form", {class: "card row", id: "create-key", onsubmit: async (event) => {
    event.preventDefault();
    try {
      const created = await api("POST", "/keys", {body: {name: name.value.trim(), role: role.value}});
      fill(shown, h("p", {}, `Key ${created.name} (${created.role}); copy it now, it is not shown again:`),
        h("p", {class: "key-once"}, created.key));
      name.value = "";
      await loadKeys();
    } catch (error) {
      toast(`Create failed: ${error.message}`, true);
    }
  }}, h("label", {}, "Name", name), h("label", {}, "Role", role),
  h("button", {type: "submit"}, "Create key"));

  const action = h("input", {placeholder: "e.g. run.cancel", "aria-label": "Action"});
  const who = h("input", {placeholder: "key name", "aria-label": "Who"});
  const olderButton = h("button", {type: "button", class: "secondary"}, "Older →");

  async function loadAudit() {
    const entries = await api("GET", "/audit", {query: {limit: AUDIT_PAGE, before: before ?? undefined}});
    const a = action.value.trim();
    const w = who.value.trim().toLowerCase();
    const rows = entries.filter((e) => (!a || e.action.startsWith(a))
      && (!w || e.who.toLowerCase().includes(w)));
    fill(auditEl, table([
      {title: "When", cell: (e) => when(e.ts)},
      {title: "Who", cell: (e) => `${e.who} (${e.role})`},
      {title: "Action", cell: (e) => e.action},
      {title: "Target", cell: (e) => e.target || "—"},
      {title: "Request", cell: (e) => `${e.method} ${e.path}`},
      {title: "From", cell: (e) => e.client || "—"},
      {title: "Details", wrap: true, cell: (e) => e.details ? JSON.stringify(e.details) : ""},
    ], rows, {empty: "No entry matches on this page."}));
    olderButton.disabled = entries.length < AUDIT_PAGE;
    olderButton.onclick = () => {
      pages.push(before);
      before = entries[entries.length - 1].ts;
      loadAudit();
    };
  }

  const auditFilters = h("form", {class: "row", onsubmit: (event) => {
    event.preventDefault();
    before = null;
    pages.length = 0;
    loadAudit();
  }}, action, who, h("button", {type: "submit", class: "secondary"}, "Filter"),
  h("button", {type: "button", class: "secondary", onclick: () => {
    before = pages.length ? pages.pop() : null;
    loadAudit();
  }}, "← Newer"), olderButton);

  fill(main, h("h1", {}, "Admin"), h("h2", {}, "API keys"), createForm, shown, keysEl,
    h("h2", {}, "Audit log"), auditFilters, auditEl);
  await Promise.all([loadKeys(), loadAudit()]);
}
