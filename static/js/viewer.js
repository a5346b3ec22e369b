// The study viewer: one frame at a time from the DICOMweb rendered-frame endpoint.
//
// Frames: mouse wheel, arrow keys, Page Up/Down (a tenth of the series), Home/End, the slider
// and the step buttons. Window/level: the preset menu, or dragging with the left button
// (left-right changes the width, up-down the center); the image is re-requested with
// ?window=center,width at most every 120 ms while dragging. Frames come as JPEG (a third of
// PNG's bytes), lossless PNG when the Lossless toggle is pressed; each address carries its
// instance's content version (?v=), so the browser keeps what it fetched and never asks twice.
// Once a frame shows, the rest of the series is fetched in the background, nearest first.
// On a touch screen a one-finger vertical swipe pages through the frames (up: next), as a
// phone's user expects; two fingers, or one finger after the "Window/level" toggle, change the
// window as the mouse does.
// The page gives everything in the "viewer-data" JSON island: the frame URL template and, per
// series, its frames as [instance_uid, frame_number, content_version] in display order.

import { openCopyLinkDialog } from "./dialog.js";
import { gettext } from "./i18n.js";

const WINDOW_DEBOUNCE_MS = 120;
// While the window is being dragged only the next frames are fetched at each new window.
const PRELOAD_AHEAD = 3;
const PRELOAD_BEHIND = 1;
// Background fetches at once: enough to fill the connection, few enough to leave room for the
// frame the user asks for next.
const PREFETCH_PARALLEL = 4;
const CACHE_LIMIT = 400;
const WHEEL_PIXELS_PER_STEP = 40;
const WHEEL_NOTCH_PIXELS = 50;
// A finger moving this far pages one frame: a 100-slice series in about two thumb swipes.
const TOUCH_PIXELS_PER_FRAME = 12;

const island = document.getElementById("viewer-data");
const data = island ? JSON.parse(island.textContent) : { series: [] };

const canvas = document.querySelector("[data-canvas]");
const image = document.querySelector("[data-frame]");
const counter = document.querySelector("[data-counter]");
const slider = document.querySelector("[data-slider]");
const statusLine = document.querySelector("[data-status]");
const readout = document.querySelector("[data-window-readout]");
const presetSelect = document.querySelector("[data-window-preset]");
const resetButton = document.querySelector("[data-window-reset]");
const seriesTitle = document.querySelector("[data-series-title]");
const touchModeButton = document.querySelector("[data-touch-mode]");
const losslessButton = document.querySelector("[data-lossless]");
const thumbs = [...document.querySelectorAll("[data-series-index]")];

const state = {
  series: 0,
  frame: 0,
  window: null, // {center, width} or null for the image's own window
  lossless: false,
  loadingTimer: null,
  windowTimer: null,
};
const cache = new Map();

function currentSeries() {
  return data.series[state.series];
}

function formatNumber(value) {
  return String(Math.round(value));
}

function frameUrl(series, index, win = state.window) {
  const [instance, number, version] = series.frames[index];
  // The same query as studies/views/viewer.py's first frame, in the same order.
  let url = data.frameUrl
    .replace("{series}", encodeURIComponent(series.series_uid))
    .replace("{instance}", encodeURIComponent(instance))
    .replace("{frame}", String(number));
  url += `?v=${encodeURIComponent(version)}&accept=image/${state.lossless ? "png" : "jpeg"}`;
  if (win) url += `&window=${formatNumber(win.center)},${formatNumber(win.width)}`;
  return url;
}

// Fetched (or being fetched) frames by address, least recently used first.
let queue = []; // addresses still to fetch, nearest to the shown frame first
let fetching = 0;

function remember(url, img) {
  cache.delete(url);
  cache.set(url, img);
  while (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value);
}

