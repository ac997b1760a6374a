#!/usr/bin/python3
"""Generate tests/data/whole/: tiny whole-model checkpoints, inputs and
PyTorch goldens (issue 11).

Usage (needs torch and numpy): python3 tools/make_whole_model_golden.py tests/data/whole

Plain float64 PyTorch re-implementations written from the models'
definitions (neither timm nor transformers is imported):
  * timm VisionTransformer: PatchEmbed (Conv2d stride = kernel), cls_token
    prepended, pos_embed added, pre-norm blocks (eps 1e-6), then
    forward_head: norm (Identity when fc_norm is used), pool ('token':
    x[:, 0]; 'avg': x[:, 1:].mean(1)), fc_norm, head.
  * HF ViTForImageClassification: ViTEmbeddings (same), ViTLayer
    (layernorm_before / layernorm_after, pre-norm, eps 1e-12), vit.layernorm,
    classifier(sequence_output[:, 0]).
  * HF BertForSequenceClassification: BertEmbeddings (word + position
    (0 … N−1) + token type, LayerNorm eps 1e-12), post-norm BertLayer with
    the extended attention mask, BertPooler tanh(dense(h[:, 0])), classifier;
    sentence-transformers mean pooling (sum(h·m) / clamp(sum(m), 1e-9)) and
    F.normalize.
  * CrossModalReparamLinear on the classifier: W + λ·W_aux (the paper), and
    the seed's variant adding λ·b_aux.
Inputs are stored as float32 .npy (ids and masks are small integers, exact
in f32; the test converts them to int64/int32). Expected outputs are the
float64 forward rounded once to float32.
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
D, HEADS, DEPTH, HID = 16, 2, 2, 64
rng = np.random.default_rng(20240511)


def rand(*shape, scale=0.2):
    # float32 values, so the file holds exactly what the golden uses
    return torch.tensor(rng.standard_normal(shape).astype(np.float32) * scale, dtype=torch.float64)


def ln_params():
    return 1 + rand(D, scale=0.1), rand(D, scale=0.05)


def save_st(path, tensors):
    header, blobs, off = {'__metadata__': {'format': 'pt'}}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype == torch.int64:
            blob, dt = t.numpy().astype('<i8').tobytes(), 'I64'
        else:
            blob, dt = t.numpy().astype('<f4').tobytes(), 'F32'
        header[name] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + b''.join(blobs))


def save_npy(path, a):
    np.save(path, np.ascontiguousarray(np.asarray(a, dtype='<f4')))


def layer_norm(x, w, b, eps):
    return F.layer_norm(x, (D,), w, b, eps)


def attention(q, k, v, mask):
    B, N, _ = q.shape
    dh = D // HEADS
    q, k, v = (t.reshape(B, N, HEADS, dh).transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) * dh ** -0.5
    if mask is not None:  # HF's extended mask: (1 − m)·finfo.min on the keys
        s = s + (1 - mask[:, None, None, :]) * torch.finfo(torch.float64).min
    return (s.softmax(-1) @ v).transpose(1, 2).reshape(B, N, D)


def block_params(names):
    p = {}
    for n in names['norms']:
        p[n + '.weight'], p[n + '.bias'] = ln_params()
    for n, (o, i) in names['linears'].items():
        p[n + '.weight'], p[n + '.bias'] = rand(o, i), rand(o, scale=0.05)
    return p


def lin(p, n, x):
    return F.linear(x, p[n + '.weight'], p[n + '.bias'])


TIMM = dict(norms=['norm1', 'norm2'], linears={'attn.qkv': (3 * D, D), 'attn.proj': (D, D),
                                                'mlp.fc1': (HID, D), 'mlp.fc2': (D, HID)})
HFV = dict(norms=['layernorm_before', 'layernorm_after'],
           linears={'attention.attention.query': (D, D), 'attention.attention.key': (D, D),
                    'attention.attention.value': (D, D), 'attention.output.dense': (D, D),
                    'intermediate.dense': (HID, D), 'output.dense': (D, HID)})
BERT = dict(norms=['attention.output.LayerNorm', 'output.LayerNorm'], linears=HFV['linears'] | {})
BERT['linears'] = {k.replace('attention.attention', 'attention.self'): v
                   for k, v in HFV['linears'].items()}


def timm_block(p, x, eps=1e-6):
    h = layer_norm(x, p['norm1.weight'], p['norm1.bias'], eps)
    q, k, v = lin(p, 'attn.qkv', h).split(D, -1)
    x = x + lin(p, 'attn.proj', attention(q, k, v, None))
    h = layer_norm(x, p['norm2.weight'], p['norm2.bias'], eps)
    return x + lin(p, 'mlp.fc2', F.gelu(lin(p, 'mlp.fc1', h)))


def hf_vit_block(p, x):
    h = layer_norm(x, p['layernorm_before.weight'], p['layernorm_before.bias'], 1e-12)
    a = 'attention.attention.'
    x = x + lin(p, 'attention.output.dense',
                attention(lin(p, a + 'query', h), lin(p, a + 'key', h), lin(p, a + 'value', h), None))
    h = layer_norm(x, p['layernorm_after.weight'], p['layernorm_after.bias'], 1e-12)
    return x + lin(p, 'output.dense', F.gelu(lin(p, 'intermediate.dense', h)))


def bert_block(p, x, mask):
    a = 'attention.self.'
    h = attention(lin(p, a + 'query', x), lin(p, a + 'key', x), lin(p, a + 'value', x), mask)
    x = layer_norm(x + lin(p, 'attention.output.dense', h), p['attention.output.LayerNorm.weight'],
                   p['attention.output.LayerNorm.bias'], 1e-12)
    h = lin(p, 'output.dense', F.gelu(lin(p, 'intermediate.dense', x)))
    return layer_norm(x + h, p['output.LayerNorm.weight'], p['output.LayerNorm.bias'], 1e-12)


def patch_embed(w, b, cls, pos, pixels):
    x = F.conv2d(pixels, w, b, stride=w.shape[-1]).flatten(2).transpose(1, 2)
    x = torch.cat([cls.reshape(1, 1, D).expand(x.shape[0], 1, D), x], 1)
    return x + pos.reshape(1, -1, D)


def main(out):
    C, IMG, P, CLASSES = 3, 8, 4, 3
    G = (IMG // P) ** 2
    pixels = rand(2, C, IMG, IMG, scale=1.0)
    save_npy(f'{out}/pixels.npy', pixels)

    # timm, token pooling (norm, head) and avg pooling (fc_norm, head)
    for kind in ('token', 'avg'):
        t = {'patch_embed.proj.weight': rand(D, C, P, P), 'patch_embed.proj.bias': rand(D),
             'cls_token': rand(1, 1, D), 'pos_embed': rand(1, G + 1, D),
             'head.weight': rand(CLASSES, D), 'head.bias': rand(CLASSES)}
        blocks = [block_params(TIMM) for _ in range(DEPTH)]
        for i, bp in enumerate(blocks):
            t.update({f'blocks.{i}.{k}': v for k, v in bp.items()})
        norm = 'norm' if kind == 'token' else 'fc_norm'
        t[norm + '.weight'], t[norm + '.bias'] = ln_params()
        x = patch_embed(t['patch_embed.proj.weight'], t['patch_embed.proj.bias'], t['cls_token'],
                        t['pos_embed'], pixels)
        for bp in blocks:
            x = timm_block(bp, x)
        if kind == 'token':
            x = layer_norm(x, t['norm.weight'], t['norm.bias'], 1e-6)
            pooled = x[:, 0]
        else:
            pooled = layer_norm(x[:, 1:].mean(1), t['fc_norm.weight'], t['fc_norm.bias'], 1e-6)
        save_st(f'{out}/timm_{kind}.safetensors', t)
        save_npy(f'{out}/timm_{kind}_hidden.npy', x)
        save_npy(f'{out}/timm_{kind}_pooled.npy', pooled)
        save_npy(f'{out}/timm_{kind}_logits.npy', lin(t, 'head', pooled))

    # HF ViTForImageClassification
    t = {'vit.embeddings.patch_embeddings.projection.weight': rand(D, C, P, P),
         'vit.embeddings.patch_embeddings.projection.bias': rand(D),
         'vit.embeddings.cls_token': rand(1, 1, D), 'vit.embeddings.position_embeddings':
         rand(1, G + 1, D), 'classifier.weight': rand(CLASSES, D), 'classifier.bias': rand(CLASSES)}
    t['vit.layernorm.weight'], t['vit.layernorm.bias'] = ln_params()
    blocks = [block_params(HFV) for _ in range(DEPTH)]
    for i, bp in enumerate(blocks):
        t.update({f'vit.encoder.layer.{i}.{k}': v for k, v in bp.items()})
    e = 'vit.embeddings.'
    x = patch_embed(t[e + 'patch_embeddings.projection.weight'],
                    t[e + 'patch_embeddings.projection.bias'], t[e + 'cls_token'],
                    t[e + 'position_embeddings'], pixels)
    for bp in blocks:
        x = hf_vit_block(bp, x)
    x = layer_norm(x, t['vit.layernorm.weight'], t['vit.layernorm.bias'], 1e-12)
    save_st(f'{out}/hf_vit.safetensors', t)
    save_npy(f'{out}/hf_vit_logits.npy', lin(t, 'classifier', x[:, 0]))

    # BERT (bert. prefix, pooler, classifier, an I64 position_ids buffer) and
    # an aux BERT whose classifier becomes the pathway.
    V, NPOS, NTYPES, N = 20, 8, 2, 6
    ids = torch.tensor([[2, 5, 7, 11, 13, 3], [2, 19, 3, 0, 0, 0]])
    types = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.float64)
    for name, a in (('ids', ids), ('types', types), ('mask', mask)):
        save_npy(f'{out}/bert_{name}.npy', a)

    def bert(prefix):
        t = {prefix + 'embeddings.word_embeddings.weight': rand(V, D),
             prefix + 'embeddings.position_embeddings.weight': rand(NPOS, D),
             prefix + 'embeddings.token_type_embeddings.weight': rand(NTYPES, D),
             prefix + 'embeddings.position_ids': torch.arange(NPOS).reshape(1, NPOS),
             prefix + 'pooler.dense.weight': rand(D, D), prefix + 'pooler.dense.bias': rand(D),
             'classifier.weight': rand(CLASSES, D), 'classifier.bias': rand(CLASSES)}
        w, b = ln_params()
        t[prefix + 'embeddings.LayerNorm.weight'], t[prefix + 'embeddings.LayerNorm.bias'] = w, b
        for i in range(DEPTH):
            t.update({f'{prefix}encoder.layer.{i}.{k}': v for k, v in block_params(BERT).items()})
        return t

    def bert_forward(t, prefix, head_w, head_b):
        e = prefix + 'embeddings.'
        x = (t[e + 'word_embeddings.weight'][ids] + t[e + 'position_embeddings.weight'][:N]
             + t[e + 'token_type_embeddings.weight'][types])
        x = layer_norm(x, t[e + 'LayerNorm.weight'], t[e + 'LayerNorm.bias'], 1e-12)
        for i in range(DEPTH):
            pre = f'{prefix}encoder.layer.{i}.'
            x = bert_block({k[len(pre):]: v for k, v in t.items() if k.startswith(pre)}, x, mask)
        pooled = torch.tanh(lin(t, prefix + 'pooler.dense', x[:, 0]))
        mean = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
        return x, pooled, mean, F.linear(pooled, head_w, head_b)

    t, aux = bert('bert.'), bert('bert.')
    x, pooled, mean, logits = bert_forward(t, 'bert.', t['classifier.weight'], t['classifier.bias'])
    save_st(f'{out}/bert.safetensors', t)
    save_st(f'{out}/bert_aux.safetensors', aux)
    save_npy(f'{out}/bert_hidden.npy', x)
    save_npy(f'{out}/bert_pooled.npy', pooled)
    save_npy(f'{out}/bert_mean.npy', F.normalize(mean, p=2, dim=1))
    save_npy(f'{out}/bert_logits.npy', logits)
    lam = float(np.float32(0.3))
    w_eff = t['classifier.weight'] + lam * aux['classifier.weight']
    _, _, _, lp = bert_forward(t, 'bert.', w_eff, t['classifier.bias'])
    save_npy(f'{out}/bert_logits_head_pathway.npy', lp)
    _, _, _, lpb = bert_forward(t, 'bert.', w_eff, t['classifier.bias'] + lam * aux['classifier.bias'])
    save_npy(f'{out}/bert_logits_head_aux_bias.npy', lpb)

    # A checkpoint with embeddings but no blocks.
    save_st(f'{out}/no_blocks.safetensors',
            {k: v for k, v in t.items() if 'encoder.layer' not in k})


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'tests/data/whole')
