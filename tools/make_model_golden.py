#!/usr/bin/python3
"""Generate tests/data/model/: whole-model checkpoints and PyTorch goldens.

Usage (needs PyTorch and numpy; on Debian use the system python that has them):

    /usr/bin/python3 tools/make_model_golden.py tests/data/model

Deterministic: every parameter, scale and input is drawn from one
numpy.random.default_rng(SEED) stream in a fixed order, so a rerun writes
byte-identical files. The `safetensors` python package is NOT needed: the
files are laid out here by hand following the reference implementation's
rules (tensors ordered by dtype rank, then name; compact JSON header with
"__metadata__" first; header padded with spaces to a multiple of 8 bytes).
If the package happens to be importable, the script also checks that
`safetensors.torch.save_file` writes byte-identical files and that
`load_file` reads the same values back.

The modules below are plain PyTorch re-implementations (neither timm nor
transformers is imported), written to have the same parameter names
(state_dict keys) as the originals:

  * timm VisionTransformer (pre-norm `Block`: h = x + attn(norm1(x)),
    y = h + mlp(norm2(h)); qkv bias; qkv output reshaped [B, N, 3, heads,
    dim_head]; scale dim_head**-0.5; exact erf GELU; LayerNorm eps 1e-6;
    final `norm`). Non-block parameters (cls_token, pos_embed,
    patch_embed.proj, head) exist so the checkpoints look like real timm
    ones, but the forward pass here starts from tokens x [B, N, dim] that are
    already embedded: `blocks` then (optionally) `norm`. The head is not run.
  * HF BertModel (post-norm `BertLayer`: h = LN1(x + dense(MHSA(x))),
    y = LN2(h + dense(GELU(dense(h)))); separate query/key/value linears
    whose outputs are split per head as BertSelfAttention.transpose_for_scores
    does, i.e. [B, N, heads, dim_head]; LayerNorm eps 1e-12; exact GELU; no
    final norm). The forward pass runs `encoder` on x [B, N, dim];
    embeddings and pooler are present in the checkpoint only.
  * CrossModalReparamLinear and reparameterize_aux_into_target_model from the
    paper's official code (arXiv 2401.14405, AILab-CVC/M2PT): an nn.Linear
    with an extra `cross_modal_scale` ([1]) and `aux_weight` (the auxiliary
    model's weight of the same layer); forward is
    F.linear(x, weight + cross_modal_scale * aux_weight, bias). The aux
    model's bias is NOT used (as in the paper's code).

Numerics: parameters and inputs are float32 values (F16 / BF16 tensors hold
values exactly representable in those types); every expected output is the
float64 forward of exactly these values, rounded once to float32. A lambda
such as 0.3 means float32(0.3) = 0.300000011920928955078125 everywhere.
LayerNorm eps is also used at its float32 value.

Checks (the script aborts if one fails):
  1. every M2PT output equals the output of the model whose weights were
     merged as W <- W + lambda * W_aux (float64: 1e-12; float32 forward of the
     merged float32 weights vs the golden: 1e-5 * max(1, max|y|));
  2. an independent numpy float64 implementation written from DESIGN.md
     section 1, fed only with the tensors read back from the written
     .safetensors files, reproduces every golden (1e-12);
  3. the BERT layers (separate q, k, v) equal a timm-layout block whose qkv
     weight is the row concatenation [Wq; Wk; Wv] (post-norm, 1e-12);
  4. the float32 PyTorch forward is within 1e-4 * max(1, max|y|) of each
     golden; the .npy files read back bit-identically; timm_m2pt /
     bert_m2pt hold target's tensors byte for byte and aux's weights as
     aux_weight.

Files written (all F32 unless stated; see also README.md written beside them):

  timm (dim 24, heads 3, dim_head 8, mlp hidden 96, depth 2, eps 1e-6)
    timm_target.safetensors      blocks.{0,1}.{norm1,attn.qkv,attn.proj,norm2,
                                 mlp.fc1,mlp.fc2}.{weight,bias}, norm.{weight,bias},
                                 cls_token [1,1,24], pos_embed [1,5,24],
                                 patch_embed.proj.weight [24,3,2,2] F16,
                                 patch_embed.proj.bias [24], head.weight [10,24]
                                 BF16, head.bias [10]; __metadata__ {"format":"pt"}
    timm_aux.safetensors         same names and shapes, other values
    timm_m2pt.safetensors        timm_target + blocks.{i}.<layer>.aux_weight
                                 (= aux's weight) and .cross_modal_scale [1] for
                                 <layer> in attn.qkv, attn.proj, mlp.fc1, mlp.fc2
                                 (8 distinct nonzero lambdas in [-0.6, 0.6])
    timm_input.npy               x [2, 5, 24]
    timm_expected_plain.npy      target: blocks + norm
    timm_expected_plain_nonorm.npy  target: blocks only
    timm_expected_m2pt.npy       timm_m2pt (unmerged): blocks + norm
    timm_expected_aux025.npy     target + aux, all 8 linears at lambda 0.25
    timm_expected_aux_qkv_fc1.npy  target + aux, only attn.qkv and mlp.fc1 at
                                 lambda 0.5 (attn.proj, mlp.fc2 plain)

  bert (dim 24, heads 2, dim_head 12, intermediate 96, depth 2, eps 1e-12)
    bert_target.safetensors      encoder.layer.{0,1}.attention.self.{query,key,
                                 value}.{weight,bias}, ...attention.output.dense,
                                 ...attention.output.LayerNorm,
                                 ...intermediate.dense, ...output.dense,
                                 ...output.LayerNorm (.weight/.bias each),
                                 embeddings.word_embeddings.weight [30,24],
                                 embeddings.LayerNorm.{weight,bias},
                                 pooler.dense.{weight,bias}; {"format":"pt"}
    bert_aux.safetensors         same names, other values
    bert_m2pt.safetensors        bert_target + <layer>.aux_weight and
                                 <layer>.cross_modal_scale [1] for the six
                                 linears of each layer; lambda = 0.3 for
                                 query, key and value, distinct nonzero values
                                 for attention.output.dense, intermediate.dense,
                                 output.dense
    bert_input.npy               x [2, 5, 24]
    bert_expected_plain.npy      target encoder
    bert_expected_aux03.npy      target + aux, all six linears at lambda 0.3
    bert_expected_m2pt.npy       bert_m2pt (unmerged) encoder
"""

