// The advanced panel's edit settings (backbone, steps, rule switch ratio, expand value, seed) and planner
// options, read into the API's `EditSettings` and `PlanOptions` shapes.
//
// Defaults are the original demo's advanced panel (facts §6): Flux 28 steps, ratio 0.0, expand 0.15; Qwen
// 50 steps, ratio 0.5, expand 0.05. Steps are the one exception: when an editor serving the backbone
// reports its own default (GET /v1/info → editors[].defaults.steps), that wins, because a preset such as
// `tiny` (4 steps on CPU) changes it and the demo's 28 would only make the page slow there.

export const DEMO_DEFAULTS = {
  "flux-kontext": { steps: 28, rule_switch_ratio: 0.0, expand_value: 0.15 },
  "qwen-image-edit": { steps: 50, rule_switch_ratio: 0.5, expand_value: 0.05 },
};

const BACKBONE_NAMES = { "flux-kontext": "FLUX.1 Kontext", "qwen-image-edit": "Qwen-Image-Edit" };

/** Thrown for a field the user must fix; the page shows the message and moves the focus to `input`. */
export class SettingsError extends Error {
  constructor(message, input) {
    super(message);
    this.input = input;
  }
}

export class SettingsForm extends EventTarget {
  constructor(elements) {
    super();
    this.el = elements; // {backbone, steps, ratio, expand, seed, seedRandom, reset, planTemperature, planSeed}
    this.info = null;
    this.el.backbone.addEventListener("change", () => {
      this.applyDefaults();
      this.dispatchEvent(new CustomEvent("backbone", { detail: { backbone: this.backbone } }));
    });
    this.el.reset.addEventListener("click", () => {
      this.applyDefaults();
      this.el.seed.value = "0";
    });
    this.el.seedRandom.addEventListener("click", () => {
      this.el.seed.value = String(Math.floor(Math.random() * 2 ** 31));
    });
  }

  /** Fill the backbone list from GET /v1/info (only backbones an editor serves) and apply its defaults. */
  setInfo(info) {
    const hadEditor = Boolean(this.info?.backbones?.length);
    this.info = info;
    const backbones = info.backbones?.length ? info.backbones : Object.keys(DEMO_DEFAULTS);
    const offered = [...this.el.backbone.options].map((o) => o.value);
    // Leave the form alone when nothing changed (info is read again while no editor has answered), so a
    // refresh never undoes what the user set; an editor answering for the first time brings its defaults.
    if (offered.join() === backbones.join() && hadEditor === Boolean(info.backbones?.length)) return;
    const previous = this.el.backbone.value;
    this.el.backbone.replaceChildren(
      ...backbones.map((b) => new Option(BACKBONE_NAMES[b] ? `${BACKBONE_NAMES[b]} (${b})` : b, b)),
    );
    if (backbones.includes(previous)) this.el.backbone.value = previous;
    this.applyDefaults();
    if (this.el.seed.value === "") this.el.seed.value = "0";
    this.dispatchEvent(new CustomEvent("backbone", { detail: { backbone: this.backbone } }));
  }

  get backbone() {
    return this.el.backbone.value || "flux-kontext";
  }

  /** Whether the matrix has an ImgP group (Qwen's image prompt). */
  get hasImagePrompt() {
    return this.backbone === "qwen-image-edit";
  }

  defaultsFor(backbone) {
    const demo = DEMO_DEFAULTS[backbone] ?? DEMO_DEFAULTS["flux-kontext"];
    const editor = (this.info?.editors ?? []).find((e) => e.backbone === backbone && e.defaults);
    return { ...demo, steps: editor?.defaults?.steps ?? demo.steps };
  }

  applyDefaults() {
    const d = this.defaultsFor(this.backbone);
    this.el.steps.value = String(d.steps);
    this.el.ratio.value = String(d.rule_switch_ratio);
    this.el.expand.value = String(d.expand_value);
  }

  /** `EditSettings` (without custom_rules, which the matrix adds); throws SettingsError naming the field. */
  editSettings() {
    return {
      backbone: this.backbone,
      steps: readNumber(this.el.steps, "Total steps", { integer: true }),
      seed: readNumber(this.el.seed, "Seed", { integer: true }),
      expand_value: readNumber(this.el.expand, "Expand value"),
      rule_switch_ratio: readNumber(this.el.ratio, "Rule switch ratio"),
    };
  }

  /** `PlanOptions`: only what the user set (empty fields mean the planner's defaults). */
  planOptions() {
    const options = {};
    if (this.el.planTemperature.value !== "") {
      options.temperature = readNumber(this.el.planTemperature, "Planner temperature");
    }
    if (this.el.planSeed.value !== "") options.seed = readNumber(this.el.planSeed, "Planner seed", { integer: true });
    return options;
  }
}

function readNumber(input, name, { integer = false } = {}) {
  const value = Number(input.value);
  // Range and type only: a spinner's step (0.05) is a convenience, not a constraint, so 0.33 is fine.
  const { badInput, rangeUnderflow, rangeOverflow } = input.validity;
  const invalid = badInput || rangeUnderflow || rangeOverflow || (integer && !Number.isInteger(value));
  if (input.value.trim() === "" || !Number.isFinite(value) || invalid) {
    const bounds = [input.min && `at least ${input.min}`, input.max && `at most ${input.max}`].filter(Boolean);
    const kind = integer ? "a whole number" : "a number";
    throw new SettingsError(
      `${name} must be ${kind}${bounds.length ? ` ${bounds.join(" and ")}` : ""} (got “${input.value}”).`,
      input,
    );
  }
  return value;
}
