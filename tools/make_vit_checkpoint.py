#!/usr/bin/python3
"""Write a random, ViT-B/16-sized timm checkpoint (or a BERT-base-sized Hugging
Face one) for load / merge / forward timings.

Usage (numpy only; no torch, no safetensors package):

    /usr/bin/python3 tools/make_vit_checkpoint.py OUT.safetensors [--seed S]
        [--arch vit|bert] [--depth 12] [--dim 768] [--heads 12] [--mlp-ratio 4]
        [--img-size 224] [--patch 16] [--num-classes 1000] [--vocab 30522] [--m2pt]

Writes an F32 safetensors file with timm VisionTransformer names:
cls_token [1,1,dim], pos_embed [1,(img/patch)^2+1,dim],
patch_embed.proj.weight [dim,3,patch,patch] / .bias, blocks.{i}.norm1,
attn.qkv [3*dim,dim], attn.proj [dim,dim], norm2, mlp.fc1 [hidden,dim],
mlp.fc2 [dim,hidden] (.weight / .bias each, hidden = mlp_ratio*dim),
norm.weight / .bias and head [num_classes,dim] / .bias. The defaults are
ViT-B/16 (86.6 M parameters, about 330 MiB).

--arch bert writes Hugging Face BertModel names instead (no `bert.` prefix):
embeddings.{word,position,token_type}_embeddings.weight ([vocab,dim],
[512,dim], [2,dim]), embeddings.LayerNorm, encoder.layer.{i}.attention.self.
{query,key,value}, .attention.output.dense, .attention.output.LayerNorm,
.intermediate.dense [hidden,dim], .output.dense [dim,hidden],
.output.LayerNorm, and pooler.dense; --img-size, --patch and --num-classes
do not apply. The defaults are BERT-base (about 110 M parameters with the
default vocabulary; a smaller --vocab keeps the file small for block timings).

--m2pt adds, for every block and each of attn.qkv, attn.proj, mlp.fc1 and
mlp.fc2 (BERT: the six linears of each layer), `<layer>.aux_weight` (random,
same shape) and `<layer>.cross_modal_scale` [1] (nonzero), i.e. the checkpoint
the M2PT paper's code saves, for timing a merge (about twice the size). BERT's
query, key and value of one layer share their lambda (m2pt concatenates them
into one qkv linear, which has one).

Values are random at a realistic scale: linear / conv weights 0.02 N(0,1),
biases 0.02 N(0,1), LayerNorm weights 1 + 0.1 N(0,1), cls_token / pos_embed
0.02 N(0,1), lambdas U(0.05, 0.5) with a random sign. Deterministic for a
given seed and argument set (numpy.random.default_rng(seed), tensors drawn in
file order). __metadata__ records format "pt" and the architecture (all
values strings, as safetensors requires).

The layout follows the safetensors reference writer (tensors sorted by name,
all F32; compact JSON header with __metadata__ first, padded with spaces to a
multiple of 8 bytes). The header is written first, then the tensors are
generated and streamed one at a time, so memory stays at one tensor (the
largest is mlp.fc1.weight, 9 MiB at the defaults) beyond the header.
"""

import argparse
import json
import os
import struct
import sys
import time

import numpy as np


def add_blocks(specs, a, block, norms, lin, shared_scale=None):
    """Every block's LayerNorms and linears (with --m2pt their aux_weight and
    cross_modal_scale) into `specs`; `block` formats a block's prefix, and
    `shared_scale(layer)` names the lambda a layer shares (None: its own)."""
    for i in range(a.depth):
        p = block.format(i)
        for n in norms:
            specs[p + n + '.weight'] = ((a.dim,), 'ln')
            specs[p + n + '.bias'] = ((a.dim,), 'bias')
        for n, shape in lin.items():
            specs[p + n + '.weight'] = (shape, 'weight')
            specs[p + n + '.bias'] = ((shape[0],), 'bias')
            if a.m2pt:
                key = shared_scale(n) if shared_scale else None
                specs[p + n + '.aux_weight'] = (shape, 'weight')
                specs[p + n + '.cross_modal_scale'] = ((1,), ('scale', p + key) if key else 'scale')
    return specs


def bert_specs(a):
    """BertModel's names -> (shape, kind); q, k and v of a layer share a lambda."""
    d, h = a.dim, a.mlp_ratio * a.dim
    e = 'embeddings.'
    specs = {
        e + 'word_embeddings.weight': ((a.vocab, d), 'embed'),
        e + 'position_embeddings.weight': ((512, d), 'embed'),
        e + 'token_type_embeddings.weight': ((2, d), 'embed'),
        e + 'LayerNorm.weight': ((d,), 'ln'),
        e + 'LayerNorm.bias': ((d,), 'bias'),
        'pooler.dense.weight': ((d, d), 'weight'),
        'pooler.dense.bias': ((d,), 'bias'),
    }
    lin = {'attention.self.query': (d, d), 'attention.self.key': (d, d),
           'attention.self.value': (d, d), 'attention.output.dense': (d, d),
           'intermediate.dense': (h, d), 'output.dense': (d, h)}
    return add_blocks(specs, a, 'encoder.layer.{}.',
                      ('attention.output.LayerNorm', 'output.LayerNorm'), lin,
                      lambda n: 'attention.self' if n.startswith('attention.self.') else None)


