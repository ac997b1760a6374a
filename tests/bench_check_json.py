#!/usr/bin/env python3
"""Checks m2pt-bench's reports (python3 standard library only).

Usage: bench_check_json.py M2PT_BENCH

1. `m2pt-bench --smoke --json F --csv C --svg S` (tiny shapes, every suite):
   the JSON has the documented fields, exactly one record per (device, suite,
   case), every suite on every device, and on CPU devices OpenBLAS records
   ("device": "openblas") with the same suite and case names as the device's
   GEMM records; the CSV holds the same records; the SVG is well-formed.
2. `--compare OLD --against NEW` flags exactly the one case whose median an
   edited copy of the JSON (OLD) makes much faster, with a SLOWER marker and a
   count line, and exits with 0; a run with `--compare` does the same.
3. `--kernels` (block and train suites): under each row with an m2pt kernel time, a
   line per kernel; in the JSON, per such record, "kernels" (at most 8, the
   longest first, each with a name, ms and launches > 0) whose times with
   "kernels_rest" add up to about kernel_ms (one run: no median to differ),
   and a backward of more than 8 kernels has "kernels_rest";
   records without a kernel time have none, and a run without --kernels
   has none at all.
4. Bad command lines exit with status 2.
"""
import copy
import csv
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SUITES = ("peak", "gemm", "linear", "attention", "ffn", "block", "model", "train", "startup")
# Records per OpenCL device in --smoke mode: 4 peak kernels, 1 GEMM shape,
# linear unmerged and merged, ffn unmerged, merged and plain, 2 tiny blocks of
# 11 cases (3 blocks and 8 ops), a tiny model's 5 ends and its block, the
# train suite's linear backward unmerged and plain and a tiny block's forward,
# training forward and backward unmerged and plain and a tiny encoder's
# forward and training step with and without recomputation, 2 attention
# paths forward and backward, 2 warm startups.
SMOKE_COUNTS = {"peak": 4, "gemm": 1, "linear": 2, "ffn": 3, "block": 22, "model": 6,
                "train": 11, "attention": 4, "startup": 2}
DEVICE_FIELDS = ("name", "vendor", "driver", "peak_gflops", "peak_gbps", "type", "cpu")
RECORD_FIELDS = ("device", "suite", "case", "median_ms", "min_ms", "max_ms", "gflops")
CSV_HEADER = ["device", "suite", "case", "shape", "median_ms", "min_ms", "max_ms",
              "gflops", "gbps", "pct_peak", "kernel_ms", "timer"]

# --compare judges no case whose old and new medians are both below this.
FLOOR_MS = 0.05

failures = []


def check(cond, message):
    if not cond:
        failures.append(message)
    return cond


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def run(args, expect=0):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    check(p.returncode == expect,
          "%s: exit status %d, expected %d\nstdout:\n%s\nstderr:\n%s"
          % (" ".join(args[1:]), p.returncode, expect, p.stdout[-3000:], p.stderr[-3000:]))
    return p


def check_devices(doc):
    devices = doc.get("devices")
    if not check(isinstance(devices, list) and devices, "no 'devices' array"):
        return {}
    by_name = {}
    for d in devices:
        for f in DEVICE_FIELDS:
            check(f in d, "device %r lacks %r" % (d.get("name"), f))
        name = d.get("name")
        check(isinstance(name, str) and name, "device without a name: %r" % d)
        check(name not in by_name, "device %r listed twice" % name)
        by_name[name] = d
        if d.get("type") != "host":  # OpenCL devices: measured peaks
            for f in ("peak_gflops", "peak_gbps"):
                check(is_number(d.get(f)) and d[f] > 0, "device %r: %s %r" % (name, f, d.get(f)))
    return by_name


