// sweeprun ui: the table, parallel coordinates with brushing, metric vs param with a
// mean ± std band, step curves of selected experiments, parameter importance and the
// optimisation history. Every text from the repository goes in through textContent or
// as Vega data, never as markup. Read-only: the page changes nothing in the repository.
"use strict";
const SW = {state: null, rows: [], view: [], sort: null, filter: "", brushes: {},
  selected: new Set(), hidden: new Set(), baseline: null, live: !!window.SWEEPRUN_LIVE};
const byId = id => document.getElementById(id);
const el = (tag, text, cls) => { const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls; return e; };
const num = v => typeof v === "number" && isFinite(v);
const LOWER = /loss|err|mse|mae|rmse|perplex|time|latency/i;
const ROW_H = 21, PAD = 20;

function colName(c) { return c.file ? `${c.file}:${c.key}` : c.key; }

// -- data ----------------------------------------------------------------------------
function ingest(state) {
  SW.state = state;
  const f = state.fields, n = state.n, rows = [];
  for (let i = 0; i < n; i++) rows.push(i);
  SW.rows = rows;
  if (SW.baseline === null || !state.baselines.some(b => b.sha === SW.baseline))
    SW.baseline = state.head;
  SW.columns = state.columns.map((c, j) => ({...c, j, name: colName(c),
    numeric: c.values.every(v => v === null || num(v))}));
  renderAll();
}
function value(c, i) { return c.values[i]; }
function field(name, i) { return SW.state.fields[name][i]; }
function inBaseline(i) { return SW.baseline === "*" || field("baseline", i) === SW.baseline; }

function varying() {  // columns whose value differs among this baseline's rows
  const rows = SW.rows.filter(inBaseline);
  return SW.columns.filter(c => {
    let first; let seen = false;
    for (const i of rows) { const v = c.values[i]; if (v === null) continue;
      if (!seen) { first = v; seen = true; } else if (v !== first) return true; }
    return c.section === "metrics" && seen;
  });
}

function passes(i) {
  if (!inBaseline(i)) return false;
  for (const [j, b] of Object.entries(SW.brushes)) {  // kept: the rows inside, on the axis
    const p = b.pos(SW.columns[j].values[i]);
    if (p === null || p < b.p0 - 1e-9 || p > b.p1 + 1e-9) return false;
  }
  if (SW.filter) {
    const q = SW.filter.toLowerCase();
    const text = [field("name", i), field("state", i), field("sweep", i)]
      .concat(SW.shown.map(c => c.values[i])).join(" ").toLowerCase();
    if (!text.includes(q)) return false;
  }
  return true;
}

function direction(c) {
  const d = (SW.state.directions || {})[c.name] || (SW.state.directions || {})[c.key];
  return d || (LOWER.test(c.key) ? "min" : "max");
}

// -- table -----------------------------------------------------------------------------
const FIXED = [["name", "Name", "t"], ["state", "State", "t"], ["sweep", "Sweep", "t"],
  ["queued_at", "Created", ""], ["duration", "Duration", ""], ["commit", "Commit", "t"]];

