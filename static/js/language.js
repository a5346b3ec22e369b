// The language menu (templates/_language_menu.html) sends the language as soon as it is
// picked; its button is for browsers without scripts.
for (const form of document.querySelectorAll("[data-language-menu]")) {
  const select = form.querySelector("select");
  const button = form.querySelector("[data-language-submit]");
  if (!select || !button) continue;
  button.hidden = true;
  select.addEventListener("change", () => form.requestSubmit());
}
