#!/usr/bin/env python3
"""Time m2pt's whole-encoder forward against PyTorch, ONNX Runtime and OpenVINO.

    VENV/bin/python tools/bench_peers.py [--work DIR] [--models vit,bert]
        [--batches 1,8] [--reps 7] [--threads T] [--rounds R]
        [--engines m2pt-merged,m2pt-unmerged,torch,ort,openvino]
        [--m2pt-run build/tools/m2pt-run] [--out table.md] [--openvino-profile]

VENV is a Python with torch, onnx, onnxruntime, openvino and numpy (the
README's "Measuring against peers" says how to make one); no test needs it.

The function measured is an encoder on hidden states, with random weights
and pathways (fixed seeds):
  vit   ViT-B/16: 12 pre-norm timm blocks with pathways + the final norm,
        x [B][197][768]
  bert  BERT-base: 12 post-norm Hugging Face layers with pathways, x [B][128][768]

Steps (files under --work, default /tmp/m2pt-peers; each reused if present):
  1. tools/make_vit_checkpoint.py --m2pt writes the M2PT checkpoint (target
     weights, aux_weight, cross_modal_scale per linear) and x_B.npy inputs;
  2. PyTorch builds the same body from that file (the plain re-implementations
     of timm's Block, HF's BertLayer and the paper's CrossModalReparamLinear in
     tools/make_model_golden.py), merges the pathways (W + lambda*W_aux, then
     plain nn.Linear layers) and exports it to ONNX with a dynamic batch
     (torch.onnx.export, the dynamo exporter where it works);
  3. each engine runs in its own fresh process: m2pt through `m2pt-run
     --repeat` (merged: --merge, unmerged: the M2PT checkpoint as it is;
     2 warm-up runs then --reps timed, each ending in clFinish), PyTorch eager
     (torch.inference_mode), ONNX Runtime (CPU EP, all graph optimizations,
     sequential) and OpenVINO (CPU, INFERENCE_PRECISION_HINT f32, LATENCY,
     one stream, the batch made static), each with the same warm-up and
     --reps timed runs; the median (and min, max) per engine;
  4. every output is compared with m2pt merged's: max |y - y_m2pt| against
     DESIGN.md's f32 tolerance 1e-4 * max(1, max |y_m2pt|) (exit status 1 if
     one fails).

Threads: every engine gets --threads (default: the CPUs this process may use):
OMP_NUM_THREADS (oneDNN's GEMMs), OPENBLAS_NUM_THREADS (without oneDNN) and
POCL_MAX_PTHREAD_COUNT for m2pt (an environment
value already set wins and is what the table records), torch.set_num_threads,
ORT's intra_op_num_threads (inter_op 1), OpenVINO's INFERENCE_NUM_THREADS.
--rounds R runs every engine R times in turn (engine order alternating), to
show the spread on a noisy machine: the table gives the median of the
rounds' medians and the range of them, and merged / best peer also taken
round by round (median [range]). The load average before and after
is printed with the table (markdown, on stdout and in --out).

--openvino-profile adds, after the table, where OpenVINO's forward spends its
time (its PERF_COUNT counters, summed per node type and implementation), from
one more OpenVINO run per model and batch that the table does not use: the
per-op comparison with m2pt's own profile (m2pt-bench --suite block, or
DNNL_VERBOSE=1 for its GEMMs).
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

try:
    import numpy as np
except ImportError:  # the table's arithmetic (tests/check_bench_peers.py) needs none of it
    np = None

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
TOOLS = os.path.join(ROOT, 'tools')

MODELS = {
    'vit': dict(arch='vit', tokens=197, dim=768, heads=12, hidden=3072, depth=12,
                eps=1e-6, seed=14, title='ViT-B/16, N = 197'),
    'bert': dict(arch='bert', tokens=128, dim=768, heads=12, hidden=3072, depth=12,
                 eps=1e-12, seed=15, title='BERT-base, N = 128'),
}
ENGINES = ('m2pt-merged', 'm2pt-unmerged', 'torch', 'ort', 'openvino')
# Warm-up runs before the timed ones, for every engine. Two, because m2pt
# repacks each linear's weights into oneDNN's layout on its second forward
# (lib/gemm/backend.h, m2pt_gemm_packed), where ONNX Runtime and OpenVINO
# pack theirs when the session or compiled model is made, untimed.
WARMUP = 2


def ckpt_path(work, name):
    return os.path.join(work, f'{name}_m2pt.safetensors')


def input_path(work, name, batch):
    return os.path.join(work, f'{name}_x{batch}.npy')


def output_path(work, name, batch, engine):
    return os.path.join(work, f'{name}_y{batch}_{engine}.npy')


def onnx_path(work, name):
    return os.path.join(work, f'{name}_merged.onnx')


# --------------------------------------------------------------------------
# Step 1 and 2: checkpoint, inputs, ONNX (PyTorch only in a worker process)
# --------------------------------------------------------------------------

def prepare(a, name):
    c = MODELS[name]
    path = ckpt_path(a.work, name)
    if not os.path.exists(path):
        cmd = [sys.executable, os.path.join(TOOLS, 'make_vit_checkpoint.py'), path,
               '--arch', c['arch'], '--m2pt', '--seed', str(c['seed']),
               '--depth', str(c['depth']), '--dim', str(c['dim']), '--heads', str(c['heads'])]
        if c['arch'] == 'bert':
            cmd += ['--vocab', '1000']  # embeddings are not run: keep the file small
        run_checked(cmd)
    for b in a.batches:
        x = input_path(a.work, name, b)
        if not os.path.exists(x):
            rng = np.random.default_rng(1000 * c['seed'] + b)
            np.save(x, rng.standard_normal((b, c['tokens'], c['dim'])).astype('<f4'))
    if not os.path.exists(onnx_path(a.work, name)):
        run_checked([sys.executable, __file__, '--worker', 'export', '--model', name,
                     '--work', a.work, '--threads', str(a.threads)])


def read_safetensors(path, prefixes):
    """{name: float32 ndarray} of the F32 tensors whose names start with one of
    `prefixes` (make_vit_checkpoint.py writes F32 only)."""
    import struct
    with open(path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(n))
        out = {}
        for k, e in header.items():
            if k == '__metadata__' or not k.startswith(prefixes):
                continue
            assert e['dtype'] == 'F32', (k, e['dtype'])
            lo, hi = e['data_offsets']
            f.seek(8 + n + lo)
            out[k] = np.frombuffer(f.read(hi - lo), '<f4').reshape(e['shape']).copy()
    return out


def torch_body(name):
    """The merged PyTorch module of `name`'s encoder, loaded from its checkpoint."""
    import torch
    import torch.nn as nn
    sys.path.insert(0, TOOLS)
    import make_model_golden as g

    c = dict(MODELS[name], dim_head=MODELS[name]['dim'] // MODELS[name]['heads'])
    eps = g.f32(c['eps'])
    if c['arch'] == 'vit':
        class Body(nn.Module):
            def __init__(self):
                super().__init__()
                self.blocks = nn.ModuleList(
                    g.Block(c['dim'], c['heads'], c['dim_head'], c['hidden'], eps)
                    for _ in range(c['depth']))
                self.norm = nn.LayerNorm(c['dim'], eps=eps)

            def forward(self, x):
                for blk in self.blocks:
                    x = blk(x)
                return self.norm(x)
        body, blocks, layers, prefixes = Body(), 'blocks', g.TIMM_LAYERS, ('blocks.', 'norm.')
    else:
        class Body(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = g.BertEncoder(c)

            def forward(self, x):
                return self.encoder(x)
        body, blocks, layers, prefixes = Body(), 'encoder.layer', g.BERT_LAYERS, ('encoder.',)
    for blk in g._get(body, blocks):
        for lname in layers:
            lin = g._get(blk, lname)
            g._set(blk, lname, g.CrossModalReparamLinear(
                lin.in_features, lin.out_features, True, origin_layer=lin,
                aux_weight=torch.zeros_like(lin.weight)))
    state = {k: torch.from_numpy(v) for k, v in read_safetensors(
        ckpt_path(WORK, name), prefixes).items()}
    body.load_state_dict(state, strict=True)
    g.merge_model(body)
    # Merged, each layer is a plain nn.Linear again (as deployed: no W_aux left
    # in the graph for an exporter or an optimizer to see).
    for blk in g._get(body, blocks):
        for lname in layers:
            rep = g._get(blk, lname)
            lin = nn.Linear(rep.in_features, rep.out_features, True)
            with torch.no_grad():
                lin.weight.copy_(rep.weight)
                lin.bias.copy_(rep.bias)
            g._set(blk, lname, lin)
    return body.eval()


def export_onnx(name, threads):
    import torch
    torch.set_num_threads(threads)
    body = torch_body(name)
    c = MODELS[name]
    x = torch.from_numpy(np.load(input_path(WORK, name, 1)))
    path = onnx_path(WORK, name)
    with torch.inference_mode():
        try:  # the dynamo exporter (torch >= 2.5, needs onnxscript)
            batch = torch.export.Dim('B', min=1, max=64)
            prog = torch.onnx.export(body, (x,), dynamo=True, input_names=['x'],
                                     output_names=['y'], dynamic_shapes=({0: batch},),
                                     external_data=False)
            prog.save(path)
        except Exception as e:  # noqa: BLE001 - fall back to the TorchScript exporter
            print(f'dynamo export failed ({e}); TorchScript exporter', file=sys.stderr)
            torch.onnx.export(body, (x,), path, input_names=['x'], output_names=['y'],
                              dynamic_axes={'x': {0: 'B'}, 'y': {0: 'B'}},
                              opset_version=17, dynamo=False)
    print(f'exported {name} ({c["title"]}) to {path}', file=sys.stderr)


# --------------------------------------------------------------------------
# Step 3: one engine, one model, one batch, in this (fresh) process
# --------------------------------------------------------------------------

def time_runs(fn, reps):
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def worker(engine, name, batch, reps, threads):
    x = np.load(input_path(WORK, name, batch))
    out = {}
    if engine == 'torch':
        import torch
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        body = torch_body(name)
        tx = torch.from_numpy(x)
        res = {}

        def fn():
            with torch.inference_mode():
                res['y'] = body(tx)
        times = time_runs(fn, reps)
        y = res['y'].numpy()
        out['settings'] = f'torch.get_num_threads() = {torch.get_num_threads()}'
        out['version'] = f'PyTorch {torch.__version__}'
    elif engine == 'ort':
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(onnx_path(WORK, name), so,
                                    providers=['CPUExecutionProvider'])
        iname = sess.get_inputs()[0].name
        res = {}

        def fn():
            res['y'] = sess.run(None, {iname: x})[0]
        times = time_runs(fn, reps)
        y = res['y']
        out['settings'] = f'intra_op_num_threads = {so.intra_op_num_threads}, inter_op 1'
        out['version'] = f'ONNX Runtime {ort.__version__} ({sess.get_providers()[0]})'
    elif engine in ('openvino', 'openvino-profile'):
        import openvino as ov
        core = ov.Core()
        model = core.read_model(onnx_path(WORK, name))
        model.reshape({model.inputs[0].any_name: ov.PartialShape(list(x.shape))})
        cfg = {'INFERENCE_PRECISION_HINT': 'f32', 'INFERENCE_NUM_THREADS': threads,
               'PERFORMANCE_HINT': 'LATENCY', 'NUM_STREAMS': 1}
        if engine == 'openvino-profile':
            cfg['PERF_COUNT'] = True
        compiled = core.compile_model(model, 'CPU', cfg)
        req = compiled.create_infer_request()

        def fn():
            req.infer({0: x})
        times = time_runs(fn, reps)
        y = np.array(req.get_output_tensor(0).data, copy=True)
        got = {k: str(compiled.get_property(k)) for k in
               ('INFERENCE_NUM_THREADS', 'INFERENCE_PRECISION_HINT', 'NUM_STREAMS')}
        out['settings'] = ', '.join(f'{k} = {v}' for k, v in got.items())
        out['version'] = f'OpenVINO {ov.get_version()}'
        if engine == 'openvino-profile':
            # The last run's time per (node type, implementation), summed.
            per = {}
            for node in req.get_profiling_info():
                key = f'{node.node_type} ({node.exec_type})'
                n, ms = per.get(key, (0, 0.0))
                per[key] = (n + 1, ms + node.real_time.total_seconds() * 1e3)
            print('PROFILE ' + json.dumps(sorted(per.items(), key=lambda kv: -kv[1][1])))
            return
    else:
        raise SystemExit(f'unknown engine {engine}')
    np.save(output_path(WORK, name, batch, engine), np.ascontiguousarray(y, '<f4'))
    out['times'] = times
    print('RESULT ' + json.dumps(out))


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------

def run_checked(cmd, env=None):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f'failed ({p.returncode}): {" ".join(cmd)}')
    return p


def m2pt_env(a):
    env = dict(os.environ)
    env.setdefault('OPENBLAS_NUM_THREADS', str(a.threads))
    env.setdefault('OMP_NUM_THREADS', str(a.threads))  # oneDNN's GEMMs (libgomp)
    env.setdefault('POCL_MAX_PTHREAD_COUNT', str(a.threads))
    return env


def m2pt_command(a, name, batch, merged):
    engine = 'm2pt-merged' if merged else 'm2pt-unmerged'
    cmd = [a.m2pt_run, '--model', ckpt_path(a.work, name), '--heads',
           str(MODELS[name]['heads']), '--input', input_path(a.work, name, batch),
           '--output', output_path(a.work, name, batch, engine),
           '--repeat', str(WARMUP + a.reps), '--warmup', str(WARMUP)]
    return cmd + (['--merge'] if merged else [])


def run_engine(a, engine, name, batch):
    """-> (times in s, settings, version) of one fresh process."""
    if engine.startswith('m2pt'):
        cmd = m2pt_command(a, name, batch, engine == 'm2pt-merged')
        env = m2pt_env(a)
        p = run_checked(cmd, env)
        m = re.search(r'median of the (\d+) after ([\d.]+) ms \(min ([\d.]+), max ([\d.]+)\)',
                      p.stderr)
        if not m:
            raise SystemExit(f'no timing in m2pt-run\'s output: {p.stderr}')
        med, lo, hi = (float(m.group(i)) / 1e3 for i in (2, 3, 4))
        settings = (f'OMP_NUM_THREADS = {env["OMP_NUM_THREADS"]}, '
                    f'OPENBLAS_NUM_THREADS = {env["OPENBLAS_NUM_THREADS"]}, '
                    f'POCL_MAX_PTHREAD_COUNT = {env["POCL_MAX_PTHREAD_COUNT"]}')
        return [lo, med, hi], settings, 'm2pt-run'
    p = run_checked([sys.executable, __file__, '--worker', engine, '--model', name,
                     '--batch', str(batch), '--reps', str(a.reps), '--threads',
                     str(a.threads), '--work', a.work])
    r = json.loads(p.stdout.split('RESULT ', 1)[1])
    return r['times'], r['settings'], r['version']


def ratio_cells(results, m, b, engines):
    """The table's ratio cells of model m at batch b: merged / best peer (the
    rounds' medians divided), then with more than one round the same ratio
    taken round by round, median [range] (the engines of a round run back to
    back, so on a shared machine their ratio moves less than their times),
    then unmerged / merged. results[(m, b, engine)] lists each round's time."""
    cells = []
    peers = [e for e in engines if not e.startswith('m2pt')]
    med = {e: statistics.median(results[(m, b, e)]) for e in engines}
    if 'm2pt-merged' in engines:
        merged = results[(m, b, 'm2pt-merged')]
        if not peers:
            cells += ['–'] * (2 if len(merged) > 1 else 1)
        else:
            cells.append(f'{med["m2pt-merged"] / min(med[e] for e in peers):.2f}')
            if len(merged) > 1:
                per = [t / min(results[(m, b, e)][r] for e in peers)
                       for r, t in enumerate(merged)]
                cells.append(f'{statistics.median(per):.2f} [{min(per):.2f}–{max(per):.2f}]')
    if 'm2pt-merged' in engines and 'm2pt-unmerged' in engines:
        cells.append(f'{med["m2pt-unmerged"] / med["m2pt-merged"]:.3f}')
    return cells


def summary(times):
    return statistics.median(times), min(times), max(times)


def fmt_ms(s):
    return f'{1e3 * s:.0f}' if s >= 0.1 else f'{1e3 * s:.1f}'


def versions(a):
    lines = []
    p = subprocess.run([os.path.join(os.path.dirname(a.m2pt_run), 'm2pt-info')],
                       capture_output=True, text=True)
    for ln in p.stdout.splitlines():
        if ln.startswith(('m2pt ', 'platform')) or ln.lstrip().startswith(('* ', 'type', 'GEMMs')):
            lines.append(ln.strip())
    try:
        import ctypes
        ob = ctypes.CDLL('libopenblas.so.0')
        ob.openblas_get_config.restype = ctypes.c_char_p
        lines.append('OpenBLAS: ' + ob.openblas_get_config().decode())
    except (OSError, AttributeError):
        pass
    return lines


def main(argv=None):
    global WORK
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--work', default='/tmp/m2pt-peers')
    ap.add_argument('--models', default='vit,bert')
    ap.add_argument('--batches', default='1,8')
    ap.add_argument('--reps', type=int, default=7)
    ap.add_argument('--rounds', type=int, default=1)
    ap.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument('--engines', default=','.join(ENGINES))
    ap.add_argument('--m2pt-run', default=os.path.join(ROOT, 'build', 'tools', 'm2pt-run'))
    ap.add_argument('--out', help='also write the markdown table here')
    ap.add_argument('--openvino-profile', action='store_true',
                    help="also print where OpenVINO's time goes (PERF_COUNT: ms per node "
                         'type and implementation in one forward, summed; a separate run, '
                         'not in the table)')
    ap.add_argument('--worker', help=argparse.SUPPRESS)
    ap.add_argument('--model', help=argparse.SUPPRESS)
    ap.add_argument('--batch', type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    WORK = a.work
    if a.worker == 'export':
        return export_onnx(a.model, a.threads)
    if a.worker:
        return worker(a.worker, a.model, a.batch, a.reps, a.threads)

    a.models = a.models.split(',')
    a.batches = [int(b) for b in a.batches.split(',')]
    a.engines = a.engines.split(',')
    for e in a.engines:
        if e not in ENGINES:
            ap.error(f'--engines: {e} is not one of {", ".join(ENGINES)}')
    for m in a.models:
        if m not in MODELS:
            ap.error(f'--models: {m} is not vit or bert')
    if a.reps < 1 or a.rounds < 1 or a.threads < 1:
        ap.error('--reps, --rounds and --threads must be positive')
    os.makedirs(a.work, exist_ok=True)
    load0 = os.getloadavg()
    t_start = time.time()
    for m in a.models:
        prepare(a, m)

    results, settings, vers = {}, {}, {}
    for m in a.models:
        for b in a.batches:
            for r in range(a.rounds):
                order = a.engines if r % 2 == 0 else a.engines[::-1]
                for e in order:
                    times, settings[e], vers[e] = run_engine(a, e, m, b)
                    med = times[1] if e.startswith('m2pt') else statistics.median(times)
                    results.setdefault((m, b, e), []).append(med)
                    print(f'{m} B={b} round {r + 1} {e}: {1e3 * med:.1f} ms '
                          f'(load {os.getloadavg()[0]:.2f})', file=sys.stderr)
    load1 = os.getloadavg()
    profiles = []
    for m in a.models if a.openvino_profile else ():
        for b in a.batches:
            p = run_checked([sys.executable, __file__, '--worker', 'openvino-profile', '--model', m,
                             '--batch', str(b), '--reps', str(a.reps), '--threads',
                             str(a.threads), '--work', a.work])
            per = json.loads(p.stdout.split('PROFILE ', 1)[1])
            total = sum(ms for _, (_, ms) in per)
            profiles += [f'OpenVINO profile, {MODELS[m]["title"]}, B = {b}: {total:.1f} ms '
                         'in its nodes', '']
            profiles += [f'- {ms:8.2f} ms {n:4d}× {key}' for key, (n, ms) in per if ms >= 0.01]
            profiles.append('')

    # Output equality against m2pt merged.
    errors, ok = {}, True
    for m in a.models:
        for b in a.batches:
            ref_path = output_path(a.work, m, b, 'm2pt-merged')
            if not os.path.exists(ref_path):
                continue
            ref = np.load(ref_path).astype(np.float64)
            tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
            for e in a.engines:
                if e == 'm2pt-merged':
                    continue
                y = np.load(output_path(a.work, m, b, e)).astype(np.float64)
                err = float(np.abs(y - ref).max()) if y.shape == ref.shape else float('inf')
                errors[(m, b, e)] = (err, tol)
                ok = ok and err <= tol

    lines = [f'Median of {a.reps} timed runs after {WARMUP} warm-up, ms'
             + (f'; median of {a.rounds} rounds [range of the rounds]' if a.rounds > 1 else '')
             + f'; {a.threads} threads for every engine.', '']
    head = ['model', 'B'] + list(a.engines)
    if 'm2pt-merged' in a.engines:
        head += ['merged / best peer']
        if a.rounds > 1:
            head += ['merged / best peer, by round']
    if 'm2pt-merged' in a.engines and 'm2pt-unmerged' in a.engines:
        head += ['unmerged / merged']
    lines += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for m in a.models:
        for b in a.batches:
            cells = [MODELS[m]['title'], str(b)]
            for e in a.engines:
                rs = results[(m, b, e)]
                cell = fmt_ms(statistics.median(rs))
                if len(rs) > 1:
                    cell += f' [{fmt_ms(min(rs))}–{fmt_ms(max(rs))}]'
                cells.append(cell)
            cells += ratio_cells(results, m, b, a.engines)
            lines.append('| ' + ' | '.join(cells) + ' |')
    if errors:
        lines += ['', 'Max |y − y_m2pt merged| (tolerance 1e-4·max(1, max|y|)):', '',
                  '| model | B | ' + ' | '.join(e for e in a.engines if e != 'm2pt-merged')
                  + ' | tolerance |',
                  '|' + '---|' * (len(a.engines) + 2)]
        for m in a.models:
            for b in a.batches:
                row = [errors.get((m, b, e)) for e in a.engines if e != 'm2pt-merged']
                if not any(row):
                    continue
                tol = next(r[1] for r in row if r)
                lines.append(f'| {MODELS[m]["title"]} | {b} | '
                             + ' | '.join(f'{r[0]:.2e}' if r else '–' for r in row)
                             + f' | {tol:.2e} |')
    lines += ['', 'Threads and versions:', '']
    lines += [f'- {e}: {settings[e]} ({vers[e]})' for e in a.engines]
    lines += [f'- {v}' for v in versions(a)]
    lines += [f'- Python {platform.python_version()}, numpy {np.__version__}; '
              f'{os.cpu_count()} CPUs, affinity {len(os.sched_getaffinity(0))}',
              f'- load average (1, 5, 15 min) before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, '
              f'after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; '
              f'{time.time() - t_start:.0f} s in all']
    if profiles:
        lines += [''] + profiles
    text = '\n'.join(lines) + '\n'
    sys.stdout.write(text)
    if a.out:
        with open(a.out, 'w') as f:
            f.write(text)
    if not ok:
        print('an output differs from m2pt merged by more than the tolerance', file=sys.stderr)
    return 0 if ok else 1


WORK = None

if __name__ == '__main__':
    sys.exit(main())
