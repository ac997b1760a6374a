#!/usr/bin/env python3
"""The checkpoint tools end to end: m2pt-run, m2pt-merge and m2pt-reparam on
the goldens of tests/data/model, and m2pt-tune's command line and summary
(python3 standard library only).

usage: check_tools.py TOOLS_DIR DATA_DIR
"""
import json
import math
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time

tools, data = sys.argv[1], sys.argv[2]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def tool(name, *args, env=None):
    p = subprocess.run([os.path.join(tools, name)] + list(args), capture_output=True, text=True,
                       env=env)
    return p.returncode, p.stdout, p.stderr


def npy(path):
    """(shape, raw float32 bytes) of a '<f4' C-order .npy file."""
    with open(path, "rb") as f:
        b = f.read()
    assert b[:6] == b"\x93NUMPY", path
    n = struct.unpack("<H", b[8:10])[0] if b[6] == 1 else struct.unpack("<I", b[8:12])[0]
    start = (10 if b[6] == 1 else 12) + n
    header = b[start - n:start].decode()
    shape = tuple(int(s) for s in header.split("(")[1].split(")")[0].split(",") if s.strip())
    return shape, b[start:]


def floats(raw):
    return struct.unpack("<%df" % (len(raw) // 4), raw)


def write_npy(path, shape, values):
    """A '<f4' C-order .npy file, format 1.0, as np.save writes it."""
    dims = "".join("%d," % n for n in shape) if len(shape) == 1 else ", ".join(map(str, shape))
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % dims
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%df" % len(values), *values))


def close(got_path, ref_path, tol=1e-4):
    gs, g = npy(got_path)
    rs, r = npy(ref_path)
    if gs != rs:
        return False
    g, r = floats(g), floats(r)
    scale = max(1.0, max(abs(v) for v in r))
    return max(abs(a - b) for a, b in zip(g, r)) <= tol * scale


def keys(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def d(name):
    return os.path.join(data, name)


tmp = tempfile.mkdtemp(prefix="m2pt-tools-")


def t(name):
    return os.path.join(tmp, name)


# --help, usage errors (2), failures (1) with the tool's name on stderr.
for name in ("m2pt-run", "m2pt-merge", "m2pt-reparam", "m2pt-grad", "m2pt-train"):
    rc, out, _ = tool(name, "--help")
    check(rc == 0 and out.startswith("usage: " + name), name + " --help")
    rc, _, err = tool(name)
    check(rc == 2 and err.startswith(name + ": "), name + " without arguments exits 2")
    rc, _, err = tool(name, "--bogus")
    check(rc == 2 and "--bogus" in err, name + " --bogus exits 2")
rc, _, err = tool("m2pt-run", "--model", d("timm_target.safetensors"), "--heads", "3",
                  "--input", d("timm_input.npy"), "--output", t("y.npy"), "--scale", "nan")
check(rc == 2 and "--scale" in err, "m2pt-run --scale nan exits 2")
rc, _, err = tool("m2pt-run", "--model", d("no-such.safetensors"), "--heads", "3",
                  "--input", d("timm_input.npy"), "--output", t("y.npy"))
check(rc == 1 and "no-such.safetensors" in err and "M2PT_ERR_IO" in err,
      "m2pt-run on a missing checkpoint exits 1 naming it")
rc, _, err = tool("m2pt-run", "--model", d("timm_target.safetensors"), "--heads", "3",
                  "--input", d("bert_target.safetensors"), "--output", t("y.npy"))
check(rc == 1 and "bert_target.safetensors" in err, "m2pt-run on a non-.npy input exits 1")
rc, _, err = tool("m2pt-merge", "--target", d("timm_target.safetensors"), "--aux",
                  d("timm_aux.safetensors"), "--scale", "1", "--scales", "x", "--out", t("m"))
check(rc == 2, "m2pt-merge with --scale and --scales exits 2")

# m2pt-run on a plain checkpoint, [B][N][dim] and [N][dim].
rc, _, err = tool("m2pt-run", "--model", d("timm_target.safetensors"), "--heads", "3",
                  "--input", d("timm_input.npy"), "--output", t("plain.npy"))
check(rc == 0 and close(t("plain.npy"), d("timm_expected_plain.npy")),
      "m2pt-run timm target matches PyTorch " + err.strip())
rc, _, _ = tool("m2pt-run", "--model", d("bert_target.safetensors"), "--aux",
                d("bert_aux.safetensors"), "--scale", "0.3", "--heads", "2",
                "--input", d("bert_input.npy"), "--output", t("bert.npy"))
check(rc == 0 and close(t("bert.npy"), d("bert_expected_aux03.npy")),
      "m2pt-run BERT target + --aux --scale 0.3 matches PyTorch")

# --repeat with --warmup: the warm-up runs are left out of the median (the
# repacking second forward among them), the output is still the model's.
rc, _, err = tool("m2pt-run", "--model", d("timm_m2pt.safetensors"), "--heads", "3",
                  "--input", d("timm_input.npy"), "--output", t("repeat.npy"),
                  "--repeat", "4", "--warmup", "2")
check(rc == 0 and "2 warm-up; median of the 2 after" in err and
      close(t("repeat.npy"), d("timm_expected_m2pt.npy")),
      "m2pt-run --repeat 4 --warmup 2 times 2 runs and matches PyTorch " + err.strip())
# --kernels: m2pt's kernels by name, per timed run, the warm-up left out.
rc, _, err = tool("m2pt-run", "--model", d("timm_m2pt.safetensors"), "--heads", "3",
                  "--input", d("timm_input.npy"), "--output", t("kernels.npy"),
                  "--repeat", "3", "--warmup", "1", "--kernels")
kernel_lines = [l for l in err.splitlines() if " launches  m2pt_" in l]
check(rc == 0 and "m2pt's kernels, device time per run (2 runs)" in err and kernel_lines and
      close(t("kernels.npy"), d("timm_expected_m2pt.npy")),
      "m2pt-run --kernels lists m2pt's kernels per run and matches PyTorch " + err.strip())
rc, _, err = tool("m2pt-run", "--model", d("timm_m2pt.safetensors"), "--heads", "3",
                  "--input", d("timm_input.npy"), "--output", t("repeat.npy"),
                  "--repeat", "2", "--warmup", "2")
check(rc == 2 and "--warmup must be below --repeat" in err,
      "m2pt-run --warmup as large as --repeat exits 2")

# The M2PT checkpoint, unmerged, and its merge: the same bits.
rc, _, _ = tool("m2pt-run", "--model", d("timm_m2pt.safetensors"), "--heads", "3",
                "--input", d("timm_input.npy"), "--output", t("m2pt.npy"))
check(rc == 0 and close(t("m2pt.npy"), d("timm_expected_m2pt.npy")),
      "m2pt-run on the M2PT checkpoint matches PyTorch")
rc, _, err = tool("m2pt-merge", "--m2pt", d("timm_m2pt.safetensors"), "--out", t("merged.st"))
check(rc == 0, "m2pt-merge --m2pt " + err.strip())
check(set(keys(t("merged.st"))) == set(keys(d("timm_target.safetensors"))),
      "the merged checkpoint has exactly the plain checkpoint's keys")
check(keys(t("merged.st"))["head.weight"]["dtype"] == keys(d("timm_target.safetensors"))[
    "head.weight"]["dtype"], "tensors outside the blocks keep their dtype")
rc, _, _ = tool("m2pt-run", "--model", t("merged.st"), "--heads", "3",
                "--input", d("timm_input.npy"), "--output", t("merged.npy"))
check(rc == 0 and npy(t("merged.npy")) == npy(t("m2pt.npy")),
      "m2pt-run on the merged checkpoint equals m2pt-run on the M2PT checkpoint, bit for bit")

# A checkpoint that shrinks while m2pt-merge reads it: a clean failure naming
# the file (exit 1) or the right result (exit 0), never a signal (a mapped
# file that shrinks raised SIGBUS: exit status 135 from a shell). Half the
# tries truncate as soon as the tool holds the file (seen in /proc), half
# after delays spread over a run.
def holds(pid, path):
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == path:
                    return True
            except OSError:
                pass
        with open("/proc/%d/maps" % pid) as f:
            return path in f.read()
    except OSError:
        return False


with open(d("timm_m2pt.safetensors"), "rb") as f:
    original = f.read()
with open(t("merged.st"), "rb") as f:
    merged_bytes = f.read()
started = time.monotonic()
tool("m2pt-merge", "--m2pt", d("timm_m2pt.safetensors"), "--out", t("timed.st"))
run_time = time.monotonic() - started
shrink, bad = os.path.realpath(t("shrinking.st")), []
tries = 12
for i in range(tries):
    with open(shrink, "wb") as f:
        f.write(original)
    if os.path.exists(t("shrunk.st")):
        os.remove(t("shrunk.st"))
    p = subprocess.Popen([os.path.join(tools, "m2pt-merge"), "--m2pt", shrink, "--out",
                          t("shrunk.st")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    if i % 2 == 0:
        deadline = time.monotonic() + 60
        while p.poll() is None and not holds(p.pid, shrink) and time.monotonic() < deadline:
            time.sleep(0.0005)  # leave the 2 cores to the tool being watched
    else:
        time.sleep(run_time * i / tries)
    os.truncate(shrink, (0, 4096, len(original) // 2)[i % 3])
    _, err = p.communicate()
    if p.returncode == 0:
        with open(t("shrunk.st"), "rb") as f:
            fine = f.read() == merged_bytes
    else:
        fine = p.returncode == 1 and shrink in err
    if not fine:
        bad.append("try %d: exit %d %s" % (i, p.returncode, err.strip()))
check(not bad, "m2pt-merge on a checkpoint truncated under it fails cleanly or merges "
      "correctly, %d tries%s" % (tries, "".join("\n  " + b for b in bad)))

# Target + aux: --scale, --scales, m2pt-reparam, m2pt-run --aux agree.
rc, _, _ = tool("m2pt-merge", "--target", d("timm_target.safetensors"), "--aux",
                d("timm_aux.safetensors"), "--scale", "0.25", "--out", t("m025.st"))
check(rc == 0, "m2pt-merge --target --aux --scale")
scales = {"blocks.%d.%s" % (b, layer): 0.25
          for b in range(2) for layer in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}
with open(t("scales.json"), "w") as f:
    json.dump(scales, f)
rc, _, err = tool("m2pt-merge", "--target", d("timm_target.safetensors"), "--aux",
                  d("timm_aux.safetensors"), "--scales", t("scales.json"), "--out", t("s025.st"))
with open(t("m025.st"), "rb") as a, open(t("s025.st"), "rb") as b:
    check(rc == 0 and a.read() == b.read(), "--scales with every λ 0.25 equals --scale 0.25")
del scales["blocks.1.mlp.fc2"]
with open(t("scales.json"), "w") as f:
    json.dump(scales, f)
rc, _, err = tool("m2pt-merge", "--target", d("timm_target.safetensors"), "--aux",
                  d("timm_aux.safetensors"), "--scales", t("scales.json"), "--out", t("x.st"))
check(rc == 1 and "blocks.1.mlp.fc2" in err and not os.path.exists(t("x.st")),
      "--scales missing a layer exits 1 naming it and writes nothing")
# A JSON object with a repeated key still misses a layer.
with open(t("scales.json"), "w") as f:
    f.write(json.dumps(scales)[:-1] + ', "blocks.0.attn.qkv": 0.25}')
rc, _, err = tool("m2pt-merge", "--target", d("timm_target.safetensors"), "--aux",
                  d("timm_aux.safetensors"), "--scales", t("scales.json"), "--out", t("x.st"))
check(rc == 1 and "blocks.1.mlp.fc2" in err, "--scales with a repeated key still needs every layer")
# BERT: q, k and v share qkv's λ; listing the three is the paper's naming.
bert = {"encoder.layer.%d.%s" % (b, layer): 0.3 for b in range(2)
        for layer in ("attention.self.query", "attention.self.key", "attention.self.value",
                      "attention.output.dense", "intermediate.dense", "output.dense")}
with open(t("bert.json"), "w") as f:
    json.dump(bert, f)
rc, _, err = tool("m2pt-merge", "--target", d("bert_target.safetensors"), "--aux",
                  d("bert_aux.safetensors"), "--scales", t("bert.json"), "--out", t("b.st"))
rc2, _, _ = tool("m2pt-run", "--model", t("b.st"), "--heads", "2", "--input",
                 d("bert_input.npy"), "--output", t("b.npy"))
check(rc == 0 and rc2 == 0 and close(t("b.npy"), d("bert_expected_aux03.npy")),
      "m2pt-merge --scales in BERT naming, then m2pt-run, matches PyTorch " + err.strip())
bert["encoder.layer.1.attention.self.key"] = 0.5
with open(t("bert.json"), "w") as f:
    json.dump(bert, f)
rc, _, err = tool("m2pt-merge", "--target", d("bert_target.safetensors"), "--aux",
                  d("bert_aux.safetensors"), "--scales", t("bert.json"), "--out", t("x.st"))
check(rc == 1 and "attention.self.key" in err, "--scales with q and k λ that differ exits 1")
rc, _, _ = tool("m2pt-run", "--model", t("m025.st"), "--heads", "3",
                "--input", d("timm_input.npy"), "--output", t("m025.npy"))
check(rc == 0 and close(t("m025.npy"), d("timm_expected_aux025.npy")),
      "the merged target + aux at λ 0.25 matches PyTorch")

rc, _, err = tool("m2pt-reparam", "--target", d("timm_target.safetensors"), "--aux",
                  d("timm_aux.safetensors"), "--scale", "0.25", "--out", t("reparam.st"))
check(rc == 0, "m2pt-reparam " + err.strip())
k = keys(t("reparam.st"))
extra = set(k) - set(keys(d("timm_target.safetensors")))
check(len(extra) == 16 and all(e.endswith((".aux_weight", ".cross_modal_scale")) for e in extra)
      and k["blocks.0.attn.qkv.cross_modal_scale"]["shape"] == [1],
      "m2pt-reparam adds aux_weight and cross_modal_scale [1] to each of the 8 linears")
rc, _, _ = tool("m2pt-run", "--model", t("reparam.st"), "--heads", "3",
                "--input", d("timm_input.npy"), "--output", t("reparam.npy"))
rc2, _, _ = tool("m2pt-run", "--model", d("timm_target.safetensors"), "--aux",
                 d("timm_aux.safetensors"), "--scale", "0.25", "--heads", "3",
                 "--input", d("timm_input.npy"), "--output", t("aux.npy"))
check(rc == 0 and rc2 == 0 and npy(t("reparam.npy")) == npy(t("aux.npy"))
      and close(t("aux.npy"), d("timm_expected_aux025.npy")),
      "m2pt-run on the m2pt-reparam checkpoint equals m2pt-run --aux, and PyTorch")
rc, _, err = tool("m2pt-reparam", "--target", d("timm_target.safetensors"), "--aux",
                  d("timm_input.npy"), "--out", t("y.st"))
check(rc == 1 and "M2PT_ERR_FORMAT" in err and not os.path.exists(t("y.st")),
      "m2pt-reparam with a malformed aux exits 1 and writes nothing")
rc, _, err = tool("m2pt-reparam", "--target", d("timm_target.safetensors"), "--aux",
                  d("timm_aux.safetensors"), "--layers", "attn.qkv,mlp.fc9", "--out", t("y.st"))
check(rc == 1 and "mlp.fc9" in err, "m2pt-reparam with an unknown layer exits 1 naming it")

# ---- m2pt-grad (issue 12): gradients by checkpoint name ----

def write_labels(path, values, descr="<i8", fmt="q"):
    """A 1-D integer .npy (format 1.0)."""
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }" % (descr, len(values))
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%d%s" % (len(values), fmt), *values))


def st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


write_labels(t("y.npy"), [3, 7])
write_labels(t("y32.npy"), [1, 0], "<i4", "i")
write_labels(t("ybad.npy"), [3, 10])
timm_grad = ["--model", d("timm_m2pt.safetensors"), "--heads", "3", "--input", d("timm_input.npy")]
rc, _, err = tool("m2pt-grad", *timm_grad, "--labels", t("y.npy"), "--label-smoothing", "0.1",
                  "--out", t("g.st"))
h = st_header(t("g.st")) if rc == 0 else {}
loss = h.get("__metadata__", {}).get("loss", "")
check(rc == 0 and math.isfinite(float(loss or "nan"))
      and h.get("blocks.0.attn.qkv.cross_modal_scale", {}).get("shape") == [1]
      and h.get("head.weight", {}).get("shape") == [10, 24]
      and h.get("blocks.1.mlp.fc2.aux_weight", {}).get("dtype") == "F32",
      "m2pt-grad on hidden states writes the loss and every gradient by name " + err.strip())
rc, _, _ = tool("m2pt-grad", *timm_grad, "--labels", t("y.npy"), "--label-smoothing", "0.1",
                "--recompute", "--out", t("g2.st"))
with open(t("g.st"), "rb") as f1, open(t("g2.st"), "rb") as f2:
    check(rc == 0 and f1.read() == f2.read(), "m2pt-grad --recompute writes the same bytes")
# Drop-path: 0 is no drop-path; a rate gives the same bytes twice with one
# seed and step, another loss than without, and a rate of 1 is refused.
dp = ["--labels", t("y.npy"), "--label-smoothing", "0.1", "--seed", "3"]
rc0, _, _ = tool("m2pt-grad", *timm_grad, *dp, "--drop-path", "0", "--out", t("dp0.st"))
rc1, _, err = tool("m2pt-grad", *timm_grad, *dp, "--drop-path", "0.9", "--step", "2",
                   "--dropout", "0.1", "--out", t("dp1.st"))
rc2, _, _ = tool("m2pt-grad", *timm_grad, *dp, "--drop-path", "0.9", "--step", "2",
                 "--dropout", "0.1", "--recompute", "--out", t("dp2.st"))
with open(t("g.st"), "rb") as f0, open(t("dp0.st"), "rb") as f1:
    same0 = f0.read() == f1.read()
with open(t("dp1.st"), "rb") as f1, open(t("dp2.st"), "rb") as f2:
    same12 = f1.read() == f2.read()
loss_dp = st_header(t("dp1.st")).get("__metadata__", {}).get("loss") if rc1 == 0 else None
check(rc0 == 0 and rc1 == 0 and rc2 == 0 and same0 and same12 and loss_dp != loss,
      "m2pt-grad --drop-path: 0 changes nothing, a rate is reproducible " + err.strip())
for bad in ("1", "-0.1", "nan"):
    rc, _, err = tool("m2pt-grad", *timm_grad, *dp, "--drop-path", bad, "--out", t("dp3.st"))
    check(rc == 2 and "--drop-path" in err and not os.path.exists(t("dp3.st")),
          "m2pt-grad --drop-path %s is bad usage" % bad)
rc, _, _ = tool("m2pt-grad", *timm_grad, "--labels", t("y.npy"), "--freeze", "target,norm,head",
                "--out", t("g3.st"))
h3 = st_header(t("g3.st")) if rc == 0 else {}
check(rc == 0 and "blocks.0.attn.qkv.weight" not in h3 and "norm.weight" not in h3
      and "head.weight" not in h3 and "blocks.0.attn.qkv.aux_weight" in h3
      and "blocks.0.attn.qkv.bias" in h3, "m2pt-grad --freeze leaves the frozen out")
# A model without a head: one made from --seed (BERT's "classifier"), reproducibly.
bert_grad = ["--model", d("bert_m2pt.safetensors"), "--heads", "2", "--input",
             d("bert_input.npy"), "--labels", t("y32.npy")]
rc, _, err = tool("m2pt-grad", *bert_grad, "--num-classes", "2", "--seed", "5", "--out",
                  t("b1.st"))
rc2, _, _ = tool("m2pt-grad", *bert_grad, "--num-classes", "2", "--seed", "5", "--out",
                 t("b2.st"))
hb = st_header(t("b1.st")) if rc == 0 else {}
with open(t("b1.st"), "rb") as f1, open(t("b2.st"), "rb") as f2:
    same = f1.read() == f2.read()
check(rc == 0 and rc2 == 0 and same and hb.get("classifier.weight", {}).get("shape") == [2, 24]
      and "pooler.dense.weight" in hb
      and "encoder.layer.0.attention.self.query.cross_modal_scale" in hb,
      "m2pt-grad --num-classes creates a head from --seed, twice the same " + err.strip())
rc, _, err = tool("m2pt-grad", *bert_grad, "--out", t("b3.st"))
check(rc == 1 and "create_head" in err and not os.path.exists(t("b3.st")),
      "m2pt-grad with cross-entropy and no head exits 1")
# Failures leave an existing output as it was.
with open(t("keep.st"), "wb") as f:
    f.write(b"old")
for args, why in ((["--labels", t("ybad.npy")], "a label out of range"),
                  (["--labels", t("y.npy"), "--loss", "mse"], "int labels for mse"),
                  (["--labels", t("y.npy"), "--num-classes", "4"], "a --num-classes other "
                   "than the head's")):
    rc, _, err = tool("m2pt-grad", *timm_grad, *args, "--out", t("keep.st"))
    with open(t("keep.st"), "rb") as f:
        kept = f.read() == b"old"
    check(rc == 1 and kept and err.startswith("m2pt-grad: "),
          "m2pt-grad with %s exits 1, the output untouched" % why)
for args in (["--freeze", "target,bogus"], ["--loss", "hinge"], ["--pool", "max"],
             ["--label-smoothing", "2"]):
    rc, _, err = tool("m2pt-grad", *timm_grad, "--labels", t("y.npy"), *args, "--out",
                      t("keep.st"))
    check(rc == 2 and args[0] in err, "m2pt-grad %s exits 2" % " ".join(args))
rc, _, err = tool("m2pt-grad", *timm_grad, "--out", t("keep.st"))
check(rc == 2 and "--labels" in err, "m2pt-grad without --labels exits 2")

# ---- Output paths (issue 9): written as cp writes them ----

def run_to(output, **kw):
    return subprocess.run([os.path.join(tools, "m2pt-run"), "--model",
                           d("timm_target.safetensors"), "--heads", "3", "--input",
                           d("timm_input.npy"), "--output", output], capture_output=True, **kw)


with open(t("plain.npy"), "rb") as f:
    plain = f.read()
# A pipe as --output. /proc/self/fd/1 first: a writer that replaced its output
# fails there harmlessly; /dev/stdout (a link to it) must stay the system's.
for out in ("/proc/self/fd/1", "/dev/stdout"):
    before = os.readlink(out) if os.path.islink(out) else None
    p = run_to(out)
    if before is not None and not os.path.islink(out):
        os.remove(out)
        os.symlink(before, out)
        check(False, out + " was replaced by a file (restored)")
    ok = p.returncode == 0 and p.stdout == plain
    check(ok, "m2pt-run --output %s | cat gives the .npy %s" % (out, p.stderr.decode().strip()))
    if not ok:
        break

# A full device: exit 1 with ENOSPC, the device (a private one with /dev/full's
# numbers, so that a broken writer cannot replace /dev/full) left alone.
full = None
if os.geteuid() == 0:
    try:
        os.mknod(t("full"), stat.S_IFCHR | 0o666, os.makedev(1, 7))
        with open(t("full"), "wb"):
            full = t("full")
    except OSError:
        pass
elif os.path.exists("/dev/full"):
    full = "/dev/full"
if full:
    p = run_to(full)
    check(p.returncode == 1 and b"No space left on device" in p.stderr
          and stat.S_ISCHR(os.lstat(full).st_mode),
          "m2pt-run --output <full device> exits 1 with ENOSPC, the device kept")
    if full != "/dev/full":
        os.remove(full)


def big_checkpoint(path, dim, depth):
    """A plain timm checkpoint of zeros (sparse on disk)."""
    shapes = {}
    for b in range(depth):
        p = "blocks.%d." % b
        for n in ("norm1", "norm2"):
            shapes[p + n + ".weight"] = [dim]
            shapes[p + n + ".bias"] = [dim]
        for n, rows, cols in (("attn.qkv", 3 * dim, dim), ("attn.proj", dim, dim),
                              ("mlp.fc1", 4 * dim, dim), ("mlp.fc2", dim, 4 * dim)):
            shapes[p + n + ".weight"] = [rows, cols]
            shapes[p + n + ".bias"] = [rows]
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4
        for n in shape:
            size *= n
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + offset)


def writing_into(pid, directory):
    """Whether process pid has a file of `directory` open (the output's
    temporary: named, or O_TMPFILE's "#inode (deleted)")."""
    fds = "/proc/%d/fd" % pid
    try:
        names = os.listdir(fds)
    except OSError:
        return False
    for n in names:
        try:
            if os.path.dirname(os.readlink(os.path.join(fds, n))) == directory:
                return True
        except OSError:
            pass
    return False


# Killed while writing a 200 MB checkpoint (6 MB on oclgrind's simulated
# device): the old output is intact (or the new one complete) and no
# temporary is left. The kill waits until the tool holds its temporary open;
# landing later would still have to pass.
os.mkdir(t("in"))
os.mkdir(t("out"))
small = os.environ.get("M2PT_TEST_SMALL") == "1"
big_checkpoint(t("in/big.st"), 256 if small else 1024, 2 if small else 4)
merge = os.path.join(tools, "m2pt-merge")
out = t("out/merged.st")
rc, _, err = tool("m2pt-merge", "--m2pt", t("in/big.st"), "--out", out)
check(rc == 0, "m2pt-merge of a large checkpoint " + err.strip())
os.rename(out, t("in/reference.st"))
reference_size = os.path.getsize(t("in/reference.st"))
old = b"the old output"


def killed_merge(sig, env=None):
    """m2pt-merge into `out` (which holds `old`), sent `sig` while writing.
    Returns (exit status, out is old or complete, files in the directory)."""
    with open(out, "wb") as f:
        f.write(old)
    p = subprocess.Popen([merge, "--m2pt", t("in/big.st"), "--out", out],
                         stderr=subprocess.DEVNULL, env=env)
    while p.poll() is None and not writing_into(p.pid, t("out")):
        time.sleep(0.001)
    p.send_signal(sig)
    p.wait()
    size = os.path.getsize(out)
    with open(out, "rb") as f:
        head = f.read(len(old))
    intact = head == old and size == len(old) or size == reference_size and head != old
    return p.returncode, intact, sorted(os.listdir(t("out")))


for name, env in (("O_TMPFILE", None), ("named", dict(os.environ, M2PT_IO_TMPFILE="off"))):
    for sig in (signal.SIGKILL, signal.SIGTERM):
        rc, intact, files = killed_merge(sig, env)
        leftovers = [f for f in files if f != "merged.st"]
        what = "m2pt-merge (%s temporary) killed by %s while writing" % (name, sig.name)
        check(rc in (0, -sig) and intact, what + ": the old output or the new one, whole")
        if sig == signal.SIGKILL and name == "named":
            # Nothing can catch SIGKILL: the next write of that output, by a
            # process started after the temporary was last written (the
            # sleep makes sure of it), removes the temporary.
            time.sleep(0.05)
            rc, _, _ = tool("m2pt-merge", "--m2pt", d("timm_m2pt.safetensors"), "--out", out)
            leftovers = [f for f in os.listdir(t("out")) if f != "merged.st"]
            what += ", then written again"
        check(not leftovers, what + ": no temporary left " + " ".join(leftovers))

# Non-finite inputs: refused (exit 1) naming the first bad element by its
# index, unless --allow-nonfinite, which propagates them as PyTorch does.
shape, raw = npy(d("timm_input.npy"))
x = list(floats(raw))
dim, tokens = shape[2], shape[1]


def at(b, n, c):
    return (b * tokens + n) * dim + c


def run_on(values, shape, *extra):
    write_npy(t("bad.npy"), shape, values)
    return tool("m2pt-run", "--model", d("timm_target.safetensors"), "--heads", "3",
                "--input", t("bad.npy"), "--output", t("bad_out.npy"), *extra)


bad = list(x)
bad[at(1, 0, 0)] = -math.inf
bad[at(0, 3, 17)] = math.nan
bad[at(0, 4, 2)] = math.inf
rc, _, err = run_on(bad, shape)
check(rc == 1 and t("bad.npy") + ": element [0][3][17] is nan" in err
      and "--allow-nonfinite" in err and not os.path.exists(t("bad_out.npy")),
      "m2pt-run refuses NaN input naming the first bad element, writes nothing: " +
      (err.splitlines() or [""])[0])
bad[at(0, 3, 17)] = x[at(0, 3, 17)]
rc, _, err = run_on(bad, shape)
check(rc == 1 and "element [0][4][2] is inf" in err, "m2pt-run refuses +Inf input")
bad[at(0, 4, 2)] = x[at(0, 4, 2)]
rc, _, err = run_on(bad[:tokens * dim] + [-math.inf] + bad[tokens * dim + 1:], shape)
check(rc == 1 and "element [1][0][0] is -inf" in err, "m2pt-run refuses -Inf input")
rc, _, err = run_on(bad[tokens * dim:], shape[1:])
check(rc == 1 and "element [0][0] is -inf" in err, "m2pt-run refuses -Inf in [N][dim] input")
bad = list(x)
bad[at(0, 3, 17)] = math.nan
rc, _, err = run_on(bad, shape, "--allow-nonfinite")
out_shape, out = npy(t("bad_out.npy")) if rc == 0 else (None, b"")
y, y_ref = floats(out), floats(npy(d("timm_expected_plain.npy"))[1])
half = tokens * dim
check(rc == 0 and out_shape == shape and all(math.isnan(v) for v in y[:half])
      and max(abs(a - b) for a, b in zip(y[half:], y_ref[half:])) <= 1e-4 * max(
          1.0, max(abs(v) for v in y_ref)),
      "m2pt-run --allow-nonfinite: NaN spreads over its sequence only, as in PyTorch " +
      err.strip())

# Non-finite λ: --scale (overflow included) and --scales.
for v in ("inf", "-inf", "1e39"):
    rc, _, err = tool("m2pt-run", "--model", d("timm_target.safetensors"), "--aux",
                      d("timm_aux.safetensors"), "--scale", v, "--heads", "3",
                      "--input", d("timm_input.npy"), "--output", t("y.npy"))
    check(rc == 2 and "--scale" in err, "m2pt-run --scale %s exits 2" % v)
scales = {"blocks.%d.%s" % (b, layer): 0.25
          for b in range(2) for layer in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}
for v in ("1e999", "-1e999", "1e39"):
    with open(t("scales.json"), "w") as f:
        f.write(json.dumps(scales).replace('"blocks.1.mlp.fc1": 0.25', '"blocks.1.mlp.fc1": ' + v))
    rc, _, err = tool("m2pt-merge", "--target", d("timm_target.safetensors"), "--aux",
                      d("timm_aux.safetensors"), "--scales", t("scales.json"), "--out", t("x.st"))
    check(rc == 1 and "blocks.1.mlp.fc1" in err and "%g is not a finite float" % float(v) in err
          and not os.path.exists(t("x.st")), "--scales with λ %s exits 1 naming it: %s"
          % (v, err.strip()))

# A subnormal λ is a number, though strtof flags it ERANGE.
rc, _, err = tool("m2pt-run", "--model", d("timm_target.safetensors"), "--aux",
                  d("timm_aux.safetensors"), "--scale", "1e-40", "--heads", "3",
                  "--input", d("timm_input.npy"), "--output", t("sub.npy"))
check(rc == 0 and close(t("sub.npy"), d("timm_expected_plain.npy")),
      "m2pt-run --scale 1e-40 (subnormal) is accepted " + err.strip())
# One that rounds to zero would silently drop the pathway: refused.
rc, _, err = tool("m2pt-run", "--model", d("timm_target.safetensors"), "--aux",
                  d("timm_aux.safetensors"), "--scale", "1e-50", "--heads", "3",
                  "--input", d("timm_input.npy"), "--output", t("zero.npy"))
check(rc == 2 and "rounds to zero" in err and not os.path.exists(t("zero.npy")),
      "m2pt-run --scale 1e-50 (rounds to zero) exits 2 " + err.strip())

# An empty value (a path above all) is bad usage, found before any work.
# m2pt-tune's cache directories are private here and its run short even if an
# empty --store fell back to the default directory.
cache = t("cache")
env = dict(os.environ, M2PT_CACHE_DIR=cache, XDG_CACHE_HOME=t("xdg"))
quick_tune = ["--budget", "0.001", "--shapes", "16x16x16,16x32x8", "--reps", "1"]
for name, args in (
        ("m2pt-run", ["--model", d("timm_target.safetensors"), "--heads", "3",
                      "--input", d("timm_input.npy"), "--output", ""]),
        ("m2pt-run", ["--model", "", "--heads", "3", "--input", d("timm_input.npy"),
                      "--output", t("y.npy")]),
        ("m2pt-run", ["--model", d("timm_target.safetensors"), "--heads", "3",
                      "--input", "", "--output", t("y.npy")]),
        ("m2pt-run", ["--model", d("timm_target.safetensors"), "--heads", "3", "--device", "",
                      "--input", d("timm_input.npy"), "--output", t("y.npy")]),
        ("m2pt-merge", ["--m2pt", d("timm_m2pt.safetensors"), "--out", ""]),
        ("m2pt-reparam", ["--target", d("timm_target.safetensors"), "--aux",
                          d("timm_aux.safetensors"), "--out", ""]),
        ("m2pt-tune", ["--store", ""] + quick_tune),
        ("m2pt-tune", quick_tune + ["--out", ""])):
    rc, _, err = tool(name, *args, env=env)
    flag = args[args.index("") - 1]
    check(rc == 2 and flag in err and "empty" in err,
          "%s %s \"\" exits 2: %s" % (name, flag, err.strip()))

# m2pt-tune when nothing beats CLBlast's defaults (here: no time left for any
# candidate once they are measured): it says so, with the defaults' figures,
# and writes no store; no NaN in its output or its saved search.
# (PoCL's own cache stays in $XDG_CACHE_HOME: CLBlast's kernels compile once.)
shutil.rmtree(cache, ignore_errors=True)
rc, out, err = tool("m2pt-tune", *quick_tune, env=dict(os.environ, M2PT_CACHE_DIR=cache))
tuning = os.path.join(cache, "tuning")
files = os.listdir(tuning) if os.path.isdir(tuning) else []
saved = "".join(open(os.path.join(tuning, f)).read() for f in files)
ok = (rc == 0 and "no candidate beat CLBlast's defaults" in out and "16x32x8" in out
      and "nan" not in (out + err + saved).lower() and len(files) == 1
      and files[0].endswith(".search.json"))
check(ok, "m2pt-tune with no candidate tried says so, without NaN, and stores nothing" +
      ("" if ok else ":\n" + out + err))
# The saved search resumed with one candidate slower than the defaults.
if files and files[0].endswith(".search.json"):
    with open(os.path.join(tuning, files[0])) as f:
        state = json.load(f)
    slow = [10 * ms for ms in state["baseline_ms"]]
    state["tried"] = [{"kind": "direct", "values": [2, 8, 8, 8, 8, 1, 1, 1, 1, 16],
                       "outcome": "ok", "total_ms": sum(slow), "ms": slow}]
    with open(os.path.join(tuning, files[0]), "w") as f:
        json.dump(state, f)
    rc, out, err = tool("m2pt-tune", *quick_tune, env=dict(os.environ, M2PT_CACHE_DIR=cache))
    ok = (rc == 0 and "no candidate beat CLBlast's defaults: the best of the 1 tried took" in out
          and "after ms" not in out and "nan" not in (out + err).lower()
          and os.listdir(tuning) == files)
    check(ok, "m2pt-tune whose best is slower than the defaults says so and stores nothing" +
          ("" if ok else ":\n" + out + err))

# ---- whole models (tests/data/whole): ids, pixels, masks, output kinds, pathways on the head.
whole = os.path.join(os.path.dirname(os.path.abspath(data)), "whole")


def w(name):
    return os.path.join(whole, name)


def write_typed(path, shape, values, descr):
    """A C-order .npy file of '<i4', '<i8' or '<f4', format 1.0, as np.save writes it."""
    dims = "".join("%d," % n for n in shape) if len(shape) == 1 else ", ".join(map(str, shape))
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    code = {"<i4": "i", "<i8": "q", "<f4": "f"}[descr]
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%d%s" % (len(values), code), *values))


def without(src, dst, drop):
    """A copy of safetensors file src without the tensors whose names start with `drop`."""
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    out, parts, at = {}, [], 0
    for name, info in sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                             key=lambda kv: kv[1]["data_offsets"][0]):
        if name.startswith(drop):
            continue
        b, e = info["data_offsets"]
        out[name] = dict(info, data_offsets=[at, at + e - b])
        parts.append(body[b:e])
        at += e - b
    h = json.dumps(out).encode()
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(parts))


ids_shape, ids_raw = npy(w("bert_ids.npy"))  # the goldens' ids, types and mask are '<f4'
ids = [int(v) for v in floats(ids_raw)]
types = [int(v) for v in floats(npy(w("bert_types.npy"))[1])]
mask = [int(v) for v in floats(npy(w("bert_mask.npy"))[1])]
write_typed(t("ids8.npy"), ids_shape, ids, "<i8")
write_typed(t("ids4.npy"), ids_shape, ids, "<i4")
write_typed(t("types4.npy"), ids_shape, types, "<i4")
write_typed(t("mask8.npy"), ids_shape, mask, "<i8")
write_typed(t("mask4.npy"), ids_shape, mask, "<i4")
bert = ["--model", w("bert.safetensors"), "--heads", "2"]
for kind, ids_file, mask_file, extra in (("hidden", "ids8.npy", "mask8.npy", []),
                                         ("pooled", "ids4.npy", "mask4.npy", []),
                                         ("mean", "ids8.npy", w("bert_mask.npy"), ["--normalize"]),
                                         ("logits", "ids4.npy", "mask8.npy", [])):
    out = t("bert_%s.npy" % kind)
    rc, _, err = tool("m2pt-run", *bert, "--input-ids", t(ids_file), "--token-type-ids",
                      t("types4.npy"), "--attention-mask", t(mask_file), "--output-kind", kind,
                      *extra, "--output", out)
    check(rc == 0 and close(out, w("bert_%s.npy" % kind)),
          "m2pt-run --input-ids --output-kind %s matches PyTorch %s" % (kind, err.strip()))
for ckpt, kind, extra in (("timm_token", "hidden", []), ("timm_token", "pooled", []),
                          ("timm_token", "logits", ["--pool", "token"]),
                          ("timm_avg", "hidden", []), ("timm_avg", "pooled", ["--pool", "avg"]),
                          ("timm_avg", "logits", []), ("hf_vit", "logits", [])):
    out = t("%s_%s.npy" % (ckpt, kind))
    rc, _, err = tool("m2pt-run", "--model", w(ckpt + ".safetensors"), "--heads", "2", "--pixels",
                      w("pixels.npy"), "--output-kind", kind, *extra, "--output", out)
    check(rc == 0 and close(out, w("%s_%s.npy" % (ckpt, kind))),
          "m2pt-run --pixels on %s --output-kind %s %s matches PyTorch %s"
          % (ckpt, kind, " ".join(extra), err.strip()))
# A mask of all ones over the 1 + 4 tokens of an image changes nothing.
write_typed(t("ones.npy"), (2, 5), [1.0] * 10, "<f4")
rc, _, err = tool("m2pt-run", "--model", w("timm_token.safetensors"), "--heads", "2", "--pixels",
                  w("pixels.npy"), "--attention-mask", t("ones.npy"), "--output", t("ones_out.npy"))
check(rc == 0 and close(t("ones_out.npy"), w("timm_token_hidden.npy")),
      "m2pt-run --pixels --attention-mask of ones " + err.strip())

# --attention-mask with hidden states: the unpadded tokens of a padded row are
# those of the row run alone, and --output-kind mean is their mean.
xs, xr = npy(d("bert_input.npy"))
x = floats(xr)
bb, nn, dd = xs if len(xs) == 3 else (1,) + xs
keep = nn - 2
pad = [1] * (bb * nn)
for j in range(keep, nn):
    pad[(bb - 1) * nn + j] = 0
write_typed(t("pad.npy"), (bb, nn), pad, "<i4")
row = x[(bb - 1) * nn * dd:((bb - 1) * nn + keep) * dd]
write_npy(t("row.npy"), (keep, dd), row)
model_bert = ["--model", d("bert_target.safetensors"), "--heads", "2"]
rc1, _, e1 = tool("m2pt-run", *model_bert, "--input", d("bert_input.npy"), "--attention-mask",
                  t("pad.npy"), "--output", t("padded.npy"))
rc2, _, e2 = tool("m2pt-run", *model_bert, "--input", t("row.npy"), "--output", t("alone.npy"))
rc3, _, e3 = tool("m2pt-run", *model_bert, "--input", d("bert_input.npy"), "--attention-mask",
                  t("pad.npy"), "--output-kind", "mean", "--output", t("padmean.npy"))
ok = rc1 == rc2 == rc3 == 0
if ok:
    got = floats(npy(t("padded.npy"))[1])[(bb - 1) * nn * dd:((bb - 1) * nn + keep) * dd]
    alone = floats(npy(t("alone.npy"))[1])
    mean = floats(npy(t("padmean.npy"))[1])[(bb - 1) * dd:]
    ref = [sum(alone[j * dd + c] for j in range(keep)) / keep for c in range(dd)]
    ok = (max(abs(a - b) for a, b in zip(got, alone)) < 1e-4
          and max(abs(a - b) for a, b in zip(mean, ref)) < 1e-4)
check(ok, "m2pt-run --input --attention-mask: padding is ignored, mean over tokens " +
      (e1 + e2 + e3).strip())

# The classifier's pathway (the seed's CrossModalReparameterization on two
# checkpoints): run, reparam then run, merge then run; with --aux-bias too.
for ab, ref in (([], "bert_logits_head_pathway.npy"),
                (["--aux-bias"], "bert_logits_head_aux_bias.npy")):
    name = "aux_bias" if ab else "paper"
    path = ["--layers", "classifier", "--scale", "0.3", *ab]
    inputs = ["--heads", "2", "--input-ids", t("ids8.npy"), "--token-type-ids", t("types4.npy"),
              "--attention-mask", t("mask8.npy"), "--output-kind", "logits"]
    rc, _, err = tool("m2pt-run", "--model", w("bert.safetensors"), "--aux",
                      w("bert_aux.safetensors"), *path, *inputs, "--output", t("hp.npy"))
    check(rc == 0 and close(t("hp.npy"), w(ref)),
          "m2pt-run --aux --layers classifier %s matches PyTorch %s" % (" ".join(ab), err.strip()))
    rp = t("reparam_%s.safetensors" % name)
    rc1, _, e1 = tool("m2pt-reparam", "--target", w("bert.safetensors"), "--aux",
                      w("bert_aux.safetensors"), *path, "--out", rp)
    rc2, _, e2 = tool("m2pt-run", "--model", rp, *inputs, "--output", t("hr.npy"))
    has = set(keys(rp)) >= {"classifier.aux_weight", "classifier.cross_modal_scale"}
    check(rc1 == 0 and rc2 == 0 and has and ("classifier.aux_bias" in keys(rp)) == bool(ab)
          and close(t("hr.npy"), w(ref)),
          "m2pt-reparam --layers classifier %s, then m2pt-run %s"
          % (" ".join(ab), (e1 + e2).strip()))
    mg = t("merged_%s.safetensors" % name)
    rc1, _, e1 = tool("m2pt-merge", "--m2pt", rp, "--out", mg)
    rc2, _, e2 = tool("m2pt-run", "--model", mg, *inputs, "--output", t("hm.npy"))
    rc3, _, e3 = tool("m2pt-merge", "--target", w("bert.safetensors"), "--aux",
                      w("bert_aux.safetensors"), *path, "--out", t("mg2.safetensors"))
    rc4, _, e4 = tool("m2pt-run", "--model", t("mg2.safetensors"), *inputs, "--output",
                      t("hm2.npy"))
    check(rc1 == rc2 == rc3 == rc4 == 0 and set(keys(mg)) == set(keys(w("bert.safetensors")))
          and close(t("hm.npy"), w(ref)) and close(t("hm2.npy"), w(ref)),
          "m2pt-merge of the classifier's pathway %s folds what forward computes %s"
          % (" ".join(ab), (e1 + e2 + e3 + e4).strip()))
with open(t("scales.json"), "w") as f:
    json.dump({"bert.encoder.layer.0.attention.self": 0.3}, f)
rc, _, err = tool("m2pt-merge", "--target", w("bert.safetensors"), "--aux",
                  w("bert_aux.safetensors"), "--layers", "classifier", "--scales",
                  t("scales.json"), "--out", t("sc.safetensors"))
check(rc == 2 and "--scale" in err and not os.path.exists(t("sc.safetensors")),
      "m2pt-merge --scales with --layers classifier exits 2 " + err.strip())
rc, _, err = tool("m2pt-reparam", "--target", w("bert.safetensors"), "--aux",
                  w("bert_aux.safetensors"), "--aux-bias", "--out", t("ab_blocks.safetensors"))
check(rc == 1 and not os.path.exists(t("ab_blocks.safetensors")),
      "m2pt-reparam --aux-bias on block layers exits 1 " + err.strip())

# Hostile whole-model inputs: exit 1 (2 for usage), a clear message, no output.
without(w("bert.safetensors"), t("headless.safetensors"), "classifier.")
without(w("timm_token.safetensors"), t("nopos.safetensors"), "pos_embed")
write_typed(t("ids_big.npy"), ids_shape, [20 if i == 3 else v for i, v in enumerate(ids)], "<i8")
write_typed(t("ids_neg.npy"), ids_shape, [-1 if i == 7 else v for i, v in enumerate(ids)], "<i4")
write_typed(t("mask_short.npy"), (2, 5), [1] * 10, "<i4")
write_typed(t("mask_two.npy"), ids_shape, [2 if i == 4 else v for i, v in enumerate(mask)], "<i8")
write_typed(t("mask_half.npy"), ids_shape, [0.5 if i == 4 else v for i, v in enumerate(mask)],
            "<f4")
write_npy(t("pix12.npy"), (1, 3, 12, 12), [0.1] * (3 * 144))
write_npy(t("pix_nan.npy"), (1, 3, 8, 8), [0.1] * 5 + [float("nan")] + [0.1] * 186)
write_npy(t("ids_f32.npy"), ids_shape, [float(v) for v in ids])
timm = ["--model", w("timm_token.safetensors"), "--heads", "2"]
for what, args, code, says in (
        ("an id out of range", bert + ["--input-ids", t("ids_big.npy")], 1, "20"),
        ("a negative id", bert + ["--input-ids", t("ids_neg.npy")], 1, "-1"),
        ("f32 ids", bert + ["--input-ids", t("ids_f32.npy")], 1, "--input-ids"),
        ("a mask of the wrong shape", bert + ["--input-ids", t("ids8.npy"), "--attention-mask",
                                              t("mask_short.npy")], 1, "[2][6]"),
        ("a mask value 2", bert + ["--input-ids", t("ids8.npy"), "--attention-mask",
                                   t("mask_two.npy")], 1, "[0][4] is 2"),
        ("a mask value 0.5", bert + ["--input-ids", t("ids8.npy"), "--attention-mask",
                                     t("mask_half.npy")], 1, "[0][4] is 0.5"),
        ("pixels of the wrong size", timm + ["--pixels", t("pix12.npy"), "--output-kind",
                                             "logits"], 1, "SHAPE"),
        ("pixels of the wrong size, hidden", timm + ["--pixels", t("pix12.npy")], 1, "SHAPE"),
        ("hidden from pixels without positions", ["--model", t("nopos.safetensors"), "--heads",
                                                  "2", "--pixels", w("pixels.npy")], 1,
         "position embeddings"),
        ("NaN pixels", timm + ["--pixels", t("pix_nan.npy")], 1, "[0][0][0][5] is nan"),
        ("logits without a head", ["--model", t("headless.safetensors"), "--heads", "2",
                                   "--input-ids", t("ids8.npy"), "--output-kind", "logits"], 1,
         "no head"),
        ("the pooler without one", timm + ["--pixels", w("pixels.npy"), "--output-kind", "pooled",
                                           "--pool", "pooler"], 1, "pooler"),
        ("ids into a ViT", timm + ["--input-ids", t("ids8.npy")], 1, "INVALID_STATE"),
        ("pixels into BERT", bert + ["--pixels", w("pixels.npy"), "--output-kind", "pooled"], 1,
         "INVALID_STATE"),
        ("embeddings but no blocks", ["--model", w("no_blocks.safetensors"), "--heads", "2",
                                      "--input-ids", t("ids8.npy")], 1, "no_blocks"),
        ("two inputs", bert + ["--input-ids", t("ids8.npy"), "--pixels", w("pixels.npy")], 2,
         "exactly one"),
        ("pooled from hidden states", bert + ["--input", d("bert_input.npy"), "--output-kind",
                                              "pooled"], 2, "--input-ids or --pixels"),
        ("--normalize of hidden states", bert + ["--input-ids", t("ids8.npy"), "--normalize"], 2,
         "--normalize"),
        ("an unknown kind", bert + ["--input-ids", t("ids8.npy"), "--output-kind", "cls"], 2,
         "cls"),
        ("an unknown pool", timm + ["--pixels", w("pixels.npy"), "--output-kind", "pooled",
                                    "--pool", "max"], 2, "max"),
        ("--aux-bias without --aux", bert + ["--input-ids", t("ids8.npy"), "--aux-bias"], 2,
         "--aux")):
    out = t("hostile.npy")
    rc, _, err = tool("m2pt-run", *args, "--output", out)
    check(rc == code and says in err and err.startswith("m2pt-run: ")
          and not os.path.exists(out),
          "m2pt-run with %s exits %d, no output: %s" % (what, code, err.strip()))

shutil.rmtree(tmp)
print("%d failed" % len(failures))
sys.exit(1 if failures else 0)
