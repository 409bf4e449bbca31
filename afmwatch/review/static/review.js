// afmwatch review page: keys, corrections and the rules what-if. Plain JavaScript, no library, no build.
"use strict";

const token = document.querySelector('meta[name="afmwatch-token"]')?.content || "";
const readOnly = document.querySelector('meta[name="afmwatch-read-only"]')?.content === "yes";
const UNDO_KEY = "afmwatch-undo"; // ids corrected in this tab, newest last (undo works across pages)

function toast(message, isError) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.className = isError ? "show error" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.className = ""; }, isError ? 6000 : 2500);
}

function who() {
  const input = document.getElementById("who");
  return (input && input.value.trim()) || "operator";
}

async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: {"Content-Type": "application/json", "X-Afmwatch-Token": token},
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function undoStack() { return JSON.parse(sessionStorage.getItem(UNDO_KEY) || "[]"); }
function remember(id) { const s = undoStack(); s.push(id); sessionStorage.setItem(UNDO_KEY, JSON.stringify(s.slice(-200))); }

async function mark(id, decision, from) {
  const data = await api("POST", `/api/scans/${id}/decision`, {decision, from, who: who()});
  remember(id);
  return data;
}

async function undoLast() {
  const stack = undoStack();
  const id = stack.pop();
  if (id === undefined) { toast("nothing to undo"); return null; }
  sessionStorage.setItem(UNDO_KEY, JSON.stringify(stack));
  const data = await api("POST", `/api/scans/${id}/undo`, {who: who()});
  toast(`undone: scan ${id} back in ${data.decision}`);
  return data;
}

function typing(event) {
  const tag = event.target.tagName;
  return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || event.ctrlKey || event.metaKey || event.altKey;
}

const KEYS = {g: "good", b: "bad", r: "review"};

// -- one scan ----------------------------------------------------------------------------------------
function scanPage() {
  const scan = document.getElementById("scan");
  const id = Number(scan.dataset.id);
  const go = (url) => { if (url) window.location.href = url; };
  async function decide(decision) {
    try {
      const data = await mark(id, decision, scan.dataset.decision);
      scan.dataset.decision = data.decision;
      const badge = document.getElementById("decision");
      badge.textContent = data.decision;
      badge.className = `badge ${data.decision}`;
      toast(data.correction.changed ? `moved to ${data.decision}/` : `checked: stays in ${data.decision}/`);
      if (scan.dataset.next) setTimeout(() => go(scan.dataset.next), 350);
    } catch (error) { toast(error.message, true); }
  }
  document.querySelectorAll("[data-mark]").forEach((b) => b.addEventListener("click", () => decide(b.dataset.mark)));
  document.querySelectorAll("[data-undo]").forEach((b) => b.addEventListener("click", async () => {
    try { const data = await undoLast(); if (data && data.id === id) window.location.reload(); }
    catch (error) { toast(error.message, true); }
  }));
  document.addEventListener("keydown", (event) => {
    if (typing(event)) return;
    if (event.key === "n" || event.key === "ArrowRight" || event.key === "j") go(scan.dataset.next);
    else if (event.key === "p" || event.key === "ArrowLeft" || event.key === "k") go(scan.dataset.previous);
    else if (!readOnly && KEYS[event.key]) decide(KEYS[event.key]);
    else if (!readOnly && event.key === "u") document.querySelector("[data-undo]")?.click();
    else return;
    event.preventDefault();
  });
}

