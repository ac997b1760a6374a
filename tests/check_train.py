#!/usr/bin/env python3
"""m2pt-train against PyTorch (issue 13), standard library only.

Usage: check_train.py M2PT_TRAIN DATA_DIR   (DATA_DIR: tests/data/train)

1. The trajectory golden (tools/make_train_golden.py): the tool with the
   flags in expected.json; every step's loss, lr, grad_norm and λ, and the
   written checkpoint's every tensor (W, b, W_aux, λ, norms, head) against
   PyTorch's within DESIGN.md's tolerance, 1e-4 · max(1, max|ref|) (the
   loss and norm per step, each tensor as a whole).
2. Accumulation: 8 samples as 2 batches of 4, or 4 micro-batches of 2
   accumulated by 2, give the same steps (within the same tolerance).
3. Errors: labels of another length, a label past the head's classes, a
   batch larger than the data: exit status 1 with a message saying so, and
   no output file.
"""
import ast
import json
import os
import struct
import subprocess
import sys
import tempfile

TOOL, DATA = sys.argv[1], sys.argv[2]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print('FAIL:', what)


def close(got, ref, what):
    ref = list(ref)
    tol = 1e-4 * max([1.0] + [abs(r) for r in ref])
    got = list(got)
    worst = max((abs(g - r) for g, r in zip(got, ref)), default=0.0)
    check(len(got) == len(ref) and worst <= tol,
          f'{what}: max |diff| {worst:.3g} > {tol:.3g}' if len(got) == len(ref)
          else f'{what}: {len(got)} values, expected {len(ref)}')


def read_st(path):
    with open(path, 'rb') as f:
        raw = f.read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        a, b = info['data_offsets']
        blob = raw[8 + n + a:8 + n + b]
        assert info['dtype'] == 'F32', (name, info['dtype'])
        out[name] = (info['shape'], struct.unpack(f'<{len(blob) // 4}f', blob))
    return out


def run(args, expect_ok=True):
    p = subprocess.run([TOOL] + args, capture_output=True, text=True)
    if expect_ok and p.returncode != 0:
        print(p.stderr)
    return p


def npy_slice(src, dst, rows):
    """The first `rows` rows of a C-order .npy (format 1.0) into dst."""
    with open(src, 'rb') as f:
        raw = f.read()
    hlen = struct.unpack('<H', raw[8:10])[0]
    header = ast.literal_eval(raw[10:10 + hlen].decode('latin1'))
    shape, itemsize = header['shape'], int(header['descr'][2:])
    row = itemsize
    for d in shape[1:]:
        row *= d
    header['shape'] = (rows,) + tuple(shape[1:])
    text = repr(header)
    text += ' ' * (-(10 + len(text) + 1) % 64) + '\n'  # numpy pads the header to 64 bytes
    with open(dst, 'wb') as f:
        f.write(raw[:8] + struct.pack('<H', len(text)) + text.encode('latin1'))
        f.write(raw[10 + hlen:10 + hlen + rows * row])


def base_args(d):
    return ['--model', f'{d}/model.safetensors', '--aux', f'{d}/aux.safetensors']


