// The Patient Study Directory's table: selecting studies (click, Ctrl/Cmd+click, Shift+click,
// checkboxes, keyboard), opening one (double-click, Enter) and the context menu.

import { initContextMenu } from "./contextmenu.js";

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
    const template = count === 1 ? status.dataset.one : status.dataset.many;
    status.textContent = count ? (template || "%s selected").replace("%s", String(count)) : "";
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
  table.addEventListener("click", (event) => {
    const row = event.target.closest("tr.study-row");
    if (!row || event.target.closest("[data-menu-button]")) return;
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

refresh();
