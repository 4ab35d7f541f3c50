// The step drawer: status, module, queue, worker and Celery task (linked to Flower when
// its URL is configured); every attempt (worker, start, end, duration, outcome); the
// rendered params and outputs (secrets already masked by the API); the error and the
// traceback from the captured output; the captured output itself, per attempt,
// downloadable, and while the step runs read again every second and appended to what
// is shown (a running attempt's output is in the store as it comes:
// app/engine/live_output.py), so that reading it is not interrupted.

import {api, apiUrl, session} from "../api.js";
import {badge, fill, fmtDuration, h, json, keepFocus, table, when} from "../dom.js";

const FINAL = new Set(["succeeded", "failed", "skipped", "upstream_failed", "cancelled"]);
export const POLL_MS = 2000;
/** How often a running step's output is read again. */
export const OUTPUT_MS = 1000;
const LARGE_RUN = 500;

/** The last Python traceback in a step's captured output, if any. */
export function traceback(text) {
  const at = text.lastIndexOf("Traceback (most recent call last):");
  if (at < 0) return null;
  const rest = text.slice(at).split("\n");
  const end = rest.findIndex((line, i) => i > 0 && line.startsWith("--- "));
  return rest.slice(0, end < 0 ? undefined : end).join("\n").trimEnd();
}

/**
 * Show ``text`` in ``pre``: what it already shows is kept and only the new end is
 * appended (its scroll position stays; at the bottom, it follows the new lines).
 * Replaced whole only when the start changed (a long output's cut moved on).
 */
export function showOutput(pre, text) {
  const shown = pre.dataset.empty === "true" ? "" : pre.textContent;
  if (text === shown) return;
  const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  if (!text) {
    pre.textContent = "(nothing captured yet)";
    pre.dataset.empty = "true";
    return;
  }
  if (shown && text.startsWith(shown)) {
    pre.append(document.createTextNode(text.slice(shown.length)));
  } else {
    pre.textContent = text;
  }
  pre.dataset.empty = "false";
  if (follow) pre.scrollTop = pre.scrollHeight;
}

export function openDrawer(drawer, runId, name, live, onClose) {
  let timer = null;
  let outputTimer = null;
  let stopped = false;
  let running = true;
  const logsPath = `/runs/${encodeURIComponent(runId)}/logs`;
  const logsQuery = {step: name, events: "false"};
  const body = h("div", {});
  const traceEl = h("div", {});
  let shownTrace = null;
  const output = h("pre", {id: "step-output", tabindex: "0", "aria-live": "off",
                           "aria-label": "Captured output", dataset: {empty: "true"}},
                   "(nothing captured yet)");
  const close = h("button", {type: "button", class: "secondary", onclick: onClose}, "Close");
  fill(drawer, h("header", {}, h("h2", {id: "drawer-title"}, name), close), body,
    h("h3", {}, "Output ", h("a", {href: apiUrl(logsPath, logsQuery), id: "step-download",
                                   download: `${runId}-${name}.log`}, "download")),
    output);
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
    {title: "Start", cell: (a) => when(a.start)},
    {title: "End", cell: (a) => when(a.end)},
    {title: "Duration", cell: (a) => fmtDuration(a.end ? a.end - a.start : null)},
    {title: "Outcome", cell: (a) => badge(a.status === "retry" ? "failed" : a.status)},
  ], live.attemptsOf(name), {empty: "No attempt yet."}));

  async function readOutput() {
    const logs = await api("GET", logsPath, {query: logsQuery, text: true});
    if (stopped) return;
    showOutput(output, logs);
    const trace = traceback(logs);
    if (trace !== shownTrace) {
      shownTrace = trace;
      fill(traceEl, trace ? [h("h3", {}, "Traceback"), h("pre", {id: "step-traceback"}, trace)] : null);
    }
  }

  // Output every second while the step runs (and once more when it has ended).
  async function followOutput() {
    const wasRunning = running;
    await readOutput().catch(() => {});
    if (!stopped && wasRunning) outputTimer = setTimeout(followOutput, OUTPUT_MS);
  }

  async function load() {
    const run = await api("GET", `/runs/${encodeURIComponent(runId)}`);
    if (stopped) return;
    const step = run.steps.find((s) => s.name === name);
    if (!step) {
      fill(body, h("p", {class: "error-text"}, `No step ${name} in run ${runId}.`));
      return;
    }
    queue = step.queue;
    const flower = session.flowerUrl && step.task_id
      ? h("a", {href: `${session.flowerUrl}/task/${encodeURIComponent(step.task_id)}`, id: "step-flower",
                target: "_blank", rel: "noopener"}, "Open in Flower") : null;
    keepFocus(body, () => fill(body,
      h("dl", {class: "kv"},
        h("dt", {}, "Status"), h("dd", {id: "step-status"}, badge(step.status)),
        h("dt", {}, "Module"), h("dd", {}, `${step.module}.${step.method}`),
        h("dt", {}, "Queue"), h("dd", {}, step.queue || "—"),
        h("dt", {}, "Worker"), h("dd", {}, step.worker || "—"),
        h("dt", {}, "Attempts"), h("dd", {}, String(step.attempts)),
        step.items !== null && step.items !== undefined
          ? [h("dt", {}, "Elements"), h("dd", {}, `${step.items_done ?? 0}/${step.items} finished`)]
          : null,
        h("dt", {}, "Queued"), h("dd", {}, when(step.queued_at)),
        h("dt", {}, "Started"), h("dd", {}, when(step.started_at)),
        h("dt", {}, "Finished"), h("dd", {}, when(step.finished_at)),
        h("dt", {}, "Duration"), h("dd", {}, fmtDuration(step.duration_seconds)),
        h("dt", {}, "Task"), h("dd", {}, step.task_id || "—", flower ? [" ", flower] : null)),
      h("h3", {}, "Attempts"), attemptsEl,
      step.error ? [h("h3", {}, "Error"), h("pre", {id: "step-error"}, step.error)] : null,
      traceEl,
      h("h3", {}, "Params"), json(step.params),
      h("h3", {}, "Outputs"), json(step.outputs)), (el) => el.id ? `#${el.id}` : null);
    drawAttempts();
    running = !FINAL.has(step.status);
    if (running) {
      // The run's record holds every step: a large run's is read less often.
      const wait = run.steps.length > LARGE_RUN ? POLL_MS * 3 : POLL_MS;
      timer = setTimeout(() => load().catch(() => {}), wait);
    }
  }

  load().catch((error) => fill(body, h("p", {class: "error-text"}, error.message)));
  followOutput();
  const cleanup = () => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(outputTimer);
    drawer.hidden = true;
  };
  cleanup.refresh = drawAttempts;
  return cleanup;
}
