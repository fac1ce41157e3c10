#!/usr/bin/env python3
"""Generate the SigLIP-style Immich-layout test model and its reference embeddings
(deterministic; fixed seed). Same tools as scripts/make_immich_fixture.py:

    python3 scripts/make_siglip_fixture.py

Writes (replacing previous contents):
    tests/fixtures/immich-tiny-siglip/     a tiny random OpenCLIP model built the way open_clip's
                                           SigLIP configs build theirs (model_configs/
                                           ViT-B-32-SigLIP2-256.json: text_cfg no_causal_mask,
                                           proj_bias, pool_type "last", context_length 64,
                                           init_logit_bias; preprocessing 256 px "squash",
                                           mean = std = 0.5), a SentencePiece-style Unigram
                                           tokenizer.json (Metaspace, "</s>" appended by its
                                           post-processor) with pad_token "<pad>" (id 1, so a
                                           path that pads with 0 is caught), exported as
                                           Immich's exporter exports open_clip models (see
                                           make_immich_fixture.py)
    tests/fixtures/golden/siglip_*         its embeddings as Immich's machine-learning service
                                           computes them (immich_ml/models/clip/textual.py:
                                           padding to the context with the pad token;
                                           visual.py: "squash" is one PIL resize to size x
                                           size), run with onnxruntime
"""

from __future__ import annotations

import json
import os
import string

import numpy as np

import make_immich_fixture as immich

OUT = os.path.join(immich.FIX, "immich-tiny-siglip")
GOLD = immich.GOLD
SEED = 20261207
CONTEXT = 64
SPECIALS = ["<unk>", "<pad>", "</s>"]


def tokenizer_json() -> str:
    """A Unigram tokenizer in the shape of SigLIP's (T5's SentencePiece export): Metaspace
    pre-tokenizer and decoder, `$A </s>` template. Its pieces: the prompts' words, then every
    printable ASCII character alone and after the word boundary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    words = sorted({w for p in immich.PROMPTS for w in immich.clean_text(p, True).split()})
    chars = [c for c in string.printable if not c.isspace()]
    pieces = [(s, 0.0) for s in SPECIALS]
    pieces += [("\u2581" + w, -4.0) for w in words]
    pieces += [("\u2581" + c, -8.0) for c in chars] + [(c, -9.0) for c in chars]
    pieces.append(("\u2581", -10.0))
    seen, vocab = set(), []
    for piece, score in pieces:
        if piece not in seen:
            seen.add(piece)
            vocab.append((piece, score))
    tok = Tokenizer(models.Unigram(vocab, unk_id=0))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.add_special_tokens(SPECIALS)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 2)]
    )
    return tok.to_str(pretty=True)


def model_cfg(vocab_size: int) -> dict:
    return {
        "embed_dim": 32,
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {"image_size": 256, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
        "text_cfg": {
            "context_length": CONTEXT,
            "vocab_size": vocab_size,
            "width": 32,
            "heads": 2,
            "layers": 2,
            "no_causal_mask": True,
            "proj_bias": True,
            "pool_type": "last",
            "tokenizer_kwargs": {"clean": "canonicalize"},
        },
    }


PREPROCESS = {
    "size": [256, 256],
    "mode": "RGB",
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "squash",
    "fill_color": 0,
}


def build(cfg):
    import open_clip
    import torch

    torch.manual_seed(SEED)
    open_clip.factory._MODEL_CONFIGS["immich-tiny-siglip"] = cfg
    model = open_clip.create_model("immich-tiny-siglip", pretrained=None)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ("logit_scale", "logit_bias"):
                continue
            if p.ndim >= 2:
                p.normal_(0.0, immich.VISUAL_STD if name.startswith("visual.") else 0.3)
            elif name.endswith("weight") and ("ln" in name or "norm" in name):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                # The head's bias among them: large enough that a path dropping it is caught.
                p.normal_(0.0, 0.1 if "text_projection" in name else 0.02)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def export(model, cfg, tokenizer: str) -> None:
    os.makedirs(os.path.join(OUT, "visual"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "textual"), exist_ok=True)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(OUT, "visual", "preprocess_cfg.json"), "w") as f:
        json.dump(PREPROCESS, f, indent=2)
    with open(os.path.join(OUT, "textual", "tokenizer.json"), "w") as f:
        f.write(tokenizer)
    with open(os.path.join(OUT, "textual", "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                   "model_max_length": CONTEXT, "tokenizer_class": "T5Tokenizer"}, f, indent=2)

    immich.export_graphs(model, OUT, cfg["vision_cfg"]["image_size"], CONTEXT)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("A tiny random SigLIP-style OpenCLIP model in Immich's layout, made by "
                "scripts/make_siglip_fixture.py. Its scores mean nothing.\n")


def references(model) -> None:
    import onnxruntime as ort
    from PIL import Image
    from tokenizers import Tokenizer

    textual = ort.InferenceSession(os.path.join(OUT, "textual", "model.onnx"), providers=["CPUExecutionProvider"])
    visual = ort.InferenceSession(os.path.join(OUT, "visual", "model.onnx"), providers=["CPUExecutionProvider"])
    # immich_ml/models/clip/textual.py, OpenClipTextualEncoder._load and tokenize.
    tok = Tokenizer.from_file(os.path.join(OUT, "textual", "tokenizer.json"))
    pad_id = tok.token_to_id("<pad>")
    tok.enable_padding(length=CONTEXT, pad_token="<pad>", pad_id=pad_id)
    tok.enable_truncation(max_length=CONTEXT)
    ids, text_embeds = [], []
    for prompt in immich.PROMPTS:
        enc = tok.encode(immich.clean_text(prompt, True))
        ids.append(enc.ids)
        text_embeds.append(textual.run(None, {"text": np.array([enc.ids], dtype=np.int32)})[0][0])
    image_embeds = []
    size = PREPROCESS["size"][0]
    for folder, name in immich.IMAGES:
        image = Image.open(os.path.join(immich.FIX, folder, name))
        image.load()
        image = image.convert("RGB").resize((size, size), resample=Image.Resampling.BICUBIC)
        arr = np.asarray(image, dtype=np.float32) / 255.0
        arr = ((arr - 0.5) / 0.5).transpose(2, 0, 1)[None]
        image_embeds.append(visual.run(None, {"image": arr.astype(np.float32)})[0][0])
    np.save(os.path.join(GOLD, "siglip_text_ids.npy"), np.array(ids, dtype=np.int64))
    np.save(os.path.join(GOLD, "siglip_text_embeds.npy"), np.stack(text_embeds).astype(np.float32))
    np.save(os.path.join(GOLD, "siglip_image_embeds.npy"), np.stack(image_embeds).astype(np.float32))
    with open(os.path.join(GOLD, "siglip_inputs.json"), "w") as f:
        json.dump({
            "prompts": immich.PROMPTS,
            "images": [f"{folder}/{name}" for folder, name in immich.IMAGES],
            "pad_id": pad_id,
            # The model's trained pair as open_clip holds it: exp(logit_scale) and logit_bias.
            "logit_scale": float(model.logit_scale.exp()),
            "logit_bias": float(model.logit_bias),
        }, f, indent=1, ensure_ascii=False)


def main():
    tokenizer = tokenizer_json()
    vocab_size = len(json.loads(tokenizer)["model"]["vocab"])
    cfg = model_cfg(vocab_size)
    model = build(cfg)
    export(model, cfg, tokenizer)
    references(model)
    print(f"wrote {OUT} and tests/fixtures/golden/siglip_* ({vocab_size} tokens)")


if __name__ == "__main__":
    main()
