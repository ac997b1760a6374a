#!/usr/bin/env python3
"""The checkpoint tools end to end: m2pt-run, m2pt-merge and m2pt-reparam on
the goldens of tests/data/model (python3 standard library only).

usage: check_tools.py TOOLS_DIR DATA_DIR
"""
import json
import os
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


def tool(name, *args):
    p = subprocess.run([os.path.join(tools, name)] + list(args), capture_output=True, text=True)
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
for name in ("m2pt-run", "m2pt-merge", "m2pt-reparam"):
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
            pass
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

for f in os.listdir(tmp):
    os.remove(os.path.join(tmp, f))
os.rmdir(tmp)
print("%d failed" % len(failures))
sys.exit(1 if failures else 0)
