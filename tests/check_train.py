#!/usr/bin/env python3
"""m2pt-train against PyTorch (issue 13), standard library only.

Usage: check_train.py M2PT_TRAIN DATA_DIR   (DATA_DIR: tests/data/train)

1. The trajectory golden (tools/make_train_golden.py): the tool with the
   flags in expected.json; the evaluation before training (the training
   data as validation set); every step's loss, lr, grad_norm and λ, and the
   written checkpoint's every tensor (W, b, W_aux, λ, norms, head) against
   PyTorch's within DESIGN.md's tolerance, 1e-4 · max(1, max|ref|) (the
   loss and norm per step, each tensor as a whole).
2. Accumulation: 8 samples as 2 batches of 4, or 4 micro-batches of 2
   accumulated by 2, give the same steps (within the same tolerance); a
   step of micro-batches of 3 and 1 has the loss and gradient norm of one
   batch of those 4 samples.
3. Resume: a run saved every 4 steps and resumed from its state logs the
   lines and writes the bytes of an uninterrupted run; a save that fails
   (its model file blocked by a directory) leaves state.json naming the
   previous state, from which the run resumes just as well.
4. A NaN loss (samples of ±3e38 overflow LayerNorm's variance) stops the
   run with a message naming the step, no output, and the state of the
   last good step kept.
5. A learnable synthetic task (a tiny ViT from stdlib random numbers;
   the label is the sign of the red channel's mean): the loss falls and
   the validation accuracy rises from its value before training.
6. Errors: labels of another length, a label past the head's classes, a
   batch larger than the data: exit status 1 with a message saying so, and
   no output file.
"""
import ast
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

TOOL, DATA = sys.argv[1], sys.argv[2]
# Under oclgrind (the meson setup sets M2PT_TEST_SMALL) the learning task's
# hundreds of steps would take an hour of simulation; its kernels are the
# golden's, which runs there too.
SMALL = os.environ.get('M2PT_TEST_SMALL') == '1'
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


def npy_slice(src, dst, rows, first=0):
    """Rows first … first + rows − 1 of a C-order .npy (format 1.0) into dst."""
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
        f.write(raw[10 + hlen + first * row:10 + hlen + (first + rows) * row])


def base_args(d):
    return ['--model', f'{d}/model.safetensors', '--aux', f'{d}/aux.safetensors']


def golden(tmp):
    with open(f'{DATA}/expected.json') as f:
        exp = json.load(f)
    out = f'{tmp}/trained.safetensors'
    p = run(base_args(DATA) + ['--data', f'{DATA}/data.npy', '--labels', f'{DATA}/labels.npy',
                               '--val-data', f'{DATA}/data.npy', '--val-labels',
                               f'{DATA}/labels.npy', '--log', '-', '--out', out] + exp['flags'])
    check(p.returncode == 0, f'golden run exit status {p.returncode}')
    if p.returncode:
        return
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    evals = [r for r in lines if 'val_loss' in r]
    lines = [r for r in lines if 'loss' in r]
    # evaluations before the first step, after each epoch's last step (3, 6, 9) and the last
    check([r['step'] for r in evals] == [0, 3, 6, 9, 10], f'evaluations at {evals}')
    close([evals[0]['val_loss'], evals[0]['val_accuracy']],
          [exp['initial']['val_loss'], exp['initial']['val_accuracy']], 'evaluation before training')
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
    # Micro-batches of unequal size weigh B_k / B: with lr 0 (no update) the
    # second step of batches of 3 by 2 (samples 6-8 and 9) is one batch of 6-9.
    x4, y4 = f'{tmp}/x4.npy', f'{tmp}/y4.npy'
    npy_slice(f'{DATA}/data.npy', x4, 4, 6)
    npy_slice(f'{DATA}/labels.npy', y4, 4, 6)
    flags = base_args(DATA) + ['--heads', '2', '--no-shuffle', '--lr', '0', '--log', '-']
    c = run(flags + ['--data', f'{DATA}/data.npy', '--labels', f'{DATA}/labels.npy',
                     '--batch', '3', '--accum', '2', '--steps', '2', '--out', f'{tmp}/c.st'])
    d = run(flags + ['--data', x4, '--labels', y4, '--batch', '4', '--steps', '1',
                     '--out', f'{tmp}/d.st'])
    check(c.returncode == 0 and d.returncode == 0, 'unequal micro-batch runs')
    if c.returncode == 0 and d.returncode == 0:
        lc, ld = log_lines(c.stdout)[1], log_lines(d.stdout)[0]
        close([lc['loss'], lc['grad_norm']], [ld['loss'], ld['grad_norm']],
              'micro-batches of 3 and 1 against one batch of 4')


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


