// gan_style tone studio: plain JavaScript, no libraries, nothing fetched from
// the internet. The sliders are the single source of truth for the profile;
// every change asks the server for a new preview of the cached translation.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  config: null,
  sliders: {},        // name -> <input type=range>
  // name -> the exact value a loaded or fitted profile set. A range input
  // rounds to its 0.01 step, so without this a profile of brightness 0.3074
  // would preview and download as 0.31. Moving the slider drops it.
  exact: {},
  description: "",    // a loaded profile's or preset's description, kept in its download until a slider moves
  imageId: null,
  inFlight: false,    // a preview request is running
  pending: false,     // the sliders changed while it ran
  previewUrl: null,   // object URL of the preview shown
};

// -- messages ----------------------------------------------------------------

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
}

function clearMessage() {
  const box = $("message");
  box.hidden = true;
  box.textContent = "";
  box.className = "";
}

async function errorText(response) {
  // The API answers errors as {"error": message}; anything else (a proxy,
  // a dropped connection) gets a generic text.
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (e) { /* not JSON */ }
  if (response.status === 413) return "upload too large";
  return `request failed: HTTP ${response.status}`;
}

async function api(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (e) {
    throw new Error(`cannot reach the studio server (${e.message}); is it still running?`);
  }
  if (!response.ok) throw new Error(await errorText(response));
  return response;
}

// -- profile ↔ sliders -------------------------------------------------------

function formatValue(value) {
  // Two decimals, more only when a loaded or fitted profile has them.
  const exact = Number(Number(value).toFixed(4));
  return exact === Number(exact.toFixed(2)) ? exact.toFixed(2) : String(exact);
}

function sliderValue(name) {
  return name in state.exact ? state.exact[name] : Number(state.sliders[name].value);
}

function profileValues() {
  const values = {};
  for (const name of Object.keys(state.sliders)) values[name] = String(sliderValue(name));
  return values;
}

function profileQuery() {
  const params = new URLSearchParams(profileValues());
  const name = $("profile-name").value.trim();
  if (name) params.set("name", name);
  if (state.description) params.set("description", state.description);
  return params.toString();
}

function setSliders(profile, { keepStrength = false } = {}) {
  for (const row of state.config.parameters) {
    if (keepStrength && row.name === "strength") continue;
    const value = row.name in profile ? Number(profile[row.name]) : row.neutral;
    state.sliders[row.name].value = value;
    if (Number(state.sliders[row.name].value) === value) delete state.exact[row.name];
    else state.exact[row.name] = value;  // off the slider's grid: keep it as given
  }
  state.description = typeof profile.description === "string" ? profile.description : "";
  syncSliderLabels();
}

function syncSliderLabels() {
  for (const row of state.config.parameters) {
    const value = sliderValue(row.name);
    $(`value-${row.name}`).value = formatValue(value);
    state.sliders[row.name].closest(".slider").classList.toggle("changed", value !== row.neutral);
  }
}

function updateLinks() {
  const query = profileQuery();
  $("download-profile").href = `/api/profile.json?${query}`;
  const link = $("download-image");
  if (state.imageId) {
    link.href = `/api/images/${state.imageId}/converted.png?${query}`;
    link.classList.remove("disabled");
    link.removeAttribute("aria-disabled");
  }
}

