#!/usr/bin/env python3
"""Write the benchmark's 224-px JPEG (deterministic), for scripts/bench-hailo.sh.

Usage (in the fixture environment of scripts/requirements-fixture.txt):
    python3 scripts/make_bench_image.py

Writes tests/fixtures/images/coffee_224.jpg: scikit-image's coffee.png brought to 224x224
(bicubic on the shorter side, centre crop), JPEG quality 90, 4:2:0. It is already the size of
the image encoder's input, so a benchmark sending it measures the device's side, not the
host's decode and resize of a large preview.
"""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 224


def main() -> int:
    import skimage
    from PIL import Image

    src = os.path.join(os.path.dirname(skimage.__file__), "data", "coffee.png")
    img = Image.open(src).convert("RGB")
    w, h = img.size
    scale = SIZE / min(w, h)
    img = img.resize((max(SIZE, round(w * scale)), max(SIZE, round(h * scale))), Image.Resampling.BICUBIC)
    left, top = (img.width - SIZE) // 2, (img.height - SIZE) // 2
    img = img.crop((left, top, left + SIZE, top + SIZE))
    img.save(os.path.join(ROOT, "tests", "fixtures", "images", "coffee_224.jpg"), format="JPEG", quality=90)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
