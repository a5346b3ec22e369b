// Upload page: sends the chosen files in small batches, one request at a time, and shows what
// happened to each file. A bad file (or a failed batch) is listed and the upload goes on; only
// an ended session or a refused permission stops it, since no later request could succeed.

import { gettext, interpolate, ngettext } from "./i18n.js";

const root = document.querySelector("[data-upload]");
const form = root && root.querySelector("[data-upload-form]");

if (root && form) {
  const batchSize = Math.max(1, Number(root.dataset.batchSize) || 10);
  // Also bound a batch by size, so one request never carries a whole disc of large files.
  const batchBytes = 64 * 1024 * 1024;
  const fileInput = form.querySelector("[data-upload-files]");
  const folderInput = form.querySelector("[data-upload-folder]");
  const submit = form.querySelector("[data-upload-submit]");
  const progressBox = root.querySelector("[data-upload-progress]");
  const bar = root.querySelector("[data-upload-bar]");
  const statusLine = root.querySelector("[data-upload-status]");
  const results = root.querySelector("[data-upload-results]");
  const summary = root.querySelector("[data-upload-summary]");
  const rows = root.querySelector("[data-upload-rows]");

  const statusLabel = {
    stored: gettext("Stored"),
    duplicate: gettext("Already stored"),
    rejected: gettext("Not stored"),
  };

  const totals = { stored: 0, duplicate: 0, rejected: 0 };

  function addRow(name, status, detail) {
    const row = document.createElement("tr");
    row.className = `status-${status}`;
    for (const [text, className] of [
      [name, "file-name"],
      [statusLabel[status] || status, ""],
      [detail || "", ""],
    ]) {
      const cell = document.createElement("td");
      cell.textContent = text; // never innerHTML: file names come from the user's disc
      if (className) cell.className = className;
      row.append(cell);
    }
    rows.append(row);
    totals[status] = (totals[status] || 0) + 1;
    summary.textContent = interpolate(
      gettext(
        "Finished: %(stored)s stored, %(duplicates)s already stored, %(rejected)s not stored.",
      ),
      { stored: totals.stored, duplicates: totals.duplicate, rejected: totals.rejected },
    );
  }

  // Browsers list a folder's files in no useful order; sort them as a file manager would
  // (IM2 before IM10), so the results table reads like the disc.
  const byPath = (a, b) => a.path.localeCompare(b.path, undefined, { numeric: true });

  function chosenFiles() {
    const files = [];
    for (const input of [fileInput, folderInput]) {
      const items = Array.from(input ? input.files : [], (file) => ({
        file,
        path: file.webkitRelativePath || file.name,
      }));
      files.push(...items.sort(byPath));
    }
    return files;
  }

  function batches(files) {
    const out = [];
    let current = [];
    let bytes = 0;
    for (const item of files) {
      if (current.length && (current.length >= batchSize || bytes + item.file.size > batchBytes)) {
        out.push(current);
        current = [];
        bytes = 0;
      }
      current.push(item);
      bytes += item.file.size;
    }
    if (current.length) out.push(current);
    return out;
  }

  // Resolves with {status, body} for every HTTP answer; rejects only when no answer came.
  function send(batch, onProgress) {
    return new Promise((resolve, reject) => {
      const data = new FormData();
      data.append("csrfmiddlewaretoken", form.elements.csrfmiddlewaretoken.value);
      data.append("location", form.elements.location.value);
      for (const { file, path } of batch) {
        data.append("files", file, file.name);
        data.append("paths", path);
      }
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (event) => onProgress(event.loaded));
      xhr.addEventListener("load", () => resolve({ status: xhr.status, body: xhr.response }));
      xhr.addEventListener("error", () => reject(new Error("network")));
      xhr.addEventListener("abort", () => reject(new Error("network")));
      xhr.send(data);
    });
  }

  function recordAnswer(batch, answer) {
    const body = answer.body;
    if (body && Array.isArray(body.files)) {
      for (const file of body.files) addRow(file.name, file.status, file.message);
      return null;
    }
    if (answer.status === 401 || answer.status === 403) {
      return (body && body.detail) || String(answer.status);
    }
    if (answer.status === 400 && body && typeof body === "object") {
      // A form error (e.g. the location): it would fail the same way for every batch.
      return Object.values(body).flat().join(" ");
    }
    const detail =
      answer.status === 413
        ? gettext(
            "The server refused this batch as too large. Upload this file on its own, or ask your administrator to import it.",
          )
        : interpolate(
            gettext(
              "The server could not process this file (error %(status)s). Upload it again; if it fails again, contact your service desk.",
            ),
            { status: answer.status },
          );
    for (const { path } of batch) addRow(path, "rejected", detail);
    return null;
  }

  async function upload(files) {
    const total = files.length;
    const totalBytes = files.reduce((sum, item) => sum + item.file.size, 0) || 1;
    let sentBytes = 0;
    let sentFiles = 0;
    const showProgress = (extra) => {
      bar.value = Math.min(1, (sentBytes + extra) / totalBytes);
      bar.textContent = `${Math.round(bar.value * 100)}%`;
      statusLine.textContent = interpolate(
        ngettext(
          "Uploading: %(done)s of %(total)s file sent",
          "Uploading: %(done)s of %(total)s files sent",
          total,
        ),
        { done: sentFiles, total },
      );
    };
    showProgress(0);

    const queue = batches(files);
    for (let index = 0; index < queue.length; index += 1) {
      const batch = queue[index];
      const batchSizeBytes = batch.reduce((sum, item) => sum + item.file.size, 0);
      let answer = null;
      // One retry after a dropped connection or a server error: often a proxy restarting.
      for (let attempt = 0; attempt < 2 && (!answer || answer.status >= 500); attempt += 1) {
        try {
          answer = await send(batch, (loaded) => showProgress(Math.min(loaded, batchSizeBytes)));
        } catch {
          answer = null;
        }
      }
      sentBytes += batchSizeBytes;
      sentFiles += batch.length;
      showProgress(0);
      if (!answer) {
        for (const { path } of batch) addRow(path, "rejected", gettext("The connection failed while sending this file. Upload it again."));
        continue;
      }
      const stop = recordAnswer(batch, answer);
      if (stop) {
        statusLine.textContent = interpolate(gettext("Upload stopped: %(detail)s"), { detail: stop });
        for (const rest of queue.slice(index + 1)) {
          for (const { path } of rest) addRow(path, "rejected", gettext("Not sent because the upload stopped."));
        }
        return;
      }
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const files = chosenFiles();
    progressBox.hidden = false;
    if (!files.length) {
      statusLine.textContent = gettext("Choose files or a folder first.");
      return;
    }
    submit.disabled = true;
    results.hidden = false;
    rows.replaceChildren();
    totals.stored = totals.duplicate = totals.rejected = 0;
    try {
      await upload(files);
    } finally {
      submit.disabled = false;
      // Clear the chosen files but keep the location for the next upload.
      if (fileInput) fileInput.value = "";
      if (folderInput) folderInput.value = "";
    }
  });
}
