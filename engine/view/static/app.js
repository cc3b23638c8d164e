// aidsafe view: the front end. Plain JS, no dependencies, no network beyond
// this server. Every text from a record goes into the page as a text node
// (never as HTML), so record content cannot inject markup.
"use strict";

const app = document.getElementById("app");
const crumbs = document.getElementById("crumbs");
const banner = document.getElementById("banner");
const PAGE = 50;

// ------------------------------------------------------------------ helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, options) {
  const res = await fetch(path, options);
  let data;
  try { data = await res.json(); } catch (e) { data = {error: `bad answer from the server (${res.status})`}; }
  if (!res.ok || data.error) {
    const err = new Error(data.error || `HTTP ${res.status}`);
    err.status = res.status; err.data = data;
    throw err;
  }
  return data;
}

function showError(message) {
  banner.hidden = !message;
  banner.textContent = message || "";
}

function badge(text, cls) { return h("span", {class: "badge " + (cls || "")}, text); }
function statusBadge(s) { return badge(s || "?", "st-" + s); }
function reviewBadge(r) { return r ? badge(r, "rv-" + r) : ""; }
// Harmful text (prompts, initial and revised responses, the rejected side of
// a pair, beliefs) is blurred until clicked while the content warning is on.
function cw(content, tag) {
  const el = h(tag || (content instanceof Node ? "div" : "span"), {class: "cw" + (content instanceof Node ? "" : " text"), title: "click to reveal"}, content);
  el.addEventListener("click", () => el.classList.add("revealed"));
  return el;
}
// A compliant answer to a prompt labelled harmful (input.label: decline) is blurred too.
function harmfulAnswer(rec, refusal) { return !!rec && rec.label === "decline" && refusal !== "full_refusal"; }
function cwIf(flag, node) { return flag ? cw(node) : node; }
function revealAll() { app.querySelectorAll(".cw").forEach(el => el.classList.add("revealed")); }
function revealButton() { return h("button", {class: "small", id: "reveal-all", title: "reveal every blurred text on this page", onclick: revealAll}, "show all"); }

// Unique short labels for metric names (faithfulness_policy_cot -> fai-pol-cot), the full name in a tooltip.
function abbreviations(names) {
  const words = n => String(n).split(/[_\-\s.]+/).filter(Boolean);
  for (let k = 3; k <= 40; k++) {
    const out = names.map(n => words(n).map(w => w.slice(0, k)).join("-") || String(n));
    if (new Set(out).size === names.length) return Object.fromEntries(names.map((n, i) => [n, out[i]]));
  }
  return Object.fromEntries(names.map(n => [n, n]));
}
function scoreCell(scores, metrics, abbr) {
  return metrics.map(m => h("span", {class: "sc", title: `${m}: ${scores[m] ?? "unscored"}`}, h("span", {class: "muted"}, abbr[m]), " ", h("b", {}, scores[m] ?? "–")));
}
function fmt(x, d) { return x === null || x === undefined ? "n/a" : Number(x).toFixed(d === undefined ? 2 : d); }
function ci(c) { return c && c.mean !== null && c.mean !== undefined ? `${fmt(c.mean)} [${fmt(c.low)}, ${fmt(c.high)}]` : "n/a"; }
function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = raw.split("?");
  return {parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(qs || "")};
}
function go(parts, params) {
  const qs = params && [...params].length ? "?" + params.toString() : "";
  location.hash = "#/" + parts.map(encodeURIComponent).join("/") + qs;
}
function thoughtsText(t) { return Array.isArray(t) ? t.map(String).join("\n") : (t || ""); }

// ---------------------------------------------------------- word-level diff

function tokens(text) { return (text || "").match(/\s+|[^\s]+/g) || []; }

// Longest common subsequence of two token lists: [op, token] with op eq/del/ins.
function lcs(x, y) {
  const n = x.length, m = y.length, ops = [];
  if (n * m > 4e6) return [...x.map(t => ["del", t]), ...y.map(t => ["ins", t])];
  const L = Array.from({length: n + 1}, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { ops.push(["eq", x[i]]); i++; j++; }
    else if (j < m && (i === n || L[i][j + 1] >= L[i + 1][j])) { ops.push(["ins", y[j]]); j++; }
    else { ops.push(["del", x[i]]); i++; }
  }
  return ops;
}

// Word diff of one line, as chunks: {eq: text} or {del: text, ins: text}.
// Short common words between two changes ("the", "to") are folded into the
// change, so a rewritten sentence reads as old-then-new, not word salad.
function wordDiff(before, after) {
  const ops = lcs(tokens(before), tokens(after));
  const chunks = [];
  for (let k = 0; k < ops.length; k++) {
    const [op, t] = ops[k];
    const last = chunks[chunks.length - 1];
    if (op === "eq") {
      const small = t.trim().length <= 4 || /^\s+$/.test(t);
      const moreChanges = ops.slice(k + 1, k + 4).some(([o]) => o !== "eq");
      if (last && last.del !== undefined && small && moreChanges) { last.del += t; last.ins += t; continue; }
      if (last && last.eq !== undefined) last.eq += t; else chunks.push({eq: t});
    } else {
      const group = last && last.del !== undefined ? last : (chunks.push({del: "", ins: ""}), chunks[chunks.length - 1]);
      group[op] += t;
    }
  }
  return chunks;
}

