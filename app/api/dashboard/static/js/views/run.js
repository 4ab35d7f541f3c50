// A run: its status, trigger, times and actions (cancel, re-run from the failed steps,
// relaunch with the same variables), its DAG coloured live from the event stream, a
// timeline of attempts, every step in a table, and its variables, outputs and error.
// #/runs/<id>/steps/<name> opens a step's drawer over it (a permalink per step).

import {api, can} from "../api.js";
import {drawDag, legend} from "../dag.js";
import {badge, between, fill, fmtDuration, h, json, keepFocus, table, toast, when} from "../dom.js";
import {drawGantt} from "../gantt.js";
import {LiveRun} from "../live.js";
import {openDrawer} from "./step.js";

const STEP_ROWS = 200;
const RUN_FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const STEP_FINAL = new Set(["succeeded", "failed", "skipped", "upstream_failed", "cancelled"]);
const SETTLE_MS = 1000;
const SETTLE_TRIES = 8;

export async function renderRun(main, route) {
  const runId = route.parts[1];
  const path = `/runs/${encodeURIComponent(runId)}`;
  let [run, graph] = await Promise.all([api("GET", path), api("GET", `${path}/graph`)]);
  const statuses = new Map(graph.nodes.map((n) => [n.id, n.status]));
  const totals = new Map(run.steps.filter((s) => s.items !== null && s.items !== undefined)
    .map((s) => [s.name, s.items]));
  let tab = "graph";
  let stepsFilter = "";
  let closeDrawer = null;
  let ganttTimer = null;
  let settleTimer = null;
  let drawerTimer = null;
  let stopped = false;

  const head = h("div", {});
  const actions = h("div", {class: "actions", id: "run-actions"});
  const dagEl = h("div", {class: "dag", id: "dag"});
  const panel = h("div", {});
  const tabs = h("div", {class: "tabs", role: "tablist"});

  const select = (name) => {
    location.hash = `#/runs/${encodeURIComponent(runId)}/steps/${encodeURIComponent(name)}`;
  };
  const dag = drawDag(dagEl, graph, {
    items: Object.fromEntries(run.steps.filter((s) => totals.has(s.name))
      .map((s) => [s.name, [s.items_done ?? 0, s.items]])),
    onSelect: select,
  });
  dagEl.dataset.layout = dag.large ? "collapsed" : "dagre";
  dagEl.dataset.steps = String(graph.nodes.length);

  const live = new LiveRun(runId, {
    step(name, status) {
      statuses.set(name, status);
      dag.setStatus(name, status);
    },
    items(name, done, total) {
      if (total !== undefined) totals.set(name, total);
      if (totals.has(name)) dag.setItems(name, done, totals.get(name));
    },
    run(status) {
      if (["succeeded", "failed", "cancelled", "started", "rerun", "resumed"].includes(status)) {
        run = {...run, status: status === "started" || status === "rerun" || status === "resumed"
          ? "running" : status};
        drawHead();
      }
    },
    end() {
      settle(SETTLE_TRIES).catch(() => {});
    },
    any() {
      if (closeDrawer && !drawerTimer) {
        drawerTimer = setTimeout(() => { drawerTimer = null; closeDrawer?.refresh(); }, 300);
      }
      if (tab === "timeline" && !ganttTimer) {
        ganttTimer = setTimeout(() => { ganttTimer = null; drawPanel(); }, 1000);
      }
    },
  });

  // The stream ends with the run; a step stopped by a cancel may be recorded a moment
  // later (its worker stops it first), so the records are read until every step is final.
  async function settle(tries) {
    run = await api("GET", path);
    for (const step of run.steps) {
      if (statuses.get(step.name) !== step.status) {
        statuses.set(step.name, step.status);
        dag.setStatus(step.name, step.status);
      }
      if (totals.has(step.name)) dag.setItems(step.name, step.items_done ?? 0, step.items);
    }
    drawHead();
    if (tab !== "graph") drawPanel();
    const unsettled = run.steps.some((s) => !STEP_FINAL.has(s.status));
    if (unsettled && RUN_FINISHED.has(run.status) && tries > 1 && !stopped) {
      // Less and less often: a large run's record is large.
      const wait = SETTLE_MS * 1.5 ** (SETTLE_TRIES - tries);
      settleTimer = setTimeout(() => settle(tries - 1).catch(() => {}), wait);
    }
  }

  function drawHead() {
    const trigger = run.trigger.startsWith("schedule:") || run.trigger.startsWith("manual-schedule:")
      ? h("a", {href: "#/schedules"}, run.trigger) : run.trigger;
    fill(head,
      h("h1", {}, "Run ", run.run_id, " ", h("span", {id: "run-status"}, badge(run.status))),
      h("dl", {class: "kv card"},
        h("dt", {}, "Workflow"), h("dd", {}, h("a", {href: `#/workflows/${encodeURIComponent(run.workflow)}`},
                                               run.workflow), ` version ${run.version}`),
        h("dt", {}, "Trigger"), h("dd", {}, trigger),
        h("dt", {}, "Created"), h("dd", {id: "run-created"}, when(run.created_at)),
        h("dt", {}, "Started"), h("dd", {}, when(run.started_at)),
        h("dt", {}, "Finished"), h("dd", {}, when(run.finished_at)),
        h("dt", {}, "Duration"), h("dd", {}, fmtDuration(between(run.started_at, run.finished_at))),
        run.reruns ? [h("dt", {}, "Re-runs"), h("dd", {}, String(run.reruns))] : null,
        run.error ? [h("dt", {}, "Error"), h("dd", {class: "error-text"}, run.error)] : null));
    drawActions();
  }

  async function act(label, fn) {
    try {
      await fn();
      toast(label);
    } catch (error) {
      toast(`${label} failed: ${error.message}`, true);
    }
  }

  function drawActions() {
    if (!can("operator")) {
      actions.replaceChildren(); // a viewer is offered nothing it may not do
      return;
    }
    const buttons = [];
    if (["pending", "running"].includes(run.status)) {
      buttons.push(h("button", {type: "button", class: "danger", id: "cancel-run", onclick: () =>
        act("Cancel requested", async () => {
          run = {...run, ...(await api("POST", `${path}/cancel`))};
          drawHead();
        })}, "Cancel"));
    }
    if (["failed", "cancelled"].includes(run.status)) {
      buttons.push(h("button", {type: "button", id: "rerun-run", onclick: () =>
        act("Re-run started", async () => {
          await api("POST", `${path}/rerun`);
          run = await api("GET", path);
          drawHead();
          live.start(); // the earlier stream ended with the run
        })}, "Re-run failed steps"));
    }
    if (RUN_FINISHED.has(run.status)) {
      buttons.push(h("button", {type: "button", class: "secondary", id: "relaunch-run", onclick: () =>
        act("Relaunched", async () => {
          const created = await api("POST", "/runs", {body: {name: run.workflow, version: run.version,
                                                             variables: run.variables}});
          location.hash = `#/runs/${encodeURIComponent(created.run_id)}`;
        })}, "Relaunch with the same variables"));
    }
    // Redrawn as the run changes: a focused button that is still offered keeps the focus.
    keepFocus(actions, () => actions.replaceChildren(...buttons), (el) => el.id ? `#${el.id}` : null);
  }

  // Redrawn as the run goes on: the keyboard keeps its place (a node, a link, the filter).
  function drawPanel() {
    keepFocus(panel, drawTab);
  }

  function drawTab() {
    if (tab === "graph") {
      panel.replaceChildren(legend(), dagEl);
    } else if (tab === "timeline") {
      const box = h("div", {id: "gantt"});
      drawGantt(box, live, select);
      panel.replaceChildren(box);
    } else if (tab === "steps") {
      panel.replaceChildren(stepsTable());
    } else {
      panel.replaceChildren(
        h("h2", {}, "Variables"), json(run.variables),
        h("h2", {}, "Outputs"), json(run.outputs),
        run.error ? [h("h2", {}, "Error"), h("pre", {}, run.error)] : null);
    }
  }

  function stepsTable() {
    const box = h("div", {});
    const filter = h("input", {type: "search", placeholder: "filter by name or status",
                               id: "steps-filter", value: stepsFilter, "aria-label": "Filter steps"});
    let limit = STEP_ROWS;
    const draw = () => {
      const words = filter.value.trim().toLowerCase();
      const rows = run.steps.map((s) => ({...s, status: statuses.get(s.name) || s.status}))
        .filter((s) => !words || s.name.toLowerCase().includes(words) || s.status === words);
      const more = rows.length > limit
        ? h("button", {type: "button", class: "secondary", onclick: () => { limit += 1000; draw(); }},
            `Show more (${rows.length - limit} not shown)`) : null;
      box.replaceChildren(table([
        {title: "Step", cell: (s) => h("a", {href: `#/runs/${encodeURIComponent(runId)}/steps/${encodeURIComponent(s.name)}`}, s.name)},
        {title: "Module", cell: (s) => `${s.module}.${s.method}`},
        {title: "Status", cell: (s) => badge(s.status)},
        {title: "Attempts", cell: (s) => String(s.attempts)},
        {title: "Elements", cell: (s) => s.items !== null && s.items !== undefined ? `${s.items_done ?? 0}/${s.items}` : ""},
        {title: "Worker", cell: (s) => s.worker || "—"},
        {title: "Duration", cell: (s) => fmtDuration(s.duration_seconds)},
      ], rows.slice(0, limit), {onclick: (s) => select(s.name), empty: "No step matches."}), more);
    };
    filter.addEventListener("input", () => { stepsFilter = filter.value; draw(); });
    draw();
    return h("div", {}, filter, box);
  }

  const tabNames = [["graph", "Graph"], ["timeline", "Timeline"], ["steps", "Steps"], ["details", "Details"]];
  tabs.replaceChildren(...tabNames.map(([key, text]) => h("button", {
    type: "button", role: "tab", id: `tab-${key}`, "aria-selected": String(key === tab),
    onclick: async () => {
      tab = key;
      for (const b of tabs.children) b.setAttribute("aria-selected", String(b.id === `tab-${key}`));
      if (key === "steps" || key === "details") run = await api("GET", path);
      drawPanel();
    }}, text)));

  drawHead();
  drawPanel();
  fill(main, head, actions, tabs, panel);
  live.start();

  const drawer = document.getElementById("drawer");
  let opener = null; // what had the focus when the drawer opened: it gets it back
  let openStep = null;
  function update(parsed) {
    const [, , kind, name] = parsed.parts;
    const wasOpen = closeDrawer !== null;
    closeDrawer?.();
    closeDrawer = null;
    if (kind === "steps" && name) {
      if (!wasOpen) opener = document.activeElement;
      openStep = name;
      closeDrawer = openDrawer(drawer, runId, name, live, () => {
        location.hash = `#/runs/${encodeURIComponent(runId)}`;
      });
    } else if (wasOpen) {
      // Back to where the keyboard was: the node or row that opened it, else the
      // step's node (a permalink opened it).
      const back = opener && opener !== document.body && document.contains(opener) ? opener
        : dagEl.querySelector(`[data-step="${CSS.escape(openStep || "")}"]`);
      (back || main).focus({preventScroll: true});
      opener = null;
    }
  }
  const onKey = (event) => {
    if (event.key === "Escape" && closeDrawer) location.hash = `#/runs/${encodeURIComponent(runId)}`;
  };
  addEventListener("keydown", onKey);
  update(route);

  const cleanup = () => {
    stopped = true;
    clearTimeout(settleTimer);
    clearTimeout(drawerTimer);
    live.stop();
    closeDrawer?.();
    clearTimeout(ganttTimer);
    removeEventListener("keydown", onKey);
  };
  cleanup.update = update;
  return cleanup;
}
