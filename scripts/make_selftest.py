#!/usr/bin/env python3
"""Writes assets/selftest/: the known-answer self-test's photos and labels.

The photos are the scikit-image data photos already committed under tests/fixtures/images
(public domain / CC0, see assets/selftest/README.md), shrunk so the shortest side is 256 px
(CLIP looks at a 224 px centre crop) and saved as JPEG quality 90 to keep the repository small.
Needs only Pillow (pinned in scripts/requirements-fixture.txt). Deterministic: rerunning
writes the same bytes.
"""
import json
import pathlib

from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "tests" / "fixtures" / "images"
OUT = ROOT / "assets" / "selftest"

# (output file, source photo, expected label). Labels are distinct objects a real CLIP
# separates with a wide margin; "dog" is a distractor no photo shows.
PHOTOS = [
    ("cat.jpg", "chelsea.png", "cat"),
    ("coffee.jpg", "coffee.png", "cup of coffee"),
    ("rocket.jpg", "rocket.jpg", "rocket"),
    ("astronaut.jpg", "astronaut.png", "astronaut"),
]
LABELS = ["cat", "dog", "cup of coffee", "rocket", "astronaut"]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for out_name, src_name, _ in PHOTOS:
        image = Image.open(SRC / src_name).convert("RGB")
        scale = 256 / min(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        image.resize(size, Image.Resampling.BICUBIC).save(OUT / out_name, "JPEG", quality=90)
    manifest = {
        "template": "a photo of a {}",
        "labels": LABELS,
        "photos": [{"file": f, "expected": label} for f, _, label in PHOTOS],
    }
    (OUT / "selftest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