def tensor_specs(a):
    """name -> (shape, kind); kind picks the distribution."""
    if a.arch == 'bert':
        return bert_specs(a)
    d, h = a.dim, a.mlp_ratio * a.dim
    tokens = (a.img_size // a.patch) ** 2 + 1
    specs = {
        'cls_token': ((1, 1, d), 'embed'),
        'pos_embed': ((1, tokens, d), 'embed'),
        'patch_embed.proj.weight': ((d, 3, a.patch, a.patch), 'weight'),
        'patch_embed.proj.bias': ((d,), 'bias'),
        'norm.weight': ((d,), 'ln'),
        'norm.bias': ((d,), 'bias'),
        'head.weight': ((a.num_classes, d), 'weight'),
        'head.bias': ((a.num_classes,), 'bias'),
    }
    lin = {'attn.qkv': (3 * d, d), 'attn.proj': (d, d),
           'mlp.fc1': (h, d), 'mlp.fc2': (d, h)}
    return add_blocks(specs, a, 'blocks.{}.', ('norm1', 'norm2'), lin)


def draw(rng, shape, kind, shared):
    """One tensor of `kind`; a ('scale', key) kind draws once per key (kept in
    `shared`) and repeats that lambda."""
    if isinstance(kind, tuple):
        key = kind[1]
        if key not in shared:
            shared[key] = draw(rng, shape, 'scale', shared)
        return shared[key].copy()
    if kind == 'ln':
        t = rng.standard_normal(shape, dtype=np.float32)
        t *= np.float32(0.1)
        t += np.float32(1.0)
        return t
    if kind == 'scale':
        v = rng.uniform(0.05, 0.5) * (1.0 if rng.random() < 0.5 else -1.0)
        return np.full(shape, v, dtype=np.float32)
    t = rng.standard_normal(shape, dtype=np.float32)
    t *= np.float32(0.02)
    return t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('out', help='output .safetensors path')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--arch', choices=('vit', 'bert'), default='vit')
    ap.add_argument('--depth', type=int, default=12)
    ap.add_argument('--dim', type=int, default=768)
    ap.add_argument('--heads', type=int, default=12)
    ap.add_argument('--mlp-ratio', type=int, default=4)
    ap.add_argument('--img-size', type=int, default=224)
    ap.add_argument('--patch', type=int, default=16)
    ap.add_argument('--num-classes', type=int, default=1000)
    ap.add_argument('--vocab', type=int, default=30522, help='BERT vocabulary size')
    ap.add_argument('--m2pt', action='store_true',
                    help='add aux_weight and cross_modal_scale to every block linear')
    a = ap.parse_args(argv)
    for k in ('depth', 'dim', 'heads', 'mlp_ratio', 'img_size', 'patch', 'num_classes', 'vocab'):
        if getattr(a, k) <= 0:
            ap.error(f'--{k.replace("_", "-")} must be positive')
    if a.dim % a.heads:
        ap.error('--dim must be a multiple of --heads')
    if a.img_size % a.patch:
        ap.error('--img-size must be a multiple of --patch')

    t0 = time.perf_counter()
    specs = tensor_specs(a)
    order = sorted(specs)
    meta = {'format': 'pt', 'arch': a.arch, 'depth': str(a.depth), 'dim': str(a.dim),
            'heads': str(a.heads), 'mlp_hidden': str(a.mlp_ratio * a.dim)}
    if a.arch == 'vit':
        meta.update(patch=str(a.patch), img_size=str(a.img_size),
                    num_classes=str(a.num_classes))
    else:
        meta.update(vocab=str(a.vocab))
    meta.update(seed=str(a.seed), m2pt='1' if a.m2pt else '0')
    header, off = {'__metadata__': meta}, 0
    for name in order:
        shape = specs[name][0]
        nbytes = 4 * int(np.prod(shape, dtype=np.int64))
        header[name] = {'dtype': 'F32', 'shape': list(shape),
                        'data_offsets': [off, off + nbytes]}
        off += nbytes
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)

    rng = np.random.default_rng(a.seed)
    shared = {}
    tmp = a.out + '.tmp'
    params = 0
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for name in order:
            shape, kind = specs[name]
            t = draw(rng, shape, kind, shared)
            assert t.dtype == np.float32 and t.flags.c_contiguous
            t = t.astype('<f4', copy=False)        # no copy on little-endian hosts
            f.write(memoryview(t).cast('B'))      # stream without a bytes copy
            params += t.size
            del t
        size = f.tell()
    assert size == 8 + len(text) + off
    os.replace(tmp, a.out)
    dt = time.perf_counter() - t0
    print(f'wrote {a.out}: {len(order)} tensors, {params} parameters, '
          f'{size} bytes ({size / 2**20:.1f} MiB) in {dt:.2f} s', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
