#!/usr/bin/env python3
"""Generate the committed test fixtures of hailo-clip (deterministic; fixed seeds).

Usage:
    python3 scripts/make_fixture.py [--open-clip-wheel PATH] [--reference-tokenizer DIR]

Writes (replacing previous contents):
    tests/fixtures/hf-clip-tiny-random/   tiny random CLIPModel (quick_gelu) + tokenizer + image processor
    assets/models/clip-tiny-random/       the above exported with scripts/export_onnx.py
    tests/fixtures/clip-tiny-gelu/        a smaller random CLIP (gelu) exported the same way (no HF checkpoint)
    tests/fixtures/images/                photos from scikit-image + generated WebP / EXIF / alpha variants
    tests/fixtures/golden/                transformers (fp32) reference outputs, see scripts/README.md

The CLIP BPE tokenizer is built from open_clip's bpe_simple_vocab_16e6.txt.gz (open_clip_torch wheel
from PyPI), exactly like OpenAI's SimpleTokenizer, and cross-checked against a reference tokenizer
directory (vocab.json / merges.txt / tokenizer.json) when one is available.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import importlib.metadata
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
HF_TINY = os.path.join(FIX, "hf-clip-tiny-random")
ASSET_TINY = os.path.join(ROOT, "assets", "models", "clip-tiny-random")
GELU_OUT = os.path.join(FIX, "clip-tiny-gelu")
IMG_DIR = os.path.join(FIX, "images")
GOLD = os.path.join(FIX, "golden")
EXPORTER = os.path.join(ROOT, "scripts", "export_onnx.py")

OPEN_CLIP_VERSION = "3.3.0"
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
CONTEXT = 77
SOT, EOT = 49406, 49407
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# Random weights: transformers' CLIP init makes the pooled CLS output of a tiny random vision tower
# almost image-independent (cosine > 0.99 between unrelated photos). We therefore re-draw every
# weight matrix / embedding from N(0, REINIT_STD), every bias from N(0, REINIT_BIAS_STD), LayerNorm
# gammas from 1 + N(0, LN_GAMMA_STD) and betas from N(0, LN_BETA_STD) (so LayerNorm parameters are
# exercised too); logit_scale stays at its init value. The vision class embedding and the CLS
# position embedding are zeroed so that the CLS token is purely what it gathers from the patches.
REINIT_STD = 0.3
REINIT_BIAS_STD = 0.02
LN_GAMMA_STD = 0.2
LN_BETA_STD = 0.05
MAX_DISTINCT_IMAGE_COSINE = 0.95

TOKEN_EMBEDDING_ROW_IDS = [0, 1, 320, 1929, 49406, 49407]


def json_line(obj) -> str:
    """json.dumps keeping readable Unicode, but escaping invisible / line-breaking code points
    (format, control, separators such as U+2028, U+202E, U+FEFF, U+200D) so every entry stays on one
    visible line."""
    import unicodedata

    s = json.dumps(obj, ensure_ascii=False)
    return "".join(f"\\u{ord(c):04x}" if c != " " and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Zs")
                   and ord(c) <= 0xFFFF else c for c in s)


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------------

def bytes_to_unicode() -> dict[int, str]:
    """OpenAI CLIP's byte -> unicode table (verbatim algorithm from simple_tokenizer.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def find_bpe_gz(wheel_arg: str | None) -> tuple[bytes, str]:
    """Return (gz bytes, description of where it came from)."""
    if wheel_arg:
        with zipfile.ZipFile(wheel_arg) as z:
            return z.read(BPE_MEMBER), f"{os.path.basename(wheel_arg)}:{BPE_MEMBER}"
    try:  # installed (e.g. `pip install --no-deps open_clip_torch`); located without importing it
        dist = importlib.metadata.distribution("open_clip_torch")
        path = dist.locate_file(BPE_MEMBER)
        with open(path, "rb") as f:
            return f.read(), f"open_clip_torch {dist.version} (installed):{BPE_MEMBER}"
    except (importlib.metadata.PackageNotFoundError, FileNotFoundError):
        pass
    tmp = tempfile.mkdtemp(prefix="open_clip_whl_")
    log(f"downloading open_clip_torch=={OPEN_CLIP_VERSION} wheel (no deps) with pip into {tmp}")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    f"open_clip_torch=={OPEN_CLIP_VERSION}", "-d", tmp], check=True)
    whl = [f for f in os.listdir(tmp) if f.endswith(".whl")][0]
    with zipfile.ZipFile(os.path.join(tmp, whl)) as z:
        data = z.read(BPE_MEMBER)
    shutil.rmtree(tmp, ignore_errors=True)
    return data, f"{whl}:{BPE_MEMBER}"


