// A timeline (Gantt) of a run's attempts: one row per step, one bar per attempt, from
// the attempts the event stream gave (LiveRun). Long runs show their first MAX_ROWS
// steps by start time (the steps table lists every one).

import {fmtDuration, fmtTime, h} from "./dom.js";

export const MAX_ROWS = 300;

export function drawGantt(container, live, onSelect) {
  const rows = [];
  for (const [step, attempts] of live.attempts) {
    const timed = attempts.filter((a) => a.start);
    if (timed.length) rows.push({step, attempts: timed, start: Math.min(...timed.map((a) => a.start))});
  }
  rows.sort((a, b) => a.start - b.start);
  if (!rows.length) {
    container.replaceChildren(h("p", {class: "muted"}, "No attempt has started yet."));
    return;
  }
  const now = Date.now() / 1000;
  const t0 = rows[0].start;
  const t1 = Math.max(...rows.flatMap((r) => r.attempts.map((a) => a.end ?? now)));
  const span = Math.max(t1 - t0, 0.001);
  const shown = rows.slice(0, MAX_ROWS);
  container.replaceChildren(
    h("p", {class: "muted"}, `${fmtTime(t0)} → ${fmtTime(t1)} (${fmtDuration(t1 - t0)})`
      + (rows.length > shown.length ? `; the first ${shown.length} of ${rows.length} steps` : "")),
    h("div", {class: "gantt"}, shown.map((row) => h("div", {class: "gantt-row"},
      h("button", {type: "button", class: "link gantt-name", title: row.step,
                   onclick: () => onSelect(row.step)}, row.step),
      h("div", {class: "gantt-track"}, row.attempts.map((a) => {
        const bar = h("div", {class: `gantt-bar ${a.status}`,
          title: `${row.step}${a.item !== null ? `[${a.item}]` : ""} attempt ${a.attempt} on `
            + `${a.worker || "?"}: ${a.status}, ${fmtDuration((a.end ?? now) - a.start)}`});
        // Positions through the CSSOM (the page's CSP allows no inline style attributes).
        bar.style.left = `${((a.start - t0) / span) * 100}%`;
        bar.style.width = `${(((a.end ?? now) - a.start) / span) * 100}%`;
        return bar;
      }))))));
}
