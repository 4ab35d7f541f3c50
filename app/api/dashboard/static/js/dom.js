// Small DOM and formatting helpers. Every text from the API goes in through
// textContent (never innerHTML), so nothing a workflow or a step wrote can run here.

/** An element: h("a", {href: "#/runs", class: "x", onclick: fn}, "text", child, ...). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An SVG element with attributes. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A time from the API (ISO 8601 or UNIX seconds) in the browser's time zone. */
export function fmtTime(value) {
  if (value === undefined || value === null || value === "") return "—";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

/** A time as a <time> element: shown in the browser's time zone, its UTC time in its
 *  ``datetime`` and as its tooltip (what to quote to someone elsewhere). */
export function when(value, props = {}) {
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value ?? NaN);
  if (value === undefined || value === null || Number.isNaN(date.getTime())) {
    return h("span", props, fmtTime(value));
  }
  const iso = date.toISOString();
  return h("time", {...props, datetime: iso, title: iso.replace("T", " ").replace(/\.\d+Z$/, " UTC")},
           fmtTime(value));
}

/**
 * Keep the keyboard's place across a redraw of ``box``: ``draw()`` replaces its
 * children; the element that had the focus (found again by ``same(old) -> selector``)
 * gets it back, so a live refresh never throws a keyboard user to the top.
 */
export function keepFocus(box, draw, same = samePlace) {
  const had = document.activeElement;
  const selector = had && had !== box && box.contains(had) ? same(had) : null;
  draw();
  if (!selector || document.activeElement !== document.body) return;
  const again = box.querySelector(selector);
  again?.focus({preventScroll: true});
  if (again instanceof HTMLInputElement && again.type !== "checkbox") {
    again.setSelectionRange?.(again.value.length, again.value.length);
  }
}

/** A selector for an element drawn again: by its id, its link, or its step. */
export function samePlace(el) {
  if (el.id) return `#${CSS.escape(el.id)}`;
  const href = el.getAttribute("href");
  if (href) return `a[href="${CSS.escape(href)}"]`;
  if (el.dataset?.step) return `[data-step="${CSS.escape(el.dataset.step)}"]`;
  return null;
}

/** Seconds as "1.2 s", "3 min 4 s", "2 h 5 min". */
export function fmtDuration(seconds) {
  if (seconds === undefined || seconds === null || Number.isNaN(seconds)) return "—";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** Seconds between two API times (now when the end is missing), or null. */
export function between(start, end) {
  if (!start) return null;
  const from = new Date(start).getTime();
  const to = end ? new Date(end).getTime() : Date.now();
  return Math.max(0, (to - from) / 1000);
}

export function badge(status) {
  return h("span", {class: `badge ${status}`, dataset: {status}}, status);
}

export function json(value) {
  return h("pre", {class: "light"}, JSON.stringify(value ?? null, null, 2));
}

let toastTimer = null;
/** A short message at the bottom of the page (errors in red). */
export function toast(message, error = false) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = error ? "toast error" : "toast";
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, error ? 8000 : 3000);
}

/** A table: columns [{title, cell(row) -> node|text}], rows; onclick(row) optional. */
export function table(columns, rows, {onclick, empty = "Nothing here yet.", rowAttrs} = {}) {
  if (!rows.length) return h("p", {class: "muted"}, empty);
  const body = rows.map((row) => h("tr", {
    class: onclick ? "clickable" : undefined,
    onclick: onclick ? (event) => { if (!event.target.closest("a,button")) onclick(row); } : undefined,
    ...(rowAttrs ? rowAttrs(row) : {}),
  }, columns.map((c) => h("td", {class: c.wrap ? "wrap" : undefined}, c.cell(row)))));
  return h("div", {class: "table-wrap"}, h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {scope: "col"}, c.title)))),
    h("tbody", {}, body)));
}
