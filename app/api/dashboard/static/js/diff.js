// A unified diff (what GET /workflows/<name>/diff returns) shown side by side: context
// lines on both sides, a run of removed lines beside the run of added lines that
// replaced them, one row per pair.

import {h} from "./dom.js";

/** Rows [left, right, kind] of a unified diff; kind is "hunk", "same" or "change". */
export function pairRows(unified) {
  const rows = [];
  let removed = [];
  let added = [];
  const flush = () => {
    const n = Math.max(removed.length, added.length);
    for (let i = 0; i < n; i++) rows.push([removed[i] ?? null, added[i] ?? null, "change"]);
    removed = [];
    added = [];
  };
  for (const line of unified.split("\n")) {
    if (line.startsWith("---") || line.startsWith("+++")) continue;
    if (line.startsWith("@@")) {
      flush();
      rows.push([line, line, "hunk"]);
    } else if (line.startsWith("-")) {
      removed.push(line.slice(1));
    } else if (line.startsWith("+")) {
      added.push(line.slice(1));
    } else if (line.startsWith(" ")) {
      flush();
      rows.push([line.slice(1), line.slice(1), "same"]);
    }
  }
  flush();
  return rows;
}

export function sideBySide(unified, leftTitle, rightTitle) {
  if (!unified) return h("p", {class: "muted"}, "The texts are the same.");
  const cells = [h("div", {class: "head"}, leftTitle), h("div", {class: "head"}, rightTitle)];
  for (const [left, right, kind] of pairRows(unified)) {
    if (kind === "hunk") {
      cells.push(h("div", {class: "hunk"}, left));
      continue;
    }
    cells.push(h("div", {class: kind === "change" && left !== null ? "del" : ""}, left ?? ""));
    cells.push(h("div", {class: kind === "change" && right !== null ? "add" : ""}, right ?? ""));
  }
  return h("div", {class: "diff", role: "table", "aria-label": `${leftTitle} beside ${rightTitle}`}, cells);
}
