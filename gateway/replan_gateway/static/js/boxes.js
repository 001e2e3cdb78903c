// The box editor: region boxes drawn on an SVG overlay over the image.
//
// Boxes live in original-image pixels ([x1, y1, x2, y2], what the API takes): the SVG's viewBox is the
// image's natural size, so the drawing needs no conversion and only pointer positions are mapped from
// screen to image space. Handles and strokes keep a constant size on screen whatever the zoom.
//
// Mouse: drag on empty space draws a box, drag a box moves it, drag a handle resizes it.
// Keyboard: each box is a tab stop; arrows move the focused box (Shift: 10 px), Alt+arrows move its right
// and bottom edges, Delete/Backspace removes it, Escape deselects.
//
// The editor owns the boxes and their hints; it dispatches "change" (boxes or hints changed) and
// "select" (selection changed) events.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Smallest box side, in image pixels (the API rejects empty boxes). */
export const MIN_BOX_PX = 4;
/** A pointer drag shorter than this (screen pixels) on empty space is a click, not a new box. */
const CLICK_SLOP_PX = 4;
const HANDLE_SCREEN_PX = 10;
const LABEL_SCREEN_PX = 16;
const HANDLES = ["nw", "n", "ne", "e", "se", "s", "sw", "w"];

/** One colour per region number, cycling; the region list uses the same ones. */
export const PALETTE = ["#e63946", "#2a9d8f", "#f4a261", "#457b9d", "#9b5de5", "#00b4d8", "#e9c46a", "#ef476f"];
export const colorFor = (index) => PALETTE[index % PALETTE.length];

const clamp = (value, low, high) => Math.min(Math.max(value, low), high);

/** `box` moved by (dx, dy), kept inside the image without changing its size. */
export function moveBox([x1, y1, x2, y2], dx, dy, width, height) {
  const mx = clamp(dx, -x1, width - x2);
  const my = clamp(dy, -y1, height - y2);
  return [x1 + mx, y1 + my, x2 + mx, y2 + my];
}

/** `box` with the edges named by `handle` ("nw", "e", ...) moved by (dx, dy), never inverted or outside. */
export function resizeBox([x1, y1, x2, y2], handle, dx, dy, width, height) {
  if (handle.includes("w")) x1 = clamp(x1 + dx, 0, x2 - MIN_BOX_PX);
  if (handle.includes("e")) x2 = clamp(x2 + dx, x1 + MIN_BOX_PX, width);
  if (handle.includes("n")) y1 = clamp(y1 + dy, 0, y2 - MIN_BOX_PX);
  if (handle.includes("s")) y2 = clamp(y2 + dy, y1 + MIN_BOX_PX, height);
  return [x1, y1, x2, y2];
}

/** The box spanned by two corners, inside the image, at least MIN_BOX_PX on each side. */
export function boxFromCorners(ax, ay, bx, by, width, height) {
  let x1 = clamp(Math.min(ax, bx), 0, width - MIN_BOX_PX);
  let y1 = clamp(Math.min(ay, by), 0, height - MIN_BOX_PX);
  const x2 = clamp(Math.max(ax, bx, x1 + MIN_BOX_PX), 0, width);
  const y2 = clamp(Math.max(ay, by, y1 + MIN_BOX_PX), 0, height);
  x1 = Math.min(x1, x2 - MIN_BOX_PX);
  y1 = Math.min(y1, y2 - MIN_BOX_PX);
  return [x1, y1, x2, y2];
}

const roundBox = (box) => box.map(Math.round);

function svg(tag, attributes = {}) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  return element;
}

export class BoxEditor extends EventTarget {
  /** @param {SVGSVGElement} overlay the SVG laid exactly over the image */
  constructor(overlay) {
    super();
    this.overlay = overlay;
    this.width = 0;
    this.height = 0;
    this.regions = []; // [{bbox: [x1, y1, x2, y2], hint}]
    this.selected = -1;
    this.drag = null;
    this.boxLayer = svg("g", { class: "boxes" });
    this.handleLayer = svg("g", { class: "handles" });
    this.draft = svg("rect", { class: "draft", "vector-effect": "non-scaling-stroke", visibility: "hidden" });
    overlay.append(this.boxLayer, this.draft, this.handleLayer);
    overlay.setAttribute("preserveAspectRatio", "none");
    overlay.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    overlay.addEventListener("pointermove", (e) => this.onPointerMove(e));
    overlay.addEventListener("pointerup", (e) => this.onPointerUp(e));
    overlay.addEventListener("pointercancel", (e) => this.onPointerUp(e, { cancelled: true }));
    overlay.addEventListener("keydown", (e) => this.onKeyDown(e));
    overlay.addEventListener("focusin", (e) => {
      const index = this.indexOf(e.target);
      if (index >= 0 && index !== this.selected) this.select(index);
    });
    // Handle and label sizes depend on the on-screen scale.
    new ResizeObserver(() => this.render()).observe(overlay);
  }

