#!/usr/bin/env python3
"""Generate the Immich-style preview fixtures and their reference embeddings (deterministic).

Usage (in the fixture environment of scripts/requirements-fixture.txt):
    python3 scripts/make_previews.py

Writes (replacing previous contents):
    tests/fixtures/previews/*.jpg            scikit-image photos made into previews as Immich makes
                                             them: shorter side 1440 (upscaled with Lanczos, as
                                             Sharp's default kernel), JPEG quality 80, 4:4:4 chroma,
                                             an ICC profile; plus progressive, grayscale and EXIF
                                             orientation 6 variants
    tests/fixtures/golden/previews.json      the files, in golden row order, and how each was made
    tests/fixtures/golden/preview_embeds.npy         reference: transformers' CLIPImageProcessorPil
                                                     on PIL's full decode (EXIF applied), then the
                                                     committed tiny model (tests/fixtures/hf-clip-tiny-random)
    tests/fixtures/golden/preview_immich_embeds.npy  Immich's own preprocessing on the same files
                                                     (immich machine-learning/immich_ml/models/transforms.py:
                                                     decode_pil without EXIF, resize_pil bicubic to 224
                                                     on the shorter side with int(long/short*224),
                                                     crop_pil at int(w/2-112), to_numpy, normalize)

Immich's previews carry Display-P3 when the original did; no registry ships a P3 profile, so the
fixtures carry Pillow's sRGB profile. Neither hailo-clip nor Immich's ML service applies it.
"""

from __future__ import annotations

import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "previews")
GOLD = os.path.join(FIX, "golden")
HF_TINY = os.path.join(FIX, "hf-clip-tiny-random")
PREVIEW_SHORT_SIDE = 1440
SIZE = 224
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def preview(img, short=PREVIEW_SHORT_SIDE):
    """Sharp's resize with fit: outside to `short` on the shorter side (Lanczos)."""
    from PIL import Image

    w, h = img.size
    scale = short / min(w, h)
    return img.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)


def immich_pixels(path):
    """immich_ml/models/transforms.py, as models/clip/visual.py chains it for OpenAI CLIP."""
    import numpy as np
    from PIL import Image

    img = Image.open(path)
    img.load()
    if img.mode != "RGB":
        img = img.convert("RGB")
    # resize_pil
    if img.width < img.height:
        img = img.resize((SIZE, int((img.height / img.width) * SIZE)), resample=Image.Resampling.BICUBIC)
    else:
        img = img.resize((int((img.width / img.height) * SIZE), SIZE), resample=Image.Resampling.BICUBIC)
    # crop_pil
    left = int((img.size[0] / 2) - (SIZE / 2))
    upper = int((img.size[1] / 2) - (SIZE / 2))
    img = img.crop((left, upper, left + SIZE, upper + SIZE))
    # to_numpy, normalize
    x = np.asarray(img, dtype=np.float32) / 255.0
    mean, std = np.array(MEAN, np.float32), np.array(STD, np.float32)
    x *= 1.0 / std
    x -= mean / std
    return x.transpose(2, 0, 1)


def main() -> int:
    import numpy as np
    import skimage
    import torch
    from PIL import Image, ImageCms, ImageOps
    from transformers import CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    torch.set_grad_enabled(False)
    os.makedirs(OUT, exist_ok=True)
    src = os.path.join(os.path.dirname(skimage.__file__), "data")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    entries = []

    def save(img, name, note, progressive=False, exif=None):
        path = os.path.join(OUT, name)
        kwargs = {"quality": 80, "subsampling": 0, "icc_profile": icc, "progressive": progressive}
        if exif is not None:
            kwargs["exif"] = exif
        img.save(path, format="JPEG", **kwargs)
        chk = Image.open(path)
        entries.append({"file": name, "width": chk.width, "height": chk.height, "mode": chk.mode,
                        "progressive": progressive, "exif_transpose": exif is not None,
                        "immich_comparable": exif is None, "source": note})

    for stem, ext in (("chelsea", "png"), ("coffee", "png"), ("rocket", "jpg"), ("astronaut", "png")):
        img = preview(Image.open(os.path.join(src, f"{stem}.{ext}")).convert("RGB"))
        save(img, f"{stem}_preview.jpg", f"scikit-image {skimage.__version__} skimage/data/{stem}.{ext}")
    coffee = preview(Image.open(os.path.join(src, "coffee.png")).convert("RGB"))
    save(coffee, "coffee_preview_progressive.jpg", "coffee preview saved as a progressive JPEG", progressive=True)
    camera = preview(Image.open(os.path.join(src, "camera.png")).convert("L"))
    save(camera, "camera_preview_gray.jpg", "skimage/data/camera.png preview, a one-component (grayscale) JPEG")
    rocket = preview(Image.open(os.path.join(src, "rocket.jpg")).convert("RGB"))
    exif = Image.Exif()
    exif[0x0112] = 6
    save(rocket.transpose(Image.Transpose.ROTATE_90), "rocket_preview_exif6.jpg",
         "rocket preview stored rotated 90 deg counter-clockwise with EXIF Orientation=6", exif=exif.tobytes())

    processor = CLIPImageProcessorPil()
    model = CLIPModel.from_pretrained(HF_TINY, attn_implementation="eager").float().eval()

    def embed(pixels):
        return model.visual_projection(model.vision_model(pixel_values=torch.from_numpy(np.stack(pixels))).pooler_output).numpy()

    reference, immich = [], []
    for e in entries:
        path = os.path.join(OUT, e["file"])
        img = Image.open(path)
        if e["exif_transpose"]:
            img = ImageOps.exif_transpose(img)
        reference.append(processor(images=img, return_tensors="np")["pixel_values"][0].astype(np.float32))
        immich.append(immich_pixels(path))
    ref, imm = embed(reference), embed(immich)
    np.save(os.path.join(GOLD, "preview_embeds.npy"), ref.astype(np.float32))
    np.save(os.path.join(GOLD, "preview_immich_embeds.npy"), imm.astype(np.float32))
    with open(os.path.join(GOLD, "previews.json"), "w") as f:
        json.dump(entries, f, indent=1)
        f.write("\n")
    for e, r, i in zip(entries, ref, imm):
        cos = float(r @ i / np.linalg.norm(r) / np.linalg.norm(i))
        print(f"{e['file']}: {e['width']}x{e['height']} {os.path.getsize(os.path.join(OUT, e['file']))} bytes; "
              f"cosine(reference, immich) {cos:.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
