"use strict";
// synthgen review (helpers: common.js): every piece of row text goes into the DOM with textContent (never as markup).

const S = { rows: [], shown: [], current: 0, editing: null, rejecting: false };

function stateOf(r) {
  if (r.decision) return r.decision.state;
  return r.stale ? "stale" : "unreviewed";
}

function textOf(r) {
  const row = r.row;
  const msgs = r.config === "sft" ? row.messages : [...row.prompt, ...row.chosen, ...row.rejected];
  return msgs.map((m) => m.content).join("\n").toLowerCase();
}

function firstUser(r) {
  const msgs = r.config === "sft" ? r.row.messages : r.row.prompt;
  const turn = msgs.find((m) => m.role === "user");
  return turn ? turn.content : "";
}

function fillSelect(id, values) {
  const select = $(id);
  for (const v of [...new Set(values)].filter((x) => x !== undefined && x !== "").sort()) {
    select.append(el("option", { value: v }, v));
  }
}

async function load() {
  const response = await fetch("/api/rows");
  if (!response.ok) { toast(await response.text(), true); return; }
  const data = await response.json();
  S.rows = data.rows;
  S.rows.forEach((r) => { r.search = textOf(r); });
  $("run").textContent = data.run;
  $("reviewer").value = localStorage.getItem("synthgen-reviewer") || "";
  fillSelect("f-topic", S.rows.map((r) => r.row.topic));
  fillSelect("f-seed", S.rows.flatMap((r) => r.row.seed_ids || []));
  fillSelect("f-persona", S.rows.map((r) => r.row.persona));
  fillSelect("f-split", S.rows.map((r) => r.split));
  const params = new URLSearchParams(location.search);
  if (params.get("q")) $("q").value = params.get("q");
  applyFilters();
}

function applyFilters() {
  const q = $("q").value.trim().toLowerCase();
  const f = (id) => $(id).value;
  const minScore = $("f-score").value === "" ? null : Number($("f-score").value);
  const key = S.shown[S.current] ? S.shown[S.current].key : null;
  S.shown = S.rows.filter((r) =>
    (!f("f-config") || r.config === f("f-config")) &&
    (!f("f-topic") || r.row.topic === f("f-topic")) &&
    (!f("f-seed") || (r.row.seed_ids || []).includes(f("f-seed"))) &&
    (!f("f-persona") || r.row.persona === f("f-persona")) &&
    (!f("f-split") || r.split === f("f-split")) &&
    (minScore === null || (r.config === "prefs" && r.row.score_chosen >= minScore)) &&
    (!f("f-state") || stateOf(r) === f("f-state")) &&
    (!q || r.search.includes(q)));
  const kept = S.shown.findIndex((r) => r.key === key);
  S.current = kept >= 0 ? kept : 0;
  renderList();
  renderDetail();
}

function badge(state) {
  return el("span", { class: "badge " + state }, state === "unreviewed" ? "new" : state);
}

function renderList() {
  const list = $("list");
  list.replaceChildren(...S.shown.map((r, i) => el("button", {
    type: "button", "data-key": r.key, "data-state": stateOf(r), class: i === S.current ? "current" : "",
    onclick: () => select(i),
  }, badge(stateOf(r)), el("span", { class: "meta" }, (r.config === "sft" ? "dialogue" : "pair") + " · " + r.row.topic + " · "),
  firstUser(r).slice(0, 90))));
  const reviewed = S.rows.filter((r) => r.decision).length;
  $("progress").textContent = `${reviewed}/${S.rows.length} reviewed · showing ${S.shown.length}`;
}

function select(i) {
  if (i < 0 || i >= S.shown.length) return;
  S.current = i;
  S.editing = null;
  S.rejecting = false;
  renderList();
  renderDetail();
  const button = $("list").children[i];
  if (button) button.scrollIntoView({ block: "nearest" });
}

function decisionLine(r) {
  const d = r.decision;
  if (!d) return r.stale ? "changed since it was reviewed: decide again" : "not reviewed";
  const who = ` by ${d.reviewer} (${d.time})`;
  if (d.state === "rejected") return `rejected${who}: ${d.reason}`;
  return d.state + who;
}

function message(r, m, i) {
  const edits = (r.decision && r.decision.edits) || {};
  const edited = edits[String(i)];
  const box = el("div", { class: "msg " + m.role, "data-turn": String(i) },
    el("div", { class: "role" }, m.role + (edited !== undefined ? " (edited)" : "")));
  if (S.editing === i) {
    const area = el("textarea", { class: "editor", "aria-label": "edited answer" });
    area.value = edited !== undefined ? edited : m.content;
    box.append(area, el("div", { class: "actions" },
      el("button", { type: "button", class: "save", onclick: () => saveEdit(r, i, area.value) }, "Save edit"),
      el("button", { type: "button", class: "cancel", onclick: () => { S.editing = null; renderDetail(); } }, "Cancel")));
    setTimeout(() => area.focus(), 0);
  } else {
    box.append(el("p", { class: "text" }, edited !== undefined ? edited : m.content));
    if (edited !== undefined) box.append(el("details", {}, el("summary", {}, "original"), el("p", { class: "text original" }, m.content)));
    if (r.config === "sft" && m.role === "assistant") {
      box.append(el("button", { type: "button", class: "edit", "data-turn": String(i),
        onclick: () => { S.editing = i; renderDetail(); } }, "Edit"));
    }
  }
  return box;
}

