#!/usr/bin/python3
"""Generate tests/data/block_golden.h: PyTorch golden outputs of one M2PT block.

Usage (needs PyTorch; on Debian use the system python that has it):

    /usr/bin/python3 tools/make_block_golden.py tests/data/block_golden.h

The modules below are plain PyTorch re-implementations (timm is NOT imported)
that follow, line by line:

  * CrossModalReparamLinear from the paper's official code (arXiv 2401.14405,
    AILab-CVC/M2PT): an nn.Linear subclass that adds `cross_modal_scale`
    (1-element parameter, registered in __init__) and `aux_weight` (the
    auxiliary-modality model's weight, frozen); forward is
    F.linear(x, weight + cross_modal_scale * aux_weight, bias).
  * timm's ViT `Attention`, `Mlp` and pre-norm `Block` (qkv reshape order
    [B, N, 3, heads, dim_head], scale dim_head**-0.5, exact erf GELU), with the
    four linears replaced by CrossModalReparamLinear as the paper's code does,
    plus an optional key padding mask.
  * a post-norm (BERT-layout) block with the same parameter names.

Parameter names come from the modules' own state_dict(), so they are the
checkpoint names of the paper's code / timm without the `blocks.{i}.` prefix.

Numerics: every parameter and input is drawn in float32 (fixed seed) and the
float32 values are what the header stores; the forward runs in float64 on
those exact values and the output is rounded to float32 once. The script
asserts that (1) folding the pathway (weight += scale * aux_weight; scale = 0)
gives the same output within 1e-12 and (2) an independent, loop-based float64
implementation written from DESIGN.md section 1 (working on the state_dict
only) agrees within 1e-12.

Size: to keep the header small (it is committed), the 2-D weight matrices
(`weight`, `aux_weight`) are drawn U(-0.5, 0.5) and then rounded to the
nearest float32 of a multiple of 0.01, so their shortest round-trip decimal
form is at most 3 significant digits. All other tensors (biases, LayerNorm
parameters, inputs, outputs) are full-precision float32. Every float is
written as the shortest "%.{p}g" (p <= 9) that parses back to the identical
float32, plus an `f` suffix (and a leading "0" dropped for |v| < 1); the C
compiler therefore sees bit-identical values.
"""

import copy
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 20240125


# --------------------------------------------------------------------------
# Modules (plain PyTorch re-implementations; see module docstring)
# --------------------------------------------------------------------------

class CrossModalReparamLinear(nn.Linear):
    """Target linear + lambda * auxiliary-model linear weight (paper's code).

    state_dict: weight [out][in], bias [out] (optional), cross_modal_scale [1],
    aux_weight [out][in] (frozen: requires_grad False).
    """

    def __init__(self, in_features, out_features, bias=True, aux_weight=None):
        super().__init__(in_features, out_features, bias)
        self.cross_modal_scale = nn.Parameter(torch.zeros(1))
        if aux_weight is None:
            aux_weight = torch.zeros(out_features, in_features)
        assert aux_weight.shape == self.weight.shape, \
            'Target weight and aux weight must have the same shape'
        self.aux_weight = nn.Parameter(aux_weight.clone(), requires_grad=False)

    def forward(self, x):
        return F.linear(x, self.weight + self.cross_modal_scale * self.aux_weight,
                        self.bias)

    @torch.no_grad()
    def merge(self):
        """Fold the pathway away: W <- W + lambda * W_aux, lambda <- 0."""
        self.weight += self.cross_modal_scale * self.aux_weight
        self.cross_modal_scale.zero_()


class Attention(nn.Module):
    """timm ViT Attention (qkv_bias optional), dim_head given separately."""

    def __init__(self, dim, heads, dim_head, qkv_bias):
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        self.scale = dim_head ** -0.5
        inner = heads * dim_head
        self.qkv = CrossModalReparamLinear(dim, 3 * inner, bias=qkv_bias)
        self.proj = CrossModalReparamLinear(inner, dim, bias=True)

    def forward(self, x, mask=None):
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.dim_head) \
                         .permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                    # each [B, heads, N, dim_head]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if mask is not None:                       # [B, N], 1 = token, 0 = pad
            neg = torch.zeros_like(mask).masked_fill(mask == 0, float('-inf'))
            attn = attn + neg[:, None, None, :]
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, self.heads * self.dim_head)
        return self.proj(x)