function similarity(chunks) {
  let same = 0, all = 0;
  for (const c of chunks) {
    if (c.eq !== undefined) { same += c.eq.trim().length; all += c.eq.trim().length; }
    else all += Math.max(c.del.trim().length, c.ins.trim().length);
  }
  return all ? same / all : 1;
}

// Line-level alignment first (a CoT is one thought per line), then a word
// diff inside each changed line that is still similar to its old version.
function diffView(before, after) {
  const ops = lcs((before || "").split("\n"), (after || "").split("\n"));
  const lines = [];
  let dels = [], inss = [], changed = false;
  const line = (...parts) => lines.push(h("div", {class: "dline"}, parts.length ? parts : "\u00a0"));
  const flush = () => {
    const n = Math.max(dels.length, inss.length);
    for (let k = 0; k < n; k++) {
      const a = dels[k], b = inss[k];
      if (a !== undefined && b !== undefined) {
        const chunks = wordDiff(a, b);
        if (similarity(chunks) >= 0.4) {
          line(chunks.map(c => c.eq !== undefined ? c.eq : [c.del ? h("span", {class: "del"}, c.del) : "", c.ins ? h("span", {class: "ins"}, c.ins) : ""]));
          continue;
        }
      }
      if (a !== undefined) line(h("span", {class: "del"}, a));
      if (b !== undefined) line(h("span", {class: "ins"}, b));
    }
    dels = []; inss = [];
  };
  for (const [op, t] of ops) {
    if (op === "eq") { flush(); line(t); }
    else { changed = true; (op === "del" ? dels : inss).push(t); }
  }
  flush();
  return h("div", {class: "text diff"}, lines, changed ? "" : h("span", {class: "muted small"}, "(no change)"));
}

// ------------------------------------------------------------------ pages

let FILES = [];

async function loadFiles() {
  const data = await api("/api/files");
  FILES = data.files;
  // `aidsafe view --no-blur`: the content warning starts off (the header box still turns it on)
  if (data.blur === false && !sessionStorage.getItem("aidsafe-view-cw-set")) setBlur(false);
  return FILES;
}

async function route() {
  showError("");
  KEYS = {};
  const {parts, params} = parseHash();
  try {
    if (!FILES.length || parts[0] === undefined) await loadFiles();
    if (parts[0] === "run" && parts[2] === "record") return await recordPage(parts[1], parts[3]);
    if (parts[0] === "run") return await runPage(parts[1], params);
    if (parts[0] === "compare" && parts[1]) return await compareRecordPage(parts[1], params);
    if (parts[0] === "compare") return await comparePage(params);
    return homePage();
  } catch (e) {
    showError(e.message);
    if (!app.firstChild || app.textContent === "Loading…") app.replaceChildren(h("p", {class: "error"}, e.message));
  }
}

function setCrumbs(...items) {
  crumbs.replaceChildren(...items.flatMap((it, i) => [i ? " › " : "", it]));
}

function homePage() {
  if (FILES.length === 1 && !FILES[0].error) return go(["run", "0"]);
  setCrumbs("files");
  const rows = FILES.map(f => h("tr", {},
    h("td", {class: "num"}, f.file), h("td", {}, h("a", {href: `#/run/${f.file}`}, f.label)),
    h("td", {}, f.kind), h("td", {class: "num"}, f.count + (f.complete ? "" : "…")),
    h("td", {}, f.group || ""), h("td", {class: "error"}, f.error || "")));
  const cmp = FILES.length > 1 ? h("p", {}, h("a", {href: "#/compare?files=" + FILES.map(f => f.file).join(","), id: "compare-link"},
    `Compare all ${FILES.length} runs by id`)) : "";
  app.replaceChildren(h("h1", {}, "Runs"), cmp,
    h("table", {}, h("tr", {}, ["#", "run", "kind", "records", "folder", "problem"].map(c => h("th", {}, c))), rows));
}

function fileInfo(key) {
  const f = FILES.find(x => String(x.file) === String(key));
  if (!f) throw new Error(`unknown file ${key}`);
  return f;
}