function renderDetail() {
  const detail = $("detail");
  const r = S.shown[S.current];
  if (!r) { detail.replaceChildren(el("p", {}, "No row matches the filters.")); return; }
  const row = r.row;
  const meta = el("p", { class: "meta" },
    `${r.config === "sft" ? "dialogue" : "preference pair"} ${r.key.slice(0, 16)} · split ${r.split} · topic ${row.topic}` +
    (row.persona ? ` · persona ${row.persona}` : "") + ` · seeds ${(row.seed_ids || []).join(", ")}`);
  const parts = [meta, el("p", { id: "decision", "data-state": stateOf(r) }, decisionLine(r))];
  if (r.config === "sft") {
    parts.push(...row.messages.map((m, i) => message(r, m, i)));
  } else {
    parts.push(...row.prompt.map((m, i) => message(r, m, i)));
    const swapped = r.decision && r.decision.state === "swapped";
    const side = (cls, title, msgs, score) => el("div", { class: "side " + cls },
      el("h3", {}, `${title} (judge ${score})`), ...msgs.map((m) => el("p", { class: "text" }, m.content)));
    const chosen = side("chosen", swapped ? "rejected after your swap" : "chosen", row.chosen, row.score_chosen);
    const rejected = side("rejected", swapped ? "chosen after your swap" : "rejected", row.rejected, row.score_rejected);
    parts.push(el("div", { class: "sides" }, chosen, rejected),
      el("p", { class: "meta" }, `judge ${row.judge_model}`));
  }
  const actions = el("div", { class: "actions" },
    el("button", { type: "button", id: "approve", onclick: () => decide("approve") }, "Approve (a)"),
    el("button", { type: "button", id: "reject", onclick: () => startReject() }, "Reject (r)"));
  if (r.config === "prefs") {
    actions.append(el("button", { type: "button", id: "swap", onclick: () => decide("swap") }, "Swap chosen/rejected (s)"),
      el("button", { type: "button", id: "tie", onclick: () => decide("tie") }, "Tie (t)"));
  }
  if (S.rejecting) {
    const reason = el("input", { id: "reason", placeholder: "why? (Enter rejects, Esc cancels)", "aria-label": "reason" });
    reason.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); decide("reject", { reason: reason.value }); }
      if (e.key === "Escape") { S.rejecting = false; renderDetail(); }
    });
    actions.append(reason, el("button", { type: "button", id: "reject-confirm",
      onclick: () => decide("reject", { reason: $("reason").value }) }, "Reject with this reason"));
    setTimeout(() => reason.focus(), 0);
  }
  parts.push(actions);
  detail.replaceChildren(...parts);
}

function startReject() {
  S.rejecting = true;
  renderDetail();
}

async function post(body) {
  const reviewer = $("reviewer").value.trim();
  if (!reviewer) { toast("Type your name in the Reviewer field first", true); $("reviewer").focus(); return null; }
  localStorage.setItem("synthgen-reviewer", reviewer);
  const response = await fetch("/api/review", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, reviewer }),
  });
  if (!response.ok) {
    let text = await response.text();
    try { text = JSON.parse(text).error || text; } catch (e) { /* plain text */ }
    toast(text, true);
    return null;
  }
  return response.json();
}

async function decide(action, extra) {
  const r = S.shown[S.current];
  if (!r) return;
  const result = await post({ config: r.config, key: r.key, hash: r.hash, action, ...(extra || {}) });
  if (!result) return;
  r.decision = result.decision;
  r.stale = result.stale;
  S.rejecting = false;
  toast(result.decision.state);
  // on to the next row, unless the reviewer already moved on while this decision was being saved
  if (S.shown[S.current] === r && S.current + 1 < S.shown.length) { select(S.current + 1); return; }
  renderList();
  if (S.shown[S.current] === r) renderDetail();
}

async function saveEdit(r, turn, text) {
  const edits = (r.decision && r.decision.edits) || {};
  const before = edits[String(turn)] !== undefined ? edits[String(turn)] : r.row.messages[turn].content;
  if (text === before) { S.editing = null; renderDetail(); return; }  // nothing changed: no decision
  const result = await post({ config: r.config, key: r.key, hash: r.hash, action: "edit", turn, text });
  if (!result) return;
  r.decision = result.decision;
  S.editing = null;
  toast("edited");
  renderList();
  renderDetail();
}

document.addEventListener("keydown", (e) => {
  const tag = e.target.tagName;
  if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
  const r = S.shown[S.current];
  const keys = {
    j: () => select(S.current + 1),
    k: () => select(S.current - 1),
    a: () => decide("approve"),
    r: () => startReject(),
    s: () => r && r.config === "prefs" && decide("swap"),
    t: () => r && r.config === "prefs" && decide("tie"),
    e: () => {
      if (!r || r.config !== "sft") return;
      const last = r.row.messages.map((m) => m.role).lastIndexOf("assistant");
      if (last >= 0) { S.editing = last; renderDetail(); }
    },
    "/": () => $("q").focus(),
  };
  if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
});

for (const id of ["q", "f-config", "f-topic", "f-seed", "f-persona", "f-split", "f-score", "f-state"]) {
  $(id).addEventListener("input", applyFilters);
}
$("reviewer").addEventListener("change", () => localStorage.setItem("synthgen-reviewer", $("reviewer").value.trim()));
load();
