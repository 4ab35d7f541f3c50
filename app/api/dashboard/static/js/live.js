// A run's live state from its event stream (GET /runs/<id>/events, Server-Sent Events):
// each step's status, its attempts (worker, start, end, outcome) and, for a foreach
// step, how many of its elements finished. The stream replays the run's past events
// first, so the same code draws a finished run and a running one.

import {apiUrl} from "./api.js";

const FINAL = new Set(["succeeded", "failed", "skipped", "upstream_failed", "cancelled"]);
const STEP_EVENTS = ["step_ready", "step_queued", "step_started", "step_retry", "step_taken_over",
                     "step_succeeded", "step_failed", "step_skipped", "step_upstream_failed",
                     "step_cancelled"];
const RUN_EVENTS = ["run_created", "run_started", "run_succeeded", "run_failed", "run_cancelled",
                    "run_rerun", "run_resumed"];

/** "each[3]" -> ["each", 3]; "fetch" -> ["fetch", null]. */
export function parseToken(token) {
  const match = /^(.*)\[(\d+)\]$/.exec(token || "");
  return match ? [match[1], Number(match[2])] : [token, null];
}

export class LiveRun {
  /** ``handlers``: step(name, status), items(name, done, total?), run(status, event),
   *  end(status), any(). */
  constructor(runId, handlers) {
    this.runId = runId;
    this.handlers = handlers;
    this.attempts = new Map(); // step -> [{attempt, worker, start, end, status, error, item}]
    this.itemsDone = new Map(); // foreach step -> Set of finished element indexes
    this.source = null;
  }

  start() {
    this.stop();
    this.attempts.clear();
    this.itemsDone.clear();
    const source = new EventSource(apiUrl(`/runs/${encodeURIComponent(this.runId)}/events`));
    for (const type of STEP_EVENTS) source.addEventListener(type, (e) => this.onStep(type, e));
    for (const type of RUN_EVENTS) source.addEventListener(type, (e) => this.onRun(type, e));
    source.addEventListener("end", (e) => {
      source.close();
      this.handlers.end?.(JSON.parse(e.data).status);
    });
    this.source = source;
  }

  stop() {
    this.source?.close();
    this.source = null;
  }

  attemptsOf(step) {
    return this.attempts.get(step) || [];
  }

  onStep(type, event) {
    const payload = JSON.parse(event.data);
    const status = type.slice("step_".length);
    const [step, index] = parseToken(payload.step);
    const data = payload.data || {};
    const list = this.attempts.get(step) || [];
    this.attempts.set(step, list);
    const mine = list.filter((a) => a.item === index);
    const last = mine[mine.length - 1];
    if (status === "started") {
      list.push({attempt: data.attempt, worker: data.worker, start: payload.ts, end: null,
                 status: "running", error: null, item: index});
    } else if (status === "retry" && last) {
      Object.assign(last, {end: payload.ts, status: "retry", error: data.error || null});
    } else if (FINAL.has(status) && last && last.end === null) {
      Object.assign(last, {end: payload.ts, status, error: data.error || null});
    }
    if (index !== null) {
      if (FINAL.has(status)) {
        const done = this.itemsDone.get(step) || new Set();
        done.add(index);
        this.itemsDone.set(step, done);
        this.handlers.items?.(step, done.size);
      }
    } else if (typeof data.items === "number") {
      // A foreach step's list is known when it is ready: its elements' total.
      this.handlers.items?.(step, this.itemsDone.get(step)?.size ?? 0, data.items);
      this.handlers.step?.(step, status);
    } else if (status !== "retry" && status !== "taken_over") {
      this.handlers.step?.(step, status === "started" ? "running" : status);
    }
    this.handlers.any?.();
  }

  onRun(type, event) {
    const payload = JSON.parse(event.data);
    if (type === "run_rerun") {
      this.itemsDone.clear();
    }
    this.handlers.run?.(type.slice("run_".length), payload);
    this.handlers.any?.();
  }
}
