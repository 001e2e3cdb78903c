// The region list beside the image: one row per box with its colour, number, coordinates (original
// pixels), its local hint and a delete button. The BoxEditor owns the data; this list only shows it and
// sends edits back, so the overlay and the list can never disagree.

import { colorFor } from "./boxes.js";

export class RegionList {
  constructor({ list, count, empty, deleteButton, editor }) {
    Object.assign(this, { list, count, empty, deleteButton, editor });
    editor.addEventListener("change", (event) => this.onChange(event.detail.reason));
    editor.addEventListener("select", () => this.markSelected());
    deleteButton.addEventListener("click", () => this.editor.remove(this.editor.selected));
  }

  onChange(reason) {
    // Typing a hint must not rebuild the row under the caret; geometry changes only touch the text.
    if (reason === "hint") return this.updateLabels();
    if (reason === "move" || reason === "resize" || reason === "cancel") return this.updateLabels();
    this.rebuild();
  }

  rebuild() {
    const regions = this.editor.regions;
    this.list.replaceChildren(...regions.map((region, index) => this.row(region, index)));
    this.count.textContent = String(regions.length);
    this.empty.hidden = regions.length > 0;
    this.markSelected();
  }

  row(region, index) {
    const item = document.createElement("li");
    item.className = "region";
    item.dataset.index = String(index);

    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.backgroundColor = colorFor(index);
    swatch.setAttribute("aria-hidden", "true");

    const select = document.createElement("button");
    select.type = "button";
    select.className = "region-select link";
    select.textContent = `Region ${index + 1}`;
    select.setAttribute("aria-label", `Select region ${index + 1} on the image`);
    select.addEventListener("click", () => {
      this.editor.select(index);
      this.editor.focusBox(index);
    });

    const coords = document.createElement("span");
    coords.className = "coords";

    const hintId = `hint-${index}`;
    const label = document.createElement("label");
    label.htmlFor = hintId;
    label.className = "visually-hidden";
    label.textContent = `Hint for region ${index + 1}`;
    const hint = document.createElement("input");
    hint.id = hintId;
    hint.className = "hint";
    hint.type = "text";
    hint.maxLength = 500;
    hint.placeholder = "what this region should look like after the edit";
    hint.value = region.hint;
    hint.addEventListener("input", () => {
      this.editor.setHint(index, hint.value);
      hint.classList.toggle("missing", !hint.value.trim());
    });
    hint.addEventListener("focus", () => this.editor.select(index));

    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "region-delete";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", `Delete region ${index + 1}`);
    remove.addEventListener("click", () => this.editor.remove(index));

    const head = document.createElement("div");
    head.className = "region-head";
    head.append(swatch, select, coords, remove);
    item.append(head, label, hint);
    this.fillCoords(coords, region);
    return item;
  }

  fillCoords(element, region) {
    const [x1, y1, x2, y2] = region.bbox.map((v) => Math.round(v));
    element.textContent = `[${x1}, ${y1}, ${x2}, ${y2}] · ${x2 - x1}×${y2 - y1} px`;
  }

  updateLabels() {
    this.editor.regions.forEach((region, index) => {
      const coords = this.list.children[index]?.querySelector(".coords");
      if (coords) this.fillCoords(coords, region);
    });
  }

  markSelected() {
    const selected = this.editor.selected;
    [...this.list.children].forEach((item, index) => item.classList.toggle("selected", index === selected));
    this.deleteButton.disabled = selected < 0;
  }

  /** Mark rows whose hint is blank; returns the 1-based numbers of those regions. */
  flagMissingHints() {
    const missing = [];
    this.editor.regions.forEach((region, index) => {
      const blank = !region.hint.trim();
      this.list.children[index]?.querySelector(".hint")?.classList.toggle("missing", blank);
      if (blank) missing.push(index + 1);
    });
    return missing;
  }

  focusHint(index) {
    this.list.children[index]?.querySelector(".hint")?.focus();
  }
}
