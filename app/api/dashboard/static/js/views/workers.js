// Workers and queues (GET /workers): online workers with their pool, queues and running
// steps, and each queue's waiting messages; refreshed every few seconds.

import {api} from "../api.js";
import {fill, h, keepFocus, table, when} from "../dom.js";

export const REFRESH_MS = 5000;
const enc = encodeURIComponent;

export async function renderWorkers(main) {
  const workersEl = h("div", {id: "workers"});
  const queuesEl = h("div", {id: "queues"});
  const stamp = h("p", {class: "muted"});
  let timer = null;
  let stopped = false;

  async function load() {
    const found = await api("GET", "/workers");
    keepFocus(workersEl, () => fill(workersEl, table([
      {title: "Worker", cell: (w) => w.name},
      {title: "Pool", cell: (w) => `${w.pool || "?"} × ${w.concurrency ?? "?"}`},
      {title: "Queues", cell: (w) => w.queues.join(", ")},
      {title: "Running", wrap: true, cell: (w) => w.running.length ? h("ul", {}, w.running.map((t) =>
        h("li", {}, t.run_id
          ? h("a", {href: `#/runs/${enc(t.run_id)}/steps/${enc((t.step || "").replace(/\[\d+\]$/, ""))}`},
              `${t.name} (attempt ${t.attempt ?? "?"})`)
          : t.name, t.started_at ? [" since ", when(t.started_at)] : ""))) : "idle"},
    ], found.workers, {empty: "No worker answered: start one with chordflow worker."})),
    (el) => el.getAttribute("href") ? `a[href="${CSS.escape(el.getAttribute("href"))}"]` : null);
    fill(queuesEl, table([
      {title: "Queue", cell: (q) => q.name},
      {title: "Waiting", cell: (q) => q.waiting === null ? "?" : String(q.waiting)},
      {title: "Consumers", cell: (q) => q.consumers.length ? q.consumers.join(", ") : "none online"},
    ], found.queues));
    stamp.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }

  fill(main, h("h1", {}, "Workers"), stamp, workersEl, h("h2", {}, "Queues"), queuesEl);
  await load();
  const tick = () => {
    timer = setTimeout(async () => {
      if (document.visibilityState === "visible") await load().catch(() => {});
      if (!stopped) tick();
    }, REFRESH_MS);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