def check_record(r, devices):
    for f in RECORD_FIELDS:
        check(f in r, "record lacks %r: %r" % (f, r))
    check(r.get("device") in devices, "record of an unlisted device: %r" % r)
    check(r.get("suite") in SUITES, "record of an unknown suite: %r" % r)
    check(isinstance(r.get("case"), str) and r.get("case"), "record without a case: %r" % r)
    times = [r.get(k) for k in ("min_ms", "median_ms", "max_ms")]
    if check(all(is_number(t) and t >= 0 for t in times), "bad times: %r" % r):
        check(times[0] <= times[1] <= times[2], "not min <= median <= max: %r" % r)
    check(r.get("gflops") is None or (is_number(r["gflops"]) and r["gflops"] >= 0),
          "gflops neither a number nor null: %r" % r)
    for f in ("gbps", "pct_peak"):
        check(f not in r or (is_number(r[f]) and r[f] >= 0), "bad %s: %r" % (f, r))
    if r.get("suite") == "startup":
        check("pct_peak" not in r, "startup record with pct_peak: %r" % r)


def check_results(doc, devices):
    results = doc.get("results")
    if not check(isinstance(results, list) and results, "no 'results' array"):
        return []
    keys = set()
    for r in results:
        check_record(r, devices)
        key = (r.get("device"), r.get("suite"), r.get("case"))
        check(key not in keys, "more than one record for %r" % (key,))
        keys.add(key)
    for name, d in devices.items():
        if d.get("type") == "host":
            continue
        for suite, n in SMOKE_COUNTS.items():
            got = sum(1 for r in results if r.get("device") == name and r.get("suite") == suite)
            check(got == n, "device %r: %d %s records, expected %d" % (name, got, suite, n))
        for r in results:
            if r.get("device") == name and r.get("suite") in ("peak", "gemm", "block", "train"):
                check("pct_peak" in r or r.get("gflops") is None and "gbps" not in r,
                      "no pct_peak: %r" % r)
    # "cpu": the device reports CL_DEVICE_TYPE_CPU (Oclgrind's reports CPU and GPU).
    cpus = [n for n, d in devices.items() if d.get("cpu") is True]
    blas = sorted(r["case"] for r in results if r.get("device") == "openblas")
    check(all(r.get("suite") == "gemm" for r in results if r.get("device") == "openblas"),
          "openblas records outside the gemm suite")
    if cpus and doc.get("openblas") is True:
        gemm = sorted(r["case"] for r in results
                      if r.get("device") == cpus[0] and r.get("suite") == "gemm")
        check(blas == gemm and blas, "openblas cases %r != the CPU device's gemm cases %r"
              % (blas, gemm))
        check("openblas" in devices, "no 'openblas' entry in devices")
    else:
        check(not blas, "openblas records without a CPU device or without OpenBLAS")
    return results


def check_csv(path, results):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not check(rows and rows[0] == CSV_HEADER, "CSV header %r" % (rows[:1],)):
        return
    check(len(rows) - 1 == len(results), "CSV has %d records, JSON %d"
          % (len(rows) - 1, len(results)))
    check([tuple(r[:3]) for r in rows[1:]]
          == [(r["device"], r["suite"], r["case"]) for r in results],
          "CSV records differ from the JSON's")


def check_svg(path):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        check(False, "SVG is not well-formed XML: %s" % e)
        return
    ns = "{http://www.w3.org/2000/svg}"
    check(root.tag == ns + "svg", "SVG root is %r" % root.tag)
    bars = [r for r in root.iter(ns + "rect") if r.find(ns + "title") is not None]
    check(bars, "SVG has no bars")
    texts = " ".join(t.text or "" for t in root.iter(ns + "text"))
    check("GFLOP/s" in texts, "SVG has no GFLOP/s axis label")


def slower_lines(out):
    return [l for l in out.splitlines() if l.rstrip().endswith("SLOWER")]


def write_json(tmp, name, doc):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def with_medians(doc, median):
    """A copy of doc with median(record) as every record's median."""
    out = copy.deepcopy(doc)
    for r in out["results"]:
        r["median_ms"] = r["min_ms"] = r["max_ms"] = median(r)
    return out