async function runPage(key, params) {
  const f = fileInfo(key);
  setCrumbs(h("a", {href: "#/"}, "files"), f.label);
  const q = new URLSearchParams(params);
  if (!q.get("limit")) q.set("limit", PAGE);
  const data = await api(`/api/records?file=${key}&` + q.toString());
  if (data.file.error) showError(data.file.error);
  const offset = Number(params.get("offset") || 0);
  const metrics = data.metrics || [];
  const facets = data.facets || {};

  const set = (name, value) => {
    const p = new URLSearchParams(params);
    if (value === "" || value === null) p.delete(name); else p.set(name, value);
    p.delete("offset");
    go(["run", key], p);
  };
  const select = (name, label, values) => h("label", {}, label,
    h("select", {name, "data-filter": name, onchange: e => set(name, e.target.value)},
      h("option", {value: ""}, "any"),
      Object.entries(values || {}).map(([v, n]) => h("option", {value: v, selected: params.get(name) === v}, `${v} (${n})`))));
  const search = h("input", {type: "search", name: "q", placeholder: "prompt, CoT, response…", value: params.get("q") || "",
                              onkeydown: e => { if (e.key === "Enter") set("q", e.target.value); }});
  const sortOpts = ["position", "id", "status", "stop", "rounds", "refusal", "review", ...metrics.map(m => "score." + m)];
  const filters = h("div", {class: "filters"},
    h("label", {}, "search", search),
    select("status", "status", facets.status), select("stop", "stop reason", facets.stop),
    select("rounds", "rounds", facets.rounds), select("refusal", "refusal class", facets.refusal),
    select("kind", "kind", facets.kind), select("review", "review", facets.review),
    metrics.map(m => select("score." + m, m, facets["score." + m])),
    h("label", {}, "sort", h("select", {name: "sort", onchange: e => set("sort", e.target.value)},
      sortOpts.map(s => h("option", {value: s, selected: (params.get("sort") || "position") === s}, s)))),
    h("label", {}, "order", h("select", {name: "desc", onchange: e => set("desc", e.target.value)},
      h("option", {value: ""}, "ascending"), h("option", {value: "1", selected: params.get("desc") === "1"}, "descending"))),
    facets.status ? "" : h("span", {class: "muted small"}, `indexing… ${data.indexed} records read; filters appear when done`));

  const abbr = abbreviations(metrics);
  const head = [["#", "num"], ["id", ""], ["review", ""], ["prompt", "wide"], ["status", ""], ["stop", ""], ["rounds", "num"],
                ["refusal", ""], ...(metrics.length ? [["scores", ""]] : [])];
  const rows = data.rows.map(r => h("tr", {class: "rec", "data-id": r.id, onclick: () => go(["run", key, "record", r.id])},
    h("td", {class: "num"}, r.position + 1), h("td", {class: "nowrap"}, h("a", {href: `#/run/${key}/record/${encodeURIComponent(r.id)}`}, r.id)),
    h("td", {}, reviewBadge(r.review), r.edited ? [" ", badge("edited")] : ""), h("td", {class: "prompt"}, cw(r.prompt)),
    h("td", {}, statusBadge(r.status), r.kind === "dpo" ? [" ", badge("dpo")] : ""),
    h("td", {}, r.stop || ""), h("td", {class: "num"}, r.rounds ?? ""), h("td", {}, r.refusal || ""),
    metrics.length ? h("td", {class: "scores"}, scoreCell(r.scores, metrics, abbr)) : ""));
  const total = data.total;
  const pager = h("div", {class: "pager"},
    h("button", {disabled: offset <= 0, onclick: () => { const p = new URLSearchParams(params); p.set("offset", Math.max(0, offset - PAGE)); go(["run", key], p); }}, "‹ previous"),
    h("span", {id: "range"}, total ? `${offset + 1}–${Math.min(offset + PAGE, total)} of ${total}${data.complete ? "" : "+ (still indexing)"}` : "no records match"),
    h("button", {disabled: offset + PAGE >= total && data.complete, id: "next",
                 onclick: () => { const p = new URLSearchParams(params); p.set("offset", offset + PAGE); go(["run", key], p); }}, "next ›"));
  const summary = h("div", {id: "summary"});
  if (metrics.length && data.complete) summaryTable([key]).then(t => summary.replaceChildren(t || "")).catch(e => showError(e.message));
  const labels = facets.review || {};
  const reviewed = Object.entries(labels).filter(([l]) => l !== "none").reduce((n, [, c]) => n + c, 0);
  const progress = facets.review ? h("div", {id: "progress", class: "small"}, h("b", {}, `reviewed ${reviewed} / ${data.indexed}`),
    Object.entries(labels).filter(([l]) => l !== "none").map(([l, c]) => [" · ", reviewBadge(l), ` ${c}`]),
    h("progress", {max: data.indexed || 1, value: reviewed})) : "";
  app.replaceChildren(h("h1", {}, f.label, " ", h("span", {class: "muted small"}, f.kind, " · review labels in ", f.review_file), " ", revealButton()),
    progress, summary, filters, pager,
    h("table", {id: "records", class: "list"}, h("tr", {}, head.map(([c, cls]) => h("th", {class: cls}, c))), rows),
    h("p", {class: "muted small"}, "keys: j/k move, Enter opens, ? for all keys"));
  listKeys(rows.map(r => r.dataset.id), rid => go(["run", key, "record", rid]));
  if (!data.complete) setTimeout(() => { if (location.hash.startsWith(`#/run/${key}`) && !location.hash.includes("/record/")) route(); }, 1500);
}