class Mlp(nn.Module):
    """timm Mlp: fc1 -> GELU (exact erf) -> fc2."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = CrossModalReparamLinear(dim, hidden, bias=True)
        self.act = nn.GELU()                       # approximate='none' (erf)
        self.fc2 = CrossModalReparamLinear(hidden, dim, bias=True)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """timm pre-norm ViT Block: h = x + attn(norm1(x)); y = h + mlp(norm2(h))."""

    def __init__(self, dim, heads, dim_head, ff_mult, eps, qkv_bias):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, dim_head, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, ff_mult * dim)

    def forward(self, x, mask=None):
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class PostNormBlock(Block):
    """BERT layout, same names: h = norm1(x + attn(x)); y = norm2(h + mlp(h))."""

    def forward(self, x, mask=None):
        x = self.norm1(x + self.attn(x, mask))
        return self.norm2(x + self.mlp(x))


def merge_block(block):
    for m in block.modules():
        if isinstance(m, CrossModalReparamLinear):
            m.merge()


# --------------------------------------------------------------------------
# Independent float64 reference from DESIGN.md section 1 (state_dict only)
# --------------------------------------------------------------------------

def independent_forward(sd, case, x, mask):
    sd = {k: v.detach().double().numpy() for k, v in sd.items()}
    x = x.double().numpy()
    B, N, D = x.shape
    H, Dh = case['heads'], case['dim_head']
    eps = float(np.float32(case['eps']))

    def ln(t, p):
        mu = t.mean(-1, keepdims=True)
        var = ((t - mu) ** 2).mean(-1, keepdims=True)
        return (t - mu) / np.sqrt(var + eps) * sd[p + '.weight'] + sd[p + '.bias']

    def lin(t, p):
        w = sd[p + '.weight'] + sd[p + '.cross_modal_scale'][0] * sd[p + '.aux_weight']
        y = t @ w.T
        if p + '.bias' in sd:
            y = y + sd[p + '.bias']
        return y

    def gelu(t):
        return 0.5 * t * (1.0 + np.vectorize(math.erf)(t / math.sqrt(2.0)))

    def mhsa(t):
        qkv = lin(t, 'attn.qkv')                   # [B][N][3*H*Dh], row = [3][H][Dh]
        out = np.zeros((B, N, H * Dh))
        for b in range(B):
            for h in range(H):
                q = qkv[b, :, 0 * H * Dh + h * Dh: 0 * H * Dh + (h + 1) * Dh]
                k = qkv[b, :, 1 * H * Dh + h * Dh: 1 * H * Dh + (h + 1) * Dh]
                v = qkv[b, :, 2 * H * Dh + h * Dh: 2 * H * Dh + (h + 1) * Dh]
                for i in range(N):
                    s = [(q[i] @ k[j]) / math.sqrt(Dh) for j in range(N)]
                    keep = [mask is None or mask[b, j] != 0 for j in range(N)]
                    m = max(s[j] for j in range(N) if keep[j])
                    e = [math.exp(s[j] - m) if keep[j] else 0.0 for j in range(N)]
                    z = sum(e)
                    out[b, i, h * Dh:(h + 1) * Dh] = sum(e[j] / z * v[j] for j in range(N))
        return lin(out, 'attn.proj')

    def ffn(t):
        return lin(gelu(lin(t, 'mlp.fc1')), 'mlp.fc2')

    if case['post_norm']:
        h = ln(x + mhsa(x), 'norm1')
        return ln(h + ffn(h), 'norm2')
    h = x + mhsa(ln(x, 'norm1'))
    return h + ffn(ln(h, 'norm2'))


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

CASES = [
    dict(label='pre_norm_mask', post_norm=0, batch=2, tokens=5, dim=24, heads=2,
         dim_head=16, ff_mult=2, eps=1e-6, qkv_bias=1, masked_tail=[0, 2],
         scales=[0.3, -0.7, 0.45, 1.1]),
    # Same shapes as the first case: it reuses that case's parameter arrays
    # (only x, y differ), which keeps the header about 40% smaller.
    dict(label='post_norm', post_norm=1, batch=2, tokens=5, dim=24, heads=2,
         dim_head=16, ff_mult=2, eps=1e-12, qkv_bias=1, masked_tail=None,
         params_from='pre_norm_mask'),
    dict(label='pre_norm_no_qkv_bias', post_norm=0, batch=1, tokens=7, dim=16,
         heads=4, dim_head=4, ff_mult=3, eps=1e-6, qkv_bias=0, masked_tail=None,
         scales=[0.9, -0.25, 0.6, -1.05]),
]


def grid_uniform(g, shape):
    """U(-0.5, 0.5) rounded to a multiple of 0.01, as float32."""
    u = torch.rand(shape, generator=g, dtype=torch.float32) - 0.5
    return torch.from_numpy(np.round(u.numpy().astype(np.float64), 2).astype(np.float32))


def draw_params(blk, scales, g):
    lins = [blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2]
    with torch.no_grad():
        for norm in (blk.norm1, blk.norm2):
            d = norm.weight.numel()
            norm.weight.copy_(1.0 + 0.4 * (torch.rand(d, generator=g) - 0.5))
            norm.bias.copy_(0.2 * (torch.rand(d, generator=g) - 0.5))
        for lin, s in zip(lins, scales):
            lin.weight.copy_(grid_uniform(g, lin.weight.shape))
            lin.aux_weight.copy_(grid_uniform(g, lin.aux_weight.shape))
            if lin.bias is not None:
                lin.bias.copy_(0.2 * torch.randn(lin.bias.shape, generator=g))
            lin.cross_modal_scale.fill_(s)


def build_case(case, g, shared):
    cls = PostNormBlock if case['post_norm'] else Block
    # the C side holds eps as a float: use exactly that value here too
    blk = cls(case['dim'], case['heads'], case['dim_head'], case['ff_mult'],
              float(np.float32(case['eps'])), bool(case['qkv_bias']))
    if 'params_from' in case:
        blk.load_state_dict(shared[case['params_from']])
    else:
        draw_params(blk, case['scales'], g)
    blk.eval()
    x = torch.randn(case['batch'], case['tokens'], case['dim'], generator=g)
    mask = None
    if case['masked_tail'] is not None:
        mask = torch.ones(case['batch'], case['tokens'])
        for b, n_pad in enumerate(case['masked_tail']):
            if n_pad:
                mask[b, case['tokens'] - n_pad:] = 0.0
        assert (mask.sum(-1) > 0).all(), 'a query row would be fully masked'
    return blk, x, mask


def run_case(case, g, shared):
    blk, x, mask = build_case(case, g, shared)
    sd = {k: v.detach().clone() for k, v in blk.state_dict().items()}
    for v in sd.values():
        assert v.dtype == torch.float32

    blk64 = copy.deepcopy(blk).double()
    x64 = x.double()
    m64 = None if mask is None else mask.double()
    with torch.no_grad():
        y64 = blk64(x64, m64)
        merged = copy.deepcopy(blk64)
        merge_block(merged)
        y_merged = merged(x64, m64)
    assert torch.isfinite(y64).all()
    d_merge = (y64 - y_merged).abs().max().item()
    assert d_merge <= 1e-12, f'{case["label"]}: merge mismatch {d_merge}'
    y_ind = independent_forward(sd, case, x, None if mask is None else mask.numpy())
    d_ind = np.abs(y64.numpy() - y_ind).max()
    assert d_ind <= 1e-12, f'{case["label"]}: independent reference mismatch {d_ind}'
    # sanity: float32 PyTorch forward is close (not bit-exact) to the reference
    with torch.no_grad():
        y32 = blk(x, mask)
    d32 = (y32.double() - y64).abs().max().item()
    assert d32 <= 1e-4 * max(1.0, y64.abs().max().item()), d32
    print(f'{case["label"]}: max|y|={y64.abs().max().item():.4g} '
          f'merge diff={d_merge:.3g} independent diff={d_ind:.3g} f32 diff={d32:.3g}',
          file=sys.stderr)
    return sd, x, mask, y64.float()


# --------------------------------------------------------------------------
# C emission
# --------------------------------------------------------------------------

def c_float(v):
    """Shortest '%.{p}g' (p <= 9) that parses back to the same float32, + 'f'."""
    f = np.float32(v)
    assert np.isfinite(f)
    f = np.float32(f + np.float32(0.0))            # -0.0 -> 0.0
    for p in range(1, 10):
        s = '%.*g' % (p, float(f))
        if np.float32(float(s)) == f:
            break
    assert np.float32(float(s)) == f
    if '.' not in s and 'e' not in s:
        s += '.0'
    if s.startswith('0.'):
        s = s[1:]
    elif s.startswith('-0.'):
        s = '-' + s[2:]
    return s + 'f'


def c_array(name, t, per_line=16):
    vals = [c_float(v) for v in t.detach().reshape(-1).numpy()]
    lines = [','.join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return (f'static const float {name}[{len(vals)}] = {{\n' +
            ',\n'.join(lines) + '\n};\n')


def c_ident(s):
    return s.replace('.', '_')


HEADER_TOP = '''\
/* Generated by tools/make_block_golden.py (PyTorch @VERSION@); do not edit.
 * Regenerate: /usr/bin/python3 tools/make_block_golden.py tests/data/block_golden.h
 *
 * Golden outputs of one M2PT transformer block (DESIGN.md section 1): all four
 * linears (attn.qkv, attn.proj, mlp.fc1, mlp.fc2) are cross-modal
 * re-parameterized, each with its own nonzero cross_modal_scale. Parameters
 * and inputs are float32 values (weight matrices on a 0.01 grid); y is the
 * float64 forward of exactly these values, rounded once to float32. Tensor
 * names are the checkpoint names (state_dict of the paper's code / timm,
 * without the "blocks.{i}." prefix); data is row-major PyTorch layout,
 * weight = [out][in], qkv rows ordered [3][heads][dim_head].
 */
#ifndef M2PT_TESTS_BLOCK_GOLDEN_H
#define M2PT_TESTS_BLOCK_GOLDEN_H

#include <stddef.h>

typedef struct golden_tensor {
  const char *name;
  size_t count;
  const float *data;
} golden_tensor;

typedef struct golden_block_case {
  const char *label;
  int post_norm;            /* 0: pre-norm (timm ViT), 1: post-norm (BERT) */
  size_t batch, tokens, dim, heads, dim_head, ff_mult;
  float eps;
  int qkv_bias;
  const float *x;           /* [batch][tokens][dim] */
  const float *mask;        /* [batch][tokens], 1 = token, 0 = padding; NULL: none */
  const float *y;           /* expected output [batch][tokens][dim] */
  const golden_tensor *params;
  size_t param_count;
} golden_block_case;

'''


def emit(results):
    out = [HEADER_TOP.replace('@VERSION@', torch.__version__)]
    case_rows = []
    for case, (sd, x, mask, y) in results:
        lab = case['label']
        pre = f'golden_{lab}_'
        out.append(f'/* ---- case "{lab}" ---- */\n')
        out.append(c_array(pre + 'x', x))
        if mask is not None:
            out.append(c_array(pre + 'mask', mask))
        out.append(c_array(pre + 'y', y))
        params = f'golden_{case["params_from"]}_params' if 'params_from' in case else None
        if params is None:
            params = pre + 'params'
            rows = []
            for name, t in sd.items():
                out.append(c_array(pre + c_ident(name), t))
                rows.append(f'  {{"{name}", {t.numel()}, {pre + c_ident(name)}}}')
            out.append(f'static const golden_tensor {params}[] = {{\n' +
                       ',\n'.join(rows) + '\n};\n')
        else:
            out.append(f'/* parameters: those of case "{case["params_from"]}" */\n')
        out.append('\n')
        case_rows.append(
            '  {{"{lab}", {pn}, {b}, {n}, {d}, {h}, {dh}, {ff}, {eps}, {qb},\n'
            '   {p}x, {m}, {p}y, {params}, {cnt}}}'.format(
                lab=lab, pn=case['post_norm'], b=case['batch'], n=case['tokens'],
                d=case['dim'], h=case['heads'], dh=case['dim_head'],
                ff=case['ff_mult'], eps=c_float(case['eps']), qb=case['qkv_bias'],
                p=pre, params=params, m=(pre + 'mask') if mask is not None else 'NULL',
                cnt=len(sd)))
    out.append('static const golden_block_case golden_block_cases[] = {\n' +
               ',\n'.join(case_rows) + '\n};\n')
    out.append(f'#define GOLDEN_BLOCK_CASE_COUNT {len(case_rows)}\n\n')
    out.append('#endif /* M2PT_TESTS_BLOCK_GOLDEN_H */\n')
    return ''.join(out)


def main(argv):
    if len(argv) != 2:
        print(f'usage: {argv[0]} OUTPUT.h', file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(SEED)
    shared, results = {}, []
    for case in CASES:
        res = run_case(case, g, shared)
        shared[case['label']] = res[0]
        results.append((case, res))
    text = emit(results)
    path = argv[1]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='ascii', newline='\n') as f:
        f.write(text)
    os.replace(tmp, path)
    print(f'wrote {path} ({len(text.encode())} bytes)', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
