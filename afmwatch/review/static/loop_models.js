// afmwatch review, the models page: train a candidate, follow it, promote it, roll back. Plain JavaScript.
"use strict";

(() => {
  const box = document.getElementById("training");
  const call = api; // review.js (loaded first on every page): fetch with the token, errors thrown

  function text(tag, content) {
    const node = document.createElement(tag);
    node.textContent = content;
    return node;
  }

  function fmt(value) { return value === null || value === undefined ? "n/a" : value.toFixed(3); }

  function show(job) {
    box.replaceChildren();
    if (job.state === "none") return;
    if (job.state !== "done") {
      const step = job.step ? ` (${job.step.event}${job.step.fold ? " " + job.step.fold : ""})` : "";
      box.append(text("p", `Candidate ${job.id || ""}: ${job.state}${step}${job.error ? ": " + job.error : ""}`));
      return;
    }
    const c = job.comparison;
    box.append(text("p", `Candidate ${c.candidate.name}: balanced accuracy ${fmt(c.candidate.balanced_accuracy)} ` +
      `(${c.candidate.measured}, ${c.candidate.folds} folds); active ${c.active.name}: ${fmt(c.active.balanced_accuracy)} ` +
      `(${c.active.measured}); ${c.scans} scans. ${c.diff.changed} would be decided differently:`));
    const list = document.createElement("ul");
    for (const change of c.diff.changes) {
      const item = document.createElement("li");
      item.textContent = `${change.before} → ${change.after}: ${change.path.split("/").pop()} (now: ${change.reason_after})`;
      list.append(item);
    }
    box.append(list);
    if (document.querySelector('meta[name="afmwatch-read-only"]')?.content !== "yes") {
      const promote = text("button", "Promote the candidate");
      promote.type = "button";
      promote.addEventListener("click", () => act("/api/models/promote", {model: "candidate"}));
      box.append(promote);
    }
  }

  async function act(url, body) {
    try {
      await call("POST", url, body);
      location.reload();
    } catch (error) {
      box.prepend(text("p", error.message));
    }
  }

  async function follow() {
    const job = await call("GET", "/api/models/training");
    show(job);
    if (job.running) setTimeout(follow, 2000);
  }

  document.getElementById("train")?.addEventListener("click", async () => {
    const arch = document.getElementById("train-arch").value;
    const body = {scope: document.getElementById("train-scope").value};
    if (arch) body.arch = arch;
    try {
      show(await call("POST", "/api/models/train", body));
      setTimeout(follow, 1000);
    } catch (error) {
      box.replaceChildren(text("p", error.message));
    }
  });
  for (const button of document.querySelectorAll("button.rollback")) {
    button.addEventListener("click", () => act("/api/models/rollback", {model: button.dataset.model}));
  }
  follow();
})();