def log_lines(text):
    return [json.loads(line) for line in text.splitlines()]


def resume(tmp):
    flags = base_args(DATA) + ['--data', f'{DATA}/data.npy', '--labels', f'{DATA}/labels.npy',
                               '--heads', '2', '--steps', '10', '--batch', '4', '--lr', '5e-3',
                               '--schedule', 'cosine', '--warmup-steps', '2', '--clip-grad',
                               '1.0', '--seed', '3', '--log', '-']
    full = run(flags + ['--out', f'{tmp}/full.safetensors'])
    part = run(flags + ['--save-every', '4', '--out', f'{tmp}/part.safetensors'])
    state = f'{tmp}/part.safetensors.state'
    resumed = run(flags + ['--resume', state, '--out', f'{tmp}/resumed.safetensors'])
    check(full.returncode == 0 and part.returncode == 0 and resumed.returncode == 0,
          'resume runs')
    if full.returncode or part.returncode or resumed.returncode:
        return
    full_lines = full.stdout.splitlines()
    check(resumed.stdout.splitlines() == full_lines[8:],
          'the resumed log differs from the uninterrupted one')
    with open(f'{tmp}/full.safetensors', 'rb') as a, open(f'{tmp}/resumed.safetensors', 'rb') as b:
        check(a.read() == b.read(), 'the resumed checkpoint differs from the uninterrupted one')
    # A save that fails at step 8 leaves the state of step 4.
    blocked = f'{tmp}/blocked.safetensors'
    os.makedirs(f'{blocked}.state/model-8.safetensors')
    p = run(flags + ['--save-every', '4', '--out', blocked], expect_ok=False)
    check(p.returncode == 1 and not os.path.exists(blocked), f'failed save: exit {p.returncode}')
    with open(f'{blocked}.state/state.json') as f:
        check(json.load(f)['step'] == 4, 'a failed save replaced the previous state')
    again = run(flags + ['--resume', f'{blocked}.state', '--out', f'{tmp}/again.safetensors'])
    check(again.returncode == 0 and again.stdout.splitlines() == full_lines[4:],
          'resuming from the state a failed save kept')


def drop_path(tmp):
    """--drop-path: the same seed gives the same log twice; the masks change
    the losses (each step draws its masks from (seed, step, layer))."""
    flags = base_args(DATA) + ['--data', f'{DATA}/data.npy', '--labels', f'{DATA}/labels.npy',
                               '--heads', '2', '--steps', '4', '--batch', '4', '--lr', '5e-3',
                               '--seed', '5', '--log', '-']
    runs = [run(flags + extra + ['--out', f'{tmp}/dp{i}.safetensors'])
            for i, extra in enumerate([['--drop-path', '0.5'], ['--drop-path', '0.5'], []])]
    check(all(r.returncode == 0 for r in runs), 'm2pt-train --drop-path runs')
    if any(r.returncode for r in runs):
        return
    a, b, plain = (log_lines(r.stdout) for r in runs)
    check(a == b, '--drop-path: one seed gives one log')
    check([x['loss'] for x in a] != [x['loss'] for x in plain],
          '--drop-path 0.5 changes nothing')


def nan_loss(tmp):
    with open(f'{DATA}/data.npy', 'rb') as f:
        raw = bytearray(f.read())
    off = 10 + struct.unpack('<H', raw[8:10])[0]
    per = len(raw[off:]) // (10 * 4)  # floats per sample: 10 samples of 4-byte floats
    for i in range(8 * per, 10 * per):  # samples 8 and 9: the third step's batch
        struct.pack_into('<f', raw, off + 4 * i, 3e38 if i % 2 else -3e38)
    with open(f'{tmp}/huge.npy', 'wb') as f:
        f.write(raw)
    out = f'{tmp}/nan.safetensors'
    p = run(base_args(DATA) + ['--data', f'{tmp}/huge.npy', '--labels', f'{DATA}/labels.npy',
                               '--heads', '2', '--steps', '5', '--batch', '4', '--no-shuffle',
                               '--lr', '1e-3', '--save-every', '1', '--out', out],
            expect_ok=False)
    check(p.returncode == 1 and 'step 3' in p.stderr and 'after step 2' in p.stderr,
          f'NaN loss: exit {p.returncode}, stderr {p.stderr.strip()!r}')
    check(not os.path.exists(out), 'NaN loss: an output was written')
    with open(f'{out}.state/state.json') as f:
        check(json.load(f)['step'] == 2, 'NaN loss: the last good state is not kept')


