// The console's only script: live machine state, copy buttons, confirmations. Pages work without it.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]');

  // Confirm destructive forms (data-confirm="question").
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }

  // Copy buttons: data-copy="<id of the input or textarea>".
  for (const btn of document.querySelectorAll("button[data-copy]")) {
    btn.addEventListener("click", async () => {
      const field = document.getElementById(btn.dataset.copy);
      field.select();
      let done = false;
      try { await navigator.clipboard.writeText(field.value); done = true; } catch (e) { done = document.execCommand && document.execCommand("copy"); }
      btn.textContent = done ? "Copied" : "Select and copy";
      setTimeout(() => { btn.textContent = "Copy"; }, 2000);
    });
  }

  // Machines table: refresh online state, names and last-seen every few seconds.
  const table = document.querySelector("table[data-live]");
  if (table) {
    const note = document.getElementById("live-note");
    const refresh = async () => {
      try {
        const r = await fetch(table.dataset.live, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (!r.ok) throw new Error("HTTP " + r.status);
        const doc = await r.json();
        const seen = new Set();
        for (const n of doc.nodes) {
          const row = table.querySelector('tr[data-node="' + n.id + '"]');
          if (!row) { if (note) note.textContent = "New machines joined: reload the page to see them."; continue; }
          seen.add(String(n.id));
          const badge = row.querySelector("[data-online]");
          badge.textContent = n.online ? "online" : "offline";
          badge.className = "state " + (n.online ? "on" : "off");
          row.querySelector(".node-name").textContent = n.name;
          row.querySelector("[data-seen]").textContent = n.lastSeen;
        }
        for (const row of table.querySelectorAll("tr[data-node]")) {
          if (!seen.has(row.dataset.node)) row.classList.add("dim");
        }
      } catch (e) {
        if (note) note.textContent = "Live updates paused (" + e.message + "); reload to retry.";
        return;
      }
      setTimeout(refresh, 3000);
    };
    setTimeout(refresh, 3000);
  }
  void csrf;
})();