async function summaryTable(keys) {
  const data = await api("/api/summary?files=" + keys.join(","));
  if (!data.metrics.length) return "";
  const pct = Math.round(data.confidence * 100);
  const head = ["metric", ...data.files.flatMap((f, i) => i ? [`${f.label} mean [${pct}% CI]`, `${f.label} − ${data.files[0].label}`] : [`${f.label} mean [${pct}% CI]`])];
  const rows = data.metrics.map(m => h("tr", {}, h("td", {}, m.metric),
    m.cells.flatMap((c, i) => i ? [h("td", {class: "num"}, ci(c), h("span", {class: "muted small"}, ` n=${c.n}`)),
                                   h("td", {class: "num"}, ci(c.difference), h("span", {class: "muted small"}, c.difference.paired ? " paired" : " unpaired"))]
                                : [h("td", {class: "num"}, ci(c), h("span", {class: "muted small"}, ` n=${c.n}`))])));
  return h("details", {open: true, class: "card"}, h("summary", {}, `Judge scores: means with ${pct}% bootstrap intervals`),
    h("table", {}, h("tr", {}, head.map(c => h("th", {}, c))), rows));
}

// ------------------------------------------------------------- record page

function section(title, ...body) { return [h("h2", {}, title), ...body]; }
function thoughtList(list, cls) { return h("ol", {class: "thoughts " + (cls || "")}, (list || []).map(t => h("li", {}, t))); }

function deliberationTurns(rec) {
  const d = rec.deliberation;
  if (!d || !Array.isArray(d.log)) return [];
  const initial = rec.initial || {};
  let thoughts = initial.thoughts ? thoughtsText(initial.thoughts) : null;
  let response = initial.response ?? null;
  const cards = d.log.map(e => {
    const action = e.action || (e.agree ? "agree" : "?");
    const body = [h("div", {class: "small muted"}, `round ${e.round ?? "?"} · turn ${e.turn ?? "?"} · `, h("b", {}, e.agent || "?"),
      " · decision: ", badge(action, action === "revise" ? "st-ok" : ""), e.ignored_revision ? [" ", badge("revision ignored (agreed)")] : "")];
    if (e.critique) body.push(h("h3", {}, "critique"), h("div", {class: "text"}, e.critique));
    if (action === "revise" && (e.thoughts || e.response !== undefined)) {
      const newThoughts = thoughtsText(e.thoughts), newResponse = e.response ?? "";
      body.push(h("h3", {}, "CoT, against the previous turn"),
                cw(thoughts === null ? h("div", {class: "text"}, newThoughts) : diffView(thoughts, newThoughts)),
                h("h3", {}, "response, against the previous turn"),
                cw(response === null ? h("div", {class: "text"}, newResponse) : diffView(response, newResponse)));
      thoughts = newThoughts; response = newResponse;
    } else {
      body.push(h("div", {class: "muted small"}, "no change to the CoT or the response"));
    }
    return h("div", {class: "card turn " + action}, body);
  });
  return section(`Deliberation: ${d.turns ?? cards.length} turn(s), ${d.rounds ?? "?"} round(s), stopped by ${d.stop_reason || rec.stop_reason || "?"}`,
    initial.thoughts ? "" : h("p", {class: "muted small"}, "the record has no initial state (output.include_state off): the first revision is shown whole"),
    cards);
}

function removedSection(rec) {
  const removed = rec.removed || [];
  if (!removed.length && !rec.all_thoughts) return [];
  const byThought = new Map(removed.map(r => [r.thought, r.filter]));
  const pool = rec.all_thoughts || [...(rec.cot || []), ...removed.map(r => r.thought)];
  const items = pool.map(t => byThought.has(t)
    ? h("li", {class: "removed"}, t, " ", badge("removed by " + byThought.get(t), "st-failed"))
    : h("li", {}, t, (rec.cot || []).includes(t) ? "" : [" ", badge("dropped in deliberation")]));
  return section(`Refinement and filters: ${removed.length} thought(s) removed`, h("ol", {class: "thoughts", id: "removed"}, items),
    rec.refinement ? h("p", {class: "small muted"}, (rec.refinement.notes || []).join("; ")) : "");
}

function scoresSection(rec) {
  const out = [];
  if (rec.gate) {
    out.push(...section(`Gate: ${rec.gate.passed ? "passed" : "failed"}`, h("table", {},
      h("tr", {}, ["judge", "score", "min", "passed", "reason"].map(c => h("th", {}, c))),
      (rec.gate.checks || []).map(c => h("tr", {}, h("td", {}, c.agent), h("td", {class: "num score"}, c.score ?? "unscored"),
        h("td", {class: "num"}, c.min), h("td", {}, c.passed ? "yes" : "no"), h("td", {class: "text"}, c.reason || ""))))));
  }
  if (rec.scores || rec.judge) {
    const metrics = Object.keys({...(rec.scores || {}), ...(rec.judge || {})});
    out.push(...section("Judge scores", h("table", {id: "judge"},
      h("tr", {}, ["metric", "score", "status", "reason"].map(c => h("th", {}, c))),
      metrics.map(m => { const j = (rec.judge || {})[m] || {};
        return h("tr", {}, h("td", {}, m), h("td", {class: "num score"}, (rec.scores || {})[m] ?? "unscored"),
          h("td", {}, j.status || ""), h("td", {class: "text"}, j.reason || (j.raw ? "raw: " + j.raw : ""))); }))));
  }
  return out;
}

