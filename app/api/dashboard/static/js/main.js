// The dashboard's entry: the session, the sign-in form, and the hash router that
// draws one view at a time (#/runs, #/runs/<id>, #/runs/<id>/steps/<name>,
// #/workflows, #/workflows/<name>, #/schedules, #/workers, #/admin).
// Each view is render(main, route) -> cleanup, so its timers and streams stop on leave.

import {can, loadSession, session, signIn, signOut, whenSignedOut} from "./api.js";
import {fill, h, toast} from "./dom.js";
import {renderAdmin} from "./views/admin.js";
import {renderRun} from "./views/run.js";
import {renderRuns} from "./views/runs.js";
import {renderSchedules} from "./views/schedules.js";
import {renderWorkers} from "./views/workers.js";
import {renderWorkflow, renderWorkflows} from "./views/workflows.js";

const main = document.getElementById("view");
let cleanup = null;
let current = null; // the drawn view's key: a step drawer opens without redrawing the run

/** "#/runs/abc?status=failed" -> {parts: ["runs", "abc"], query: URLSearchParams} */
export function parseRoute(hash = location.hash) {
  const [path, search] = hash.replace(/^#\/?/, "").split("?");
  return {parts: path.split("/").filter(Boolean).map(decodeURIComponent),
          query: new URLSearchParams(search || "")};
}

function viewFor(route) {
  const [first, second] = route.parts;
  if (first === "runs" && second) return {key: `run:${second}`, render: renderRun};
  if (first === "workflows" && second) return {key: `wf:${second}`, render: renderWorkflow};
  if (first === "workflows") return {key: "workflows", render: renderWorkflows};
  if (first === "schedules") return {key: "schedules", render: renderSchedules};
  if (first === "workers") return {key: "workers", render: renderWorkers};
  if (first === "admin" && can("admin")) return {key: "admin", render: renderAdmin};
  return {key: `runs?${route.query}`, render: renderRuns};
}

async function route() {
  if (!session.signedIn) return showSignIn();
  const parsed = parseRoute();
  const view = viewFor(parsed);
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.toggleAttribute("aria-current", link.dataset.nav === (parsed.parts[0] || "runs"));
    if (link.hasAttribute("aria-current")) link.setAttribute("aria-current", "page");
  }
  if (view.key === current && cleanup?.update) return cleanup.update(parsed);
  if (cleanup) cleanup();
  current = view.key;
  document.getElementById("drawer").hidden = true;
  fill(main, h("p", {class: "muted"}, "Loading…"));
  try {
    cleanup = (await view.render(main, parsed)) || null;
  } catch (error) {
    cleanup = null;
    fill(main, h("p", {class: "error-text", role: "alert"}, error.message));
  }
  // What had the focus was drawn away (a sign-in form, the last view): the keyboard
  // starts again at the new view, not at the top of the page.
  if (document.activeElement === document.body) main.focus({preventScroll: true});
}

function showChrome() {
  document.getElementById("nav").hidden = !session.signedIn;
  document.getElementById("who").hidden = !session.signedIn;
  document.getElementById("sign-out").hidden = !session.auth;
  document.getElementById("who-name").textContent = session.signedIn
    ? `${session.name} (${session.role})` : "";
  for (const el of document.querySelectorAll("[data-role]")) el.hidden = !can(el.dataset.role);
}

function showSignIn(message) {
  if (cleanup) cleanup();
  cleanup = null;
  current = null;
  showChrome();
  document.getElementById("drawer").hidden = true;
  const error = h("p", {class: "error-text", role: "alert"}, message || "");
  const key = h("input", {type: "password", id: "key", name: "key", autocomplete: "off",
                          required: true, placeholder: "cf_…", "aria-label": "API key"});
  const form = h("form", {class: "card signin", id: "sign-in", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await signIn(key.value);
      showChrome();
      await route();
    } catch (err) {
      error.textContent = err.status === 401 ? "That key is unknown or revoked." : err.message;
    }
  }},
  h("h1", {}, "Sign in"),
  h("p", {class: "muted"}, "Paste an API key (chordflow keys create, or from an admin)."),
  h("label", {for: "key"}, "API key", key),
  h("p", {}, h("button", {type: "submit"}, "Sign in")), error);
  fill(main, form);
  key.focus();
}

document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await signOut();
  } catch (err) {
    toast(err.message, true);
  }
  showSignIn("Signed out.");
});

whenSignedOut(() => {
  session.signedIn = false;
  showSignIn("Your session ended: sign in again.");
});

addEventListener("hashchange", () => route());

loadSession().then(() => { showChrome(); route(); }).catch((error) => {
  fill(main, h("p", {class: "error-text", role: "alert"}, `The API did not answer: ${error.message}`));
});
