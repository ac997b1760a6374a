#!/work/venv-torch/bin/python
"""One AdamW training step of a ViT-B/16 with pathways and a head: m2pt-train
against PyTorch eager, on the same machine in the same run (issue 13).

    /work/venv-torch/bin/python tools/bench_train_peers.py [--build build]
        [--work DIR] [--rounds 2] [--steps 4] [--batch 8] [--depth 12]

The model is timm's ViT-B/16 (12 blocks, dim 768, 12 heads, 224×224 pixels,
N = 197 tokens: the patch embedding runs too) with pathways on the four
linears of every block (aux weights from a second random checkpoint, λ = 0.01)
and a 1000-class head; every parameter trains (AdamW, lr 1e-4, weight decay
0.05 on matrices only, constant rate); batch B of random pixels and labels.

Step time is the steady state: the time from the end of step 1 to the end of
step `steps`, divided by steps − 1, so loading, kernel builds and the first
step's allocations are left out. m2pt: `m2pt-train --log -`, each log line
stamped as it arrives on the pipe. PyTorch: the same model written with
F.linear(x, W + λ·W_aux, b) and F.scaled_dot_product_attention, timed
in-process. Peak memory: each process's max RSS (wait4), which for m2pt on
PoCL includes its device memory (host memory on a CPU device). The runs
alternate m2pt, torch, m2pt, torch, ...; the load average is recorded before
each run. Also: the 12-block encoder's forward (m2pt-run --repeat) and the
peak device memory of one training pass with and without --recompute
(m2pt-grad --verbose on hidden states).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_file  # noqa: E402

LINEARS = ('attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2')
SCALE, LR, WD = 0.01, 1e-4, 0.05


def load_avg():
    with open('/proc/loadavg') as f:
        return float(f.read().split()[0])


def run_measured(cmd, env=None, stamp_lines=False):
    """(stdout lines with arrival times, stderr, max RSS MiB, wall s)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in p.stdout:
        lines.append((time.monotonic(), line))
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    if p.returncode:
        sys.exit(f'{cmd[0]} failed ({p.returncode}):\n{err}')
    return lines, err, ru.ru_maxrss / 1024.0, wall


def steady(stamps, steps):
    return (stamps[steps - 1] - stamps[0]) / (steps - 1)


def prepare(a):
    os.makedirs(a.work, exist_ok=True)
    gen = [sys.executable, os.path.join(HERE, 'make_vit_checkpoint.py')]
    ckpt, aux = os.path.join(a.work, 'vit.safetensors'), os.path.join(a.work, 'aux.safetensors')
    for path, seed in ((ckpt, 0), (aux, 1)):
        if not os.path.exists(path):
            subprocess.run(gen + [path, '--seed', str(seed), '--depth', str(a.depth)], check=True)
    rng = np.random.default_rng(0)
    px = os.path.join(a.work, 'pixels.npy')
    np.save(px, rng.standard_normal((a.batch, 3, 224, 224)).astype('<f4'))
    lab = os.path.join(a.work, 'labels.npy')
    np.save(lab, rng.integers(0, 1000, a.batch).astype('<i8'))
    hid = os.path.join(a.work, 'hidden.npy')
    np.save(hid, rng.standard_normal((a.batch, 197, 768)).astype('<f4'))
    return ckpt, aux, px, lab, hid


# ---- the PyTorch peer (runs in a child process: --torch-worker) ----