  /** A new image: its natural size becomes the coordinate space; boxes are cleared. */
  setImage(width, height) {
    this.width = width;
    this.height = height;
    this.overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.setRegions([]);
  }

  /** Replace every box, e.g. with an AI plan's regions (kept exactly as given, in image pixels). */
  setRegions(regions) {
    this.regions = regions.map((r) => ({ bbox: [...r.bbox], hint: r.hint ?? "" }));
    this.selected = -1;
    this.changed("set");
    this.dispatchEvent(new CustomEvent("select", { detail: { index: -1 } }));
  }

  /** Add a box (default: a third of the image, centred); selects it and returns its index. */
  add(bbox = null, hint = "") {
    const w = Math.max(MIN_BOX_PX, Math.round(this.width / 3));
    const h = Math.max(MIN_BOX_PX, Math.round(this.height / 3));
    const box = bbox ?? [Math.round((this.width - w) / 2), Math.round((this.height - h) / 2), 0, 0];
    if (!bbox) {
      // Offset each new default box a little so that several added in a row do not hide each other.
      const shift = (this.regions.length * 12) % Math.max(1, Math.min(this.width - w, this.height - h));
      box[0] += shift;
      box[1] += shift;
      box[2] = box[0] + w;
      box[3] = box[1] + h;
    }
    this.regions.push({ bbox: box, hint });
    this.changed("add");
    this.select(this.regions.length - 1);
    return this.regions.length - 1;
  }

  /** Remove box `index`; the next box (or the previous) becomes selected. */
  remove(index) {
    if (index < 0 || index >= this.regions.length) return;
    const refocus = this.overlay.contains(document.activeElement);
    this.regions.splice(index, 1);
    this.dispatchEvent(new CustomEvent("remove", { detail: { index } }));
    this.selected = -1;
    this.changed("remove");
    const next = Math.min(index, this.regions.length - 1);
    this.select(next);
    if (refocus) (next >= 0 ? this.boxLayer.children[next] : this.overlay).focus({ preventScroll: true });
  }

  setHint(index, hint) {
    if (!this.regions[index]) return;
    this.regions[index].hint = hint;
    this.changed("hint"); // the box's accessible name carries its hint
  }

  select(index) {
    if (index === this.selected) return;
    this.selected = index;
    this.render();
    this.dispatchEvent(new CustomEvent("select", { detail: { index } }));
  }

  focusBox(index) {
    this.boxLayer.children[index]?.focus({ preventScroll: true });
  }

  changed(reason) {
    this.render();
    this.dispatchEvent(new CustomEvent("change", { detail: { reason } }));
  }

  // ------------------------------------------------------------------------------------------ drawing

  /** Image pixels per screen pixel (for constant-size handles, labels and click slop). */
  imagePerScreen() {
    const rect = this.overlay.getBoundingClientRect();
    return rect.width > 0 ? this.width / rect.width : 1;
  }

  render() {
    const k = this.imagePerScreen();
    // Update <g> elements in place rather than rebuilding them, so the focused box keeps focus while it moves.
    while (this.boxLayer.children.length > this.regions.length) this.boxLayer.lastChild.remove();
    while (this.boxLayer.children.length < this.regions.length) this.boxLayer.append(this.newBoxElement());
    this.regions.forEach((region, index) => this.drawBox(this.boxLayer.children[index], region, index, k));
    this.drawHandles(k);
  }

  newBoxElement() {
    const group = svg("g", { class: "box", tabindex: 0, role: "button" });
    group.append(
      svg("rect", { class: "box-body", "data-part": "body", "vector-effect": "non-scaling-stroke" }),
      svg("rect", { class: "box-tag", "data-part": "body" }),
      svg("text", { class: "box-tag-text", "data-part": "body" }),
    );
    return group;
  }

  drawBox(group, region, index, k) {
    const [x1, y1, x2, y2] = region.bbox;
    const color = colorFor(index);
    const selected = index === this.selected;
    group.dataset.index = String(index);
    group.classList.toggle("selected", selected);
    group.setAttribute("aria-pressed", String(selected));
    const hint = region.hint.trim() ? `hint “${region.hint.trim()}”` : "no hint yet";
    group.setAttribute(
      "aria-label",
      `Region ${index + 1}, ${hint}: x ${Math.round(x1)} to ${Math.round(x2)}, y ${Math.round(y1)} to ${Math.round(y2)}`,
    );
    const [body, tag, text] = group.children;
    setAttributes(body, { x: x1, y: y1, width: x2 - x1, height: y2 - y1, stroke: color, fill: color });
    const size = LABEL_SCREEN_PX * k;
    setAttributes(tag, { x: x1, y: y1, width: size, height: size, fill: color });
    setAttributes(text, { x: x1 + size / 2, y: y1 + size * 0.78, "font-size": size * 0.75 });
    text.textContent = String(index + 1);
  }

