#!/usr/bin/env python3
"""Checks tests/check_grad_golden.py itself, without m2pt-grad: fake tools
that write the golden (the checker must pass) or the golden with one fault
(it must fail, naming the fault), python3 standard library only.

usage: check_grad_golden_selftest.py DATA_DIR
       check_grad_golden_selftest.py --fake MODE ARGS...   (the fake tool)

A fake finds its case in ./cases.json by its arguments (the checker runs it
in the data directory) and writes the golden's tensors of the case's
expected names, then applies MODE.
"""
import math
import os
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_grad_golden import load_cases, read_safetensors, tolerance, write_safetensors  # noqa

# Mode: (expected exit status of the checker, text its output must hold).
MODES = {
    'exact': (0, 'ok   narrow_freeze'),
    'perturb': (1, 'blocks.1.mlp.fc1.aux_weight: element 5'),
    'perturb-scale': (1, 'blocks.0.attn.qkv.cross_modal_scale: element 0'),
    'perturb-scale-within': (0, 'ok   vit'),
    'perturb-shared-scale': (1, 'share one λ'),
    'nan': (1, 'head.weight: element 0: nan'),
    'drop': (1, 'missing: bert.embeddings.word_embeddings.weight'),
    'extra': (1, 'unexpected name(s) written: bert.embeddings.position_ids'),
    'ignore-freeze': (1, 'frozen by --freeze target,bias?'),
    'loss': (1, 'loss 2.'),
    'no-loss': (1, 'metadata "loss"'),
    'shape': (1, 'pos_embed: F32 [5, 16], expected F32 [1, 5, 16]'),
    'fail': (1, 'exited with 1: fake failure'),
}


def bump(tensors, name, index, by):
    dtype, shape, values = tensors[name]
    values = list(values)
    values[index] += by
    tensors[name] = (dtype, shape, tuple(values))


def fake(mode, argv):
    if mode == 'fail':
        sys.exit('fake failure')
    out = argv[argv.index('--out') + 1]
    args = [a for i, a in enumerate(argv) if a != '--out' and (i == 0 or argv[i - 1] != '--out')]
    case = next(c for c in load_cases('.') if c['model_args'] + c['loss_args'] == args)
    meta, ref = read_safetensors(case['golden'])
    names = set(ref) if mode == 'ignore-freeze' else set(case['expect'])
    got = {n: ref[n] for n in names}
    if mode == 'perturb' and case['name'] == 'vit':
        bump(got, 'blocks.1.mlp.fc1.aux_weight', 5, 3 * tolerance(case, '', ref[
            'blocks.1.mlp.fc1.aux_weight'][2]))
    if mode.startswith('perturb-scale') and case['name'] == 'narrow':
        name = 'blocks.0.attn.qkv.cross_modal_scale'
        tol = tolerance(case, name, ref[name][2])
        bump(got, name, 0, (0.5 if mode.endswith('within') else 2.0) * tol)
    if mode == 'perturb-shared-scale' and case['name'] == 'bert':
        name = 'bert.encoder.layer.1.attention.self.key.cross_modal_scale'
        bump(got, name, 0, -2 * ref[name][2][0] / 3)  # one third of the sum, as if not shared
    if mode == 'nan' and case['name'] == 'vit':
        bump(got, 'head.weight', 0, math.nan)
    if mode == 'drop' and case['name'] == 'bert':
        del got['bert.embeddings.word_embeddings.weight']
    if mode == 'extra' and case['name'] == 'bert':
        got['bert.embeddings.position_ids'] = ('I64', [1, 10], tuple(range(10)))
    if mode == 'loss' and case['name'] == 'narrow':
        meta = {'loss': repr(float(meta['loss']) * 1.001)}
    if mode == 'no-loss' and case['name'] == 'vit':
        meta = {}
    if mode == 'shape' and case['name'] == 'vit':
        got['pos_embed'] = ('F32', [5, 16], got['pos_embed'][2])
    write_safetensors(out, meta, got)


def self_test(data):
    checker = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'check_grad_golden.py')
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for mode, (rc, text) in MODES.items():
            tool = os.path.join(tmp, 'fake-' + mode)
            with open(tool, 'w') as f:
                f.write(f'#!/bin/sh\nexec "{sys.executable}" "{os.path.abspath(__file__)}" '
                        f'--fake {mode} "$@"\n')
            os.chmod(tool, stat.S_IRWXU)
            p = subprocess.run([sys.executable, checker, tool, data], capture_output=True,
                               text=True)
            ok = p.returncode == rc and text in p.stdout
            print(('ok   ' if ok else 'FAIL ') + f'{mode}: the checker exits {p.returncode} '
                  f'(expected {rc}) and says "{text}"' + ('' if ok else ':\n' + p.stdout +
                                                           p.stderr))
            failures += not ok
    return 1 if failures else 0


if __name__ == '__main__':
    if len(sys.argv) > 2 and sys.argv[1] == '--fake':
        fake(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 2:
        sys.exit(self_test(sys.argv[1]))
    else:
        sys.exit(__doc__)
