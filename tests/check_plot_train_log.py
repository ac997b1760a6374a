#!/usr/bin/env python3
"""Self-test of tools/plot_train_log.py: renders a synthetic training log
(12 steps, three pathway λs, one of them appearing late, a NaN loss, two
evaluations) and checks that the SVG parses as XML and holds every series
with its points, the axes and the legend; then that malformed logs and a
log without steps fail with their exit statuses and write nothing.

usage: check_plot_train_log.py PLOT_TRAIN_LOG.py
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"


def check(cond, what):
    if not cond:
        print("FAIL:", what, file=sys.stderr)
        sys.exit(1)


def run(tool, *args, stdin=None):
    return subprocess.run([sys.executable, tool, *args], input=stdin, capture_output=True,
                          text=True, timeout=60)


def main():
    tool = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="m2pt-plot-")
    log = os.path.join(tmp, "train.jsonl")
    layers = ["blocks.0.attn.qkv", "blocks.0.mlp.fc1", "blocks.1.attn.proj"]
    lines = []
    for step in range(1, 13):
        scales = {name: 0.01 * step * (i + 1) for i, name in enumerate(layers)
                  if i < 2 or step > 4}
        loss = float("nan") if step == 7 else 2.0 * math.exp(-step / 5)
        lines.append(json.dumps({"step": step, "epoch": step / 6, "loss": loss,
                                 "lr": 1e-3, "grad_norm": 0.5, "scales": scales}))
        if step % 6 == 0:
            lines.append(json.dumps({"epoch": step // 6, "val_loss": 1.5 - step / 20,
                                     "val_accuracy": 0.5 + step / 50}))
    with open(log, "w") as f:
        f.write("\n".join(lines) + "\n\n")
    out = os.path.join(tmp, "train.svg")
    r = run(tool, log, out, "--title", "synthetic <run>")
    check(r.returncode == 0, f"exit {r.returncode}: {r.stderr}")
    root = ET.parse(out).getroot()
    check(root.tag == SVG + "svg", "the root is <svg>")
    series = {e.get("data-series"): e for e in root.iter() if e.get("data-series")}
    check(set(series) == {"loss", "val_loss"} | {"scale:" + n for n in layers},
          f"series {sorted(series)}")
    check(series["loss"].get("data-points") == "11", "the loss has 11 finite points")
    check(len(series["loss"].get("points").split()) == 11, "the loss line has 11 points")
    check(len(series["val_loss"].findall(SVG + "circle")) == 2, "two validation points")
    for i, name in enumerate(layers):
        want = 12 if i < 2 else 8
        pts = series["scale:" + name].get("points").split()
        check(len(pts) == want, f"{name}: {len(pts)} points, want {want}")
        ys = [float(p.split(",")[1]) for p in pts]
        check(all(a > b for a, b in zip(ys, ys[1:])), f"{name}: rising λ drawn upwards")
    texts = [t.text or "" for t in root.iter(SVG + "text")]
    for word in ["loss", "step", "λ", "train loss", "validation loss"] + layers:
        check(word in texts, f"the text {word!r}")
    check(root.find(SVG + "title").text == "synthetic <run>", "the title, escaped")
    # Standard input and output.
    with open(log) as f:
        r = run(tool, "-", "-", stdin=f.read())
    check(r.returncode == 0 and ET.fromstring(r.stdout).tag == SVG + "svg", "stdin to stdout")
    # Refusals: exit 2 (malformed) or 1 (no steps), no output file.
    cases = [("{\"step\": 1, \"loss\": 1}\nnot json\n", 2),
             ("[1, 2]\n", 2),
             ("{\"loss\": 1}\n", 2),
             ("{\"step\": 1, \"scales\": [1]}\n", 2),
             ("{\"val_loss\": 1}\n", 1),
             ("", 1)]
    for text, status in cases:
        bad, svg = os.path.join(tmp, "bad.jsonl"), os.path.join(tmp, "bad.svg")
        with open(bad, "w") as f:
            f.write(text)
        r = run(tool, bad, svg)
        check(r.returncode == status, f"{text!r}: exit {r.returncode}, want {status}")
        check(not os.path.exists(svg) and r.stderr.startswith("plot_train_log:"),
              f"{text!r}: no output, a message")
    r = run(tool, os.path.join(tmp, "missing.jsonl"), out)
    check(r.returncode == 2, "a missing log")
    for name in os.listdir(tmp):
        os.unlink(os.path.join(tmp, name))
    os.rmdir(tmp)
    print("plot_train_log: every check passed")


if __name__ == "__main__":
    main()