function buildSliders() {
  const container = $("sliders");
  container.textContent = "";
  for (const row of state.config.parameters) {
    if (row.name === "strength") {
      const group = document.createElement("div");
      group.className = "slider-group";
      group.textContent = "Style strength (0 = source only, 1 = full translation)";
      container.appendChild(group);
    }
    const wrap = document.createElement("div");
    wrap.className = "slider";
    const label = document.createElement("label");
    label.htmlFor = `slider-${row.name}`;
    label.textContent = row.label;
    const input = document.createElement("input");
    Object.assign(input, {
      type: "range", id: `slider-${row.name}`, name: row.name,
      min: row.min, max: row.max, step: row.step, value: row.neutral,
    });
    input.title = `${row.min} … ${row.max} (neutral ${row.neutral}); double-click to reset`;
    const output = document.createElement("output");
    output.id = `value-${row.name}`;
    output.htmlFor = input.id;
    // A hand-made change leaves the tone a loaded profile or preset described.
    input.addEventListener("input", () => {
      delete state.exact[row.name];
      if (row.name !== "strength") state.description = "";  // a description is of the tone
      $("preset").value = "";
      onToneChanged();
    });
    input.addEventListener("dblclick", () => {
      delete state.exact[row.name];
      if (row.name !== "strength") state.description = "";
      input.value = row.neutral;
      onToneChanged();
    });
    wrap.append(label, input, output);
    container.appendChild(wrap);
    state.sliders[row.name] = input;
  }
}

function onToneChanged() {
  syncSliderLabels();
  updateLinks();
  requestPreview();
}

// -- preview ------------------------------------------------------------------

function setPreviewState(value) {
  $("preview").dataset.state = value;
}

function requestPreview() {
  if (!state.imageId) return;
  setPreviewState("loading");
  if (state.inFlight) {
    // Coalesce: while one preview renders, remember only that the sliders
    // moved; the next request takes whatever they say then.
    state.pending = true;
    return;
  }
  renderPreview();
}

async function renderPreview() {
  state.inFlight = true;
  state.pending = false;
  const imageId = state.imageId;
  const query = profileQuery();
  const started = performance.now();
  try {
    const response = await api(`/api/images/${imageId}/preview.png?${query}`);
    const blob = await response.blob();
    if (imageId === state.imageId) {
      const url = URL.createObjectURL(blob);
      const img = $("preview");
      await new Promise((resolve, reject) => {
        img.onload = resolve;
        img.onerror = () => reject(new Error("the preview image could not be displayed"));
        img.src = url;
      });
      if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
      state.previewUrl = url;
      img.dataset.query = query;
      img.hidden = false;
      $("preview-empty").hidden = true;
      const server = response.headers.get("X-Render-Ms");
      const total = Math.round(performance.now() - started);
      $("status").textContent = `· updated in ${total} ms (tone ${server} ms)`;
      if ($("message").className === "error") clearMessage();
    }
  } catch (e) {
    showMessage(e.message);
  } finally {
    state.inFlight = false;
    if (state.pending) renderPreview();
    else setPreviewState($("preview").dataset.query ? "ready" : "empty");
  }
}

// -- images -----------------------------------------------------------------

function checkSize(file) {
  const limit = state.config.limits.max_upload_bytes;
  if (file.size > limit) {
    throw new Error(
      `${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; the studio takes files up to ` +
      `${(limit / 2 ** 20).toFixed(0)} MB`);
  }
}

async function loadImage(makeRequest, label) {
  clearMessage();
  showMessage(`Translating ${label}… (the model runs once per image)`, "info");
  setPreviewState("loading");
  try {
    const response = await makeRequest();
    const image = await response.json();
    state.imageId = image.id;
    const source = $("source");
    source.src = `/api/images/${image.id}/source.png`;
    source.hidden = false;
    $("source-empty").hidden = true;
    const notes = [`${image.name}: ${image.width}×${image.height}`,
                   `translated in ${image.generate_seconds.toFixed(1)} s`, ...image.notes];
    $("notes").textContent = notes.join(" · ");
    clearMessage();
    updateLinks();
    requestPreview();
  } catch (e) {
    setPreviewState($("preview").dataset.query ? "ready" : "empty");
    showMessage(e.message);
  }
}

function uploadImage(file) {
  try {
    checkSize(file);
  } catch (e) {
    showMessage(e.message);
    return;
  }
  const form = new FormData();
  form.append("image", file);
  loadImage(() => api("/api/images", { method: "POST", body: form }), file.name);
}

function pickImage(name) {
  loadImage(() => api("/api/images/pick", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name }),
  }), name);
}

