// The page: wires the image, the plan, the box editor, the rule matrix and the settings to the API.
//
// Flow: GET /v1/info (backbones, defaults, limits, whether a key is needed) → pick an image → "AI Plan"
// (POST /v1/plan) fills the global prompt and the boxes, or the user draws boxes by hand → "Run editing"
// (POST /v1/jobs, kind "edit", with the plan as it stands on the page) → progress from the job's SSE
// events → GET /v1/jobs/{id} for the result (jobs.js). No boxes means a plain backbone edit.

import { ApiError, createApi, errorSentence } from "./api.js";
import { BoxEditor } from "./boxes.js";
import { Compare } from "./compare.js";
import { pngDataUrl, saveJson } from "./downloads.js";
import { EXAMPLES } from "./examples.js";
import { formatBytes, readExample, readImage } from "./images.js";
import { startJob } from "./jobs.js";
import { RuleMatrix } from "./matrix.js";
import { RegionList } from "./regions.js";
import { SettingsError, SettingsForm } from "./settings.js";

const $ = (id) => document.getElementById(id);
const INFO_RETRY_MS = 5000;

const state = {
  apiKey: null,
  info: null,
  infoTimer: null,
  image: null, // {dataUrl, width, height, name, bytes}
  reasoning: "", // the planner's reasoning, kept with the plan
  job: null, // the running job: {job, finished, cancel} (jobs.js)
  result: null, // the last finished job's result (JobResult)
};

const api = createApi({ getKey: () => state.apiKey });
const editor = new BoxEditor($("overlay"));
const matrix = new RuleMatrix($("matrix"));
const regions = new RegionList({
  list: $("region-list"),
  count: $("region-count"),
  empty: $("no-regions"),
  deleteButton: $("delete-box"),
  editor,
});
const settings = new SettingsForm({
  backbone: $("backbone"),
  steps: $("steps"),
  ratio: $("switch-ratio"),
  expand: $("expand"),
  seed: $("seed"),
  seedRandom: $("seed-random"),
  reset: $("settings-reset"),
  planTemperature: $("plan-temperature"),
  planSeed: $("plan-seed"),
});
const compare = new Compare({
  frame: $("compare"),
  before: $("compare-before"),
  after: $("compare-after"),
  divider: $("compare-divider"),
  range: $("compare-range"),
});

// ------------------------------------------------------------------------------------------ messages

function say(id, text) {
  $(id).textContent = text;
}

function showError(id, error) {
  $(id).textContent = error ? errorSentence(error) : "";
}

/** Put the focus on a field to fix, opening the advanced panel if it is in there. */
function focusField(input) {
  if (!input) return;
  const panel = input.closest("details");
  if (panel) panel.open = true;
  input.focus();
}

// -------------------------------------------------------------------------------------- gateway info

async function loadInfo() {
  try {
    state.info = await api.info();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      $("auth-form").hidden = false;
      say("stack-status", "API key needed");
      showError("auth-error", state.apiKey ? error : null);
      return;
    }
    say("stack-status", `Could not read the gateway info. ${errorSentence(error)} Trying again…`);
    clearTimeout(state.infoTimer);
    state.infoTimer = setTimeout(loadInfo, INFO_RETRY_MS);
    return;
  }
  $("auth-form").hidden = true;
  const info = state.info;
  settings.setInfo(info);
  const ready = (info.pools?.editor ?? []).filter((w) => w.health === "ready").length;
  const serves = info.backbones.length ? info.backbones.join(", ") : "no editor has answered yet";
  say("stack-status", `Gateway ${info.version}: ${serves}; ${ready} editor${ready === 1 ? "" : "s"} ready`);
  $("tiny-warning").hidden = !(info.editors ?? []).some((e) => e.preset === "tiny");
  // While no editor has answered (the stack is still loading models), look again now and then.
  clearTimeout(state.infoTimer);
  if (!info.backbones.length) state.infoTimer = setTimeout(loadInfo, INFO_RETRY_MS);
}

$("auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.apiKey = $("api-key").value.trim() || null;
  loadInfo();
});

// --------------------------------------------------------------------------------------------- image

function renderExamples() {
  const buttons = EXAMPLES.map((example) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "example";
    button.title = example.instruction;
    const thumb = document.createElement("img");
    thumb.src = example.file;
    thumb.alt = "";
    const caption = document.createElement("span");
    caption.textContent = example.title;
    button.append(thumb, caption);
    button.setAttribute("aria-label", `Example: ${example.title} (${example.instruction})`);
    button.addEventListener("click", () => useImage(() => readExample(example.file, limits()), example));
    return button;
  });
  $("examples").replaceChildren(...buttons);
}

const limits = () => ({ maxBytes: state.info?.limits?.max_image_bytes ?? null });

