// Copying text to the clipboard.
//
// navigator.clipboard works in secure contexts (HTTPS, localhost); elsewhere, or when the
// browser refuses, the text is selected and copied with execCommand("copy"), which still works
// in every browser from a user gesture. If both fail the text stays selected and the status
// line tells the user to press Ctrl+C.
//
// Markup (works in dialogs loaded later too, the click handler is delegated):
//   <input id="link" readonly value="...">
//   <button type="button" data-copy-from="#link">Copy</button>
//   <p data-copy-status data-copied-text="Link copied." data-failed-text="Press Ctrl+C."></p>
// data-copy-from may also name a non-form element; its text content is copied. The status texts
// say what was copied, so the page gives them; without them the status is a generic one.

import { gettext } from "./i18n.js";

const CONFIRMATION_MS = 2500;

export async function copyText(text, field = null) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      if (field && typeof field.select === "function") field.select();
      return true;
    } catch {
      // Permission refused or document not focused: try the selection route below.
    }
  }
  return copyBySelection(text, field);
}

function copyBySelection(text, field) {
  let target = field;
  let temporary = null;
  if (!target || typeof target.select !== "function") {
    temporary = document.createElement("textarea");
    temporary.value = text;
    temporary.setAttribute("readonly", "");
    temporary.className = "visually-hidden";
    document.body.append(temporary);
    target = temporary;
  }
  target.focus();
  target.select();
  if (typeof target.setSelectionRange === "function") target.setSelectionRange(0, text.length);
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  if (temporary) temporary.remove();
  return copied;
}

function scopeOf(button) {
  return button.closest("dialog, form, section, .panel") || document.body;
}

export function showCopyResult(button, copied) {
  const status = scopeOf(button).querySelector("[data-copy-status]");
  if (status) {
    status.textContent = copied
      ? status.dataset.copiedText || gettext("Copied to the clipboard.")
      : status.dataset.failedText || gettext("Copying failed: select the text and press Ctrl+C (⌘C on a Mac).");
    status.classList.toggle("failed", !copied);
  }
  if (copied) {
    button.classList.add("copied");
    window.clearTimeout(button.copyTimer);
    button.copyTimer = window.setTimeout(() => button.classList.remove("copied"), CONFIRMATION_MS);
  }
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy-from]");
  if (!button) return;
  event.preventDefault();
  const selector = button.dataset.copyFrom;
  const source = scopeOf(button).querySelector(selector) || document.querySelector(selector);
  if (!source) return;
  const isField = source instanceof HTMLInputElement || source instanceof HTMLTextAreaElement;
  const text = isField ? source.value : source.textContent.trim();
  const copied = await copyText(text, isField ? source : null);
  showCopyResult(button, copied);
});
