"use strict";
// crossfuse web page: builds the input form from /model, posts it to /predict,
// shows the probabilities and sends feedback. Plain DOM, no external resources.

const state = { model: null, requestId: null };
const $ = (id) => document.getElementById(id);

function safeId(name) {
  return String(name).replace(/[^A-Za-z0-9_-]/g, "_");
}

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function fetchJson(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : `HTTP ${response.status}`;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return body;
}

function mediaField(column, modality) {
  const id = `input-${safeId(column)}`;
  const input = el("input", { type: "file", id, name: column, accept: `${modality}/*` });
  const preview = el("span", { class: "preview" });
  const hint = el("span", { class: "hint", text: `Drop an ${modality} file here or choose one` });
  const drop = el("div", { class: "drop", id: `drop-${safeId(column)}` }, [input, preview, hint]);
  const show = () => {
    preview.replaceChildren();
    const file = input.files && input.files[0];
    if (!file) { hint.textContent = `Drop an ${modality} file here or choose one`; return; }
    hint.textContent = `${file.name} (${Math.max(1, Math.round(file.size / 1024))} KB)`;
    const url = URL.createObjectURL(file);
    if (modality === "image") {
      const img = el("img", { src: url, alt: `preview of ${file.name}` });
      img.addEventListener("load", () => img.classList.toggle("tiny", img.naturalWidth < 64));
      preview.append(img);
    }
    else preview.append(el("audio", { src: url, controls: "", "aria-label": `play ${file.name}` }));
  };
  input.addEventListener("change", show);
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      show();
    }
  });
  return drop;
}

function buildField(column, modality) {
  const id = `input-${safeId(column)}`;
  let control;
  if (modality === "image" || modality === "audio") control = mediaField(column, modality);
  else if (modality === "text") control = el("textarea", { id, name: column, rows: "3" });
  else if (modality === "numeric") control = el("input", { id, name: column, type: "number", step: "any", inputmode: "decimal" });
  else control = el("input", { id, name: column, type: "text" });
  const label = el("label", { for: id }, [column, el("span", { class: "kind", text: modality })]);
  return el("div", { class: "field" }, [label, control]);
}

function summary(model) {
  const parts = [`Predicts “${[].concat(model.label).join(", ")}” (${model.task})`,
    `fusion ${model.fusion}`, `version ${model.model_version}`];
  const first = Object.values((model.metrics && model.metrics.tasks) || {})[0] || {};
  if (typeof first.accuracy === "number") parts.push(`validation accuracy ${(100 * first.accuracy).toFixed(1)}%`);
  return parts.join(" · ");
}

async function init() {
  try {
    const model = await fetchJson("/model");
    state.model = model;
    $("model-summary").textContent = summary(model);
    const fields = $("fields");
    for (const [column, modality] of Object.entries(model.inputs)) fields.append(buildField(column, modality));
    const select = $("feedback-label");
    if (model.task === "classification") {
      for (const cls of model.classes) select.append(el("option", { value: String(cls), text: String(cls) }));
    } else {
      const number = el("input", { id: "feedback-label", type: "number", step: "any" });
      select.replaceWith(number);
    }
    $("predict-btn").disabled = false;
  } catch (err) {
    $("model-summary").textContent = `Could not load the model: ${err.message}`;
  }
}

function formData() {
  const data = new FormData();
  for (const [column, modality] of Object.entries(state.model.inputs)) {
    const input = $(`input-${safeId(column)}`);
    if (modality === "image" || modality === "audio") {
      if (input.files && input.files[0]) data.append(column, input.files[0], input.files[0].name);
    } else if (input.value.trim() !== "") {
      data.append(column, input.value);
    }
  }
  return data;
}

function showResult(result) {
  const box = $("result");
  box.replaceChildren();
  const [task, prediction] = Object.entries(result.predictions)[0];
  if (prediction.probabilities) {
    box.append(el("p", { class: "predicted" }, [`${task}: `, el("strong", { id: "predicted-label", text: String(prediction.label) })]));
    const sorted = Object.entries(prediction.probabilities).sort((a, b) => b[1] - a[1]);
    const list = el("ul", { class: "bars", "aria-label": "probability per class" });
    sorted.forEach(([cls, p], i) => {
      const bar = el("div", { class: "bar" });
      bar.style.width = `${(100 * p).toFixed(1)}%`;
      const row = el("li", { class: `bar-row${i === 0 ? " top" : ""}`, id: `prob-${safeId(cls)}`, "data-probability": String(p) }, [
        el("span", { class: "bar-name", text: cls, title: cls }),
        el("div", { class: "bar-track", role: "img", "aria-label": `${cls}: ${(100 * p).toFixed(1)} percent` }, [bar]),
        el("span", { class: "bar-value", text: `${(100 * p).toFixed(1)}%` }),
      ]);
      list.append(row);
    });
    box.append(list);
    $("feedback-label").value = String(prediction.label);
  } else {
    box.append(el("p", { class: "predicted" }, [`${task}: `, el("strong", { id: "predicted-label", text: Number(prediction.value).toPrecision(4) })]));
  }
  box.append(el("h3", { text: "Inputs used" }));
  const chips = el("ul", { class: "chips", id: "present" });
  const tabular = Object.entries(state.model.inputs)
    .filter(([, m]) => m === "numeric" || m === "categorical").map(([c]) => c);
  for (const [name, present] of Object.entries(result.present)) {
    const shown = name === "tabular" ? `table values (${tabular.join(", ")})` : name;
    chips.append(el("li", { class: `chip ${present ? "yes" : "no"}`, text: `${shown}${present ? "" : " — missing"}` }));
  }
  box.append(chips);
  if (result.problems.length) {
    box.append(el("h3", { text: "Problems" }));
    box.append(el("ul", { class: "problems", id: "problems" }, result.problems.map((p) => el("li", { text: p }))));
  }
  $("feedback-status").textContent = "";
  $("result-card").hidden = false;
}

async function predict(event) {
  event.preventDefault();
  const button = $("predict-btn");
  const error = $("predict-error");
  error.hidden = true;
  button.disabled = true;
  button.textContent = "Predicting…";
  try {
    const result = await fetchJson("/predict", { method: "POST", body: formData() });
    state.requestId = result.request_id;
    showResult(result);
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
    button.textContent = "Predict";
  }
}

async function sendFeedback(event) {
  event.preventDefault();
  const status = $("feedback-status");
  if (!state.requestId) { status.textContent = "Predict first."; return; }
  const body = { request_id: state.requestId, label: $("feedback-label").value };
  const comment = $("feedback-comment").value.trim();
  if (comment) body.comment = comment;
  $("feedback-btn").disabled = true;
  try {
    const stored = await fetchJson("/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    status.textContent = `Thanks — feedback stored (#${stored.feedback_id})`;
  } catch (err) {
    status.textContent = `Feedback not stored: ${err.message}`;
  } finally {
    $("feedback-btn").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("predict-form").addEventListener("submit", predict);
  $("feedback-form").addEventListener("submit", sendFeedback);
  init();
});
