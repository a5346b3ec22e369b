// The Share dialog (templates/sharing/_share_form.html), made quicker. Without this script
// every button of the dialog posts to the server, which answers the form as edited; with it:
//
// - typing in a recipient box searches users, groups or locations as you type
//   (GET /api/v1/recipients/?q=&kind=, the session's cookie authenticates), and choosing a
//   result fills the row;
// - "Add extra recipient" and a row's remove button act at once, without a round trip;
// - "Favorites" shows the sender's favorites; clicking one adds it as a recipient;
// - a star tells that the recipient joins the favorites once the share is done;
// - a favorite's × removes it (DELETE /api/v1/favorites/<id>/ with the form's CSRF token; on
//   an unexpected answer the button posts the dialog as it would without this script);
// - "Unlimited access" disables the date.
//
// Dialog content arrives later (static/js/dialog.js), so every listener is delegated and a
// MutationObserver brings each new form into its initial state. No inline script or style.

import "./date-input.js";
import { gettext } from "./i18n.js";

const SEARCH_DELAY_MS = 250;
const MIN_QUERY_LENGTH = 2;
const MAX_ROWS = 100;

const searches = new WeakMap(); // query input -> { timer, controller }

function formOf(element) {
  return element instanceof Element ? element.closest("[data-share-form]") : null;
}

function rowOf(element) {
  return element.closest("[data-share-row]");
}

function kindOption(row) {
  const select = row.querySelector("[data-share-kind]");
  return select ? select.selectedOptions[0] || null : null;
}

function isSearchable(row) {
  const option = kindOption(row);
  return Boolean(option && option.hasAttribute("data-searchable"));
}

function kindLabel(form, kind) {
  const option = form.querySelector(`[data-share-kind] option[value="${CSS.escape(kind)}"]`);
  return option ? option.textContent.trim() : kind;
}

function favoriteKeys(form) {
  const keys = new Set();
  form.querySelectorAll("[data-share-favorites] [data-share-pick]").forEach((button) => {
    keys.add(`${button.dataset.kind}:${button.dataset.id}`);
  });
  return keys;
}

function resultsOf(row) {
  return row.querySelector("[data-share-results]");
}

function hideResults(row) {
  const list = resultsOf(row);
  if (!list) return;
  list.hidden = true;
  list.replaceChildren();
  const input = row.querySelector("[data-share-query]");
  if (input) input.setAttribute("aria-expanded", "false");
}

// --- Rows -------------------------------------------------------------------------------------

function isBlank(row) {
  const target = row.querySelector("[data-share-target]");
  const query = row.querySelector("[data-share-query]");
  return !(target && target.value) && !(query && query.value.trim());
}

function addRow(form) {
  const list = form.querySelector("[data-share-rows]");
  const template = form.querySelector("template[data-share-row-template]");
  if (!list || !template) return null;
  const rows = [...list.querySelectorAll("[data-share-row]")];
  if (rows.length >= MAX_ROWS) return null;
  const next = Math.max(-1, ...rows.map((row) => Number(row.dataset.index) || 0)) + 1;
  const html = template.innerHTML.replaceAll("__index__", String(next));
  const holder = document.createElement("ol");
  holder.innerHTML = html;
  const row = holder.querySelector("[data-share-row]");
  list.append(row);
  return row;
}

function removeRow(row) {
  const form = formOf(row);
  const list = row.parentElement;
  const previous = row.previousElementSibling;
  row.remove();
  let focusTarget = previous ? previous.querySelector("[data-share-query], [data-share-remove]") : null;
  if (!list.querySelector("[data-share-row]")) {
    const fresh = addRow(form);
    focusTarget = fresh ? fresh.querySelector("[data-share-query]") : null;
  }
  if (!focusTarget || focusTarget.closest("[hidden]")) {
    focusTarget = form.querySelector("[data-share-add]");
  }
  if (focusTarget) focusTarget.focus();
  updateStarHint(form);
}

