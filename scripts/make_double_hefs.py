#!/usr/bin/env python3
"""Fake HEFs for the HailoRT test double that compute the model: each one runs the part of
the model directory's own ONNX graph that the Model Zoo's HEF computes on the device.

    scripts/make_double_hefs.py MODEL_DIR OUT_DIR [--hailo-clip BIN] [--quantize]
                                [--device-cost] [--text-end states|embedding]

MODEL_DIR is a model directory in Immich's layout (config.json, visual/, textual/) or the
flat one (manifest.json, visual.onnx, textual.onnx). Written, as `hailo-clip pull --hef` lays
a pull out: OUT_DIR/hailo/hailo10h/ with

* clip_image_encoder.hef + clip_image_encoder.onnx: the Model Zoo's clip_vit_b_32_image_encoder
  takes the 224x224x3 uint8 image and normalizes it inside (cfg/base/clip.yaml:
  normalize_in_net, the model's mean and std x 255), and gives the projected embedding
  (info.output_shape 1x1x512, before any L2 norm). The graph here: the pixels (NHWC, 0..255)
  transposed, normalized with the model's own mean and std, the model's image graph up to its
  projection (cut before the ReduceL2/Div an Immich export ends with).
* clip_text_encoder.hef + clip_text_encoder.onnx: the Model Zoo's clip_vit_b_32_text_encoder
  (cfg/networks/clip_vit_b_32_text_encoder.yaml: parser nodes Add_1 -> Add_1515, 1x77x512 in
  and out) starts at the Add of the positional embedding, taking the token embeddings, and
  ends at the last hidden states (after ln_final), all 77 rows. The graph here: from the
  output of the Gather that looks the token ids up (the host looks them up instead), to the
  [1, 77, width] tensor the pooling reads (found by walking back from the projection MatMul).
  SigLIP's text encoders (cfg/networks/siglip2_b_32_256_text_encoder.yaml: parser nodes
  /model/embeddings/Add -> 1224, input 1x64x768) start at the same Add; the Zoo's evaluation
  of them (core/postprocessing/text_encoding_postprocess.py, text_encoder_siglip: only an L2
  norm; core/eval/text_retrieval_evaluation.py compares one vector per text) shows that they
  end with the head, the one pooled embedding. `--text-end embedding` cuts there (before the
  L2 norm), for a model pooled at a fixed position; `states` (the default) at the hidden
  states, so that the host's pooling and head are what is tested.
* the text path's files (clip_tokenizer.json, token_embedding_lut.npy, text_projection.npy,
  text_projection_bias.npy for a head with a bias), written by `hailo-clip
  export-text-assets` from the model directory's text graph.

Every boundary is found by its role in the graph, not by node name (exporters rename nodes).

--quantize writes the HEFs' streams in the formats the Zoo's HEFs have (the .alls scripts:
image input uint8, its output 8-bit; text input 16-bit, `quantization_param(input_layer1,
precision_mode=a16_w16)`, and its output, an ew_add, 16-bit) with each stream's range from
calibration inputs, so the host's quantization at the boundaries is what is measured. The
quantization inside a real HEF is the device's and is not modelled.

--device-cost adds the Model Zoo's figures for clip_vit_b_32 on a Hailo-10H (as
scripts/serve-hailo-double.sh uses them).

Needs onnx and numpy (and onnxruntime, pillow for --quantize); scripts/serve-hailo-double.sh
installs them into target/double-venv.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

ARCH = "hailo10h"
# hailo_model_zoo v5.2.0 docs/public_models/HAILO10H (scripts/serve-hailo-double.sh).
DEVICE_COST = {"image": "12.51 1.42", "text": "11.54 8.66"}


def layout(model_dir):
    if os.path.isfile(os.path.join(model_dir, "config.json")) and os.path.isdir(
        os.path.join(model_dir, "visual")
    ):
        with open(os.path.join(model_dir, "visual", "preprocess_cfg.json")) as f:
            cfg = json.load(f)
        size = cfg["size"][0] if isinstance(cfg["size"], list) else cfg["size"]
        return {
            "visual": os.path.join(model_dir, "visual", "model.onnx"),
            "textual": os.path.join(model_dir, "textual", "model.onnx"),
            "mean": cfg["mean"],
            "std": cfg["std"],
            "size": int(size),
        }
    with open(os.path.join(model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    return {
        "visual": os.path.join(model_dir, "visual.onnx"),
        "textual": os.path.join(model_dir, "textual.onnx"),
        "mean": manifest["image_mean"],
        "std": manifest["image_std"],
        "size": int(manifest["image_size"]),
    }


def load(path):
    model = onnx.load(path)
    return shape_inference.infer_shapes(model)


def index(graph):
    producers = {o: n for n in graph.node for o in n.output}
    consts = {t.name: t for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = a.t
    shapes = {}
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return producers, consts, shapes


def back(producers, consts, start, steps=64):
    """Tensors reachable backwards from `start`, breadth first (not through constants)."""
    seen, frontier = [], [start]
    for _ in range(steps):
        nxt = []
        for name in frontier:
            if name in seen:
                continue
            seen.append(name)
            node = producers.get(name)
            if node is not None:
                nxt += [i for i in node.input if i and i not in consts]
        if not nxt:
            break
        frontier = nxt
    return seen


def projection(graph, producers, consts, width):
    """The MatMul (or Gemm) nearest the output whose weight is [width, E]."""
    for name in back(producers, consts, graph.output[0].name):
        node = producers.get(name)
        if node is not None and node.op_type in ("MatMul", "Gemm"):
            w = consts.get(node.input[1])
            if w is not None and len(w.dims) == 2 and width in w.dims:
                return node
    raise SystemExit(f"no projection MatMul of width {width} near the output")


def normalized(graph, producers, consts):
    """The tensor an L2 normalization at the output divides (Immich's exports end with
    x / clip(ReduceL2(x))), or the output itself."""
    out = graph.output[0].name
    node = producers.get(out)
    if node is not None and node.op_type == "Div":
        if any(producers.get(t) is not None and producers[t].op_type == "ReduceL2"
               for t in back(producers, consts, node.input[1], 6)):
            return node.input[0]
    return out


def extract(model, inputs, outputs):
    part = onnx.utils.Extractor(model).extract_model(inputs, outputs)
    # Shapes inferred with a symbolic batch would contradict the fixed batch of 1 set below.
    del part.graph.value_info[:]
    return part


def fix_shape(value_info, dims):
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        shape.dim.add().dim_value = d


def text_part(path, end="states"):
    model = load(path)
    g = model.graph
    producers, consts, shapes = index(g)
    ids = [i.name for i in g.input if i.name not in consts][0]
    gather = next(
        n for n in g.node
        if n.op_type == "Gather" and n.input[0] in consts and len(consts[n.input[0]].dims) == 2
        and ids in back(producers, consts, n.input[1], 6)
    )
    width = consts[gather.input[0]].dims[1]
    context = shapes[ids][-1]
    proj = projection(g, producers, consts, width)
    # The first [N, context, width] tensor back from the projection: the hidden states the
    # pooling reads (shape inference may leave the context dimension unknown).
    hidden = next(
        t for t in back(producers, consts, proj.input[0])
        if len(shapes.get(t, [])) == 3 and shapes[t][2] == width and shapes[t][1] in (context, None)
    )
    if end == "embedding":
        hidden = normalized(g, producers, consts)
    part = extract(model, [gather.output[0]], [hidden])
    # Hugging Face's graphs build the causal mask from the ids' shape: the part keeps that
    # dependence, which a constant of the same shape satisfies (the values are never read
    # past the cut: the lookup is the host's, and the pooling comes after).
    pg = part.graph
    known = {i.name for i in pg.input} | {t.name for t in pg.initializer}
    known |= {o for n in pg.node for o in n.output}
    needed = {i for n in pg.node for i in n.input if i and i not in known}
    for original in g.input:
        if original.name in needed:
            zeros = np.zeros([1, context], helper.tensor_dtype_to_np_dtype(original.type.tensor_type.elem_type))
            pg.node.insert(0, helper.make_node("Constant", [], [original.name],
                                               value=numpy_helper.from_array(zeros)))
    fix_shape(part.graph.input[0], [1, context, width])
    if end == "embedding":
        embed = [d for d in shapes.get(hidden, []) if d][-1]
        fix_shape(part.graph.output[0], [1, embed])
        return part, context, width, embed
    fix_shape(part.graph.output[0], [1, context, width])
    return part, context, width, None


def image_part(path, mean, std, size):
    model = load(path)
    g = model.graph
    producers, consts, shapes = index(g)
    image = [i for i in g.input if i.name not in consts][0]
    out = normalized(g, producers, consts)
    embed = [d for d in shapes.get(out, []) if d][-1]
    part = extract(model, [image.name], [out])
    pg = part.graph
    raw = image.type.tensor_type.elem_type == TensorProto.UINT8
    # The HEF takes the pixels as they are and normalizes in the network.
    pixels = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, size, size, 3])
    nodes = []
    if raw:
        # The graph takes uint8 NHWC and normalizes itself: only the type changes.
        nodes.append(helper.make_node("Cast", ["pixels"], [image.name], to=TensorProto.UINT8))
    else:
        m = numpy_helper.from_array(np.array(mean, np.float32).reshape(1, 3, 1, 1) * 255, "pixel_mean")
        s = numpy_helper.from_array(np.array(std, np.float32).reshape(1, 3, 1, 1) * 255, "pixel_std")
        pg.initializer.extend([m, s])
        nodes += [
            helper.make_node("Transpose", ["pixels"], ["pixels_nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Sub", ["pixels_nchw", "pixel_mean"], ["pixels_centred"]),
            helper.make_node("Div", ["pixels_centred", "pixel_std"], [image.name]),
        ]
    old = list(pg.node)
    del pg.node[:]
    pg.node.extend(nodes + old)
    del pg.input[:]
    pg.input.append(pixels)
    fix_shape(pg.output[0], [1, embed])
    return part, embed


def quant(lo, hi, bits):
    """zp and scale covering [lo, hi] (0 inside) in `bits` unsigned levels."""
    levels = (1 << bits) - 1
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / levels if hi > lo else 1.0
    zp = round(-lo / scale)
    return zp, scale


def calibration_ranges(out, image_onnx, text_onnx, size, repo):
    import onnxruntime as ort
    from PIL import Image

    lut = np.load(os.path.join(out, "token_embedding_lut.npy"))
    text = ort.InferenceSession(text_onnx, providers=["CPUExecutionProvider"])
    tok = json.load(open(os.path.join(out, "clip_tokenizer.json")))
    vocab = tok["model"]["vocab"]
    if not isinstance(vocab, dict):
        raise SystemExit("--quantize calibrates with CLIP's BPE vocabulary; this model has another")
    prompts = ["a photo of a cat", "a cup of coffee on a table", "an astronaut riding a horse",
               "a rocket launch", "the garage door is open", "two dogs playing in the snow"]
    text_lo, text_hi = float(lut.min()), float(lut.max())
    out_lo, out_hi = np.inf, -np.inf
    for p in prompts:
        ids = [49406] + [vocab.get(w + "</w>", 0) for w in p.lower().split()] + [49407]
        ids = (ids + [0] * 77)[:77]
        x = lut[ids][None].astype(np.float32)
        y = text.run(None, {text.get_inputs()[0].name: x})[0]
        out_lo, out_hi = min(out_lo, float(y.min())), max(out_hi, float(y.max()))
    image = ort.InferenceSession(image_onnx, providers=["CPUExecutionProvider"])
    img_lo, img_hi = np.inf, -np.inf
    photos = os.path.join(repo, "tests", "fixtures", "images")
    for name in sorted(os.listdir(photos)):
        if not name.lower().endswith((".png", ".jpg", ".jpeg")):
            continue
        pic = Image.open(os.path.join(photos, name)).convert("RGB").resize((size, size))
        x = np.asarray(pic, np.float32)[None]
        y = image.run(None, {image.get_inputs()[0].name: x})[0]
        img_lo, img_hi = min(img_lo, float(y.min())), max(img_hi, float(y.max()))
    return (text_lo, text_hi), (out_lo, out_hi), (img_lo, img_hi)


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--hailo-clip", default=os.environ.get("HAILO_CLIP_BIN", "hailo-clip"),
                    help="the binary that writes the text files (export-text-assets)")
    ap.add_argument("--quantize", action="store_true")
    ap.add_argument("--device-cost", action="store_true")
    ap.add_argument("--text-end", choices=["states", "embedding"], default="states")
    args = ap.parse_args()

    found = layout(args.model_dir)
    out = os.path.join(args.out_dir, "hailo", ARCH)
    os.makedirs(out, exist_ok=True)
    text, context, width, text_embed = text_part(found["textual"], args.text_end)
    image, embed = image_part(found["visual"], found["mean"], found["std"], found["size"])
    text_onnx = os.path.join(out, "clip_text_encoder.onnx")
    image_onnx = os.path.join(out, "clip_image_encoder.onnx")
    onnx.save(text, text_onnx)
    onnx.save(image, image_onnx)
    subprocess.run(
        [args.hailo_clip, "--model-dir", args.model_dir, "export-text-assets", "--out", out],
        check=True, stdout=subprocess.DEVNULL,
    )

    size = found["size"]
    image_in = f"images {size} {size} 3 uint8 nhwc"
    image_out = f"embedding 1 1 {embed} float32 nc"
    text_in = f"tokens 1 {context} {width} float32 nhwc"
    text_out = f"states 1 {context} {width} float32 nhwc"
    if text_embed is not None:
        text_out = f"embedding 1 1 {text_embed} float32 nc"
    if args.quantize and text_embed is not None:
        raise SystemExit("--quantize is for --text-end states")
    if args.quantize:
        (tl, th), (ol, oh), (il, ih) = calibration_ranges(out, image_onnx, text_onnx, size, repo)
        zp, s = quant(tl, th, 16)
        text_in = f"tokens 1 {context} {width} uint16 nhwc {zp} {s!r}"
        zp, s = quant(ol, oh, 16)
        text_out = f"states 1 {context} {width} uint16 nhwc {zp} {s!r}"
        zp, s = quant(il, ih, 8)
        image_out = f"embedding 1 1 {embed} uint8 nc {zp} {s!r}"
    for name, part, stream_in, stream_out in [
        ("clip_image_encoder", "image", image_in, image_out),
        ("clip_text_encoder", "text", text_in, text_out),
    ]:
        lines = ["hailo-clip-fake-hef 1", f"transform onnx {name}.onnx",
                 f"input {stream_in}", f"output {stream_out}"]
        if args.device_cost:
            lines.append(f"device_cost {DEVICE_COST[part]}")
        with open(os.path.join(out, f"{name}.hef"), "w") as f:
            f.write("\n".join(lines) + "\n")
    print(f"{out}: clip_image_encoder.hef ({size} px in, {embed} out), "
          f"clip_text_encoder.hef ({context}x{width}), text files"
          + (", quantized streams" if args.quantize else ""))


if __name__ == "__main__":
    sys.exit(main())