function fetchNext() {
  while (fetching < PREFETCH_PARALLEL && queue.length) {
    const url = queue.shift();
    if (cache.has(url)) continue;
    const img = new Image();
    img.decoding = "async";
    const done = () => {
      fetching -= 1;
      fetchNext();
    };
    img.addEventListener("load", done, { once: true });
    img.addEventListener("error", done, { once: true });
    fetching += 1;
    img.src = url;
    remember(url, img);
  }
}

// What to fetch after the shown frame: the whole series, nearest first (ahead before behind),
// or only the next few while the window is being dragged.
function prefetch() {
  const series = currentSeries();
  const last = series.frames.length - 1;
  const dragging = canvas.classList.contains("dragging");
  const ahead = dragging ? PRELOAD_AHEAD : last;
  const behind = dragging ? PRELOAD_BEHIND : last;
  const order = [];
  for (let offset = 1; offset <= Math.max(ahead, behind); offset += 1) {
    if (offset <= ahead && state.frame + offset <= last) order.push(state.frame + offset);
    if (offset <= behind && state.frame - offset >= 0) order.push(state.frame - offset);
  }
  queue = order.map((index) => frameUrl(series, index)).filter((url) => !cache.has(url));
  fetchNext();
}

function setStatus(message) {
  if (statusLine) statusLine.textContent = message || "";
}

function showImage(url) {
  if (image.getAttribute("src") === url) return;
  window.clearTimeout(state.loadingTimer);
  // Say "Loading…" only when a frame takes long enough to notice.
  state.loadingTimer = window.setTimeout(() => setStatus(gettext("Loading…")), 250);
  // The page's <img> and a background fetch of the same address share one response (the
  // browser's cache), so this never asks the server twice.
  image.src = url;
  if (!cache.has(url)) remember(url, image);
}

function updateReadout() {
  if (!readout) return;
  const own = currentSeries().window;
  if (state.window) {
    readout.textContent = `C ${formatNumber(state.window.center)}  W ${formatNumber(state.window.width)}`;
  } else if (own) {
    readout.textContent = `C ${formatNumber(own[0])}  W ${formatNumber(own[1])} · ${gettext("Default")}`;
  } else {
    readout.textContent = gettext("Default");
  }
}

function render() {
  const series = currentSeries();
  const total = series.frames.length;
  showImage(frameUrl(series, state.frame));
  if (counter) counter.textContent = `${state.frame + 1} / ${total}`;
  if (slider) {
    slider.max = String(total);
    slider.value = String(state.frame + 1);
    slider.disabled = total < 2;
    slider.setAttribute("aria-valuetext", `${state.frame + 1} / ${total}`);
  }
  updateReadout();
  prefetch();
}

function goTo(index) {
  const total = currentSeries().frames.length;
  const next = Math.max(0, Math.min(total - 1, index));
  if (next === state.frame) return;
  state.frame = next;
  render();
}

function step(delta) {
  goTo(state.frame + delta);
}

function pageSize() {
  return Math.max(1, Math.round(currentSeries().frames.length / 10));
}

function fillPresets(series) {
  if (!presetSelect) return;
  presetSelect.replaceChildren();
  const own = document.createElement("option");
  own.value = "";
  own.textContent = gettext("Default");
  presetSelect.append(own);
  for (const [label, center, width] of series.presets || []) {
    const option = document.createElement("option");
    option.value = `${center},${width}`;
    option.textContent = `${label} (${formatNumber(center)}/${formatNumber(width)})`;
    presetSelect.append(option);
  }
  presetSelect.value = "";
}

function syncPresetSelect() {
  if (!presetSelect) return;
  const value = state.window ? `${state.window.center},${state.window.width}` : "";
  const match = [...presetSelect.options].some((option) => option.value === value);
  let custom = presetSelect.querySelector("option[data-custom]");
  if (!match) {
    if (!custom) {
      custom = document.createElement("option");
      custom.dataset.custom = "1";
      presetSelect.append(custom);
    }
    custom.value = value;
    custom.textContent = `${formatNumber(state.window.center)}/${formatNumber(state.window.width)}`;
  } else if (custom) {
    custom.remove();
  }
  presetSelect.value = value;
}