function dpoSection(rec) {
  const p = rec.preference;
  if (!p) return [];
  const side = (name, s, score) => {
    const blur = name === "rejected" ? cw : x => x;  // deliberately worse: may comply with the harmful request
    return h("div", {class: "card", id: "side-" + name}, h("h3", {}, name, " ", score !== undefined ? h("span", {class: "score"}, `score ${score ?? "unscored"}`) : ""),
      s && s.belief ? [h("div", {class: "small muted"}, `belief (score ${s.belief_score ?? "?"})`), cw(s.belief, "div")] : "",
      h("div", {class: "small muted"}, "CoT"), blur(thoughtList(s && s.cot)), h("div", {class: "small muted"}, "response"),
      blur(h("div", {class: "text"}, (s && s.response) || "")));
  };
  const scores = p.scores || {};
  return section(`Preference pair: ${p.kept === false ? "below the margin (filtered)" : "kept"} · margin ${p.margin ?? "?"} · separation ${p.separation ?? "?"}`,
    h("div", {class: "grid2", id: "dpo"}, side("chosen", p.chosen, scores.chosen), side("rejected", p.rejected, scores.rejected)),
    p.beliefs && p.beliefs.length ? h("details", {}, h("summary", {}, `${p.beliefs.length} belief candidate(s)`),
      h("table", {}, h("tr", {}, ["round", "sample", "score", "belief"].map(c => h("th", {}, c))),
        p.beliefs.map(b => h("tr", {}, h("td", {}, b.round), h("td", {}, b.sample), h("td", {class: "num"}, b.score ?? ""), h("td", {}, cw(b.belief)))))) : "");
}

// The review bar: accept / reject / needs-edit and a note, saved to the
// sidecar (409 when another tab changed the record since this page loaded).
// With "next after saving" on, a label given by key (a/r, Ctrl+Enter in the
// editor) moves on to the next record; the buttons stay on the record.
// `rec` given: on needs-edit the response and each thought can be edited.
function reviewBox(key, rid, review, opts) {
  opts = opts || {};
  let current = review;
  const rec = opts.record;
  const note = h("textarea", {name: "note", placeholder: opts.compact ? "note (optional)" : "note (optional; n to focus)"}, (review && review.note) || "");
  const state = h("span", {class: "small review-state", id: opts.compact ? null : "review-state"});
  const editor = h("div", {class: "editor", id: opts.compact ? null : "editor", hidden: true});
  const show = () => {
    const stale = opts.label === "stale" && current === review;
    state.replaceChildren(...(current ? ["saved: ", reviewBadge(stale ? "stale" : current.label), current.edit ? [" ", badge("edited")] : "",
      stale ? h("span", {class: "error"}, " (the record changed since it was labelled: not applied)") : "", ` · ${current.updated || ""}`]
      : [h("span", {class: "muted"}, "not reviewed")]).flat(Infinity).filter(x => x !== ""));
    buttons.forEach(b => b.classList.toggle("active", !!current && b.dataset.label === current.label));
    if (rec && !opts.compact) {
      editor.hidden = !(current && current.label === "needs-edit");
      if (!editor.hidden && !editor.firstChild) buildEditor();
    }
  };
  const post = async (label, edit) => {
    const body = {file: Number(key), id: rid, label, note: note.value, rev: current ? current.rev : 0};
    if (edit) body.edit = edit;
    try {
      // the session token the server put in the page: writes without it are refused
      const token = document.querySelector('meta[name="aidsafe-token"]').content;
      const data = await api("/api/review", {method: "POST", headers: {"Content-Type": "application/json", "X-Aidsafe-Token": token}, body: JSON.stringify(body)});
      current = data.review; showError(""); show();
      return true;
    } catch (e) {
      showError(e.message);
      if (e.status === 409) { current = e.data.current; if (current) note.value = current.note || ""; show(); }
      return false;
    }
  };
  const save = async (label, byKey) => {
    const ok = await post(label);
    if (ok && byKey && label && label !== "needs-edit" && advance.checked && opts.next) opts.next();
  };
  const buildEditor = () => {
    const base = (current && current.edit) || {response: rec.response || "", cot: Array.isArray(rec.cot) ? rec.cot.map(String) : (rec.cot ? [String(rec.cot)] : [])};
    const thoughtBoxes = base.cot.map((t, i) => h("textarea", {class: "edit-thought", "data-i": i, rows: 2}, t));
    const list = h("div", {class: "edit-thoughts"}, thoughtBoxes);
    const response = h("textarea", {class: "edit-response", name: "edit-response", rows: 6}, base.response);
    const add = h("button", {onclick: () => list.appendChild(h("textarea", {class: "edit-thought", rows: 2}))}, "+ thought");
    const saveEdit = async byKey => {
      const edit = {response: response.value, cot: [...list.querySelectorAll("textarea")].map(t => t.value).filter(t => t.trim())};
      if (await post("needs-edit", edit) && byKey && advance.checked && opts.next) opts.next();
    };
    const saveButton = h("button", {id: "save-edit", class: "primary", onclick: () => saveEdit(false)}, "Save edit");
    editor.replaceChildren(h("b", {}, "Edit (saved to the review file with the original kept; the run is never changed)"),
      h("div", {class: "small muted"}, "CoT, one thought per box"), list, add,
      h("div", {class: "small muted"}, "response"), response, h("div", {}, saveButton, " ", h("span", {class: "muted small"}, "Ctrl+Enter saves (and goes to the next record)")));
    editor.addEventListener("keydown", e => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); saveEdit(true); } });
  };
  const buttons = [["accept", "Accept", "a"], ["reject", "Reject", "r"], ["needs-edit", "Needs edit", "e"]].map(([l, text, k]) =>
    h("button", {"data-label": l, title: opts.compact ? text : `key ${k}`, onclick: () => save(l)}, text, opts.compact ? "" : [" ", h("kbd", {}, k)]));
  const advance = h("input", {type: "checkbox", class: "advance", checked: localStorage.getItem("aidsafe-view-advance") !== "off",
    onchange: e => localStorage.setItem("aidsafe-view-advance", e.target.checked ? "on" : "off")});
  const box = h("div", {class: "review" + (opts.compact ? " compact" : " sticky"), id: opts.compact ? null : "review", "data-file": key},
    h("div", {class: "review-row"}, h("b", {}, "Review "), buttons, " ", h("button", {onclick: () => save(null)}, "Clear"), " ",
      opts.compact ? "" : h("label", {class: "small"}, advance, " next after saving"), " ", state), note, editor);
  box.save = save;
  box.note = note;
  show();
  return box;
}