def torch_worker(a):
    import torch
    import torch.nn.functional as F

    def tensors(path):
        _, t = safetensors_file.read(path)
        return {k: torch.from_numpy(np.frombuffer(raw, '<f4').reshape(shape).copy())
                for k, (_, shape, raw) in t.items()}

    p = tensors(a.ckpt)
    aux = tensors(a.aux)
    for i in range(a.depth):
        for n in LINEARS:
            k = f'blocks.{i}.{n}'
            p[k + '.aux_weight'] = aux[k + '.weight']
            p[k + '.cross_modal_scale'] = torch.full((1,), SCALE)
    del aux
    for v in p.values():
        v.requires_grad_(True)

    def lin(n, x):
        w = p[n + '.weight']
        if n + '.aux_weight' in p:
            w = w + p[n + '.cross_modal_scale'] * p[n + '.aux_weight']
        return F.linear(x, w, p.get(n + '.bias'))

    def forward(px):
        w = p['patch_embed.proj.weight']
        x = F.conv2d(px, w, p['patch_embed.proj.bias'], stride=16).flatten(2).transpose(1, 2)
        x = torch.cat([p['cls_token'].expand(x.shape[0], 1, 768), x], 1) + p['pos_embed']
        B, N, D = x.shape
        for i in range(a.depth):
            b = f'blocks.{i}.'
            h = F.layer_norm(x, (D,), p[b + 'norm1.weight'], p[b + 'norm1.bias'], 1e-6)
            q, k, v = lin(b + 'attn.qkv', h).reshape(B, N, 3, 12, D // 12).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, D)
            x = x + lin(b + 'attn.proj', o)
            h = F.layer_norm(x, (D,), p[b + 'norm2.weight'], p[b + 'norm2.bias'], 1e-6)
            x = x + lin(b + 'mlp.fc2', F.gelu(lin(b + 'mlp.fc1', h)))
        x = F.layer_norm(x, (D,), p['norm.weight'], p['norm.bias'], 1e-6)
        return lin('head', x[:, 0])

    decay = [v for v in p.values() if v.ndim >= 2]
    no_decay = [v for v in p.values() if v.ndim < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': WD},
                             {'params': no_decay, 'weight_decay': 0.0}], lr=LR)
    px = torch.from_numpy(np.load(a.pixels))
    y = torch.from_numpy(np.load(a.labels))
    for step in range(1, a.steps + 1):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(px), y)
        loss.backward()
        opt.step()
        print(json.dumps({'step': step, 'loss': loss.item()}), flush=True)
    print(json.dumps({'torch_threads': torch.get_num_threads(), 'torch': torch.__version__}),
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default='build')
    ap.add_argument('--work', default='/tmp/m2pt-bench-train')
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--steps', type=int, default=4)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--depth', type=int, default=12)
    ap.add_argument('--skip-peers', action='store_true', help='only the encoder figures')
    ap.add_argument('--skip-encoder', action='store_true', help='only the m2pt/torch steps')
    ap.add_argument('--torch-worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--ckpt'), ap.add_argument('--aux')
    ap.add_argument('--pixels'), ap.add_argument('--labels')
    a = ap.parse_args()
    if a.torch_worker:
        return torch_worker(a)
    if a.steps < 2:
        ap.error('--steps must be at least 2 (the steady state is steps 2..k)')
    ckpt, aux, px, lab, hid = prepare(a)
    tools = os.path.join(a.build, 'tools')
    env = dict(os.environ)
    print(f'threads: OPENBLAS_NUM_THREADS={env.get("OPENBLAS_NUM_THREADS", "(unset)")} '
          f'POCL_MAX_PTHREAD_COUNT={env.get("POCL_MAX_PTHREAD_COUNT", "(unset)")} '
          f'OMP_NUM_THREADS={env.get("OMP_NUM_THREADS", "(unset)")} cpus={os.cpu_count()}')
    common = ['--model', ckpt, '--heads', '12']
    m2pt_train = [os.path.join(tools, 'm2pt-train')] + common + [
        '--aux', aux, '--scale', str(SCALE), '--data-pixels', px, '--labels', lab,
        '--steps', str(a.steps), '--batch', str(a.batch), '--optimizer', 'adamw', '--lr', str(LR),
        '--weight-decay', str(WD), '--no-shuffle', '--log', '-',
        '--out', os.path.join(a.work, 'out.safetensors')]
    torch_cmd = [sys.executable, os.path.abspath(__file__), '--torch-worker', '--ckpt', ckpt,
                 '--aux', aux, '--pixels', px, '--labels', lab, '--steps', str(a.steps),
                 '--depth', str(a.depth)]
    res = {'m2pt': [], 'torch': []}
    for r in range(a.rounds if not a.skip_peers else 0):
        for name, cmd in (('m2pt', m2pt_train), ('torch', torch_cmd)):
            load = load_avg()
            lines, _, rss, wall = run_measured(cmd, env)
            steps = [(t, json.loads(s)) for t, s in lines if s.startswith('{"step"')]
            stamps = [t for t, rec in steps if 'loss' in rec]
            extra = [json.loads(s) for _, s in lines if '"torch_threads"' in s]
            st = steady(stamps, a.steps)
            res[name].append((st, rss))
            print(f'round {r + 1} {name:5s}: step {st:7.2f} s (steps 2..{a.steps}), max RSS '
                  f'{rss:7.0f} MiB, wall {wall:6.1f} s, load before {load:.1f}'
                  + (f', torch threads {extra[0]["torch_threads"]} ({extra[0]["torch"]})'
                     if extra else ''), flush=True)
    if res['m2pt'] and res['torch']:
        ratios = [m[0] / t[0] for m, t in zip(res['m2pt'], res['torch'])]
        mem = [m[1] / t[1] for m, t in zip(res['m2pt'], res['torch'])]
        print(f'step time m2pt/torch: median {statistics.median(ratios):.2f} '
              f'(range {min(ratios):.2f}..{max(ratios):.2f}); max RSS m2pt/torch: median '
              f'{statistics.median(mem):.2f} (range {min(mem):.2f}..{max(mem):.2f})')

    if a.skip_encoder:
        return
    # The encoder alone (hidden states in): forward median, and the training
    # pass's device peak with and without recomputation.
    enc = common + ['--aux', aux, '--scale', str(SCALE), '--verbose']
    load = load_avg()
    _, err, _, _ = run_measured([os.path.join(tools, 'm2pt-run')] + enc + [
        '--input', hid, '--repeat', '4', '--output', os.path.join(a.work, 'fwd.npy')], env)
    print(f'encoder forward (m2pt-run --repeat 4, load {load:.1f}):\n  '
          + err.strip().replace('\n', '\n  '))
    for extra in ([], ['--recompute']):
        load = load_avg()
        _, err, rss, wall = run_measured([os.path.join(tools, 'm2pt-grad')] + enc + extra + [
            '--input', hid, '--labels', lab, '--out', os.path.join(a.work, 'grad.safetensors')],
            env)
        peak = [s.split(': ', 1)[1] for s in err.splitlines()
                if 'device memory' in s or 'forward and backward' in s]
        print(f'm2pt-grad {" ".join(extra) or "(keep activations)"}: {peak}, max RSS {rss:.0f} '
              f'MiB, wall {wall:.1f} s, load {load:.1f}', flush=True)


if __name__ == '__main__':
    main()
