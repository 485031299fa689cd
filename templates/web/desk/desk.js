// The editor's desk: what the page does beyond its plain forms (which all work without it).
// - Live reload: polls /version; reloads when the draft or a template changed, unless the
//   editor is typing (then says so and waits for a reload asked for).
// - The texts: counters against the preflight's limits, and the frames redrawn with the
//   typed subject, preheader and intro before they are saved.
// - Drag and drop of the articles, within a section or into another one.
// - The link checks' results, when they are in.
"use strict";
(function () {
  const body = document.body;
  const live = document.getElementById("live");
  let dirty = false;
  let leaving = false;
  document.addEventListener("submit", () => { leaving = true; }, true);

  // Live reload.
  const stale = document.getElementById("stale");
  async function poll() {
    if (leaving) return;
    try {
      const answer = await fetch("/version", { cache: "no-store", credentials: "same-origin" });
      if (!answer.ok) throw new Error(String(answer.status));
      const state = await answer.json();
      if (live) live.textContent = "live reload: on";
      if (state.version !== body.dataset.version) {
        if (!dirty) { leaving = true; location.reload(); return; }
        stale.hidden = false;
        stale.textContent = "The draft changed meanwhile" + (state.last ? " (last: " + state.last + ")" : "") +
          ". Your unsaved text stays here: saving it will say which change won. Reload the page to see theirs.";
      }
    } catch (error) {
      if (live) live.textContent = "live reload: off (the desk does not answer)";
    }
    setTimeout(poll, 2000);
  }
  poll();

  // The texts: counters and live preview.
  const form = document.getElementById("texts-form");
  const frames = Array.from(document.querySelectorAll(".frames iframe"));
  const sources = frames.map((frame) => frame.getAttribute("src"));
  function count(output) {
    const field = document.getElementById(output.dataset.for);
    const n = field.value.length;
    const warn = Number(output.dataset.warn || 0), max = Number(output.dataset.max);
    // Against what inboxes show, then, once past it, against what the preflight takes.
    output.textContent = n.toLocaleString("en") + " / " + (warn && n <= warn ? warn : max).toLocaleString("en");
    output.classList.toggle("warn", warn > 0 && n > warn && n <= max);
    output.classList.toggle("over", n > max);
    output.title = warn ? "inboxes show about " + warn + "; the preflight refuses over " + max : "at most " + max;
  }
  let timer = null;
  function preview() {
    const typed = new URLSearchParams();
    for (const name of ["subject", "preheader", "intro"]) typed.set(name, form.elements[name].value);
    frames.forEach((frame, i) => { frame.src = sources[i] + "&" + typed.toString(); });
    const subject = document.getElementById("inbox-subject");
    const preheader = document.getElementById("inbox-preheader");
    if (subject && form.elements.subject.value.trim()) subject.textContent = form.elements.subject.value;
    if (preheader && form.elements.preheader.value.trim()) preheader.textContent = "– " + form.elements.preheader.value;
    document.getElementById("typed").hidden = false;
  }
  if (form) {
    const outputs = Array.from(form.querySelectorAll(".count"));
    outputs.forEach(count);
    form.addEventListener("input", () => {
      dirty = true;
      outputs.forEach(count);
      clearTimeout(timer);
      timer = setTimeout(preview, 500);
    });
  }

  // Drag and drop: dropping a row fills the hidden move form (section, rank) and sends it.
  const move = document.getElementById("move-form");
  let dragged = null;
  document.querySelectorAll("li[draggable=true]").forEach((row) => {
    row.addEventListener("dragstart", (event) => {
      dragged = row;
      row.classList.add("dragging");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", row.dataset.article);
    });
    row.addEventListener("dragend", () => { row.classList.remove("dragging"); });
  });
  document.querySelectorAll("ol.articles").forEach((list) => {
    list.addEventListener("dragover", (event) => {
      if (!dragged) return;
      event.preventDefault();
      list.classList.add("over");
    });
    list.addEventListener("dragleave", () => list.classList.remove("over"));
    list.addEventListener("drop", (event) => {
      event.preventDefault();
      list.classList.remove("over");
      if (!dragged || !move) return;
      const rows = Array.from(list.querySelectorAll("li[data-article]")).filter((r) => r !== dragged);
      let position = rows.length + 1;
      for (let i = 0; i < rows.length; i++) {
        const box = rows[i].getBoundingClientRect();
        if (event.clientY < box.top + box.height / 2) { position = i + 1; break; }
      }
      move.elements.article.value = dragged.dataset.article;
      move.elements.section.value = list.dataset.section;
      move.elements.position.value = String(position);
      leaving = true;
      move.submit();
    });
  });

  // The link checks, run by the desk in the background.
  const links = document.getElementById("links");
  async function linkResults() {
    if (!links || !links.dataset.pending || leaving) return;
    try {
      const answer = await fetch("/links", { cache: "no-store", credentials: "same-origin" });
      const found = await answer.json();
      if (!found.done) { setTimeout(linkResults, 1500); return; }
      if (!found.warnings.length) { links.textContent = "Links: all answer"; return; }
      links.textContent = "Links: " + found.warnings.length + " not answering (in the warnings)";
      links.classList.add("error");
      const list = document.getElementById("warnings");
      const summary = document.querySelector("details.warnings summary");
      for (const message of found.warnings) {
        const item = document.createElement("li");
        item.textContent = "links: " + message;
        list.appendChild(item);
      }
      const total = list.children.length;
      summary.textContent = total + (total === 1 ? " warning" : " warnings");
    } catch (error) {
      links.textContent = "Links: not checked (the desk does not answer)";
    }
  }
  linkResults();
})();
