#!/usr/bin/python3
"""Generate tests/data/train/: the training-trajectory golden of issue 13.

Usage (needs torch and numpy): python3 tools/make_train_golden.py tests/data/train

A 2-block timm-style model (pre-norm, qkv without bias, final norm, token
pooling, a head) whose four block linears carry M2PT pathways (the paper's
CrossModalReparamLinear: W + λ·W_aux, λ = cross_modal_scale initialised to
0, W, W_aux and λ all trained), fine-tuned from hidden states [S][N][D] with
cross-entropy for 10 AdamW steps, as m2pt-train runs with

    --model model.safetensors --aux aux.safetensors --heads 2
    --data data.npy --labels labels.npy --steps 10 --batch 4 --no-shuffle
    --optimizer adamw --lr 5e-3 --min-lr 1e-4 --weight-decay 0.05
    --layer-decay 0.75 --schedule cosine --warmup-steps 2 --clip-grad 1.0

Everything (the flags too) is written to expected.json; the test drives
m2pt-train with those flags. The recipe is the paper's (MAE's
main_finetune.py): param_groups_lrd (groups per layer id and decay / no
decay, lr_scale = layer_decay^(depth + 1 − layer_id), no weight decay for
1-D tensors), adjust_learning_rate every iteration at the fractional epoch
(step · accum / iterations_per_epoch), clip_grad_norm_ before the step.

Why qkv has no bias: the gradient of the key bias is exactly 0 (softmax is
shift-invariant per query), so both sides would feed rounding noise to
AdamW, which normalises it to a ±lr step: not a comparable number.

The model is plain float64 PyTorch (the helpers of make_whole_model_golden.py);
parameters start from float32 values, so the files hold what the run uses.
Outputs: model.safetensors, aux.safetensors (timm naming), data.npy,
labels.npy (int64), expected.json (flags; the validation loss and accuracy
over the training data before the first step; per step: loss, lr, grad_norm
and every λ after the step), final.safetensors (every parameter after the last
step, in the paper's naming: …weight, …aux_weight, …cross_modal_scale [1]).
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_whole_model_golden as W  # noqa: E402  (float64 default, D, HEADS, helpers)

D, HEADS, DEPTH, HID = W.D, W.HEADS, W.DEPTH, W.HID
S, N, CLASSES, BATCH, STEPS = 10, 5, 3, 4, 10
LR, MIN_LR, WD, LAYER_DECAY, WARMUP_STEPS, CLIP = 5e-3, 1e-4, 0.05, 0.75, 2, 1.0
LINEARS = {'attn.qkv': (3 * D, D), 'attn.proj': (D, D), 'mlp.fc1': (HID, D), 'mlp.fc2': (D, HID)}
FLAGS = ['--heads', str(HEADS), '--steps', str(STEPS), '--batch', str(BATCH), '--no-shuffle',
         '--optimizer', 'adamw', '--lr', repr(LR), '--min-lr', repr(MIN_LR),
         '--weight-decay', repr(WD), '--layer-decay', repr(LAYER_DECAY), '--schedule', 'cosine',
         '--warmup-steps', str(WARMUP_STEPS), '--clip-grad', repr(CLIP)]


def checkpoint(with_head):
    """timm block tensors (qkv without bias), final norm and head."""
    t = {}
    for i in range(DEPTH):
        b = f'blocks.{i}.'
        for n in ('norm1', 'norm2'):
            t[b + n + '.weight'], t[b + n + '.bias'] = W.ln_params()
        for n, (o, k) in LINEARS.items():
            t[b + n + '.weight'] = W.rand(o, k)
            if n != 'attn.qkv':
                t[b + n + '.bias'] = W.rand(o, scale=0.05)
    t['norm.weight'], t['norm.bias'] = W.ln_params()
    if with_head:
        t['head.weight'], t['head.bias'] = W.rand(CLASSES, D, scale=0.5), W.rand(CLASSES)
    return t


def forward(p, x):
    def lin(n, h):
        w = p[n + '.weight']
        if n + '.aux_weight' in p:
            w = w + p[n + '.cross_modal_scale'] * p[n + '.aux_weight']
        return F.linear(h, w, p.get(n + '.bias'))

    for i in range(DEPTH):
        b = f'blocks.{i}.'
        h = W.layer_norm(x, p[b + 'norm1.weight'], p[b + 'norm1.bias'], 1e-6)
        q, k, v = lin(b + 'attn.qkv', h).split(D, -1)
        x = x + lin(b + 'attn.proj', W.attention(q, k, v, None))
        h = W.layer_norm(x, p[b + 'norm2.weight'], p[b + 'norm2.bias'], 1e-6)
        x = x + lin(b + 'mlp.fc2', F.gelu(lin(b + 'mlp.fc1', h)))
    x = W.layer_norm(x, p['norm.weight'], p['norm.bias'], 1e-6)
    return lin('head', x[:, 0])


def layer_id(name):
    # MAE's get_layer_id_for_vit with num_layers = depth + 1
    if name.startswith('blocks.'):
        return int(name.split('.')[1]) + 1
    return DEPTH + 1


def param_groups(params):
    """MAE's param_groups_lrd: one group per (layer id, decay / no decay)."""
    groups = {}
    for name, p in params.items():
        no_decay = p.ndim == 1
        lid = layer_id(name)
        key = (lid, no_decay)
        if key not in groups:
            groups[key] = {'params': [], 'names': [], 'weight_decay': 0.0 if no_decay else WD,
                           'lr_scale': LAYER_DECAY ** (DEPTH + 1 - lid)}
        groups[key]['params'].append(p)
        groups[key]['names'].append(name)
    return list(groups.values())