function choose(row, result) {
  const form = formOf(row);
  const select = row.querySelector("[data-share-kind]");
  if (select) select.value = result.kind;
  row.querySelector("[data-share-target]").value = String(result.id);
  row.querySelector("[data-share-chosen-kind]").textContent = result.kindLabel || kindLabel(form, result.kind);
  row.querySelector("[data-share-chosen-name]").textContent = result.name;
  row.querySelector("[data-share-chosen-meta]").textContent = result.meta || "";
  const query = row.querySelector("[data-share-query]");
  if (query) query.value = "";
  const isFavorite = favoriteKeys(form).has(`${result.kind}:${result.id}`);
  row.querySelector("[data-share-is-favorite]").hidden = !isFavorite;
  const starBox = row.querySelector("[data-share-star-box]");
  starBox.hidden = isFavorite;
  starBox.querySelector("[data-share-star]").checked = false;
  row.querySelector("[data-share-chosen]").hidden = false;
  row.querySelector("[data-share-entry]").hidden = true;
  row.classList.remove("has-errors");
  row.querySelectorAll(":scope > .errors").forEach((errors) => errors.remove());
  hideResults(row);
  updateStarHint(form);
}

function pick(button) {
  const form = formOf(button);
  const result = {
    kind: button.dataset.kind,
    id: button.dataset.id,
    name: button.dataset.name,
    meta: button.dataset.meta,
    kindLabel: button.dataset.kindLabel,
  };
  const where = button.dataset.sharePick;
  let row = null;
  if (where === "new") {
    const rows = [...form.querySelectorAll("[data-share-rows] [data-share-row]")];
    const already = rows.find(
      (candidate) =>
        candidate.querySelector("[data-share-target]").value === String(result.id) &&
        candidate.querySelector("[data-share-kind]").value === result.kind,
    );
    if (already) {
      already.querySelector("[data-share-remove]").focus();
      return;
    }
    row = rows.find(isBlank) || addRow(form);
  } else {
    row = form.querySelector(`[data-share-rows] [data-share-row][data-index="${CSS.escape(where)}"]`);
  }
  if (!row) return;
  choose(row, result);
  const star = row.querySelector("[data-share-star]");
  const focusTarget = star && !star.closest("[hidden]") ? star : row.querySelector("[data-share-remove]");
  focusTarget.focus();
}

// --- Favorites --------------------------------------------------------------------------------

function favoritesStatus(form, text) {
  const status = form.querySelector("[data-share-favorites-status]");
  if (status) status.textContent = text || "";
}

function forgetFavorite(form, item) {
  const pickButton = item.querySelector("[data-share-pick]");
  const kind = pickButton ? pickButton.dataset.kind : "";
  const id = pickButton ? pickButton.dataset.id : "";
  const list = item.parentElement;
  const items = [...list.querySelectorAll("[data-share-favorite]")];
  const index = items.indexOf(item);
  item.remove();
  // Rows holding this recipient may be starred again.
  form.querySelectorAll("[data-share-rows] [data-share-row]").forEach((row) => {
    const target = row.querySelector("[data-share-target]");
    const select = row.querySelector("[data-share-kind]");
    if (!target || target.value !== id || !select || select.value !== kind) return;
    row.querySelector("[data-share-is-favorite]").hidden = true;
    row.querySelector("[data-share-star-box]").hidden = false;
  });
  const left = [...list.querySelectorAll("[data-share-favorite]")];
  if (!left.length) {
    list.remove();
    const hint = form.querySelector("[data-share-favorites-hint]");
    if (hint) hint.remove();
    const empty = form.querySelector("[data-share-favorites-empty]");
    if (empty) empty.hidden = false;
  }
  const next = left[Math.min(index, left.length - 1)];
  const focusTarget = next
    ? next.querySelector("[data-share-favorite-remove]")
    : form.querySelector("[data-share-favorites-toggle]");
  if (focusTarget) focusTarget.focus();
}

