// The study page's guest links: the header's "Guest links" button opens the list of the
// study's links, "New Guest Link" opens the Send Link dialog (the same server fragment as the
// directory's context menu), and the trash can asks for confirmation before it deletes a link.
//
// Markup comes from templates/guestlinks/_study_links.html. Without this module every form
// still works as a plain POST (the delete view then redirects back to the study page).

import { openDialog, openRemoteDialog } from "./dialog.js";

const panel = document.getElementById("guest-links-dialog");
const confirmDialog = document.getElementById("guest-link-delete-dialog");
const remote = document.getElementById("remote-dialog");
const list = panel ? panel.querySelector("[data-guest-links-list]") : null;
const countBadge = () => document.querySelector("[data-guest-links-open] .gl-count");

const requestHeaders = { Accept: "text/html", "X-Requested-With": "XMLHttpRequest" };

function updateCount() {
  const button = document.querySelector("[data-guest-links-open]");
  if (!button || !list) return;
  // Links that still open, as the page counted them.
  const total = list.querySelectorAll(".gl-link.gl-state-active").length;
  let badge = countBadge();
  if (!total) {
    if (badge) badge.remove();
    return;
  }
  if (!badge) {
    badge = document.createElement("span");
    badge.className = "gl-count";
    button.append(" ", badge);
  }
  badge.textContent = String(total);
}

function showList(html) {
  if (!list) return;
  list.innerHTML = html;
  updateCount();
}

async function refreshList() {
  if (!list) return;
  try {
    const response = await fetch(list.dataset.url, {
      credentials: "same-origin",
      headers: requestHeaders,
    });
    if (response.ok) showList(await response.text());
  } catch {
    // The list stays as it was; reloading the page shows the current one.
  }
}

function askToDelete(form) {
  if (!confirmDialog) {
    form.submit();
    return;
  }
  confirmDialog.returnValue = "";
  confirmDialog.addEventListener(
    "close",
    () => {
      if (confirmDialog.returnValue === "delete") deleteLink(form);
    },
    { once: true },
  );
  openDialog(confirmDialog, form.querySelector("button"));
}

async function deleteLink(form) {
  form.querySelectorAll("button").forEach((button) => {
    button.disabled = true;
  });
  try {
    const response = await fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: requestHeaders,
      body: new FormData(form),
    });
    if (response.ok) {
      showList(await response.text());
      const first = list.querySelector("button, input");
      if (first) first.focus();
      return;
    }
  } catch {
    // Fall through to a plain submission, which reports any problem as a page.
  }
  form.submit();
}

if (panel) {
  document.querySelectorAll("[data-guest-links-open]").forEach((button) => {
    button.addEventListener("click", () => openDialog(panel, button));
  });

  panel.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-new-guest-link]");
    if (!opener) return;
    openRemoteDialog({ url: opener.dataset.url, title: opener.dataset.title, opener });
  });

  panel.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-guest-link-delete]");
    if (!form) return;
    event.preventDefault();
    askToDelete(form);
  });

  if (remote) {
    // A link made in the Send Link dialog joins the list when the dialog closes.
    remote.addEventListener("close", () => {
      if (remote.querySelector("[data-link-created]")) refreshList();
    });
  }

  // The study page opened with #guest-links (e.g. after a deletion without scripts).
  if (window.location.hash === "#guest-links") openDialog(panel);
}