import copy
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_file  # noqa: E402

SEED = 20240414

TIMM = dict(dim=24, heads=3, dim_head=8, hidden=96, depth=2, eps=1e-6,
            tokens=5, in_chans=3, patch=2, num_classes=10)
BERT = dict(dim=24, heads=2, dim_head=12, hidden=96, depth=2, eps=1e-12,
            vocab=30)
BATCH, TOKENS = 2, 5

TIMM_LAYERS = ['attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2']
BERT_LAYERS = ['attention.self.query', 'attention.self.key',
               'attention.self.value', 'attention.output.dense',
               'intermediate.dense', 'output.dense']

# checkpoint tensors stored in a narrower dtype than F32
STORE_DTYPE = {'patch_embed.proj.weight': 'F16', 'head.weight': 'BF16'}
METADATA = {'format': 'pt'}

TOL64 = 1e-12


def f32(v):
    return float(np.float32(v))


# --------------------------------------------------------------------------
# The paper's cross-modal re-parameterization (AILab-CVC/M2PT)
# --------------------------------------------------------------------------

class CrossModalReparamLinear(nn.Linear):
    """nn.Linear + cross_modal_scale [1] * aux_weight (paper's code).

    state_dict: weight [out][in], bias [out], cross_modal_scale [1],
    aux_weight [out][in] (frozen here).
    """

    def __init__(self, in_features, out_features, bias=True,
                 origin_layer=None, aux_weight=None):
        super().__init__(in_features, out_features, bias)
        self.cross_modal_scale = nn.Parameter(torch.zeros(1))
        assert aux_weight is not None and aux_weight.shape == self.weight.shape, \
            'Target weight and aux weight must have the same shape'
        self.aux_weight = nn.Parameter(aux_weight.detach().clone(),
                                       requires_grad=False)
        if origin_layer is not None:
            with torch.no_grad():
                self.weight.copy_(origin_layer.weight)
                if bias:
                    self.bias.copy_(origin_layer.bias)

    def forward(self, x):
        return F.linear(x, self.weight + self.cross_modal_scale * self.aux_weight,
                        self.bias)

    @torch.no_grad()
    def merge(self):
        """Fold the pathway away: W <- W + lambda * W_aux, lambda <- 0."""
        self.weight += self.cross_modal_scale * self.aux_weight
        self.cross_modal_scale.zero_()


def _get(module, dotted):
    for part in dotted.split('.'):
        module = getattr(module, part)
    return module


def _set(module, dotted, value):
    *parent, last = dotted.split('.')
    setattr(_get(module, '.'.join(parent)) if parent else module, last, value)