async function recordPage(key, rid) {
  const f = fileInfo(key);
  const data = await api(`/api/record?file=${key}&id=${encodeURIComponent(rid)}`);
  const rec = data.record;
  setCrumbs(h("a", {href: "#/"}, "files"), h("a", {href: `#/run/${key}`}, f.label), rid);
  const nav = h("div", {class: "navrow"},
    data.prev !== null ? h("a", {href: `#/run/${key}/record/${encodeURIComponent(data.prev)}`}, "‹ previous") : "",
    data.next !== null ? h("a", {href: `#/run/${key}/record/${encodeURIComponent(data.next)}`, id: "next-record"}, "next ›") : "",
    data.also_in.length ? h("a", {href: `#/compare/${encodeURIComponent(rid)}?files=${[key, ...data.also_in.map(o => o.file)].join(",")}`},
      `compare with ${data.also_in.map(o => o.label).join(", ")}`) : "");
  const initial = rec.initial || null;
  const body = [
    h("h1", {}, `Record ${rec.id}`, " ", statusBadge(rec.status), " ", reviewBadge(data.review && data.review.label)),
    nav,
    h("dl", {class: "kv"},
      h("dt", {}, "stop reason"), h("dd", {}, rec.stop_reason || (rec.deliberation || {}).stop_reason || "–"),
      h("dt", {}, "rounds / turns"), h("dd", {}, `${(rec.deliberation || {}).rounds ?? "–"} / ${(rec.deliberation || {}).turns ?? "–"}`),
      h("dt", {}, "refusal class (string match)"), h("dd", {}, data.row.refusal || "–"),
      rec.filtered_reason ? [h("dt", {}, "filtered"), h("dd", {class: "error"}, rec.filtered_reason)] : "",
      rec.error ? [h("dt", {}, "error"), h("dd", {class: "error"}, `${rec.error.stage ? rec.error.stage + ": " : ""}${rec.error.type || ""}: ${rec.error.message || ""}`)] : ""),
    ...section("Prompt", cw(rec.prompt || "", "div"), h("div", {class: "cw-hint"}, "blurred by the content warning; click to reveal")),
    (rec.intents && rec.intents.length) ? section("Intents", h("ul", {}, rec.intents.map(t => h("li", {}, t)))) : [],
    initial ? section("Initial CoT and response", thoughtList(initial.thoughts), cw(h("div", {class: "text card", id: "initial-response"}, initial.response || ""))) : [],
    deliberationTurns(rec),
    removedSection(rec),
    section("Final CoT and response", thoughtList(rec.cot), cwIf(harmfulAnswer(rec, data.row.refusal), h("div", {class: "text card", id: "response"}, rec.response || ""))),
    dpoSection(rec),
    scoresSection(rec),
    section("Provenance", h("pre", {}, JSON.stringify(rec.provenance || null, null, 2))),
    rec.meta ? section("Meta", h("pre", {}, JSON.stringify(rec.meta, null, 2))) : [],
  ];
  const next = data.next !== null ? () => go(["run", key, "record", data.next]) : null;
  const prev = data.prev !== null ? () => go(["run", key, "record", data.prev]) : null;
  const box = reviewBox(key, rec.id, data.review, {record: rec, label: data.review_label, next});
  body.splice(1, 0, box);
  nav.appendChild(revealButton());
  app.replaceChildren(...body.flat(Infinity).filter(x => x !== "" && x != null));
  recordKeys({box, next, prev, up: () => go(["run", key])});
  window.scrollTo(0, 0);
}

