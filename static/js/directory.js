// The Patient Study Directory's table: selecting studies (click, Ctrl/Cmd+click, Shift+click,
// checkboxes, keyboard), opening one (double-click, Enter), the context menu, and dragging the
// selected studies onto a folder of the side tree (or onto a worklist, out of their folder).

import "./date-input.js";
import { initContextMenu } from "./contextmenu.js";
import { gettext, interpolate, ngettext } from "./i18n.js";

const table = document.querySelector("[data-study-table]");
const rows = table ? [...table.querySelectorAll("tr.study-row")] : [];
const selectAll = table ? table.querySelector("[data-select-all]") : null;
const status = document.querySelector("[data-selection-status]");
let anchor = null;

function isSelected(row) {
  return row.getAttribute("aria-selected") === "true";
}

function setSelected(row, selected) {
  row.setAttribute("aria-selected", selected ? "true" : "false");
  const box = row.querySelector("[data-select-row]");
  if (box) box.checked = selected;
}

function selectedRows() {
  return rows.filter(isSelected);
}

function refresh() {
  const count = selectedRows().length;
  if (selectAll) {
    selectAll.checked = count > 0 && count === rows.length;
    selectAll.indeterminate = count > 0 && count < rows.length;
  }
  if (status) {
    const text = ngettext("%(count)s study selected", "%(count)s studies selected", count);
    status.textContent = count ? interpolate(text, { count }) : "";
  }
}

function focusRow(row) {
  rows.forEach((other) => {
    other.tabIndex = other === row ? 0 : -1;
  });
  row.focus({ preventScroll: false });
}

function selectOnly(row) {
  rows.forEach((other) => setSelected(other, other === row));
  anchor = row;
  refresh();
}

function toggle(row) {
  setSelected(row, !isSelected(row));
  anchor = row;
  refresh();
}

function selectRange(row) {
  const from = rows.indexOf(anchor || rows[0]);
  const to = rows.indexOf(row);
  const [start, end] = from <= to ? [from, to] : [to, from];
  rows.forEach((other, index) => setSelected(other, index >= start && index <= end));
  refresh();
}

function openRow(row) {
  if (row.dataset.href) window.location.assign(row.dataset.href);
}

if (table) {
  // One tab stop for the table, the focused row (arrow keys move it), not one per link.
  table.querySelectorAll("[data-row-link]").forEach((link) => {
    link.tabIndex = -1;
  });

  table.addEventListener("click", (event) => {
    const row = event.target.closest("tr.study-row");
    if (!row || event.target.closest("[data-menu-button]")) return;
    // The row's links are for browsers without scripts: here a click selects, as on the rest of
    // the row, and a double-click or Enter opens the study (a middle click still opens a tab).
    if (event.target.closest("[data-row-link]")) event.preventDefault();
    if (event.target.closest("[data-select-row]")) {
      // The checkbox toggles its row without touching the others.
      setSelected(row, event.target.checked);
      anchor = row;
      refresh();
      focusRow(row);
      return;
    }
    if (event.shiftKey) selectRange(row);
    else if (event.ctrlKey || event.metaKey) toggle(row);
    else selectOnly(row);
    focusRow(row);
  });

  // Shift+click would otherwise select the page's text.
  table.addEventListener("mousedown", (event) => {
    if (event.shiftKey && event.target.closest("tr.study-row")) event.preventDefault();
  });

  table.addEventListener("dblclick", (event) => {
    const row = event.target.closest("tr.study-row");
    if (row && !event.target.closest("[data-select-row], [data-menu-button]")) openRow(row);
  });

  table.addEventListener("keydown", (event) => {
    const row = event.target.closest("tr.study-row");
    if (!row || event.target !== row) return;
    const index = rows.indexOf(row);
    let next = null;
    switch (event.key) {
      case "Enter":
        openRow(row);
        break;
      case " ":
        toggle(row);
        break;
      case "ArrowDown":
        next = rows[Math.min(index + 1, rows.length - 1)];
        break;
      case "ArrowUp":
        next = rows[Math.max(index - 1, 0)];
        break;
      case "Home":
        next = rows[0];
        break;
      case "End":
        next = rows[rows.length - 1];
        break;
      case "a":
      case "A":
        if (!(event.ctrlKey || event.metaKey)) return;
        rows.forEach((other) => setSelected(other, true));
        refresh();
        break;
      default:
        return;
    }
    event.preventDefault();
    if (next && next !== row) {
      if (event.shiftKey) {
        if (!anchor) anchor = row;
        selectRange(next);
      }
      focusRow(next);
    }
  });

  if (selectAll) {
    selectAll.addEventListener("change", () => {
      rows.forEach((row) => setSelected(row, selectAll.checked));
      refresh();
    });
  }
}

