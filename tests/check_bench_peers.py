#!/usr/bin/env python3
"""The ratio cells of tools/bench_peers.py's table on made-up round times:
merged / best peer from the rounds' medians, the same ratio round by round
(median [range], only with more than one round), unmerged / merged, and
what is left out without peers or without unmerged. Needs only the standard
library (the tool's numpy is for its engines, not the table).

usage: check_bench_peers.py BENCH_PEERS.py
"""
import importlib.util
import sys

# As where the suite runs: no numpy (an import of it fails).
sys.modules['numpy'] = None
spec = importlib.util.spec_from_file_location('bench_peers', sys.argv[1])
bench_peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_peers)
failures = []


def check(got, want, what):
    ok = got == want
    print(('ok   ' if ok else 'FAIL ') + f'{what}: {got!r}' + ('' if ok else f', want {want!r}'))
    if not ok:
        failures.append(what)


ALL = ('m2pt-merged', 'm2pt-unmerged', 'ort', 'openvino')
# Medians: merged 100, ORT 100, OpenVINO 105, unmerged 101. By round the
# best peer is OpenVINO, ORT, OpenVINO: 100/105, 110/100, 90/92.
three = {('vit', 1, 'm2pt-merged'): [100.0, 110.0, 90.0],
         ('vit', 1, 'm2pt-unmerged'): [101.0, 111.0, 91.0],
         ('vit', 1, 'ort'): [120.0, 100.0, 95.0],
         ('vit', 1, 'openvino'): [105.0, 115.0, 92.0]}
check(bench_peers.ratio_cells(three, 'vit', 1, ALL), ['1.00', '0.98 [0.95–1.10]', '1.010'],
      'three rounds')
one = {k: v[:1] for k, v in three.items()}
check(bench_peers.ratio_cells(one, 'vit', 1, ALL), ['0.95', '1.010'], 'one round: no by-round cell')
check(bench_peers.ratio_cells(three, 'vit', 1, ('m2pt-merged', 'm2pt-unmerged')),
      ['–', '–', '1.010'], 'no peer')
check(bench_peers.ratio_cells(three, 'vit', 1, ('m2pt-merged', 'openvino')),
      ['0.95', '0.96 [0.95–0.98]'], 'no unmerged')
check(bench_peers.ratio_cells(three, 'vit', 1, ('ort', 'openvino')), [], 'no m2pt')

sys.exit(1 if failures else 0)
