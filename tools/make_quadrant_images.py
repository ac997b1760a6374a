#!/usr/bin/env python3
"""A synthetic 4-class image task for a short m2pt-train fine-tune (issue 13).

usage: make_quadrant_images.py OUT_DIR [--train 2048] [--val 256] [--size 32]
                              [--contrast 2.5] [--seed 0]

Each image is [3][size][size] f32 Gaussian noise (std 1) with one bright
square (side size/4, each channel raised by contrast·U(0.5, 1)) placed at a
random position inside one quadrant; the label is the quadrant (0 top-left,
1 top-right, 2 bottom-left, 3 bottom-right). Writes train_pixels.npy,
train_labels.npy (<i8), val_pixels.npy, val_labels.npy. Deterministic for
a seed (numpy.random.default_rng). Needs numpy.
"""
import argparse
import os

import numpy as np


def images(rng, count, size, contrast):
    x = rng.standard_normal((count, 3, size, size)).astype('<f4')
    y = rng.integers(0, 4, count)
    side, half = size // 4, size // 2
    for i in range(count):
        r0 = (y[i] // 2) * half + rng.integers(0, half - side + 1)
        c0 = (y[i] % 2) * half + rng.integers(0, half - side + 1)
        colour = rng.uniform(0.5, 1.0, 3).astype('<f4') * contrast
        x[i, :, r0:r0 + side, c0:c0 + side] += colour[:, None, None]
    return x, y.astype('<i8')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('out')
    ap.add_argument('--train', type=int, default=2048)
    ap.add_argument('--val', type=int, default=256)
    ap.add_argument('--size', type=int, default=32)
    ap.add_argument('--contrast', type=float, default=2.5)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    if a.size < 8 or a.size % 4:
        ap.error('--size must be a multiple of 4, at least 8')
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    for part, count in (('train', a.train), ('val', a.val)):
        x, y = images(rng, count, a.size, a.contrast)
        np.save(os.path.join(a.out, f'{part}_pixels.npy'), x)
        np.save(os.path.join(a.out, f'{part}_labels.npy'), y)
        print(f'{part}: {count} images [3][{a.size}][{a.size}], classes {np.bincount(y, minlength=4)}')


if __name__ == '__main__':
    main()
