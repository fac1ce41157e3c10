#!/usr/bin/env python3
"""Export a Hugging Face CLIP checkpoint to the hailo-clip model directory layout.

Usage:
    python3 scripts/export_onnx.py --hf-dir HF_DIR --out MODEL_DIR [--name NAME] [--opset 14]
                                   [--random-weights] [--source-note TEXT]

HF_DIR is a directory written by transformers' ``save_pretrained`` for a ``CLIPModel``
(config.json + model.safetensors or pytorch_model.bin) together with its tokenizer files
(tokenizer.json, or vocab.json + merges.txt) and, optionally, preprocessor_config.json.

MODEL_DIR receives:
    visual.onnx    pixel_values f32 [N,3,S,S]  -> image_embeds f32 [N,D]  (projected, NOT normalized)
    textual.onnx   input_ids   i64 [N,C]      -> text_embeds  f32 [N,D]  (projected, NOT normalized)
    tokenizer.json the checkpoint's fast-tokenizer JSON (no padding / truncation configured)
    manifest.json  embedding_dim, image preprocessing, context length, logit scale, provenance

The ONNX graphs are produced by the legacy TorchScript exporter (opset 14 by default) so that
LayerNorm / GELU are decomposed into basic ops, which the tract engine handles well.
Before exiting the script runs both graphs with onnxruntime and compares them with
transformers; it exits non-zero if the max abs difference exceeds the tolerance.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
DEFAULT_IMAGE_SIZE = 224
DEFAULT_CONTEXT_LENGTH = 77
MAX_LOGIT_SCALE = 100.0
TOLERANCE = 1e-4
SELF_CHECK_PROMPTS = [
    "a photo of a cat",
    "A PHOTO OF A DOG, sitting on the grass at 12:30!",
    "",
]
# PIL resampling enum values as stored in preprocessor_config.json
PIL_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class ExportError(Exception):
    pass


def fail(msg: str) -> "NoReturn":  # noqa: F821
    raise ExportError(msg)


# ---------------------------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------------------------

def check_hf_dir(hf_dir: str) -> dict:
    """Validate HF_DIR and return the parsed config.json. Raises ExportError naming missing files."""
    if not os.path.isdir(hf_dir):
        fail(f"--hf-dir {hf_dir!r} is not a directory")
    cfg_path = os.path.join(hf_dir, "config.json")
    if not os.path.isfile(cfg_path):
        fail(f"{cfg_path} not found: HF_DIR must be a directory written by CLIPModel.save_pretrained")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        fail(f"{cfg_path} could not be read as JSON: {e}")
    if cfg.get("model_type") != "clip":
        fail(f"{cfg_path}: model_type is {cfg.get('model_type')!r}, expected 'clip' (a CLIPModel checkpoint)")

    weight_files = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                    "pytorch_model.bin.index.json"]
    if not any(os.path.isfile(os.path.join(hf_dir, w)) for w in weight_files):
        fail(f"no model weights in {hf_dir}: expected one of {', '.join(weight_files)}")

    tok_json = os.path.join(hf_dir, "tokenizer.json")
    vocab = os.path.join(hf_dir, "vocab.json")
    merges = os.path.join(hf_dir, "merges.txt")
    if not os.path.isfile(tok_json) and not (os.path.isfile(vocab) and os.path.isfile(merges)):
        missing = [p for p in (vocab, merges) if not os.path.isfile(p)]
        fail(f"no tokenizer in {hf_dir}: {tok_json} not found and {', '.join(missing)} missing "
             f"(save the CLIP tokenizer with save_pretrained into HF_DIR)")
    return cfg


def read_preprocessor(hf_dir: str, vision_image_size: int) -> tuple[dict, list[str]]:
    """Return (preprocessing dict for manifest, list of notes/warnings)."""
    notes: list[str] = []
    path = os.path.join(hf_dir, "preprocessor_config.json")
    pp: dict = {}
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                pp = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            fail(f"{path} could not be read as JSON: {e}")
    else:
        notes.append(f"{path} not found: using OpenAI CLIP preprocessing defaults")

    mean = [float(x) for x in pp.get("image_mean", OPENAI_CLIP_MEAN)]
    std = [float(x) for x in pp.get("image_std", OPENAI_CLIP_STD)]
    if len(mean) != 3 or len(std) != 3:
        fail(f"{path}: image_mean/image_std must have 3 entries, got {mean} / {std}")

    crop = pp.get("crop_size", {"height": vision_image_size, "width": vision_image_size})
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    size = pp.get("size", {"shortest_edge": vision_image_size})
    if isinstance(size, int):
        size = {"shortest_edge": size}

    if crop.get("height") != crop.get("width"):
        notes.append(f"WARNING: non-square crop_size {crop} in {path}; manifest uses vision image_size")
    if crop.get("height", vision_image_size) != vision_image_size:
        notes.append(f"WARNING: crop_size {crop} differs from vision_config.image_size "
                     f"{vision_image_size}; the ONNX graph requires {vision_image_size}")
    if "shortest_edge" not in size:
        notes.append(f"WARNING: preprocessor size {size} is not a shortest_edge resize; manifest says "
                     f"shortest_edge_center_crop")
    elif size["shortest_edge"] != vision_image_size:
        notes.append(f"WARNING: preprocessor shortest_edge {size['shortest_edge']} != image_size "
                     f"{vision_image_size}; manifest can only express resize-to-crop-size")
    if pp and not pp.get("do_center_crop", True):
        notes.append(f"WARNING: do_center_crop is false in {path}; manifest says shortest_edge_center_crop")
    resample = pp.get("resample", 3)
    if resample != 3:
        notes.append(f"WARNING: resample={resample} ({PIL_RESAMPLE_NAMES.get(resample, '?')}) in {path}; "
                     f"hailo-clip resizes with bicubic")
    if pp and pp.get("do_convert_rgb") is False:
        notes.append(f"WARNING: do_convert_rgb is false in {path}")
    return {"image_mean": mean, "image_std": std}, notes


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------

def onnx_export(torch, module, args, path, input_name, output_name, opset):
    kwargs = dict(
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        opset_version=opset,
        do_constant_folding=True,
        export_params=True,
    )
    import inspect
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # legacy TorchScript exporter: basic ops, LayerNorm decomposed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, path, **kwargs)


def op_types(onnx, path):
    model = onnx.load(path)
    return sorted({n.op_type for n in model.graph.node}), model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf-dir", required=True, help="CLIPModel save_pretrained directory (with tokenizer)")
    ap.add_argument("--out", required=True, help="output model directory (created if missing)")
    ap.add_argument("--name", default=None, help="model name for manifest.json (default: basename of --hf-dir)")
    ap.add_argument("--opset", type=int, default=14, help="ONNX opset (default 14)")
    ap.add_argument("--random-weights", action="store_true",
                    help="mark the manifest random_weights: true (test fixtures)")
    ap.add_argument("--source-note", default=None, help="extra free text appended to manifest 'source'")
    ap.add_argument("--immich-model", default=None,
                    help="the Immich CLIP model these embeddings equal, for manifest 'immich_model' "
                         "(openai/clip-vit-base-patch32 is Immich's ViT-B-32__openai)")
    ap.add_argument("--seed", type=int, default=1234, help="seed for the self-check inputs")
    args = ap.parse_args(argv)

    hf_dir = os.path.abspath(args.hf_dir)
    out_dir = os.path.abspath(args.out)
    name = args.name or os.path.basename(hf_dir.rstrip("/"))
    try:
        cfg_json = check_hf_dir(hf_dir)
    except ExportError as e:
        print(f"export_onnx.py: error: {e}", file=sys.stderr)
        return 2

    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        import torch
        import transformers
        from transformers import CLIPModel, CLIPTokenizerFast
    except ImportError as e:
        print(
            f"export_onnx.py: error: {e}: exporting needs torch, transformers, onnx and onnxruntime in "
            f"{sys.executable}: python3 -m venv /tmp/clip-export && /tmp/clip-export/bin/pip install "
            "torch transformers onnx onnxruntime, then run with /tmp/clip-export/bin/python (install.sh: "
            "PYTHON=/tmp/clip-export/bin/python), or export on another machine and use --model-archive",
            file=sys.stderr,
        )
        return 2

    torch.set_grad_enabled(False)
    try:
        model = CLIPModel.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32)
    except TypeError:  # transformers 4.x uses torch_dtype
        model = CLIPModel.from_pretrained(hf_dir, attn_implementation="eager", torch_dtype=torch.float32)
    except Exception as e:  # noqa: BLE001
        print(f"export_onnx.py: error: could not load CLIPModel from {hf_dir}: {e}", file=sys.stderr)
        return 2
    model = model.float().eval()
    try:
        tokenizer = CLIPTokenizerFast.from_pretrained(hf_dir)
    except Exception as e:  # noqa: BLE001
        print(f"export_onnx.py: error: could not load the tokenizer from {hf_dir} "
              f"(tokenizer.json / vocab.json + merges.txt): {e}", file=sys.stderr)
        return 2

    # tokenizer.json text, captured before the tokenizer is used: calling a transformers tokenizer
    # with padding/truncation leaves that configuration on its backend, which must not be saved
    from tokenizers import Tokenizer
    raw_tok = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    raw_tok.no_padding()
    raw_tok.no_truncation()
    tokenizer_json = raw_tok.to_str(pretty=False)

    cfg = model.config
    tcfg, vcfg = cfg.text_config, cfg.vision_config
    image_size = int(vcfg.image_size or DEFAULT_IMAGE_SIZE)
    context_length = int(tcfg.max_position_embeddings or DEFAULT_CONTEXT_LENGTH)
    dim = int(cfg.projection_dim)
    if model.text_projection.out_features != dim or model.visual_projection.out_features != dim:
        print("export_onnx.py: error: projection sizes disagree with projection_dim", file=sys.stderr)
        return 2
    if len(tokenizer) != tcfg.vocab_size:
        print(f"export_onnx.py: warning: tokenizer has {len(tokenizer)} tokens but text vocab_size is "
              f"{tcfg.vocab_size}", file=sys.stderr)
    pre, notes = read_preprocessor(hf_dir, image_size)
    for n in notes:
        print(f"export_onnx.py: {n}", file=sys.stderr)
    logit_scale = min(float(math.exp(float(model.logit_scale.item()))), MAX_LOGIT_SCALE)

    print(f"model {name}: text hidden {tcfg.hidden_size} x{tcfg.num_hidden_layers} ({tcfg.hidden_act}), "
          f"vision hidden {vcfg.hidden_size} x{vcfg.num_hidden_layers} ({vcfg.hidden_act}), "
          f"patch {vcfg.patch_size}, image {image_size}, embed dim {dim}, context {context_length}, "
          f"logit_scale {logit_scale:.4f}, eos_token_id {tcfg.eos_token_id}")

    class Visual(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.vision_model = m.vision_model
            self.visual_projection = m.visual_projection

        def forward(self, pixel_values):
            return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)

    class Textual(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.text_model = m.text_model
            self.text_projection = m.text_projection

        def forward(self, input_ids):
            return self.text_projection(self.text_model(input_ids=input_ids).pooler_output)

    visual, textual = Visual(model).eval(), Textual(model).eval()

    # self-check inputs (also used as tracing examples)
    gen = torch.Generator().manual_seed(args.seed)
    pixels = torch.randn(2, 3, image_size, image_size, generator=gen, dtype=torch.float32)
    enc = tokenizer(SELF_CHECK_PROMPTS, padding="max_length", max_length=context_length, truncation=True,
                    return_tensors="np")
    ids = torch.from_numpy(enc["input_ids"].astype(np.int64))

    os.makedirs(out_dir, exist_ok=True)
    vis_path = os.path.join(out_dir, "visual.onnx")
    txt_path = os.path.join(out_dir, "textual.onnx")
    # export to temporary names first so a failed run never leaves a half-valid model dir behind
    tmp_vis, tmp_txt = vis_path + ".tmp", txt_path + ".tmp"
    onnx_export(torch, visual, (pixels,), tmp_vis, "pixel_values", "image_embeds", args.opset)
    onnx_export(torch, textual, (ids,), tmp_txt, "input_ids", "text_embeds", args.opset)

    ops = {}
    for label, path in (("visual", tmp_vis), ("textual", tmp_txt)):
        types, m = op_types(onnx, path)
        onnx.checker.check_model(m)
        ops[label] = types
        print(f"{label}.onnx ops ({len(types)}): {' '.join(types)}")

    # ---- self-check against transformers
    ok = True
    ref_img = visual(pixels).numpy()
    ref_txt = textual(ids).numpy()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s_vis = ort.InferenceSession(tmp_vis, so, providers=["CPUExecutionProvider"])
    s_txt = ort.InferenceSession(tmp_txt, so, providers=["CPUExecutionProvider"])
    got_img = s_vis.run(["image_embeds"], {"pixel_values": pixels.numpy()})[0]
    got_txt = s_txt.run(["text_embeds"], {"input_ids": ids.numpy()})[0]
    # dynamic batch: a single row must give the same result
    got_img1 = s_vis.run(["image_embeds"], {"pixel_values": pixels.numpy()[1:2]})[0]
    got_txt1 = s_txt.run(["text_embeds"], {"input_ids": ids.numpy()[2:3]})[0]
    checks = [
        ("visual batch=2", got_img, ref_img),
        ("visual batch=1", got_img1, ref_img[1:2]),
        ("textual batch=3", got_txt, ref_txt),
        ("textual batch=1", got_txt1, ref_txt[2:3]),
    ]
    diffs = {}
    for label, got, ref in checks:
        if got.shape != ref.shape or got.dtype != np.float32:
            print(f"self-check {label}: FAIL shape/dtype {got.shape} {got.dtype} vs {ref.shape}")
            ok = False
            continue
        d = float(np.abs(got - ref).max())
        diffs[label] = d
        status = "ok" if d <= TOLERANCE else "FAIL"
        ok &= d <= TOLERANCE
        print(f"self-check {label}: max abs diff {d:.3e} (|ref| max {float(np.abs(ref).max()):.3e}) {status}")

    # tokenizer.json written below must encode like the transformers tokenizer
    tok_tmp = os.path.join(out_dir, "tokenizer.json.tmp")
    with open(tok_tmp, "w", encoding="utf-8") as f:
        f.write(tokenizer_json)
    raw_tok = Tokenizer.from_file(tok_tmp)
    if raw_tok.padding is not None or raw_tok.truncation is not None:
        print("self-check tokenizer.json: FAIL padding/truncation configured")
        ok = False
    for p in SELF_CHECK_PROMPTS:
        a = raw_tok.encode(p).ids
        b = tokenizer(p)["input_ids"]
        if a != b:
            print(f"self-check tokenizer.json: FAIL on {p!r}: {a} vs {b}")
            ok = False
    if ok:
        print("self-check tokenizer.json: ok")

    if not ok:
        for p in (tmp_vis, tmp_txt, tok_tmp):
            if os.path.exists(p):
                os.remove(p)
        print(f"export_onnx.py: error: self-check failed (tolerance {TOLERANCE})", file=sys.stderr)
        return 1

    os.replace(tmp_vis, vis_path)
    os.replace(tmp_txt, txt_path)
    os.replace(tok_tmp, os.path.join(out_dir, "tokenizer.json"))

    source = (f"HF CLIPModel checkpoint '{os.path.basename(hf_dir.rstrip('/'))}' "
              f"(text {tcfg.hidden_size}x{tcfg.num_hidden_layers} {tcfg.hidden_act}, vision "
              f"{vcfg.hidden_size}x{vcfg.num_hidden_layers} {vcfg.hidden_act} patch {vcfg.patch_size}); "
              f"exported by scripts/export_onnx.py with torch {torch.__version__} (TorchScript exporter, "
              f"opset {args.opset}), transformers {transformers.__version__}, onnx {onnx.__version__}; "
              f"self-checked with onnxruntime {ort.__version__}: max abs diff visual "
              f"{max(diffs['visual batch=2'], diffs['visual batch=1']):.1e}, textual "
              f"{max(diffs['textual batch=3'], diffs['textual batch=1']):.1e}")
    if notes:
        source += "; " + "; ".join(notes)
    if args.source_note:
        source += "; " + args.source_note
    manifest = {
        "format_version": 1,
        "name": name,
        "embedding_dim": dim,
        "image_size": image_size,
        "image_mean": pre["image_mean"],
        "image_std": pre["image_std"],
        "resize": "shortest_edge_center_crop",
        "context_length": context_length,
        "logit_scale": logit_scale,
        "random_weights": bool(args.random_weights),
        **({"immich_model": args.immich_model} if args.immich_model else {}),
        "source": source,
    }
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")
    for fn in ("visual.onnx", "textual.onnx", "tokenizer.json", "manifest.json"):
        p = os.path.join(out_dir, fn)
        print(f"wrote {p} ({os.path.getsize(p)} bytes)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ExportError as e:
        print(f"export_onnx.py: error: {e}", file=sys.stderr)
        sys.exit(2)
