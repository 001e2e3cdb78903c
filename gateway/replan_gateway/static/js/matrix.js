// The Q→K attention-rule matrix of the advanced panel, with the original demo's labels.
//
// Groups, in the demo's order: Main, ImgP (Qwen only), then per region Hi, N.Bi, I.Bi, then N.BG, I.BG.
// "Reset Default" restores the demo's locality rule: the paper's default rules with noise background ↛
// noise boxes (facts §2; the editor's `attention.rules.locality_rules` is the same function, and the
// browser tests compare the two cell by cell). A cell says whether queries of its row's group may attend
// keys of its column's group. The page keeps only the cells the user changed; when there are any, the
// whole matrix is sent as `settings.custom_rules` ({"Query|Key": bool}), otherwise nothing (the server's
// default custom rules are the same locality rule).

/** The groups of a layout with `regions` boxes, in matrix order: [{kind, region, label}]. */
export function groupsFor(regions, hasImagePrompt) {
  const groups = [{ kind: "main", region: null, label: "Main" }];
  if (hasImagePrompt) groups.push({ kind: "image_prompt", region: null, label: "ImgP" });
  for (let i = 1; i <= regions; i++) {
    groups.push(
      { kind: "hint", region: i, label: `H${i}` },
      { kind: "noise_box", region: i, label: `N.B${i}` },
      { kind: "image_box", region: i, label: `I.B${i}` },
    );
  }
  groups.push({ kind: "noise_bg", region: null, label: "N.BG" }, { kind: "image_bg", region: null, label: "I.BG" });
  return groups;
}

const LATENT = new Set(["noise_box", "image_box", "noise_bg", "image_bg"]);
const isBox = (g) => g.kind === "noise_box" || g.kind === "image_box";

/** The locality rule, cell by cell: may query group `q` attend key group `k`? */
export function localityAllows(q, k) {
  if (q.label === k.label) return true; // every group attends to itself
  if (q.kind === "image_prompt" || k.kind === "image_prompt") return true; // ImgP sees and is seen by all
  if (q.kind === "main") return LATENT.has(k.kind); // Main: every image group, no hint
  if (q.kind === "hint") return LATENT.has(k.kind); // a hint: every image group, not Main, no other hint
  // q is an image group (a box or the background, noise or image copy)
  if (k.kind === "main") return true;
  if (k.kind === "hint") return isBox(q) && q.region === k.region; // box i sees hint i; background none
  if (q.kind === "noise_bg" && k.kind === "noise_box") return false; // the locality change
  return true;
}

const cellKey = (q, k) => `${q}|${k}`;

/** Label `label` after region `removed` (1-based) is deleted: renumbered, or null if it was that region's. */
function shiftLabel(label, removed) {
  const match = /^(H|N\.B|I\.B)(\d+)$/.exec(label);
  if (!match) return label;
  const index = Number(match[2]);
  if (index === removed) return null;
  return index > removed ? `${match[1]}${index - 1}` : label;
}

export class RuleMatrix extends EventTarget {
  /** @param {HTMLElement} container where the table is drawn */
  constructor(container) {
    super();
    this.container = container;
    this.regions = 0;
    this.hasImagePrompt = false;
    this.overrides = new Map(); // "Q|K" -> bool, only the cells that differ from the locality rule
    this.focus = [0, 0]; // the roving tab stop, [row, column]
  }

  get groups() {
    return groupsFor(this.regions, this.hasImagePrompt);
  }

  setLayout(regions, hasImagePrompt) {
    this.regions = regions;
    this.hasImagePrompt = hasImagePrompt;
    this.prune();
    this.render();
  }

  /** Region `index` (0-based) was deleted: its cells go, later regions' cells move up one. */
  removeRegion(index) {
    const removed = index + 1;
    const shifted = new Map();
    for (const [key, value] of this.overrides) {
      const [q, k] = key.split("|").map((label) => shiftLabel(label, removed));
      if (q && k) shifted.set(cellKey(q, k), value);
    }
    this.overrides = shifted;
  }

  allowed(q, k) {
    const key = cellKey(q.label, k.label);
    return this.overrides.has(key) ? this.overrides.get(key) : localityAllows(q, k);
  }

