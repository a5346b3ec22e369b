// The header on a narrow screen: the links and the user menu fold behind a "Menu" button
// (shown by CSS under 900 px once this script runs; without it the links wrap onto more lines).
// The button says whether the menu is open (aria-expanded); Escape, a click elsewhere or
// following a link closes it.

const topbar = document.querySelector(".topbar");
const toggle = document.querySelector("[data-menu-toggle]");
const menu = toggle ? document.getElementById(toggle.getAttribute("aria-controls")) : null;

function setOpen(open, { focusToggle = false } = {}) {
  toggle.setAttribute("aria-expanded", open ? "true" : "false");
  topbar.classList.toggle("menu-open", open);
  if (!open && focusToggle) toggle.focus();
}

if (topbar && toggle && menu) {
  topbar.classList.add("has-menu-toggle");
  toggle.hidden = false;
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    setOpen(open);
    if (open) {
      const first = menu.querySelector("a, button");
      if (first) first.focus();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && topbar.classList.contains("menu-open")) {
      setOpen(false, { focusToggle: true });
    }
  });
  document.addEventListener("click", (event) => {
    if (topbar.classList.contains("menu-open") && !topbar.contains(event.target)) setOpen(false);
  });
}