def golden(tmp):
    with open(f'{DATA}/expected.json') as f:
        exp = json.load(f)
    out = f'{tmp}/trained.safetensors'
    p = run(base_args(DATA) + ['--data', f'{DATA}/data.npy', '--labels', f'{DATA}/labels.npy',
                               '--log', '-', '--out', out] + exp['flags'])
    check(p.returncode == 0, f'golden run exit status {p.returncode}')
    if p.returncode:
        return
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    check(len(lines) == len(exp['steps']), f'{len(lines)} log lines for {len(exp["steps"])} steps')
    for got, ref in zip(lines, exp['steps']):
        s = ref['step']
        check(got['step'] == s, f'step numbering: {got["step"]} for {s}')
        close([got['epoch']], [ref['epoch']], f'step {s} epoch')
        close([got['loss']], [ref['loss']], f'step {s} loss')
        close([got['lr']], [ref['lr']], f'step {s} lr')
        close([got['grad_norm']], [ref['grad_norm']], f'step {s} grad_norm')
        check(sorted(got['scales']) == sorted(ref['scales']), f'step {s} scale names')
        close([got['scales'][k] for k in sorted(ref['scales'])],
              [ref['scales'][k] for k in sorted(ref['scales'])], f'step {s} scales')
    got, ref = read_st(out), read_st(f'{DATA}/final.safetensors')
    check(sorted(got) == sorted(ref), f'checkpoint names differ: {sorted(set(got) ^ set(ref))}')
    for name in sorted(ref):
        if name in got:
            check(got[name][0] == ref[name][0], f'{name}: shape {got[name][0]} != {ref[name][0]}')
            close(got[name][1], ref[name][1], f'final {name}')
    # --merge writes the plain checkpoint: no pathway tensors.
    merged = f'{tmp}/merged.safetensors'
    p = run(base_args(DATA) + ['--data', f'{DATA}/data.npy', '--labels', f'{DATA}/labels.npy',
                               '--out', merged, '--merge'] + exp['flags'])
    check(p.returncode == 0 and not any('aux_weight' in n or 'cross_modal_scale' in n
                                        for n in read_st(merged)), '--merge output')


def accumulation(tmp):
    x, y = f'{tmp}/x8.npy', f'{tmp}/y8.npy'
    npy_slice(f'{DATA}/data.npy', x, 8)
    npy_slice(f'{DATA}/labels.npy', y, 8)
    common = base_args(DATA) + ['--data', x, '--labels', y, '--heads', '2', '--steps', '4',
                                '--no-shuffle', '--lr', '1e-3', '--log', '-']
    a = run(common + ['--batch', '4', '--out', f'{tmp}/a.safetensors'])
    b = run(common + ['--batch', '2', '--accum', '2', '--out', f'{tmp}/b.safetensors'])
    check(a.returncode == 0 and b.returncode == 0, 'accumulation runs')
    if a.returncode or b.returncode:
        return
    la = [json.loads(line) for line in a.stdout.splitlines()]
    lb = [json.loads(line) for line in b.stdout.splitlines()]
    close([r['loss'] for r in lb], [r['loss'] for r in la], 'accumulated loss')
    close([r['grad_norm'] for r in lb], [r['grad_norm'] for r in la], 'accumulated grad_norm')
    ga, gb = read_st(f'{tmp}/a.safetensors'), read_st(f'{tmp}/b.safetensors')
    for name in sorted(ga):
        close(gb[name][1], ga[name][1], f'accumulated {name}')


def errors(tmp):
    y8 = f'{tmp}/y8.npy'
    if not os.path.exists(y8):
        npy_slice(f'{DATA}/labels.npy', y8, 8)
    bad_label = f'{tmp}/bad_label.npy'
    with open(f'{DATA}/labels.npy', 'rb') as f:
        raw = bytearray(f.read())
    raw[-8:] = struct.pack('<q', 3)  # the head has 3 classes: 0, 1, 2
    with open(bad_label, 'wb') as f:
        f.write(raw)
    base = base_args(DATA) + ['--data', f'{DATA}/data.npy', '--heads', '2', '--steps', '2',
                              '--lr', '1e-3']
    cases = [(['--labels', y8, '--batch', '4'], '8 labels for 10 samples'),
             (['--labels', bad_label, '--batch', '4'], 'label 3 of sample 9 is out of range'),
             (['--labels', f'{DATA}/labels.npy', '--batch', '11'],
              'a batch of 11 from 10 samples')]
    for extra, message in cases:
        out = f'{tmp}/never.safetensors'
        p = run(base + extra + ['--out', out], expect_ok=False)
        check(p.returncode == 1 and message in p.stderr,
              f'{message}: exit {p.returncode}, stderr {p.stderr.strip()!r}')
        check(not os.path.exists(out), f'{message}: an output was written')


with tempfile.TemporaryDirectory() as tmp:
    golden(tmp)
    accumulation(tmp)
    errors(tmp)
print('check_train:', 'FAILED' if failures else 'all passed', f'({len(failures)} failures)')
sys.exit(1 if failures else 0)
