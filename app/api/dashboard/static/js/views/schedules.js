// Schedules: every schedule with its trigger, next fire time (in the browser's time
// zone), last run and last error; pause, resume and trigger now for operators.

import {api, can} from "../api.js";
import {fill, h, table, toast, when} from "../dom.js";

const enc = encodeURIComponent;

export async function renderSchedules(main) {
  const {schedules} = await api("GET", "/schedules");
  const act = async (label, fn) => {
    try {
      const result = await fn();
      toast(label);
      return result;
    } catch (error) {
      toast(`${label} failed: ${error.message}`, true);
      return null;
    }
  };
  const columns = [
    {title: "Workflow", cell: (s) => h("a", {href: `#/workflows/${enc(s.workflow)}`}, s.workflow)},
    {title: "When", cell: (s) => s.cron ? `cron ${s.cron} (${s.timezone})` : `every ${s.interval_seconds} s`},
    {title: "State", cell: (s) => s.enabled ? "active" : "paused"},
    {title: "Next run", cell: (s) => s.enabled ? when(s.next_run_at) : "—"},
    {title: "Last run", cell: (s) => s.last_run_id
      ? h("a", {href: `#/runs/${enc(s.last_run_id)}`}, when(s.last_run_at)) : "—"},
    {title: "Last error", wrap: true, cell: (s) => s.last_error || ""},
  ];
  if (can("operator")) {
    columns.push({title: "", cell: (s) => h("span", {class: "actions"},
      h("button", {type: "button", class: "secondary", dataset: {pause: s.id}, onclick: async () => {
        if (await act(s.enabled ? "Paused" : "Resumed", () =>
          api("PATCH", `/schedules/${enc(s.id)}`, {body: {enabled: !s.enabled}}))) {
          await renderSchedules(main);
        }
      }}, s.enabled ? "Pause" : "Resume"),
      h("button", {type: "button", dataset: {trigger: s.id}, onclick: async () => {
        const created = await act("Triggered", () => api("POST", `/schedules/${enc(s.id)}/trigger`));
        if (created) location.hash = `#/runs/${enc(created.run_id)}`;
      }}, "Trigger now"))});
  }
  fill(main, h("h1", {}, "Schedules"), table(columns, schedules, {
    empty: "No schedule yet (chordflow schedules create, or POST /api/v1/schedules).",
    rowAttrs: (s) => ({dataset: {schedule: s.id}}),
  }));
}
