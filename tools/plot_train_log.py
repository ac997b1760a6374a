#!/usr/bin/env python3
"""Plots a training log (m2pt-train --log, one JSON object a line) as an SVG.

usage: plot_train_log.py LOG.jsonl OUT.svg [--title TEXT]
       (LOG "-" reads standard input; OUT "-" writes standard output)

Step lines ({"step", "epoch", "loss", "lr", "grad_norm", "scales":
{layer: λ}}) give the top panel's loss over steps and the bottom panel's λ of
every pathway (one line a layer, named by its checkpoint name, e.g.
blocks.0.attn.qkv). Evaluation lines ({"val_loss", "val_accuracy"}, with
"step" or else placed at the last step before them) add the validation loss
to the top panel as points. Each series is one <polyline> (validation: <circle>s
in a <g>) carrying data-series="loss", "val_loss" or "scale:<layer>" and
data-points with its point count, so tests and scripts can find it.
Non-finite values are left out of the lines. Python 3 standard library only.
Exit status: 0, 1 when the log holds no step line, 2 on a malformed log or
command line.
"""
import argparse
import json
import math
import os
import sys
from xml.sax.saxutils import escape, quoteattr

WIDTH, PANEL_H, LEFT, RIGHT_PAD, TOP, GAP, BOTTOM = 960, 260, 70, 20, 40, 70, 50
LEGEND_W = 260
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]
DASHES = ["", "6,3", "2,2", "8,3,2,3"]


class LogError(Exception):
    pass


def finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_log(lines):
    """The step records and the evaluation records of a log."""
    steps, evals = [], []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise LogError(f"line {number}: not JSON ({e})")
        if not isinstance(rec, dict):
            raise LogError(f"line {number}: not a JSON object")
        if "val_loss" in rec or "val_accuracy" in rec:
            step = rec.get("step", steps[-1]["step"] if steps else 0)
            if not finite(step):
                raise LogError(f"line {number}: step is not a number")
            evals.append({"step": step, "val_loss": rec.get("val_loss"),
                          "val_accuracy": rec.get("val_accuracy")})
            continue
        if "step" not in rec or not finite(rec["step"]):
            raise LogError(f"line {number}: no numeric \"step\"")
        scales = rec.get("scales", {})
        if not isinstance(scales, dict):
            raise LogError(f"line {number}: \"scales\" is not an object")
        steps.append({"step": rec["step"], "loss": rec.get("loss"), "scales": scales})
    return steps, evals


def nice_ticks(lo, hi, count=5):
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0 if lo == 0 else lo + abs(lo) * 0.1
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(ticks[-1] + step)
    return ticks


def label(v):
    return f"{v:.4g}"