// -- profiles, presets, references ------------------------------------------

async function loadProfile(file) {
  clearMessage();
  const form = new FormData();
  form.append("profile", file);
  try {
    const body = await (await api("/api/profile", { method: "POST", body: form })).json();
    setSliders(body.profile);
    if (body.profile.name) $("profile-name").value = body.profile.name;
    $("preset").value = "";
    showMessage(`Loaded profile ${file.name}`, "info");
    onToneChanged();
  } catch (e) {
    showMessage(e.message);
  }
}

async function fitReferences(files) {
  clearMessage();
  const form = new FormData();
  let total = 0;
  try {
    for (const file of files) {
      checkSize(file);
      total += file.size;
      form.append("references", file);
    }
    if (total > state.config.limits.max_upload_bytes) {
      throw new Error(`the reference images add up to ${(total / 2 ** 20).toFixed(1)} MB; ` +
        `send at most ${(state.config.limits.max_upload_bytes / 2 ** 20).toFixed(0)} MB at once`);
    }
  } catch (e) {
    showMessage(e.message);
    return;
  }
  if (state.imageId) form.append("image_id", state.imageId);
  form.append("strength", String(sliderValue("strength")));
  showMessage(`Matching ${files.length} reference image(s)…`, "info");
  try {
    const body = await (await api("/api/fit", { method: "POST", body: form })).json();
    setSliders(body.profile, { keepStrength: true });
    $("preset").value = "";
    showMessage(`Tone fitted to ${files.length} reference image(s).`, "info");
    onToneChanged();
  } catch (e) {
    showMessage(e.message);
  }
}

// -- start -----------------------------------------------------------------

function describeLimits(limits) {
  const mb = (limits.max_upload_bytes / 2 ** 20).toFixed(0);
  const mp = (limits.max_pixels / 1e6).toFixed(0);
  return `Up to ${mb} MB and ${mp} megapixels. Images larger than ${limits.preview_size} px ` +
    `are reduced for the studio; infer.py converts them in full.`;
}

async function start() {
  try {
    state.config = await (await api("/api/config")).json();
  } catch (e) {
    showMessage(e.message);
    return;
  }
  const config = state.config;
  $("model-name").textContent = config.model ? `model: ${config.model}` : "";
  $("limits").textContent = describeLimits(config.limits);
  buildSliders();

  const preset = $("preset");
  for (const name of Object.keys(config.presets)) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = config.presets[name].description
      ? `${name} — ${config.presets[name].description}` : name;
    preset.appendChild(option);
  }
  preset.addEventListener("change", () => {
    if (!preset.value) return;
    // A preset is a tone: it sets the six tonal sliders and keeps the strength.
    setSliders(config.presets[preset.value], { keepStrength: true });
    onToneChanged();
  });

  if (config.images.length) {
    const pick = $("image-pick");
    for (const name of config.images) {
      const option = document.createElement("option");
      option.value = option.textContent = name;
      pick.appendChild(option);
    }
    $("pick-row").hidden = false;
    pick.addEventListener("change", () => { if (pick.value) pickImage(pick.value); });
  }

  if (!config.fit_available) {
    $("fit-files").disabled = true;
    $("fit-label").title = "this version of gan_style has no fit_profile";
    $("fit-label").classList.add("disabled");
  }

  setSliders(config.model_profile);
  updateLinks();

  $("image-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) uploadImage(file);
    event.target.value = "";  // choosing the same file again fires again
  });
  $("profile-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) loadProfile(file);
    event.target.value = "";
  });
  $("fit-files").addEventListener("change", (event) => {
    const files = Array.from(event.target.files);
    if (files.length) fitReferences(files);
    event.target.value = "";
  });
  $("reset").addEventListener("click", () => {
    setSliders({}, { keepStrength: false });
    $("preset").value = "neutral";
    onToneChanged();
  });
  $("profile-name").addEventListener("input", updateLinks);

  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) uploadImage(file);
  });
  document.body.dataset.ready = "true";
}

start();