function fmt(v, kind) {
  if (v === null || v === undefined) return "";
  if (kind === "queued_at") return new Date(v * 1000).toISOString().slice(0, 19).replace("T", " ");
  if (kind === "duration") return num(v) ? v.toFixed(2) + " s" : "";
  if (kind === "commit") return String(v).slice(0, 7);
  if (num(v)) return Number.isInteger(v) ? String(v) : String(+v.toPrecision(6));
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function compute() {
  SW.cols = varying();
  SW.shown = SW.cols.filter(c => !SW.hidden.has(c.name));
  let view = SW.rows.filter(passes);
  if (SW.sort) {
    const [key, asc] = SW.sort;
    const get = typeof key === "number" ? i => SW.columns[key].values[i] : i => field(key, i);
    view.sort((a, b) => { const x = get(a), y = get(b);
      if (x === y) return 0; if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      const r = num(x) && num(y) ? x - y : String(x).localeCompare(String(y), undefined, {numeric: true});
      return asc ? r : -r; });
  }
  SW.view = view;
  SW.best = {};  // column index -> row of the best value (over this baseline's results)
  for (const c of SW.shown) {
    if (c.section !== "metrics" || !c.numeric) continue;
    const lower = direction(c) === "min"; let best = null;
    for (const i of SW.rows) { if (!inBaseline(i)) continue; const v = c.values[i];
      if (num(v) && (best === null || (lower ? v < c.values[best] : v > c.values[best]))) best = i; }
    if (best !== null) SW.best[c.j] = best;
  }
}

function renderTable() {
  const head = byId("thead"); head.textContent = "";
  const tr = el("tr");
  tr.appendChild(el("th", "✓", "t"));
  for (const [key, label, cls] of FIXED) tr.appendChild(header(label, key, cls));
  for (const c of SW.shown) tr.appendChild(header(c.name, c.j, "",
    c.section === "metrics" ? `metric (best: ${direction(c)})` : "param"));
  head.appendChild(tr);
  byId("count").textContent = `${SW.view.length} of ${SW.rows.filter(inBaseline).length} experiments`;
  byId("spacer").style.height = (SW.view.length * ROW_H) + "px";
  paintRows();
}

function header(label, key, cls, title) {
  const th = el("th", label, cls); if (title) th.title = title;
  if (SW.sort && SW.sort[0] === key) th.setAttribute("aria-sort", SW.sort[1] ? "ascending" : "descending");
  th.addEventListener("click", () => { const asc = !(SW.sort && SW.sort[0] === key && SW.sort[1]);
    SW.sort = [key, asc]; compute(); renderTable(); });
  return th;
}

function paintRows() {  // only the rows in sight: the table stays fast at 100,000
  const sc = byId("scroller"), body = byId("tbody"); body.textContent = "";
  const first = Math.max(0, Math.floor(sc.scrollTop / ROW_H) - 10);
  const last = Math.min(SW.view.length, first + Math.ceil(sc.clientHeight / ROW_H) + 30);
  byId("tbody").style.transform = `translateY(${first * ROW_H}px)`;
  for (let k = first; k < last; k++) {
    const i = SW.view[k], tr = el("tr"), key = field("key", i);
    tr.dataset.name = field("name", i);
    if (SW.selected.has(key)) tr.className = "sel";
    const box = el("input"); box.type = "checkbox"; box.checked = SW.selected.has(key);
    box.addEventListener("change", () => { box.checked ? SW.selected.add(key) : SW.selected.delete(key);
      tr.className = box.checked ? "sel" : ""; selectionChanged(); });
    const td0 = el("td", null, "t"); td0.appendChild(box); tr.appendChild(td0);
    for (const [f, , cls] of FIXED) {
      const td = el("td", fmt(field(f, i), f), cls);
      if (f === "state") td.className += " st-" + field("state", i);
      if (f === "name") { const b = el("button", "copy", "copy");
        b.title = "copy: sweeprun apply " + field("name", i);
        b.addEventListener("click", () => copy("sweeprun apply " + field("name", i)));
        td.append(" ", b); }
      tr.appendChild(td);
    }
    for (const c of SW.shown) { const td = el("td", fmt(c.values[i]));
      if (SW.best[c.j] === i) { td.className = "best"; td.title = `best ${c.name} (${direction(c)})`; td.textContent += " ★"; }
      tr.appendChild(td); }
    body.appendChild(tr);
  }
}

function copy(text) {
  byId("cmd").value = text;
  if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => byId("cmd").select());
  else byId("cmd").select();
}

function renderColumnPicker() {
  const box = byId("cols"); box.textContent = "";
  for (const c of SW.cols) { const l = el("label"), cb = el("input"); cb.type = "checkbox";
    cb.checked = !SW.hidden.has(c.name);
    cb.addEventListener("change", () => { cb.checked ? SW.hidden.delete(c.name) : SW.hidden.add(c.name);
      compute(); renderTable(); renderPC(); });
    l.append(cb, " " + c.name); box.appendChild(l); box.appendChild(el("br")); }
}

// -- parallel coordinates (canvas lines, SVG axes with ticks, a brush per axis) -------
function ticks(lo, hi, count) {
  if (lo === hi) return [lo];
  const step0 = (hi - lo) / count, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const err = step0 / mag, step = mag * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
  const out = []; for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    out.push(+t.toPrecision(12)); return out;
}