def reparameterize_aux_into_target_model(target_model, aux_model, layer_names,
                                         main_body_name):
    """Replace each named linear of every block of the target's main body by
    a CrossModalReparamLinear holding the aux model's weight of that layer."""
    target_blocks = _get(target_model, main_body_name)
    aux_blocks = _get(aux_model, main_body_name)
    assert len(target_blocks) == len(aux_blocks)
    for t_blk, a_blk in zip(target_blocks, aux_blocks):
        for name in layer_names:
            origin, aux = _get(t_blk, name), _get(a_blk, name)
            assert type(origin) is nn.Linear
            new = CrossModalReparamLinear(origin.in_features, origin.out_features,
                                          origin.bias is not None,
                                          origin_layer=origin,
                                          aux_weight=aux.weight)
            new = new.to(origin.weight.dtype)
            _set(t_blk, name, new)
    return target_model


def merge_model(model):
    for m in model.modules():
        if isinstance(m, CrossModalReparamLinear):
            m.merge()


def set_scales(model, main_body_name, scales):
    """scales: list over blocks of {layer_name: lambda}."""
    with torch.no_grad():
        for blk, per_layer in zip(_get(model, main_body_name), scales):
            for name, lam in per_layer.items():
                _get(blk, name).cross_modal_scale.fill_(lam)


# --------------------------------------------------------------------------
# timm ViT (pre-norm)
# --------------------------------------------------------------------------

class Attention(nn.Module):
    def __init__(self, dim, heads, dim_head):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.scale = dim_head ** -0.5
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=True)
        self.proj = nn.Linear(heads * dim_head, dim)

    def forward(self, x):
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.dim_head) \
                         .permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                    # [B, heads, N, dim_head]
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, self.heads * self.dim_head)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()                       # exact erf
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, dim_head, hidden, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PostNormBlock(Block):
    """timm names, BERT layout: h = norm1(x + attn(x)); y = norm2(h + mlp(h))."""

    def forward(self, x):
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class PatchEmbed(nn.Module):
    def __init__(self, in_chans, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)


class VisionTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = f32(c['eps'])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c['dim']))
        self.pos_embed = nn.Parameter(torch.zeros(1, c['tokens'], c['dim']))
        self.patch_embed = PatchEmbed(c['in_chans'], c['dim'], c['patch'])
        self.blocks = nn.ModuleList(
            Block(c['dim'], c['heads'], c['dim_head'], c['hidden'], eps)
            for _ in range(c['depth']))
        self.norm = nn.LayerNorm(c['dim'], eps=eps)
        self.head = nn.Linear(c['dim'], c['num_classes'])

    def forward_tokens(self, x, final_norm=True):
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x) if final_norm else x


# --------------------------------------------------------------------------
# HF BERT (post-norm), same module names as transformers' BertModel
# --------------------------------------------------------------------------

class BertSelfAttention(nn.Module):
    def __init__(self, dim, heads, dim_head):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.query = nn.Linear(dim, heads * dim_head)
        self.key = nn.Linear(dim, heads * dim_head)
        self.value = nn.Linear(dim, heads * dim_head)

    def transpose_for_scores(self, x):
        B, N, _ = x.shape
        return x.view(B, N, self.heads, self.dim_head).permute(0, 2, 1, 3)

    def forward(self, x):
        q = self.transpose_for_scores(self.query(x))
        k = self.transpose_for_scores(self.key(x))
        v = self.transpose_for_scores(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.dim_head)
        ctx = scores.softmax(dim=-1) @ v
        B, _, N, _ = ctx.shape
        return ctx.permute(0, 2, 1, 3).reshape(B, N, self.heads * self.dim_head)


class BertSelfOutput(nn.Module):
    def __init__(self, dim, inner, eps):
        super().__init__()
        self.dense = nn.Linear(inner, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)

    def forward(self, hidden, input_tensor):
        return self.LayerNorm(self.dense(hidden) + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, dim, heads, dim_head, eps):
        super().__init__()
        self.self = BertSelfAttention(dim, heads, dim_head)
        self.output = BertSelfOutput(dim, heads * dim_head, eps)

    def forward(self, x):
        return self.output(self.self(x), x)


class BertIntermediate(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.dense = nn.Linear(dim, hidden)

    def forward(self, x):
        return F.gelu(self.dense(x))               # exact erf


class BertOutput(nn.Module):
    def __init__(self, dim, hidden, eps):
        super().__init__()
        self.dense = nn.Linear(hidden, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)

    def forward(self, hidden, input_tensor):
        return self.LayerNorm(self.dense(hidden) + input_tensor)


class BertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = f32(c['eps'])
        self.attention = BertAttention(c['dim'], c['heads'], c['dim_head'], eps)
        self.intermediate = BertIntermediate(c['dim'], c['hidden'])
        self.output = BertOutput(c['dim'], c['hidden'], eps)

    def forward(self, x):
        h = self.attention(x)
        return self.output(self.intermediate(h), h)


class BertEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(c['depth']))

    def forward(self, x):
        for lay in self.layer:
            x = lay(x)
        return x


class BertEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c['vocab'], c['dim'])
        self.LayerNorm = nn.LayerNorm(c['dim'], eps=f32(c['eps']))


class BertPooler(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dense = nn.Linear(dim, dim)


class BertModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)
        self.pooler = BertPooler(c['dim'])

    def forward_tokens(self, x):
        return self.encoder(x)


# --------------------------------------------------------------------------
# Random parameters
# --------------------------------------------------------------------------

def round_to_store_dtype(name, t):
    dt = STORE_DTYPE.get(name, 'F32')
    if dt == 'F16':
        return t.to(torch.float16).to(torch.float32)
    if dt == 'BF16':
        return t.to(torch.bfloat16).to(torch.float32)
    return t


def randomize(model, rng):
    """LayerNorm weight 1 + 0.1 N, biases 0.05 N, everything else 0.1 N."""
    norm_params = set()
    for mname, m in model.named_modules():
        if isinstance(m, nn.LayerNorm):
            norm_params.add(f'{mname}.weight')
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = rng.standard_normal(tuple(p.shape))
            if name in norm_params:
                v = 1.0 + 0.1 * n
            elif name.endswith('bias'):
                v = 0.05 * n
            else:
                v = 0.1 * n
            t = torch.from_numpy(v.astype(np.float32))
            p.copy_(round_to_store_dtype(name, t))


def draw_lambdas(rng, count, avoid=()):
    """count distinct lambdas in [-0.6, 0.6], |lambda| >= 0.05, none in avoid
    (compared as float32), each a float32 value."""
    out = []
    while len(out) < count:
        lam = f32(rng.uniform(-0.6, 0.6))
        if abs(lam) < 0.05 or lam in out or any(abs(lam - a) < 1e-3 for a in avoid):
            continue
        out.append(lam)
    return out


# --------------------------------------------------------------------------
# safetensors / npy I/O (by hand)
# --------------------------------------------------------------------------

DTYPE_RANK = ['BOOL', 'F4', 'F6_E2M3', 'F6_E3M2', 'U8', 'I8', 'F8_E5M2',
              'F8_E4M3', 'F8_E8M0', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32',
              'F32', 'F64', 'I64', 'U64']


def tensor_bytes(t, dtype):
    t = t.detach().contiguous().cpu()
    if dtype == 'F32':
        return t.to(torch.float32).numpy().astype('<f4').tobytes()
    if dtype == 'F16':
        return t.to(torch.float16).numpy().astype('<f2').tobytes()
    if dtype == 'BF16':
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype('<i2').tobytes()
    raise ValueError(dtype)


def save_safetensors(path, tensors, metadata=METADATA):
    """tensors: {name: (dtype, torch tensor)}; layout as the reference writer."""
    order = sorted(tensors, key=lambda n: (-DTYPE_RANK.index(tensors[n][0]), n))
    safetensors_file.write(path, [(n, tensors[n][0], tensors[n][1].shape,
                                   tensor_bytes(tensors[n][1], tensors[n][0])) for n in order],
                           metadata)


def load_safetensors(path):
    """Independent minimal reader -> ({name: (dtype, float64 ndarray)}, metadata)."""
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n].decode())
    data = raw[8 + n:]
    meta = header.pop('__metadata__', None)
    out, end = {}, 0
    for name, e in header.items():
        a, b = e['data_offsets']
        buf = data[a:b]
        if e['dtype'] == 'F32':
            arr = np.frombuffer(buf, '<f4').astype(np.float64)
        elif e['dtype'] == 'F16':
            arr = np.frombuffer(buf, '<f2').astype(np.float64)
        elif e['dtype'] == 'BF16':
            arr = (np.frombuffer(buf, '<u2').astype(np.uint32) << 16) \
                .view(np.float32).astype(np.float64)
        else:
            raise ValueError(e['dtype'])
        assert arr.size == int(np.prod(e['shape'], dtype=np.int64))
        out[name] = (e['dtype'], arr.reshape(e['shape']), buf)
        end = max(end, b)
    assert end == len(data), f'{path}: trailing or missing data'
    return out, meta


def checkpoint_tensors(model):
    """state_dict -> {name: (dtype, tensor)} with STORE_DTYPE applied."""
    return {k: (STORE_DTYPE.get(k, 'F32'), v.detach().float())
            for k, v in model.state_dict().items()}


def save_npy(path, arr):
    arr = np.ascontiguousarray(np.asarray(arr, dtype='<f4'))
    np.save(path, arr)
    back = np.load(path)
    assert back.dtype == np.dtype('<f4') and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()


# --------------------------------------------------------------------------
# Independent float64 numpy reference (DESIGN.md section 1, file contents only)
# --------------------------------------------------------------------------