// ----------------------------------------------------------------- compare

async function comparePage(params) {
  const files = params.get("files") || FILES.map(f => f.file).join(",");
  setCrumbs(h("a", {href: "#/"}, "files"), "compare");
  const q = new URLSearchParams(params); q.set("files", files); q.set("limit", PAGE);
  const data = await api("/api/compare?" + q.toString());
  const offset = Number(params.get("offset") || 0);
  const metrics = [...new Set(data.files.flatMap(f => f.metrics))];
  const toggle = h("label", {}, h("input", {type: "checkbox", checked: params.get("only") === "diff", id: "only-diff",
    onchange: e => { const p = new URLSearchParams(params); if (e.target.checked) p.set("only", "diff"); else p.delete("only"); p.delete("offset"); go(["compare"], p); }}),
    " only records that differ");
  const abbr = abbreviations(metrics);
  const head = ["id", "", "prompt", ...data.files.map((f, i) => i ? f.label : `${f.label} (reference)`)];
  const cell = c => c ? h("td", {}, statusBadge(c.status), " ", c.stop || "", c.rounds != null ? ` r${c.rounds}` : "", " ", c.refusal || "",
      metrics.length ? h("div", {class: "small"}, scoreCell(c.scores, metrics, abbr)) : "", " ", reviewBadge(c.review))
    : h("td", {class: "muted"}, "missing");
  const rows = data.rows.map(r => {
    const first = r.cells.find(c => c);
    return h("tr", {class: "rec", "data-id": r.id, onclick: () => go(["compare", r.id], new URLSearchParams({files}))},
      h("td", {class: "nowrap"}, r.id), h("td", {}, r.differs ? badge("differs", "diffmark") : badge("same")),
      h("td", {class: "prompt"}, cw(first ? first.prompt : "")), r.cells.map(cell));
  });
  const summary = h("div", {id: "summary"});
  if (metrics.length) summaryTable(files.split(",")).then(t => summary.replaceChildren(t || "")).catch(e => showError(e.message));
  app.replaceChildren(h("h1", {}, `Compare ${data.files.length} runs by id`, " ", revealButton()),
    h("p", {class: "muted"}, `${data.ids} id(s), ${data.shared} in every run; "differs": the CoT, the response or the status differ, or a run lacks the id; differences are against the reference, ${data.files[0].label}`),
    summary, h("div", {class: "filters"}, toggle),
    h("div", {class: "pager"},
      h("button", {disabled: offset <= 0, onclick: () => { const p = new URLSearchParams(params); p.set("offset", Math.max(0, offset - PAGE)); go(["compare"], p); }}, "‹ previous"),
      h("span", {}, data.total ? `${offset + 1}–${Math.min(offset + PAGE, data.total)} of ${data.total}` : "nothing to show"),
      h("button", {disabled: offset + PAGE >= data.total, onclick: () => { const p = new URLSearchParams(params); p.set("offset", offset + PAGE); go(["compare"], p); }}, "next ›")),
    h("table", {id: "compare", class: "list"}, h("tr", {}, head.map(c => h("th", {class: c === "prompt" ? "wide" : ""}, c))), rows));
  listKeys(rows.map(r => r.dataset.id), rid => go(["compare", rid], new URLSearchParams({files})));
}