const menuData = document.getElementById("menu-data");
if (menuData) {
  initContextMenu({
    root: document.querySelector(".directory") || document,
    items: JSON.parse(menuData.textContent).items,
    selectedIds: () => selectedRows().map((row) => row.dataset.id),
    onOpen: (target) => {
      // Right-clicking a study outside the selection makes it the selection, as file managers do.
      if (target.matches("tr.study-row") && !isSelected(target)) {
        selectOnly(target);
        target.tabIndex = 0;
        rows.forEach((other) => {
          if (other !== target) other.tabIndex = -1;
        });
      }
    },
  });
}

// --- Drag and drop into folders -------------------------------------------------------------
// Rows the user may file carry draggable="true"; tree nodes they may file into carry
// data-drop-target="folder:<id>" | "worklist:<id>". A drop posts the same form as "Move to
// folder..." (studies/views/folders.py), which checks everything again.

const STUDIES_TYPE = "application/x-portal-studies";
const directory = document.querySelector(".directory");
const fileForm = document.querySelector("[data-file-studies-form]");
const folderStatus = document.querySelector("[data-folder-status]");

function draggedIds(row) {
  if (!isSelected(row)) selectOnly(row);
  return selectedRows()
    .filter((selected) => selected.draggable)
    .map((selected) => selected.dataset.id);
}

function notMoved() {
  return gettext("The studies could not be moved. Use “Move to folder…” in their menu to see why.");
}

function showFolderStatus(text, failed) {
  if (!folderStatus) return;
  folderStatus.textContent = text;
  folderStatus.classList.toggle("failed", Boolean(failed));
}

async function fileStudies(ids, target) {
  const data = new FormData(fileForm);
  ids.forEach((id) => data.append("study", id));
  data.append("target", target);
  let response;
  try {
    response = await fetch(fileForm.action, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { Accept: "text/html", "X-Requested-With": "XMLHttpRequest" },
    });
  } catch {
    showFolderStatus(notMoved(), true);
    return;
  }
  if (response.ok) {
    // The studies left the folder shown, or joined it: show the list as it is now.
    window.location.reload();
    return;
  }
  const html = await response.text();
  const page = new DOMParser().parseFromString(html, "text/html");
  const reason = page.querySelector("[role=alert]");
  showFolderStatus(reason ? reason.textContent.trim() : notMoved(), true);
}

if (table && directory && fileForm) {
  table.addEventListener("dragstart", (event) => {
    const row = event.target.closest && event.target.closest("tr.study-row");
    if (!row || !row.draggable) return;
    const ids = draggedIds(row);
    event.dataTransfer.setData(STUDIES_TYPE, JSON.stringify(ids));
    event.dataTransfer.setData("text/plain", row.dataset.label || "");
    event.dataTransfer.effectAllowed = "move";
    directory.classList.add("dragging-studies");
  });
  table.addEventListener("dragend", () => directory.classList.remove("dragging-studies"));

  const carriesStudies = (event) => [...event.dataTransfer.types].includes(STUDIES_TYPE);
  directory.querySelectorAll("[data-drop-target]").forEach((node) => {
    node.addEventListener("dragover", (event) => {
      if (!carriesStudies(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      node.classList.add("drop-over");
    });
    node.addEventListener("dragleave", () => node.classList.remove("drop-over"));
    node.addEventListener("drop", (event) => {
      if (!carriesStudies(event)) return;
      event.preventDefault();
      node.classList.remove("drop-over");
      directory.classList.remove("dragging-studies");
      const ids = JSON.parse(event.dataTransfer.getData(STUDIES_TYPE) || "[]");
      if (ids.length) fileStudies(ids, node.dataset.dropTarget);
    });
  });
}

refresh();