def np_layernorm(t, w, b, eps):
    mu = t.mean(-1, keepdims=True)
    var = ((t - mu) ** 2).mean(-1, keepdims=True)
    return (t - mu) / np.sqrt(var + eps) * w + b


def np_gelu(t):
    erf = np.vectorize(math.erf)
    return 0.5 * t * (1.0 + erf(t / math.sqrt(2.0)))


def np_softmax(s):
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


class NpModel:
    """Weights from a target file, optional aux file (lambda table) or an M2PT
    file (its own aux_weight / cross_modal_scale)."""

    def __init__(self, target, aux=None, lambdas=None):
        self.t = {k: v[1] for k, v in target.items()}
        self.aux = None if aux is None else {k: v[1] for k, v in aux.items()}
        self.lambdas = lambdas or {}

    def lin(self, x, p):
        w = self.t[p + '.weight']
        if p + '.cross_modal_scale' in self.t:
            assert not self.lambdas
            w = w + self.t[p + '.cross_modal_scale'][0] * self.t[p + '.aux_weight']
        elif p in self.lambdas:
            w = w + self.lambdas[p] * self.aux[p + '.weight']
        return x @ w.T + self.t[p + '.bias']

    def ln(self, x, p, eps):
        return np_layernorm(x, self.t[p + '.weight'], self.t[p + '.bias'], eps)


def np_timm(m, x, c, final_norm=True):
    eps = f32(c['eps'])
    H, Dh = c['heads'], c['dim_head']
    B, N, _ = x.shape
    for i in range(c['depth']):
        p = f'blocks.{i}.'
        t = m.ln(x, p + 'norm1', eps)
        qkv = m.lin(t, p + 'attn.qkv').reshape(B, N, 3, H, Dh)
        out = np.zeros((B, N, H * Dh))
        for b in range(B):
            for h in range(H):
                q, k, v = qkv[b, :, 0, h], qkv[b, :, 1, h], qkv[b, :, 2, h]
                a = np_softmax(q @ k.T / math.sqrt(Dh))
                out[b, :, h * Dh:(h + 1) * Dh] = a @ v
        x = x + m.lin(out, p + 'attn.proj')
        t = m.ln(x, p + 'norm2', eps)
        x = x + m.lin(np_gelu(m.lin(t, p + 'mlp.fc1')), p + 'mlp.fc2')
    return m.ln(x, 'norm', eps) if final_norm else x


def np_bert(m, x, c):
    eps = f32(c['eps'])
    H, Dh = c['heads'], c['dim_head']
    B, N, _ = x.shape
    for i in range(c['depth']):
        p = f'encoder.layer.{i}.'
        q = m.lin(x, p + 'attention.self.query')
        k = m.lin(x, p + 'attention.self.key')
        v = m.lin(x, p + 'attention.self.value')
        ctx = np.zeros((B, N, H * Dh))
        for b in range(B):
            for h in range(H):
                sl = slice(h * Dh, (h + 1) * Dh)
                a = np_softmax(q[b, :, sl] @ k[b, :, sl].T / math.sqrt(Dh))
                ctx[b, :, sl] = a @ v[b, :, sl]
        h_ = m.ln(x + m.lin(ctx, p + 'attention.output.dense'),
                  p + 'attention.output.LayerNorm', eps)
        f = m.lin(np_gelu(m.lin(h_, p + 'intermediate.dense')), p + 'output.dense')
        x = m.ln(h_ + f, p + 'output.LayerNorm', eps)
    return x


# --------------------------------------------------------------------------
# Golden helpers
# --------------------------------------------------------------------------

def forward64(model, x, **kw):
    m64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return m64.forward_tokens(x.double(), **kw)


def check_golden(label, model, x, y64, independent, merge_check, **kw):
    """Run checks 1, 2 and 4 for one golden; returns the float32 golden."""
    assert torch.isfinite(y64).all()
    ymax = max(1.0, y64.abs().max().item())
    y32 = y64.float()
    msg = [f'{label}: max|y|={y64.abs().max().item():.4g}']
    if merge_check:
        merged64 = copy.deepcopy(model).double().eval()
        merge_model(merged64)                      # fold in float64
        with torch.no_grad():
            d = (merged64.forward_tokens(x.double(), **kw) - y64).abs().max().item()
        assert d <= TOL64, f'{label}: merged (f64) differs by {d}'
        merged = copy.deepcopy(model)
        merge_model(merged)                        # fold in float32
        with torch.no_grad():
            ym32 = merged.eval().forward_tokens(x, **kw)
        d32m = (ym32 - y32).abs().max().item()
        assert d32m <= 1e-5 * ymax, f'{label}: merged (f32) differs by {d32m}'
        msg.append(f'merged f64 diff={d:.2g} merged f32 diff={d32m:.2g}')
    d_ind = np.abs(independent - y64.numpy()).max()
    assert d_ind <= TOL64, f'{label}: independent reference differs by {d_ind}'
    with torch.no_grad():
        yf = copy.deepcopy(model).eval().forward_tokens(x, **kw)
    d32 = (yf.double() - y64).abs().max().item()
    assert d32 <= 1e-4 * ymax, f'{label}: f32 forward differs by {d32}'
    msg.append(f'independent diff={d_ind:.2g} f32 forward diff={d32:.2g}')
    print(' '.join(msg), file=sys.stderr)
    return y32