function scales() {
  const rows = SW.rows.filter(inBaseline);
  return SW.shown.map(c => {
    if (c.numeric) { let lo = Infinity, hi = -Infinity;
      for (const i of rows) { const v = c.values[i]; if (num(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
      if (lo === Infinity) { lo = 0; hi = 1; } if (lo === hi) { lo -= 0.5; hi += 0.5; }
      if (lo > 0 && hi / lo >= 100) {  // two decades or more (a learning rate): a log axis
        const a = Math.log10(lo), b = Math.log10(hi);
        return {c, lo, hi, log: true, pos: v => num(v) && v > 0 ? (Math.log10(v) - a) / (b - a) : null}; }
      return {c, lo, hi, pos: v => num(v) ? (v - lo) / (hi - lo) : null}; }
    const cats = [...new Set(rows.map(i => String(c.values[i])))]
      .sort((a, b) => a.localeCompare(b, undefined, {numeric: true}));
    return {c, cats, pos: v => { const k = cats.indexOf(String(v));
      return k < 0 ? null : cats.length < 2 ? 0.5 : k / (cats.length - 1); }};
  });
}

function renderPC() {
  const box = byId("pc"), W = Math.max(400, box.clientWidth), H = 300, top = 24, bottom = H - 20;
  const axes = scales(); box.textContent = "";
  const cv = el("canvas"); cv.width = W; cv.height = H; box.appendChild(cv);
  const svgNS = "http://www.w3.org/2000/svg", svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); box.appendChild(svg);
  if (!axes.length) return;
  const x = k => PAD + 60 + k * (W - 2 * PAD - 120) / Math.max(1, axes.length - 1);
  const y = p => bottom - p * (bottom - top);
  const ctx = cv.getContext("2d"), color = byId("color").value;
  const cc = SW.columns.find(c => c.name === color), cs = cc && scales1(cc);
  const sel = new Set(SW.view);
  ctx.lineWidth = 1;
  for (const i of SW.rows) { if (!inBaseline(i)) continue;
    const on = sel.has(i); ctx.strokeStyle = on ? hue(cs ? cs(cc.values[i]) : null) : "rgba(0,0,0,0.06)";
    ctx.beginPath(); let started = false;
    axes.forEach((a, k) => { const p = a.pos(a.c.values[i]); if (p === null) { started = false; return; }
      started ? ctx.lineTo(x(k), y(p)) : ctx.moveTo(x(k), y(p)); started = true; });
    ctx.stroke(); }
  axes.forEach((a, k) => {
    const g = document.createElementNS(svgNS, "g"); g.setAttribute("class", "axis");
    g.dataset.column = a.c.name;
    const line = document.createElementNS(svgNS, "line");
    line.setAttribute("x1", x(k)); line.setAttribute("x2", x(k)); line.setAttribute("y1", top); line.setAttribute("y2", bottom);
    g.appendChild(line);
    const title = document.createElementNS(svgNS, "text"); title.textContent = a.c.name;
    title.setAttribute("x", x(k)); title.setAttribute("y", 12); title.setAttribute("text-anchor", "middle"); g.appendChild(title);
    const marks = a.cats ? a.cats.map(cat => [a.pos(cat), cat])
      : a.log ? decades(a.lo, a.hi).map(t => [a.pos(t), fmt(t)])
      : ticks(a.lo, a.hi, 5).map(t => [a.pos(t), fmt(t)]);
    for (const [p, label] of marks) { const t = document.createElementNS(svgNS, "text");
      t.textContent = label; t.setAttribute("x", x(k) - 5); t.setAttribute("y", y(p) + 4); t.setAttribute("text-anchor", "end"); g.appendChild(t);
      const tk = document.createElementNS(svgNS, "line"); tk.setAttribute("x1", x(k) - 3); tk.setAttribute("x2", x(k));
      tk.setAttribute("y1", y(p)); tk.setAttribute("y2", y(p)); g.appendChild(tk); }
    const hit = document.createElementNS(svgNS, "rect"); hit.setAttribute("class", "hit");
    hit.setAttribute("x", x(k) - 12); hit.setAttribute("width", 24); hit.setAttribute("y", top); hit.setAttribute("height", bottom - top);
    hit.setAttribute("fill", "transparent"); hit.style.cursor = "crosshair"; g.appendChild(hit);
    const b = SW.brushes[a.c.j];
    if (b) { b.pos = a.pos; const r = document.createElementNS(svgNS, "rect"); r.setAttribute("class", "brush");
      r.setAttribute("x", x(k) - 8); r.setAttribute("width", 16); r.setAttribute("y", y(b.p1));
      r.setAttribute("height", y(b.p0) - y(b.p1)); g.appendChild(r); }
    brushable(hit, a, y, top, bottom);
    svg.appendChild(g);
  });
}

function decades(lo, hi) {  // a log axis's ticks: whole powers of ten, six at most
  const e0 = Math.ceil(Math.log10(lo) - 1e-9), e1 = Math.floor(Math.log10(hi) + 1e-9);
  const step = Math.max(1, Math.ceil((e1 - e0 + 1) / 6)), out = [];
  for (let e = e0; e <= e1; e += step) out.push(+(10 ** e).toPrecision(12));
  return out;
}

function scales1(c) {
  const vals = SW.rows.filter(inBaseline).map(i => c.values[i]).filter(num);
  if (!vals.length) return null; const lo = Math.min(...vals), hi = Math.max(...vals);
  return v => num(v) ? (hi === lo ? 0.5 : (v - lo) / (hi - lo)) : null;
}
function hue(p) { if (p === null) return "rgba(70,70,160,0.5)";
  return `hsla(${Math.round(240 - 240 * p)},70%,45%,0.55)`; }

function brushable(hit, a, y, top, bottom) {  // drag along an axis: keep the rows inside
  hit.addEventListener("mousedown", ev => {
    ev.preventDefault(); const rect = hit.ownerSVGElement.getBoundingClientRect();
    const p0 = (bottom - (ev.clientY - rect.top)) / (bottom - top);
    const move = e => { const p1 = (bottom - (e.clientY - rect.top)) / (bottom - top);
      setBrush(a, Math.min(p0, p1), Math.max(p0, p1), 4 / (bottom - top)); };
    const up = e => { window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up);
      const p1 = (bottom - (e.clientY - rect.top)) / (bottom - top);
      if (Math.abs(p1 - p0) < 0.01) { delete SW.brushes[a.c.j]; refresh(); } else setBrush(a, Math.min(p0, p1), Math.max(p0, p1), 4 / (bottom - top)); };
    window.addEventListener("mousemove", move); window.addEventListener("mouseup", up);
  });
}

function setBrush(a, p0, p1, slack) {  // slack: a few pixels, so an edge value is in
  SW.brushes[a.c.j] = {p0: Math.max(0, p0 - slack), p1: Math.min(1, p1 + slack), pos: a.pos};
  refresh();
}

function refresh() { compute(); renderTable(); renderPC(); renderBands(); }

// -- metric vs param: one panel per sweep, mean ± std across the other params ----------
function renderBands() {
  const m = SW.columns.find(c => c.name === byId("metric").value), p = SW.columns.find(c => c.name === byId("param").value);
  const box = byId("bands"); box.textContent = "";
  if (!m || !p || !window.vegaEmbed) return;
  const groups = new Map();
  for (const i of SW.view) { const y = m.values[i], xv = p.values[i]; if (!num(y) || xv === null) continue;
    const k = field("sweep", i) + "\u0000" + String(xv); let g = groups.get(k);
    if (!g) { g = {sweep: field("sweep", i) || "(none)", x: p.numeric ? xv : String(xv), ys: []}; groups.set(k, g); }
    g.ys.push(y); }
  const data = [...groups.values()].map(g => { const n = g.ys.length, mean = g.ys.reduce((s, v) => s + v, 0) / n;
    const sd = n > 1 ? Math.sqrt(g.ys.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1)) : 0;
    return {sweep: g.sweep, x: g.x, mean, lo: mean - sd, hi: mean + sd, n}; });
  const xs = data.map(d => d.x).filter(num), logx = xs.length && Math.min(...xs) > 0 && Math.max(...xs) / Math.min(...xs) >= 100;
  const xenc = p.numeric ? {field: "x", type: "quantitative", title: p.name, scale: logx ? {type: "log"} : {zero: false}}
    : {field: "x", type: "ordinal", title: p.name, sort: "ascending"};
  const spec = {data: {values: data},
    facet: {column: {field: "sweep", title: "sweep"}}, resolve: {scale: {x: "independent"}},
    spec: {width: 260, height: 180, layer: [
      {mark: {type: "area", opacity: 0.25, color: "#39f"}, encoding: {x: xenc, y: {field: "lo", type: "quantitative", title: m.name, scale: {zero: false}}, y2: {field: "hi"}}},
      {mark: {type: "line", point: true}, encoding: {x: xenc, y: {field: "mean", type: "quantitative"},
        tooltip: [{field: "x", title: p.name}, {field: "mean", format: ".4g"}, {field: "n", title: "runs"}]}}]}};
  const div = el("div"); div.id = "band-chart"; box.appendChild(div);
  vegaEmbed(div, spec, {actions: false, renderer: "svg"}).catch(e => console.error(e));
  byId("band-note").textContent = `mean ± std of ${m.name} across every param not on the chart (e.g. seeds), per value of ${p.name}; one panel per sweep`;
}