class Panel:
    def __init__(self, top, xs, ys, title):
        self.top, self.title = top, title
        self.x0, self.x1 = LEFT, WIDTH - LEGEND_W - RIGHT_PAD
        self.xt = nice_ticks(min(xs), max(xs)) if xs else [0, 1]
        self.yt = nice_ticks(min(ys), max(ys)) if ys else [0, 1]

    def x(self, v):
        lo, hi = self.xt[0], self.xt[-1]
        return self.x0 + (v - lo) / (hi - lo) * (self.x1 - self.x0)

    def y(self, v):
        lo, hi = self.yt[0], self.yt[-1]
        return self.top + PANEL_H - (v - lo) / (hi - lo) * PANEL_H

    @staticmethod
    def tick(out, line, color, at, anchor, value):
        """A grid line or tick mark and its value's label."""
        out.append('<line x1="%.2f" y1="%.2f" x2="%.2f" y2="%.2f" stroke="%s"/>'
                   % (*line, color))
        out.append(f'<text x="{at[0]:.2f}" y="{at[1]:.2f}" text-anchor="{anchor}">'
                   f'{label(value)}</text>')

    def axes(self, out, xlabel, ylabel):
        bottom = self.top + PANEL_H
        out.append(f'<text x="{self.x0}" y="{self.top - 10}" font-weight="bold">'
                   f'{escape(self.title)}</text>')
        for t in self.yt:
            y = self.y(t)
            self.tick(out, (self.x0, y, self.x1, y), "#e0e0e0", (self.x0 - 6, y + 4), "end", t)
        for t in self.xt:
            x = self.x(t)
            self.tick(out, (x, bottom, x, bottom + 5), "#000", (x, bottom + 18), "middle", t)
        out.append(f'<rect x="{self.x0}" y="{self.top}" width="{self.x1 - self.x0}" '
                   f'height="{PANEL_H}" fill="none" stroke="#000"/>')
        out.append(f'<text x="{(self.x0 + self.x1) / 2:.1f}" y="{bottom + 36}" '
                   f'text-anchor="middle">{escape(xlabel)}</text>')
        cy = self.top + PANEL_H / 2
        out.append(f'<text x="16" y="{cy:.1f}" text-anchor="middle" '
                   f'transform="rotate(-90 16 {cy:.1f})">{escape(ylabel)}</text>')

    def line(self, out, name, points, color, dash):
        pts = " ".join(f"{self.x(x):.2f},{self.y(y):.2f}" for x, y in points)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline data-series={quoteattr(name)} data-points="{len(points)}" '
                   f'points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"'
                   f'{dash_attr}/>')

    def legend(self, out, entries):
        """entries: (text, color, dash, marker) in order, one a row."""
        x = self.x1 + 16
        rows = max(1, int(PANEL_H // 14))
        shown = entries if len(entries) <= rows else entries[:rows - 1]
        for i, (text, color, dash, marker) in enumerate(shown):
            y = self.top + 10 + 14 * i
            if marker:
                out.append(f'<circle cx="{x + 10}" cy="{y - 4}" r="3" fill="{color}"/>')
            else:
                dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
                out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 20}" y2="{y - 4}" '
                           f'stroke="{color}" stroke-width="2"{dash_attr}/>')
            out.append(f'<text x="{x + 26}" y="{y}">{escape(text)}</text>')
        if len(shown) < len(entries):
            y = self.top + 10 + 14 * len(shown)
            out.append(f'<text x="{x + 26}" y="{y}">… {len(entries) - len(shown)} more</text>')


def render(steps, evals, title):
    loss = [(s["step"], s["loss"]) for s in steps if finite(s["loss"])]
    val = [(e["step"], e["val_loss"]) for e in evals if finite(e["val_loss"])]
    layers = []
    for s in steps:
        for name in s["scales"]:
            if name not in layers:
                layers.append(name)
    scales = {name: [(s["step"], s["scales"][name]) for s in steps
                     if name in s["scales"] and finite(s["scales"][name])] for name in layers}
    xs = [s["step"] for s in steps] + [e["step"] for e in evals]
    top = Panel(TOP, xs, [y for _, y in loss + val], "loss")
    bottom = Panel(TOP + PANEL_H + GAP, xs, [y for pts in scales.values() for _, y in pts],
                   "pathway scales λ")
    height = TOP + 2 * PANEL_H + GAP + BOTTOM
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
           f'<title>{escape(title)}</title>',
           f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>']
    top.axes(out, "step", "loss")
    top.line(out, "loss", loss, PALETTE[0], "")
    entries = [("train loss", PALETTE[0], "", False)]
    if val:
        out.append(f'<g data-series="val_loss" data-points="{len(val)}" fill="{PALETTE[1]}">')
        for x, y in val:
            out.append(f'<circle cx="{top.x(x):.2f}" cy="{top.y(y):.2f}" r="3"/>')
        out.append("</g>")
        entries.append(("validation loss", PALETTE[1], "", True))
    top.legend(out, entries)
    bottom.axes(out, "step", "λ")
    entries = []
    for i, name in enumerate(layers):
        color, dash = PALETTE[i % len(PALETTE)], DASHES[(i // len(PALETTE)) % len(DASHES)]
        bottom.line(out, "scale:" + name, scales[name], color, dash)
        entries.append((name, color, dash, False))
    bottom.legend(out, entries)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("out")
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)
    try:
        if args.log == "-":
            steps, evals = read_log(sys.stdin)
        else:
            with open(args.log, encoding="utf-8") as f:
                steps, evals = read_log(f)
    except OSError as e:
        print(f"plot_train_log: {args.log}: {e.strerror}", file=sys.stderr)
        return 2
    except LogError as e:
        print(f"plot_train_log: {args.log}: {e}", file=sys.stderr)
        return 2
    if not steps:
        print(f"plot_train_log: {args.log}: no step lines to plot", file=sys.stderr)
        return 1
    svg = render(steps, evals, args.title or f"training log {args.log}")
    if args.out == "-":
        sys.stdout.write(svg)
        return 0
    tmp = args.out + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(svg)
        os.replace(tmp, args.out)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        print(f"plot_train_log: {args.out}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