async function removeFavorite(button) {
  const form = formOf(button);
  const item = button.closest("[data-share-favorite]");
  const token = form.elements.csrfmiddlewaretoken ? form.elements.csrfmiddlewaretoken.value : "";
  if (button.disabled) return;
  button.disabled = true;
  let response;
  try {
    response = await fetch(button.dataset.url, {
      method: "DELETE",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": token },
    });
  } catch {
    button.disabled = false;
    favoritesStatus(form, gettext("The favorite could not be removed right now. Try again."));
    return;
  }
  // 404: already gone (removed in another tab); the list catches up.
  if (response.ok || response.status === 404) {
    forgetFavorite(form, item);
    favoritesStatus(form, gettext("Removed from your favorites."));
    return;
  }
  // Anything else (a stale CSRF token...): post the dialog as a browser without scripts would.
  button.disabled = false;
  form.requestSubmit(button);
}

// --- Typeahead --------------------------------------------------------------------------------

function resultButton(row, item, form) {
  const meta = [item.organization, item.physician_number, item.mobile, item.email]
    .filter(Boolean)
    .join(" · ");
  const label = kindLabel(form, item.kind);
  const li = document.createElement("li");
  li.className = "share-result-item";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "share-result";
  button.dataset.sharePick = row.dataset.index;
  button.dataset.kind = item.kind;
  button.dataset.id = String(item.id);
  button.dataset.name = item.name;
  button.dataset.meta = meta;
  button.dataset.kindLabel = label;
  const kind = document.createElement("span");
  kind.className = "share-result-kind";
  kind.textContent = label;
  const name = document.createElement("strong");
  name.className = "share-result-name";
  name.textContent = item.name;
  const details = document.createElement("span");
  details.className = "share-result-meta";
  details.textContent = meta;
  button.append(kind, " ", name, " ", details);
  li.append(button);
  return li;
}

function showMessage(row, text) {
  const list = resultsOf(row);
  const li = document.createElement("li");
  li.className = "hint share-no-results";
  li.textContent = text;
  list.replaceChildren(li);
  list.hidden = false;
}

async function search(input) {
  const row = rowOf(input);
  const form = formOf(input);
  const state = searches.get(input) || {};
  if (state.controller) state.controller.abort();
  const text = input.value.trim();
  if (!isSearchable(row) || text.length < MIN_QUERY_LENGTH) {
    hideResults(row);
    return;
  }
  const controller = new AbortController();
  searches.set(input, { ...state, controller });
  const url = new URL(form.dataset.recipientsUrl, window.location.href);
  url.searchParams.set("q", text);
  url.searchParams.set("kind", row.querySelector("[data-share-kind]").value);
  try {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(String(response.status));
    const items = await response.json();
    if (input.value.trim() !== text) return; // typed on meanwhile: a newer search follows
    if (!items.length) {
      showMessage(row, gettext("No recipient found. Check the spelling, or try the detailed search."));
    } else {
      const list = resultsOf(row);
      list.replaceChildren(...items.map((item) => resultButton(row, item, form)));
      list.hidden = false;
    }
    input.setAttribute("aria-expanded", "true");
  } catch (error) {
    if (error.name === "AbortError") return;
    showMessage(row, gettext("The search is not available right now: press Search."));
  }
}

function scheduleSearch(input) {
  const state = searches.get(input) || {};
  window.clearTimeout(state.timer);
  const timer = window.setTimeout(() => search(input), SEARCH_DELAY_MS);
  searches.set(input, { ...state, timer });
}

function resultButtons(row) {
  const list = resultsOf(row);
  return list && !list.hidden ? [...list.querySelectorAll("[data-share-pick]")] : [];
}

// --- Kind, star, validity ---------------------------------------------------------------------

function applyKind(row) {
  const option = kindOption(row);
  const query = row.querySelector("[data-share-query]");
  if (option && query) query.placeholder = option.dataset.placeholder || "";
  const button = row.querySelector("[data-share-search]");
  if (button) button.hidden = !isSearchable(row);
  hideResults(row);
}

function updateStarHint(form) {
  const hint = form.querySelector("[data-share-star-hint]");
  if (!hint) return;
  hint.hidden = ![...form.querySelectorAll("[data-share-star]")].some(
    (star) => star.checked && !star.closest("[hidden]"),
  );
}