// -- curves of the selected experiments ------------------------------------------------
function selectionChanged() {
  const keys = [...SW.selected];
  const names = SW.rows.filter(i => SW.selected.has(field("key", i))).map(i => field("name", i));
  byId("diffcmd").disabled = names.length !== 2;
  byId("diffcmd").onclick = () => copy(`sweeprun diff ${names[0]} ${names[1]}`);
  const box = byId("curves"); box.textContent = "";
  if (!keys.length) { box.appendChild(el("p", "select experiments in the table to overlay their step curves", "note")); return; }
  fetchJSON("curves", keys).then(specs => {
    box.textContent = "";
    if (!specs.length) box.appendChild(el("p", "no step curves (plots files or checkpoint metrics) for these experiments", "note"));
    for (const spec of specs) { const div = el("div", null, "curve"); box.appendChild(div);
      vegaEmbed(div, spec, {actions: false, renderer: "svg"}).catch(e => console.error(e)); }
  });
}

function fetchJSON(what, keys) {
  if (!SW.live) {  // a static page: the curves of its first experiments, kept to the chosen
    const names = new Set(SW.rows.filter(i => keys.includes(field("key", i))).map(i => field("name", i)));
    return Promise.resolve((SW.state.curves || []).map(spec => {
      const values = ((spec.data || {}).values || []).filter(r => names.has(r.experiment));
      return values.length ? {...spec, data: {values}} : null; }).filter(s => s)); }
  const q = keys.map(k => "key=" + encodeURIComponent(k)).join("&");
  return fetch(`/api/${what}?${q}`).then(r => r.json());
}

