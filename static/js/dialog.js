// Dialogs: the Copy Link dialog, and dialogs whose content comes from a server view (the
// context menu's "dialog" items such as Share and Send Link).
//
// A remote dialog's content is an HTML fragment fetched with GET. Forms inside it are sent
// with fetch and the response fragment replaces the content, so a view re-renders its form with
// errors or shows its confirmation exactly as a page would. A response header
// "X-Dialog-Redirect: <url>" sends the browser there; "X-Dialog-Close: 1" closes the dialog.
// Elements with data-dialog-close close it. Fragments carry no scripts (CSP forbids inline
// ones): their behaviour is delegated (see clipboard.js).

import "./clipboard.js";
import { gettext } from "./i18n.js";

const openers = new WeakMap();

function wire(dialog) {
  if (dialog.dataset.wired) return;
  dialog.dataset.wired = "1";
  dialog.addEventListener("close", () => {
    const opener = openers.get(dialog);
    if (opener && document.contains(opener)) opener.focus({ preventScroll: true });
  });
  // A click on the backdrop lands on the <dialog> element itself.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close("backdrop");
    const closer = event.target.closest("[data-dialog-close]");
    if (closer && dialog.contains(closer)) {
      event.preventDefault();
      dialog.close("close");
    }
  });
}

export function openDialog(dialog, opener = document.activeElement) {
  wire(dialog);
  openers.set(dialog, opener);
  if (!dialog.open) dialog.showModal();
}

export function openCopyLinkDialog({ url, subject = "", opener = null }) {
  const dialog = document.getElementById("copy-link-dialog");
  if (!dialog) return;
  const field = dialog.querySelector("[data-copy-link-url]");
  const subjectLine = dialog.querySelector("[data-copy-link-subject]");
  const status = dialog.querySelector("[data-copy-status]");
  field.value = url;
  if (subjectLine) {
    subjectLine.textContent = subject;
    subjectLine.hidden = !subject;
  }
  if (status) {
    status.textContent = "";
    status.classList.remove("failed");
  }
  dialog.querySelectorAll(".copied").forEach((el) => el.classList.remove("copied"));
  openDialog(dialog, opener);
  field.focus();
  field.select();
}

function remoteDialog() {
  const dialog = document.getElementById("remote-dialog");
  if (dialog && !dialog.dataset.formsWired) {
    dialog.dataset.formsWired = "1";
    dialog.addEventListener("submit", (event) => {
      const form = event.target;
      if (!(form instanceof HTMLFormElement) || form.method === "dialog") return;
      event.preventDefault();
      submitForm(dialog, form, event.submitter);
    });
  }
  return dialog;
}

function focusFirstField(container) {
  const field = container.querySelector(
    "[autofocus], input:not([type=hidden]):not([disabled]), select, textarea, button",
  );
  if (field) field.focus();
}

async function show(dialog, response) {
  const content = dialog.querySelector("[data-dialog-content]");
  const redirect = response.headers.get("X-Dialog-Redirect");
  if (redirect) {
    window.location.assign(redirect);
    return;
  }
  if (response.headers.get("X-Dialog-Close")) {
    dialog.close("done");
    return;
  }
  const type = response.headers.get("Content-Type") || "";
  const html = type.includes("text/html") ? await response.text() : "";
  // A whole page (login after an expired session, an error page) is not a fragment: go there.
  if (response.redirected && /<html[\s>]/i.test(html)) {
    window.location.assign(response.url);
    return;
  }
  if (!html || /<html[\s>]/i.test(html) || response.status >= 500) {
    content.classList.remove("loading");
    content.textContent = notAvailable();
    return;
  }
  content.classList.remove("loading");
  content.innerHTML = html;
  focusFirstField(content);
}

function notAvailable() {
  return gettext("This action is not available right now. Try again, or reload the page.");
}

function failed(dialog) {
  const content = dialog.querySelector("[data-dialog-content]");
  content.classList.remove("loading");
  content.textContent = notAvailable();
}

export async function openRemoteDialog({ url, title = "", opener = null }) {
  const dialog = remoteDialog();
  if (!dialog) {
    window.location.assign(url);
    return;
  }
  const content = dialog.querySelector("[data-dialog-content]");
  dialog.querySelector("[data-dialog-title]").textContent = title;
  content.classList.add("loading");
  content.textContent = gettext("Loading…");
  openDialog(dialog, opener);
  try {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "text/html", "X-Requested-With": "XMLHttpRequest" },
    });
    await show(dialog, response);
  } catch {
    failed(dialog);
  }
}

async function submitForm(dialog, form, submitter) {
  const data = new FormData(form, submitter || undefined);
  const method = (form.getAttribute("method") || "get").toUpperCase();
  let url = form.action;
  const init = {
    method,
    credentials: "same-origin",
    headers: { Accept: "text/html", "X-Requested-With": "XMLHttpRequest" },
  };
  if (method === "GET") {
    const target = new URL(url, window.location.href);
    target.search = new URLSearchParams(data).toString();
    url = target.toString();
  } else {
    init.body = data;
  }
  form.querySelectorAll("button, input[type=submit]").forEach((button) => {
    button.disabled = true;
  });
  try {
    await show(dialog, await fetch(url, init));
  } catch {
    failed(dialog);
  }
}