def build_vocab_merges(gz: bytes) -> tuple[dict[str, int], list[tuple[str, str]]]:
    lines = gzip.decompress(gz).decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    enc = {v: i for i, v in enumerate(vocab)}
    assert len(enc) == len(vocab) == 49408, len(enc)
    assert all(len(m) == 2 for m in merges)
    assert enc["<|startoftext|>"] == SOT and enc["<|endoftext|>"] == EOT
    return enc, merges


def build_tokenizer(gz: bytes):
    from tokenizers import AddedToken
    from transformers import CLIPTokenizerFast

    enc, merges = build_vocab_merges(gz)
    tmp = tempfile.mkdtemp(prefix="clip_bpe_")
    with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(enc, f, ensure_ascii=False)
    with open(os.path.join(tmp, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.write("".join(f"{a} {b}\n" for a, b in merges))
    # NB: in transformers 5 CLIPTokenizerFast(vocab_file=..., merges_file=...) silently ignores the
    # files (the constructor takes vocab=/merges=), so load the directory with from_pretrained, which
    # works on transformers 4 and 5 alike.
    # <|startoftext|> is a "normalized" added token in the reference HF CLIP tokenizer (so it also
    # matches case-insensitively, like OpenAI's tokenizer which lowercases first); mirror that.
    tok = CLIPTokenizerFast.from_pretrained(
        tmp, model_max_length=CONTEXT,
        bos_token=AddedToken("<|startoftext|>", normalized=True, special=True, lstrip=False, rstrip=False,
                             single_word=False))
    shutil.rmtree(tmp, ignore_errors=True)
    assert len(tok) == 49408, len(tok)
    assert tok.convert_tokens_to_ids("<|startoftext|>") == SOT and tok.bos_token_id == SOT
    assert tok.convert_tokens_to_ids("<|endoftext|>") == EOT and tok.eos_token_id == EOT
    assert tok.pad_token_id == EOT
    return tok, enc, merges


def clean_tokenizer_json(tok) -> str:
    """Compact tokenizer.json text of tok's backend with no padding / truncation configured
    (calling a transformers tokenizer with padding=... leaves that state on its backend)."""
    from tokenizers import Tokenizer

    t = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    t.no_padding()
    t.no_truncation()
    return t.to_str(pretty=False)


def encode(tok, texts):
    out = tok(list(texts), padding="max_length", max_length=CONTEXT, truncation=True)["input_ids"]
    for ids in out:
        assert len(ids) == CONTEXT and ids[0] == SOT and EOT in ids
    return out


def cross_check_tokenizer(tok, enc, merges, ref_dir, all_texts) -> str:
    from transformers import CLIPTokenizerFast

    if not ref_dir or not os.path.isdir(ref_dir):
        log(f"reference tokenizer dir {ref_dir!r} not found: skipping the cross-check")
        return "not cross-checked (reference tokenizer directory absent)"
    with open(os.path.join(ref_dir, "vocab.json"), encoding="utf-8") as f:
        ref_vocab = json.load(f)
    with open(os.path.join(ref_dir, "merges.txt"), encoding="utf-8") as f:
        ref_lines = f.read().split("\n")
    assert ref_lines[0].startswith("#version"), ref_lines[0]
    ref_merges = [tuple(l.split()) for l in ref_lines[1:] if l.strip()]
    assert ref_vocab == enc, "built vocab differs from reference vocab.json"
    assert ref_merges == merges, "built merges differ from reference merges.txt"
    assert ref_vocab["<|startoftext|>"] == SOT and ref_vocab["<|endoftext|>"] == EOT
    backend = json.loads(tok.backend_tokenizer.to_str())["model"]
    assert backend["vocab"] == ref_vocab, "backend vocab differs"
    assert [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in backend["merges"]] == ref_merges
    ref_json_path = os.path.join(ref_dir, "tokenizer.json")
    if os.path.isfile(ref_json_path):
        with open(ref_json_path, encoding="utf-8") as f:
            ref_json = json.load(f)
        built_json = json.loads(clean_tokenizer_json(tok))
        diff = [k for k in set(ref_json) | set(built_json) if ref_json.get(k) != built_json.get(k)]
        assert not diff, f"built tokenizer.json differs from the reference in {diff}"
    ref_tok = CLIPTokenizerFast.from_pretrained(ref_dir)
    a = encode(tok, all_texts)
    b = encode(ref_tok, all_texts)
    bad = [t for t, x, y in zip(all_texts, a, b) if x != y]
    assert not bad, f"token ids differ from the reference tokenizer on {len(bad)} strings, e.g. {bad[:3]!r}"
    # and without padding / truncation
    a = tok(list(all_texts))["input_ids"]
    b = ref_tok(list(all_texts))["input_ids"]
    assert a == b, "unpadded token ids differ from the reference tokenizer"
    msg = (f"vocab, merges, tokenizer.json content and token ids on {len(all_texts)} strings identical "
           f"to the reference HF OpenAI CLIP tokenizer")
    log("tokenizer cross-check: " + msg)
    return msg


# ---------------------------------------------------------------------------------------------
# golden strings
# ---------------------------------------------------------------------------------------------

LONG_1 = ("a very detailed photograph of a small grey tabby cat sitting on a wooden windowsill next to a "
          "potted plant, with warm afternoon sunlight streaming through the glass, dust particles floating "
          "in the air, an old bookshelf in the blurry background, a red woollen blanket folded on a chair, "
          "and a steaming cup of coffee on a saucer placed carefully on the corner of the table, while rain "
          "begins to fall softly on the roof and a distant dog barks twice in the quiet evening")
LONG_2 = "cat " * 100
LONG_3 = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
          "et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut "
          "aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse.")
LONG_4 = "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40"
LONG_5 = "🐱" * 40
LONG_6 = "一只猫坐在窗台上看着外面的雨，旁边放着一杯热咖啡和一本打开的书，阳光透过玻璃照进房间。" * 2
LONG_7 = ", ".join(["red", "green", "blue", "yellow", "purple", "orange", "black", "white"] * 6)

TEXT_PROMPTS = [
    "a photo of a cat",
    "",
    LONG_1,
    "🐱 一只猫的照片 — café, фото кошки",
    "a photo of a dog",
    "a photo of a cup of coffee",
    "an astronaut in a white space suit",
    "A black-and-white photograph of a man with a camera.",
    "a rocket launching into the sky",
    "the company logo, on a white background",
    "a close-up photo of a human retina",
    "A PHOTO OF A CAT",
    "une photo d'un chat à Paris",
    "猫の写真",
    "صورة قطة",
    "фотография кошки",
    "  lots   of\twhite\nspace  ",
    LONG_2,
    "a photo of <|endoftext|> a cat",
    "3.14159 and 42 and 1,000,000",
    "https://example.com/cat.jpg?size=224&x=1",
    "x",
    "cafe\u0301 nai\u0308ve re\u0301sume\u0301",
    "&amp; &lt;html&gt; entities &quot;quoted&quot;",
]

HAND_STRINGS = [
    "", " ", "  ", "\t", "\n", "a", "A", "z", "0", "7", ".", "!", "?", "'", "\"", "-", "_", "@", "#", "$",
    "é", "ß", "猫", "🐱", "\u0301", "<", ">", "|",
    "a photo of a cat", "a photo of a dog", "A Photo Of A Cat", "a PHOTO of a CAT", "aPhOtOoFaCaT",
    "a photo of a {}.", "a bad photo of the cat.", "a cropped photo of a dog.", "itap of a bird.",
    "a sculpture of a horse.", "a tattoo of a rose.", "the origami frog.", "a pixelated photo of a car.",
    "cat", "cats", "cat's toy", "the cat's", "they're", "we've", "I'm", "you'll", "he'd", "don't", "can't",
    "it's 5 o'clock", "rock'n'roll", "O'Neill's pub",
    "Hello, world!", "Hello,world!", "hello...world", "wait -- what?!", "(parenthesised) [bracketed] {braced}",
    "semi;colon:colon", "a/b\\c", "50% off!!!", "#hashtag @mention", "e-mail: john.doe@example.org",
    "3.14159", "1,000,000", "2024-01-31", "12:30pm", "-42", "+1 (555) 123-4567", "0.5 0.25 0.125",
    "1st 2nd 3rd 4th", "v1.2.3-rc1", "1e-10", "0x1F", "½ ⅓ ¼", "٣٤٥", "①②③",
    "https://example.com/cat.jpg", "http://www.example.org/a/b?c=d&e=f#frag", "ftp://host/path",
    "www.github.com", "file:///tmp/x.png",
    "🐱🐶🚀", "I ❤️ NY", "👍🏽 thumbs up", "👨‍👩‍👧‍👦 family", "🇫🇷 flag", "☕ coffee time", "★☆✓✗",
    "café", "naïve", "résumé", "Ångström", "Zürich", "São Paulo", "Łódź", "Ærøskøbing", "Straße", "İstanbul",
    "ÉCOLE ÉLÉMENTAIRE", "ÀÉÎÕÜ àéîõü",
    "cafe\u0301", "nai\u0308ve", "e\u0301\u0301", "a\u0300\u0301\u0302", "n\u0303",
    "猫", "一只猫的照片", "東京タワー", "한국어 문장", "中文 English 混合", "日本語のテキストです。",
    "صورة قطة", "مرحبا بالعالم", "שלום עולם", "Привет, мир!", "ФОТОГРАФИЯ КОШКИ", "Ελληνικά γράμματα",
    "हिन्दी पाठ", "ไทย", "Tiếng Việt có dấu",
    "lots   of   spaces", "tab\tseparated\tvalues", "new\nline", "carriage\r\nreturn", "  leading",
    "trailing  ", "\t\n mixed \t\n whitespace \t\n", "non\u00a0breaking\u00a0space", "zero\u200bwidth",
    "em\u2003space", "ideographic\u3000space",
    "&amp;", "&lt;b&gt;bold&lt;/b&gt;", "&quot;quoted&quot;", "&#39;apostrophe&#39;", "&nbsp;", "&eacute;",
    "<b>html</b>", "<img src=\"x.png\">",
    "<|endoftext|>", "<|startoftext|>", "a photo <|endoftext|> of a cat", "<|endoftext|><|endoftext|>",
    "x<|endoftext|>y", "<|startoftext|>a photo of a cat<|endoftext|>", "<|ENDOFTEXT|>", "< |endoftext| >",
    "<|endoftext", "endoftext", "</w>", "a</w>b", "<|STARTOFTEXT|>", "a <|StartOfText|> b",
    "<|EndOfText|> case", "x <|startoftext|>y<|endoftext|>z",
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "abababababababababababab",
    "CamelCaseIdentifier", "snake_case_identifier", "kebab-case-identifier", "SCREAMING_SNAKE",
    "x" * 200, "a " * 80, "the quick brown fox jumps over the lazy dog",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG", "Pack my box with five dozen liquor jugs.",
    "\x00", "\x07bell", "\u202eright-to-left override", "\ufeffBOM", "\ud7ff", "\U0001F600",
    "\u2028line separator", "\ufffd replacement",
    LONG_1, LONG_2, LONG_3, LONG_4, LONG_5, LONG_6, LONG_7,
]

WORDS_EN = ["photo", "picture", "image", "drawing", "painting", "sketch", "render", "cat", "dog", "bird",
            "car", "tree", "house", "mountain", "river", "city", "street", "person", "woman", "man", "child",
            "coffee", "cup", "rocket", "astronaut", "camera", "logo", "retina", "flower", "beach", "sunset",
            "red", "blue", "green", "small", "large", "old", "new", "bright", "dark", "blurry", "sharp",
            "of", "a", "the", "in", "on", "with", "and", "at", "near", "under", "very", "two", "three"]
WORDS_INTL = ["café", "naïve", "Straße", "猫", "写真", "東京", "서울", "кошка", "фото", "قطة", "صورة",
              "γάτα", "बिल्ली", "mèo", "gato", "chien", "Hund", "🐱", "🚀", "☕", "🌅", "😀"]
PUNCT = [",", ".", "!", "?", ";", ":", "-", "--", "...", "'s", "'", "\"", "(", ")", "/", "&", "#", "%", "+", "="]
SPACES = [" ", " ", " ", " ", "  ", "\t", "\n", " \n "]


def random_strings(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.choice([1, 2, 3, 5, 8, 12, 20, 40, 70])
        parts = []
        for _ in range(k):
            r = rng.random()
            if r < 0.62:
                w = rng.choice(WORDS_EN)
            elif r < 0.78:
                w = rng.choice(WORDS_INTL)
            elif r < 0.90:
                w = rng.choice(PUNCT)
            else:
                w = str(rng.choice([rng.randint(0, 9), rng.randint(10, 99999), round(rng.uniform(0, 100), 3)]))
            case = rng.random()
            if case < 0.15:
                w = w.upper()
            elif case < 0.3:
                w = w.capitalize()
            parts.append(w)
            parts.append(rng.choice(SPACES) if rng.random() < 0.85 else "")
        s = "".join(parts)
        if i % 9 == 0:
            s = s.strip()
        out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------

def make_model(act: str, hidden: int, inter: int, layers: int, heads: int, proj: int, seed: int):
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    text = dict(vocab_size=49408, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                num_attention_heads=heads, max_position_embeddings=CONTEXT, eos_token_id=EOT,
                bos_token_id=SOT, pad_token_id=EOT, hidden_act=act)
    vision = dict(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                  num_attention_heads=heads, image_size=224, patch_size=32, num_channels=3, hidden_act=act)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=proj)
    model = CLIPModel(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if "layer_norm" in name or "layrnorm" in name:
                p.copy_(1 + LN_GAMMA_STD * noise if name.endswith("weight") else LN_BETA_STD * noise)
            else:
                p.copy_(noise * (REINIT_BIAS_STD if name.endswith("bias") else REINIT_STD))
        model.vision_model.embeddings.class_embedding.zero_()
        model.vision_model.embeddings.position_embedding.weight[0].zero_()
    return model


def save_hf_dir(model, tok, processor, path):
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    processor.save_pretrained(path)
    # compact tokenizer.json (same content as save_pretrained's pretty-printed one, ~half the size and
    # byte-identical to the exported model directories' tokenizer.json)
    with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(clean_tokenizer_json(tok))


def run_exporter(hf_dir, out_dir, name):
    cmd = [sys.executable, EXPORTER, "--hf-dir", hf_dir, "--out", out_dir, "--name", name, "--random-weights",
           "--source-note", "random test weights generated by scripts/make_fixture.py"]
    log("$ " + " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    for line in (r.stdout + r.stderr).splitlines():
        log("    | " + line)
    if r.returncode != 0:
        raise SystemExit(f"export_onnx.py failed for {name} (exit {r.returncode})")
    return r.stdout


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------

def make_images():
    import numpy as np
    from PIL import Image, ImageOps
    import skimage

    src = os.path.join(os.path.dirname(skimage.__file__), "data")
    os.makedirs(IMG_DIR, exist_ok=True)
    entries = []

    def copy(name, kind):
        shutil.copyfile(os.path.join(src, name), os.path.join(IMG_DIR, name))
        entries.append({"file": name, "kind": kind, "source": f"scikit-image {skimage.__version__} skimage/data/{name}"})

    # order matters: goldens are stored in this order; the gelu goldens use the first two
    copy("chelsea.png", "png_rgb_nonsquare")
    copy("camera.png", "png_grayscale")
    copy("coffee.png", "png_rgb_nonsquare")
    copy("astronaut.png", "png_rgb_square")
    logo = Image.open(os.path.join(src, "logo.png"))
    assert logo.mode == "RGBA", logo.mode
    copy("logo.png", "png_rgba_opaque")  # RGBA, but its alpha channel is 255 everywhere
    copy("rocket.jpg", "jpeg_rgb_nonsquare")
    copy("retina.jpg", "jpeg_rgb_square_large")

    chelsea = Image.open(os.path.join(src, "chelsea.png")).convert("RGB")
    webp = os.path.join(IMG_DIR, "chelsea.webp")
    chelsea.save(webp, format="WEBP", lossless=True, quality=100, method=6, exact=True)
    assert np.array_equal(np.asarray(Image.open(webp).convert("RGB")), np.asarray(chelsea)), "webp not lossless"
    entries.append({"file": "chelsea.webp", "kind": "webp_lossless_rgb",
                    "source": "chelsea.png re-encoded as lossless WebP with Pillow (pixels identical)"})

    rocket = Image.open(os.path.join(src, "rocket.jpg")).convert("RGB")
    stored = rocket.transpose(Image.Transpose.ROTATE_90)  # 90 deg counter-clockwise; EXIF 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    exif_path = os.path.join(IMG_DIR, "rocket_exif6.jpg")
    stored.save(exif_path, format="JPEG", quality=90, exif=exif.tobytes())
    chk = Image.open(exif_path)
    assert chk.getexif().get(0x0112) == 6 and chk.size == (rocket.height, rocket.width)
    upright = ImageOps.exif_transpose(chk)
    assert upright.size == rocket.size
    mad = float(np.abs(np.asarray(upright, np.float32) - np.asarray(rocket, np.float32)).mean())
    assert mad < 4.0, f"exif_transpose result does not match the upright rocket (mean abs diff {mad})"
    entries.append({"file": "rocket_exif6.jpg", "kind": "jpeg_exif_orientation_6", "exif_transpose": True,
                    "source": "rocket.jpg rotated 90 deg counter-clockwise, saved as JPEG q90 with EXIF "
                              "Orientation=6; upright after applying the orientation"})

    # real transparency: alpha ramps 0..255 left to right, plus a fully transparent box top-left.
    # The RGB under transparent pixels keeps the photo's colours, so dropping alpha instead of
    # compositing on white gives a visibly different result.
    a = np.asarray(chelsea).copy()
    h, w = a.shape[:2]
    alpha = np.tile(np.linspace(0, 255, w).round().astype(np.uint8), (h, 1))
    alpha[: h // 3, : w // 3] = 0
    rgba = Image.fromarray(np.dstack([a, alpha]))
    assert rgba.mode == "RGBA"
    rgba.save(os.path.join(IMG_DIR, "chelsea_alpha.png"), optimize=True)
    entries.append({"file": "chelsea_alpha.png", "kind": "png_rgba_translucent",
                    "source": "chelsea.png with a generated alpha channel (horizontal ramp 0..255, transparent "
                              "top-left third); transformers composites it onto white"})
    for e in entries:
        e.setdefault("exif_transpose", False)
        im = Image.open(os.path.join(IMG_DIR, e["file"]))
        e["mode"], e["width"], e["height"] = im.mode, im.width, im.height
    return entries


def load_image(entry):
    from PIL import Image, ImageOps

    img = Image.open(os.path.join(IMG_DIR, entry["file"]))
    if entry["exif_transpose"]:
        img = ImageOps.exif_transpose(img)
    return img


def manual_pixels(img, size=224, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD):
    """Independent re-implementation of the PIL CLIP preprocessing (documents the algorithm)."""
    import numpy as np
    from PIL import Image

    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(bg, rgba).convert("RGB")
    else:
        rgb = img.convert("RGB")
    w, h = rgb.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    nw, nh = (size, new_long) if w <= h else (new_long, size)
    arr = np.asarray(rgb.resize((nw, nh), Image.Resampling.BICUBIC))
    top, left = (nh - size) // 2, (nw - size) // 2
    arr = arr[top:top + size, left:left + size]
    x = (arr.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    return x.transpose(2, 0, 1)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description="generate hailo-clip test fixtures")
    ap.add_argument("--open-clip-wheel", default=None,
                    help="path to an open_clip_torch wheel (default: installed package, else pip download)")
    ap.add_argument("--reference-tokenizer", default=os.path.join(os.path.dirname(ROOT), "shared", "clip-tokenizer"),
                    help="OpenAI CLIP tokenizer dir to cross-check against (skipped if absent)")
    args = ap.parse_args()
    t_start = time.time()

    import numpy as np
    import onnx
    import onnxruntime as ort
    import PIL
    import safetensors
    import skimage
    import tokenizers
    import torch
    import transformers
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)

    for d in (HF_TINY, ASSET_TINY, GELU_OUT, IMG_DIR, GOLD):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)

    def save_npy(name, arr, dtype):
        arr = np.ascontiguousarray(np.asarray(arr).astype(dtype))
        np.save(os.path.join(GOLD, name), arr)
        return arr

    def save_json(name, obj, indent=1):
        with open(os.path.join(GOLD, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=indent)
            f.write("\n")

    # ---- tokenizer
    gz, gz_src = find_bpe_gz(args.open_clip_wheel)
    gz_sha = hashlib.sha256(gz).hexdigest()
    log(f"BPE merges from {gz_src} (sha256 {gz_sha})")
    tok, enc, merges = build_tokenizer(gz)

    token_strings = list(dict.fromkeys(HAND_STRINGS + TEXT_PROMPTS + random_strings(140, seed=20240531)))
    assert len(token_strings) >= 220, len(token_strings)
    xcheck = cross_check_tokenizer(tok, enc, merges, args.reference_tokenizer, token_strings)
    token_ids = encode(tok, token_strings)
    with open(os.path.join(GOLD, "tokens.json"), "w", encoding="utf-8") as f:  # one entry per line
        f.write("[\n" + ",\n".join(json_line({"text": t, "ids": ids})
                                     for t, ids in zip(token_strings, token_ids)) + "\n]\n")
    with open(os.path.join(GOLD, "tokens.json"), encoding="utf-8") as f:
        assert json.load(f) == [{"text": t, "ids": ids} for t, ids in zip(token_strings, token_ids)]
    n_trunc = sum(1 for t in token_strings if len(tok(t)["input_ids"]) > CONTEXT)
    log(f"tokens.json: {len(token_strings)} strings ({n_trunc} longer than {CONTEXT} tokens, truncated)")

    # ---- images + preprocessing (PIL backend of transformers' CLIP image processor)
    processor = CLIPImageProcessorPil()  # OpenAI defaults: shortest_edge 224, center crop 224, bicubic
    assert processor.backend == "pil"
    images = make_images()
    pixels = []
    for e in images:
        pv = processor(images=load_image(e), return_tensors="np")["pixel_values"][0].astype(np.float32)
        assert pv.shape == (3, 224, 224), pv.shape
        manual = manual_pixels(load_image(e))
        d = float(np.abs(pv - manual).max())
        assert d <= 1e-6, f"{e['file']}: transformers preprocessing differs from the manual PIL pipeline by {d}"
        pixels.append(pv)
    pixels = np.stack(pixels)
    for name in ("chelsea", "camera", "logo", "chelsea_alpha"):
        idx = [i for i, e in enumerate(images) if os.path.splitext(e["file"])[0] == name and e["file"].endswith(".png")][0]
        save_npy(f"pixel_values_{name}.npy", pixels[idx], np.float32)
    save_json("images.json", images)
    log(f"images: {len(images)} files; preprocessing matches the manual PIL pipeline (<=1e-6)")

    # ---- main tiny model (quick_gelu)
    model = make_model("quick_gelu", hidden=32, inter=64, layers=2, heads=2, proj=32, seed=0)
    save_hf_dir(model, tok, processor, HF_TINY)
    # reload from disk so the goldens come from exactly what is committed
    from transformers import CLIPModel
    model = CLIPModel.from_pretrained(HF_TINY, attn_implementation="eager").float().eval()

    prompt_ids = np.array(encode(tok, TEXT_PROMPTS), dtype=np.int64)
    n_long = sum(1 for t in TEXT_PROMPTS if len(tok(t)["input_ids"]) > CONTEXT)
    assert n_long >= 2 and len(tok(TEXT_PROMPTS[2])["input_ids"]) > CONTEXT, n_long
    ids_t = torch.from_numpy(prompt_ids)
    eot_hidden = model.text_model(input_ids=ids_t).pooler_output
    text_embeds = model.text_projection(eot_hidden)
    image_embeds = model.visual_projection(model.vision_model(pixel_values=torch.from_numpy(pixels)).pooler_output)
    # cross-check the explicit expressions against the stock CLIPModel forward
    out = model(input_ids=ids_t[:3], pixel_values=torch.from_numpy(pixels[:2]))
    # (CLIPModel.forward returns L2-normalized embeddings)
    assert torch.allclose(out.text_embeds, text_embeds[:3] / text_embeds[:3].norm(dim=-1, keepdim=True), atol=1e-5)
    assert torch.allclose(out.image_embeds, image_embeds[:2] / image_embeds[:2].norm(dim=-1, keepdim=True), atol=1e-5)

    save_json("text_prompts.json", TEXT_PROMPTS)
    save_npy("text_input_ids.npy", prompt_ids, np.int64)
    save_npy("text_embeds.npy", text_embeds.numpy(), np.float32)
    save_npy("text_eot_hidden.npy", eot_hidden.numpy(), np.float32)
    save_npy("image_embeds.npy", image_embeds.numpy(), np.float32)
    proj = save_npy("text_projection.npy", model.text_projection.weight.detach().numpy().T, np.float32)
    assert np.abs(eot_hidden.numpy() @ proj - text_embeds.numpy()).max() < 1e-5
    save_json("token_embedding_row_ids.json", TOKEN_EMBEDDING_ROW_IDS, indent=None)
    save_npy("token_embedding_rows.npy",
             model.text_model.embeddings.token_embedding.weight.detach().numpy()[TOKEN_EMBEDDING_ROW_IDS], np.float32)

    # distinctness of the random model's image embeddings
    e = image_embeds.numpy()
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    cos = e @ e.T
    distinct = [i for i, x in enumerate(images) if x["file"] not in ("chelsea.webp", "chelsea_alpha.png", "rocket_exif6.jpg")]
    sub = cos[np.ix_(distinct, distinct)]
    np.fill_diagonal(sub, -1.0)
    max_cos = float(sub.max())
    i, j = np.unravel_index(sub.argmax(), sub.shape)
    webp_i = [i for i, x in enumerate(images) if x["file"] == "chelsea.webp"][0]
    log(f"image embeddings: max cosine between distinct photos {max_cos:.4f} "
        f"({images[distinct[i]]['file']} vs {images[distinct[j]]['file']}), mean "
        f"{float(sub[sub > -1].mean()):.4f}; chelsea.png vs .webp {cos[0, webp_i]:.6f}")
    assert max_cos < MAX_DISTINCT_IMAGE_COSINE, max_cos
    t = text_embeds.numpy()
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    tc = t @ t.T
    differ = (prompt_ids[:, None, :] != prompt_ids[None, :, :]).any(-1)  # pairs with different token ids
    log(f"text embeddings: max cosine between prompts with different ids {float(tc[differ].max()):.4f}")

    # ---- export
    export_log = {}
    export_log["clip-tiny-random"] = run_exporter(HF_TINY, ASSET_TINY, "clip-tiny-random")

    # ---- gelu variant (HF checkpoint only in a temp dir)
    gelu = make_model("gelu", hidden=16, inter=32, layers=1, heads=2, proj=16, seed=1)
    tmp = tempfile.mkdtemp(prefix="gelu_")
    gelu_hf = os.path.join(tmp, "clip-tiny-gelu")
    save_hf_dir(gelu, tok, processor, gelu_hf)
    gelu = CLIPModel.from_pretrained(gelu_hf, attn_implementation="eager").float().eval()
    export_log["clip-tiny-gelu"] = run_exporter(gelu_hf, GELU_OUT, "clip-tiny-gelu")
    shutil.rmtree(tmp, ignore_errors=True)
    g_ids = torch.from_numpy(prompt_ids[:4])
    g_pix = torch.from_numpy(pixels[:2])
    g_text = gelu.text_projection(gelu.text_model(input_ids=g_ids).pooler_output)
    g_img = gelu.visual_projection(gelu.vision_model(pixel_values=g_pix).pooler_output)
    save_npy("gelu_text_embeds.npy", g_text.numpy(), np.float32)
    save_npy("gelu_image_embeds.npy", g_img.numpy(), np.float32)
    save_npy("gelu_text_input_ids.npy", prompt_ids[:4], np.int64)
    save_json("gelu_inputs.json", {
        "text_prompts": TEXT_PROMPTS[:4],
        "text_input_ids": "gelu_text_input_ids.npy (= text_input_ids.npy[:4])",
        "images": [images[0]["file"], images[1]["file"]],
        "pixel_values": ["pixel_values_chelsea.npy", "pixel_values_camera.npy"],
    })
    assert images[0]["file"] == "chelsea.png" and images[1]["file"] == "camera.png"

    # ---- ONNX (onnxruntime) vs goldens on the real inputs
    ort_diffs = {}
    for label, mdir, ids_np, pix_np, t_ref, i_ref in (
        ("clip-tiny-random", ASSET_TINY, prompt_ids, pixels, text_embeds.numpy(), image_embeds.numpy()),
        ("clip-tiny-gelu", GELU_OUT, prompt_ids[:4], pixels[:2], g_text.numpy(), g_img.numpy()),
    ):
        sv = ort.InferenceSession(os.path.join(mdir, "visual.onnx"), providers=["CPUExecutionProvider"])
        st = ort.InferenceSession(os.path.join(mdir, "textual.onnx"), providers=["CPUExecutionProvider"])
        di = float(np.abs(sv.run(None, {"pixel_values": pix_np})[0] - i_ref).max())
        dt = float(np.abs(st.run(None, {"input_ids": ids_np})[0] - t_ref).max())
        ort_diffs[label] = {"visual_max_abs_diff": di, "textual_max_abs_diff": dt}
        ops = {}
        for part in ("visual", "textual"):
            m = onnx.load(os.path.join(mdir, f"{part}.onnx"))
            ops[part] = sorted({n.op_type for n in m.graph.node})
            log(f"{label}/{part}.onnx opset {m.opset_import[0].version} ops: {' '.join(ops[part])}")
        log(f"{label}: onnxruntime vs goldens on fixture inputs: visual {di:.3e}, textual {dt:.3e}")
        assert di <= 1e-4 and dt <= 1e-4
        # tokenizer.json of the exported dir encodes like the built tokenizer
        rt = tokenizers.Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
        for s, ids in zip(token_strings, token_ids):
            got = rt.encode(s).ids
            got = (got[:CONTEXT - 1] + [EOT]) if len(got) > CONTEXT else got
            assert got + [EOT] * (CONTEXT - len(got)) == ids, s

    versions = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "scikit-image": skimage.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "bpe_source": gz_src,
        "bpe_sha256": gz_sha,
        "tokenizer_cross_check": xcheck,
        "image_processor": "transformers CLIPImageProcessorPil (PIL backend, "
                           "transformers.models.clip.image_processing_pil_clip); OpenAI defaults: "
                           "shortest_edge 224 (long side int(224*long/short)), bicubic, center crop 224 "
                           "(offset (size-224)//2), RGBA composited onto white, x/255, (x-mean)/std",
        "random_init": f"CLIPModel(config) after torch.manual_seed(seed) (seed 0 tiny-random, 1 gelu), then "
                       f"with a torch.Generator seeded the same, in named_parameters order: weights/embeddings "
                       f"N(0,{REINIT_STD}), biases N(0,{REINIT_BIAS_STD}), LayerNorm gamma 1+N(0,{LN_GAMMA_STD}), "
                       f"beta N(0,{LN_BETA_STD}); logit_scale kept at init (2.6592); vision class_embedding "
                       f"and position_embedding[0] zeroed",
        "onnxruntime_vs_golden": ort_diffs,
    }
    save_json("versions.json", versions, indent=2)
    log(f"done in {time.time() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