function selectSeries(index) {
  if (index < 0 || index >= data.series.length) return;
  state.series = index;
  state.frame = 0;
  state.window = null;
  const series = currentSeries();
  thumbs.forEach((thumb, i) => {
    thumb.classList.toggle("active", i === index);
    thumb.setAttribute("aria-pressed", i === index ? "true" : "false");
  });
  if (seriesTitle) seriesTitle.textContent = series.description || series.modality || "";
  fillPresets(series);
  render();
}

function applyWindow(win, { immediate = false } = {}) {
  state.window = win;
  updateReadout();
  syncPresetSelect();
  window.clearTimeout(state.windowTimer);
  const update = () => {
    render();
  };
  if (immediate) update();
  else state.windowTimer = window.setTimeout(update, WINDOW_DEBOUNCE_MS);
}

function startingWindow() {
  if (state.window) return { ...state.window };
  const own = currentSeries().window;
  if (own) return { center: own[0], width: own[1] };
  const modality = (currentSeries().modality || "").toUpperCase();
  // Without a window in the header, start from typical values for the modality.
  return modality === "CT" ? { center: 40, width: 400 } : { center: 2048, width: 4096 };
}

function isTyping(element) {
  return (
    element instanceof HTMLElement &&
    (element.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(element.tagName)) &&
    element !== slider
  );
}

function onKey(event) {
  if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
  if (isTyping(event.target) || document.querySelector("dialog[open]")) return;
  const total = currentSeries().frames.length;
  switch (event.key) {
    case "ArrowDown":
    case "ArrowRight":
      step(1);
      break;
    case "ArrowUp":
    case "ArrowLeft":
      step(-1);
      break;
    case "PageDown":
      step(pageSize());
      break;
    case "PageUp":
      step(-pageSize());
      break;
    case "Home":
      goTo(0);
      break;
    case "End":
      goTo(total - 1);
      break;
    default:
      return;
  }
  event.preventDefault();
}

// --- Touch ---------------------------------------------------------------------------------

function initTouch() {
  const fingers = new Map(); // pointerId -> {x, y}
  let gesture = null; // {kind: "frames" | "window", x, y, frame, start}
  let windowMode = false;

  const centre = () => {
    const points = [...fingers.values()];
    return {
      x: points.reduce((sum, p) => sum + p.x, 0) / points.length,
      y: points.reduce((sum, p) => sum + p.y, 0) / points.length,
    };
  };
  const begin = () => {
    const { x, y } = centre();
    const kind = fingers.size >= 2 || windowMode ? "window" : "frames";
    gesture = { kind, x, y, frame: state.frame, start: startingWindow() };
  };

  if (touchModeButton) {
    touchModeButton.addEventListener("click", () => {
      windowMode = !windowMode;
      touchModeButton.setAttribute("aria-pressed", windowMode ? "true" : "false");
    });
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.pointerType !== "touch") return;
    fingers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    canvas.setPointerCapture(event.pointerId);
    begin(); // a second finger turns a swipe into a window change
    event.preventDefault();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (event.pointerType !== "touch" || !fingers.has(event.pointerId) || !gesture) return;
    fingers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    const { x, y } = centre();
    if (gesture.kind === "frames") {
      const frames = Math.trunc((gesture.y - y) / TOUCH_PIXELS_PER_FRAME);
      if (gesture.frame + frames !== state.frame) goTo(gesture.frame + frames);
      return;
    }
    canvas.classList.add("dragging");
    const factor = Math.max(0.25, gesture.start.width / 256);
    applyWindow({
      center: gesture.start.center + (y - gesture.y) * factor,
      width: Math.max(1, gesture.start.width + (x - gesture.x) * factor),
    });
  });
  const lift = (event) => {
    if (event.pointerType !== "touch" || !fingers.delete(event.pointerId)) return;
    if (gesture && gesture.kind === "window" && state.window) {
      applyWindow(state.window, { immediate: true });
    }
    canvas.classList.remove("dragging");
    if (fingers.size) begin();
    else gesture = null;
  };
  canvas.addEventListener("pointerup", lift);
  canvas.addEventListener("pointercancel", lift);
}

