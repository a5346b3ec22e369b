// The directory's context menu: right-click, touch and hold (600 ms), the keyboard's menu key
// or Shift+F10 on a study, worklist or folder (any element with data-menu-target="study" |
// "worklist" | "folder", data-id, data-href, data-link and data-label), or its Actions button
// (data-menu-button inside the target; browsers without scripts see the target's links,
// data-row-links, to the same URLs in its place: portal.css).
//
// Its items come from the server's registry (studies/menu.py) through a JSON data island:
// {"study": [{"key", "label", "kind": "link"|"dialog"|"copy", "url", "multiple", "checked"}], ...}.
// A "link" goes to its URL, a "dialog" loads its URL into the remote dialog, a "copy" shows the
// target's own link in the Copy Link dialog. The target reaches the item's view as query
// parameters (?study=<uid>, repeated for a multiple selection; ?worklist=<id>; ?folder=<id>).

import { openCopyLinkDialog, openRemoteDialog } from "./dialog.js";

const LONG_PRESS_MS = 600;
const MOVE_TOLERANCE_PX = 10;
const EDGE_PX = 8;

export function initContextMenu({ root = document, items, selectedIds = () => [], onOpen = null }) {
  let menu = null;
  let current = null; // { target, opener }
  let press = null; // { timer, x, y, target }
  let suppressClickUntil = 0;

  // A "checked" item depends on the target (its organization, the share it is held through,
  // its worklist): it is offered only on targets whose data-allows lists its key.
  function itemsFor(target) {
    const allows = (target.dataset.allows || "").split(" ");
    return (items[target.dataset.menuTarget] || []).filter(
      (item) => !item.checked || allows.includes(item.key),
    );
  }

  function itemUrl(item, target) {
    const kind = target.dataset.menuTarget;
    if (!item.url) return item.kind === "copy" ? target.dataset.link : target.dataset.href;
    const params = new URLSearchParams();
    let ids = [target.dataset.id];
    if (kind === "study" && item.multiple) {
      const selected = selectedIds();
      if (selected.includes(target.dataset.id)) ids = selected;
    }
    ids.forEach((id) => params.append(kind, id));
    return `${item.url}?${params.toString()}`;
  }

  function activate(item, target, opener) {
    close(false);
    const url = itemUrl(item, target);
    if (item.kind === "link") {
      window.location.assign(url);
    } else if (item.kind === "dialog") {
      openRemoteDialog({ url, title: item.label, opener });
    } else if (item.kind === "copy") {
      openCopyLinkDialog({ url, subject: target.dataset.label || "", opener });
    }
  }

  function build(target) {
    const element = document.createElement("div");
    element.className = "context-menu";
    element.setAttribute("role", "menu");
    element.tabIndex = -1;
    if (target.dataset.label) {
      const heading = document.createElement("div");
      heading.className = "menu-heading";
      heading.setAttribute("role", "presentation");
      heading.textContent = target.dataset.label;
      element.append(heading);
      element.setAttribute("aria-label", target.dataset.label);
    }
    for (const item of itemsFor(target)) {
      const button = document.createElement("button");
      button.type = "button";
      button.setAttribute("role", "menuitem");
      button.tabIndex = -1;
      button.dataset.key = item.key;
      button.textContent = item.label;
      button.addEventListener("click", (event) => {
        event.stopPropagation();
        activate(item, target, current ? current.opener : target);
      });
      element.append(button);
    }
    element.addEventListener("keydown", onMenuKey);
    return element;
  }

  function menuItems() {
    return menu ? [...menu.querySelectorAll('[role="menuitem"]')] : [];
  }

  function focusItem(index) {
    const list = menuItems();
    if (!list.length) return;
    const wrapped = (index + list.length) % list.length;
    list[wrapped].focus();
  }

  function onMenuKey(event) {
    const list = menuItems();
    const index = list.indexOf(document.activeElement);
    switch (event.key) {
      case "ArrowDown":
        focusItem(index + 1);
        break;
      case "ArrowUp":
        focusItem(index < 0 ? list.length - 1 : index - 1);
        break;
      case "Home":
      case "PageUp":
        focusItem(0);
        break;
      case "End":
      case "PageDown":
        focusItem(list.length - 1);
        break;
      case "Escape":
        close(true);
        break;
      case "Tab":
        close(true);
        break;
      case "ContextMenu":
      case "F10":
        if (event.key === "ContextMenu" || event.shiftKey) close(true);
        else return;
        break;
      default: {
        // Type-ahead: the first item starting with the typed letter.
        if (event.key.length === 1 && !event.ctrlKey && !event.metaKey && !event.altKey) {
          const letter = event.key.toLocaleLowerCase();
          const start = index + 1;
          const ordered = [...list.slice(start), ...list.slice(0, start)];
          const match = ordered.find((el) => el.textContent.trim().toLocaleLowerCase().startsWith(letter));
          if (match) match.focus();
          break;
        }
        return;
      }
    }
    event.preventDefault();
    event.stopPropagation();
  }

  function place(element, x, y) {
    element.style.left = "0px";
    element.style.top = "0px";
    const { width, height } = element.getBoundingClientRect();
    const maxX = window.innerWidth - width - EDGE_PX;
    const maxY = window.innerHeight - height - EDGE_PX;
    let left = x;
    let top = y;
    if (left > maxX) left = Math.max(EDGE_PX, x - width > EDGE_PX ? x - width : maxX);
    if (top > maxY) top = Math.max(EDGE_PX, y - height > EDGE_PX ? y - height : maxY);
    element.style.left = `${Math.max(EDGE_PX, left)}px`;
    element.style.top = `${Math.max(EDGE_PX, top)}px`;
  }

  function open(target, x, y, opener = target) {
    if (!itemsFor(target).length) return;
    close(false);
    if (onOpen) onOpen(target);
    menu = build(target);
    current = { target, opener };
    target.classList.add("menu-open");
    document.body.append(menu);
    place(menu, x, y);
    focusItem(0);
    document.addEventListener("pointerdown", onOutside, true);
    window.addEventListener("resize", onViewportChange);
    window.addEventListener("scroll", onViewportChange, true);
    window.addEventListener("blur", onViewportChange);
  }

  function close(restoreFocus) {
    if (!menu) return;
    const { target, opener } = current || {};
    menu.remove();
    menu = null;
    current = null;
    if (target) target.classList.remove("menu-open");
    document.removeEventListener("pointerdown", onOutside, true);
    window.removeEventListener("resize", onViewportChange);
    window.removeEventListener("scroll", onViewportChange, true);
    window.removeEventListener("blur", onViewportChange);
    if (restoreFocus && opener && document.contains(opener)) opener.focus({ preventScroll: true });
  }

  function onOutside(event) {
    if (menu && !menu.contains(event.target)) close(false);
  }

  function onViewportChange(event) {
    if (event.type === "scroll" && menu && menu.contains(event.target)) return;
    close(false);
  }

  function targetOf(element) {
    return element instanceof Element ? element.closest("[data-menu-target]") : null;
  }

  // Mouse (and Android's long-press, which browsers report as contextmenu).
  root.addEventListener("contextmenu", (event) => {
    const target = targetOf(event.target);
    if (!target || !root.contains(target)) return;
    event.preventDefault();
    cancelPress();
    if (menu && current && current.target === target && Date.now() < suppressClickUntil) return;
    let { clientX: x, clientY: y } = event;
    if (x === 0 && y === 0) {
      // A contextmenu event from the keyboard has no pointer position.
      const rect = target.getBoundingClientRect();
      x = rect.left + 24;
      y = rect.top + rect.height / 2;
    }
    open(target, x, y);
  });

  // Keyboard: the menu key or Shift+F10 on a focused target.
  root.addEventListener("keydown", (event) => {
    if (!(event.key === "ContextMenu" || (event.key === "F10" && event.shiftKey))) return;
    const target = targetOf(event.target);
    if (!target) return;
    event.preventDefault();
    const rect = target.getBoundingClientRect();
    open(target, rect.left + 24, rect.top + Math.min(rect.height, 28));
  });

  // Touch and hold, for browsers that do not turn a long press into contextmenu (iOS).
  function cancelPress() {
    if (press) window.clearTimeout(press.timer);
    press = null;
  }

  root.addEventListener("pointerdown", (event) => {
    if (event.pointerType !== "touch") return;
    const target = targetOf(event.target);
    if (!target) return;
    cancelPress();
    press = {
      target,
      x: event.clientX,
      y: event.clientY,
      timer: window.setTimeout(() => {
        const { target: pressed, x, y } = press || {};
        press = null;
        if (!pressed) return;
        suppressClickUntil = Date.now() + 800;
        open(pressed, x, y);
      }, LONG_PRESS_MS),
    };
  });
  root.addEventListener("pointermove", (event) => {
    if (!press) return;
    if (Math.hypot(event.clientX - press.x, event.clientY - press.y) > MOVE_TOLERANCE_PX) cancelPress();
  });
  ["pointerup", "pointercancel"].forEach((type) => root.addEventListener(type, cancelPress));
  // The click that ends a long press must not also follow the link underneath.
  root.addEventListener(
    "click",
    (event) => {
      if (Date.now() < suppressClickUntil && targetOf(event.target)) {
        event.preventDefault();
        event.stopPropagation();
      }
    },
    true,
  );

  // The Actions button of a row.
  root.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest("[data-menu-button]") : null;
    if (!button) return;
    const target = targetOf(button);
    if (!target) return;
    event.preventDefault();
    event.stopPropagation();
    if (menu && current && current.target === target) {
      close(true);
      return;
    }
    const rect = button.getBoundingClientRect();
    open(target, rect.right - 4, rect.bottom + 2, button);
  });

  return { open, close };
}