function syncValidity(form) {
  const unlimited = form.querySelector("[data-share-unlimited]");
  const date = form.querySelector("[data-share-valid-until]");
  if (unlimited && date) date.disabled = unlimited.checked;
}

function initForm(form) {
  if (form.dataset.shareReady) return;
  form.dataset.shareReady = "1";
  syncValidity(form);
  updateStarHint(form);
  // dialog.js focuses the first control; a recipient box (or the first error) is more useful.
  const invalid = form.querySelector(
    ".has-errors :is(input:not([type=hidden]), select, textarea):not([disabled])",
  );
  const focusTarget =
    (invalid && !invalid.closest("[hidden]") && invalid) ||
    [...form.querySelectorAll("[data-share-query]")].find(
      (query) => !query.closest("[hidden]") && !query.value,
    );
  if (focusTarget && form.closest("dialog")) focusTarget.focus();
}

// --- Delegated events -------------------------------------------------------------------------

document.addEventListener("click", (event) => {
  const target = event.target instanceof Element ? event.target : null;
  const form = formOf(target);
  if (!form) return;
  const removeFavoriteButton = target.closest("[data-share-favorite-remove]");
  if (removeFavoriteButton) {
    event.preventDefault();
    removeFavorite(removeFavoriteButton);
    return;
  }
  const pickButton = target.closest("[data-share-pick]");
  if (pickButton) {
    event.preventDefault();
    pick(pickButton);
    return;
  }
  const add = target.closest("[data-share-add]");
  if (add) {
    event.preventDefault();
    const row = addRow(form);
    if (row) row.querySelector("[data-share-query]").focus();
    return;
  }
  const remove = target.closest("[data-share-remove]");
  if (remove) {
    event.preventDefault();
    removeRow(rowOf(remove));
    return;
  }
  const toggle = target.closest("[data-share-favorites-toggle]");
  if (toggle) {
    event.preventDefault();
    const panel = form.querySelector("[data-share-favorites]");
    panel.hidden = !panel.hidden;
    toggle.setAttribute("aria-expanded", panel.hidden ? "false" : "true");
  }
});

document.addEventListener("input", (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || !input.matches("[data-share-query]")) return;
  if (!formOf(input)) return;
  scheduleSearch(input);
});

document.addEventListener("change", (event) => {
  const element = event.target;
  if (!(element instanceof Element)) return;
  const form = formOf(element);
  if (!form) return;
  if (element.matches("[data-share-kind]")) applyKind(rowOf(element));
  else if (element.matches("[data-share-star]")) updateStarHint(form);
  else if (element.matches("[data-share-unlimited]")) syncValidity(form);
});

document.addEventListener("keydown", (event) => {
  const element = event.target;
  if (!(element instanceof Element) || !formOf(element)) return;
  if (element.matches("[data-share-query]")) {
    const row = rowOf(element);
    const buttons = resultButtons(row);
    if (event.key === "ArrowDown" && buttons.length) {
      event.preventDefault();
      buttons[0].focus();
    } else if (event.key === "Escape" && buttons.length) {
      event.preventDefault();
      event.stopPropagation(); // close the results, not the dialog
      hideResults(row);
    } else if (event.key === "Enter") {
      // Never submit from a recipient box: choose the only result, or search now.
      event.preventDefault();
      if (buttons.length === 1) pick(buttons[0]);
      else if (buttons.length) buttons[0].focus();
      else if (isSearchable(row)) search(element);
    }
    return;
  }
  if (element.matches("[data-share-results] [data-share-pick]")) {
    const row = rowOf(element);
    const buttons = resultButtons(row);
    const index = buttons.indexOf(element);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = event.key === "ArrowDown" ? index + 1 : index - 1;
      if (next < 0) row.querySelector("[data-share-query]").focus();
      else buttons[Math.min(next, buttons.length - 1)].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      hideResults(row);
      row.querySelector("[data-share-query]").focus();
    }
  }
});

new MutationObserver(() => {
  document.querySelectorAll("[data-share-form]:not([data-share-ready])").forEach(initForm);
}).observe(document.body, { childList: true, subtree: true });
document.querySelectorAll("[data-share-form]").forEach(initForm);