function initViewer() {
  if (!canvas || !image || !data.series.length) return;
  let wheelRemainder = 0;

  image.addEventListener("load", () => {
    window.clearTimeout(state.loadingTimer);
    setStatus("");
  });
  image.addEventListener("error", () => {
    window.clearTimeout(state.loadingTimer);
    setStatus(gettext("This image could not be shown."));
  });

  canvas.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      if (event.deltaY === 0) return;
      // A mouse wheel notch (lines, or a large pixel delta) is one frame; touchpads send many
      // small deltas, which add up to a frame every WHEEL_PIXELS_PER_STEP pixels.
      if (event.deltaMode !== 0 || Math.abs(event.deltaY) >= WHEEL_NOTCH_PIXELS) {
        wheelRemainder = 0;
        step(Math.sign(event.deltaY));
        return;
      }
      wheelRemainder += event.deltaY;
      if (Math.abs(wheelRemainder) >= WHEEL_PIXELS_PER_STEP) {
        step(Math.sign(wheelRemainder));
        wheelRemainder = 0;
      }
    },
    { passive: false },
  );

  initTouch();

  let drag = null;
  canvas.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "touch" || event.button !== 0) return;
    canvas.focus({ preventScroll: true });
    drag = { x: event.clientX, y: event.clientY, start: startingWindow(), pointer: event.pointerId };
    canvas.setPointerCapture(event.pointerId);
    canvas.classList.add("dragging");
    event.preventDefault();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (event.pointerType === "touch" || !drag || event.pointerId !== drag.pointer) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) < 2) return;
    // Sensitivity follows the window's own scale, so narrow brain windows and wide bone or
    // MR windows both take a comfortable drag.
    const factor = Math.max(0.25, drag.start.width / 256);
    applyWindow({
      center: drag.start.center + dy * factor,
      width: Math.max(1, drag.start.width + dx * factor),
    });
  });
  const endDrag = (event) => {
    if (!drag || event.pointerId !== drag.pointer) return;
    drag = null;
    canvas.classList.remove("dragging");
    if (state.window) applyWindow(state.window, { immediate: true });
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);

  document.addEventListener("keydown", onKey);

  if (slider) slider.addEventListener("input", () => goTo(Number(slider.value) - 1));
  document.querySelectorAll("[data-step]").forEach((button) => {
    button.addEventListener("click", () => step(Number(button.dataset.step)));
  });
  thumbs.forEach((thumb) => {
    thumb.addEventListener("click", () => selectSeries(Number(thumb.dataset.seriesIndex)));
  });
  if (presetSelect) {
    presetSelect.addEventListener("change", () => {
      const value = presetSelect.value;
      if (!value) {
        applyWindow(null, { immediate: true });
        return;
      }
      const [center, width] = value.split(",").map(Number);
      applyWindow({ center, width }, { immediate: true });
    });
  }
  if (resetButton) resetButton.addEventListener("click", () => applyWindow(null, { immediate: true }));
  if (losslessButton) {
    losslessButton.addEventListener("click", () => {
      state.lossless = !state.lossless;
      losslessButton.setAttribute("aria-pressed", state.lossless ? "true" : "false");
      render();
    });
  }

  fillPresets(currentSeries());
  render();
}

document.querySelectorAll("[data-copy-link]").forEach((button) => {
  button.addEventListener("click", () =>
    openCopyLinkDialog({ url: button.dataset.copyLink, subject: button.dataset.copyLabel || "", opener: button }),
  );
});

initViewer();
