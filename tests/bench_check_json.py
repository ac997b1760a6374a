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
3. Bad command lines exit with status 2.
"""
import copy
import csv
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SUITES = ("peak", "gemm", "linear", "attention", "ffn", "block", "startup")
# Records per OpenCL device in --smoke mode: 4 peak kernels, 1 GEMM shape,
# linear unmerged and merged, ffn unmerged, merged and plain, 2 tiny blocks of
# 11 cases (3 blocks and 8 ops), 2 attention paths, 2 warm startups.
SMOKE_COUNTS = {"peak": 4, "gemm": 1, "linear": 2, "ffn": 3, "block": 22,
                "attention": 2, "startup": 2}
DEVICE_FIELDS = ("name", "vendor", "driver", "peak_gflops", "peak_gbps", "type", "cpu")
RECORD_FIELDS = ("device", "suite", "case", "median_ms", "min_ms", "max_ms", "gflops")
CSV_HEADER = ["device", "suite", "case", "shape", "median_ms", "min_ms", "max_ms",
              "gflops", "gbps", "pct_peak", "kernel_ms", "timer"]

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
            if r.get("device") == name and r.get("suite") in ("peak", "gemm", "block"):
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


def check_compare(bench, tmp, json_path, doc):
    # The first device GEMM record made 1000 times faster in OLD: SLOWER now.
    old = copy.deepcopy(doc)
    target = next(r for r in old["results"] if r["suite"] == "gemm" and r["device"] != "openblas")
    target["median_ms"] = target["median_ms"] / 1000.0
    old_path = os.path.join(tmp, "old.json")
    with open(old_path, "w") as f:
        json.dump(old, f)
    p = run([bench, "--compare", old_path, "--against", json_path])
    lines = slower_lines(p.stdout)
    check(len(lines) == 1 and target["case"] in lines[0] and target["device"] in lines[0],
          "--compare --against flagged %r, expected the one case %r" % (lines, target["case"]))
    check(" 1 SLOWER" in p.stdout, "no count line '1 SLOWER' in:\n" + p.stdout[-2000:])
    p = run([bench, "--compare", json_path, "--against", json_path])
    check(not slower_lines(p.stdout) and " 0 SLOWER" in p.stdout,
          "a file compared with itself is flagged:\n" + p.stdout[-2000:])
    # In a run (the tiny GEMM only): the injected case is flagged, exit status 0.
    p = run([bench, "--smoke", "--suite", "gemm", "--compare", old_path])
    check(any(target["case"] in l and target["device"] in l for l in slower_lines(p.stdout)),
          "a run with --compare did not flag %r:\n%s" % (target["case"], p.stdout[-2000:]))


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
                 "--device", "pct_peak", "SLOWER") + SUITES:
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
            check_csv(csv_path, results)
            check_svg(svg_path)
            if results and not failures:
                check_compare(bench, tmp, json_path, doc)
        check_bad_arguments(bench, tmp)
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print("bench reports: all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
