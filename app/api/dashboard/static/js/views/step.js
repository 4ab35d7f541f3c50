// The step drawer: status, module, queue, worker and Celery task (linked to Flower when
// its URL is configured); every attempt (worker, start, end, duration, outcome); the
// rendered params and outputs (secrets already masked by the API); the error and the
// traceback from the captured output; the captured output itself, per attempt,
// refreshed while the step runs, and downloadable.

import {api, apiUrl, session} from "../api.js";
import {badge, fill, fmtDuration, fmtTime, h, json, table} from "../dom.js";

const FINAL = new Set(["succeeded", "failed", "skipped", "upstream_failed", "cancelled"]);
export const POLL_MS = 2000;
const LARGE_RUN = 500;

/** The last Python traceback in a step's captured output, if any. */
export function traceback(text) {
  const at = text.lastIndexOf("Traceback (most recent call last):");
  if (at < 0) return null;
  const rest = text.slice(at).split("\n");
  const end = rest.findIndex((line, i) => i > 0 && line.startsWith("--- "));
  return rest.slice(0, end < 0 ? undefined : end).join("\n").trimEnd();
}

export function openDrawer(drawer, runId, name, live, onClose) {
  let timer = null;
  let stopped = false;
  const body = h("div", {});
  const close = h("button", {type: "button", class: "secondary", onclick: onClose}, "Close");
  fill(drawer, h("header", {}, h("h2", {id: "drawer-title"}, name), close), body);
  drawer.setAttribute("aria-labelledby", "drawer-title");
  drawer.hidden = false;
  close.focus();
  const attemptsEl = h("div", {id: "step-attempts"});
  let queue = null;
  // From the event stream, which may still be replaying: drawn again as events come.
  const drawAttempts = () => fill(attemptsEl, table([
    {title: "#", cell: (a) => a.item !== null ? `${a.attempt} [${a.item}]` : String(a.attempt)},
    {title: "Worker", cell: (a) => a.worker || "—"},
    {title: "Queue", cell: () => queue || "—"},
    {title: "Start", cell: (a) => fmtTime(a.start)},
    {title: "End", cell: (a) => fmtTime(a.end)},
    {title: "Duration", cell: (a) => fmtDuration(a.end ? a.end - a.start : null)},
    {title: "Outcome", cell: (a) => badge(a.status === "retry" ? "failed" : a.status)},
  ], live.attemptsOf(name), {empty: "No attempt yet."}));
  const logsPath = `/runs/${encodeURIComponent(runId)}/logs`;
  const logsQuery = {step: name, events: "false"};

  async function load() {
    const [run, logs] = await Promise.all([
      api("GET", `/runs/${encodeURIComponent(runId)}`),
      api("GET", logsPath, {query: logsQuery, text: true}),
    ]);
    if (stopped) return;
    const step = run.steps.find((s) => s.name === name);
    if (!step) {
      fill(body, h("p", {class: "error-text"}, `No step ${name} in run ${runId}.`));
      return;
    }
    queue = step.queue;
    const trace = traceback(logs);
    const flower = session.flowerUrl && step.task_id
      ? h("a", {href: `${session.flowerUrl}/task/${encodeURIComponent(step.task_id)}`,
                target: "_blank", rel: "noopener"}, "Open in Flower") : null;
    fill(body,
      h("dl", {class: "kv"},
        h("dt", {}, "Status"), h("dd", {id: "step-status"}, badge(step.status)),
        h("dt", {}, "Module"), h("dd", {}, `${step.module}.${step.method}`),
        h("dt", {}, "Queue"), h("dd", {}, step.queue || "—"),
        h("dt", {}, "Worker"), h("dd", {}, step.worker || "—"),
        h("dt", {}, "Attempts"), h("dd", {}, String(step.attempts)),
        step.items !== null && step.items !== undefined
          ? [h("dt", {}, "Elements"), h("dd", {}, `${step.items_done ?? 0}/${step.items} finished`)]
          : null,
        h("dt", {}, "Queued"), h("dd", {}, fmtTime(step.queued_at)),
        h("dt", {}, "Started"), h("dd", {}, fmtTime(step.started_at)),
        h("dt", {}, "Finished"), h("dd", {}, fmtTime(step.finished_at)),
        h("dt", {}, "Duration"), h("dd", {}, fmtDuration(step.duration_seconds)),
        h("dt", {}, "Task"), h("dd", {}, step.task_id || "—", flower ? [" ", flower] : null)),
      h("h3", {}, "Attempts"), attemptsEl,
      step.error ? [h("h3", {}, "Error"), h("pre", {id: "step-error"}, step.error)] : null,
      trace ? [h("h3", {}, "Traceback"), h("pre", {id: "step-traceback"}, trace)] : null,
      h("h3", {}, "Params"), json(step.params),
      h("h3", {}, "Outputs"), json(step.outputs),
      h("h3", {}, "Output ", h("a", {href: apiUrl(logsPath, logsQuery), download: `${runId}-${name}.log`},
                               "download")),
      h("pre", {id: "step-output"}, logs || "(nothing captured yet)"));
    drawAttempts();
    if (!FINAL.has(step.status)) {
      // The run's record holds every step: a large run's is read less often.
      const wait = run.steps.length > LARGE_RUN ? POLL_MS * 3 : POLL_MS;
      timer = setTimeout(() => load().catch(() => {}), wait);
    }
  }

  load().catch((error) => fill(body, h("p", {class: "error-text"}, error.message)));
  const cleanup = () => {
    stopped = true;
    clearTimeout(timer);
    drawer.hidden = true;
  };
  cleanup.refresh = drawAttempts;
  return cleanup;
}