async function useImage(read, example = null) {
  showError("image-error", null);
  let image;
  try {
    image = await read();
  } catch (error) {
    showError("image-error", error);
    return;
  }
  const maxPixels = state.info?.limits?.max_image_pixels;
  if (maxPixels && image.width * image.height > maxPixels) {
    showError("image-error", new Error(`${image.name} has ${image.width}×${image.height} pixels; this gateway takes at most ${maxPixels}`));
    return;
  }
  state.image = image;
  $("source-image").src = image.dataUrl;
  $("stage-frame").hidden = false;
  $("stage-placeholder").hidden = true;
  $("stage").classList.remove("empty");
  fitImage();
  editor.setImage(image.width, image.height);
  say("image-size", `${image.name}: ${image.width}×${image.height} px, ${formatBytes(image.bytes)}. Boxes are in these pixels.`);
  // A new image invalidates the plan made for the previous one.
  $("global-prompt").value = "";
  setReasoning("");
  $("plan-notes").replaceChildren();
  say("plan-status", "");
  matrix.reset();
  const instruction = $("instruction");
  if (example && (!instruction.value.trim() || EXAMPLES.some((e) => e.instruction === instruction.value))) {
    instruction.value = example.instruction;
  }
}

/** Enlarge small images to at least MIN_DISPLAY_PX wide, shrink large ones to the stage and the window. */
const MIN_DISPLAY_PX = 560;
function displayWidth(container, width, height) {
  const style = getComputedStyle(container);
  const room = container.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const byHeight = (window.innerHeight * 0.68 * width) / height;
  return `${Math.max(1, Math.floor(Math.min(room, byHeight, Math.max(width, MIN_DISPLAY_PX))))}px`;
}

function fitImage() {
  if (state.image) {
    $("source-image").style.width = displayWidth($("stage"), state.image.width, state.image.height);
  }
  if (state.result) {
    $("compare-before").style.width = displayWidth($("result-panel"), state.result.width, state.result.height);
  }
}
new ResizeObserver(fitImage).observe($("stage"));
new ResizeObserver(fitImage).observe($("result-panel"));
window.addEventListener("resize", fitImage);

$("file-input").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) useImage(() => readImage(file, file.name, limits()));
  event.target.value = ""; // choosing the same file again still loads it
});

// Dropping a file anywhere on the stage loads it.
$("stage").addEventListener("dragover", (event) => {
  event.preventDefault();
  $("stage").classList.add("dropping");
});
$("stage").addEventListener("dragleave", () => $("stage").classList.remove("dropping"));
$("stage").addEventListener("drop", (event) => {
  event.preventDefault();
  $("stage").classList.remove("dropping");
  const file = event.dataTransfer.files[0];
  if (file) useImage(() => readImage(file, file.name, limits()));
});

// ---------------------------------------------------------------------------------------------- plan

function setReasoning(text) {
  state.reasoning = text;
  $("reasoning").textContent = text;
  $("reasoning-box").hidden = !text;
}

async function aiPlan() {
  showError("plan-error", null);
  const instruction = $("instruction").value.trim();
  if (!state.image) return showError("plan-error", new Error("pick an image first"));
  if (!instruction) return showError("plan-error", new Error("write an instruction first"));
  let options;
  try {
    options = settings.planOptions();
  } catch (error) {
    focusField(error.input);
    return showError("plan-error", error);
  }
  const button = $("plan-button");
  button.disabled = true;
  say("plan-status", "Planning…");
  try {
    const body = { image: state.image.dataUrl, instruction };
    if (Object.keys(options).length) body.options = options;
    const response = await api.plan(body);
    $("global-prompt").value = response.plan.global_prompt;
    setReasoning(response.plan.reasoning);
    editor.setRegions(response.plan.regions);
    matrix.reset();
    showPlanNotes(response.adjustments ?? []);
    const n = response.plan.regions.length;
    const ms = response.timings_ms?.total_ms;
    say("plan-status", `Plan ready: ${n} region${n === 1 ? "" : "s"}${ms ? ` in ${(ms / 1000).toFixed(1)} s` : ""}.`);
  } catch (error) {
    say("plan-status", "");
    showError("plan-error", error);
  } finally {
    button.disabled = false;
  }
}

/** What the planner service changed in the model's answer (clipped or dropped boxes), as sentences. */
function showPlanNotes(adjustments) {
  $("plan-notes").replaceChildren(
    ...adjustments.map((a) => {
      const item = document.createElement("li");
      item.textContent = `The planner's region ${a.index + 1} was ${a.action}: ${a.reason}.`;
      return item;
    }),
  );
}

$("plan-button").addEventListener("click", aiPlan);

// --------------------------------------------------------------------------------- boxes and matrix

$("add-box").addEventListener("click", () => {
  if (!state.image) return showError("image-error", new Error("pick an image first, then add boxes"));
  const index = editor.add();
  regions.focusHint(index);
});
editor.addEventListener("remove", (event) => matrix.removeRegion(event.detail.index));
editor.addEventListener("change", () => {
  if (matrix.regions !== editor.regions.length) matrix.setLayout(editor.regions.length, settings.hasImagePrompt);
});
settings.addEventListener("backbone", () => matrix.setLayout(editor.regions.length, settings.hasImagePrompt));
matrix.addEventListener("change", () => {
  const n = matrix.changedCount;
  say("matrix-status", n ? `${n} cell${n === 1 ? "" : "s"} changed from the default.` : "Default (locality) rules.");
});
$("matrix-reset").addEventListener("click", () => matrix.reset());

