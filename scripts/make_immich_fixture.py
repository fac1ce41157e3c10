#!/usr/bin/env python3
"""Generate the Immich-layout test model and its reference embeddings (deterministic; fixed seed).

Usage (torch, open_clip_torch 3.3.0, onnx, onnxruntime, tokenizers, pillow, numpy from PyPI):
    python3 scripts/make_immich_fixture.py
    python3 scripts/make_immich_fixture.py --full-size ViT-B-32 OUTDIR   (benchmarks: a random
        full-size model in both layouts, not committed; README "Benchmark")

Writes (replacing previous contents):
    tests/fixtures/immich-tiny-random/        a tiny random OpenCLIP model (the real architecture:
                                              ViT image tower, causal text transformer, 32-dim
                                              embeddings) in Immich's model layout, exported as
                                              Immich's exporter exports it (immich
                                              machine-learning/export/immich_model_exporter/
                                              exporters/onnx/models/openclip.py: encode_image /
                                              encode_text with normalize=True, input names image /
                                              text, output embedding, batch fixed at 1, the
                                              TorchScript exporter, opset 19)
    tests/fixtures/immich-tiny-random-flat/   the same weights in the flat layout (manifest.json,
                                              dynamic batch), to compare the two layouts
    tests/fixtures/immich-tiny-variants/      the same weights behind the other graph inputs Immich
                                              serves: visual/model.onnx taking u8 [1,S,S,3] raw RGB
                                              (Immich's `normalizes_input`), textual/model.onnx taking
                                              input_ids + attention_mask int32 (M-CLIP's exports)
    tests/fixtures/golden/immich_*.npy|json   its embeddings as Immich's machine-learning service
                                              computes them (immich_ml/models/clip/{visual,textual}.py,
                                              models/transforms.py), run with onnxruntime

The textual tokenizer is the bundled model's tokenizer.json (OpenAI's CLIP BPE, built by
scripts/make_fixture.py from open_clip's vocabulary) with the tokenizer_config.json that Hugging
Face's CLIPTokenizer saves (pad_token <|endoftext|>). Its config.json asks for the canonicalize
text cleaning, so the reference covers both of Immich's cleaning steps; the reference of the
plain (whitespace-only) cleaning is written beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "immich-tiny-random")
FLAT = os.path.join(FIX, "immich-tiny-random-flat")
VARIANTS = os.path.join(FIX, "immich-tiny-variants")
GOLD = os.path.join(FIX, "golden")
TOKENIZER = os.path.join(ROOT, "assets", "models", "clip-tiny-random", "tokenizer.json")
SEED = 20261205
VISUAL_STD = float(os.environ.get("VISUAL_STD", "0.17"))
OPSET = 19

MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {
        "context_length": 77,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 2,
        "tokenizer_kwargs": {"clean": "canonicalize"},
    },
}

# Prompts with capitals, punctuation, runs of spaces, non-ASCII, and one longer than the context.
PROMPTS = [
    "a photo of a cat",
    "A Photo Of A CAT!!",
    "a   photo\tof  a\n dog ",
    "rocket, launch; smoke & fire -- (NASA)",
    "café crème brûlée, naïve façade",
    "写真 猫 の",
    "an astronaut " * 40,
    "",
]
IMAGES = [
    ("images", "chelsea.png"),
    ("images", "coffee.png"),
    ("images", "astronaut.png"),
    ("images", "rocket.jpg"),
    ("images", "camera.png"),
    ("previews", "chelsea_preview.jpg"),
    ("previews", "coffee_preview.jpg"),
    ("previews", "camera_preview_gray.jpg"),
]


def build_model():
    import open_clip
    import torch

    torch.manual_seed(SEED)
    open_clip.factory._MODEL_CONFIGS["immich-tiny-random"] = MODEL_CFG
    model = open_clip.create_model("immich-tiny-random", pretrained=None)
    # open_clip's own init leaves a tiny random tower's embeddings almost image-independent;
    # re-draw every weight so images and prompts get distinct embeddings (as make_fixture.py).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            if p.ndim >= 2:
                # The image tower gets smaller weights: at 0.3 a one-level change of the
                # pixels moved its embedding by cosine 0.005 (no resize could be checked to
                # 0.999); at 0.17 by 0.00005, with cat and coffee still 0.91 apart.
                p.normal_(0.0, VISUAL_STD if name.startswith("visual.") else 0.3)
            elif name.endswith("weight") and ("ln" in name or "norm" in name):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.02)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def export_graphs(model, out: str, size: int, context: int) -> None:
    """visual/model.onnx and textual/model.onnx in `out`, as Immich's exporter writes them
    (immich machine-learning/export/immich_model_exporter/exporters/onnx/models/openclip.py):
    encode_image / encode_text with normalize=True, inputs image / text (int32 ids), output
    embedding, batch fixed at 1, the TorchScript exporter."""
    import torch

    class Image(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, image):
            return self.m.encode_image(image, normalize=True)

    class Text(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, text):
            return self.m.encode_text(text, normalize=True)

    torch.backends.mha.set_fastpath_enabled(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Image(model), (torch.randn(1, 3, size, size),), os.path.join(out, "visual", "model.onnx"),
            input_names=["image"], output_names=["embedding"], opset_version=OPSET, dynamo=False,
        )
        torch.onnx.export(
            Text(model), (torch.ones(1, context, dtype=torch.int32),), os.path.join(out, "textual", "model.onnx"),
            input_names=["text"], output_names=["embedding"], opset_version=OPSET, dynamo=False,
        )


def export(model):
    import open_clip
    import torch

    os.makedirs(os.path.join(OUT, "visual"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "textual"), exist_ok=True)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(MODEL_CFG, f, indent=2)
    with open(os.path.join(OUT, "visual", "preprocess_cfg.json"), "w") as f:
        json.dump(open_clip.get_model_preprocess_cfg(model), f, indent=2)
    with open(TOKENIZER, "rb") as src, open(os.path.join(OUT, "textual", "tokenizer.json"), "wb") as dst:
        dst.write(src.read())
    tokenizer_config = {
        "add_prefix_space": False,
        "bos_token": "<|startoftext|>",
        "clean_up_tokenization_spaces": False,
        "do_lower_case": True,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": "<|endoftext|>",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": "<|endoftext|>",
    }
    with open(os.path.join(OUT, "textual", "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config, f, indent=2)

    size = MODEL_CFG["vision_cfg"]["image_size"]
    export_graphs(model, OUT, size, 77)
    # The same weights in the flat layout (dynamic batch, scripts/export_onnx.py's names), so
    # the two layouts can be compared on one model (examples/bench.rs, tests/immich_layout.rs).
    os.makedirs(FLAT, exist_ok=True)

    class FlatImage(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m.encode_image(pixel_values)

    class FlatText(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m.encode_text(input_ids)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            FlatImage(model), (torch.randn(2, 3, size, size),), os.path.join(FLAT, "visual.onnx"),
            input_names=["pixel_values"], output_names=["image_embeds"], opset_version=OPSET, dynamo=False,
            dynamic_axes={"pixel_values": {0: "N"}, "image_embeds": {0: "N"}},
        )
        torch.onnx.export(
            FlatText(model), (torch.ones(2, 77, dtype=torch.int64),), os.path.join(FLAT, "textual.onnx"),
            input_names=["input_ids"], output_names=["text_embeds"], opset_version=OPSET, dynamo=False,
            dynamic_axes={"input_ids": {0: "N"}, "text_embeds": {0: "N"}},
        )
    with open(TOKENIZER, "rb") as src, open(os.path.join(FLAT, "tokenizer.json"), "wb") as dst:
        dst.write(src.read())
    pre = open_clip.get_model_preprocess_cfg(model)
    manifest = {
        "format_version": 1, "name": "immich-tiny-random-flat", "embedding_dim": MODEL_CFG["embed_dim"],
        "image_size": size, "image_mean": list(pre["mean"]), "image_std": list(pre["std"]),
        "resize": "immich", "context_length": 77, "logit_scale": 100.0, "random_weights": True,
        "source": "scripts/make_immich_fixture.py: tests/fixtures/immich-tiny-random's weights in the flat layout",
    }
    with open(os.path.join(FLAT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    # The other inputs Immich's sessions take: raw RGB bytes (the graph normalizes), and
    # token ids with their attention mask (M-CLIP). Same weights, same embeddings.
    os.makedirs(os.path.join(VARIANTS, "visual"), exist_ok=True)
    os.makedirs(os.path.join(VARIANTS, "textual"), exist_ok=True)
    mean = torch.tensor(pre["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pre["std"], dtype=torch.float32).view(1, 3, 1, 1)

    class RawImage(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, image):
            x = image.permute(0, 3, 1, 2).float() / 255.0
            return self.m.encode_image((x - mean) / std, normalize=True)

    class MaskedText(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            # Padding positions become <|endoftext|> whatever they held, so the mask is used.
            ids = input_ids * attention_mask + 49407 * (1 - attention_mask)
            return self.m.encode_text(ids, normalize=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            RawImage(model), (torch.zeros(1, size, size, 3, dtype=torch.uint8),),
            os.path.join(VARIANTS, "visual", "model.onnx"),
            input_names=["image"], output_names=["embedding"], opset_version=OPSET, dynamo=False,
        )
        torch.onnx.export(
            MaskedText(model), (torch.ones(1, 77, dtype=torch.int32), torch.ones(1, 77, dtype=torch.int32)),
            os.path.join(VARIANTS, "textual", "model.onnx"),
            input_names=["input_ids", "attention_mask"], output_names=["embedding"], opset_version=OPSET, dynamo=False,
        )
    readme = os.path.join(OUT, "README.md")
    with open(readme, "w") as f:
        f.write("A tiny random OpenCLIP model in Immich's layout, made by scripts/make_immich_fixture.py. "
                "Its scores mean nothing.\n")
    # What Immich's cache also holds and hailo-clip must ignore.
    os.makedirs(os.path.join(OUT, "visual", "rknpu", "rk3588"), exist_ok=True)
    with open(os.path.join(OUT, "visual", "rknpu", "rk3588", "model.rknn"), "wb") as f:
        f.write(b"not a model hailo-clip reads")


# --- Immich's computation (immich_ml/models/transforms.py, clip/visual.py, clip/textual.py) ---

def clean_text(text: str, canonicalize: bool) -> str:
    text = " ".join(text.split())
    if canonicalize:
        text = text.translate(str.maketrans("", "", string.punctuation)).lower()
    return text


def immich_tokenizer():
    from tokenizers import Tokenizer

    with open(os.path.join(OUT, "textual", "tokenizer_config.json")) as f:
        pad_token = json.load(f)["pad_token"]
    tok = Tokenizer.from_file(os.path.join(OUT, "textual", "tokenizer.json"))
    pad_id = tok.token_to_id(pad_token)
    tok.enable_padding(length=77, pad_token=pad_token, pad_id=pad_id)
    tok.enable_truncation(max_length=77)
    return tok


def immich_image(path: str, cfg: dict) -> np.ndarray:
    image = immich_resized(path, cfg)
    arr = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.array(cfg["mean"], dtype=np.float32)
    std = np.array(cfg["std"], dtype=np.float32)
    arr *= 1.0 / std
    arr -= mean / std
    return arr.transpose(2, 0, 1)[None]


def immich_resized(path: str, cfg: dict):
    from PIL import Image

    image = Image.open(path)
    image.load()
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = cfg["size"][0] if isinstance(cfg["size"], list) else cfg["size"]
    resample = {r.name.lower(): r for r in Image.Resampling}[cfg["interpolation"].lower()]
    if image.width < image.height:
        image = image.resize((size, int((image.height / image.width) * size)), resample=resample)
    else:
        image = image.resize((int((image.width / image.height) * size), size), resample=resample)
    left = int((image.size[0] / 2) - (size / 2))
    upper = int((image.size[1] / 2) - (size / 2))
    return image.crop((left, upper, left + size, upper + size))


def references():
    import onnxruntime as ort

    visual = ort.InferenceSession(os.path.join(OUT, "visual", "model.onnx"), providers=["CPUExecutionProvider"])
    textual = ort.InferenceSession(os.path.join(OUT, "textual", "model.onnx"), providers=["CPUExecutionProvider"])
    tok = immich_tokenizer()
    out = {}
    for canonicalize, key in [(True, "canonical"), (False, "plain")]:
        ids, embeds = [], []
        for prompt in PROMPTS:
            enc = tok.encode(clean_text(prompt, canonicalize))
            arr = np.array([enc.ids], dtype=np.int32)
            ids.append(enc.ids)
            embeds.append(textual.run(None, {"text": arr})[0][0])
        out[key] = (np.array(ids, dtype=np.int64), np.stack(embeds).astype(np.float32))
    with open(os.path.join(OUT, "visual", "preprocess_cfg.json")) as f:
        cfg = json.load(f)
    image_embeds = []
    for folder, name in IMAGES:
        pixels = immich_image(os.path.join(FIX, folder, name), cfg)
        image_embeds.append(visual.run(None, {"image": pixels})[0][0])
    np.save(os.path.join(GOLD, "immich_text_embeds_canonical.npy"), out["canonical"][1])
    np.save(os.path.join(GOLD, "immich_text_ids_canonical.npy"), out["canonical"][0])
    np.save(os.path.join(GOLD, "immich_text_embeds_plain.npy"), out["plain"][1])
    np.save(os.path.join(GOLD, "immich_text_ids_plain.npy"), out["plain"][0])
    np.save(os.path.join(GOLD, "immich_image_embeds.npy"), np.stack(image_embeds).astype(np.float32))

    # The variants, fed as Immich feeds them: raw RGB `rgb[None]` when the graph normalizes
    # (visual.py, `session.normalizes_input`), ids and mask for M-CLIP (textual.py,
    # MClipTextualEncoder.tokenize).
    from PIL import Image

    raw_visual = ort.InferenceSession(os.path.join(VARIANTS, "visual", "model.onnx"), providers=["CPUExecutionProvider"])
    masked = ort.InferenceSession(os.path.join(VARIANTS, "textual", "model.onnx"), providers=["CPUExecutionProvider"])
    raw_embeds = []
    for folder, name in IMAGES:
        image = immich_resized(os.path.join(FIX, folder, name), cfg)
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        raw_embeds.append(raw_visual.run(None, {"image": rgb[None]})[0][0])
    np.save(os.path.join(GOLD, "immich_variant_image_embeds.npy"), np.stack(raw_embeds).astype(np.float32))
    mask_embeds = []
    for prompt in PROMPTS:
        enc = tok.encode(clean_text(prompt, True))
        mask_embeds.append(masked.run(None, {
            "input_ids": np.array([enc.ids], dtype=np.int32),
            "attention_mask": np.array([enc.attention_mask], dtype=np.int32),
        })[0][0])
    np.save(os.path.join(GOLD, "immich_variant_text_embeds.npy"), np.stack(mask_embeds).astype(np.float32))
    import onnx
    import open_clip
    import PIL
    import tokenizers
    import torch

    with open(os.path.join(GOLD, "immich_inputs.json"), "w") as f:
        json.dump(
            {
                "prompts": PROMPTS,
                "images": [f"{folder}/{name}" for folder, name in IMAGES],
                "versions": {
                    "torch": torch.__version__, "open_clip_torch": open_clip.__version__,
                    "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                    "tokenizers": tokenizers.__version__, "pillow": PIL.__version__,
                },
            },
            f, indent=1, ensure_ascii=False,
        )


def weight_digests(model) -> dict:
    """sha256 of the text tower's token embedding [vocab, width] and projection [width, embed],
    as little-endian float32 bytes: `export-text-assets` must write exact copies of them."""
    emb = model.token_embedding.weight.detach().numpy().astype("<f4")
    proj = model.text_projection.detach().numpy().astype("<f4")
    return {
        "token_embedding": {"shape": list(emb.shape), "sha256": hashlib.sha256(emb.tobytes()).hexdigest()},
        "text_projection": {"shape": list(proj.shape), "sha256": hashlib.sha256(proj.tobytes()).hexdigest()},
    }


def full_size(out: str, name: str) -> None:
    """For benchmarks only (nothing committed): open_clip's NAME at its real size with random
    weights, exported in Immich's layout (out/immich/<NAME>__random) and in the flat layout
    (out/flat), the same weights in both."""
    import open_clip
    import torch

    global OUT, FLAT, VARIANTS, MODEL_CFG
    torch.manual_seed(SEED)
    model = open_clip.create_model(name, pretrained=None)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    MODEL_CFG = open_clip.get_model_config(name)
    OUT = os.path.join(out, "immich", f"{name}__random")
    FLAT = os.path.join(out, "flat")
    VARIANTS = os.path.join(out, "variants")
    export(model)
    print(f"wrote {OUT} and {FLAT}")


def main():
    import sys

    if len(sys.argv) == 4 and sys.argv[1] == "--full-size":
        return full_size(sys.argv[3], sys.argv[2])
    model = build_model()
    export(model)
    references()
    path = os.path.join(GOLD, "immich_inputs.json")
    inputs = json.load(open(path))
    inputs["text_weights"] = weight_digests(model)
    with open(path, "w") as f:
        json.dump(inputs, f, indent=1, ensure_ascii=False)
    print(f"wrote {OUT} and tests/fixtures/golden/immich_*")


if __name__ == "__main__":
    main()
