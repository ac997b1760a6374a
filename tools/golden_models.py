"""Plain float64 PyTorch definitions of the models m2pt loads, shared by the
golden generators (tools/make_whole_model_golden.py, tools/make_grad_golden.py).

Written from the models' definitions; neither timm nor transformers is
imported:
  * timm Block (pre-norm) and PatchEmbed + cls_token + pos_embed;
  * HF ViTLayer (pre-norm, q, k, v separate) and BertLayer (post-norm, the
    extended attention mask (1 − m)·finfo.min on the keys);
  * the paper's CrossModalReparamLinear: a linear whose parameters hold
    "<layer>.aux_weight" and "<layer>.cross_modal_scale" computes
    x·(W + λ·W_aux)ᵀ + b.
Parameters live in a dict keyed by checkpoint name (relative to the block
for the block functions), so the same dict is saved as the checkpoint and,
made of leaf tensors, gives autograd's gradients under those names.
heads·dim_head may differ from dim: the attention width is qkv's rows / 3.
"""
import numpy as np
import torch
import torch.nn.functional as F

import safetensors_file

torch.set_default_dtype(torch.float64)


class Gen:
    """Random parameters drawn from one seeded numpy generator, as float32
    values held in float64 tensors (the files hold exactly what the golden
    uses)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def rand(self, *shape, scale=0.2):
        return torch.tensor(self.rng.standard_normal(shape).astype(np.float32) * scale,
                            dtype=torch.float64)

    def ln_params(self, dim):
        return 1 + self.rand(dim, scale=0.1), self.rand(dim, scale=0.05)


def save_st(path, tensors, metadata=None):
    """A safetensors file (F32, or I64 for int64 tensors), names sorted."""
    entries = []
    for name in sorted(tensors):
        t = tensors[name].detach()
        if t.dtype == torch.int64:
            entries.append((name, 'I64', t.shape, t.numpy().astype('<i8').tobytes()))
        else:
            entries.append((name, 'F32', t.shape, t.numpy().astype('<f4').tobytes()))
    safetensors_file.write(path, entries, metadata or {'format': 'pt'})


def save_npy(path, a, dtype='<f4'):
    a = a.detach() if isinstance(a, torch.Tensor) else a
    np.save(path, np.ascontiguousarray(np.asarray(a, dtype=dtype)))


def layer_norm(x, w, b, eps):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def attention(q, k, v, mask, heads):
    """softmax(q·kᵀ·dim_head^-0.5 + mask)·v per head; q, k, v [B][N][heads·dim_head]."""
    B, N, inner = q.shape
    dh = inner // heads
    q, k, v = (t.reshape(B, N, heads, dh).transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) * dh ** -0.5
    if mask is not None:  # HF's extended mask: (1 − m)·finfo.min on the keys
        s = s + (1 - mask[:, None, None, :]) * torch.finfo(torch.float64).min
    return (s.softmax(-1) @ v).transpose(1, 2).reshape(B, N, inner)


def lin(p, n, x):
    """Linear `n` of p: plain, or re-parameterized where p holds its pathway."""
    w = p[n + '.weight']
    if n + '.aux_weight' in p:
        w = w + p[n + '.cross_modal_scale'] * p[n + '.aux_weight']
    return F.linear(x, w, p.get(n + '.bias'))


def timm_names(dim, hid, inner=None):
    inner = inner or dim
    return dict(norms=['norm1', 'norm2'],
                linears={'attn.qkv': (3 * inner, dim), 'attn.proj': (dim, inner),
                         'mlp.fc1': (hid, dim), 'mlp.fc2': (dim, hid)})


def hf_vit_names(dim, hid):
    return dict(norms=['layernorm_before', 'layernorm_after'],
                linears={'attention.attention.query': (dim, dim),
                         'attention.attention.key': (dim, dim),
                         'attention.attention.value': (dim, dim),
                         'attention.output.dense': (dim, dim),
                         'intermediate.dense': (hid, dim), 'output.dense': (dim, hid)})


def bert_names(dim, hid):
    return dict(norms=['attention.output.LayerNorm', 'output.LayerNorm'],
                linears={k.replace('attention.attention', 'attention.self'): v
                         for k, v in hf_vit_names(dim, hid)['linears'].items()})


def block_params(gen, names, dim, no_bias=()):
    """Norms then linears (weight, bias unless listed in no_bias)."""
    p = {}
    for n in names['norms']:
        p[n + '.weight'], p[n + '.bias'] = gen.ln_params(dim)
    for n, (o, i) in names['linears'].items():
        p[n + '.weight'] = gen.rand(o, i)
        if n not in no_bias:
            p[n + '.bias'] = gen.rand(o, scale=0.05)
    return p


def sub(p, prefix):
    """The entries of p under `prefix`, the prefix dropped."""
    return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}


def branch(y, keep, i):
    """timm's DropPath on a residual branch: keep is None or a pair of
    per-sample multipliers [B] (0, or 1/keep_prob), i the branch."""
    return y if keep is None else y * keep[i].reshape(-1, 1, 1)


def timm_block(p, x, heads, eps=1e-6, keep=None):
    h = layer_norm(x, p['norm1.weight'], p['norm1.bias'], eps)
    qkv = lin(p, 'attn.qkv', h)
    q, k, v = qkv.split(qkv.shape[-1] // 3, -1)
    x = x + branch(lin(p, 'attn.proj', attention(q, k, v, None, heads)), keep, 0)
    h = layer_norm(x, p['norm2.weight'], p['norm2.bias'], eps)
    return x + branch(lin(p, 'mlp.fc2', F.gelu(lin(p, 'mlp.fc1', h))), keep, 1)


def hf_vit_block(p, x, heads):
    h = layer_norm(x, p['layernorm_before.weight'], p['layernorm_before.bias'], 1e-12)
    a = 'attention.attention.'
    x = x + lin(p, 'attention.output.dense',
                attention(lin(p, a + 'query', h), lin(p, a + 'key', h), lin(p, a + 'value', h),
                          None, heads))
    h = layer_norm(x, p['layernorm_after.weight'], p['layernorm_after.bias'], 1e-12)
    return x + lin(p, 'output.dense', F.gelu(lin(p, 'intermediate.dense', h)))


def bert_block(p, x, mask, heads, keep=None):
    """keep: drop-path as m2pt defines it for post-norm, the branch dropped
    before its residual add, inside the LayerNorm."""
    a = 'attention.self.'
    h = attention(lin(p, a + 'query', x), lin(p, a + 'key', x), lin(p, a + 'value', x), mask,
                  heads)
    x = layer_norm(x + branch(lin(p, 'attention.output.dense', h), keep, 0),
                   p['attention.output.LayerNorm.weight'], p['attention.output.LayerNorm.bias'],
                   1e-12)
    h = branch(lin(p, 'output.dense', F.gelu(lin(p, 'intermediate.dense', x))), keep, 1)
    return layer_norm(x + h, p['output.LayerNorm.weight'], p['output.LayerNorm.bias'], 1e-12)


def patch_embed(w, b, cls, pos, pixels):
    """Conv2d (stride = kernel), flattened to tokens, cls_token prepended,
    pos_embed added."""
    d = w.shape[0]
    x = F.conv2d(pixels, w, b, stride=w.shape[-1]).flatten(2).transpose(1, 2)
    x = torch.cat([cls.reshape(1, 1, d).expand(x.shape[0], 1, d), x], 1)
    return x + pos.reshape(1, -1, d)


def bert_embeddings(t, prefix, ids, types):
    """word + position (0 … N−1) + token type, then LayerNorm (eps 1e-12)."""
    e = prefix + 'embeddings.'
    n = ids.shape[1]
    x = (t[e + 'word_embeddings.weight'][ids] + t[e + 'position_embeddings.weight'][:n]
         + t[e + 'token_type_embeddings.weight'][types])
    return layer_norm(x, t[e + 'LayerNorm.weight'], t[e + 'LayerNorm.bias'], 1e-12)