// ----------------------------------------------------------------------------------------------- run

/** The plan as it stands on the page (RegionPlan); null when there are no boxes and no global prompt. */
function currentPlan() {
  const globalPrompt = $("global-prompt").value.trim() || $("instruction").value.trim();
  if (!editor.regions.length && !$("global-prompt").value.trim()) return null;
  return {
    reasoning: state.reasoning,
    global_prompt: globalPrompt,
    regions: editor.regions.map((r) => ({ bbox: [...r.bbox], hint: r.hint.trim() })),
  };
}

/** The JobCreate body, or throws an Error that says what to fix. */
function jobBody() {
  if (!state.image) throw new Error("pick an image first");
  const instruction = $("instruction").value.trim();
  if (!instruction && !$("global-prompt").value.trim()) {
    throw new Error("write an instruction or a global prompt first");
  }
  const missing = regions.flagMissingHints();
  if (missing.length) {
    regions.focusHint(missing[0] - 1);
    const which = missing.length === 1 ? `region ${missing[0]} has` : `regions ${missing.join(", ")} have`;
    throw new Error(`${which} no hint; say what each region should look like after the edit`);
  }
  const editSettings = settings.editSettings();
  const customRules = editor.regions.length ? matrix.toCustomRules() : null;
  if (customRules) editSettings.custom_rules = customRules;
  const plan = currentPlan();
  // No boxes and no global prompt: the bare instruction, i.e. a plain backbone edit.
  return plan
    ? { kind: "edit", image: state.image.dataUrl, plan, settings: editSettings }
    : { kind: "edit", image: state.image.dataUrl, instruction, settings: editSettings };
}

function setProgress(percent, text) {
  $("progress").value = percent;
  say("progress-text", text);
}

function setRunning(running) {
  $("run-button").disabled = running;
  $("cancel-button").hidden = !running;
}

async function run() {
  showError("run-error", null);
  let body;
  try {
    body = jobBody();
  } catch (error) {
    if (error instanceof SettingsError) focusField(error.input);
    return showError("run-error", error);
  }
  setRunning(true);
  $("progress-area").hidden = false;
  setProgress(0, "Submitting…");
  try {
    state.job = await startJob(api, body, { onProgress: ({ percent, text }) => setProgress(percent, text) });
  } catch (error) {
    setRunning(false);
    $("progress-area").hidden = true;
    return showError("run-error", error);
  }
  setProgress(0, "Queued…");
  let job;
  try {
    job = await state.job.finished;
  } catch (error) {
    return showError("run-error", error); // the job's state could not be read
  } finally {
    state.job = null;
    setRunning(false);
  }
  const shown = $("progress").value;
  if (job.status === "done" && job.result) {
    setProgress(100, "Done (100%)");
    showResult(job.result, body);
  } else if (job.status === "error") {
    setProgress(shown, "Failed.");
    showError("run-error", ApiError.fromDetail(job.error));
  } else if (job.status === "cancelled") {
    setProgress(shown, "Cancelled.");
  } else {
    setProgress(shown, `Lost the progress stream; the job is ${job.status}.`);
  }
}

$("run-button").addEventListener("click", run);
$("cancel-button").addEventListener("click", async () => {
  try {
    await state.job?.cancel();
  } catch (error) {
    showError("run-error", error); // e.g. 409: it finished meanwhile; its final event still arrives
  }
});

// -------------------------------------------------------------------------------------------- result

function showResult(result, request) {
  state.result = { ...result, request };
  const after = pngDataUrl(result.image);
  compare.show(request.image, after);
  $("download-result").href = after;
  const n = result.plan.regions.length;
  const ms = result.timings_ms?.total_ms ?? result.timings_ms?.edit_ms;
  say(
    "result-info",
    `${result.width}×${result.height} px, ${result.settings.backbone}, ${result.settings.steps} steps, seed ` +
      `${result.settings.seed}, ${n ? `${n} region${n === 1 ? "" : "s"}` : "no regions (plain edit)"}` +
      `${ms ? `, ${(ms / 1000).toFixed(1)} s` : ""}.`,
  );
  $("result-panel").hidden = false;
  fitImage();
}

// The plan and settings as applied by the editor (resolved values, not what the form held).
$("download-plan").addEventListener("click", () => state.result && saveJson("replan-plan.json", state.result.plan));
$("download-settings").addEventListener(
  "click",
  () => state.result && saveJson("replan-settings.json", state.result.settings),
);

// ---------------------------------------------------------------------------------------------- start

renderExamples();
matrix.setLayout(0, false);
say("matrix-status", "Default (locality) rules.");
loadInfo();
