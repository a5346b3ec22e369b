// Date boxes (portal.forms.DateInput): the date is typed as dd/mm/yyyy, in every language; the
// calendar button opens the browser's own date picker, and the day picked there is written back
// into the box in that form. Boxes in dialogs loaded later work too: the listeners are
// delegated, and an observer shows the buttons of new boxes.

const TYPED = /^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\s*$/;
const ISO = /^\s*(\d{4})-(\d{2})-(\d{2})\s*$/;

const pad = (number) => String(number).padStart(2, "0");

function isoOf(text) {
  const typed = TYPED.exec(text);
  if (typed) return `${typed[3]}-${pad(typed[2])}-${pad(typed[1])}`;
  return ISO.test(text) ? text.trim() : "";
}

function typedOf(iso) {
  const [year, month, day] = iso.split("-");
  return `${day}/${month}/${year}`;
}

function partsOf(element) {
  const box = element.closest("[data-date-input]");
  return box
    ? {
        text: box.querySelector("[data-date-text]"),
        picker: box.querySelector("[data-date-picker]"),
      }
    : null;
}

function showButtons(root) {
  for (const button of root.querySelectorAll("[data-date-picker-button][hidden]")) {
    // A browser without showPicker() keeps the plain box: typing is the way there.
    if (typeof HTMLInputElement.prototype.showPicker === "function") button.hidden = false;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-date-picker-button]");
  const parts = button && partsOf(button);
  if (!parts || parts.text.disabled) return;
  parts.picker.value = isoOf(parts.text.value);
  try {
    parts.picker.showPicker();
  } catch {
    parts.text.focus();
  }
});

document.addEventListener("change", (event) => {
  if (!(event.target instanceof Element) || !event.target.matches("[data-date-picker]")) return;
  const parts = partsOf(event.target);
  if (!parts || !event.target.value) return;
  parts.text.value = typedOf(event.target.value);
  parts.text.dispatchEvent(new Event("change", { bubbles: true }));
  parts.text.focus();
});

showButtons(document);
new MutationObserver(() => showButtons(document)).observe(document.body, {
  childList: true,
  subtree: true,
});