def check_m2pt_file(m2pt, target, aux, layers, prefix, depth):
    """m2pt holds target byte for byte plus aux's weights as aux_weight."""
    extra = set(m2pt) - set(target)
    want = {f'{prefix}.{i}.{l}.{s}' for i in range(depth) for l in layers
            for s in ('aux_weight', 'cross_modal_scale')}
    assert extra == want, sorted(extra ^ want)
    for k, (dt, _, buf) in target.items():
        assert m2pt[k][0] == dt and m2pt[k][2] == buf, k
    for i in range(depth):
        for l in layers:
            p = f'{prefix}.{i}.{l}'
            assert m2pt[p + '.aux_weight'][2] == aux[p + '.weight'][2], p
            assert m2pt[p + '.cross_modal_scale'][1].shape == (1,)
            assert m2pt[p + '.cross_modal_scale'][1][0] != 0.0


def bert_as_timm_postnorm(model, c):
    """Check 3: the same layers as timm-layout post-norm blocks, qkv = [Wq;Wk;Wv]
    (merged weights)."""
    merged = copy.deepcopy(model).double()
    merge_model(merged)                            # fold in float64
    blocks = []
    for lay in merged.encoder.layer:
        blk = PostNormBlock(c['dim'], c['heads'], c['dim_head'], c['hidden'],
                            f32(c['eps'])).double()
        s = lay.attention.self
        with torch.no_grad():
            blk.attn.qkv.weight.copy_(torch.cat([s.query.weight, s.key.weight,
                                                 s.value.weight], 0))
            blk.attn.qkv.bias.copy_(torch.cat([s.query.bias, s.key.bias,
                                               s.value.bias], 0))
            pairs = [(blk.attn.proj, lay.attention.output.dense),
                     (blk.norm1, lay.attention.output.LayerNorm),
                     (blk.mlp.fc1, lay.intermediate.dense),
                     (blk.mlp.fc2, lay.output.dense),
                     (blk.norm2, lay.output.LayerNorm)]
            for dst, src in pairs:
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)
        blocks.append(blk)
    return nn.Sequential(*blocks)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

README = '''\
# tests/data/model

Generated by `tools/make_model_golden.py` (PyTorch @VERSION@, numpy
@NPVERSION@); do not edit. Regenerate with

    /usr/bin/python3 tools/make_model_golden.py tests/data/model

Whole-model fixtures for the model loader, the stacked M2PT forward and the
merge tool. The forward passes start from already-embedded tokens
x [2][5][24] (`*_input.npy`) and run the blocks (timm: then the final `norm`).
Expected outputs are float64 forwards of the stored float32 values, rounded
once to float32; lambdas are float32 values (0.3 = float32(0.3)).

timm (pre-norm ViT; dim 24, heads 3, dim_head 8, mlp hidden 96, depth 2,
LayerNorm eps 1e-6, exact GELU, qkv bias, qkv rows [3][heads][dim_head]):

| file | content |
|---|---|
| timm_target.safetensors | target ViT: blocks.{0,1}.*, norm.*, plus cls_token, pos_embed, patch_embed.proj.weight (F16), patch_embed.proj.bias, head.weight (BF16), head.bias that a loader ignores and a merge copies verbatim |
| timm_aux.safetensors | auxiliary-modality ViT, same names, other values |
| timm_m2pt.safetensors | timm_target + blocks.{i}.{attn.qkv,attn.proj,mlp.fc1,mlp.fc2}.aux_weight (= aux's weight) and .cross_modal_scale [1]: @TIMM_LAMBDAS@ |
| timm_input.npy | x [2][5][24] |
| timm_expected_plain.npy | target: blocks + norm |
| timm_expected_plain_nonorm.npy | target: blocks only |
| timm_expected_m2pt.npy | timm_m2pt unmerged (W + lambda W_aux in all 8 linears): blocks + norm |
| timm_expected_aux025.npy | target + aux, all 8 linears at lambda 0.25: blocks + norm |
| timm_expected_aux_qkv_fc1.npy | target + aux, only attn.qkv and mlp.fc1 at lambda 0.5: blocks + norm |

BERT (post-norm; dim 24, heads 2, dim_head 12, intermediate 96, depth 2,
LayerNorm eps 1e-12, exact GELU, no final norm; q/k/v split per head
[heads][dim_head], equal to timm's qkv with weight [Wq; Wk; Wv]):

| file | content |
|---|---|
| bert_target.safetensors | encoder.layer.{0,1}.* (query, key, value, attention.output.dense, attention.output.LayerNorm, intermediate.dense, output.dense, output.LayerNorm), plus embeddings.word_embeddings.weight [30][24], embeddings.LayerNorm.*, pooler.dense.* to be ignored / copied |
| bert_aux.safetensors | auxiliary model, same names, other values |
| bert_m2pt.safetensors | bert_target + <layer>.aux_weight and <layer>.cross_modal_scale [1] for the six linears of each layer: @BERT_LAMBDAS@ |
| bert_input.npy | x [2][5][24] |
| bert_expected_plain.npy | target encoder |
| bert_expected_aux03.npy | target + aux, all six linears at lambda 0.3 |
| bert_expected_m2pt.npy | bert_m2pt unmerged |

The aux models' biases are never used (the paper re-parameterizes weights
only). All checkpoints carry `__metadata__` {"format": "pt"}.
'''


