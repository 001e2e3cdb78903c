"""Draw the web page's bundled images: the examples (`static/examples/*.png`) and the favicon.

Flat-colour scenes drawn with PIL, so they are ours, tiny (PNG of flat shapes), and each has an obvious
object for a region edit. Run `python -m tests.browser.make_examples` after changing a drawing; the PNGs
are committed, the page's example list is `static/js/examples.js`. The favicon is a PNG rather than an SVG
because the distribution's package data takes `*.png` (and not `*.svg`).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

STATIC_DIR = Path(__file__).resolve().parents[2] / "gateway" / "replan_gateway" / "static"
EXAMPLES_DIR = STATIC_DIR / "examples"
SIZE = (384, 288)


def desk() -> Image.Image:
    """A desk with a used cup beside a laptop."""
    im = Image.new("RGB", SIZE, (222, 214, 196))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 190, 384, 288], fill=(140, 98, 62))  # desk top
    d.rectangle([0, 190, 384, 196], fill=(112, 76, 46))
    d.rectangle([40, 40, 150, 130], fill=(250, 250, 245), outline=(90, 90, 90), width=3)  # wall picture
    d.polygon([(50, 120), (85, 70), (115, 105), (140, 80), (140, 120)], fill=(96, 150, 110))
    d.rectangle([190, 110, 320, 190], fill=(60, 64, 72))  # laptop screen
    d.rectangle([198, 118, 312, 182], fill=(120, 170, 220))
    d.polygon([(175, 190), (335, 190), (350, 205), (160, 205)], fill=(90, 94, 102))  # keyboard base
    d.rectangle([82, 150, 122, 198], fill=(236, 236, 230), outline=(150, 150, 140), width=2)  # cup
    d.arc([112, 160, 136, 186], start=-90, end=90, fill=(150, 150, 140), width=4)
    d.ellipse([84, 146, 120, 156], fill=(110, 72, 40))  # coffee
    return im


def street() -> Image.Image:
    """A red car on a street under a tree."""
    im = Image.new("RGB", SIZE, (170, 210, 240))
    d = ImageDraw.Draw(im)
    d.ellipse([290, 20, 340, 70], fill=(255, 220, 90))  # sun
    d.rectangle([0, 200, 384, 288], fill=(80, 82, 88))  # road
    d.rectangle([0, 180, 384, 200], fill=(190, 190, 180))  # pavement
    for x in range(10, 384, 60):
        d.rectangle([x, 240, x + 30, 246], fill=(240, 240, 240))
    d.rectangle([40, 90, 56, 182], fill=(110, 80, 50))  # tree
    d.ellipse([10, 40, 90, 120], fill=(70, 140, 70))
    d.rounded_rectangle([150, 170, 300, 220], radius=10, fill=(200, 40, 40))  # car body
    d.polygon([(180, 170), (200, 140), (255, 140), (275, 170)], fill=(180, 30, 30))
    d.polygon([(190, 168), (205, 146), (226, 146), (226, 168)], fill=(200, 225, 240))
    d.polygon([(232, 168), (232, 146), (252, 146), (266, 168)], fill=(200, 225, 240))
    for cx in (185, 265):
        d.ellipse([cx - 16, 205, cx + 16, 237], fill=(30, 30, 30))
        d.ellipse([cx - 7, 214, cx + 7, 228], fill=(160, 160, 160))
    return im


def fruit() -> Image.Image:
    """A bowl of apples and a banana on a table."""
    im = Image.new("RGB", SIZE, (238, 232, 220))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 170, 384, 288], fill=(176, 140, 100))  # table
    d.pieslice([80, 110, 260, 230], start=0, end=180, fill=(70, 110, 160))  # bowl
    for box in ([100, 120, 146, 166], [140, 110, 186, 156], [182, 120, 228, 166]):
        d.ellipse(box, fill=(210, 40, 40))  # apples
        d.line([(box[0] + 23, box[1] + 2), (box[0] + 26, box[1] - 8)], fill=(90, 60, 30), width=3)
    d.pieslice([270, 150, 360, 230], start=200, end=340, fill=(240, 210, 70))  # banana
    d.pieslice([282, 166, 348, 216], start=200, end=340, fill=(176, 140, 100))
    return im


def favicon() -> Image.Image:
    """Two overlapping region boxes on the page's header blue."""
    im = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle([0, 0, 31, 31], radius=6, fill=(31, 78, 121))
    d.rectangle([6, 8, 19, 19], outline=(255, 209, 102), width=3)
    d.rectangle([13, 13, 25, 24], outline=(142, 202, 230), width=3)
    return im


EXAMPLES = {"desk.png": desk, "street.png": street, "fruit.png": fruit}


def main() -> None:
    EXAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    outputs = {EXAMPLES_DIR / name: draw for name, draw in EXAMPLES.items()}
    outputs[STATIC_DIR / "favicon.png"] = favicon
    for path, draw in outputs.items():
        draw().save(path, optimize=True)
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
