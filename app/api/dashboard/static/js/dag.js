// A run's DAG, coloured by step status and updated in place (a class per status).
//
// Up to LAYOUT_LIMIT steps it is laid out by dagre (vendor/dagre.esm.js, MIT) and drawn
// as SVG with its edges. dagre needs seconds beyond a few hundred nodes (4 s for 2,000
// on this machine's Node.js), so a larger run is drawn collapsed instead: one small
// square per step, in rows by depth (the longest path from a root), without edges;
// each square is still a focusable button that opens its step. Either way a status
// change touches one element, so a 2,000-step run stays live.

import dagre from "../vendor/dagre.esm.js";
import {h, svg} from "./dom.js";

export const LAYOUT_LIMIT = 250;
const NODE_W = 170;
const NODE_H = 34;

export const STATUS_COLOURS = ["pending", "ready", "queued", "running", "succeeded", "failed",
                               "skipped", "upstream_failed", "cancelled"];

function label(name, max = 22) {
  return name.length > max ? `${name.slice(0, max - 1)}…` : name;
}

/** Draw ``graph`` ({nodes: [{id, module, status}], edges: [{source, target}]}) into
 *  ``container``; ``items`` maps a foreach step to [done, total]. Returns the handle
 *  that recolours a step. */
export function drawDag(container, graph, {items = {}, onSelect}) {
  const large = graph.nodes.length > LAYOUT_LIMIT;
  const handle = large ? drawLevels(container, graph, onSelect) : drawLayout(container, graph, onSelect);
  for (const [name, [done, total]] of Object.entries(items)) handle.setItems(name, done, total);
  handle.large = large;
  return handle;
}

function drawLayout(container, graph, onSelect) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({rankdir: "LR", nodesep: 12, ranksep: 48, marginx: 12, marginy: 12});
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of graph.nodes) g.setNode(node.id, {width: NODE_W, height: NODE_H});
  for (const edge of graph.edges) g.setEdge(edge.source, edge.target);
  dagre.layout(g);
  const {width, height} = g.graph();
  const root = svg("svg", {width: Math.max(width, 200), height: Math.max(height, 60),
                           role: "group", "aria-label": "Run graph"});
  for (const e of g.edges()) {
    const points = g.edge(e).points;
    const d = points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join("");
    root.append(svg("path", {class: "edge", d, "marker-end": "url(#arrow)"}));
  }
  root.prepend(svg("defs", {}, svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse"},
    svg("path", {d: "M0,0L10,5L0,10z", fill: "#98a2b3"}))));
  const nodes = new Map();
  for (const node of graph.nodes) {
    const {x, y} = g.node(node.id);
    const extra = svg("text", {x: 10, y: 28, class: "sub"}, node.module);
    const el = svg("g", {class: `node ${node.status}`, transform: `translate(${x - NODE_W / 2},${y - NODE_H / 2})`,
                         tabindex: 0, role: "button", "data-step": node.id, "data-status": node.status,
                         "aria-label": `${node.id}: ${node.status}`},
      svg("title", {}, node.id),
      svg("rect", {width: NODE_W, height: NODE_H, rx: 5}),
      svg("text", {x: 10, y: 15}, label(node.id)), extra);
    extra.setAttribute("font-size", "10");
    el.addEventListener("click", () => onSelect(node.id));
    el.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); onSelect(node.id); }
    });
    nodes.set(node.id, {el, extra, module: node.module});
    root.append(el);
  }
  container.replaceChildren(root);
  return {
    setStatus(name, status) {
      const found = nodes.get(name);
      if (!found) return;
      found.el.setAttribute("class", `node ${status}`);
      found.el.dataset.status = status;
      found.el.setAttribute("aria-label", `${name}: ${status}`);
    },
    setItems(name, done, total) {
      const found = nodes.get(name);
      if (found) found.extra.textContent = `${found.module} · ${done}/${total}`;
    },
  };
}

/** The depth of each node: plan order is topological, so one pass suffices. */
export function depths(graph) {
  const parents = new Map();
  for (const e of graph.edges) {
    if (!parents.has(e.target)) parents.set(e.target, []);
    parents.get(e.target).push(e.source);
  }
  const depth = new Map();
  for (const node of graph.nodes) {
    const ps = parents.get(node.id) || [];
    depth.set(node.id, ps.length ? Math.max(...ps.map((p) => depth.get(p) ?? 0)) + 1 : 0);
  }
  return depth;
}

function drawLevels(container, graph, onSelect) {
  const depth = depths(graph);
  const levels = [];
  for (const node of graph.nodes) {
    const d = depth.get(node.id);
    (levels[d] ||= []).push(node);
  }
  const cells = new Map();
  const rows = levels.map((nodes, d) => h("div", {class: "level"},
    h("span", {class: "level-name"}, `depth ${d} (${nodes.length})`),
    nodes.map((node) => {
      const cell = h("button", {type: "button", class: `cell ${node.status}`, title: node.id,
                                "aria-label": `${node.id}: ${node.status}`,
                                dataset: {step: node.id, status: node.status},
                                onclick: () => onSelect(node.id)});
      cells.set(node.id, cell);
      return cell;
    })));
  container.replaceChildren(h("div", {class: "levels", role: "group", "aria-label": "Run graph"},
    h("p", {class: "muted"}, `${graph.nodes.length} steps, drawn collapsed by depth (edges `
      + `are drawn up to ${LAYOUT_LIMIT} steps). Select a square for its step.`), rows));
  return {
    setStatus(name, status) {
      const cell = cells.get(name);
      if (!cell) return;
      cell.className = `cell ${status}`;
      cell.dataset.status = status;
      cell.setAttribute("aria-label", `${name}: ${status}`);
    },
    setItems(name, done, total) {
      const cell = cells.get(name);
      if (cell) cell.title = `${name} (${done}/${total})`;
    },
  };
}

export function legend() {
  return h("div", {class: "legend", "aria-hidden": "true"}, STATUS_COLOURS.map((s) => {
    const item = h("span", {}, s);
    item.style.setProperty("--c", `var(--${s})`); // CSSOM: allowed by the page's CSP
    return item;
  }));
}