// -- importance and optimisation history -------------------------------------------------
function renderImportance() {
  const box = byId("importance"); box.textContent = "";
  const m = byId("imp-metric").value; if (!m) return;
  const got = SW.live ? fetch("/api/importance?metric=" + encodeURIComponent(m) + "&baseline=" + encodeURIComponent(SW.baseline)).then(r => r.json())
    : Promise.resolve((SW.state.importance || {})[m] ||
      {error: "not in this page: written without --importance (sweeprun report --importance, or sweeprun ui)"});
  got.then(res => {
    box.textContent = "";
    if (res.error) { box.appendChild(el("p", res.error, "note")); return; }
    box.appendChild(el("p", `method: ${res.method}`, "note"));
    const div = el("div"); box.appendChild(div);
    vegaEmbed(div, {$schema: "https://vega.github.io/schema/vega-lite/v5.json",
      data: {values: Object.entries(res.importances).map(([param, v]) => ({param, importance: v}))},
      mark: "bar", width: 360, encoding: {y: {field: "param", type: "nominal", sort: "-x"},
        x: {field: "importance", type: "quantitative"}}}, {actions: false, renderer: "svg"});
  });
}

function renderHistory() {
  const box = byId("history"); box.textContent = "";
  for (const [sweep, info] of Object.entries(SW.state.studies || {})) {
    const c = SW.columns.find(x => x.section === "metrics" && (x.name === info.metric || x.key === info.metric));
    if (!c) continue;
    const trials = SW.rows.filter(i => inBaseline(i) && field("sweep", i) === sweep && field("started", i))
      .sort((a, b) => field("started", a) - field("started", b));
    let best = null; const data = trials.map((i, n) => { const v = c.values[i], st = field("state", i);
      if (num(v) && st !== "pruned" && (best === null || (info.direction === "min" ? v < best : v > best))) best = v;
      return {trial: n, value: num(v) ? v : null, state: st, best, name: field("name", i)}; });
    const div = el("div"); box.appendChild(el("h3", `${sweep}: ${c.name} (${info.direction})`)); box.appendChild(div);
    vegaEmbed(div, {data: {values: data}, width: 420, height: 200,
      layer: [{mark: {type: "point", filled: true}, encoding: {x: {field: "trial", type: "quantitative"},
        y: {field: "value", type: "quantitative", scale: {zero: false}, title: c.name},
        color: {field: "state", type: "nominal"}, tooltip: [{field: "name"}, {field: "state"}, {field: "value"}]}},
        {mark: {type: "line", interpolate: "step-after", color: "#222"}, encoding: {x: {field: "trial", type: "quantitative"}, y: {field: "best", type: "quantitative"}}}]},
      {actions: false, renderer: "svg"});
  }
  if (!box.childNodes.length) box.appendChild(el("p", "no optimize: sweep here", "note"));
}

