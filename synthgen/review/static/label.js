"use strict";
// synthgen label (helpers: common.js): blinded pairwise labels. Text goes into the DOM with textContent only.

const L = { items: [], current: 0, labeller: "" };

async function start() {
  const name = $("labeller").value.trim();
  if (!name) { toast("Type your name first", true); $("labeller").focus(); return; }
  localStorage.setItem("synthgen-labeller", name);
  L.labeller = name;
  const response = await fetch("/api/items?labeller=" + encodeURIComponent(name));
  if (!response.ok) { toast(await response.text(), true); return; }
  const data = await response.json();
  L.items = data.items;
  const next = L.items.findIndex((i) => !i.label);
  L.current = next >= 0 ? next : 0;
  summary(data);
  render();
}

function summary(data) {
  const labelled = L.items.filter((i) => i.label).length;
  $("progress").textContent = `${labelled}/${L.items.length} labelled`;
  $("progress").dataset.labelled = String(labelled);
  $("file").textContent = data.file ? `Your labels: ${data.file}` : "";
  const rows = (data.agreement || []).map((a) => el("tr", {},
    el("td", {}, a.labellers.join(" / ")), el("td", {}, String(a.items)),
    el("td", {}, fmt(a.preference_agreement)), el("td", {}, fmt(a.preference_kappa)),
    el("td", {}, String(a.scores)), el("td", {}, fmt(a.score_kappa_quadratic))));
  $("agreement").tBodies[0].replaceChildren(...rows);
  $("agreement-box").hidden = rows.length === 0;
}

function fmt(x) { return x === null || x === undefined ? "n/a" : Number(x).toFixed(2); }

function scoreSelect(id, value) {
  const select = el("select", { id, "aria-label": id });
  select.append(el("option", { value: "" }, "score…"));
  for (let s = 1; s <= 10; s++) select.append(el("option", { value: String(s) }, String(s)));
  select.value = value === undefined || value === null ? "" : String(value);
  return select;
}

function render() {
  const item = L.items[L.current];
  const box = $("item");
  if (!item) { box.replaceChildren(el("p", {}, "Nothing to label.")); return; }
  const label = item.label || {};
  const answer = (n, text, score) => el("div", { class: "side", id: "answer-" + n },
    el("h3", {}, "Answer " + n), el("p", { class: "text" }, text),
    el("label", {}, "Score ", scoreSelect("score-" + n, score)));
  box.replaceChildren(
    el("p", { class: "meta" }, `Question ${L.current + 1} of ${L.items.length} · ${item.set}` +
      (item.label ? ` · you said: ${item.label.preference === "tie" ? "tie" : "answer " + item.label.preference + " is better"}` : "")),
    el("h2", { id: "question", class: "text" }, item.question),
    item.reference ? el("details", { open: "" }, el("summary", {}, "The office's answer"), el("p", { class: "text", id: "reference" }, item.reference)) : null,
    el("div", { class: "sides" }, answer(1, item.answer_1, label.score_1), answer(2, item.answer_2, label.score_2)),
    el("div", { class: "actions" },
      el("button", { type: "button", id: "pref-1", onclick: () => save("1") }, "Answer 1 is better (1)"),
      el("button", { type: "button", id: "pref-tie", onclick: () => save("tie") }, "Tie (t)"),
      el("button", { type: "button", id: "pref-2", onclick: () => save("2") }, "Answer 2 is better (2)"),
      el("button", { type: "button", id: "prev", onclick: () => go(L.current - 1) }, "Previous (k)"),
      el("button", { type: "button", id: "next", onclick: () => go(L.current + 1) }, "Next (j)")));
}

function go(i) {
  if (i < 0 || i >= L.items.length) return;
  L.current = i;
  render();
}

async function save(preference) {
  const item = L.items[L.current];
  if (!item) return;
  const body = { labeller: L.labeller, item_id: item.item_id, preference,
    score_1: $("score-1").value, score_2: $("score-2").value };
  const response = await fetch("/api/label", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) {
    let text = await response.text();
    try { text = JSON.parse(text).error || text; } catch (e) { /* plain text */ }
    toast(text, true);
    return;
  }
  const data = await response.json();
  item.label = { preference, score_1: body.score_1, score_2: body.score_2 };
  summary(data);
  toast("saved", false, 1200);
  const next = L.items.findIndex((x, i) => i > L.current && !x.label);
  go(next >= 0 ? next : Math.min(L.current + 1, L.items.length - 1));
  if (next < 0 && L.current === L.items.length - 1) render();
}

document.addEventListener("keydown", (e) => {
  const tag = e.target.tagName;
  if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
  if (!L.items.length) return;
  const keys = { "1": () => save("1"), "2": () => save("2"), t: () => save("tie"),
    j: () => go(L.current + 1), k: () => go(L.current - 1) };
  if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
});

$("start").addEventListener("click", start);
$("labeller").addEventListener("keydown", (e) => { if (e.key === "Enter") start(); });
$("labeller").value = localStorage.getItem("synthgen-labeller") || "";
