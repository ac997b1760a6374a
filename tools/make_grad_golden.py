#!/usr/bin/python3
"""Generate tests/data/grad/: whole-model gradient goldens from PyTorch
autograd for m2pt-grad (issue 12), checked by tests/check_grad_golden.py.

Usage (needs torch and numpy):
  python3 tools/make_grad_golden.py [OUT_DIR] [--m2pt-run build/tools/m2pt-run]
With --m2pt-run, each case's forward (logits or pooled features) is also run
by m2pt and compared with the float64 forward here, so that the gradients
are known to be those of the function m2pt computes; the errors are printed
(and recorded in OUT_DIR/README.md by hand).

The models are tools/golden_models.py's float64 definitions. Every
parameter is a leaf tensor named by its checkpoint name; pathway layers add
"<layer>.aux_weight" (W_aux, trainable) and "<layer>.cross_modal_scale"
(λ, shape [1]). The golden holds the loss (metadata "loss") and the
gradient of every parameter, computed in float64 and rounded once to f32,
in the layout m2pt-grad writes. BERT's q, k and v share one λ (m2pt
concatenates them into one qkv with one λ, and refuses a checkpoint whose
three differ), so their cross_modal_scale gradient is the shared λ's: the
sum over the three, written under each of the three names.

cases.json lists each case: the m2pt-grad arguments (paths relative to the
data directory), the golden, the names expected (all of the golden's, or
the remaining ones under --freeze), and per λ the scale of its reduction,
Σ|∂L/∂W_eff ⊙ W_aux| over the layer's matrix (the dλ tolerance's scale).
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_models import (Gen, bert_block, bert_embeddings, bert_names,  # noqa: E402
                           block_params, layer_norm, lin, patch_embed, save_npy, save_st, sub,
                           timm_block, timm_names)

TIMM_LINEARS = ['attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2']
BERT_QKV = ['attention.self.query', 'attention.self.key', 'attention.self.value']
BERT_LINEARS = BERT_QKV + ['attention.output.dense', 'intermediate.dense', 'output.dense']


def f32(v):
    return float(np.float32(v))


def timm_vit(gen, dim, hid, inner, depth, chans, img, patch, pool, classes=0, no_bias=()):
    """A timm VisionTransformer's tensors: token pooling has the final norm,
    'avg' fc_norm instead (timm's use_fc_norm); a head when classes > 0."""
    g = (img // patch) ** 2
    t = {'patch_embed.proj.weight': gen.rand(dim, chans, patch, patch),
         'patch_embed.proj.bias': gen.rand(dim), 'cls_token': gen.rand(1, 1, dim),
         'pos_embed': gen.rand(1, g + 1, dim)}
    for i in range(depth):
        bp = block_params(gen, timm_names(dim, hid, inner), dim, no_bias)
        t.update({f'blocks.{i}.{k}': v for k, v in bp.items()})
    norm = 'norm' if pool == 'token' else 'fc_norm'
    t[norm + '.weight'], t[norm + '.bias'] = gen.ln_params(dim)
    if classes:
        t['head.weight'], t['head.bias'] = gen.rand(classes, dim), gen.rand(classes, scale=0.05)
    return t


def philox(ctr, key):
    """Philox-4x32-10 (cl/dropout.cl, lib/common/philox.c)."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c3 ^ k1,
                          p0 & 0xFFFFFFFF)
    return c0, c1, c2, c3


def drop_path_keep(rate, depth, batch, seed, step):
    """Per block, the two branches' per-sample multipliers as timm's
    DropPath makes them (mask / keep_prob) with dpr = linspace(0, rate,
    depth), the masks m2pt's (model_grad.h): sample b of block i's branch j
    is dropped when word 0 of Philox((b, 2^31, step, 2 + 2i + j), seed) is
    below ceil(p·2^32)."""
    dpr = [x.item() for x in torch.linspace(0, rate, depth)]
    key = (seed & 0xFFFFFFFF, seed >> 32)
    keep = []
    for i, p in enumerate(dpr):
        pair = []
        for j in range(2):
            bits = [philox((b, 0x80000000, step, 2 + 2 * i + j), key)[0] >= math.ceil(p * 2**32)
                    for b in range(batch)]
            pair.append(torch.tensor(bits, dtype=torch.float64) / (1 - p))
        keep.append(pair)
    return keep


def vit_forward(p, pixels, heads, depth, pool, keep=None):
    """timm forward_features + forward_head: logits with a head, else the
    pooled features; keep: drop-path_keep's multipliers, or None."""
    x = patch_embed(p['patch_embed.proj.weight'], p['patch_embed.proj.bias'], p['cls_token'],
                    p['pos_embed'], pixels)
    for i in range(depth):
        x = timm_block(sub(p, f'blocks.{i}.'), x, heads, keep=keep[i] if keep else None)
    if pool == 'token':
        y = layer_norm(x, p['norm.weight'], p['norm.bias'], 1e-6)[:, 0]
    else:
        y = layer_norm(x[:, 1:].mean(1), p['fc_norm.weight'], p['fc_norm.bias'], 1e-6)
    return lin(p, 'head', y) if 'head.weight' in p else y


def bert_model(gen, dim, hid, depth, vocab, npos, ntypes, classes):
    """BertForSequenceClassification's tensors ("bert." prefix, the
    position_ids buffer, pooler, classifier)."""
    t = {'bert.embeddings.word_embeddings.weight': gen.rand(vocab, dim),
         'bert.embeddings.position_embeddings.weight': gen.rand(npos, dim),
         'bert.embeddings.token_type_embeddings.weight': gen.rand(ntypes, dim),
         'bert.embeddings.position_ids': torch.arange(npos).reshape(1, npos)}
    t['bert.embeddings.LayerNorm.weight'], t['bert.embeddings.LayerNorm.bias'] = \
        gen.ln_params(dim)
    for i in range(depth):
        t.update({f'bert.encoder.layer.{i}.{k}': v
                  for k, v in block_params(gen, bert_names(dim, hid), dim).items()})
    t['bert.pooler.dense.weight'], t['bert.pooler.dense.bias'] = gen.rand(dim, dim), gen.rand(dim)
    t['classifier.weight'], t['classifier.bias'] = gen.rand(classes, dim), gen.rand(classes)
    return t


def bert_forward(p, ids, mask, heads, depth, keep=None):
    """Logits of the classifier on the pooler tanh(dense(h[:, 0]))."""
    x = bert_embeddings(p, 'bert.', ids, torch.zeros_like(ids))
    for i in range(depth):
        x = bert_block(sub(p, f'bert.encoder.layer.{i}.'), x, mask, heads,
                       keep=keep[i] if keep else None)
    return lin(p, 'classifier', torch.tanh(lin(p, 'bert.pooler.dense', x[:, 0])))


def leaves(t):
    """The trainable parameters: every float tensor as a float64 leaf (the
    int64 position_ids buffer is not a parameter)."""
    return {k: v.clone().requires_grad_() for k, v in t.items() if v.is_floating_point()}


def add_pathway(p, aux, layers, lam):
    """W_aux from aux under "<layer>.aux_weight" and λ under
    "<layer>.cross_modal_scale" for each layer; layers in one inner list
    share one λ leaf (BERT's q, k, v)."""
    for group in layers:
        scale = torch.tensor([f32(lam)]).requires_grad_()
        for n in group:
            p[n + '.aux_weight'] = aux[n + '.weight'].clone().requires_grad_()
            p[n + '.cross_modal_scale'] = scale


def gradients(p, loss):
    """loss.backward(); the gradient of every leaf, by name, and the scale
    Σ|∂L/∂W_eff ⊙ W_aux| of each λ's reduction (summed over the layers
    sharing it)."""
    loss.backward()
    grads = {n: v.grad for n, v in p.items()}
    sums = {}
    for n in p:
        if n.endswith('.aux_weight'):
            layer = n[:-len('.aux_weight')]
            s = p[layer + '.cross_modal_scale']
            term = (grads[layer + '.weight'] * p[n]).abs().sum().item()
            sums[id(s)] = sums.get(id(s), 0.0) + term
    scales = {n: sums[id(v)] for n, v in p.items() if n.endswith('.cross_modal_scale')}
    return grads, scales


def write_case(out, name, loss, grads, scales, model_args, loss_args, forward_kind, forward,
               cases, freeze=None):
    golden = f'{name}_grads.safetensors'
    save_st(f'{out}/{golden}', grads, {'loss': repr(loss.item())})
    case = {'name': name, 'model_args': model_args, 'loss_args': loss_args, 'golden': golden,
            'expect': sorted(grads), 'reduction_scale': scales, 'forward_kind': forward_kind}
    cases.append(case)
    save_npy(f'{out}/{name}_forward.npy', forward)
    if freeze:
        option, frozen = freeze
        cases.append(dict(case, name=f'{name}_freeze', loss_args=loss_args + ['--freeze', option],
                          expect=sorted(n for n in grads if n not in frozen)))


def write_droppath_case(out, name, loss, grads, scales, model_args, loss_args, keep, cases):
    """A training-only case (no inference forward to compare); the masks
    must drop some branch and keep another, or the case tests nothing."""
    flat = [v for pair in keep[1:] for t in pair for v in t.tolist()]
    assert 0.0 in flat and any(v > 0 for v in flat), f'{name}: masks all alike, pick another seed'
    golden = f'{name}_grads.safetensors'
    save_st(f'{out}/{golden}', grads, {'loss': repr(loss.item())})
    cases.append({'name': name, 'model_args': model_args, 'loss_args': loss_args,
                  'golden': golden, 'expect': sorted(grads), 'reduction_scale': scales,
                  'training_only': True})


def case_vit(out, cases):
    """(a) timm ViT, 2 blocks, pathways from an aux checkpoint on every block
    linear and the head (λ = 0.3), token pooling, cross-entropy with label
    smoothing 0.1."""
    gen = Gen(1201)
    dim, hid, heads, depth, classes, lam = 16, 32, 2, 2, 5, 0.3
    shape = dict(dim=dim, hid=hid, inner=dim, depth=depth, chans=3, img=8, patch=4, pool='token',
                 classes=classes)
    target, aux = timm_vit(gen, **shape), timm_vit(gen, **shape)
    pixels = gen.rand(3, 3, 8, 8, scale=1.0)
    labels = torch.tensor([4, 0, 2])
    save_st(f'{out}/vit.safetensors', target)
    save_st(f'{out}/vit_aux.safetensors', aux)
    save_npy(f'{out}/vit_pixels.npy', pixels)
    save_npy(f'{out}/vit_labels.npy', labels, '<i8')
    p = leaves(target)
    layers = [[f'blocks.{i}.{n}'] for i in range(depth) for n in TIMM_LINEARS] + [['head']]
    add_pathway(p, aux, layers, lam)
    logits = vit_forward(p, pixels, heads, depth, 'token')
    loss = F.cross_entropy(logits, labels, label_smoothing=f32(0.1))
    grads, scales = gradients(p, loss)
    model_args = ['--model', 'vit.safetensors', '--aux', 'vit_aux.safetensors', '--scale', '0.3',
                  '--layers', 'attn.qkv,attn.proj,mlp.fc1,mlp.fc2,head', '--heads', str(heads),
                  '--pixels', 'vit_pixels.npy']
    loss_args = ['--labels', 'vit_labels.npy', '--loss', 'ce', '--label-smoothing', '0.1']
    write_case(out, 'vit', loss, grads, scales, model_args, loss_args, 'logits', logits, cases)
    # Stochastic depth (--drop-path 0.6: block 1's rate; block 0's is 0).
    p = leaves(target)
    add_pathway(p, aux, layers, lam)
    keep = drop_path_keep(f32(0.6), depth, 3, seed=7, step=3)
    logits = vit_forward(p, pixels, heads, depth, 'token', keep)
    loss = F.cross_entropy(logits, labels, label_smoothing=f32(0.1))
    grads, scales = gradients(p, loss)
    write_droppath_case(out, 'vit_droppath', loss, grads, scales, model_args,
                        loss_args + ['--drop-path', '0.6', '--seed', '7', '--step', '3'], keep,
                        cases)


def case_bert(out, cases):
    """(b) HF BERT, 2 post-norm layers, pathways from an aux checkpoint on
    every block linear (the default --layers; q, k, v share λ), ids with a
    padded batch, the pooler and the classifier, cross-entropy."""
    gen = Gen(1202)
    dim, hid, heads, depth, classes, lam = 16, 32, 2, 2, 3, 0.3
    shape = dict(dim=dim, hid=hid, depth=depth, vocab=20, npos=10, ntypes=2, classes=classes)
    target, aux = bert_model(gen, **shape), bert_model(gen, **shape)
    ids = torch.tensor([[2, 5, 7, 11, 13, 17, 3], [2, 19, 4, 3, 0, 0, 0], [2, 8, 8, 9, 6, 3, 0]])
    mask = (ids != 0).to(torch.int64)
    labels = torch.tensor([1, 2, 0])
    save_st(f'{out}/bert.safetensors', target)
    save_st(f'{out}/bert_aux.safetensors', aux)
    save_npy(f'{out}/bert_ids.npy', ids, '<i8')
    save_npy(f'{out}/bert_mask.npy', mask, '<i8')
    save_npy(f'{out}/bert_labels.npy', labels, '<i8')
    p = leaves(target)
    layers = []
    for i in range(depth):
        pre = f'bert.encoder.layer.{i}.'
        layers += [[pre + n for n in BERT_QKV]] + [[pre + n] for n in BERT_LINEARS[3:]]
    add_pathway(p, aux, layers, lam)
    logits = bert_forward(p, ids, mask.to(torch.float64), heads, depth)
    loss = F.cross_entropy(logits, labels)
    grads, scales = gradients(p, loss)
    model_args = ['--model', 'bert.safetensors', '--aux', 'bert_aux.safetensors', '--scale', '0.3',
                  '--heads', str(heads), '--input-ids', 'bert_ids.npy', '--attention-mask',
                  'bert_mask.npy']
    loss_args = ['--labels', 'bert_labels.npy', '--loss', 'ce']
    write_case(out, 'bert', loss, grads, scales, model_args, loss_args, 'logits', logits, cases)
    p = leaves(target)
    add_pathway(p, aux, layers, lam)
    keep = drop_path_keep(f32(0.6), depth, 3, seed=11, step=0)
    logits = bert_forward(p, ids, mask.to(torch.float64), heads, depth, keep)
    loss = F.cross_entropy(logits, labels)
    grads, scales = gradients(p, loss)
    write_droppath_case(out, 'bert_droppath', loss, grads, scales, model_args,
                        loss_args + ['--drop-path', '0.6', '--seed', '11'], keep, cases)


def case_narrow(out, cases):
    """(c) timm ViT with heads·dim_head = 3·4 = 12 ≠ dim = 24, no qkv bias,
    an M2PT checkpoint holding its own pathways (attn.qkv and mlp.fc2, a
    different λ each), mean pooling with fc_norm and no head, MSE against
    [B][dim] targets. Run again with --freeze target,bias: the four block
    linears' weight and bias are frozen, the rest is written."""
    gen = Gen(1203)
    dim, hid, inner, heads, depth = 24, 48, 12, 3, 2
    shape = dict(dim=dim, hid=hid, inner=inner, depth=depth, chans=3, img=12, patch=4, pool='avg',
                 no_bias=('attn.qkv',))
    target, aux = timm_vit(gen, **shape), timm_vit(gen, **shape)
    lams = {'blocks.0.attn.qkv': 0.3, 'blocks.0.mlp.fc2': -0.25, 'blocks.1.attn.qkv': 0.5,
            'blocks.1.mlp.fc2': 0.2}
    ckpt = dict(target)
    for n, lam in lams.items():
        ckpt[n + '.aux_weight'] = aux[n + '.weight']
        ckpt[n + '.cross_modal_scale'] = torch.tensor([f32(lam)])
    pixels = gen.rand(2, 3, 12, 12, scale=1.0)
    targets = gen.rand(2, dim, scale=1.0)
    save_st(f'{out}/narrow.safetensors', ckpt)
    save_npy(f'{out}/narrow_pixels.npy', pixels)
    save_npy(f'{out}/narrow_targets.npy', targets)
    p = leaves(ckpt)  # the stored pathways are leaves already, one λ each
    pooled = vit_forward(p, pixels, heads, depth, 'avg')
    loss = F.mse_loss(pooled, targets)
    grads, scales = gradients(p, loss)
    model_args = ['--model', 'narrow.safetensors', '--heads', str(heads), '--pixels',
                  'narrow_pixels.npy', '--pool', 'mean']
    loss_args = ['--labels', 'narrow_targets.npy', '--loss', 'mse']
    frozen = {f'blocks.{i}.{n}.{f}' for i in range(depth) for n in TIMM_LINEARS
              for f in ('weight', 'bias')}
    write_case(out, 'narrow', loss, grads, scales, model_args, loss_args, 'pooled', pooled, cases,
               freeze=('target,bias', frozen))


def check_forward(out, m2pt_run, cases):
    """Runs m2pt-run on each case and prints max|m2pt − torch| and the
    DESIGN.md bound 1e-4·max(1, max|torch|)."""
    ok = True
    for c in cases:
        if c['name'].endswith('_freeze') or c.get('training_only'):
            continue
        ref = np.load(f"{out}/{c['name']}_forward.npy").astype(np.float64)
        with tempfile.TemporaryDirectory() as tmp:
            y = os.path.join(tmp, 'y.npy')
            subprocess.run([os.path.abspath(m2pt_run)] + c['model_args'] +
                           ['--output-kind', c['forward_kind'], '--output', y], cwd=out,
                           check=True)
            got = np.load(y).astype(np.float64)
        err = float(np.abs(got - ref).max()) if got.shape == ref.shape else float('inf')
        bound = 1e-4 * max(1.0, float(np.abs(ref).max()))
        ok = ok and err <= bound
        print(f"{c['name']}: {c['forward_kind']} {list(ref.shape)}: max|m2pt - torch| = "
              f"{err:.3g} (bound {bound:.3g}, max|torch| {np.abs(ref).max():.3g})")
    return ok


def main(argv):
    out, m2pt_run = 'tests/data/grad', None
    args = list(argv)
    if '--m2pt-run' in args:
        i = args.index('--m2pt-run')
        m2pt_run = args[i + 1]
        del args[i:i + 2]
    if args:
        out = args[0]
    os.makedirs(out, exist_ok=True)
    cases = []
    case_vit(out, cases)
    case_bert(out, cases)
    case_narrow(out, cases)
    with open(f'{out}/cases.json', 'w') as f:
        json.dump({'cases': cases}, f, indent=1)
        f.write('\n')
    for c in cases:
        print(f"{c['name']}: {len(c['expect'])} gradients")
    if m2pt_run and not check_forward(out, m2pt_run, cases):
        sys.exit('m2pt\'s forward does not match the golden\'s')


if __name__ == '__main__':
    main(sys.argv[1:])
