// The before/after slider: the edited image laid over the input and clipped at the divider. The range
// input is the accessible control (keyboard, screen readers); dragging on the picture moves it too.

export class Compare {
  constructor({ frame, before, after, divider, range }) {
    Object.assign(this, { frame, before, after, divider, range });
    range.addEventListener("input", () => this.update());
    let dragging = false;
    const follow = (event) => {
      const rect = frame.getBoundingClientRect();
      range.value = String(Math.round(((event.clientX - rect.left) / rect.width) * 100));
      this.update();
    };
    frame.addEventListener("pointerdown", (event) => {
      dragging = true;
      frame.setPointerCapture(event.pointerId);
      follow(event);
    });
    frame.addEventListener("pointermove", (event) => dragging && follow(event));
    frame.addEventListener("pointerup", () => (dragging = false));
    frame.addEventListener("pointercancel", () => (dragging = false));
  }

  show(beforeUrl, afterUrl) {
    this.before.src = beforeUrl;
    this.after.src = afterUrl;
    this.update();
  }

  update() {
    const percent = Math.min(Math.max(Number(this.range.value), 0), 100);
    // Left of the divider: before; right of it: after.
    this.after.style.clipPath = `inset(0 0 0 ${percent}%)`;
    this.divider.style.left = `${percent}%`;
    this.range.setAttribute("aria-valuetext", `${percent}% before, ${100 - percent}% after`);
  }
}