def check_compare(bench, tmp, json_path, doc):
    # Nothing here depends on the device's name or speed or on timing noise:
    # the compared medians are written by the test, except in the live run,
    # whose own --json says what it measured.
    records = [r for r in doc["results"] if r["device"] != "openblas"]
    target = records[0]
    is_target = lambda r: all(r[k] == target[k] for k in ("device", "suite", "case"))

    # OLD with its own medians against NEW where only the target is much slower.
    new_path = write_json(tmp, "new.json", with_medians(
        doc, lambda r: r["median_ms"] * 1000.0 + 1.0 if is_target(r) else r["median_ms"]))
    p = run([bench, "--compare", json_path, "--against", new_path])
    lines = slower_lines(p.stdout)
    check(len(lines) == 1 and target["case"] in lines[0] and target["device"] in lines[0],
          "--compare --against flagged %r, expected the one case %r of device %r"
          % (lines, target["case"], target["device"]))
    check(" 1 SLOWER" in p.stdout, "no count line '1 SLOWER' in:\n" + p.stdout[-2000:])
    p = run([bench, "--compare", json_path, "--against", json_path])
    check(not slower_lines(p.stdout) and " 0 SLOWER" in p.stdout,
          "a file compared with itself is flagged:\n" + p.stdout[-2000:])

    # Below the floor in both files: listed, never flagged, however large the
    # ratio (0.000 against 0.000 ms once read as 1.8x slower); above it in the
    # new file only: flagged, even from an old median of zero.
    old_path = write_json(tmp, "tiny-old.json", with_medians(doc, lambda r: 0.0))
    tiny_path = write_json(tmp, "tiny-new.json",
                           with_medians(doc, lambda r: FLOOR_MS * 0.9))
    p = run([bench, "--compare", old_path, "--against", tiny_path])
    check(not slower_lines(p.stdout) and " 0 SLOWER" in p.stdout
          and "%d below %.2f ms" % (len(doc["results"]), FLOOR_MS) in p.stdout,
          "cases below %.2f ms in both files were judged:\n%s" % (FLOOR_MS, p.stdout[-2000:]))
    up_path = write_json(tmp, "up-new.json", with_medians(
        doc, lambda r: FLOOR_MS * 2.0 if is_target(r) else FLOOR_MS * 0.9))
    p = run([bench, "--compare", old_path, "--against", up_path])
    lines = slower_lines(p.stdout)
    check(len(lines) == 1 and target["case"] in lines[0],
          "a case from 0 to %.2f ms not flagged alone: %r" % (FLOOR_MS * 2.0, lines))

    # Two devices whose names share a long prefix (two PoCL devices, two GPUs
    # of one vendor): the flagged line names the right one in full.
    prefix = "pthread-skylake-avx512-AMD EPYC 7B13 64-Core Processor"
    twin = {"devices": [], "results": []}
    for k, label in enumerate((prefix + " (0:0)", prefix + " (0:1)")):
        twin["devices"].append({"name": label})
        for r in records[:3]:
            twin["results"].append(dict(r, device=label, median_ms=1.0 + k))
    twin_old = write_json(tmp, "twin-old.json", twin)
    twin["results"][3]["median_ms"] *= 3.0  # the first case of the second device
    twin_new = write_json(tmp, "twin-new.json", twin)
    p = run([bench, "--compare", twin_old, "--against", twin_new])
    lines = slower_lines(p.stdout)
    check(len(lines) == 1 and (prefix + " (0:1)") in lines[0],
          "two devices with one name prefix: flagged %r, expected only %r"
          % (lines, prefix + " (0:1)"))

    # In a run (the tiny GEMM only), against OLD with the target at 0 ms: the
    # case is flagged exactly when this run measured it above the floor.
    gemm = next(r for r in records if r["suite"] == "gemm")
    old_path = write_json(tmp, "old.json", with_medians(
        doc, lambda r: 0.0 if r is gemm or (r["device"], r["suite"], r["case"]) ==
        (gemm["device"], gemm["suite"], gemm["case"]) else r["median_ms"]))
    live_path = os.path.join(tmp, "live.json")
    p = run([bench, "--smoke", "--suite", "gemm", "--json", live_path, "--compare", old_path])
    if p.returncode == 0:
        with open(live_path) as f:
            live = json.load(f)
        now = next((r["median_ms"] for r in live["results"]
                    if (r["device"], r["suite"], r["case"]) ==
                    (gemm["device"], gemm["suite"], gemm["case"])), None)
        flagged = any(gemm["case"] in l and gemm["device"] in l for l in slower_lines(p.stdout))
        check(now is not None and flagged == (now >= FLOOR_MS),
              "a run with --compare: %r measured %r ms, flagged: %r\n%s"
              % (gemm["case"], now, flagged, p.stdout[-2000:]))


