#!/usr/bin/env python3
"""m2pt-grad against PyTorch autograd: the loss and every parameter's
gradient of each case in DATA_DIR/cases.json (tools/make_grad_golden.py
writes tests/data/grad), python3 standard library only.

usage: check_grad_golden.py M2PT_GRAD DATA_DIR [CASE ...]

Each case runs `M2PT_GRAD <model args> <loss args> --out OUT` in DATA_DIR
and checks OUT:
  * the names: exactly the case's expected set (every trainable parameter;
    under --freeze, the ones left), each F32 with the golden's shape;
  * the loss (metadata "loss"): |loss − ref| ≤ 1e-4·max(1, |ref|);
  * each gradient g, as DESIGN.md's f32 rule:
        max|g − ref| ≤ 1e-4·max(1, max|ref|);
  * each λ gradient (…cross_modal_scale): dλ = Σ G ⊙ W_aux is a reduction
    over a whole matrix (G = ∂L/∂W_eff), whose f32 rounding error grows
    with Σ|G ⊙ W_aux|, not with |dλ| (the terms cancel: in these cases
    |dλ| is 0.5 to 20 % of that sum). Its bound is the rule above with
    that sum, from cases.json's reduction_scale, in place of max|ref|:
        |dλ − ref| ≤ 1e-4·max(1, Σ|G ⊙ W_aux|)
    (summed over q, k and v for BERT's shared λ).
A missing or unexpected name, a shape or dtype mismatch, a gradient out of
tolerance, a non-finite value or a failed run is reported with its name and
figures, and the exit status is 1.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools'))
import safetensors_file  # noqa: E402

RTOL = 1e-4
CODES = {'F32': 'f', 'F64': 'd', 'I64': 'q', 'I32': 'i'}


def read_safetensors(path):
    """(metadata, {name: (dtype, shape, values)}) of a safetensors file of
    F32, F64, I64 or I32 tensors."""
    meta, raw = safetensors_file.read(path)
    tensors = {}
    for name, (dtype, shape, blob) in raw.items():
        if dtype not in CODES:
            raise ValueError(f'{path}: "{name}" has dtype {dtype}')
        code = CODES[dtype]
        tensors[name] = (dtype, shape, struct.unpack(f'<{len(blob) // struct.calcsize(code)}{code}',
                                                     blob))
    return meta, tensors


def write_safetensors(path, meta, tensors):
    """The inverse of read_safetensors, names sorted."""
    safetensors_file.write(path, [(n, tensors[n][0], tensors[n][1],
                                   struct.pack(f'<{len(tensors[n][2])}{CODES[tensors[n][0]]}',
                                               *tensors[n][2])) for n in sorted(tensors)], meta)


def load_cases(data):
    with open(os.path.join(data, 'cases.json')) as f:
        return json.load(f)['cases']


def tolerance(case, name, ref):
    scale = case['reduction_scale'].get(name) if name.endswith('.cross_modal_scale') else None
    if scale is None:
        scale = max((abs(v) for v in ref), default=0.0)
    return RTOL * max(1.0, scale)


def compare(case, name, got, ref):
    """None when got matches ref, else why not."""
    gdtype, gshape, gv = got
    _, rshape, rv = ref
    if gdtype != 'F32' or gshape != rshape:
        return f'{gdtype} {gshape}, expected F32 {rshape}'
    tol = tolerance(case, name, rv)
    for i, (a, b) in enumerate(zip(gv, rv)):
        err = abs(a - b)
        if not err <= tol:  # NaN fails too
            return (f'element {i}: {a!r}, expected {b!r} (|error| {err:.3g} > tolerance '
                    f'{tol:.3g})')
    return None


def check_case(tool, data, case, tmp):
    """The failures of one case (empty when it passes), and a summary line."""
    out = os.path.join(tmp, case['name'] + '.safetensors')
    cmd = [tool] + case['model_args'] + case['loss_args'] + ['--out', out]
    try:
        p = subprocess.run(cmd, cwd=data, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [f'running {" ".join(cmd)}: {e}'], ''
    if p.returncode != 0:
        return [f'{" ".join(cmd)} exited with {p.returncode}: {p.stderr.strip()}'], ''
    try:
        meta, got = read_safetensors(out)
    except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
        return [f'reading the output: {e}'], ''
    ref_meta, ref = read_safetensors(os.path.join(data, case['golden']))
    fails = []
    expect = set(case['expect'])
    missing, extra = sorted(expect - set(got)), sorted(set(got) - expect)
    if missing:
        fails.append(f'{len(missing)} gradient(s) missing: {", ".join(missing)}')
    if extra:
        args = case['loss_args']
        frozen = [a for i, a in enumerate(args) if i > 0 and args[i - 1] == '--freeze']
        fails.append(f'{len(extra)} unexpected name(s) written: {", ".join(extra)}' +
                     (f' (frozen by --freeze {frozen[0]}?)' if frozen else ''))
    ref_loss = float(ref_meta['loss'])
    try:
        loss = float(meta['loss'])
    except (KeyError, ValueError) as e:
        fails.append(f'metadata "loss": {meta.get("loss")!r} is not a number ({e!r})')
        loss = None
    loss_tol = RTOL * max(1.0, abs(ref_loss))
    if loss is not None and not abs(loss - ref_loss) <= loss_tol:
        fails.append(f'loss {loss!r}, expected {ref_loss!r} (tolerance {loss_tol:.3g})')
    worst = (0.0, '')
    for name in sorted(expect & set(got)):
        why = compare(case, name, got[name], ref[name])
        if why:
            fails.append(f'{name}: {why}' + (
                ' (BERT\'s q, k and v share one λ: the golden writes the shared λ\'s '
                'gradient, their sum, under each)' if '.attention.self.' in name and
                name.endswith('.cross_modal_scale') else ''))
            continue
        tol = tolerance(case, name, ref[name][2])
        ratio = max(abs(a - b) for a, b in zip(got[name][2], ref[name][2])) / tol
        worst = max(worst, (ratio, name))
    summary = (f'{len(expect & set(got))} gradients, loss {loss!r} (ref {ref_loss!r}); worst '
               f'error/tolerance {worst[0]:.3g} ({worst[1]})')
    return fails, summary


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    tool, data, only = os.path.abspath(argv[1]), argv[2], set(argv[3:])
    cases = [c for c in load_cases(data) if not only or c['name'] in only]
    if only - {c['name'] for c in cases}:
        sys.exit(f'unknown case(s): {", ".join(sorted(only - {c["name"] for c in cases}))}')
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            fails, summary = check_case(tool, data, case, tmp)
            print(('ok   ' if not fails else 'FAIL ') + case['name'] +
                  (': ' + summary if summary else ''))
            for f in fails:
                print('       ' + f)
            failed += bool(fails)
    if failed:
        print(f'{failed} of {len(cases)} case(s) failed', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