def write_st(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        shape, values = tensors[name]
        blob = struct.pack(f'<{len(values)}f', *values)
        header[name] = {'dtype': 'F32', 'shape': shape, 'data_offsets': [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    text = json.dumps(header).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + b''.join(blobs))


def write_npy(path, descr, shape, values):
    text = repr({'descr': descr, 'fortran_order': False, 'shape': tuple(shape)})
    text += ' ' * (-(10 + len(text) + 1) % 64) + '\n'
    fmt = {'<f4': 'f', '<i8': 'q'}[descr]
    with open(path, 'wb') as f:
        f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(text)) + text.encode('latin1'))
        f.write(struct.pack(f'<{len(values)}{fmt}', *values))


def synthetic(tmp):
    rng = random.Random(7)
    D, HID, C, IMG, P, CLASSES = 16, 64, 3, 8, 4, 2
    T = 1 + (IMG // P) ** 2

    def normal(n, std):
        return [rng.gauss(0.0, std) for _ in range(n)]

    def vit():
        t = {'patch_embed.proj.weight': ([D, C, P, P], normal(D * C * P * P, 0.1)),
             'patch_embed.proj.bias': ([D], [0.0] * D), 'cls_token': ([1, 1, D], normal(D, 0.02)),
             'pos_embed': ([1, T, D], normal(T * D, 0.02)), 'norm.weight': ([D], [1.0] * D),
             'norm.bias': ([D], [0.0] * D), 'head.weight': ([CLASSES, D], normal(CLASSES * D, 0.02)),
             'head.bias': ([CLASSES], [0.0] * CLASSES)}
        for b in range(2):
            for n in ('norm1', 'norm2'):
                t[f'blocks.{b}.{n}.weight'], t[f'blocks.{b}.{n}.bias'] = ([D], [1.0] * D), ([D], [0.0] * D)
            for n, (o, i) in {'attn.qkv': (3 * D, D), 'attn.proj': (D, D), 'mlp.fc1': (HID, D),
                              'mlp.fc2': (D, HID)}.items():
                t[f'blocks.{b}.{n}.weight'] = ([o, i], normal(o * i, 0.1))
                t[f'blocks.{b}.{n}.bias'] = ([o], [0.0] * o)
        return t

    write_st(f'{tmp}/vit.safetensors', vit())
    write_st(f'{tmp}/vit_aux.safetensors', vit())

    def task(n, name):
        pixels, labels = [], []
        for _ in range(n):
            y = rng.randrange(CLASSES)
            shift = 0.5 if y else -0.5
            for c in range(C):
                pixels += [v + (shift if c == 0 else 0.0) for v in normal(IMG * IMG, 1.0)]
            labels.append(y)
        write_npy(f'{tmp}/{name}_x.npy', '<f4', [n, C, IMG, IMG], pixels)
        write_npy(f'{tmp}/{name}_y.npy', '<i8', [n], labels)

    task(64, 'train')
    task(32, 'val')
    p = run(['--model', f'{tmp}/vit.safetensors', '--aux', f'{tmp}/vit_aux.safetensors',
             '--heads', '2', '--data-pixels', f'{tmp}/train_x.npy', '--labels',
             f'{tmp}/train_y.npy', '--val-data-pixels', f'{tmp}/val_x.npy', '--val-labels',
             f'{tmp}/val_y.npy', '--epochs', '6', '--batch', '8', '--lr', '3e-3',
             '--schedule', 'cosine', '--warmup-epochs', '1', '--weight-decay', '0.05',
             '--seed', '1', '--log', '-', '--out', f'{tmp}/synthetic.safetensors'])
    check(p.returncode == 0, f'synthetic task: exit {p.returncode}')
    if p.returncode:
        return
    lines = log_lines(p.stdout)
    steps = [r['loss'] for r in lines if 'loss' in r]
    evals = [r['val_accuracy'] for r in lines if 'val_accuracy' in r]
    first, last = sum(steps[:8]) / 8, sum(steps[-8:]) / 8
    print(f'synthetic task: loss {first:.3f} -> {last:.3f} (first and last epoch means), '
          f'validation accuracy {evals[0]:.3f} -> {evals[-1]:.3f}')
    check(len(steps) == 48 and len(evals) == 7, f'synthetic task: {len(steps)} steps, '
          f'{len(evals)} evaluations')
    check(last < 0.7 * first, f'synthetic task: the loss did not fall ({first} -> {last})')
    check(evals[-1] >= 0.8 and evals[-1] > evals[0],
          f'synthetic task: validation accuracy {evals[0]} -> {evals[-1]}')


with tempfile.TemporaryDirectory() as tmp:
    golden(tmp)
    accumulation(tmp)
    errors(tmp)
    resume(tmp)
    drop_path(tmp)
    nan_loss(tmp)
    if not SMALL:
        synthetic(tmp)
print('check_train:', 'FAILED' if failures else 'all passed', f'({len(failures)} failures)')
sys.exit(1 if failures else 0)