KERNELS_KEPT = 8


def check_kernels(bench, tmp):
    path = os.path.join(tmp, "kernels.json")
    p = run([bench, "--smoke", "--suite", "block", "--suite", "train", "--kernels", "--json",
             path])
    if p.returncode != 0:
        return
    with open(path) as f:
        doc = json.load(f)
    split = rest = 0
    for r in doc.get("results", []):
        kernels = r.get("kernels")
        kernel_ms = r.get("kernel_ms")
        if not is_number(kernel_ms) or kernel_ms <= 0:
            check(kernels is None, "%s: kernels without a kernel time" % r.get("case"))
            continue
        if not check(isinstance(kernels, list) and 0 < len(kernels) <= KERNELS_KEPT,
                     "%s: kernel_ms %r but kernels %r" % (r.get("case"), kernel_ms, kernels)):
            continue
        split += 1
        for k in kernels:
            check(isinstance(k.get("name"), str) and k["name"].startswith("m2pt_")
                  and is_number(k.get("ms")) and k["ms"] >= 0
                  and is_number(k.get("launches")) and k["launches"] > 0,
                  "%s: a bad kernel entry %r" % (r["case"], k))
            check(any(k.get("name", "?") in line and line.startswith(" ")
                      for line in p.stdout.splitlines()),
                  "%s: no table line for kernel %r" % (r["case"], k.get("name")))
        times = [k.get("ms", 0) for k in kernels]
        check(times == sorted(times, reverse=True),
              "%s: kernels not the longest first: %r" % (r["case"], times))
        others = r.get("kernels_rest", {"kernels": 0, "ms": 0})
        rest += others.get("kernels", 0) > 0
        check(len(kernels) == KERNELS_KEPT or "kernels_rest" not in r,
              "%s: kernels_rest with only %d kernels kept" % (r["case"], len(kernels)))
        total = sum(times) + others.get("ms", 0)
        check(abs(total - kernel_ms) <= 1e-3 * kernel_ms + 2e-6,
              "%s: kernels add up to %r ms, kernel_ms is %r" % (r["case"], total, kernel_ms))
    check(split > 0 and rest > 0, "--kernels: %d records with a kernel split, %d with a rest\n%s"
          % (split, rest, p.stdout[-2000:]))


def check_bad_arguments(bench, tmp):
    missing = os.path.join(tmp, "missing.json")
    not_json = os.path.join(tmp, "not.json")
    with open(not_json, "w") as f:
        f.write("{not json")
    for args in (["--bogus"], ["--suite", "nope"], ["--suite"], ["--reps", "0"],
                 ["--json"], ["--compare", missing], ["--compare", not_json],
                 ["--against", not_json], ["--smoke", "--device", "no-such-device-m2pt"]):
        p = run([bench] + args, expect=2)
        check(p.stderr.strip(), "%r: no message on stderr" % args)
    p = run([bench, "--help"])
    for word in ("--json", "--csv", "--svg", "--compare", "--against", "--quick", "--smoke",
                 "--kernels", "--device", "pct_peak", "SLOWER") + SUITES:
        check(word in p.stdout, "--help does not mention %s" % word)


def main():
    bench = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="m2pt-bench-test-") as tmp:
        json_path = os.path.join(tmp, "run.json")
        csv_path = os.path.join(tmp, "run.csv")
        svg_path = os.path.join(tmp, "run.svg")
        p = run([bench, "--smoke", "--json", json_path, "--csv", csv_path, "--svg", svg_path])
        if p.returncode == 0:
            with open(json_path) as f:
                doc = json.load(f)
            devices = check_devices(doc)
            results = check_results(doc, devices)
            check(not any("kernels" in r for r in results),
                  "a run without --kernels has records with kernels")
            check_csv(csv_path, results)
            check_svg(svg_path)
            if results and not failures:
                check_compare(bench, tmp, json_path, doc)
        check_kernels(bench, tmp)
        check_bad_arguments(bench, tmp)
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print("bench reports: all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
