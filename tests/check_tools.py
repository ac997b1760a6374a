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

shutil.rmtree(tmp)
print("%d failed" % len(failures))
sys.exit(1 if failures else 0)