// -- running and queued ----------------------------------------------------------------
function renderRunning() {
  const box = byId("running"); box.textContent = "";
  for (const i of SW.rows) { const st = field("state", i); if (st !== "running" || !inBaseline(i)) continue;
    const info = (SW.state.running || {})[field("key", i)] || {};
    const line = el("div", null, "run"); line.append(el("b", field("name", i)), " ");
    if (info.step) line.append(`checkpoint ${info.step} ${JSON.stringify(info.metrics || {})} `);
    line.append(el("code", info.log || "")); box.appendChild(line); }
  const q = SW.rows.filter(i => inBaseline(i) && field("state", i) === "queued").length;
  box.appendChild(el("div", `${q} queued`, "note"));
}

function options(sel, names, keep) {
  const before = sel.value; sel.textContent = "";
  for (const n of names) { const o = el("option", n); o.value = n; sel.appendChild(o); }
  if (names.includes(before)) sel.value = before; else if (keep && names.includes(keep)) sel.value = keep;
}

function renderAll() {
  const st = SW.state, bsel = byId("baseline");
  options(bsel, [], null);
  for (const b of st.baselines) { const o = el("option", `${b.sha.slice(0, 7)} ${b.subject} (${b.count})`); o.value = b.sha; bsel.appendChild(o); }
  const all = el("option", "all baselines"); all.value = "*"; bsel.appendChild(all); bsel.value = SW.baseline;
  compute();
  const metrics = SW.cols.filter(c => c.section === "metrics" && c.numeric).map(c => c.name);
  const params = SW.cols.filter(c => c.section === "params").map(c => c.name);
  options(byId("metric"), metrics); options(byId("param"), params); options(byId("color"), metrics);
  options(byId("imp-metric"), metrics);
  renderColumnPicker(); renderTable(); renderPC(); renderBands(); renderRunning(); renderHistory();
  document.body.dataset.stamp = st.stamp;
}

function load() { return fetch("/api/state").then(r => r.json()).then(ingest); }

window.addEventListener("DOMContentLoaded", () => {
  byId("scroller").addEventListener("scroll", paintRows);
  byId("filter").addEventListener("input", e => { SW.filter = e.target.value; compute(); renderTable(); renderPC(); renderBands(); });
  byId("baseline").addEventListener("change", e => { SW.baseline = e.target.value; SW.brushes = {}; renderAll(); });
  for (const id of ["metric", "param"]) byId(id).addEventListener("change", renderBands);
  byId("color").addEventListener("change", renderPC);
  byId("imp-metric").addEventListener("change", renderImportance);
  byId("imp-go").addEventListener("click", renderImportance);
  byId("clear").addEventListener("click", () => { SW.brushes = {}; refresh(); });
  window.addEventListener("resize", renderPC);
  if (SW.live) {
    load().then(() => { selectionChanged(); });
    const es = new EventSource("/api/events");
    es.addEventListener("changed", () => load());
  } else {
    ingest(JSON.parse(byId("state").textContent)); selectionChanged();
  }
});