def fmt_lambdas(scales):
    parts = []
    for i, per in enumerate(scales):
        parts.append(f'layer {i}: ' + ', '.join(f'{k} {v:.9g}' for k, v in per.items()))
    return '; '.join(parts)


def verify_with_reference_package(out_dir, written):
    try:
        from safetensors.torch import load_file, save_file
    except ImportError:
        print('safetensors package not importable: reference check skipped',
              file=sys.stderr)
        return
    tmp = os.path.join(out_dir, '.reference.tmp')
    try:
        for fname, tensors in written.items():
            path = os.path.join(out_dir, fname)
            ref = {k: t.to({'F32': torch.float32, 'F16': torch.float16,
                            'BF16': torch.bfloat16}[dt]).contiguous()
                   for k, (dt, t) in tensors.items()}
            save_file(ref, tmp, metadata=METADATA)
            with open(tmp, 'rb') as a, open(path, 'rb') as b:
                assert a.read() == b.read(), f'{fname}: differs from save_file'
            back = load_file(path)
            assert set(back) == set(ref)
            for k in ref:
                assert back[k].dtype == ref[k].dtype and torch.equal(back[k], ref[k]), k
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print('safetensors package: byte-identical files, same values read back',
          file=sys.stderr)


def main(argv):
    if len(argv) != 2:
        print(f'usage: {argv[0]} OUTPUT_DIR', file=sys.stderr)
        return 2
    out_dir = argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)               # module init values are all overwritten
    rng = np.random.default_rng(SEED)
    written = {}

    def path(name):
        return os.path.join(out_dir, name)

    def save_ckpt(fname, tensors):
        save_safetensors(path(fname), tensors)
        written[fname] = tensors
        return load_safetensors(path(fname))

    # ---------------- timm ----------------
    c = TIMM
    target = VisionTransformer(c).eval()
    aux = VisionTransformer(c).eval()
    randomize(target, rng)
    randomize(aux, rng)
    x = torch.from_numpy(rng.standard_normal((BATCH, TOKENS, c['dim'])).astype(np.float32))
    lams = draw_lambdas(rng, c['depth'] * len(TIMM_LAYERS))
    timm_scales = [dict(zip(TIMM_LAYERS, lams[i * 4:(i + 1) * 4]))
                   for i in range(c['depth'])]

    st_t, meta = save_ckpt('timm_target.safetensors', checkpoint_tensors(target))
    assert meta == METADATA
    st_a, _ = save_ckpt('timm_aux.safetensors', checkpoint_tensors(aux))
    save_npy(path('timm_input.npy'), x.numpy())
    xn = x.double().numpy()

    y = forward64(target, x)
    save_npy(path('timm_expected_plain.npy'), check_golden(
        'timm plain', target, x, y, np_timm(NpModel(st_t), xn, c), False))
    y = forward64(target, x, final_norm=False)
    save_npy(path('timm_expected_plain_nonorm.npy'), check_golden(
        'timm plain nonorm', target, x, y,
        np_timm(NpModel(st_t), xn, c, final_norm=False), False, final_norm=False))

    m2pt = reparameterize_aux_into_target_model(copy.deepcopy(target), aux,
                                                TIMM_LAYERS, 'blocks').eval()
    set_scales(m2pt, 'blocks', timm_scales)
    st_m, _ = save_ckpt('timm_m2pt.safetensors', checkpoint_tensors(m2pt))
    check_m2pt_file(st_m, st_t, st_a, TIMM_LAYERS, 'blocks', c['depth'])
    y = forward64(m2pt, x)
    save_npy(path('timm_expected_m2pt.npy'), check_golden(
        'timm m2pt', m2pt, x, y, np_timm(NpModel(st_m), xn, c), True))

    for fname, layers, lam in [('timm_expected_aux025.npy', TIMM_LAYERS, 0.25),
                               ('timm_expected_aux_qkv_fc1.npy',
                                ['attn.qkv', 'mlp.fc1'], 0.5)]:
        m = reparameterize_aux_into_target_model(copy.deepcopy(target), aux,
                                                 layers, 'blocks').eval()
        set_scales(m, 'blocks', [{l: lam for l in layers}] * c['depth'])
        table = {f'blocks.{i}.{l}': f32(lam) for i in range(c['depth']) for l in layers}
        y = forward64(m, x)
        save_npy(path(fname), check_golden(
            f'timm {fname}', m, x, y, np_timm(NpModel(st_t, st_a, table), xn, c), True))

    # ---------------- BERT ----------------
    c = BERT
    target = BertModel(c).eval()
    aux = BertModel(c).eval()
    randomize(target, rng)
    randomize(aux, rng)
    x = torch.from_numpy(rng.standard_normal((BATCH, TOKENS, c['dim'])).astype(np.float32))
    qkv_lam = f32(0.3)
    other = draw_lambdas(rng, c['depth'] * 3, avoid=(qkv_lam,))
    bert_scales = []
    for i in range(c['depth']):
        per = {l: qkv_lam for l in BERT_LAYERS[:3]}
        per.update(zip(BERT_LAYERS[3:], other[i * 3:(i + 1) * 3]))
        bert_scales.append(per)

    st_t, _ = save_ckpt('bert_target.safetensors', checkpoint_tensors(target))
    st_a, _ = save_ckpt('bert_aux.safetensors', checkpoint_tensors(aux))
    save_npy(path('bert_input.npy'), x.numpy())
    xn = x.double().numpy()

    def concat_check(label, model, y):
        seq = bert_as_timm_postnorm(model, c).double().eval()
        with torch.no_grad():
            d = (seq(x.double()) - y).abs().max().item()
        assert d <= TOL64, f'{label}: concatenated-qkv timm layout differs by {d}'
        print(f'{label}: concatenated [Wq;Wk;Wv] timm post-norm diff={d:.2g}',
              file=sys.stderr)

    y = forward64(target, x)
    concat_check('bert plain', target, y)
    save_npy(path('bert_expected_plain.npy'), check_golden(
        'bert plain', target, x, y, np_bert(NpModel(st_t), xn, c), False))

    m = reparameterize_aux_into_target_model(copy.deepcopy(target), aux,
                                             BERT_LAYERS, 'encoder.layer').eval()
    set_scales(m, 'encoder.layer', [{l: 0.3 for l in BERT_LAYERS}] * c['depth'])
    table = {f'encoder.layer.{i}.{l}': qkv_lam for i in range(c['depth'])
             for l in BERT_LAYERS}
    y = forward64(m, x)
    concat_check('bert aux03', m, y)
    save_npy(path('bert_expected_aux03.npy'), check_golden(
        'bert aux03', m, x, y, np_bert(NpModel(st_t, st_a, table), xn, c), True))

    m2pt = reparameterize_aux_into_target_model(copy.deepcopy(target), aux,
                                                BERT_LAYERS, 'encoder.layer').eval()
    set_scales(m2pt, 'encoder.layer', bert_scales)
    st_m, _ = save_ckpt('bert_m2pt.safetensors', checkpoint_tensors(m2pt))
    check_m2pt_file(st_m, st_t, st_a, BERT_LAYERS, 'encoder.layer', c['depth'])
    y = forward64(m2pt, x)
    concat_check('bert m2pt', m2pt, y)
    save_npy(path('bert_expected_m2pt.npy'), check_golden(
        'bert m2pt', m2pt, x, y, np_bert(NpModel(st_m), xn, c), True))

    verify_with_reference_package(out_dir, written)

    text = (README.replace('@VERSION@', torch.__version__)
            .replace('@NPVERSION@', np.__version__)
            .replace('@TIMM_LAMBDAS@', fmt_lambdas(timm_scales))
            .replace('@BERT_LAMBDAS@', fmt_lambdas(bert_scales)))
    with open(path('README.md'), 'w', encoding='ascii', newline='\n') as f:
        f.write(text)

    total = 0
    for name in sorted(os.listdir(out_dir)):
        size = os.path.getsize(path(name))
        total += size
        print(f'  {name:36s} {size:7d} bytes', file=sys.stderr)
    print(f'wrote {out_dir}: {total} bytes', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