// -- the grid ----------------------------------------------------------------------------------------
function gridPage() {
  const thumbs = Array.from(document.querySelectorAll(".thumb"));
  if (!thumbs.length) return;
  let focus = 0;
  const show = (i) => { focus = Math.max(0, Math.min(thumbs.length - 1, i)); thumbs[focus].focus(); };
  thumbs.forEach((t, i) => t.addEventListener("focus", () => { focus = i; }));
  const selected = () => thumbs.filter((t) => t.querySelector(".pick")?.checked);
  function update(thumb, decision) {
    thumb.dataset.decision = decision;
    thumb.className = `thumb ${decision} reviewed`;
    const badge = thumb.querySelector(".badge");
    badge.textContent = decision;
    badge.className = `badge ${decision}`;
  }
  async function decide(decision) {
    const chosen = selected();
    try {
      if (chosen.length > 1) {
        const data = await api("POST", "/api/decisions", {ids: chosen.map((t) => Number(t.dataset.id)), decision, who: who()});
        data.results.forEach((r) => {
          const thumb = thumbs.find((t) => Number(t.dataset.id) === r.id);
          if (r.ok) { update(thumb, decision); remember(r.id); thumb.querySelector(".pick").checked = false; }
        });
        const failed = data.results.filter((r) => !r.ok);
        toast(failed.length ? `${data.changed} moved; ${failed.length} refused: ${failed[0].error}` : `${data.changed} moved to ${decision}/`, failed.length > 0);
      } else {
        const thumb = chosen[0] || thumbs[focus];
        const data = await mark(Number(thumb.dataset.id), decision, thumb.dataset.decision);
        update(thumb, data.decision);
        if (chosen[0]) chosen[0].querySelector(".pick").checked = false;
        toast(data.correction.changed ? `${data.name}: moved to ${data.decision}/` : `${data.name}: checked`);
        if (!chosen.length) show(focus + 1);
      }
    } catch (error) { toast(error.message, true); }
  }
  document.addEventListener("keydown", async (event) => {
    if (typing(event)) return;
    if (event.key === "ArrowRight" || event.key === "n" || event.key === "j") show(focus + 1);
    else if (event.key === "ArrowLeft" || event.key === "p" || event.key === "k") show(focus - 1);
    else if (event.key === "Enter") thumbs[focus].querySelector("a").click();
    else if (!readOnly && event.key === "x") { const box = thumbs[focus].querySelector(".pick"); box.checked = !box.checked; }
    else if (!readOnly && KEYS[event.key]) decide(KEYS[event.key]);
    else if (!readOnly && event.key === "u") {
      try {
        const data = await undoLast();
        const thumb = data && thumbs.find((t) => Number(t.dataset.id) === data.id);
        if (thumb) update(thumb, data.decision);
      } catch (error) { toast(error.message, true); }
    } else return;
    event.preventDefault();
  });
  show(0);
}

// -- rules, what if ----------------------------------------------------------------------------------
function rulesPage() {
  const table = document.getElementById("rules");
  const original = JSON.parse(table.dataset.rules);
  const out = document.getElementById("whatif-result");
  const proposed = () => original.map((rule, i) => {
    const input = table.querySelector(`tr[data-index="${i}"] .threshold`);
    return {...rule, threshold: Number(input.value)};
  });
  function render(data) {
    out.replaceChildren();
    const head = document.createElement("p");
    const moves = Object.entries(data.transitions).map(([k, v]) => `${v} ${k}`).join(", ");
    head.textContent = `${data.changed} of ${data.considered} sorted scans would be decided differently${moves ? ": " + moves : ""}.`;
    out.append(head);
    if (!data.scans.length) return;
    const list = document.createElement("table");
    list.className = "changes";
    list.innerHTML = "<thead><tr><th>scan</th><th>now</th><th>would be</th><th>why</th></tr></thead>";
    const body = document.createElement("tbody");
    data.scans.forEach((s) => {
      const row = document.createElement("tr");
      const link = document.createElement("a");
      link.href = s.url; link.textContent = s.name + (s.checked_by_a_person ? " (checked by a person)" : "");
      const cells = [link, s.now, s.would_be, s.reason];
      cells.forEach((c) => { const td = document.createElement("td"); td.append(c); row.append(td); });
      body.append(row);
    });
    list.append(body);
    out.append(list);
  }
  document.getElementById("whatif").addEventListener("click", async () => {
    try { render(await api("POST", "/api/rules/whatif", {rules: proposed()})); }
    catch (error) { toast(error.message, true); }
  });
  document.getElementById("save-rules")?.addEventListener("click", async () => {
    try { const data = await api("POST", "/api/rules", {rules: proposed()}); toast(`saved; ${data.daemon}`); }
    catch (error) { toast(error.message, true); }
  });
  document.getElementById("discard-rules").addEventListener("click", () => {
    original.forEach((rule, i) => { table.querySelector(`tr[data-index="${i}"] .threshold`).value = rule.threshold; });
    out.replaceChildren();
    toast("changes discarded");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("who");
  if (input) {
    input.value = localStorage.getItem("afmwatch-who") || "";
    input.addEventListener("change", () => localStorage.setItem("afmwatch-who", input.value.trim()));
  }
  const page = document.body.dataset.page;
  if (page === "scan") scanPage();
  else if (page === "grid") gridPage();
  else if (page === "rules") rulesPage();
});
