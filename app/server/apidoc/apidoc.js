// Renders /api/v1/openapi.json as a browsable list with a "Send" form; no third-party code.
"use strict";
(function () {
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const k of kids) e.append(k);
    return e;
  };
  const pretty = (o) => JSON.stringify(o, null, 2);

  function resolve(doc, schema) {
    if (schema && schema.$ref) return { name: schema.$ref.split("/").pop(), schema: doc.components.schemas[schema.$ref.split("/").pop()] };
    return { name: "", schema };
  }

  function operation(doc, path, method, op) {
    const d = el("details", { id: op.operationId });
    d.append(el("summary", {}, el("span", { class: "m m-" + method }, method), el("span", { class: "p" }, path), el("span", { class: "s" }, op.summary || "")));
    const body = el("div", { class: "body" });
    const inputs = {};
    if (op.parameters && op.parameters.length) {
      const t = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "value")));
      for (const p of op.parameters) {
        const id = op.operationId + "-" + p.name;
        const inp = el("input", { id, "aria-label": p.name + " (" + p.in + ")" });
        inputs[p.name] = { p, inp };
        t.append(el("tr", {}, el("td", {}, el("label", { for: id }, p.name + (p.required ? " *" : ""))), el("td", {}, p.in), el("td", {}, inp)));
      }
      body.append(t);
    }
    let bodyBox = null;
    if (op.requestBody) {
      const s = op.requestBody.content["application/json"].schema;
      body.append(el("p", {}, "Request body:"), el("pre", {}, pretty(s)));
      bodyBox = el("textarea", { id: op.operationId + "-body", "aria-label": "request body (JSON)" });
      bodyBox.value = "{}";
      body.append(el("label", { for: bodyBox.id }, "Body (JSON)"), bodyBox);
    }
    for (const [code, r] of Object.entries(op.responses)) {
      const s = r.content ? resolve(doc, r.content["application/json"].schema) : { name: "", schema: null };
      body.append(el("p", {}, code + " " + r.description + (s.name ? " → " + s.name : "")));
      if (code === "200" && s.schema) body.append(el("pre", {}, pretty(s.schema)));
    }
    const out = el("pre", { "aria-live": "polite" });
    const send = el("button", { type: "button" }, "Send");
    send.addEventListener("click", async () => {
      let url = path;
      const q = new URLSearchParams();
      for (const { p, inp } of Object.values(inputs)) {
        if (p.in === "path") url = url.replace("{" + p.name + "}", encodeURIComponent(inp.value));
        else if (inp.value !== "") q.append(p.name, inp.value);
      }
      if ([...q.keys()].length) url += "?" + q.toString();
      const headers = { Accept: "application/json" };
      const key = document.getElementById("apikey").value.trim();
      if (key) headers.Authorization = "Bearer " + key;
      const init = { method: method.toUpperCase(), headers };
      if (bodyBox) { init.body = bodyBox.value; headers["Content-Type"] = "application/json"; }
      out.textContent = "…";
      try {
        const r = await fetch(url, init);
        const text = await r.text();
        let shown = text;
        try { shown = pretty(JSON.parse(text)); } catch (e) { /* not JSON */ }
        out.textContent = r.status + " " + r.statusText + "\n" + shown;
      } catch (e) {
        out.textContent = String(e);
      }
    });
    body.append(send, out);
    d.append(body);
    return d;
  }

  async function main() {
    const r = await fetch("/api/v1/openapi.json");
    const doc = await r.json();
    document.getElementById("info").textContent = doc.info.description;
    const byTag = new Map();
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const tag = (op.tags || ["Other"])[0];
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push(operation(doc, path, method, op));
      }
    }
    const root = document.getElementById("ops");
    for (const [tag, items] of byTag) root.append(el("h2", {}, tag), ...items);
    const names = Object.keys(doc.components.schemas);
    root.append(el("h2", {}, "Schemas"));
    for (const n of names) root.append(el("details", {}, el("summary", {}, n), el("pre", {}, pretty(doc.components.schemas[n]))));
  }
  main().catch((e) => { document.getElementById("info").textContent = "Could not load the document: " + e; });
})();