async function compareRecordPage(rid, params) {
  const keys = (params.get("files") || FILES.map(f => f.file).join(",")).split(",");
  setCrumbs(h("a", {href: "#/"}, "files"), h("a", {href: "#/compare?files=" + keys.join(",")}, "compare"), rid);
  const results = await Promise.all(keys.map(k => api(`/api/record?file=${k}&id=${encodeURIComponent(rid)}`).catch(e => ({error: e.message, key: k}))));
  const base = results.find(r => !r.error);
  if (!base) throw new Error(`no run has a record with id ${rid}`);
  const baseRec = base.record;
  const col = (res, i) => {
    if (res.error) return h("div", {class: "card"}, h("h3", {}, fileInfo(keys[i]).label), h("p", {class: "muted"}, res.error));
    const r = res.record, first = i === 0 || res === base;
    const scores = r.scores ? Object.entries(r.scores).map(([m, s]) => `${m} ${s ?? "–"}`).join(" · ") : "";
    return h("div", {class: "card"}, h("h3", {}, h("a", {href: `#/run/${keys[i]}/record/${encodeURIComponent(rid)}`}, res.file.label), " ", statusBadge(r.status)),
      reviewBox(keys[i], rid, res.review, {compact: true, label: res.review_label}),
      h("div", {class: "small muted"}, `stop ${r.stop_reason || "–"} · rounds ${(r.deliberation || {}).rounds ?? "–"} · refusal ${res.row.refusal || "–"}`),
      scores ? h("div", {class: "small"}, scores) : "",
      h("h3", {}, "CoT", first ? "" : " (against the reference)"),
      first ? h("div", {class: "text"}, thoughtsText(r.cot)) : diffView(thoughtsText(baseRec.cot), thoughtsText(r.cot)),
      h("h3", {}, "response", first ? "" : " (against the reference)"),
      cwIf(harmfulAnswer(r, res.row.refusal), first ? h("div", {class: "text"}, r.response || "") : diffView(baseRec.response || "", r.response || "")));
  };
  const grid = h("div", {class: "gridn", style: `grid-template-columns:repeat(${keys.length},1fr)`}, results.map(col));
  app.replaceChildren(h("h1", {}, `Record ${rid} in ${keys.length} runs`, " ", revealButton()), ...section("Prompt", cw(baseRec.prompt || "", "div")).flat(Infinity),
    h("h2", {}, "Side by side"), h("p", {class: "muted small"}, `differences against ${fileInfo(keys[0]).label} (the reference)`), grid);
  recordKeys({box: null, next: null, prev: null, up: () => go(["compare"], new URLSearchParams({files: keys.join(",")}))});
}

// ---------------------------------------------------------------- keyboard

// One handler for the whole page; each page sets what the keys do.
let KEYS = {};
const HELP = [["j / ↓", "next record (list: move down; record page: next record)"], ["k / ↑", "previous record"],
  ["Enter / o", "open the selected record (list)"], ["Ctrl+Enter", "in the editor: save the edit, then the next record"], ["a", "accept (then the next record, when \"next after saving\" is on)"],
  ["r", "reject (then the next record)"], ["e", "needs edit: opens the editor for the response and each thought"],
  ["n", "write a note (Esc leaves the box)"], ["s", "save the note with the current label"], ["u", "up: back to the list"],
  ["b", "show all blurred text on this page"], ["?", "this help"]];

function listKeys(ids, open) {
  let at = -1;
  const rows = () => [...app.querySelectorAll("tr.rec")];
  const select = i => {
    const all = rows();
    if (!all.length) return;
    at = Math.max(0, Math.min(all.length - 1, i));
    all.forEach((r, k) => r.classList.toggle("selected", k === at));
    all[at].scrollIntoView({block: "nearest"});
  };
  KEYS = {j: () => select(at + 1), ArrowDown: () => select(at + 1), k: () => select(at - 1), ArrowUp: () => select(at - 1),
          Enter: () => at >= 0 && open(ids[at]), o: () => at >= 0 && open(ids[at]), b: revealAll};
}

function recordKeys({box, next, prev, up}) {
  KEYS = {j: next, ArrowDown: next, ArrowRight: next, k: prev, ArrowUp: prev, ArrowLeft: prev, u: up, b: revealAll};
  if (box) Object.assign(KEYS, {a: () => box.save("accept", true), r: () => box.save("reject", true), e: () => box.save("needs-edit", true),
    n: () => box.note.focus(), s: () => { const l = box.querySelector("button.active"); if (l) box.save(l.dataset.label, true); }});
}

function toggleHelp() {
  let el = document.getElementById("help");
  if (el) { el.remove(); return; }
  el = h("div", {id: "help", role: "dialog", onclick: () => el.remove()}, h("div", {class: "card"}, h("h2", {}, "Keys"),
    h("table", {}, HELP.map(([k, what]) => h("tr", {}, h("td", {}, h("kbd", {}, k)), h("td", {}, what)))),
    h("p", {class: "muted small"}, "Esc or click to close")));
  document.body.appendChild(el);
}

document.addEventListener("keydown", e => {
  const t = e.target;
  const typing = t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.tagName === "SELECT" || t.isContentEditable);
  if (e.key === "Escape") { const help = document.getElementById("help"); if (help) help.remove(); if (typing) t.blur(); return; }
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "?") { e.preventDefault(); toggleHelp(); return; }
  const action = KEYS[e.key];
  if (action) { e.preventDefault(); action(); }
});

// ------------------------------------------------------------------- start

const cwBox = document.getElementById("cw");
function setBlur(on) { cwBox.checked = on; document.body.classList.toggle("cw-on", on); }
setBlur(localStorage.getItem("aidsafe-view-cw") !== "off");
cwBox.addEventListener("change", () => {
  setBlur(cwBox.checked);
  localStorage.setItem("aidsafe-view-cw", cwBox.checked ? "on" : "off");
  sessionStorage.setItem("aidsafe-view-cw-set", "1");
});
window.addEventListener("hashchange", route);
route();