  toggle(row, column) {
    const groups = this.groups;
    const q = groups[row];
    const k = groups[column];
    const value = !this.allowed(q, k);
    const key = cellKey(q.label, k.label);
    if (value === localityAllows(q, k)) this.overrides.delete(key);
    else this.overrides.set(key, value);
    this.focus = [row, column];
    this.render();
    this.dispatchEvent(new CustomEvent("change", { detail: { query: q.label, key: k.label, allowed: value } }));
  }

  reset() {
    this.overrides.clear();
    this.render();
    this.dispatchEvent(new CustomEvent("change", { detail: { reset: true } }));
  }

  get changedCount() {
    return this.overrides.size;
  }

  /** `settings.custom_rules`: every cell of the current layout when any was changed, else null. */
  toCustomRules() {
    if (this.overrides.size === 0) return null;
    const rules = {};
    for (const q of this.groups) for (const k of this.groups) rules[cellKey(q.label, k.label)] = this.allowed(q, k);
    return rules;
  }

  /** Drop overrides naming groups that this layout does not have (e.g. ImgP after switching to Flux). */
  prune() {
    const labels = new Set(this.groups.map((g) => g.label));
    for (const key of [...this.overrides.keys()]) {
      const [q, k] = key.split("|");
      if (!labels.has(q) || !labels.has(k)) this.overrides.delete(key);
    }
  }

  render() {
    const groups = this.groups;
    const size = groups.length;
    this.focus = this.focus.map((i) => Math.min(i, size - 1));
    const restoreFocus = this.container.contains(document.activeElement);

    const table = document.createElement("table");
    table.className = "matrix";
    table.setAttribute("role", "grid");
    table.setAttribute("aria-labelledby", "matrix-heading");
    const head = table.createTHead().insertRow();
    const corner = document.createElement("th");
    corner.className = "corner";
    corner.textContent = "Q \\ K";
    head.append(corner);
    for (const k of groups) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = k.label;
      head.append(th);
    }
    const body = table.createTBody();
    groups.forEach((q, row) => {
      const tr = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = q.label;
      tr.append(th);
      groups.forEach((k, column) => {
        const allowed = this.allowed(q, k);
        const changed = this.overrides.has(cellKey(q.label, k.label));
        const td = tr.insertCell();
        const button = document.createElement("button");
        button.type = "button";
        button.className = `cell ${allowed ? "allow" : "deny"}${changed ? " changed" : ""}`;
        button.textContent = allowed ? "✓" : "✗";
        button.dataset.row = String(row);
        button.dataset.column = String(column);
        button.dataset.cell = cellKey(q.label, k.label);
        button.setAttribute("aria-pressed", String(allowed));
        button.setAttribute(
          "aria-label",
          `${q.label} attends to ${k.label}: ${allowed ? "allowed" : "blocked"}${changed ? " (changed)" : ""}`,
        );
        button.tabIndex = row === this.focus[0] && column === this.focus[1] ? 0 : -1;
        td.append(button);
      });
    });
    table.addEventListener("click", (event) => {
      const cell = event.target.closest("button.cell");
      if (cell) this.toggle(Number(cell.dataset.row), Number(cell.dataset.column));
    });
    table.addEventListener("keydown", (event) => this.onKeyDown(event, size));
    this.container.replaceChildren(table);
    if (restoreFocus) this.cellButton(...this.focus)?.focus();
  }

  cellButton(row, column) {
    return this.container.querySelector(`button[data-row="${row}"][data-column="${column}"]`);
  }

  /** Arrow keys, Home and End move the single tab stop around the grid (the ARIA grid pattern). */
  onKeyDown(event, size) {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    let [row, column] = this.focus;
    if (moves[event.key]) {
      row = Math.min(Math.max(row + moves[event.key][0], 0), size - 1);
      column = Math.min(Math.max(column + moves[event.key][1], 0), size - 1);
    } else if (event.key === "Home") column = 0;
    else if (event.key === "End") column = size - 1;
    else return;
    event.preventDefault();
    this.cellButton(...this.focus).tabIndex = -1;
    this.focus = [row, column];
    const next = this.cellButton(row, column);
    next.tabIndex = 0;
    next.focus();
  }
}
