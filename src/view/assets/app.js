// exp view: sorting and filtering the history table, the compare form, chart downloads.
// Everything works on the page's own elements; no request leaves for another host.
"use strict";

function sortTable(th) {
  const table = th.closest("table");
  const body = table.tBodies[0];
  const col = Array.from(th.parentNode.children).indexOf(th);
  const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
  table.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
  const key = (row) => {
    const cell = row.children[col];
    if (!cell) return "";
    const v = cell.getAttribute("data-v");
    return v !== null ? parseFloat(v) : cell.textContent.trim().toLowerCase();
  };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (typeof x === "number" && typeof y === "number") return (x - y) * dir;
    if (typeof x === "number") return -1;
    if (typeof y === "number") return 1;
    return x < y ? -dir : x > y ? dir : 0;
  });
  rows.forEach((r) => body.appendChild(r));
}

function filterTable(table) {
  const text = (document.getElementById("history-filter") || {}).value || "";
  const status = (document.getElementById("history-status") || {}).value || "";
  const needle = text.trim().toLowerCase();
  let shown = 0;
  Array.from(table.tBodies[0].rows).forEach((row) => {
    const okText = !needle || row.textContent.toLowerCase().includes(needle);
    const okStatus = !status || row.getAttribute("data-status") === status;
    row.hidden = !(okText && okStatus);
    if (!row.hidden) shown += 1;
  });
  const count = document.getElementById("history-count");
  if (count) count.textContent = shown + " rows";
}

function download(name, blob) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function downloadChart(button) {
  const fig = button.closest("figure");
  const svg = fig.querySelector("svg");
  if (!svg) return;
  const text = new XMLSerializer().serializeToString(svg);
  const svgBlob = new Blob([text], { type: "image/svg+xml" });
  const name = button.getAttribute("data-name");
  if (button.getAttribute("data-format") === "svg") {
    download(name + ".svg", svgBlob);
    return;
  }
  // PNG at twice the drawn size, for print.
  const img = new Image();
  const url = URL.createObjectURL(svgBlob);
  img.onload = () => {
    const w = svg.viewBox.baseVal && svg.viewBox.baseVal.width ? svg.viewBox.baseVal.width : img.width;
    const h = svg.viewBox.baseVal && svg.viewBox.baseVal.height ? svg.viewBox.baseVal.height : img.height;
    const canvas = document.createElement("canvas");
    canvas.width = w * 2;
    canvas.height = h * 2;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    URL.revokeObjectURL(url);
    canvas.toBlob((png) => download(name + ".png", png), "image/png");
  };
  img.src = url;
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("th.sortable").forEach((th) => th.addEventListener("click", () => sortTable(th)));
  const table = document.getElementById("history");
  if (table) {
    ["history-filter", "history-status"].forEach((id) => {
      const el = document.getElementById(id);
      if (el) el.addEventListener("input", () => filterTable(table));
    });
    filterTable(table);
  }
  const form = document.getElementById("compare-form");
  if (form) {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const a = form.elements["a"].value, b = form.elements["b"].value;
      if (a && b) window.location.href = form.getAttribute("data-root") + "compare/" + a + "/" + b + "/1.html";
    });
  }
  document.querySelectorAll("button.dl").forEach((b) => b.addEventListener("click", () => downloadChart(b)));
});
