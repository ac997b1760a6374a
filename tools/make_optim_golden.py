#!/usr/bin/env python3
"""Writes tests/data/optim/optim_golden.safetensors: three steps of PyTorch's
torch.optim.SGD (momentum 0.9, Nesterov off and on) and torch.optim.AdamW
(betas (0.9, 0.999), eps 1e-8) over three small random tensors in two
parameter groups, for tests/test_optim.c.

Group 0 (w0 [5][7], w1 [13]) and group 1 (w2 [3][4][2]) have their own
learning rate and weight decay (group 1 none, as MAE's no-decay group). The
gradients of each step are random too, and the same for every optimizer.
Learning rates are large (0.1 and 0.05) so that a wrong update shows far
above the test's tolerance. The single-tensor implementations are asked for
(foreach=False), the ones PyTorch runs on the CPU by default.

Tensors: init.I, grad.S.I and <opt>.S.I (the parameters after step S + 1)
with I the tensor and opt sgd, sgd_nesterov or adamw.

Gradient clipping, torch.nn.utils.clip_grad_norm_ with its defaults
(norm_type 2, PyTorch's foreach path on the CPU): <case>.in.I the gradients
before, <case>.out.I after, <case>.norm the returned total norm (1
element), for case clip (max_norm 1; four random tensors, one of 3050
elements so that the device's sum has several chunks, norm well above 1)
and clip_exact (max_norm 1.3; gradients [3, 4] and [12]: every partial sum
and the norm 13 are exact in float, so m2pt's clipped values must equal
PyTorch's bit for bit; 1.3 is a max_norm where PyTorch's
reciprocal-then-product coefficient differs from a plain quotient).

The file is written with the standard library (no safetensors package
needed).
Run: python3 tools/make_optim_golden.py [OUT_DIR]   (any Python with torch)
"""
import json
import os
import struct
import sys

import torch

SHAPES = [(5, 7), (13,), (3, 4, 2)]
STEPS = 3
GROUPS = [([0, 1], 0.1), ([2], 0.05)]  # tensor indices, learning rate
CLIP_SHAPES = [(50, 61), (13,), (1,), (3, 4, 2)]


def configs():
    sgd = dict(momentum=0.9, dampening=0.0, foreach=False)
    yield "sgd", torch.optim.SGD, dict(sgd, nesterov=False), [0.01, 0.0]
    yield "sgd_nesterov", torch.optim.SGD, dict(sgd, nesterov=True), [0.01, 0.0]
    adamw = dict(betas=(0.9, 0.999), eps=1e-8, foreach=False)
    yield "adamw", torch.optim.AdamW, adamw, [0.05, 0.0]


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    os.replace(tmp, path)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "data", "optim")
    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(13)
    init = [torch.rand(s, generator=gen) * 2 - 1 for s in SHAPES]
    grads = [[torch.rand(s, generator=gen) * 2 - 1 for s in SHAPES] for _ in range(STEPS)]
    out = {}
    for i, t in enumerate(init):
        out[f"init.{i}"] = t
    for s in range(STEPS):
        for i, g in enumerate(grads[s]):
            out[f"grad.{s}.{i}"] = g
    for name, cls, kwargs, wds in configs():
        params = [torch.nn.Parameter(t.clone()) for t in init]
        groups = [{"params": [params[i] for i in idx], "lr": lr, "weight_decay": wd}
                  for (idx, lr), wd in zip(GROUPS, wds)]
        opt = cls(groups, **kwargs)
        for s in range(STEPS):
            for p, g in zip(params, grads[s]):
                p.grad = g.clone()
            opt.step()
            for i, p in enumerate(params):
                out[f"{name}.{s}.{i}"] = p.detach().clone()
    clip_cases = {
        "clip": ([(torch.rand(s, generator=gen) * 2 - 1) * 3 for s in CLIP_SHAPES], 1.0),
        "clip_exact": ([torch.tensor([3.0, 4.0]), torch.tensor([12.0])], 1.3),
    }
    for case, (grads_in, max_norm) in clip_cases.items():
        params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads_in]
        for p, g in zip(params, grads_in):
            p.grad = g.clone()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        out[f"{case}.norm"] = norm.reshape(1)
        for i, (p, g) in enumerate(zip(params, grads_in)):
            out[f"{case}.in.{i}"] = g
            out[f"{case}.out.{i}"] = p.grad.clone()
    write_safetensors(os.path.join(out_dir, "optim_golden.safetensors"), out)


if __name__ == "__main__":
    main()