  drawHandles(k) {
    this.handleLayer.replaceChildren();
    const region = this.regions[this.selected];
    if (!region) return;
    const [x1, y1, x2, y2] = region.bbox;
    const size = HANDLE_SCREEN_PX * k;
    const xs = { w: x1, e: x2, mid: (x1 + x2) / 2 };
    const ys = { n: y1, s: y2, mid: (y1 + y2) / 2 };
    for (const handle of HANDLES) {
      const x = handle.includes("w") ? xs.w : handle.includes("e") ? xs.e : xs.mid;
      const y = handle.includes("n") ? ys.n : handle.includes("s") ? ys.s : ys.mid;
      this.handleLayer.append(
        svg("rect", {
          class: `handle handle-${handle}`,
          "data-handle": handle,
          x: x - size / 2,
          y: y - size / 2,
          width: size,
          height: size,
          stroke: colorFor(this.selected),
          "vector-effect": "non-scaling-stroke",
        }),
      );
    }
  }

  // ----------------------------------------------------------------------------------------- pointer

  /** Pointer position in image pixels. */
  toImage(event) {
    const rect = this.overlay.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) * this.width) / rect.width,
      ((event.clientY - rect.top) * this.height) / rect.height,
    ];
  }

  indexOf(target) {
    const group = target?.closest?.("g.box");
    return group ? Number(group.dataset.index) : -1;
  }

  onPointerDown(event) {
    if (event.button !== 0 || !this.width) return;
    event.preventDefault(); // no text selection or image drag while drawing
    const [x, y] = this.toImage(event);
    const handle = event.target.dataset?.handle;
    const index = handle ? this.selected : this.indexOf(event.target);
    if (handle) {
      this.drag = { mode: "resize", handle, index, start: [x, y], original: [...this.regions[index].bbox] };
    } else if (index >= 0) {
      this.select(index);
      this.focusBox(index);
      this.drag = { mode: "move", index, start: [x, y], original: [...this.regions[index].bbox] };
    } else {
      this.drag = { mode: "create", start: [x, y], startScreen: [event.clientX, event.clientY] };
    }
    this.overlay.setPointerCapture(event.pointerId);
  }

  onPointerMove(event) {
    const drag = this.drag;
    if (!drag) return;
    const [x, y] = this.toImage(event);
    const dx = Math.round(x - drag.start[0]);
    const dy = Math.round(y - drag.start[1]);
    if (drag.mode === "create") {
      const box = boxFromCorners(drag.start[0], drag.start[1], x, y, this.width, this.height);
      setAttributes(this.draft, { x: box[0], y: box[1], width: box[2] - box[0], height: box[3] - box[1] });
      this.draft.setAttribute("visibility", "visible");
      return;
    }
    const region = this.regions[drag.index];
    region.bbox =
      drag.mode === "move"
        ? moveBox(drag.original, dx, dy, this.width, this.height)
        : resizeBox(drag.original, drag.handle, dx, dy, this.width, this.height);
    drag.changed = true;
    this.changed(drag.mode);
  }

  onPointerUp(event, { cancelled = false } = {}) {
    const drag = this.drag;
    this.drag = null;
    if (!drag) return;
    if (this.overlay.hasPointerCapture(event.pointerId)) this.overlay.releasePointerCapture(event.pointerId);
    this.draft.setAttribute("visibility", "hidden");
    if (cancelled) {
      if (drag.original) {
        this.regions[drag.index].bbox = drag.original;
        this.changed("cancel");
      }
      return;
    }
    if (drag.mode !== "create") {
      // Edited boxes snap to whole pixels, as the original demo sends them.
      if (drag.changed) this.regions[drag.index].bbox = roundBox(this.regions[drag.index].bbox);
      if (drag.changed) this.changed(drag.mode);
      return;
    }
    const moved = Math.hypot(event.clientX - drag.startScreen[0], event.clientY - drag.startScreen[1]);
    if (moved < CLICK_SLOP_PX) {
      this.select(-1); // a click on empty space deselects
      return;
    }
    const [x, y] = this.toImage(event);
    const box = boxFromCorners(drag.start[0], drag.start[1], x, y, this.width, this.height);
    const index = this.add(roundBox(box));
    this.focusBox(index);
  }

  // ---------------------------------------------------------------------------------------- keyboard

  onKeyDown(event) {
    const index = this.selected;
    if (event.key === "Escape") {
      this.select(-1);
      this.overlay.focus({ preventScroll: true });
      return;
    }
    if (index < 0 || this.indexOf(event.target) !== index) return;
    if (event.key === "Delete" || event.key === "Backspace") {
      event.preventDefault();
      this.remove(index);
      return;
    }
    const step = event.shiftKey ? 10 : 1;
    const deltas = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    const delta = deltas[event.key];
    if (!delta) return;
    event.preventDefault(); // arrows would scroll the page
    const region = this.regions[index];
    region.bbox = event.altKey
      ? resizeBox(region.bbox, "se", delta[0], delta[1], this.width, this.height)
      : moveBox(region.bbox, delta[0], delta[1], this.width, this.height);
    this.changed(event.altKey ? "resize" : "move");
  }
}

function setAttributes(element, attributes) {
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
}