def lr_at(epoch, epochs, warmup_epochs):
    # MAE util/lr_sched.py adjust_learning_rate
    if epoch < warmup_epochs:
        return LR * epoch / warmup_epochs
    return MIN_LR + (LR - MIN_LR) * 0.5 * (
        1.0 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))


def main(out):
    os.makedirs(out, exist_ok=True)
    model, aux = checkpoint(True), checkpoint(False)
    x = W.rand(S, N, D, scale=1.0)
    labels = torch.tensor(W.rng.integers(0, CLASSES, S), dtype=torch.int64)
    W.save_st(f'{out}/model.safetensors', model)
    W.save_st(f'{out}/aux.safetensors', aux)
    W.save_npy(f'{out}/data.npy', x)
    np.save(f'{out}/labels.npy', labels.numpy().astype('<i8'))

    # reparameterize_aux_into_target_model: every block linear gets W_aux and λ = 0.
    params = {}
    for name, t in model.items():
        params[name] = t.clone().requires_grad_(True)
        if name.startswith('blocks.') and name.endswith('.weight') and 'norm' not in name:
            layer = name[:-len('.weight')]
            params[layer + '.aux_weight'] = aux[name].clone().requires_grad_(True)
            params[layer + '.cross_modal_scale'] = torch.zeros(1, requires_grad=True)
    groups = param_groups(params)
    opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != 'names'} for g in groups],
                            lr=LR, betas=(0.9, 0.999), eps=1e-8)
    iters_per_epoch = math.ceil(S / BATCH)
    epochs = STEPS / iters_per_epoch
    warmup_epochs = WARMUP_STEPS / iters_per_epoch
    with torch.no_grad():  # the evaluation before training, over every sample
        logits = forward(params, x)
        initial = {'val_loss': F.cross_entropy(logits, labels).item(),
                   'val_accuracy': (logits.argmax(1) == labels).double().mean().item()}
    steps = []
    for step in range(STEPS):
        first = (step % iters_per_epoch) * BATCH  # in order; the last batch has S mod B
        idx = list(range(first, min(first + BATCH, S)))
        epoch = step / iters_per_epoch
        lr = lr_at(epoch, epochs, warmup_epochs)
        for g in opt.param_groups:
            g['lr'] = lr * g['lr_scale']
        opt.zero_grad()
        loss = F.cross_entropy(forward(params, x[idx]), labels[idx])
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), CLIP)
        opt.step()
        steps.append({'step': step + 1, 'epoch': epoch, 'loss': loss.item(), 'lr': lr,
                      'grad_norm': norm.item(),
                      'scales': {n[:-len('.cross_modal_scale')]: p.item()
                                 for n, p in params.items() if n.endswith('cross_modal_scale')}})
    W.save_st(f'{out}/final.safetensors', {n: p.detach() for n, p in params.items()})
    with open(f'{out}/expected.json', 'w') as f:
        json.dump({'flags': FLAGS, 'samples': S, 'initial': initial, 'steps': steps}, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'tests/data/train')
